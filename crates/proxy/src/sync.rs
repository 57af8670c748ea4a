//! The sync engine (what to write, full or partial, and the UDP conntrack cleanup) and
//! the loop that drives it from the watch cache with batching, periodic full syncs and
//! the canary check.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::apply::{ApplyError, Runner};
use crate::iptables::{self, GenConfig, Ruleset};
use crate::metrics::Metrics;
use crate::model::{self, categorize, Protocol, ServicePortMap};
use crate::nft::{self, NftConfig, NftState, SyncKind};
use crate::watch::Cache;
use crate::{ProxyConfig, ProxyMode};

/// How often the canary chains are checked in iptables mode.
const CANARY_INTERVAL: Duration = Duration::from_secs(3);
/// Delay before retrying a failed sync.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// iptables or nftables.
    pub mode: ProxyMode,
    /// Pod network.
    pub cluster_cidr: Ipv4Net,
    /// Masquerade mark bit.
    pub masquerade_bit: u8,
    /// The node's addresses.
    pub node_ips: Vec<Ipv4Addr>,
    /// A sync this long after the last full one is full.
    pub sync_period: Duration,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether everything was rewritten.
    pub full: bool,
    /// Bytes of restore input / nft script written.
    pub bytes: usize,
    /// The input itself (kept for tests and debugging).
    pub input: String,
}

/// Conntrack entries to delete after a sync (UDP has no connection end, so entries
/// would keep sending a flow to a removed endpoint, or to the REJECT it had before).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConntrackCleanup {
    /// Protocol (UDP; SCTP is not flushed, as kube-proxy).
    pub protocol: Protocol,
    /// Original destination address, if restricted.
    pub orig_dst: Option<Ipv4Addr>,
    /// Original destination port (node ports), if restricted.
    pub orig_port: Option<u16>,
    /// Address the flow was DNATed to, if restricted.
    pub dnat: Option<Ipv4Addr>,
}

/// Which conntrack entries become stale going from `old` to `new`: flows to endpoints a
/// UDP service port no longer uses, and flows to a UDP service port that had no
/// endpoints (they were rejected and would stay so).
pub fn conntrack_cleanups(
    old: &ServicePortMap,
    new: &ServicePortMap,
) -> BTreeSet<ConntrackCleanup> {
    let mut out = BTreeSet::new();
    for (name, sp) in new {
        if sp.name.protocol != Protocol::Udp {
            continue;
        }
        let now: BTreeSet<Ipv4Addr> = categorize(sp).all_reachable.iter().map(|e| e.ip).collect();
        let before: BTreeSet<Ipv4Addr> = old
            .get(name)
            .map(|o| categorize(o).all_reachable.iter().map(|e| e.ip).collect())
            .unwrap_or_default();
        let dests: Vec<Ipv4Addr> = std::iter::once(sp.cluster_ip)
            .chain(sp.external_ips.iter().copied())
            .chain(sp.load_balancer_ips.iter().copied())
            .collect();
        if before.is_empty() && !now.is_empty() {
            for d in &dests {
                out.insert(ConntrackCleanup {
                    protocol: Protocol::Udp,
                    orig_dst: Some(*d),
                    orig_port: None,
                    dnat: None,
                });
            }
            if sp.node_port != 0 {
                out.insert(ConntrackCleanup {
                    protocol: Protocol::Udp,
                    orig_dst: None,
                    orig_port: Some(sp.node_port),
                    dnat: None,
                });
            }
        }
        for gone in before.difference(&now) {
            for d in &dests {
                out.insert(ConntrackCleanup {
                    protocol: Protocol::Udp,
                    orig_dst: Some(*d),
                    orig_port: None,
                    dnat: Some(*gone),
                });
            }
            if sp.node_port != 0 {
                out.insert(ConntrackCleanup {
                    protocol: Protocol::Udp,
                    orig_dst: None,
                    orig_port: Some(sp.node_port),
                    dnat: Some(*gone),
                });
            }
        }
    }
    // Deleted UDP services: their endpoints' flows are stale too.
    for (name, sp) in old {
        if sp.name.protocol != Protocol::Udp || new.contains_key(name) {
            continue;
        }
        for ep in categorize(sp).all_reachable {
            out.insert(ConntrackCleanup {
                protocol: Protocol::Udp,
                orig_dst: Some(sp.cluster_ip),
                orig_port: None,
                dnat: Some(ep.ip),
            });
        }
    }
    out
}

/// Holds what was last applied and turns a set of service ports into kernel rules.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    runner: Runner,
    metrics: Metrics,
    ipt_prev: Option<Ruleset>,
    nft_prev: Option<NftState>,
    last_full: Option<Instant>,
    ports_prev: ServicePortMap,
}

