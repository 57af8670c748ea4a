//! Namespaces (`pkg/registry/core/namespace/strategy.go`): the name label, the
//! `kubernetes` finalizer, and the Active/Terminating phase.

use serde_json::{json, Value};

use super::Strategy;
use crate::storage::meta_mut;

/// The namespace strategy.
pub(super) struct Namespace;

/// The label every namespace carries with its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn set_name_label(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(NAME_LABEL.into(), json!(name));
    }
}

impl Strategy for Namespace {
    fn has_generation(&self) -> bool {
        false
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_name_label(obj);
        if obj.pointer("/spec/finalizers").is_none() {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        obj["status"] = json!({"phase": "Active"});
    }

    fn prepare_for_update(&self, obj: &mut Value, _old: &Value) {
        set_name_label(obj);
        if obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Active"});
        }
    }

    /// A namespace's deletion always waits for its content to be removed.
    fn deletes_in_two_phases(&self) -> bool {
        true
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Terminating"});
    }

    fn finalizers_pending(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sets_label_finalizer_and_phase() {
        let mut ns = json!({"metadata": {"name": "team"}});
        Namespace.prepare_for_create(&mut ns);
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        // Finalizers the client chose are kept, even none.
        let mut ns = json!({"metadata": {"name": "x"}, "spec": {"finalizers": []}});
        Namespace.prepare_for_create(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!([]));
    }

    #[test]
    fn update_keeps_phase_and_restores_the_label() {
        let old = json!({});
        let mut ns = json!({"metadata": {"name": "team", "labels": {NAME_LABEL: "other"}}, "status": {"phase": "Terminating"}});
        Namespace.prepare_for_update(&mut ns, &old);
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team");
        assert_eq!(ns["status"]["phase"], "Terminating");
        let mut ns = json!({"metadata": {"name": "team"}});
        Namespace.prepare_for_update(&mut ns, &old);
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn deletion_waits_for_spec_finalizers() {
        let mut ns = json!({"spec": {"finalizers": ["kubernetes"]}});
        assert!(Namespace.deletes_in_two_phases());
        Namespace.prepare_for_delete(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert!(Namespace.finalizers_pending(&ns));
        assert!(!Namespace.finalizers_pending(&json!({"spec": {"finalizers": []}})));
    }
}
