//! Object metadata (names, labels, annotations, immutable identity) and data maps.

use serde_json::{json, Value};

use super::super::names::*;
use super::super::FieldError;
use super::{s, Errs};
use crate::registry::ResourceInfo;

/// How a kind's names are checked.
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// Path segment names (RBAC, events): anything but `.`/`..`/`/`/`%`.
    PathSegment,
    /// APIServices: a path segment that is `spec.version + "." + spec.group`.
    ApiService,
}

fn name_rule(info: &ResourceInfo) -> NameRule {
    match (info.group, info.kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("apiregistration.k8s.io", "APIService") => NameRule::ApiService,
        ("rbac.authorization.k8s.io", _) | ("", "Event") | ("events.k8s.io", _) => {
            NameRule::PathSegment
        }
        _ => NameRule::Subdomain,
    }
}

pub(super) fn validate_meta(info: &ResourceInfo, obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let name = s(obj, "/metadata/name").unwrap_or("");
    let generate = s(obj, "/metadata/generateName").unwrap_or("");
    if name.is_empty() {
        if generate.is_empty() {
            e.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        let msgs = match name_rule(info) {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label => is_dns1123_label(name),
            NameRule::Dns1035 => is_dns1035_label(name),
            NameRule::PathSegment => path_segment(name),
            NameRule::ApiService => {
                let required = format!(
                    "{}.{}",
                    s(obj, "/spec/version").unwrap_or(""),
                    s(obj, "/spec/group").unwrap_or("")
                );
                let mut m = path_segment(name);
                if m.is_empty() && name != required {
                    m.push(format!(
                        "must be `spec.version+\".\"+spec.group`: {required:?}"
                    ));
                }
                m
            }
        };
        for m in msgs {
            e.push(FieldError::invalid("metadata.name", json!(name), m));
        }
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for m in is_qualified_name(k) {
                e.push(FieldError::invalid("metadata.labels", json!(k), m));
            }
            for m in is_valid_label_value(v.as_str().unwrap_or_default()) {
                e.push(FieldError::invalid("metadata.labels", v.clone(), m));
            }
        }
    }
    if let Some(ann) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in ann {
            for m in is_qualified_name(&k.to_lowercase()) {
                e.push(FieldError::invalid("metadata.annotations", json!(k), m));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            e.push(FieldError::too_long(
                "metadata.annotations",
                format!("must have at most {} bytes", 256 * 1024),
            ));
        }
    }
    if let Some(old) = old {
        let old_name = s(old, "/metadata/name").unwrap_or("");
        if !old_name.is_empty() && old_name != name {
            e.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "field is immutable",
            ));
        }
        if info.namespaced {
            let ns = s(obj, "/metadata/namespace").unwrap_or("");
            let old_ns = s(old, "/metadata/namespace").unwrap_or("");
            if !ns.is_empty() && !old_ns.is_empty() && ns != old_ns {
                e.push(FieldError::invalid(
                    "metadata.namespace",
                    json!(ns),
                    "field is immutable",
                ));
            }
        }
    }
}

fn path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut out = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

pub(super) fn validate_data(obj: &Value, field: &str, with_binary: bool, e: &mut Errs) {
    let mut total = 0;
    let data = obj.get(field).and_then(Value::as_object);
    for (k, v) in data.into_iter().flatten() {
        for m in is_config_map_key(k) {
            e.push(FieldError::invalid(format!("{field}[{k}]"), json!(k), m));
        }
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    if with_binary {
        let binary = obj.get("binaryData").and_then(Value::as_object);
        for (k, v) in binary.into_iter().flatten() {
            for m in is_config_map_key(k) {
                e.push(FieldError::invalid(format!("binaryData[{k}]"), json!(k), m));
            }
            if data.is_some_and(|d| d.contains_key(k)) {
                e.push(FieldError::invalid(
                    format!("data[{k}]"),
                    json!(k),
                    "duplicate of key present in binaryData",
                ));
            }
            total += v.as_str().map(str::len).unwrap_or(0);
        }
    }
    if total > 1024 * 1024 {
        e.push(FieldError::too_long(
            field,
            format!("must have at most {} bytes", 1024 * 1024),
        ));
    }
}
