//! A CRD version's OpenAPI v3 schema applied to its objects, as kube-apiserver's
//! `apiextensions-apiserver/pkg/apiserver/schema` does: the structural-schema checks of
//! the CRD itself ([`validate_structural`]), validation of objects with kube-openapi's
//! messages and field paths ([`validate`]), pruning of undeclared fields ([`prune`]) and
//! defaulting from `default` ([`apply_defaults`]).

use serde_json::{json, Map, Value};

use crate::validation::{FieldError, FieldErrorKind};

fn flag(s: &Value, name: &str) -> bool {
    s.get(name) == Some(&Value::Bool(true))
}

fn ty(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// kube's `ValidateStructural`: every specified field and item has a type, `metadata`
/// restricts nothing but `name`/`generateName`, no `additionalProperties` at the root,
/// the embedded-resource and int-or-string rules. `path` is the schema's field path.
pub fn validate_structural(schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let mut errs = Vec::new();
    structural(schema, Level::Root, path, &mut errs);
    errs.sort_by_key(|e| e.to_string());
    out.extend(errs);
}

fn structural(s: &Value, lvl: Level, path: &str, out: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    let t = ty(s);
    if t == "array" && s.get("items").is_none() {
        out.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = s.get("items") {
        structural(items, Level::Item, &child(path, "items"), out);
    }
    if let Some(p) = props(s) {
        for (k, v) in p {
            structural(
                v,
                Level::Field,
                &format!("{}[{k}]", child(path, "properties")),
                out,
            );
        }
    }
    if let Some(ap) = s.get("additionalProperties") {
        if lvl == Level::Root {
            out.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if ap.is_object() {
            structural(ap, Level::Field, &child(path, "additionalProperties"), out);
        }
    }
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    if int_or_string && preserve {
        out.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        out.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if embedded && t != "object" {
        if t.is_empty() {
            out.push(FieldError::required(
                child(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            out.push(FieldError::invalid(
                child(path, "type"),
                json!(t),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if t.is_empty() && !int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(FieldError::required(child(path, "type"), msg));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        out.push(FieldError::invalid(
            child(path, "type"),
            json!(t),
            "must be object at the root",
        ));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(pattern) {
            out.push(FieldError::invalid(
                child(path, "pattern"),
                json!(pattern),
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
    if let Some(meta) = props(s).and_then(|p| p.get("metadata")) {
        let mpath = format!("{}[metadata]", child(path, "properties"));
        if (lvl == Level::Root || embedded) && ty(meta) != "object" {
            out.push(FieldError::invalid(
                child(&mpath, "type"),
                json!(ty(meta)),
                "must be object",
            ));
        }
        if lvl == Level::Root {
            let allowed = meta.as_object().is_some_and(|m| {
                m.iter().all(|(k, v)| match k.as_str() {
                    "type" => true,
                    "properties" => v
                        .as_object()
                        .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName")),
                    _ => false,
                })
            });
            if !allowed {
                out.push(FieldError::forbidden(
                    mpath,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if embedded && !preserve && props(s).is_none_or(Map::is_empty) {
        out.push(FieldError::required(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Validates `obj` against the schema of its CRD version: kube-openapi's rules (types,
/// formats, enum, pattern, bounds, lengths, required, nullable) with its messages, as
/// kube-apiserver turns them into field errors. `apiVersion`, `kind` and `metadata`
/// at the root are the API server's.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(o) = obj.as_object() else {
        return out;
    };
    required(schema, o, "", &mut out);
    if let Some(p) = props(schema) {
        for (k, v) in o {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(ps) = p.get(k) {
                value(ps, v, k, &mut out);
            }
        }
    }
    out
}

fn required(s: &Value, o: &Map<String, Value>, path: &str, out: &mut Vec<FieldError>) {
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
    {
        if !o.contains_key(r) {
            out.push(FieldError::required(child(path, r), ""));
        }
    }
}

/// kube-openapi's JSON type name of a value (`number` for floats, `integer` for whole).
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_invalid(path: &str, want: &str, got: &Value) -> FieldError {
    let t = json_type(got);
    FieldError {
        path: path.to_string(),
        kind: FieldErrorKind::TypeInvalid,
        message: format!("{path} in body must be of type {want}: \"{t}\""),
        bad_value: Some(json!(t)),
    }
}

fn value(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    if v.is_null() {
        if !flag(s, "nullable") && !ty(s).is_empty() {
            out.push(type_invalid(path, ty(s), v));
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_string() || json_type(v) == "integer") {
            out.push(type_invalid(path, "integer-or-string", v));
        }
        return;
    }
    let t = ty(s);
    let actual = json_type(v);
    let ok = match t {
        "" => true,
        "number" => v.is_number(),
        other => other == actual,
    };
    if !ok {
        out.push(type_invalid(path, t, v));
        return;
    }
    if let Some(en) = s.get("enum").and_then(Value::as_array) {
        if !en.contains(v) {
            let supported: Vec<String> = en
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect();
            let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
            out.push(FieldError::not_supported(path, v.clone(), &refs));
        }
    }
    match v {
        Value::String(text) => string(s, text, v, path, out),
        Value::Number(n) => number(s, n.as_f64().unwrap_or(0.0), v, path, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                if n > max {
                    out.push(FieldError {
                        path: path.to_string(),
                        kind: FieldErrorKind::TooMany,
                        message: format!("must have at most {max} items"),
                        bad_value: Some(json!(n)),
                    });
                }
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                if n < min {
                    out.push(FieldError::invalid(
                        path,
                        json!(n),
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    value(is, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(o) => {
            required(s, o, path, out);
            let p = props(s);
            let ap = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, fv) in o {
                if let Some(ps) = p.and_then(|p| p.get(k)) {
                    value(ps, fv, &child(path, k), out);
                } else if let Some(ap) = ap {
                    value(ap, fv, &child(path, k), out);
                }
            }
            if flag(s, "x-kubernetes-embedded-resource") {
                for f in ["apiVersion", "kind"] {
                    if o.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        out.push(FieldError::required(child(path, f), "must not be empty"));
                    }
                }
            }
        }
        _ => {}
    }
}

fn string(s: &Value, text: &str, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            out.push(FieldError::too_long(
                path,
                format!("may not be more than {max} bytes"),
            ));
        }
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
        if len < min {
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        if regex::Regex::new(p).is_ok_and(|re| !re.is_match(text)) {
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should match '{p}'"),
            ));
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str) {
        if !format_ok(f, text) {
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type {f}: {text:?}"),
            ));
        }
    }
}

/// The string formats kube-openapi checks (others pass, as there).
fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).is_ok(),
        "int32" => text.parse::<i32>().is_ok(),
        "int64" => text.parse::<i64>().is_ok(),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "uuid" => {
            let parts: Vec<&str> = text.split('-').collect();
            parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                && parts
                    .iter()
                    .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        _ => true,
    }
}

fn number(s: &Value, n: f64, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    let show = |x: &Value| x.to_string();
    if let Some(max) = s.get("maximum").filter(|m| m.is_number()) {
        let m = max.as_f64().unwrap_or(f64::MAX);
        let excl = flag(s, "exclusiveMaximum");
        if (excl && n >= m) || (!excl && n > m) {
            let word = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {word} {}", show(max)),
            ));
        }
    }
    if let Some(min) = s.get("minimum").filter(|m| m.is_number()) {
        let m = min.as_f64().unwrap_or(f64::MIN);
        let excl = flag(s, "exclusiveMinimum");
        if (excl && n <= m) || (!excl && n < m) {
            let word = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {word} {}", show(min)),
            ));
        }
    }
    if let Some(mo) = s.get("multipleOf").and_then(Value::as_f64) {
        if mo > 0.0 && (n / mo).fract() != 0.0 {
            out.push(FieldError::invalid(
                path,
                v.clone(),
                format!(
                    "{path} in body should be a multiple of {}",
                    show(&s["multipleOf"])
                ),
            ));
        }
    }
}

/// Drops the fields the schema does not declare (kube's pruning), unless a node says
/// `x-kubernetes-preserve-unknown-fields`; `apiVersion`, `kind` and `metadata` at the
/// root (and in embedded resources) are kept. Returns the dropped paths (`.spec.foo`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_node(schema, obj, "", true, &mut out);
    out
}

fn prune_node(s: &Value, v: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    if flag(s, "x-kubernetes-int-or-string") {
        return;
    }
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = root || flag(s, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(o) => {
            let p = props(s);
            let ap = s.get("additionalProperties");
            let mut drop = Vec::new();
            for (k, fv) in o.iter_mut() {
                let fpath = format!("{path}.{k}");
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(ps) = p.and_then(|p| p.get(k)) {
                    prune_node(ps, fv, &fpath, false, out);
                } else if let Some(a) = ap.filter(|a| a.is_object()) {
                    prune_node(a, fv, &fpath, false, out);
                } else if ap == Some(&Value::Bool(true)) || preserve {
                    continue;
                } else {
                    drop.push(k.clone());
                    out.push(fpath);
                }
            }
            for k in drop {
                o.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(is, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default` values of absent fields, top-down (kube's structural defaulting:
/// a defaulted object is itself defaulted; items and map values too).
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    let Value::Object(o) = obj else {
        if let (Value::Array(items), Some(is)) = (obj, schema.get("items")) {
            for item in items {
                apply_defaults(is, item);
            }
        }
        return;
    };
    if let Some(p) = props(schema) {
        for (k, ps) in p {
            if !o.contains_key(k) {
                if let Some(d) = ps.get("default") {
                    o.insert(k.clone(), d.clone());
                }
            }
            if let Some(fv) = o.get_mut(k) {
                apply_defaults(ps, fv);
            }
        }
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        let declared: Vec<String> = props(schema)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for (k, fv) in o.iter_mut() {
            if !declared.contains(k) {
                apply_defaults(ap, fv);
            }
        }
    }
}
