//! Per-resource strategies: what kube-apiserver's `pkg/registry/<group>/<kind>/strategy.go`
//! decide for a kind, as pure functions of the objects. The generic write path
//! (`crate::rest`) asks the resource's [`Strategy`] and names no kind itself; a new kind
//! (a CustomResourceDefinition's, say) is one more implementation.
//!
//! Defaulting, validation rules and conversions are data-driven in skiff-resources; the
//! strategy decides when and how they apply.

mod certificates;
mod crd;
mod namespace;
mod node;
mod pod;
mod rbac;
mod service;
mod volume;

use serde_json::Value;
use skiff_resources::ResourceInfo;

use crate::status::ApiError;

pub(crate) use crd::set_condition;

/// What a resource's registry does beyond the generic create, update and delete.
/// Every method has the default most kinds want.
pub(crate) trait Strategy: Sync {
    /// Whether `metadata.generation` is kept and bumped when the spec changes (kinds
    /// with a spec/status split); kinds without one never carry it.
    fn has_generation(&self) -> bool {
        true
    }

    /// Whether a create keeps the status the client sent. Kinds with a status
    /// subresource reset it otherwise (their status is written through `/status`).
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// Spec fields the registry fills in after field management on create, so the client
    /// owns them only when it set them (Service IP families).
    fn registry_set_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// `PrepareForCreate`'s kind-specific part: fields the server sets on a new object
    /// (after defaulting, before admission).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// `PrepareForUpdate`'s kind-specific part (`old` is the stored object).
    fn prepare_for_update(&self, _obj: &mut Value, _old: &Value) {}

    /// `Validate` / `ValidateUpdate`: the field errors of `obj` (`old` on update).
    fn validate(&self, info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        from_resources(skiff_resources::validate(info, obj, old))
    }

    /// `CheckGracefulDelete`: the grace period a deletion of `obj` waits for, given the
    /// one the client asked for; `None` deletes at once (pods on a node wait for it).
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether every deletion goes through a "being deleted" state first, finalizers or
    /// not (namespaces: Terminating until their content is gone).
    fn deletes_in_two_phases(&self) -> bool {
        false
    }

    /// Marks `obj` as being deleted (after `deletionTimestamp` is set).
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Whether the kind's own finalization (beyond `metadata.finalizers`) is pending
    /// (a namespace's `spec.finalizers`).
    fn finalizers_pending(&self, _obj: &Value) -> bool {
        false
    }
}

/// One validation failure: JSON path (`spec.ports[0].port`), the cause reason
/// (`FieldValueInvalid`...) and the full message as Kubernetes prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub reason: String,
    pub message: String,
}

/// skiff-resources' field errors as a strategy reports them.
pub(crate) fn from_resources(errs: Vec<skiff_resources::FieldError>) -> Vec<FieldError> {
    errs.into_iter()
        .map(|e| FieldError {
            field: e.path.clone(),
            reason: e.kind.reason().to_string(),
            message: e.to_string(),
        })
        .collect()
}

/// The 422 Invalid error of `errs` for the object `name` of `info`.
pub(crate) fn invalid(info: &ResourceInfo, name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(
        info.group,
        info.kind,
        name,
        errs.into_iter()
            .map(|e| (e.field, e.reason, e.message))
            .collect(),
    )
}

/// The defaults: generation tracked, status reset on create.
struct Generic;
impl Strategy for Generic {}

/// Kinds without a spec/status split: no `metadata.generation`.
struct NoGeneration;
impl Strategy for NoGeneration {
    fn has_generation(&self) -> bool {
        false
    }
}

/// The strategy of a resource (by its storage version's group and kind).
pub(crate) fn for_resource(info: &ResourceInfo) -> &'static dyn Strategy {
    if info.custom.is_some() {
        return &crd::CustomResource;
    }
    match (info.group, info.kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &crd::CustomResourceDefinition,
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &certificates::CertificateSigningRequest
        }
        ("", "Pod") => &pod::Pod,
        ("", "Service") => &service::Service,
        ("", "Namespace") => &namespace::Namespace,
        ("", "Node") => &node::Node,
        ("", "PersistentVolume") => &volume::PersistentVolume,
        ("", "PersistentVolumeClaim") => &volume::PersistentVolumeClaim,
        ("", "ConfigMap" | "Secret" | "Event" | "Endpoints" | "ServiceAccount")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("coordination.k8s.io", "Lease")
        | ("storage.k8s.io", "StorageClass" | "CSIDriver" | "CSINode" | "CSIStorageCapacity")
        | ("events.k8s.io", "Event") => &NoGeneration,
        ("rbac.authorization.k8s.io", _) => &rbac::Rbac,
        _ => &Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(g: &str, v: &str, p: &str) -> &'static ResourceInfo {
        skiff_resources::lookup(g, v, p).unwrap()
    }

    #[test]
    fn generation_only_for_kinds_with_a_spec() {
        for (g, v, p, want) in [
            ("apps", "v1", "deployments", true),
            ("", "v1", "pods", true),
            ("", "v1", "configmaps", false),
            ("", "v1", "services", false),
            ("", "v1", "nodes", false),
            ("", "v1", "namespaces", false),
            ("discovery.k8s.io", "v1", "endpointslices", false),
            ("coordination.k8s.io", "v1", "leases", false),
        ] {
            assert_eq!(for_resource(info(g, v, p)).has_generation(), want, "{p}");
        }
    }

    #[test]
    fn validate_reports_kube_messages() {
        let svc = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "d"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 0, "protocol": "TCP", "targetPort": 80}]},
        });
        let i = info("", "v1", "services");
        let errs = for_resource(i).validate(i, &svc, None);
        assert!(
            errs.iter().any(|e| e.field == "spec.ports[0].port"
                && e.reason == "FieldValueInvalid"
                && e.message.contains("must be between 1 and 65535, inclusive")),
            "{errs:?}"
        );
    }
}
