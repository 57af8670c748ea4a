//! Pod specs (also inside templates) and the restrictions on pod updates.

use serde_json::{json, Value};

use super::super::names::*;
use super::super::FieldError;
use super::service::PROTOCOLS;
use super::{arr, s, Errs};

pub(super) fn validate_pod_template(t: Option<&Value>, path: &str, e: &mut Errs) {
    let Some(t) = t else {
        e.push(FieldError::required(path, ""));
        return;
    };
    if let Some(labels) = t.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for m in is_qualified_name(k) {
                e.push(FieldError::invalid(
                    format!("{path}.metadata.labels"),
                    json!(k),
                    m,
                ));
            }
            for m in is_valid_label_value(v.as_str().unwrap_or_default()) {
                e.push(FieldError::invalid(
                    format!("{path}.metadata.labels"),
                    v.clone(),
                    m,
                ));
            }
        }
    }
    validate_pod_spec(
        t.get("spec").unwrap_or(&Value::Null),
        &format!("{path}.spec"),
        true,
        e,
    );
}

pub(super) fn validate_pod_spec(spec: &Value, path: &str, require_image: bool, e: &mut Errs) {
    let containers = arr(spec, "/containers");
    if containers.is_empty() {
        e.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names: Vec<&str> = Vec::new();
    for (list, items) in [
        ("initContainers", arr(spec, "/initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in items.iter().enumerate() {
            let cp = format!("{path}.{list}[{i}]");
            container_name(&cp, s(c, "/name").unwrap_or(""), &mut names, e);
            if require_image && s(c, "/image").unwrap_or("").trim().is_empty() {
                e.push(FieldError::required(format!("{cp}.image"), ""));
            }
            if let Some(pol) = s(c, "/imagePullPolicy") {
                const POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
                if !POLICIES.contains(&pol) {
                    e.push(FieldError::not_supported(
                        format!("{cp}.imagePullPolicy"),
                        json!(pol),
                        POLICIES,
                    ));
                }
            }
            for (j, p) in arr(c, "/ports").iter().enumerate() {
                let pp = format!("{cp}.ports[{j}]");
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                for m in is_valid_port_num(port) {
                    e.push(FieldError::invalid(
                        format!("{pp}.containerPort"),
                        json!(port),
                        m,
                    ));
                }
                if let Some(hp) = p.get("hostPort").and_then(Value::as_i64) {
                    if hp != 0 {
                        for m in is_valid_port_num(hp) {
                            e.push(FieldError::invalid(format!("{pp}.hostPort"), json!(hp), m));
                        }
                    }
                }
                if let Some(proto) = s(p, "/protocol") {
                    if !PROTOCOLS.contains(&proto) {
                        e.push(FieldError::not_supported(
                            format!("{pp}.protocol"),
                            json!(proto),
                            PROTOCOLS,
                        ));
                    }
                }
                if let Some(n) = s(p, "/name") {
                    for m in is_valid_port_name(n) {
                        e.push(FieldError::invalid(format!("{pp}.name"), json!(n), m));
                    }
                }
            }
            validate_resources(c, &cp, e);
            for (j, env) in arr(c, "/env").iter().enumerate() {
                if s(env, "/name").unwrap_or("").is_empty() {
                    e.push(FieldError::required(format!("{cp}.env[{j}].name"), ""));
                }
            }
        }
    }
    validate_ephemeral_containers(spec, path, &mut names, e);
    if let Some(rp) = s(spec, "/restartPolicy") {
        const RP: &[&str] = &["Always", "OnFailure", "Never"];
        if !RP.contains(&rp) {
            e.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                json!(rp),
                RP,
            ));
        }
    }
    if let Some(dp) = s(spec, "/dnsPolicy") {
        const DP: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !DP.contains(&dp) {
            e.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                json!(dp),
                DP,
            ));
        }
    }
    let mut vols: Vec<&str> = Vec::new();
    for (i, v) in arr(spec, "/volumes").iter().enumerate() {
        let name = s(v, "/name").unwrap_or("");
        let vp = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            e.push(FieldError::required(vp, ""));
        } else {
            for m in is_dns1123_label(name) {
                e.push(FieldError::invalid(vp.clone(), json!(name), m));
            }
            if vols.contains(&name) {
                e.push(FieldError::duplicate(vp, json!(name)));
            }
            vols.push(name);
        }
    }
}

/// The fields of an `EphemeralContainer` that may not be set, in the order of Go's
/// `EphemeralContainerCommon` (kube's `allowedEphemeralContainerFields` lists the
/// others as allowed).
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// Whether a JSON value is its Go type's zero value (an unset field).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_zero),
    }
}

