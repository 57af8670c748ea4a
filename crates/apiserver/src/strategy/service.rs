//! Services (`pkg/registry/core/service/strategy.go`); their IPs and node ports are
//! allocated in admission (`crate::admission::ServiceIps`).

use super::Strategy;

/// The service strategy.
pub(super) struct Service;

impl Strategy for Service {
    fn has_generation(&self) -> bool {
        false
    }

    /// IP families are allocated by the service registry after the field manager has run
    /// in kube-apiserver: owned by the client only when it set them.
    fn registry_set_fields(&self) -> &'static [&'static str] {
        &["ipFamilies", "ipFamilyPolicy"]
    }
}
