//! CertificateSigningRequest's registry rules (kube's `pkg/registry/certificates`): the
//! spec is fixed at creation (updates, the `status` and `approval` subresources change
//! only status), and the requester is recorded by the `CertificateRequester` admission
//! plugin, which knows the user.

use serde_json::Value;

use super::Strategy;

/// The CSR strategy.
pub(crate) struct CertificateSigningRequest;

impl Strategy for CertificateSigningRequest {
    fn has_generation(&self) -> bool {
        false
    }

    fn prepare_for_update(&self, obj: &mut Value, old: &Value) {
        match old.get("spec") {
            Some(spec) => obj["spec"] = spec.clone(),
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("spec");
                }
            }
        }
    }
}
