//! CustomResourceDefinitions (`apiextensions-apiserver/pkg/registry/customresourcedefinition`)
//! and their custom resources (`pkg/registry/customresource/strategy.go`).
//!
//! A CRD's status is the naming/establishing controllers' (`crate::crds`); its deletion
//! is two-phase: kube-apiserver's `REST.Delete` puts the cleanup finalizer on it, the
//! controller deletes its objects and then the finalizer.

use serde_json::{json, Value};
use skiff_resources::crd::{self, CLEANUP_FINALIZER};
use skiff_resources::validation::FieldErrorKind;
use skiff_resources::ResourceInfo;

use super::{from_resources, FieldError, Strategy};
use crate::storage::{meta_mut, now_ts};

/// The CRD strategy.
pub(super) struct CustomResourceDefinition;

impl Strategy for CustomResourceDefinition {
    fn prepare_for_create(&self, obj: &mut Value) {
        let stored: Vec<Value> = crd::storage_version(obj)
            .map(|v| vec![json!(v)])
            .unwrap_or_default();
        obj["status"] = json!({
            "acceptedNames": {"kind": "", "plural": ""},
            "conditions": [],
            "storedVersions": stored,
        });
    }

    fn prepare_for_update(&self, obj: &mut Value, old: &Value) {
        // storedVersions keeps every version objects may have been written in.
        let mut stored: Vec<Value> = obj
            .pointer("/status/storedVersions")
            .or_else(|| old.pointer("/status/storedVersions"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(v) = crd::storage_version(obj) {
            if !stored.contains(&json!(v)) {
                stored.push(json!(v));
            }
        }
        if obj.get("status").is_some_and(Value::is_object) {
            obj["status"]["storedVersions"] = Value::Array(stored);
        }
    }

    fn validate(&self, info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = skiff_resources::validate(info, obj, old);
        errs.extend(crd::validate_crd(obj, old));
        from_resources(errs)
    }

    fn deletes_in_two_phases(&self) -> bool {
        true
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        let m = meta_mut(obj);
        let fins = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(a) = fins.as_array_mut() {
            if !a.iter().any(|f| f == CLEANUP_FINALIZER) {
                a.push(json!(CLEANUP_FINALIZER));
            }
        }
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
}

/// Sets condition `ty` of a CRD, keeping its transition time when the status stays.
pub(crate) fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    if !obj["status"].get("conditions").is_some_and(Value::is_array) {
        obj["status"]["conditions"] = json!([]);
    }
    let Some(conds) = obj["status"]["conditions"].as_array_mut() else {
        return;
    };
    let now = now_ts();
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(
            json!({"type": ty, "status": status, "lastTransitionTime": now,
                                  "reason": reason, "message": message}),
        ),
    }
}

/// Objects of a CRD: the generic rules plus the version's schema.
pub(super) struct CustomResource;

impl Strategy for CustomResource {
    fn validate(&self, info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = skiff_resources::validate(info, obj, old);
        if let Some(c) = info.custom {
            errs.extend(crd::schema::validate(&c.schema, obj));
            let rules = crd::cel::rules_for(&c.schema);
            if !rules.is_empty() {
                // kube evaluates no rule of an object whose fields have the wrong types.
                if errs.iter().any(|e| e.kind == FieldErrorKind::TypeInvalid) {
                    errs.push(crd::cel::not_checked());
                } else {
                    errs.extend(crd::cel::validate(rules, obj, old));
                }
            }
        }
        from_resources(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_adds_the_cleanup_finalizer_once() {
        let mut o = json!({"metadata": {"name": "a.b.c", "finalizers": ["x"]}, "status": {}});
        CustomResourceDefinition.prepare_for_delete(&mut o);
        CustomResourceDefinition.prepare_for_delete(&mut o);
        assert_eq!(o["metadata"]["finalizers"], json!(["x", CLEANUP_FINALIZER]));
        assert_eq!(o["status"]["conditions"][0]["type"], "Terminating");
    }
}
