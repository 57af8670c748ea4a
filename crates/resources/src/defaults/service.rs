//! Services (`SetDefaults_Service` and the single-stack IP family fields).

use serde_json::{json, Map, Value};

use super::{each_obj, obj_at, set};

pub(super) fn default_service(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    let ty = set(spec, "type", json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    set(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let cfg = obj_at(spec, "sessionAffinityConfig");
        let cip = obj_at(cfg, "clientIP");
        set(cip, "timeoutSeconds", json!(10800));
    }
    each_obj(spec, "ports", |p| {
        set(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set(p, "targetPort", port);
        }
    });
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    } else {
        // dropTypeDependentFields: a Service that changed to a type without node ports
        // loses the fields that only such types carry.
        spec.remove("externalTrafficPolicy");
        spec.remove("healthCheckNodePort");
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    } else {
        spec.remove("allocateLoadBalancerNodePorts");
    }
    if ty != "ExternalName" {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        set(spec, "ipFamilies", json!(["IPv4"]));
    }
    let status = obj_at(o, "status");
    set(status, "loadBalancer", json!({}));
}
