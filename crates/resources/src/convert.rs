//! Version conversion between the served versions of one kind.
//!
//! The only kind served in two versions is the Deployment (`apps/v1beta1`, which the
//! seed's manifest uses, and the storage version `apps/v1`). `events.k8s.io/v1` Events are
//! stored on their own, so they need no conversion.

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
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "Deployment" && from == "apps/v1beta1" && to_api_version == "apps/v1" {
        beta_deployment_to_v1(o);
    }
    o.insert("apiVersion".into(), json!(to_api_version));
    obj
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
}
