//! Service cluster IPs and node ports, as kube-apiserver's Service registry allocates
//! them: [`super::allocator`] decides, [`super::reservations`] makes the decision hold
//! against other servers sharing the datastore.

use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::Value;
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{allocator, reservations, Attributes, Plugin};
use crate::status::ApiResult;

/// Allocates and reserves Service cluster IPs and node ports.
pub(crate) struct ServiceIps {
    store: Arc<dyn Store>,
    service_cidr: Ipv4Net,
    node_port_range: (u16, u16),
    /// Held across every Service write so that allocations (computed from the stored
    /// Services) cannot race on this server.
    lock: tokio::sync::Mutex<()>,
}

impl ServiceIps {
    /// Allocates from `service_cidr` and the inclusive `node_port_range`.
    pub fn new(store: Arc<dyn Store>, service_cidr: Ipv4Net, node_port_range: (u16, u16)) -> Self {
        ServiceIps {
            store,
            service_cidr,
            node_port_range,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl Plugin for ServiceIps {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.group.is_empty() && info.kind == "Service"
    }

    fn admit(&self, _a: &Attributes<'_>, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        let used = reservations::in_use(self.store.as_ref(), obj)?;
        allocator::assign(obj, old, used, self.service_cidr, self.node_port_range)
    }

    fn write_lock(&self) -> Option<&tokio::sync::Mutex<()>> {
        Some(&self.lock)
    }

    fn reserve(&self, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        reservations::reserve(self.store.as_ref(), obj, old)
    }

    fn release(&self, old: &Value) {
        // Left behind on error, a reservation expires by itself.
        let _ = reservations::release(self.store.as_ref(), old);
    }
}
