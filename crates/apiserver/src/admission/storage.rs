//! The storage admission plugins: `DefaultStorageClass` (a claim that names no class gets
//! the default one, kube's `plugin/pkg/admission/storage/storageclass/setdefault`) and
//! `StorageObjectInUseProtection` (new claims and volumes carry the protection
//! finalizers that the pvc-protection and pv-protection controllers lift,
//! `plugin/pkg/admission/storage/storageobjectinuseprotection`).

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation, Plugin};
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, prefix};

use skiff_api::names::{
    PVC_PROTECTION_FINALIZER as PVC_PROTECTION, PV_PROTECTION_FINALIZER as PV_PROTECTION,
};
/// The beta annotation that named a claim's class before `storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn is_pvc(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "PersistentVolumeClaim"
}

/// Gives a new claim without a class the default StorageClass.
pub(crate) struct DefaultStorageClass {
    store: Arc<dyn Store>,
}

impl DefaultStorageClass {
    /// The plugin, reading StorageClasses from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        DefaultStorageClass { store }
    }
}

/// The default class among `classes` as kube's `GetDefaultClass` picks it: of those
/// annotated default, the newest (then the first by name), so that adding a second
/// default while migrating does not break claims.
pub(crate) fn default_class(classes: &[Value]) -> Option<String> {
    let mut defaults: Vec<&Value> = classes
        .iter()
        .filter(|c| skiff_resources::table::is_default_class(c))
        .collect();
    let ts = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // RFC 3339 UTC timestamps of one format sort as strings.
    defaults.sort_by(|a, b| ts(b).cmp(&ts(a)).then_with(|| name(a).cmp(&name(b))));
    defaults.first().map(|c| name(c))
}

impl Plugin for DefaultStorageClass {
    fn handles(&self, info: &ResourceInfo) -> bool {
        is_pvc(info)
    }

    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        if a.operation != Operation::Create || a.subresource.is_some() {
            return Ok(());
        }
        // An explicit class, even "" (no class), or the beta annotation wins.
        if obj
            .pointer("/spec/storageClassName")
            .is_some_and(|v| !v.is_null())
            || obj
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    BETA_CLASS.replace('/', "~1")
                ))
                .is_some()
        {
            return Ok(());
        }
        let info = skiff_resources::lookup("storage.k8s.io", "v1", "storageclasses")
            .ok_or_else(|| ApiError::internal("storageclasses not registered"))?;
        let (kvs, _) = self.store.list(&prefix(info, None))?;
        let classes = kvs.iter().map(decode).collect::<ApiResult<Vec<_>>>()?;
        if let Some(class) = default_class(&classes) {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["storageClassName"] = json!(class);
        }
        Ok(())
    }
}

/// Adds the protection finalizer to new claims and volumes.
#[derive(Debug, Default)]
pub(crate) struct StorageObjectInUseProtection;

impl Plugin for StorageObjectInUseProtection {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.group.is_empty() && matches!(info.kind, "PersistentVolumeClaim" | "PersistentVolume")
    }

    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        if a.operation != Operation::Create || a.subresource.is_some() {
            return Ok(());
        }
        let finalizer = if is_pvc(a.info) {
            PVC_PROTECTION
        } else {
            PV_PROTECTION
        };
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if !meta.get("finalizers").is_some_and(Value::is_array) {
            meta["finalizers"] = json!([]);
        }
        if let Some(f) = meta["finalizers"].as_array_mut() {
            if !f.iter().any(|v| v == finalizer) {
                f.push(json!(finalizer));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, default: Option<&str>, created: &str) -> Value {
        let mut c = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "creationTimestamp": created}, "provisioner": "p"});
        if let Some(d) = default {
            c["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": d});
        }
        c
    }

    fn attrs(plural: &'static str, op: Operation) -> Attributes<'static> {
        let info = skiff_resources::lookup("", "v1", plural).unwrap();
        Attributes {
            info,
            requested: info,
            operation: op,
            namespace: Some("d"),
            name: "c",
            subresource: None,
            user: None,
        }
    }

    #[test]
    fn the_newest_default_class_wins() {
        assert_eq!(default_class(&[]), None);
        assert_eq!(
            default_class(&[class("a", Some("false"), "2026-01-01T00:00:00Z")]),
            None
        );
        let classes = [
            class("old", Some("true"), "2026-01-01T00:00:00Z"),
            class("plain", None, "2026-03-01T00:00:00Z"),
            class("new", Some("true"), "2026-02-01T00:00:00Z"),
            class("also-new", Some("true"), "2026-02-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("also-new"));
    }

    #[test]
    fn a_claim_without_a_class_gets_the_default() {
        let store: Arc<dyn Store> = Arc::new(skiff_store::SqliteStore::in_memory().unwrap());
        let plugin = DefaultStorageClass::new(store.clone());
        let info = skiff_resources::lookup("storage.k8s.io", "v1", "storageclasses").unwrap();
        let sc = class("standard", Some("true"), "2026-01-01T00:00:00Z");
        store
            .create(
                &crate::storage::key(info, None, "standard"),
                &serde_json::to_vec(&sc).unwrap(),
            )
            .unwrap();
        let mut pvc =
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        plugin
            .admit(
                &attrs("persistentvolumeclaims", Operation::Create),
                &mut pvc,
                None,
            )
            .unwrap();
        assert_eq!(pvc["spec"]["storageClassName"], "standard");
        // "" means no class, and stays.
        let mut pvc = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": ""}});
        plugin
            .admit(
                &attrs("persistentvolumeclaims", Operation::Create),
                &mut pvc,
                None,
            )
            .unwrap();
        assert_eq!(pvc["spec"]["storageClassName"], "");
        // Updates are left alone.
        let mut pvc = json!({"metadata": {"name": "c"}, "spec": {}});
        plugin
            .admit(
                &attrs("persistentvolumeclaims", Operation::Update),
                &mut pvc,
                None,
            )
            .unwrap();
        assert_eq!(pvc["spec"], json!({}));
    }

    #[test]
    fn new_claims_and_volumes_are_protected() {
        let mut pvc = json!({"metadata": {"name": "c", "finalizers": ["x"]}});
        StorageObjectInUseProtection
            .admit(
                &attrs("persistentvolumeclaims", Operation::Create),
                &mut pvc,
                None,
            )
            .unwrap();
        assert_eq!(pvc["metadata"]["finalizers"], json!(["x", PVC_PROTECTION]));
        let mut pv = json!({"metadata": {"name": "v"}});
        StorageObjectInUseProtection
            .admit(
                &attrs("persistentvolumes", Operation::Create),
                &mut pv,
                None,
            )
            .unwrap();
        assert_eq!(pv["metadata"]["finalizers"], json!([PV_PROTECTION]));
    }
}
