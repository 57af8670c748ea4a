//! Request bodies: the media types a write accepts, parsing JSON and YAML in time linear
//! in the body (nesting and alias expansion bounded, as kube-apiserver's decoders bound
//! them), and the typed decode of the parsed object into its kind
//! (`skiff_resources::decode`), with kube-apiserver's 400 messages.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use skiff_resources::ResourceInfo;

use crate::status::{ApiError, ApiResult};

/// The deepest nesting a body may have: kube-apiserver's JSON decoder stops at 10,000
/// levels; no Kubernetes object comes near 128 (serde_json's own limit).
pub(crate) const MAX_DEPTH: usize = 128;

/// Bodies larger than this are parsed on a blocking thread, not an async worker.
pub(crate) const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Json,
    Yaml,
    Protobuf,
}

/// The media type of a create or update body (415 for any other, as kube-apiserver).
/// No `Content-Type` means JSON.
pub(crate) fn media(content_type: &str) -> ApiResult<Media> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "" | "application/json" => Ok(Media::Json),
        "application/yaml" => Ok(Media::Yaml),
        "application/vnd.kubernetes.protobuf" => Ok(Media::Protobuf),
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

/// Parses a (non-protobuf) body as its media type says. Errors are 400s naming what is
/// wrong and where, as kube-apiserver's: `... json parse error: ...` or
/// `error converting YAML to JSON: yaml: line 3: ...`.
pub(crate) fn parse(media: Media, body: &[u8]) -> ApiResult<Value> {
    let r = match media {
        Media::Yaml => parse_yaml(body),
        Media::Json | Media::Protobuf => parse_json(body),
    };
    r.map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized: {e} ({})",
            summarize(body)
        ))
    })
}

/// JSON (serde_json refuses nesting deeper than [`MAX_DEPTH`] by itself).
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))
}

/// YAML, converted to JSON as `sigs.k8s.io/yaml` does (non-string keys become strings),
/// with nesting bounded before parsing and alias expansion bounded while building.
pub(crate) fn parse_yaml(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("error converting YAML to JSON: yaml: invalid UTF-8: {e}"))?;
    if yaml_depth(text) > MAX_DEPTH {
        return Err(format!(
            "error converting YAML to JSON: yaml: exceeded max depth of {MAX_DEPTH}"
        ));
    }
    // Every node costs one unit: without aliases a document has fewer nodes than
    // bytes, so a larger count is alias expansion ("billion laughs").
    let budget = Cell::new(body.len().saturating_mul(2).saturating_add(10_000));
    let de = serde_yaml_ng::Deserializer::from_str(text);
    Budgeted {
        left: &budget,
        depth: 0,
    }
    .deserialize(de)
    .map_err(|e| yaml_error(&e))
}

fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) => {
            // serde_yaml_ng appends " at line L column C"; Go's yaml puts the line first.
            let bare = msg
                .split(" at line ")
                .next()
                .unwrap_or(&msg)
                .trim_end_matches(',');
            format!(
                "error converting YAML to JSON: yaml: line {}: {bare}",
                loc.line()
            )
        }
        None => format!("error converting YAML to JSON: yaml: {msg}"),
    }
}

/// An upper bound of a YAML document's nesting, in one pass: flow collections (`[`, `{`)
/// outside quotes and comments, plus block indentation levels (each `- ` opening one).
pub(crate) fn yaml_depth(text: &str) -> usize {
    let mut max = 0;
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for line in text.lines() {
        let trimmed = line.trim_start_matches(' ');
        if flow == 0 && !trimmed.is_empty() && !trimmed.starts_with('#') {
            let mut indent = line.len() - trimmed.len();
            let mut rest = trimmed;
            loop {
                while indents.last().is_some_and(|&top| top >= indent) {
                    indents.pop();
                }
                indents.push(indent);
                match rest.strip_prefix("- ") {
                    Some(r) => {
                        let r2 = r.trim_start_matches(' ');
                        indent += 2 + (r.len() - r2.len());
                        rest = r2;
                    }
                    None => break,
                }
            }
            max = max.max(indents.len());
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    // A quoted scalar starts at a token boundary only (`don't` is plain).
                    '"' | '\'' if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => {
                        quote = Some(c)
                    }
                    '#' if prev == ' ' || prev == '\t' => break,
                    '[' | '{' => {
                        flow += 1;
                        max = max.max(indents.len() + flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
    }
    max
}

/// kube's `summarizeData`: the first 30 bytes of a JSON object, hex otherwise.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => {
            let s = String::from_utf8_lossy(&body[..body.len().min(MAX)]).into_owned();
            if body.len() > MAX {
                format!("{s} ...")
            } else {
                s
            }
        }
        Some(_) => {
            let hex: String = body[..body.len().min(MAX)]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if body.len() > MAX {
                format!("{hex} ...")
            } else {
                hex
            }
        }
    }
}

