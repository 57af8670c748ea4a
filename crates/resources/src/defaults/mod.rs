//! Defaulting, as kube-apiserver's `pkg/apis/*/v1/defaults.go` plus the admission
//! plugins that fill fields every real cluster shows (`DefaultTolerationSeconds`,
//! `Priority`) and the create-time status some registry strategies set.
//!
//! Defaulting is idempotent: running it twice changes nothing the second time, so the
//! API server may call it on create, update and patch alike.

use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

mod core_objects;
mod pod;
mod service;
mod workloads;

pub use pod::{default_pod_spec, image_pull_policy, qos_class};
pub(crate) use workloads::template_labels;

use core_objects::{
    default_endpoints, default_endpointslice, default_namespace, default_node,
    default_rbac_subjects,
};
use pod::{default_pod, default_template};
use service::default_service;
use workloads::{
    default_cronjob, default_daemonset, default_deployment, default_job, default_statefulset,
};

/// Fills in defaults of `obj`. The version's own defaults apply (`obj.apiVersion` when
/// set, else `info`'s version); call it on the object as received and again after
/// conversion to the storage version, or only on the storage version.
pub fn default_object(info: &ResourceInfo, obj: &mut Value) {
    if let Some(c) = info.custom {
        crate::crd::schema::apply_defaults(&c.schema, obj);
        return;
    }
    if (info.group, info.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
        crate::crd::default_crd(obj);
        return;
    }
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let version = o
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|av| crate::registry::split_api_version(av).1.to_string())
        .unwrap_or_else(|| info.version.to_string());
    match (info.group, info.kind) {
        ("", "Pod") => default_pod(o),
        ("", "Service") => default_service(o),
        ("", "Namespace") => default_namespace(o),
        ("", "Node") => default_node(o),
        ("", "Secret") => {
            set(o, "type", json!("Opaque"));
        }
        ("", "Endpoints") => default_endpoints(o),
        ("", "ReplicationController") => {
            let spec = obj_at(o, "spec");
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("", "PodTemplate") => default_template(o),
        ("apps", "Deployment") => default_deployment(o, &version),
        ("apps", "ReplicaSet") => {
            let spec = obj_at(o, "spec");
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "StatefulSet") => default_statefulset(o),
        ("apps", "DaemonSet") => default_daemonset(o),
        ("batch", "Job") => default_job(o),
        ("batch", "CronJob") => default_cronjob(o),
        ("discovery.k8s.io", "EndpointSlice") => default_endpointslice(o),
        ("", "PersistentVolume") => {
            let spec = obj_at(o, "spec");
            set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set(spec, "volumeMode", json!("Filesystem"));
            if let Some(hp) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
                set(hp, "type", json!(""));
            }
            set(obj_at(o, "status"), "phase", json!("Pending"));
        }
        ("", "PersistentVolumeClaim") => {
            set(obj_at(o, "spec"), "volumeMode", json!("Filesystem"));
            set(obj_at(o, "status"), "phase", json!("Pending"));
        }
        ("storage.k8s.io", "StorageClass") => {
            set(o, "reclaimPolicy", json!("Delete"));
            set(o, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => {
            let spec = obj_at(o, "spec");
            set(spec, "attachRequired", json!(true));
            set(spec, "podInfoOnMount", json!(false));
            set(spec, "storageCapacity", json!(false));
            set(spec, "requiresRepublish", json!(false));
            set(spec, "seLinuxMount", json!(false));
            set(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            set(spec, "volumeLifecycleModes", json!(["Persistent"]));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_rbac_subjects(o)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            default_webhooks(o, true)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            default_webhooks(o, false)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set(o, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(o, &version),
        _ => {}
    }
}

/// `pkg/apis/autoscaling/{v1,v2}/defaults.go`: `minReplicas: 1`; in v2, no metrics
/// means 80% CPU utilisation, and a `behavior` given gets its missing rules and fields
/// (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`).
fn default_hpa(o: &mut Map<String, Value>, version: &str) {
    let spec = obj_at(o, "spec");
    set(spec, "minReplicas", json!(1));
    if version != "v2" {
        return;
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else {
        return;
    };
    let rules = [
        (
            "scaleUp",
            0,
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                   {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
        (
            "scaleDown",
            300,
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
    ];
    for (key, window, policies) in rules {
        let r = obj_at(behavior, key);
        set(r, "stabilizationWindowSeconds", json!(window));
        set(r, "selectPolicy", json!("Max"));
        set(r, "policies", policies);
    }
}

/// The defaults of `admissionregistration/v1` webhooks (`SetDefaults_*Webhook`).
fn default_webhooks(o: &mut Map<String, Value>, mutating: bool) {
    let Some(hooks) = o.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for h in hooks.iter_mut().filter_map(Value::as_object_mut) {
        set(h, "failurePolicy", json!("Fail"));
        set(h, "matchPolicy", json!("Equivalent"));
        set(h, "namespaceSelector", json!({}));
        set(h, "objectSelector", json!({}));
        set(h, "timeoutSeconds", json!(10));
        if mutating {
            set(h, "reinvocationPolicy", json!("Never"));
        }
        if let Some(rules) = h.get_mut("rules").and_then(Value::as_array_mut) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                set(r, "scope", json!("*"));
            }
        }
        if let Some(svc) = h
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            set(svc, "port", json!(443));
        }
    }
}

/// Sets `key` when absent or null. Returns the (possibly existing) value.
pub(super) fn set<'a>(o: &'a mut Map<String, Value>, key: &str, v: Value) -> &'a mut Value {
    let e = o.entry(key.to_string()).or_insert(Value::Null);
    if e.is_null() {
        *e = v;
    }
    e
}

/// The object at `key`, created empty when absent or not an object.
pub(super) fn obj_at<'a>(o: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let e = o
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    match e {
        Value::Object(m) => m,
        // Just made it an object above.
        _ => unreachable!("value was replaced by an object"),
    }
}

/// Each object of the array at `key` (nothing when absent).
pub(super) fn each_obj(
    o: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Array(a)) = o.get_mut(key) {
        for x in a.iter_mut() {
            if let Value::Object(m) = x {
                f(m);
            }
        }
    }
}

#[cfg(test)]
mod tests;
