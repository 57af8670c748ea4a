//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`), as pure functions of the CRD:
//! its defaults and validation with kube-apiserver's messages
//! (`apiextensions-apiserver/pkg/apis/apiextensions/validation`), the resources an
//! established CRD serves ([`served`]), and, per version, the schema rules applied to its
//! objects ([`schema`]: validation, pruning, defaulting; [`cel`]: the CEL rules of
//! `x-kubernetes-validations`), and conversion webhooks ([`conversion`]).

pub mod cel;
pub mod conversion;
pub mod schema;

use serde_json::{json, Value};

use crate::registry::{
    intern_custom, intern_str, intern_strs, version_priority, Custom, ResourceInfo, ScalePaths,
    ALL_VERBS,
};
use crate::validation::{is_dns1035_label, is_dns1123_subdomain, FieldError};

/// The finalizer kube-apiserver puts on a CRD being deleted: its objects go first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// kube's v1 defaults of a CRD (`SetDefaults_CustomResourceDefinitionSpec`): singular and
/// list kind from the kind, `conversion.strategy: None`, port 443 of a conversion Service.
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if names
            .get("singular")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && !kind.is_empty()
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if !spec.get("conversion").is_some_and(Value::is_object) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
    if let Some(conv) = spec.get_mut("conversion").and_then(Value::as_object_mut) {
        if conv
            .get("strategy")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            conv.insert("strategy".into(), json!("None"));
        }
        // `SetDefaults_ServiceReference`: a conversion Service is reached on port 443.
        if let Some(svc) = conv
            .get_mut("webhook")
            .and_then(|w| w.get_mut("clientConfig"))
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            svc.entry("port").or_insert(json!(443));
        }
    }
}

/// The storage version of a CRD (the one with `storage: true`).
pub fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd)
        .iter()
        .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
}

