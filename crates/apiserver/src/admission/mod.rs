//! The admission layer of the write path: plugins that see each create, update and
//! delete after decoding and defaulting, as kube-apiserver's admission chain does.
//! Mutating plugins ([`Plugin::admit`]) run first and may change the object; the
//! resource's strategy then validates it; validating plugins ([`Plugin::validate`]) run
//! last and may only refuse it.
//!
//! Plugins today, in the order they run:
//! - [`NamespaceLifecycle`]: no new objects in a missing or terminating namespace;
//! - [`NodeRestriction`]: a node writes only its own Node, Lease and pods' status;
//! - [`ServiceAccount`]: a pod runs as `default` unless it names a service account;
//! - [`ServiceIps`]: Services get their cluster IP and node ports (the pure allocator is
//!   [`allocator`], the datastore reservations [`reservations`]);
//! - [`RbacEscalation`]: nobody grants, through a role or a binding, more than they hold.
//! - [`DefaultStorageClass`]: a claim that names no class gets the default one;
//! - [`StorageObjectInUseProtection`]: new claims and volumes carry the protection
//!   finalizers;
//! - [`PodSecurity`]: the Pod Security Standards of the namespace labels (enforce, warn);
//! - [`CertificateRequester`]: a CertificateSigningRequest names who created it.
//!
//! Then the admission webhooks ([`Webhooks`], async, outside the [`Chain`]): mutating
//! webhooks after the built-in mutating plugins, validating webhooks after the built-in
//! validating plugins, as kube-apiserver orders `MutatingAdmissionWebhook` and
//! `ValidatingAdmissionWebhook` last in each stage.
//!
//! Validating plugins may also warn ([`Plugin::warnings`]): the warnings reach the client
//! as HTTP `Warning` headers, as kube-apiserver's admission warnings do.

mod allocator;
mod certificates;
mod namespace_lifecycle;
mod node_restriction;
mod pod_security;
mod rbac_escalation;
mod reservations;
mod service_account;
mod service_ips;
mod storage;
pub(crate) mod webhook;

pub(crate) use certificates::CertificateRequester;
pub(crate) use namespace_lifecycle::NamespaceLifecycle;
pub(crate) use node_restriction::NodeRestriction;
pub(crate) use pod_security::PodSecurity;
pub(crate) use rbac_escalation::RbacEscalation;
pub(crate) use service_account::ServiceAccount;
pub(crate) use service_ips::{repair_allocations, repair_allocations_once, ServiceIps};
pub(crate) use storage::{DefaultStorageClass, StorageObjectInUseProtection};
pub(crate) use webhook::Webhooks;

use serde_json::Value;
use skiff_resources::ResourceInfo;

use crate::authn::Identity;
use crate::status::ApiResult;

/// What is being done to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A create.
    Create,
    /// An update (PUT, PATCH, subresource writes).
    Update,
    /// A delete (also an eviction): only [`Plugin::validate`] is asked, with the stored
    /// object as both `obj` and `old`.
    Delete,
}

impl Operation {
    /// The name kube's messages print (`admission.Operation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What a plugin is told about a write besides the object: kube's
/// `admission.Attributes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    /// The resource, at its storage version (objects are admitted as stored).
    pub info: &'static ResourceInfo,
    /// The resource as the request named it (group and version of the URL), for
    /// messages.
    pub requested: &'static ResourceInfo,
    /// Create, update or delete.
    pub operation: Operation,
    /// The object's namespace (`None` for cluster-scoped resources).
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// The subresource written (`status`, `eviction`, `token`, `scale`...), `None` for
    /// the object itself.
    pub subresource: Option<&'a str>,
    /// Who writes (`None` for the server's own writes).
    pub user: Option<&'a Identity>,
}

/// One admission plugin. Every method has a default that does nothing, so a plugin
/// implements only the stages it takes part in.
pub(crate) trait Plugin: Send + Sync {
    /// Whether the plugin looks at writes of `info` at all.
    fn handles(&self, info: &ResourceInfo) -> bool;

    /// Mutating admission: may change `obj` (`old` is the stored object on update).
    fn admit(&self, _a: &Attributes<'_>, _obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        Ok(())
    }

    /// Validating admission: may refuse `obj`, not change it.
    fn validate(&self, _a: &Attributes<'_>, _obj: &Value, _old: Option<&Value>) -> ApiResult<()> {
        Ok(())
    }

    /// Warnings about an object validation let through (`Warning` headers for the
    /// client); asked only when every plugin's [`Plugin::validate`] passed.
    fn warnings(&self, _a: &Attributes<'_>, _obj: &Value, _old: Option<&Value>) -> Vec<String> {
        Vec::new()
    }

    /// A lock held from admission to the write of every object the plugin handles,
    /// for plugins that compute values from the stored objects (allocators).
    fn write_lock(&self) -> Option<&tokio::sync::Mutex<()>> {
        None
    }

    /// Right before the write (not in dry runs): make what `admit` decided durable
    /// against other servers sharing the datastore. An error means another server took
    /// a value meanwhile; the writer admits again and retries.
    fn reserve(&self, _obj: &Value, _old: Option<&Value>) -> ApiResult<()> {
        Ok(())
    }

    /// After `old` was deleted: give back what it held.
    fn release(&self, _old: &Value) {}
}

/// The plugins, in the order they run.
#[derive(Default)]
pub(crate) struct Chain(Vec<Box<dyn Plugin>>);

impl Chain {
    /// A chain running `plugins` in this order.
    pub fn new(plugins: Vec<Box<dyn Plugin>>) -> Self {
        Chain(plugins)
    }

    fn for_info<'a>(&'a self, info: &'a ResourceInfo) -> impl Iterator<Item = &'a dyn Plugin> {
        self.0
            .iter()
            .map(|p| p.as_ref())
            .filter(move |p| p.handles(info))
    }

    /// Takes the write locks of the plugins handling `info` (at most one today), to be
    /// held until the object is written.
    pub async fn lock(&self, info: &ResourceInfo) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut guards = Vec::new();
        for p in self.0.iter().filter(|p| p.handles(info)) {
            if let Some(l) = p.write_lock() {
                guards.push(l.lock().await);
            }
        }
        guards
    }

    /// Runs the mutating stage.
    pub fn admit(&self, a: &Attributes<'_>, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        for p in self.for_info(a.info) {
            p.admit(a, obj, old)?;
        }
        Ok(())
    }

    /// Runs the validating stage; returns the plugins' warnings when it passes.
    pub fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        for p in self.for_info(a.info) {
            p.validate(a, obj, old)?;
        }
        Ok(self
            .for_info(a.info)
            .flat_map(|p| p.warnings(a, obj, old))
            .collect())
    }

    /// Runs the validating stage for a delete of `old` (the stored object).
    pub fn validate_delete(&self, a: &Attributes<'_>, old: &Value) -> ApiResult<()> {
        debug_assert_eq!(a.operation, Operation::Delete);
        for p in self.for_info(a.info) {
            p.validate(a, old, Some(old))?;
        }
        Ok(())
    }

    /// Runs every handling plugin's [`Plugin::reserve`].
    pub fn reserve(&self, info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        for p in self.for_info(info) {
            p.reserve(obj, old)?;
        }
        Ok(())
    }

    /// Runs every handling plugin's [`Plugin::release`].
    pub fn release(&self, info: &ResourceInfo, old: &Value) {
        for p in self.for_info(info) {
            p.release(old);
        }
    }
}
