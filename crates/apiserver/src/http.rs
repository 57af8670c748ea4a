//! HTTP plumbing: the response body type, JSON responses, query strings, Accept.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use serde_json::Value;

use skiff_resources::IncludeObject;

use crate::status::ApiError;

/// Body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An object serialized with Go's field order at its top level (and in a list's items or
/// a watch event's object): `kind`, `apiVersion` (TypeMeta comes first in every Go
/// kind), `metadata`, `spec`, then the other fields as they are. kube-apiserver writes
/// objects so; clients' decode errors name byte offsets in that order.
pub(crate) struct GoOrder<'a>(pub &'a Value);

/// The fields Go writes first, in order.
const FIRST: [&str; 4] = ["kind", "apiVersion", "metadata", "spec"];

impl serde::Serialize for GoOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(m) = self.0 else {
            return self.0.serialize(ser);
        };
        let typed = m.contains_key("kind") || m.contains_key("apiVersion");
        let mut out = ser.serialize_map(Some(m.len()))?;
        let nested = |k: &str, v: &Value| -> bool {
            typed && ((k == "items" && v.is_array()) || (k == "object" && v.is_object()))
        };
        let mut put = |k: &String, v: &Value| -> Result<(), S::Error> {
            match v {
                Value::Array(items) if nested(k, v) => {
                    let list: Vec<GoOrder<'_>> = items.iter().map(GoOrder).collect();
                    out.serialize_entry(k, &list)
                }
                _ if nested(k, v) => out.serialize_entry(k, &GoOrder(v)),
                _ => out.serialize_entry(k, v),
            }
        };
        for f in FIRST {
            if let Some((k, v)) = m.get_key_value(f) {
                put(k, v)?;
            }
        }
        for (k, v) in m {
            if !FIRST.contains(&k.as_str()) {
                put(k, v)?;
            }
        }
        out.end()
    }
}

/// `v` as JSON in Go's field order ([`GoOrder`]).
pub(crate) fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&GoOrder(v)).unwrap_or_default()
}

pub(crate) fn json_response_ct(code: u16, v: &Value, content_type: &str) -> Response<Body> {
    let mut body = to_json(v);
    body.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    json_response_ct(code, v, "application/json")
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

pub(crate) fn text_response(code: u16, text: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "text/plain; charset=utf-8")
        .body(full(text.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded query parameters (the last value wins for repeated keys).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut m = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(percent_decode(k), percent_decode(v));
        }
        Query(m)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
    pub fn int(&self, k: &str) -> Option<i64> {
        self.get(k).and_then(|v| v.parse().ok())
    }
}

/// What representation the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Representation {
    Object,
    Table,
    PartialMetadata,
}

pub(crate) fn representation(headers: &HeaderMap) -> Representation {
    let accept = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    // The first alternative we can serve wins, as in kube-apiserver's negotiation.
    for alt in accept.split(',') {
        let params: Vec<&str> = alt.split(';').map(str::trim).collect();
        let mt = params.first().copied().unwrap_or("");
        if mt != "application/json" && mt != "*/*" && mt != "application/*" {
            continue;
        }
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let g = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, g) {
            (Some("Table"), Some("meta.k8s.io")) => return Representation::Table,
            (Some("PartialObjectMetadata"), Some("meta.k8s.io"))
            | (Some("PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Representation::PartialMetadata
            }
            (None, _) => return Representation::Object,
            _ => continue,
        }
    }
    Representation::Object
}

/// `v1` or `v1beta1` of the meta.k8s.io representation requested (Tables, partials).
pub(crate) fn meta_version(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for alt in accept.split(',') {
        if alt.contains("g=meta.k8s.io") {
            return if alt.contains("v=v1beta1") {
                "v1beta1"
            } else {
                "v1"
            };
        }
    }
    "v1"
}

/// `?includeObject=` of a Table request (default `Metadata`).
pub(crate) fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// `meta.k8s.io/v1` PartialObjectMetadata of an object (`as=PartialObjectMetadata`).
pub(crate) fn partial_metadata(o: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=run%3Dhttpd&fieldSelector=a+b&watch=true",
        ));
        assert_eq!(q.get("labelSelector"), Some("run=httpd"));
        assert_eq!(q.get("fieldSelector"), Some("a b"));
        assert!(q.flag("watch"));
    }

    #[test]
    fn objects_are_written_in_gos_field_order() {
        let pod = serde_json::json!({"apiVersion": "v1", "status": {"phase": "Running"},
            "spec": {"b": 1, "a": 2}, "metadata": {"name": "p"}, "kind": "Pod"});
        assert_eq!(
            String::from_utf8(to_json(&pod)).unwrap(),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"b":1,"a":2},"status":{"phase":"Running"}}"#
        );
        let list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {}}]});
        assert_eq!(
            String::from_utf8(to_json(&list)).unwrap(),
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"kind":"Pod","apiVersion":"v1","metadata":{}}]}"#
        );
        let event =
            serde_json::json!({"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod"}});
        assert_eq!(
            String::from_utf8(to_json(&event)).unwrap(),
            r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod"}}"#,
            "only typed objects are reordered"
        );
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        h.insert("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json".parse().unwrap());
        assert_eq!(representation(&h), Representation::Table);
        h.insert("accept", "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json".parse().unwrap());
        assert_eq!(representation(&h), Representation::PartialMetadata);
        h.insert("accept", "application/json, */*".parse().unwrap());
        assert_eq!(representation(&h), Representation::Object);
    }
}