/// Whether the CRD's condition `ty` is `True`.
pub fn condition_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ty)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The resources an established CRD serves: one per served version, under its accepted
/// names (`status.acceptedNames`), preferred version first.
pub fn served(crd: &Value) -> Vec<ResourceInfo> {
    let group = s(crd, "/spec/group");
    let names = match crd.pointer("/status/acceptedNames") {
        Some(n)
            if n.get("plural")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty()) =>
        {
            n
        }
        _ => return Vec::new(),
    };
    let Some(storage) = storage_version(crd) else {
        return Vec::new();
    };
    let list = |k: &str| -> Vec<&str> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let kind = names.get("kind").and_then(Value::as_str).unwrap_or("");
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let mut vs: Vec<&Value> = versions(crd)
        .iter()
        .filter(|v| v.get("served") == Some(&Value::Bool(true)))
        .collect();
    vs.sort_by_key(|v| version_priority(s(v, "/name")));
    vs.into_iter()
        .map(|v| {
            let mut subresources: Vec<&str> = Vec::new();
            if v.pointer("/subresources/scale").is_some() {
                subresources.push("scale");
            }
            if v.pointer("/subresources/status").is_some() {
                subresources.push("status");
            }
            let scale = v.pointer("/subresources/scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "/specReplicasPath").to_string(),
                status_replicas: s(sc, "/statusReplicasPath").to_string(),
                label_selector: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
            let custom = Custom {
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or_else(
                        || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                    ),
                columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                scale,
                crd: s(crd, "/metadata/name").to_string(),
                list_kind: names
                    .get("listKind")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{kind}List")),
                terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
                selectable: v
                    .get("selectableFields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect(),
                conversion: conversion::webhook(crd),
                mixed_storage: crd
                    .pointer("/status/storedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|vs| vs.iter().any(|v| v.as_str() != Some(storage))),
            };
            ResourceInfo {
                group: intern_str(group),
                version: intern_str(s(v, "/name")),
                kind: intern_str(kind),
                plural: intern_str(names.get("plural").and_then(Value::as_str).unwrap_or("")),
                singular: intern_str(&singular),
                namespaced: s(crd, "/spec/scope") == "Namespaced",
                short_names: intern_strs(&list("shortNames")),
                categories: intern_strs(&list("categories")),
                verbs: ALL_VERBS,
                subresources: intern_strs(&subresources),
                storage_version: intern_str(storage),
                custom: Some(intern_custom(custom)),
            }
        })
        .collect()
}

/// `ValidateCustomResourceDefinition` / `...Update`: the CRD's own rules, with
/// kube-apiserver's field paths and messages (the structural schema rules included).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut e = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = s(crd, "/metadata/name");
    if name != format!("{plural}.{group}") {
        e.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        e.push(FieldError::required("spec.group", ""));
    } else {
        for m in is_dns1123_subdomain(group) {
            e.push(FieldError::invalid("spec.group", json!(group), m));
        }
        if group.split('.').count() < 2 {
            e.push(FieldError::invalid(
                "spec.group",
                json!(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    let scope = s(crd, "/spec/scope");
    if scope.is_empty() {
        e.push(FieldError::required("spec.scope", ""));
    } else if scope != "Cluster" && scope != "Namespaced" {
        e.push(FieldError::not_supported(
            "spec.scope",
            json!(scope),
            &["Cluster", "Namespaced"],
        ));
    }
    validate_names(crd, &mut e);
    let vs = versions(crd);
    if vs.is_empty() {
        e.push(FieldError::invalid(
            "spec.versions",
            json!(null),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = vs
        .iter()
        .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
        .count();
    if !vs.is_empty() && storage != 1 {
        e.push(FieldError::invalid(
            "spec.versions",
            Value::Array(vs.to_vec()),
            "must have exactly one version marked as storage version",
        ));
    }
    if !vs.is_empty()
        && !vs
            .iter()
            .any(|v| v.get("served") == Some(&Value::Bool(true)))
    {
        e.push(FieldError::invalid(
            "spec.versions",
            Value::Array(vs.to_vec()),
            "must have at least one version marked as served",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let p = format!("spec.versions[{i}]");
        let vname = s(v, "/name");
        if seen.contains(&vname) {
            e.push(FieldError::invalid(
                format!("{p}.name"),
                json!(vname),
                "must appear only once",
            ));
        }
        seen.push(vname);
        for m in is_dns1035_label(vname) {
            e.push(FieldError::invalid(format!("{p}.name"), json!(vname), m));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => e.push(FieldError::required(
                format!("{p}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => {
                let sp = format!("{p}.schema.openAPIV3Schema");
                schema::validate_structural(schema, &sp, &mut e);
                cel::check(schema, &sp, &mut e);
            }
        }
        validate_selectable_fields(v, &p, &mut e);
        if let Some(sc) = v.pointer("/subresources/scale") {
            let sp = format!("{p}.subresources.scale");
            for (field, required) in [
                ("specReplicasPath", true),
                ("statusReplicasPath", true),
                ("labelSelectorPath", false),
            ] {
                match sc.get(field).and_then(Value::as_str) {
                    None if required => e.push(FieldError::required(format!("{sp}.{field}"), "")),
                    Some(path) if !path.starts_with('.') => e.push(FieldError::invalid(
                        format!("{sp}.{field}"),
                        json!(path),
                        "must be a valid JSON path with a leading '.'",
                    )),
                    _ => {}
                }
            }
        }
        for (j, c) in v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let cp = format!("{p}.additionalPrinterColumns[{j}]");
            if s(c, "/name").is_empty() {
                e.push(FieldError::required(format!("{cp}.name"), ""));
            }
            let ty = s(c, "/type");
            const TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
            if ty.is_empty() {
                e.push(FieldError::required(format!("{cp}.type"), ""));
            } else if !TYPES.contains(&ty) {
                e.push(FieldError::not_supported(
                    format!("{cp}.type"),
                    json!(ty),
                    TYPES,
                ));
            }
            if s(c, "/jsonPath").is_empty() {
                e.push(FieldError::required(format!("{cp}.jsonPath"), ""));
            }
        }
    }
    conversion::validate(crd, old, &mut e);
    if let Some(old) = old {
        for (field, ptr) in [
            ("spec.scope", "/spec/scope"),
            ("spec.group", "/spec/group"),
            ("spec.names.plural", "/spec/names/plural"),
        ] {
            // The scope may change until the CRD is established (kube's update rule).
            let checked = ptr != "/spec/scope" || condition_true(old, "Established");
            if checked && s(old, ptr) != s(crd, ptr) {
                e.push(FieldError::invalid(
                    field,
                    json!(s(crd, ptr)),
                    "field is immutable",
                ));
            }
        }
    }
    e
}

/// The most `selectableFields` a version may have (kube's `MaxSelectableFields`).
const MAX_SELECTABLE_FIELDS: usize = 8;

/// kube's `ValidateCustomResourceSelectableFields`: each `jsonPath` names a string,
/// boolean or integer field of the schema outside `metadata`, once; at most 8.
fn validate_selectable_fields(v: &Value, p: &str, e: &mut Vec<FieldError>) {
    let Some(fields) = v.get("selectableFields").and_then(Value::as_array) else {
        return;
    };
    let fp = format!("{p}.selectableFields");
    let schema = v.pointer("/schema/openAPIV3Schema").unwrap_or(&Value::Null);
    let mut unique: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let jp = format!("{fp}[{i}].jsonPath");
        let path = s(f, "/jsonPath");
        if path.is_empty() {
            e.push(FieldError::required(jp, ""));
            continue;
        }
        let (names, found) = match cel::valid_field_path(schema, path, false) {
            Ok(r) => r,
            Err(why) => {
                e.push(FieldError::invalid(
                    jp,
                    json!(path),
                    format!("is an invalid path: {why}"),
                ));
                continue;
            }
        };
        if names.first().map(String::as_str) == Some("metadata") {
            e.push(FieldError::invalid(
                jp.clone(),
                json!(path),
                "must not point to fields in metadata",
            ));
        }
        if !matches!(s(found, "/type"), "string" | "boolean" | "integer") {
            e.push(FieldError::invalid(
                jp.clone(),
                json!(path),
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        let joined = names.join(".");
        if unique.contains(&joined) {
            e.push(FieldError::duplicate(jp, json!(path)));
        } else {
            unique.push(joined);
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        e.push(FieldError {
            path: fp,
            kind: crate::validation::FieldErrorKind::TooMany,
            message: format!("must have at most {MAX_SELECTABLE_FIELDS} items"),
            bad_value: Some(json!(unique.len())),
        });
    }
}

fn validate_names(crd: &Value, e: &mut Vec<FieldError>) {
    let label = |e: &mut Vec<FieldError>, field: &str, v: &str| {
        if !v.is_empty() {
            for m in crate::validation::is_dns1123_label(v) {
                e.push(FieldError::invalid(field.to_string(), json!(v), m));
            }
        }
    };
    let plural = s(crd, "/spec/names/plural");
    if plural.is_empty() {
        e.push(FieldError::required("spec.names.plural", ""));
    }
    label(e, "spec.names.plural", plural);
    label(e, "spec.names.singular", s(crd, "/spec/names/singular"));
    let kind = s(crd, "/spec/names/kind");
    if kind.is_empty() {
        e.push(FieldError::required("spec.names.kind", ""));
    }
    if s(crd, "/spec/names/listKind").is_empty() {
        e.push(FieldError::required("spec.names.listKind", ""));
    } else if s(crd, "/spec/names/listKind") == kind {
        e.push(FieldError::invalid(
            "spec.names.listKind",
            json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    for (i, sn) in crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        label(
            e,
            &format!("spec.names.shortNames[{i}]"),
            sn.as_str().unwrap_or(""),
        );
    }
}

/// The `NamesAccepted` decision of kube's naming controller: the CRD's names must not
/// be taken by another CRD of the same group (`others`: their `status.acceptedNames`),
/// nor by a built-in resource of that group. `Ok(())` or the condition's reason and
/// message.
pub fn names_conflict(crd: &Value, others: &[&Value]) -> Result<(), (&'static str, String)> {
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let singular = s(crd, "/spec/names/singular");
    let kind = s(crd, "/spec/names/kind");
    let list_kind = s(crd, "/spec/names/listKind");
    let short: Vec<&str> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for other in others {
        if s(other, "/spec/group") != group
            || s(other, "/metadata/name") == s(crd, "/metadata/name")
        {
            continue;
        }
        let n = other
            .pointer("/status/acceptedNames")
            .unwrap_or(&Value::Null);
        let on = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("");
        if on("plural") == plural || on("singular") == plural {
            return Err(("PluralConflict", format!("\"{plural}\" is already in use")));
        }
        if !singular.is_empty() && (on("plural") == singular || on("singular") == singular) {
            return Err((
                "SingularConflict",
                format!("\"{singular}\" is already in use"),
            ));
        }
        let oshort: Vec<&str> = n
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for sn in &short {
            if oshort.contains(sn) {
                return Err(("ShortNamesConflict", format!("\"{sn}\" is already in use")));
            }
        }
        if on("kind") == kind {
            return Err(("KindConflict", format!("\"{kind}\" is already in use")));
        }
        if on("listKind") == list_kind {
            return Err((
                "ListKindConflict",
                format!("\"{list_kind}\" is already in use"),
            ));
        }
    }
    if crate::registry::resources()
        .iter()
        .any(|r| r.group == group && (r.plural == plural || r.kind == kind))
    {
        return Err(("PluralConflict", format!("\"{plural}\" is already in use")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
