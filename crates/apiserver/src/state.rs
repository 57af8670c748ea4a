//! What every request handler shares.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use skiff_store::Store;

use crate::pki::Pki;
use crate::tokens::SigningKeys;

/// Shared state of the server.
pub(crate) struct ApiState {
    pub store: Arc<dyn Store>,
    pub pki: Pki,
    pub sa_keys: SigningKeys,
    pub service_cidr: Ipv4Net,
    pub node_port_range: (u16, u16),
    pub advertise: Ipv4Addr,
    pub port: u16,
    /// Held across every Service write so cluster IP and node port allocation (computed
    /// from the stored Services) cannot race.
    pub service_lock: tokio::sync::Mutex<()>,
    /// Counters of the watch handlers (watchers closed for not reading).
    pub watch_metrics: crate::watch::WatchMetrics,
}