/// Builds a `serde_json::Value` from a YAML deserializer, one budget unit per node.
struct Budgeted<'a> {
    left: &'a Cell<usize>,
    depth: usize,
}

impl Budgeted<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => Err(E::custom("document contains excessive aliasing")),
        }
    }
    fn child(&self) -> Budgeted<'_> {
        Budgeted {
            left: self.left,
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.spend()?;
        // JSON has no NaN or infinities; Go's YAML-to-JSON fails on them too.
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("json: unsupported value: {v}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "exceeded max depth of {MAX_DEPTH}"
            )));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child())? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "exceeded max depth of {MAX_DEPTH}"
            )));
        }
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Key { left: self.left })? {
            let v = map.next_value_seed(self.child())?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key as a JSON object key: scalars become their text, as
/// `sigs.k8s.io/yaml` converts them.
struct Key<'a> {
    left: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(v)
            }
            None => Err(E::custom("document contains excessive aliasing")),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".into())
    }
}

/// The request's `apiVersion`/`kind` against the URL's, as kube-apiserver's decoder and
/// create/update handlers check them (either may be left out: the URL's is taken).
pub(crate) fn check_kind(info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    let url_av = info.api_version();
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&url_av);
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(info.kind);
    if av == url_av && kind == info.kind {
        return Ok(());
    }
    let (_, version) = skiff_resources::split_api_version(av);
    let handled = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: {why}",
            info.kind
        ))
    };
    if skiff_resources::lookup_kind(av, kind).is_none() {
        return Err(handled(format!(
            "no kind \"{kind}\" is registered for version \"{av}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        )));
    }
    if kind == info.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({url_av})"
        )));
    }
    let internal = if info.group.is_empty() {
        "core"
    } else {
        info.group.split('.').next().unwrap_or(info.group)
    };
    Err(handled(format!(
        "converting ({version}.{kind}) to ({internal}.{}): unknown conversion",
        info.kind
    )))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(media("").ok(), Some(Media::Json));
        assert_eq!(
            media("application/json; charset=utf-8").ok(),
            Some(Media::Json)
        );
        assert_eq!(media("application/yaml").ok(), Some(Media::Yaml));
        let e = media("text/plain").err().map(|e| (e.code, e.reason));
        assert_eq!(e, Some((415, "UnsupportedMediaType")));
    }

    #[test]
    fn yaml_is_converted_as_kube_converts_it() {
        let v = parse_yaml(b"a: 1\nb: [x, {c: true}]\n3: null\n").expect("parses");
        assert_eq!(v, json!({"a": 1, "b": ["x", {"c": true}], "3": null}));
        let v = parse_yaml(b"base: &b {x: 1}\nuse: *b\n").expect("aliases");
        assert_eq!(v, json!({"base": {"x": 1}, "use": {"x": 1}}));
    }

    #[test]
    fn malformed_yaml_names_the_error_and_line() {
        let e = parse_yaml(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a: b\n").unwrap_err();
        assert!(
            e.starts_with(
                "error converting YAML to JSON: yaml: line 4: mapping values are not allowed"
            ),
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_fast() {
        for body in [
            "[".repeat(100_000).into_bytes(),
            "{\"a\":".repeat(60_000).into_bytes(),
            "- ".repeat(100_000).into_bytes(),
        ] {
            let t = Instant::now();
            assert!(parse(Media::Yaml, &body).is_err());
            assert!(parse(Media::Json, &body).is_err());
            // A bound far above the few ms it takes, so a loaded machine passes: what it
            // catches is a parser that walks the whole depth (seconds).
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
    }

    #[test]
    fn billion_laughs_is_refused_fast() {
        let mut doc = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let t = Instant::now();
        let e = parse_yaml(doc.as_bytes()).unwrap_err();
        assert!(e.contains("excessive aliasing"), "{e}");
        // Expanded, it would be 9^10 nodes: minutes. Refused, a few ms (bound for load).
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn kind_and_version_must_match_the_url() {
        let cm = skiff_resources::lookup("", "v1", "configmaps").expect("configmaps");
        assert!(check_kind(cm, &json!({})).is_ok());
        assert!(check_kind(cm, &json!({"apiVersion": "v1", "kind": "ConfigMap"})).is_ok());
        let msg = |v| check_kind(cm, &v).err().map(|e| (e.code, e.message));
        assert_eq!(
            msg(json!({"apiVersion": "v9", "kind": "ConfigMap"})),
            Some((400, "ConfigMap in version \"v9\" cannot be handled as a ConfigMap: no kind \"ConfigMap\" is registered for version \"v9\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"".into()))
        );
        assert_eq!(
            msg(json!({"apiVersion": "v1", "kind": "Secret"})),
            Some((400, "Secret in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion".into()))
        );
        let deploy = skiff_resources::lookup("apps", "v1", "deployments").expect("deployments");
        assert_eq!(
            check_kind(deploy, &json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}))
                .err()
                .map(|e| e.message),
            Some("the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)".into())
        );
    }
}
