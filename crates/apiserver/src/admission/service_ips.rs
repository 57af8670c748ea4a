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

/// Runs the allocation repair every [`reservations::REPAIR_INTERVAL`] (logging what it
/// changed), for as long as the server runs.
pub(crate) async fn repair_allocations(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(reservations::REPAIR_INTERVAL).await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || reservations::repair(s.as_ref())).await {
            Ok(Ok(r)) if r != reservations::Repaired::default() => {
                tracing::info!(
                    added = r.added,
                    removed = r.removed,
                    "repaired Service allocations"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e.message, "repairing Service allocations"),
            Err(e) => tracing::warn!(error = %e, "repairing Service allocations"),
        }
    }
}

/// One allocation repair pass (at start, before any Service is written).
pub(crate) fn repair_allocations_once(store: &dyn Store) -> ApiResult<()> {
    reservations::repair(store).map(|_| ())
}
