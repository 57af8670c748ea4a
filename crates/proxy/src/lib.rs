//! skiff-proxy: kube-proxy's dataplane.
//!
//! Watches Services and EndpointSlices and programs the node's kernel so that a
//! Service's cluster IP (and node ports, external IPs, load-balancer IPs) load-balances
//! onto its endpoints: with iptables (the default, rule for rule as kube-proxy writes
//! them) or with one nftables table (`ip kube-proxy`, kube-proxy's nftables layout).
//!
//! Layout, from the API to the kernel:
//! - [`watch`] keeps Services and EndpointSlices from the API and says which changed;
//! - [`model`] flattens them into service ports (pure), with the [`model::RuleConfig`]
//!   both generators take; [`names`] hashes chain names as kube-proxy does;
//! - [`iptables`] and [`nft`] generate rules from service ports (pure, golden-tested);
//! - [`backend`]: the [`backend::Backend`] trait and its two implementations, each
//!   owning its mode's incremental state (what it last generated and applied);
//! - [`sync`]: the [`sync::Engine`] decides full or partial syncs, retries and UDP
//!   conntrack cleanup, over one backend; its loop batches changes from [`watch`];
//! - [`apply`] spells the commands (`iptables-restore`, `nft`, `conntrack`...) and
//!   [`runner`] runs them: the [`runner::Runner`] trait, spawned for real by
//!   [`runner::Exec`], recorded by a fake in the unit tests;
//! - [`metrics`] serves Prometheus text.
//!
//! Test fixtures (ready-made Services and EndpointSlices) live in `tests/fixtures`,
//! outside the library, shared by the unit tests, integration tests and examples.

pub mod apply;
pub mod backend;
pub mod iptables;
pub mod metrics;
pub mod model;
pub mod names;
pub mod nft;
pub mod runner;
pub mod sync;
pub mod watch;

#[cfg(test)]
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Which kernel interface programs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// iptables (nft backend or legacy) through `iptables-restore`, as kube-proxy's
    /// default mode.
    #[default]
    Iptables,
    /// One nftables table `ip kube-proxy`, through `nft -f -`.
    Nftables,
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Name of the node this proxy runs on (selects local endpoints).
    pub node_name: String,
    /// Pod network, e.g. `10.244.0.0/16`: traffic from outside it to a cluster IP is
    /// masqueraded.
    pub cluster_cidr: String,
    /// iptables or nftables.
    pub mode: ProxyMode,
    /// Period of full resyncs (kube-proxy: 30 s).
    pub sync_period: Duration,
    /// Minimum time between syncs: bursts of changes are batched into one sync.
    pub min_sync_period: Duration,
    /// Bit of the packet mark that requests masquerade (14 -> 0x4000).
    pub masquerade_bit: u8,
    /// Where to serve `/metrics` (and `/healthz`), unauthenticated, e.g. `127.0.0.1:10249`
    /// (kube-proxy's default `--metrics-bind-address`); `None`: nowhere.
    pub metrics_bind: Option<SocketAddr>,
    /// The node's IPv4 addresses; if empty they are taken from the Node object.
    pub node_ips: Vec<Ipv4Addr>,
    /// Set to true once the first sync has programmed the kernel. `skiff agent` starts
    /// pods only then: a connection a pod opens to a cluster IP before its rules exist
    /// leaves a conntrack entry without DNAT, which the connection's retransmitted SYNs
    /// keep following to nowhere even after the rules appear.
    pub synced: Option<tokio::sync::watch::Sender<bool>>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            node_name: String::new(),
            cluster_cidr: skiff_api::defaults::CLUSTER_CIDR.to_string(),
            mode: ProxyMode::Iptables,
            sync_period: Duration::from_secs(30),
            min_sync_period: Duration::from_millis(20),
            masquerade_bit: 14,
            metrics_bind: None,
            node_ips: Vec::new(),
            synced: None,
        }
    }
}

/// Runs the proxy forever: watches the API (retrying while it is unavailable) and keeps
/// the kernel's rules in step. Returns only on a fatal configuration error.
pub async fn run(client: kube::Client, cfg: ProxyConfig) -> anyhow::Result<()> {
    sync::run(client, cfg).await
}
