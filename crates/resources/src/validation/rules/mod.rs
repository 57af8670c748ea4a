//! Per-kind validation rules, one module per family of kinds.

use serde_json::{json, Value};

use super::FieldError;
use crate::registry::ResourceInfo;

mod admissionregistration;
mod batch;
mod certificates;
mod meta;
mod pod;
mod service;
mod storage;
mod workload;

use batch::{validate_cronjob, validate_job};
use meta::{validate_data, validate_meta};
use pod::{
    validate_ephemeral_containers_update as ephemeral_update, validate_pod_spec,
    validate_pod_update,
};
use service::validate_service;
use workload::{validate_statefulset, validate_workload};

pub(crate) use admissionregistration::validate_webhook_client_config;

pub(super) type Errs = Vec<FieldError>;

pub(super) fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}
pub(super) fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The `ephemeralcontainers` subresource's validation (see
/// [`super::validate_ephemeral_containers_update`]).
pub(super) fn validate_ephemeral_containers_update(
    info: &ResourceInfo,
    obj: &Value,
    old: &Value,
) -> Errs {
    let mut e = Errs::new();
    validate_meta(info, obj, Some(old), &mut e);
    validate_pod_spec(
        obj.get("spec").unwrap_or(&Value::Null),
        "spec",
        true,
        &mut e,
    );
    ephemeral_update(obj, old, &mut e);
    e
}

pub(super) fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Errs {
    let mut e = Errs::new();
    validate_meta(info, obj, old, &mut e);
    match (info.group, info.kind) {
        ("", "Pod") => {
            validate_pod_spec(
                obj.get("spec").unwrap_or(&Value::Null),
                "spec",
                true,
                &mut e,
            );
            if let Some(old) = old {
                validate_pod_update(obj, old, &mut e);
            }
        }
        ("", "Service") => validate_service(obj, old, &mut e),
        ("", "PersistentVolume") => storage::validate_pv(obj, &mut e),
        ("", "PersistentVolumeClaim") => match old {
            Some(old) => storage::validate_pvc_update(obj, old, &mut e),
            None => storage::validate_pvc(obj, &mut e),
        },
        ("storage.k8s.io", "StorageClass") => storage::validate_storage_class(obj, old, &mut e),
        ("", "ConfigMap") => validate_data(obj, "data", true, &mut e),
        ("", "Secret") => {
            validate_data(obj, "data", false, &mut e);
            if let Some(old) = old {
                if s(obj, "/type").unwrap_or("Opaque") != s(old, "/type").unwrap_or("Opaque") {
                    e.push(FieldError::invalid(
                        "type",
                        json!(s(obj, "/type").unwrap_or("")),
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "Node") => {
            if let Some(old) = old {
                let before = old
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let after = obj
                    .pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !before.is_empty() && before != after {
                    e.push(FieldError::forbidden(
                        "spec.podCIDRs",
                        "node updates may not change podCIDR except from \"\" to valid",
                    ));
                }
            }
        }
        ("apps", "StatefulSet") => {
            validate_statefulset(obj, old, &mut e);
            validate_workload(info, obj, old, &mut e);
        }
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "DaemonSet") => {
            validate_workload(info, obj, old, &mut e)
        }
        ("batch", "CronJob") => validate_cronjob(obj, old, &mut e),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            certificates::validate_csr(obj, &mut e)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            admissionregistration::validate_webhook_configuration(obj, old, true, &mut e)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            admissionregistration::validate_webhook_configuration(obj, old, false, &mut e)
        }
        ("batch", "Job") => validate_job(obj, old, &mut e),
        _ => {}
    }
    e
}

#[cfg(test)]
mod tests;