/// kube's `validateEphemeralContainers`: each is a container whose name is unique
/// among all the pod's containers, whose `targetContainerName` names an app or init
/// container, and which sets none of the fields an ephemeral container may not have
/// (ports, probes, resources, lifecycle; no volume `subPath`).
fn validate_ephemeral_containers<'a>(
    spec: &'a Value,
    path: &str,
    names: &mut Vec<&'a str>,
    e: &mut Errs,
) {
    let others: Vec<&str> = ["/containers", "/initContainers"]
        .iter()
        .flat_map(|p| arr(spec, p))
        .filter_map(|c| s(c, "/name"))
        .collect();
    for (i, c) in arr(spec, "/ephemeralContainers").iter().enumerate() {
        let cp = format!("{path}.ephemeralContainers[{i}]");
        container_name(&cp, s(c, "/name").unwrap_or(""), names, e);
        if s(c, "/image").unwrap_or("").trim().is_empty() {
            e.push(FieldError::required(format!("{cp}.image"), ""));
        }
        if let Some(pol) = s(c, "/imagePullPolicy") {
            const POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
            if !POLICIES.contains(&pol) {
                e.push(FieldError::not_supported(
                    format!("{cp}.imagePullPolicy"),
                    json!(pol),
                    POLICIES,
                ));
            }
        }
        if let Some(t) = s(c, "/targetContainerName").filter(|t| !t.is_empty()) {
            if !others.contains(&t) {
                e.push(FieldError::not_found(
                    format!("{cp}.targetContainerName"),
                    json!(t),
                ));
            }
        }
        for f in EPHEMERAL_FORBIDDEN {
            if c.get(*f).is_some_and(|v| !is_zero(v)) {
                e.push(FieldError::forbidden(
                    format!("{cp}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in arr(c, "/volumeMounts").iter().enumerate() {
            for f in ["subPath", "subPathExpr"] {
                if s(m, &format!("/{f}")).is_some_and(|v| !v.is_empty()) {
                    e.push(FieldError::forbidden(
                        format!("{cp}.volumeMounts[{j}].{f}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
        for (j, env) in arr(c, "/env").iter().enumerate() {
            if s(env, "/name").unwrap_or("").is_empty() {
                e.push(FieldError::required(format!("{cp}.env[{j}].name"), ""));
            }
        }
    }
}

/// kube's `ValidatePodEphemeralContainersUpdate` (what the `ephemeralcontainers`
/// subresource checks instead of a pod update): static pods have none; existing
/// ephemeral containers may be neither removed nor changed (each is found by name, as
/// a patch need not keep the order).
pub(super) fn validate_ephemeral_containers_update(new: &Value, old: &Value, e: &mut Errs) {
    if old
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        e.clear();
        e.push(FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        ));
        return;
    }
    let new_ecs = arr(new, "/spec/ephemeralContainers");
    for o in arr(old, "/spec/ephemeralContainers") {
        let name = s(o, "/name").unwrap_or("");
        match new_ecs.iter().find(|n| s(n, "/name") == Some(name)) {
            None => e.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(n) if n != o => e.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {name:?} may not be changed\n{}",
                    field_diff(o, n)
                ),
            )),
            Some(_) => {}
        }
    }
}

/// The fields that differ between two objects, one `-`/`+` line pair each (where Go
/// prints `cmp.Diff` of the structs).
fn field_diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a == b {
            continue;
        }
        if let Some(a) = a {
            out.push_str(&format!("- {k}: {a}\n"));
        }
        if let Some(b) = b {
            out.push_str(&format!("+ {k}: {b}\n"));
        }
    }
    out
}

/// Pod spec updates may change only images, `activeDeadlineSeconds`, additions to
/// tolerations, `terminationGracePeriodSeconds` and removal of scheduling gates.
pub(super) fn validate_pod_update(new: &Value, old: &Value, e: &mut Errs) {
    let mask = |spec: &Value| -> Value {
        let mut spec = spec.clone();
        if let Some(m) = spec.as_object_mut() {
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = m.get_mut(list) {
                    for c in cs.iter_mut() {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                        }
                    }
                }
            }
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
                "schedulingGates",
            ] {
                m.remove(k);
            }
        }
        spec
    };
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    if mask(&new_spec) != mask(&old_spec) {
        e.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    let old_tol = arr(old, "/spec/tolerations");
    let new_tol = arr(new, "/spec/tolerations");
    if old_tol.iter().any(|t| !new_tol.contains(t)) {
        e.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

/// A container's `resources`: no negative quantity, no request above its limit
/// (kube's `ValidateContainerResourceRequirements`).
fn validate_resources(c: &Value, cp: &str, e: &mut Errs) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let limits = c.pointer("/resources/limits").and_then(Value::as_object);
    for part in ["limits", "requests"] {
        let Some(m) = c
            .pointer(&format!("/resources/{part}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, q) in m {
            let qs = text(q);
            let Some(value) = skiff_api::quantity::parse(&qs) else {
                continue;
            };
            let path = format!("{cp}.resources.{part}[{name}]");
            if value < 0.0 {
                e.push(FieldError::invalid(
                    path.clone(),
                    json!(qs),
                    "must be greater than or equal to 0",
                ));
            }
            if part == "requests" {
                if let Some(limit) = limits.and_then(|l| l.get(name)) {
                    let ls = text(limit);
                    if skiff_api::quantity::parse(&ls).is_some_and(|l| l < value) {
                        e.push(FieldError::invalid(
                            path,
                            json!(qs),
                            format!("must be less than or equal to {name} limit of {ls}"),
                        ));
                    }
                }
            }
        }
    }
}

/// A container's name at `cp`: required, a DNS-1123 label, unique among `names` (the
/// pod's containers of every kind seen so far, to which it is added).
fn container_name<'a>(cp: &str, name: &'a str, names: &mut Vec<&'a str>, e: &mut Errs) {
    if name.is_empty() {
        e.push(FieldError::required(format!("{cp}.name"), ""));
        return;
    }
    for m in is_dns1123_label(name) {
        e.push(FieldError::invalid(format!("{cp}.name"), json!(name), m));
    }
    if names.contains(&name) {
        e.push(FieldError::duplicate(format!("{cp}.name"), json!(name)));
    } else {
        names.push(name);
    }
}
