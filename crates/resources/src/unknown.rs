//! Unknown-field detection against the OpenAPI schemas, for `fieldValidation=Strict`
//! (400 `strict decoding error: unknown field "spec.foo"`) and `Warn` (a `Warning`
//! header per field). Duplicate fields cannot be seen in a parsed `Value`, so they are
//! not reported here.

use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::schema;

/// Paths of fields the kind's schema does not declare, in `.spec.foo` /
/// `.spec.ports[0].foo` form (Kubernetes' messages drop the leading dot). Maps
/// (`additionalProperties`), int-or-string, quantities and schemas marked
/// `x-kubernetes-preserve-unknown-fields` accept anything. Kinds without a schema
/// report nothing.
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    let (group, version) = match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) => crate::registry::split_api_version(av),
        None => (info.group, info.version),
    };
    let Some(s) = schema::kind_schema(group, version, info.kind)
        .or_else(|| schema::kind_schema(info.group, info.version, info.kind))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(obj, s, "", &mut out);
    out
}

fn walk(v: &Value, s: &'static Value, path: &str, out: &mut Vec<String>) {
    let r = schema::resolve(s);
    if r.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || r.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
    {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = r.get("properties").and_then(Value::as_object) {
                for (k, x) in m {
                    let p = format!("{path}.{k}");
                    match props.get(k) {
                        Some(ps) => walk(x, ps, &p, out),
                        None => out.push(p),
                    }
                }
            } else if let Some(ap) = schema::additional_properties(s) {
                for (k, x) in m {
                    walk(x, ap, &format!("{path}.{k}"), out);
                }
            }
            // Otherwise a free-form object (RawExtension, FieldsV1...).
        }
        Value::Array(a) => {
            if let Some(items) = schema::items(s) {
                for (i, x) in a.iter().enumerate() {
                    walk(x, items, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let info = lookup("apps", "v1beta1", "deployments").expect("deployments");
        let d = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
            "metadata": {"name": "httpd", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 4, "rollbackTo": {"revision": 1},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"run": "httpd"}},
                                  "spec": {"containers": [{"name": "httpd", "image": "httpd", "colour": "red",
                                           "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                                           "ports": [{"containerPort": 80, "hostIP": "x", "prot": "TCP"}]}]}}}});
        assert_eq!(
            unknown_fields(info, &d),
            vec![
                ".metadata.bogus",
                ".spec.template.spec.containers[0].colour",
                ".spec.template.spec.containers[0].ports[0].prot",
            ]
        );
    }

    #[test]
    fn seed_manifests_have_no_unknown_fields() {
        let info = lookup("", "v1", "services").expect("services");
        let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpd-svc",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"type": "NodePort", "selector": {"run": "httpd"},
                     "ports": [{"protocol": "TCP", "nodePort": 31688, "port": 8080, "targetPort": 80}]}});
        assert!(unknown_fields(info, &s).is_empty());
    }
}