impl Engine {
    /// A new engine; its first sync is full.
    pub fn new(cfg: EngineConfig, runner: Runner, metrics: Metrics) -> Engine {
        Engine {
            cfg,
            runner,
            metrics,
            ipt_prev: None,
            nft_prev: None,
            last_full: None,
            ports_prev: ServicePortMap::new(),
        }
    }

    /// Forces the next sync to be full (and, in nftables mode, to recreate the table).
    pub fn invalidate(&mut self) {
        self.ipt_prev = None;
        self.nft_prev = None;
    }

    /// Whether the next sync will be full.
    pub fn full_due(&self) -> bool {
        let stale = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.cfg.sync_period);
        match self.cfg.mode {
            ProxyMode::Iptables => self.ipt_prev.is_none() || stale,
            ProxyMode::Nftables => self.nft_prev.is_none() || stale,
        }
    }

    /// In iptables mode, whether the canary chains are gone (the tables were flushed):
    /// then the next sync is made full.
    pub async fn check_canary(&mut self) -> bool {
        if self.cfg.mode != ProxyMode::Iptables || self.ipt_prev.is_none() {
            return false;
        }
        match self.runner.canaries_present().await {
            Ok(true) => false,
            Ok(false) => {
                tracing::info!("iptables canary chain is gone; resyncing all rules");
                self.invalidate();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "checking the iptables canary");
                false
            }
        }
    }

    /// Programs the given service ports; `force_full` rewrites everything (in place: in
    /// nftables mode the table is only recreated after [`Engine::invalidate`]).
    pub async fn sync(
        &mut self,
        ports: &ServicePortMap,
        force_full: bool,
    ) -> Result<SyncReport, ApplyError> {
        let start = Instant::now();
        let full = force_full || self.full_due();
        let result = match self.cfg.mode {
            ProxyMode::Iptables => self.sync_iptables(ports, full).await,
            ProxyMode::Nftables => self.sync_nft(ports, full).await,
        };
        match result {
            Ok((input, rules)) => {
                if full {
                    self.last_full = Some(Instant::now());
                }
                for c in conntrack_cleanups(&self.ports_prev, ports) {
                    if let Err(e) = self
                        .runner
                        .conntrack_delete(c.protocol, c.orig_dst, c.orig_port, c.dnat)
                        .await
                    {
                        tracing::warn!(error = %e, "deleting stale UDP conntrack entries");
                    }
                }
                self.ports_prev = ports.clone();
                self.metrics.record_sync(start.elapsed(), full, rules);
                Ok(SyncReport {
                    full,
                    bytes: input.len(),
                    input,
                })
            }
            Err(e) => {
                self.invalidate();
                self.metrics.record_failure();
                Err(e)
            }
        }
    }

    async fn sync_iptables(
        &mut self,
        ports: &ServicePortMap,
        full: bool,
    ) -> Result<(String, Vec<(String, usize)>), ApplyError> {
        let gen = GenConfig {
            cluster_cidr: self.cfg.cluster_cidr,
            masquerade_bit: self.cfg.masquerade_bit,
            node_ips: self.cfg.node_ips.clone(),
        };
        let desired = iptables::generate(ports, &gen);
        let (prev, existing) = if full {
            // Chains left by an earlier run (or by services deleted while we were down).
            (None, self.runner.nat_chains().await?)
        } else {
            (self.ipt_prev.as_ref(), BTreeSet::new())
        };
        let input = iptables::render(&desired, prev, &existing);
        self.runner.iptables_restore(&input).await?;
        if full {
            self.runner.ensure_base_rules().await?;
        }
        let rules = vec![
            ("filter".to_string(), desired.filter.rule_count()),
            ("nat".to_string(), desired.nat.rule_count()),
        ];
        self.ipt_prev = Some(desired);
        Ok((input, rules))
    }

    async fn sync_nft(
        &mut self,
        ports: &ServicePortMap,
        full: bool,
    ) -> Result<(String, Vec<(String, usize)>), ApplyError> {
        let cfg = NftConfig {
            cluster_cidr: self.cfg.cluster_cidr,
            masquerade_bit: self.cfg.masquerade_bit,
            node_ips: self.cfg.node_ips.clone(),
        };
        let desired = nft::generate(ports, &cfg);
        let empty = NftState::default();
        let (kind, prev) = match &self.nft_prev {
            None => (SyncKind::Fresh, &empty),
            Some(p) if full => (SyncKind::Full, p),
            Some(p) => (SyncKind::Partial, p),
        };
        let script = nft::render(&desired, prev, kind, &cfg);
        if !script.is_empty() {
            self.runner.nft_apply(&script).await?;
        }
        let rules = vec![("nft".to_string(), desired.rule_count())];
        self.nft_prev = Some(desired);
        Ok((script, rules))
    }
}

