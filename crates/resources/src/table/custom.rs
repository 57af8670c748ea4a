//! Tables of custom resources: `Name`, then the version's `additionalPrinterColumns`
//! (or `Age` when it has none), as kube-apiserver's CRD `tableconvertor` prints them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{doc, name_col};
use crate::registry::Custom;

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The printer columns of a CRD version, with the default `Age` when it declares none.
fn printer_columns(c: &Custom) -> Vec<Value> {
    if c.columns.is_empty() {
        vec![
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                    "description": doc(META, "creationTimestamp")}),
        ]
    } else {
        c.columns.clone()
    }
}

/// Column definitions of the Table.
pub(super) fn columns(c: &Custom) -> Vec<Value> {
    let n = name_col();
    let mut out = vec![json!({"name": n.name, "type": n.ty, "format": n.format,
                              "description": n.description, "priority": 0})];
    for col in printer_columns(c) {
        out.push(json!({
            "name": col.get("name").cloned().unwrap_or(json!("")),
            "type": col.get("type").cloned().unwrap_or(json!("string")),
            "format": col.get("format").cloned().unwrap_or(json!("")),
            "description": col.get("description").cloned().unwrap_or(json!("")),
            "priority": col.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    out
}

/// The cells of one object.
pub(super) fn cells(c: &Custom, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = vec![o.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
    for col in printer_columns(c) {
        let path = col.get("jsonPath").and_then(Value::as_str).unwrap_or("");
        let ty = col.get("type").and_then(Value::as_str).unwrap_or("string");
        out.push(match json_path(o, path) {
            None | Some(Value::Null) => Value::Null,
            Some(v) => cell(ty, v, now),
        });
    }
    out
}

/// kube's `cellForJSONValue`: dates become ages, numbers stay numbers, anything else its
/// JSON text.
fn cell(ty: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (ty, v) {
        ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(crate::human_duration(now - t.with_timezone(&Utc))),
            Err(_) => json!("<invalid>"),
        },
        ("integer", Value::Number(n)) if n.is_i64() => v.clone(),
        ("number", Value::Number(_))
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_)) => v.clone(),
        (_, Value::String(s)) => json!(s),
        _ => json!(v.to_string()),
    }
}

/// A simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`, `{.a.b}`).
pub(crate) fn json_path<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = o;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (field, idx) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}
