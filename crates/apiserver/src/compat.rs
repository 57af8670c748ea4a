//! The per-kind rules the server takes from skiff-resources, behind one set of names.
//!
//! skiff-resources is written concurrently; where a function has not landed there yet,
//! this module has a small private fallback with the agreed signature, so the server
//! works end to end meanwhile. Each fallback is replaced by a call once it lands.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
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
    skiff_resources::default_object(info, obj);
    fallback_defaults(info, obj);
}

/// Validation errors of `obj` (and the transition from `old`).
pub(crate) fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let theirs: Vec<FieldError> = skiff_resources::validate(info, obj, old)
        .into_iter()
        .map(|e| FieldError {
            field: e.path.clone(),
            reason: e.kind.reason().to_string(),
            message: e.to_string(),
        })
        .collect();
    if !theirs.is_empty() {
        return theirs;
    }
    fallback_validate(info, obj)
}

fn fallback_validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
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
pub(crate) fn convert(obj: Value, to_api_version: &str) -> Value {
    skiff_resources::convert(obj, to_api_version)
}

/// Strategic merge patch.
pub(crate) fn strategic_merge_patch(
    info: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, String> {
    skiff_resources::strategic_merge_patch(info, original, patch).map_err(|e| e.to_string())
}

pub(crate) use skiff_resources::IncludeObject;

/// A `meta.k8s.io/v1` Table of `objects`.
pub(crate) fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    skiff_resources::table(info, objects, include, now)
}

/// `meta.k8s.io/v1` PartialObjectMetadata of an object.
pub(crate) fn partial_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
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
