//! Namespaces, nodes, endpoints, endpoint slices and RBAC subjects.

use serde_json::{json, Map, Value};

use super::{each_obj, obj_at, set};

pub(super) fn default_namespace(o: &mut Map<String, Value>) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name {
        let meta = obj_at(o, "metadata");
        let labels = obj_at(meta, "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let spec = obj_at(o, "spec");
    set(spec, "finalizers", json!(["kubernetes"]));
    let status = obj_at(o, "status");
    set(status, "phase", json!("Active"));
}

pub(super) fn default_node(o: &mut Map<String, Value>) {
    if let Some(Value::Object(status)) = o.get_mut("status") {
        if let Some(cap) = status.get("capacity").cloned() {
            set(status, "allocatable", cap);
        }
    }
}

pub(super) fn default_endpoints(o: &mut Map<String, Value>) {
    each_obj(o, "subsets", |s| {
        each_obj(s, "ports", |p| {
            set(p, "protocol", json!("TCP"));
        })
    });
}

pub(super) fn default_endpointslice(o: &mut Map<String, Value>) {
    each_obj(o, "ports", |p| {
        set(p, "name", json!(""));
        set(p, "protocol", json!("TCP"));
    });
}

pub(super) fn default_rbac_subjects(o: &mut Map<String, Value>) {
    each_obj(o, "subjects", |s| {
        match s.get("kind").and_then(Value::as_str) {
            Some("User") | Some("Group") => {
                set(s, "apiGroup", json!("rbac.authorization.k8s.io"));
            }
            Some("ServiceAccount") => {
                set(s, "apiGroup", json!(""));
            }
            _ => {}
        }
    });
}
