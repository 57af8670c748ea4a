//! The per-kind rules the server takes from skiff-resources, behind one set of names.
//!
//! skiff-resources is written concurrently; where a function has not landed there yet,
//! this module has a small private fallback with the agreed signature, so the server
//! works end to end meanwhile. Each fallback is replaced by a call once it lands.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use skiff_resources::ResourceInfo;

/// One validation failure: JSON path (`spec.ports[0].port`), the cause reason
/// (`FieldValueInvalid`...) and the full message as Kubernetes prints it.
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: String,
    pub reason: String,
    pub message: String,
}

/// Applies kube-apiserver's defaults (object in storage version).
pub(crate) fn default_object(info: &ResourceInfo, obj: &mut Value) {
    fallback_defaults(info, obj);
}

/// Validation errors of `obj` (and the transition from `old`).
pub(crate) fn validate(info: &ResourceInfo, obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError {
            field: "metadata.name".into(),
            reason: "FieldValueRequired".into(),
            message: "metadata.name: Required value: name or generateName is required".into(),
        });
    }
    if info.kind == "Service" {
        if let Some(ports) = obj.pointer("/spec/ports").and_then(Value::as_array) {
            for (i, p) in ports.iter().enumerate() {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError {
                        field: format!("spec.ports[{i}].port"),
                        reason: "FieldValueInvalid".into(),
                        message: format!("spec.ports[{i}].port: Invalid value: {port}: must be between 1 and 65535, inclusive"),
                    });
                }
            }
        }
    }
    errs
}

/// Converts an object to `to_api_version` (e.g. apps/v1beta1 <-> apps/v1).
pub(crate) fn convert(mut obj: Value, to_api_version: &str) -> Value {
    let from = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if from == to_api_version {
        return obj;
    }
    // apps/v1beta1 Deployments default their selector from the template labels.
    if from == "apps/v1beta1" && obj.pointer("/spec/selector").is_none() {
        if let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned() {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("selector".into(), json!({"matchLabels": labels}));
            }
        }
    }
    obj["apiVersion"] = json!(to_api_version);
    obj
}

/// Paths of fields the schema does not know (for `fieldValidation`).
pub(crate) fn unknown_fields(_info: &ResourceInfo, _obj: &Value) -> Vec<String> {
    Vec::new()
}

/// Strategic merge patch.
pub(crate) fn strategic_merge_patch(
    _info: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, String> {
    Ok(smp_fallback(original, patch))
}

/// What a Table's rows carry in `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// A `meta.k8s.io/v1` Table of `objects`.
pub(crate) fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let _ = info;
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            let age = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| human_age(now - t.with_timezone(&Utc)))
                .unwrap_or_else(|| "<unknown>".into());
            json!({"cells": [name, age], "object": row_object(o, include)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0},
            {"name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0},
        ],
        "rows": rows,
    })
}

fn row_object(o: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => o.clone(),
        IncludeObject::Metadata => partial_metadata(o),
    }
}

/// `meta.k8s.io/v1` PartialObjectMetadata of an object.
pub(crate) fn partial_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 3600 * 3 {
        format!("{}m", s / 60)
    } else if s < 86400 * 2 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

fn fallback_defaults(info: &ResourceInfo, obj: &mut Value) {
    if info.kind == "Service" {
        let spec = obj
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})));
        if let Some(Value::Object(spec)) = spec {
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    if let Value::Object(p) = p {
                        p.entry("protocol").or_insert(json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
        }
    }
}

/// Merge-patch semantics, with lists of objects merged by `name` (or `port`).
fn smp_fallback(original: &Value, patch: &Value) -> Value {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            let mut out: Map<String, Value> = o.clone();
            for (k, v) in p {
                if k.starts_with("$setElementOrder") || k == "$retainKeys" {
                    continue;
                }
                if v.is_null() {
                    out.remove(k);
                } else if let Some(orig) = o.get(k) {
                    out.insert(k.clone(), smp_fallback(orig, v));
                } else {
                    out.insert(k.clone(), strip_directives(v));
                }
            }
            Value::Object(out)
        }
        (Value::Array(o), Value::Array(p)) => {
            let key = ["name", "port", "containerPort", "ip"]
                .into_iter()
                .find(|k| p.iter().all(|e| e.get(k).is_some()) && !p.is_empty());
            match key {
                Some(k) => {
                    let mut out: Vec<Value> = o.clone();
                    for pe in p {
                        if pe.get("$patch").and_then(Value::as_str) == Some("delete") {
                            out.retain(|e| e.get(k) != pe.get(k));
                            continue;
                        }
                        match out.iter_mut().find(|e| e.get(k) == pe.get(k)) {
                            Some(e) => *e = smp_fallback(e, pe),
                            None => out.push(strip_directives(pe)),
                        }
                    }
                    Value::Array(out)
                }
                None => patch.clone(),
            }
        }
        _ => strip_directives(patch),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}
