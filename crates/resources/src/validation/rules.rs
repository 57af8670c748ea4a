//! Per-kind validation rules.

use serde_json::{json, Map, Value};

use super::names::*;
use super::FieldError;
use crate::registry::ResourceInfo;

type Errs = Vec<FieldError>;

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}
fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// How a kind's names are checked.
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// Path segment names (RBAC, events): anything but `.`/`..`/`/`/`%`.
    PathSegment,
}

fn name_rule(info: &ResourceInfo) -> NameRule {
    match (info.group, info.kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) | ("", "Event") | ("events.k8s.io", _) => {
            NameRule::PathSegment
        }
        _ => NameRule::Subdomain,
    }
}

pub(super) fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Errs {
    let mut e = Errs::new();
    validate_meta(info, obj, old, &mut e);
    match (info.group, info.kind) {
        ("", "Pod") => {
            validate_pod_spec(
                obj.get("spec").unwrap_or(&Value::Null),
                "spec",
                true,
                &mut e,
            );
            if let Some(old) = old {
                validate_pod_update(obj, old, &mut e);
            }
        }
        ("", "Service") => validate_service(obj, old, &mut e),
        ("", "ConfigMap") => validate_data(obj, "data", true, &mut e),
        ("", "Secret") => {
            validate_data(obj, "data", false, &mut e);
            if let Some(old) = old {
                if s(obj, "/type").unwrap_or("Opaque") != s(old, "/type").unwrap_or("Opaque") {
                    e.push(FieldError::invalid(
                        "type",
                        json!(s(obj, "/type").unwrap_or("")),
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "Node") => {
            if let Some(old) = old {
                let before = old
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let after = obj
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !before.is_empty() && before != after {
                    e.push(FieldError::forbidden(
                        "spec.podCIDRs",
                        "node updates may not change podCIDR except from \"\" to valid",
                    ));
                }
            }
        }
        ("apps", "Deployment")
        | ("apps", "ReplicaSet")
        | ("apps", "StatefulSet")
        | ("apps", "DaemonSet") => validate_workload(info, obj, old, &mut e),
        ("batch", "Job") => {
            validate_pod_template(obj.pointer("/spec/template"), "spec.template", &mut e);
            let rp = s(obj, "/spec/template/spec/restartPolicy").unwrap_or("");
            if rp != "Never" && rp != "OnFailure" {
                e.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    json!(rp),
                    &["OnFailure", "Never"],
                ));
            }
        }
        _ => {}
    }
    e
}

fn validate_meta(info: &ResourceInfo, obj: &Value, old: Option<&Value>, e: &mut Errs) {
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

fn validate_data(obj: &Value, field: &str, with_binary: bool, e: &mut Errs) {
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

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn validate_port_num_or_name(v: &Value, path: &str, e: &mut Errs) {
    match v {
        Value::Number(n) => {
            for m in is_valid_port_num(n.as_i64().unwrap_or(0)) {
                e.push(FieldError::invalid(path, v.clone(), m));
            }
        }
        Value::String(name) => {
            // A numeric string is an int-or-string holding a number.
            if let Ok(n) = name.parse::<i64>() {
                for m in is_valid_port_num(n) {
                    e.push(FieldError::invalid(path, json!(n), m));
                }
            } else {
                for m in is_valid_port_name(name) {
                    e.push(FieldError::invalid(path, v.clone(), m));
                }
            }
        }
        _ => {}
    }
}

fn validate_service(svc: &Value, old: Option<&Value>, e: &mut Errs) {
    let ty = s(svc, "/spec/type").unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&ty) {
        e.push(FieldError::not_supported("spec.type", json!(ty), TYPES));
    }
    let cluster_ip = s(svc, "/spec/clusterIP").unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = arr(svc, "/spec/ports");
    if ty == "ExternalName" {
        let name = s(svc, "/spec/externalName").unwrap_or("");
        if name.is_empty() {
            e.push(FieldError::required("spec.externalName", ""));
        } else {
            for m in is_dns1123_subdomain(name.trim_end_matches('.')) {
                e.push(FieldError::invalid("spec.externalName", json!(name), m));
            }
        }
        if !cluster_ip.is_empty() {
            e.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && !headless {
        e.push(FieldError::required("spec.ports", ""));
    }
    if let Some(aff) = s(svc, "/spec/sessionAffinity") {
        if aff != "None" && aff != "ClientIP" {
            e.push(FieldError::not_supported(
                "spec.sessionAffinity",
                json!(aff),
                &["ClientIP", "None"],
            ));
        }
    }
    let require_name = ports.len() > 1;
    let mut names: Vec<&str> = Vec::new();
    let mut keys: Vec<(i64, &str)> = Vec::new();
    let mut node_ports: Vec<(i64, &str)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = s(p, "/name").unwrap_or("");
        if require_name && name.is_empty() {
            e.push(FieldError::required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.push(FieldError::invalid(format!("{path}.name"), json!(name), m));
            }
            if names.contains(&name) {
                e.push(FieldError::duplicate(format!("{path}.name"), json!(name)));
            }
            names.push(name);
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        for m in is_valid_port_num(port) {
            e.push(FieldError::invalid(format!("{path}.port"), json!(port), m));
        }
        let proto = s(p, "/protocol").unwrap_or("");
        if proto.is_empty() {
            e.push(FieldError::required(format!("{path}.protocol"), ""));
        } else if !PROTOCOLS.contains(&proto) {
            e.push(FieldError::not_supported(
                format!("{path}.protocol"),
                json!(proto),
                PROTOCOLS,
            ));
        }
        if let Some(tp) = p.get("targetPort") {
            validate_port_num_or_name(tp, &format!("{path}.targetPort"), e);
        }
        if keys.contains(&(port, proto)) {
            e.push(FieldError::duplicate(
                path.clone(),
                json!(format!(
                    "core.ServicePort{{Port:{port}, Protocol:{proto:?}}}"
                )),
            ));
        }
        keys.push((port, proto));
        let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if np != 0 {
            if ty == "ClusterIP" || ty == "ExternalName" {
                e.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else {
                let (lo, hi) = (
                    i64::from(skiff_api::defaults::NODE_PORT_MIN),
                    i64::from(skiff_api::defaults::NODE_PORT_MAX),
                );
                if !(lo..=hi).contains(&np) {
                    e.push(FieldError::invalid(
                        format!("{path}.nodePort"),
                        json!(np),
                        format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                    ));
                }
                if node_ports.contains(&(np, proto)) {
                    e.push(FieldError::duplicate(format!("{path}.nodePort"), json!(np)));
                }
                node_ports.push((np, proto));
            }
        }
    }
    if let Some(old) = old {
        let old_ips: Vec<&str> = arr(old, "/spec/clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let new_ips: Vec<&str> = arr(svc, "/spec/clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let old_ip = s(old, "/spec/clusterIP").unwrap_or("");
        let changing_external =
            ty == "ExternalName" || s(old, "/spec/type") == Some("ExternalName");
        if !changing_external {
            let old_first = old_ips.first().copied().unwrap_or(old_ip);
            let new_first = new_ips.first().copied().unwrap_or(cluster_ip);
            if !old_first.is_empty() && !new_first.is_empty() && old_first != new_first {
                e.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    json!(new_ips),
                    "may not change once set",
                ));
            }
        }
    }
}

fn validate_pod_template(t: Option<&Value>, path: &str, e: &mut Errs) {
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

fn validate_pod_spec(spec: &Value, path: &str, require_image: bool, e: &mut Errs) {
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
            let name = s(c, "/name").unwrap_or("");
            if name.is_empty() {
                e.push(FieldError::required(format!("{cp}.name"), ""));
            } else {
                for m in is_dns1123_label(name) {
                    e.push(FieldError::invalid(format!("{cp}.name"), json!(name), m));
                }
                if names.contains(&name) {
                    e.push(FieldError::duplicate(format!("{cp}.name"), json!(name)));
                }
                names.push(name);
            }
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
            for (j, env) in arr(c, "/env").iter().enumerate() {
                if s(env, "/name").unwrap_or("").is_empty() {
                    e.push(FieldError::required(format!("{cp}.env[{j}].name"), ""));
                }
            }
        }
    }
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

/// Pod spec updates may change only images, `activeDeadlineSeconds`, additions to
/// tolerations, `terminationGracePeriodSeconds` and removal of scheduling gates.
fn validate_pod_update(new: &Value, old: &Value, e: &mut Errs) {
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

fn selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    let ml = sel.get("matchLabels").and_then(Value::as_object);
    let labels_ok = ml
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = arr(sel, "/matchExpressions").iter().all(|x| {
        let key = s(x, "/key").unwrap_or("");
        let vals: Vec<&str> = arr(x, "/values").iter().filter_map(Value::as_str).collect();
        let have = labels.get(key).and_then(Value::as_str);
        match s(x, "/operator").unwrap_or("") {
            "In" => have.is_some_and(|h| vals.contains(&h)),
            "NotIn" => have.is_none_or(|h| !vals.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

fn selector_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && arr(sel, "/matchExpressions").is_empty()
}

/// Go's `%#v` of a LabelSelector, as kube-apiserver prints it in messages.
fn go_selector(sel: &Value) -> String {
    let ml = match sel.get("matchLabels").and_then(Value::as_object) {
        Some(m) => super::go_value(&Value::Object(m.clone())),
        None => "map[string]string(nil)".into(),
    };
    let me = if arr(sel, "/matchExpressions").is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        format!(
            "[]v1.LabelSelectorRequirement{{...{} requirements}}",
            arr(sel, "/matchExpressions").len()
        )
    };
    format!("&v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}")
}

fn validate_workload(info: &ResourceInfo, obj: &Value, old: Option<&Value>, e: &mut Errs) {
    for f in ["replicas", "revisionHistoryLimit", "minReadySeconds"] {
        if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) {
            if n < 0 {
                e.push(FieldError::invalid(
                    format!("spec.{f}"),
                    json!(n),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    let kind = info.kind.to_lowercase();
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mismatch = FieldError::invalid(
        "spec.template.metadata.labels",
        Value::Object(labels.clone()),
        "`selector` does not match template `labels`",
    );
    match obj.pointer("/spec/selector").filter(|v| !v.is_null()) {
        None => {
            // A missing selector selects nothing, so the template never matches either.
            e.push(FieldError::required("spec.selector", ""));
            e.push(mismatch);
        }
        Some(sel) => {
            if selector_empty(sel) {
                e.push(FieldError {
                    path: "spec.selector".into(),
                    kind: super::FieldErrorKind::Invalid,
                    message: format!("empty selector is invalid for {kind}"),
                    bad_value: Some(Value::String(go_selector(sel))),
                });
            } else if !selector_matches(sel, &labels) {
                e.push(mismatch);
            }
            if let Some(old_sel) = old.and_then(|o| o.pointer("/spec/selector")) {
                if old_sel != sel {
                    e.push(FieldError {
                        path: "spec.selector".into(),
                        kind: super::FieldErrorKind::Invalid,
                        message: "field is immutable".into(),
                        bad_value: Some(Value::String(go_selector(sel))),
                    });
                }
            }
        }
    }
    if info.kind == "Deployment" {
        let min_ready = obj
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(pd) = obj
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
        {
            if pd <= min_ready {
                e.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    json!(pd),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        let st = s(obj, "/spec/strategy/type").unwrap_or("RollingUpdate");
        if st != "RollingUpdate" && st != "Recreate" {
            e.push(FieldError::not_supported(
                "spec.strategy.type",
                json!(st),
                &["Recreate", "RollingUpdate"],
            ));
        }
        if st == "Recreate"
            && obj
                .pointer("/spec/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
        {
            e.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        let zero = |p: &str| match obj.pointer(p) {
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s == "0" || s == "0%",
            _ => false,
        };
        if st == "RollingUpdate"
            && zero("/spec/strategy/rollingUpdate/maxUnavailable")
            && zero("/spec/strategy/rollingUpdate/maxSurge")
        {
            e.push(FieldError::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable")
                    .cloned()
                    .unwrap_or(Value::Null),
                "may not be 0 when `maxSurge` is 0",
            ));
        }
    }
    validate_pod_template(obj.pointer("/spec/template"), "spec.template", e);
    if info.kind != "StatefulSet" || s(obj, "/spec/template/spec/restartPolicy").is_some() {
        let rp = s(obj, "/spec/template/spec/restartPolicy").unwrap_or("Always");
        if rp != "Always" {
            e.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                json!(rp),
                &["Always"],
            ));
        }
    }
}

#[cfg(test)]
mod tests;