/// The node's InternalIP addresses from its Node object (empty if unavailable).
async fn node_ips_from_api(client: &kube::Client, node: &str) -> Vec<Ipv4Addr> {
    let api: Api<Node> = Api::all(client.clone());
    match api.get_opt(node).await {
        Ok(Some(n)) => n
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// The proxy's main loop (see [`crate::run`]).
pub async fn run(client: kube::Client, cfg: ProxyConfig) -> anyhow::Result<()> {
    let cluster_cidr: Ipv4Net = cfg
        .cluster_cidr
        .parse()
        .with_context(|| format!("cluster CIDR {:?}", cfg.cluster_cidr))?;
    let metrics = Metrics::default();
    if let Some(addr) = cfg.metrics_bind {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, m).await {
                tracing::warn!(error = %e, %addr, "metrics endpoint stopped");
            }
        });
    }
    // Pods on a bridge reach a Service whose endpoint is on the same bridge only if
    // bridged packets pass netfilter (conntrack must undo the DNAT on the reply), as
    // kube-proxy expects of br_netfilter. Best effort: the file may not exist.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::debug!(error = %e, "could not set net.bridge.bridge-nf-call-iptables");
    }
    let mut node_ips = cfg.node_ips.clone();
    if node_ips.is_empty() {
        node_ips = node_ips_from_api(&client, &cfg.node_name).await;
    }
    let cache = Cache::default();
    cache.spawn_watchers(client);
    let engine = Engine::new(
        EngineConfig {
            mode: cfg.mode,
            cluster_cidr,
            masquerade_bit: cfg.masquerade_bit,
            node_ips,
            sync_period: cfg.sync_period,
        },
        Runner::local(),
        metrics.clone(),
    );
    drive(
        cache,
        engine,
        &cfg.node_name,
        cfg.sync_period,
        cfg.min_sync_period,
        metrics,
    )
    .await
}

/// Runs syncs from a cache until the task is dropped: after changes (batched by
/// `min_sync_period`), every `sync_period` (full), and when the canary disappears.
pub async fn drive(
    cache: Cache,
    mut engine: Engine,
    node_name: &str,
    sync_period: Duration,
    min_sync_period: Duration,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let mut dirty = false;
    let mut last_sync: Option<Instant> = None;
    let mut canary = tokio::time::interval(CANARY_INTERVAL);
    let mut full_timer = tokio::time::interval(sync_period.max(Duration::from_millis(100)));
    let mut force_full = false;
    loop {
        tokio::select! {
            _ = cache.changed() => dirty = true,
            _ = full_timer.tick() => {
                dirty = true;
                force_full = true;
            }
            _ = canary.tick() => {
                if engine.check_canary().await {
                    dirty = true;
                }
            }
        }
        if !dirty || !cache.ready() {
            continue;
        }
        if let Some(t) = last_sync {
            let since = t.elapsed();
            if since < min_sync_period {
                // Batch: let more changes arrive before writing.
                tokio::time::sleep(min_sync_period - since).await;
            }
        }
        dirty = false;
        let snap = cache.snapshot();
        let (ports, skipped) = model::build(&snap.services, &snap.slices, node_name);
        for s in &skipped {
            tracing::debug!(service = %s.service, reason = %s.reason, "not proxying service");
        }
        last_sync = Some(Instant::now());
        let full = std::mem::take(&mut force_full);
        match engine.sync(&ports, full).await {
            Ok(report) => {
                tracing::debug!(
                    full = report.full,
                    bytes = report.bytes,
                    "synced proxy rules"
                );
                let now = SystemTime::now();
                for t in snap.triggers {
                    metrics.record_programming(now.duration_since(t).unwrap_or_default());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "syncing proxy rules failed; retrying with a full sync");
                let c = cache.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_DELAY).await;
                    c.poke();
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn udp_cleanup_on_endpoint_removal_and_first_endpoint() {
        let svc = fixtures::service(
            "kube-system",
            "dns",
            "ClusterIP",
            "10.96.0.10",
            &[("dns", 53, "UDP", 0)],
        );
        let full = fixtures::slice(
            "kube-system",
            "dns",
            "dns-1",
            &[("dns", 53, "UDP")],
            &[
                ("10.244.1.5", "n1", true, true, false),
                ("10.244.2.5", "n2", true, true, false),
            ],
        );
        let mut one = full.clone();
        one.endpoints.pop();
        let none = ServicePortMap::new();
        let (old, _) = model::build(std::slice::from_ref(&svc), &[full], "n1");
        let (new, _) = model::build(std::slice::from_ref(&svc), &[one], "n1");
        let c: Vec<_> = conntrack_cleanups(&old, &new).into_iter().collect();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].dnat, Some("10.244.2.5".parse().expect("ip")));
        assert_eq!(c[0].orig_dst, Some("10.96.0.10".parse().expect("ip")));
        let first: Vec<_> = conntrack_cleanups(&none, &new).into_iter().collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].dnat, None);
    }
}
