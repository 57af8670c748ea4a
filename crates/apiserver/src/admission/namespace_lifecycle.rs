//! The `NamespaceLifecycle` plugin: objects are created only in namespaces that exist and
//! are not being deleted (kube's `plugin/pkg/admission/namespace/lifecycle`).

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation, Plugin};
use crate::status::{qualified, ApiError, ApiResult};
use crate::storage::{decode, key};

/// Refuses creates in a missing (404) or terminating (403) namespace.
pub(crate) struct NamespaceLifecycle {
    store: Arc<dyn Store>,
}

impl NamespaceLifecycle {
    /// The plugin, reading namespaces from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        NamespaceLifecycle { store }
    }
}

impl Plugin for NamespaceLifecycle {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.namespaced
    }

    fn admit(&self, a: &Attributes<'_>, _obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        let (Operation::Create, Some(ns)) = (a.operation, a.namespace) else {
            return Ok(());
        };
        let ns_info = skiff_resources::lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces not registered"))?;
        let kv = self
            .store
            .get(&key(ns_info, None, ns))?
            .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
        let nsobj = decode(&kv)?;
        if nsobj.pointer("/metadata/deletionTimestamp").is_some() {
            let (name, r) = (a.name, a.requested);
            return Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(r.group, r.plural)
            ))
            .with_details(json!({"name": name, "group": r.group, "kind": r.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
        }
        Ok(())
    }
}
