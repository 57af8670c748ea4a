//! Version conversion between the served versions of one kind.
//!
//! The only kind served in several versions is the Deployment: `apps/v1beta1` (the seed's
//! manifest uses it), `apps/v1beta2` and the storage version `apps/v1`. apps/v1beta2 has
//! the same fields as apps/v1 (kube-apiserver's conversion is field for field), so only
//! its `apiVersion` changes; its defaults are apps/v1's and apply after conversion. `events.k8s.io/v1` Events
//! and core `v1` Events are the same objects in kube-apiserver (stored as core Events);
//! [`convert`] maps between them for a server that wants the same, field by field as
//! `pkg/apis/events/v1/conversion.go`. HorizontalPodAutoscalers are served as
//! `autoscaling/v1` and stored as `autoscaling/v2` ([`autoscaling`]).

mod autoscaling;

use serde_json::{json, Map, Value};

use crate::defaults::template_labels;

/// Converts `obj` to `to_api_version`. Objects already in that version, and kinds with
/// nothing to convert, only get their `apiVersion` set.
///
/// `apps/v1beta1` → `apps/v1` Deployment: the v1beta1 defaults that v1 lacks are applied
/// first, as kube-apiserver does when decoding (selector and labels from the template's
/// labels, `revisionHistoryLimit: 2`), and `spec.rollbackTo` (gone in v1) is dropped.
pub fn convert(obj: Value, to_api_version: &str) -> Value {
    let mut obj = obj;
    let Some(o) = obj.as_object_mut() else {
        return obj;
    };
    let from = o
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = o
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "Deployment" && from == "apps/v1beta1" && to_api_version == "apps/v1" {
        beta_deployment_to_v1(o);
    }
    if kind == "Event" && from == "events.k8s.io/v1" && to_api_version == "v1" {
        rename_fields(o, EVENT_FIELDS, false);
    }
    if kind == "Event" && from == "v1" && to_api_version == "events.k8s.io/v1" {
        rename_fields(o, EVENT_FIELDS, true);
    }
    if kind == "HorizontalPodAutoscaler"
        && from == "autoscaling/v2"
        && to_api_version == "autoscaling/v1"
    {
        autoscaling::v2_to_v1(o);
    }
    if kind == "HorizontalPodAutoscaler"
        && from == "autoscaling/v1"
        && to_api_version == "autoscaling/v2"
    {
        autoscaling::v1_to_v2(o);
    }
    o.insert("apiVersion".into(), json!(to_api_version));
    obj
}

/// events.k8s.io/v1 field ↔ core v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename_fields(o: &mut Map<String, Value>, pairs: &[(&str, &str)], reverse: bool) {
    for (a, b) in pairs {
        let (from, to) = if reverse { (b, a) } else { (a, b) };
        if let Some(v) = o.remove(*from) {
            o.insert((*to).to_string(), v);
        }
    }
}

fn beta_deployment_to_v1(o: &mut Map<String, Value>) {
    let labels = o
        .get("spec")
        .and_then(Value::as_object)
        .and_then(template_labels);
    if let Some(Value::Object(spec)) = o.get_mut("spec") {
        spec.remove("rollbackTo");
        if spec.get("selector").is_none_or(Value::is_null) {
            if let Some(l) = labels.clone() {
                spec.insert("selector".into(), json!({"matchLabels": l}));
            }
        }
        if spec.get("revisionHistoryLimit").is_none_or(Value::is_null) {
            spec.insert("revisionHistoryLimit".into(), json!(2));
        }
    }
    if let (Some(l), Some(Value::Object(meta))) = (labels, o.get_mut("metadata")) {
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_convert_both_ways() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started",
            "reportingController": "skiff/agent", "reportingInstance": "k8s-n1", "deprecatedCount": 2,
            "eventTime": "2026-11-25T12:00:00.000000Z", "type": "Normal", "action": "Start"});
        let core = convert(new.clone(), "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "skiff/agent");
        assert_eq!(core["count"], 2);
        assert!(core.get("note").is_none());
        assert_eq!(convert(core, "events.k8s.io/v1"), new);
    }

    #[test]
    fn hpa_converts_between_v1_and_v2_with_kube_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"a": "b"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "70m"}}}],
                       "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        let v1 = convert(v2.clone(), "autoscaling/v1");
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(
            v1["spec"],
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                   "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50})
        );
        assert_eq!(
            v1["status"],
            json!({"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70})
        );
        let ann = &v1["metadata"]["annotations"];
        assert_eq!(ann["a"], "b");
        assert_eq!(
            ann["autoscaling.alpha.kubernetes.io/metrics"],
            r#"[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"100Mi"}}]"#
        );
        assert_eq!(
            ann["autoscaling.alpha.kubernetes.io/current-metrics"],
            r#"[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":70,"currentAverageValue":"70m"}}]"#
        );
        assert_eq!(
            ann["autoscaling.alpha.kubernetes.io/behavior"],
            r#"{"scaleDown":{"stabilizationWindowSeconds":60}}"#
        );
        assert!(ann["autoscaling.alpha.kubernetes.io/conditions"]
            .as_str()
            .is_some_and(|c| c.contains("ReadyForNewScale")));
        // And back: nothing lost, the round-trip annotations gone.
        assert_eq!(convert(v1, "autoscaling/v2"), v2);
        // A plain v1 object: its CPU target is a v2 metric.
        let plain = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3,
                     "targetCPUUtilizationPercentage": 80}});
        let v2 = convert(plain.clone(), "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert_eq!(convert(v2, "autoscaling/v1"), plain);
    }

    #[test]
    fn seed_deployment_converts_to_v1() {
        let beta = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
            "metadata": {"name": "httpd"},
            "spec": {"replicas": 4, "rollbackTo": {"revision": 1},
                     "template": {"metadata": {"labels": {"run": "httpd"}},
                                  "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}}}});
        let v1 = convert(beta, "apps/v1");
        assert_eq!(v1["apiVersion"], "apps/v1");
        assert_eq!(
            v1["spec"]["selector"],
            json!({"matchLabels": {"run": "httpd"}})
        );
        assert_eq!(v1["spec"]["revisionHistoryLimit"], 2);
        assert_eq!(v1["metadata"]["labels"], json!({"run": "httpd"}));
        assert!(v1["spec"].get("rollbackTo").is_none());
        let back = convert(v1.clone(), "apps/v1beta1");
        assert_eq!(back["apiVersion"], "apps/v1beta1");
        assert_eq!(back["spec"], v1["spec"]);
    }

    #[test]
    fn v1beta2_deployment_converts_field_for_field() {
        let beta2 = json!({"apiVersion": "apps/v1beta2", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let v1 = convert(beta2.clone(), "apps/v1");
        assert_eq!(v1["apiVersion"], "apps/v1");
        // No v1beta1-style defaults: the history limit comes from apps/v1's defaulting.
        assert!(v1["spec"].get("revisionHistoryLimit").is_none());
        assert_eq!(v1["spec"], beta2["spec"]);
        assert_eq!(convert(v1, "apps/v1beta2"), beta2);
        // Without a selector nothing is invented (validation then requires one).
        let bare = json!({"apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        assert!(convert(bare, "apps/v1")["spec"].get("selector").is_none());
    }
}
