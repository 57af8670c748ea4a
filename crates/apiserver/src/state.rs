//! What every request handler shares.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use skiff_store::Store;

use crate::admission;
use crate::authn::Authenticator;
use crate::authz;
use crate::metrics::{ExtraMetrics, RequestMetrics, WatchMetrics};
use crate::pki::Pki;

/// Shared state of the server.
pub(crate) struct ApiState {
    pub store: Arc<dyn Store>,
    pub pki: Pki,
    /// The authentication layer (bearer tokens; certificates are checked by TLS).
    pub authn: Authenticator,
    /// The authorization layer (shared with admission's RBAC escalation check).
    pub authz: Arc<authz::Chain>,
    pub service_cidr: Ipv4Net,
    pub advertise: Ipv4Addr,
    pub port: u16,
    /// The admission layer of the write path.
    pub admission: admission::Chain,
    /// The admission webhooks, called after the chain's plugins in each stage.
    pub webhooks: admission::Webhooks,
    /// Counters of the watch handlers (watchers closed for not reading).
    pub watch_metrics: WatchMetrics,
    /// The shared watches (one store watch per resource, pods indexed by node).
    pub watch_cache: crate::watchcache::WatchCache,
    /// Latencies of resource requests, served on `/metrics`.
    pub request_metrics: RequestMetrics,
    /// Other components' metrics, served after the server's own.
    pub extra_metrics: ExtraMetrics,
    /// The agents' statistics summaries, cached briefly for `metrics.k8s.io`.
    pub node_stats: crate::nodemetrics::Cache,
}
