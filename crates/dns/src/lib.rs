//! skiff-dns: the cluster DNS server (`skiff dns`), built on hickory-proto.
//!
//! It implements the Kubernetes DNS specification for the cluster domain from an
//! in-memory record store ([`records::Records`]) fed by watchers on Services and
//! EndpointSlices, forwards every other name to the upstream servers through a cache,
//! and serves health, readiness and Prometheus metrics on CoreDNS's ports. It runs in
//! the cluster as the Deployment `kube-system/coredns` behind the Service
//! `kube-system/kube-dns`; [`addon::objects`] gives those objects.
//!
//! Modules: [`records`] (the store), [`answer`] (the zone's answers, pure),
//! [`cache`] and [`forward`] (everything else), [`server`] (UDP/TCP, the pipeline and
//! the batched UDP loop), [`fastpath`] (repeated questions answered from
//! kept bytes), [`metrics`], [`http`] (health/ready/metrics endpoints), [`watch`] (the
//! API feed), [`addon`] (the manifests).

pub mod addon;
pub mod answer;
pub mod cache;
pub mod fastpath;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod records;
pub mod server;
pub mod watch;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;

pub use records::{Change, Records};

/// Configuration of the DNS server.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where DNS is served, UDP and TCP (`0.0.0.0:53`).
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// TTL of the cluster records, seconds (5).
    pub ttl: u32,
    /// Upstream servers; empty: the `nameserver`s of the process's `/etc/resolv.conf`
    /// (the pod's, with `dnsPolicy: Default`: the node's).
    pub upstreams: Vec<SocketAddr>,
    /// Where `/health` is served (`:8080`).
    pub health_bind: SocketAddr,
    /// Where `/ready` is served (`:8181`).
    pub ready_bind: SocketAddr,
    /// Where `/metrics` is served (`:9153`).
    pub metrics_bind: SocketAddr,
    /// Most answers the forwarding cache holds.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 53).into(),
            domain: skiff_api::defaults::CLUSTER_DOMAIN.to_string(),
            ttl: 5,
            upstreams: Vec::new(),
            health_bind: ([0, 0, 0, 0], 8080).into(),
            ready_bind: ([0, 0, 0, 0], 8181).into(),
            metrics_bind: ([0, 0, 0, 0], 9153).into(),
            cache_size: 10_000,
        }
    }
}

impl DnsConfig {
    /// The upstreams to use: the configured ones, or those of `/etc/resolv.conf`.
    pub fn effective_upstreams(&self) -> Vec<SocketAddr> {
        if !self.upstreams.is_empty() {
            return self.upstreams.clone();
        }
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        forward::parse_resolv_conf(&text)
            .into_iter()
            // Never forward to ourselves (our address, or the cluster DNS Service if the
            // pod was given ClusterFirst by mistake): that would loop until the query
            // times out.
            .filter(|a| {
                *a != self.listen
                    && *a != SocketAddr::from((skiff_api::defaults::DNS_SERVICE_IP, 53))
            })
            .collect()
    }
}

/// A DNS server over a record store, without the API watchers: tests and the bench feed
/// the store directly with [`Records::apply`].
#[derive(Debug)]
pub struct DnsServer {
    listeners: server::Listeners,
    handler: Arc<server::Handler>,
}

impl DnsServer {
    /// Binds `cfg.listen` (UDP and TCP) serving `records`. UDP is served by one thread
    /// per CPU, each with its own SO_REUSEPORT socket; the environment variable
    /// `SKIFF_DNS_UDP_THREADS` overrides the count.
    pub async fn bind(cfg: &DnsConfig, records: Arc<Records>) -> anyhow::Result<Self> {
        let threads = std::env::var("SKIFF_DNS_UDP_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            });
        let listeners = server::Listeners::bind(cfg.listen, threads).await?;
        let bound = listeners.local_addr().context("DNS local address")?;
        let forwarder = forward::Forwarder::new(cfg.effective_upstreams(), cfg.cache_size);
        let handler = Arc::new(server::Handler::new(
            records,
            cfg.ttl,
            forwarder,
            metrics::Metrics::new(bound),
        ));
        Ok(Self { listeners, handler })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// The request pipeline (its metrics and cache).
    pub fn handler(&self) -> Arc<server::Handler> {
        self.handler.clone()
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> anyhow::Result<()> {
        server::serve_udp(
            self.listeners.udp,
            self.handler.clone(),
            tokio::runtime::Handle::current(),
        );
        server::serve_tcp(self.listeners.tcp, self.handler).await;
        anyhow::bail!("DNS listeners stopped")
    }
}

/// Runs the cluster DNS server forever: watchers, DNS on UDP and TCP, health, readiness
/// and metrics.
pub async fn run(client: kube::Client, cfg: DnsConfig) -> anyhow::Result<()> {
    let records = Arc::new(Records::new(&cfg.domain));
    let ready = Arc::new(AtomicBool::new(false));
    let server = DnsServer::bind(&cfg, records.clone()).await?;
    let handler = server.handler();
    tracing::info!(
        listen = %server.local_addr(),
        domain = %cfg.domain,
        upstreams = ?cfg.effective_upstreams(),
        "serving cluster DNS"
    );
    tokio::select! {
        r = server.serve() => r,
        r = watch::watch(client, records, ready.clone()) => r,
        r = http::serve_health(cfg.health_bind) => r,
        r = http::serve_ready(cfg.ready_bind, ready) => r,
        r = http::serve_metrics(cfg.metrics_bind, handler) => r,
    }
}
