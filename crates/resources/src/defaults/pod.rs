//! Pods and pod specs (`SetDefaults_Pod`, `SetDefaults_PodSpec`, containers, probes,
//! volumes) plus the admission plugins every cluster runs on pods (`Priority`,
//! `DefaultTolerationSeconds`) and the status a new pod gets.

use serde_json::{json, Map, Value};

use super::{each_obj, obj_at, set};
use skiff_api::defaults::DEFAULT_TOLERATION_SECONDS;
use skiff_api::names::{NOT_READY_TAINT, UNREACHABLE_TAINT};

pub(super) fn default_pod(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    default_pod_spec(spec);
    set(spec, "enableServiceLinks", json!(true));
    // Priority admission: the built-in classes, else no class (or an unknown one) is 0.
    let priority = match spec.get("priorityClassName").and_then(Value::as_str) {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    set(spec, "priority", json!(priority));
    set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    // SetDefaults_Pod: requests default to limits.
    for list in ["containers", "initContainers"] {
        each_obj(spec, list, |c| {
            let Some(Value::Object(res)) = c.get_mut("resources") else {
                return;
            };
            let Some(Value::Object(limits)) = res.get("limits").cloned() else {
                return;
            };
            let req = obj_at(res, "requests");
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        });
    }
    add_default_tolerations(spec);
    let qos = qos_class(spec);
    let status = obj_at(o, "status");
    set(status, "phase", json!("Pending"));
    set(status, "qosClass", json!(qos));
}

/// `DefaultTolerationSeconds` admission: tolerate not-ready/unreachable for 300 s.
fn add_default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = set(spec, "tolerations", json!([]));
    let Value::Array(list) = tolerations else {
        return;
    };
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (tkey == key || (tkey.is_empty() && op == "Exists"))
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
    if list.is_empty() {
        spec.remove("tolerations");
    }
}

/// The pod's QoS class (`BestEffort`, `Burstable`, `Guaranteed`), as the API server
/// records it in `status.qosClass`.
pub fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            spec.get("initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let nonzero = |m: Option<&Map<String, Value>>, k: &str| {
            m.and_then(|m| m.get(k))
                .map(|v| !matches!(v.as_str(), Some("0")) && *v != json!(0))
                .unwrap_or(false)
        };
        for r in ["cpu", "memory"] {
            if nonzero(req, r) || nonzero(lim, r) {
                any = true;
            }
            if !nonzero(lim, r) {
                guaranteed = false;
            }
            if let (Some(a), Some(b)) = (req.and_then(|m| m.get(r)), lim.and_then(|m| m.get(r))) {
                if a != b {
                    guaranteed = false;
                }
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `SetDefaults_PodSpec` and everything below it (containers, volumes, probes).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    set(spec, "schedulerName", json!("default-scheduler"));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        // Host-network pods expose their container ports on the host.
        each_obj(spec, "containers", |c| {
            each_obj(c, "ports", |p| {
                if let Some(cp) = p.get("containerPort").cloned() {
                    set(p, "hostPort", cp);
                }
            })
        });
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_obj(spec, list, default_container);
    }
    each_obj(spec, "volumes", default_volume);
}

fn default_container(c: &mut Map<String, Value>) {
    let policy = image_pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    set(c, "imagePullPolicy", json!(policy));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    each_obj(c, "ports", |p| {
        set(p, "protocol", json!("TCP"));
    });
    each_obj(c, "env", |e| {
        if let Some(Value::Object(vf)) = e.get_mut("valueFrom") {
            if let Some(Value::Object(fr)) = vf.get_mut("fieldRef") {
                set(fr, "apiVersion", json!("v1"));
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                set(h, "scheme", json!("HTTP"));
                set(h, "path", json!("/"));
            }
        }
    }
    if let Some(Value::Object(lc)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = lc.get_mut(hook) {
                if let Some(Value::Object(g)) = h.get_mut("httpGet") {
                    set(g, "scheme", json!("HTTP"));
                    set(g, "path", json!("/"));
                }
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (also for digests).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_volume(v: &mut Map<String, Value>) {
    for (src, mode_key) in [
        ("secret", "defaultMode"),
        ("configMap", "defaultMode"),
        ("downwardAPI", "defaultMode"),
        ("projected", "defaultMode"),
    ] {
        if let Some(Value::Object(s)) = v.get_mut(src) {
            set(s, mode_key, json!(420));
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        set(h, "type", json!(""));
    }
    let has_source = v.keys().any(|k| k != "name");
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
}

/// Pod template defaults inside a workload spec (`spec.template.spec`).
pub(super) fn default_template(spec: &mut Map<String, Value>) {
    if let Some(Value::Object(t)) = spec.get_mut("template") {
        let ps = obj_at(t, "spec");
        default_pod_spec(ps);
    }
}
