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
use std::collections::BTreeMap;

use crate::iptables::{self, GenConfig, Ruleset};
use crate::metrics::Metrics;
use crate::model::{self, categorize, Protocol, ServicePort, ServicePortMap, ServicePortName};
use crate::nft::{self, NftConfig, NftState, SyncKind};
use crate::watch::Cache;
use crate::{ProxyConfig, ProxyMode};

/// How often the canary chains are checked in iptables mode (at least; a check that
/// takes long, on a node with huge tables, stretches the interval to 10 times its
/// duration so that checking never costs more than a tenth of a core).
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

/// One changed service port: what was applied before and what is wanted now.
pub type Change<'a> = (Option<&'a ServicePort>, Option<&'a ServicePort>);

/// The service ports that differ between two maps (a merge of the two sorted maps).
pub fn changes<'a>(old: &'a ServicePortMap, new: &'a ServicePortMap) -> Vec<Change<'a>> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((Some(*va), None));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((None, Some(*vb)));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.push((Some(*va), Some(*vb)));
                    }
                    a.next();
                    b.next();
                }
            },
            (Some((_, va)), None) => {
                out.push((Some(*va), None));
                a.next();
            }
            (None, Some((_, vb))) => {
                out.push((None, Some(*vb)));
                b.next();
            }
        }
    }
    out
}

/// Which conntrack entries the changes make stale: flows to endpoints a UDP service
/// port no longer uses, and flows to a UDP service port that had no endpoints (they
/// were rejected and would stay so).
pub fn conntrack_cleanups(changes: &[Change]) -> BTreeSet<ConntrackCleanup> {
    let mut out = BTreeSet::new();
    let udp = |ip: Option<Ipv4Addr>, port: Option<u16>, dnat: Option<Ipv4Addr>| ConntrackCleanup {
        protocol: Protocol::Udp,
        orig_dst: ip,
        orig_port: port,
        dnat,
    };
    for (old, new) in changes {
        let reach = |sp: &Option<&ServicePort>| -> BTreeSet<Ipv4Addr> {
            sp.filter(|s| s.name.protocol == Protocol::Udp)
                .map(|s| categorize(s).all_reachable.iter().map(|e| e.ip).collect())
                .unwrap_or_default()
        };
        let (before, now) = (reach(old), reach(new));
        // Addresses and node port the flows were sent to: the old ones for removed
        // endpoints, the new ones for a port that gains its first endpoint.
        let dests = |sp: &ServicePort| -> Vec<Ipv4Addr> {
            std::iter::once(sp.cluster_ip)
                .chain(sp.external_ips.iter().copied())
                .chain(sp.load_balancer_ips.iter().copied())
                .collect()
        };
        if let Some(sp) = new.filter(|_| before.is_empty() && !now.is_empty()) {
            for d in dests(sp) {
                out.insert(udp(Some(d), None, None));
            }
            if sp.node_port != 0 {
                out.insert(udp(None, Some(sp.node_port), None));
            }
        }
        if let Some(sp) = old {
            for gone in before.difference(&now) {
                for d in dests(sp) {
                    out.insert(udp(Some(d), None, Some(*gone)));
                }
                if sp.node_port != 0 {
                    out.insert(udp(None, Some(sp.node_port), Some(*gone)));
                }
            }
        }
    }
    out
}

/// Holds what was last applied and turns a set of service ports into kernel rules.
///
/// Rules are generated per service port and kept; a sync regenerates only the ports
/// that changed and, between full syncs, writes only what they changed.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    runner: Runner,
    metrics: Metrics,
    /// Whether the kernel holds what the fragments say (else the next sync is full).
    in_sync: bool,
    /// In nftables mode: whether the table must be recreated from scratch.
    nft_fresh: bool,
    last_full: Option<Instant>,
    /// Time between full syncs: `sync_period`, stretched to 10 times the last full
    /// sync's duration (iptables mode needs minutes for a full sync at 30,000 services;
    /// full syncs back to back would leave no time for anything else).
    full_every: Duration,
    ports: ServicePortMap,
    ipt_frags: BTreeMap<ServicePortName, Ruleset>,
    nft_frags: BTreeMap<ServicePortName, NftState>,
    /// In nftables mode: the pick ids of the service and local chains.
    nft_picks: nft::PickIds,
    /// The whole nftables state as applied (fragments merged, cluster IPs counted).
    nft_whole: NftState,
    cluster_ip_users: BTreeMap<Ipv4Addr, usize>,
    /// In nftables mode: chains and sets flushed by partial syncs, to be deleted by
    /// the next full sync.
    nft_stale: nft::Stale,
    /// Conntrack deletions owed by changes whose sync failed (done after the next one).
    pending_cleanups: BTreeSet<ConntrackCleanup>,
    /// Told once the first sync succeeded (see [`crate::ProxyConfig::synced`]).
    synced: Option<tokio::sync::watch::Sender<bool>>,
}

impl Engine {
    /// A new engine; its first sync is full.
    pub fn new(cfg: EngineConfig, runner: Runner, metrics: Metrics) -> Engine {
        let sync_period = cfg.sync_period;
        Engine {
            cfg,
            runner,
            metrics,
            in_sync: false,
            nft_fresh: true,
            last_full: None,
            full_every: sync_period,
            ports: ServicePortMap::new(),
            ipt_frags: BTreeMap::new(),
            nft_frags: BTreeMap::new(),
            nft_picks: nft::PickIds::default(),
            nft_whole: NftState::default(),
            cluster_ip_users: BTreeMap::new(),
            nft_stale: nft::Stale::default(),
            pending_cleanups: BTreeSet::new(),
            synced: None,
        }
    }

    /// Sets `tx` to true after the first successful sync.
    pub fn report_first_sync(&mut self, tx: tokio::sync::watch::Sender<bool>) {
        self.synced = Some(tx);
    }

    /// Forces the next sync to be full (and, in nftables mode, to recreate the table).
    pub fn invalidate(&mut self) {
        self.in_sync = false;
        self.nft_fresh = true;
    }

    /// Whether the next sync will be full.
    pub fn full_due(&self) -> bool {
        !self.in_sync
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= self.full_every)
    }

    /// In iptables mode, whether the canary chains are gone (the tables were flushed):
    /// then the next sync is made full.
    pub async fn check_canary(&mut self) -> bool {
        if self.cfg.mode != ProxyMode::Iptables || !self.in_sync {
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

    fn gen_config(&self) -> GenConfig {
        GenConfig {
            cluster_cidr: self.cfg.cluster_cidr,
            masquerade_bit: self.cfg.masquerade_bit,
            node_ips: self.cfg.node_ips.clone(),
        }
    }

    fn nft_config(&self) -> NftConfig {
        NftConfig {
            cluster_cidr: self.cfg.cluster_cidr,
            masquerade_bit: self.cfg.masquerade_bit,
            node_ips: self.cfg.node_ips.clone(),
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
        let mut old_ports = std::mem::take(&mut self.ports);
        let changed = changes(&old_ports, ports);
        let result = match self.cfg.mode {
            ProxyMode::Iptables => self.sync_iptables(&changed, full).await,
            ProxyMode::Nftables => self.sync_nft(&changed, full).await,
        };
        self.pending_cleanups.extend(conntrack_cleanups(&changed));
        // The fragments now describe `ports`, applied or not; copy only what changed.
        let updates: Vec<(ServicePortName, Option<ServicePort>)> = changed
            .iter()
            .filter_map(|(o, n)| Some((o.or(*n)?.name.clone(), n.cloned())))
            .collect();
        drop(changed);
        for (k, v) in updates {
            match v {
                Some(v) => old_ports.insert(k, v),
                None => old_ports.remove(&k),
            };
        }
        self.ports = old_ports;
        match result {
            Ok((input, rules)) => {
                self.in_sync = true;
                if let Some(tx) = self.synced.take() {
                    tx.send_replace(true);
                }
                if full {
                    self.last_full = Some(Instant::now());
                    self.full_every = self.cfg.sync_period.max(start.elapsed() * 10);
                }
                for c in std::mem::take(&mut self.pending_cleanups) {
                    if let Err(e) = self
                        .runner
                        .conntrack_delete(c.protocol, c.orig_dst, c.orig_port, c.dnat)
                        .await
                    {
                        tracing::warn!(error = %e, "deleting stale UDP conntrack entries");
                    }
                }
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
        changed: &[Change<'_>],
        full: bool,
    ) -> Result<(String, Vec<(String, usize)>), ApplyError> {
        let gen = self.gen_config();
        let mut pairs: Vec<(Option<Ruleset>, Option<Ruleset>)> = Vec::new();
        for (old, new) in changed {
            let name = &old.or(*new).expect("a change has a side").name;
            let before = self.ipt_frags.remove(name);
            let after = new.map(|sp| iptables::port_rules(sp, &gen));
            if let Some(a) = &after {
                self.ipt_frags.insert(name.clone(), a.clone());
            }
            pairs.push((before, after));
        }
        let input = if full {
            // Chains left by an earlier run (or by services deleted while we were down).
            let existing = self.runner.nat_chains().await?;
            let txs = iptables::render_full(self.ipt_frags.values(), &existing, &gen);
            for t in &txs {
                self.runner.iptables_restore(t).await?;
            }
            self.runner.ensure_base_rules().await?;
            txs.concat()
        } else {
            let refs: Vec<(Option<&Ruleset>, Option<&Ruleset>)> = pairs
                .iter()
                .map(|(a, b)| (a.as_ref(), b.as_ref()))
                .collect();
            let input = iptables::render_partial(&refs);
            if !input.is_empty() {
                self.runner.iptables_restore(&input).await?;
            }
            input
        };
        let (mut filter, mut nat) = (3usize, 7usize);
        for f in self.ipt_frags.values() {
            filter += f.filter.rule_count();
            nat += f.nat.rule_count();
        }
        Ok((
            input,
            vec![("filter".to_string(), filter), ("nat".to_string(), nat)],
        ))
    }

    async fn sync_nft(
        &mut self,
        changed: &[Change<'_>],
        full: bool,
    ) -> Result<(String, Vec<(String, usize)>), ApplyError> {
        let cfg = self.nft_config();
        let previous = if full {
            Some(self.nft_whole.clone())
        } else {
            None
        };
        // The changed ports' parts before and after, rendered as one difference so that
        // an element moving from one port to another is deleted before it is added.
        let (mut before_all, mut after_all) = (NftState::default(), NftState::default());
        for (old, new) in changed {
            let name = &old.or(*new).expect("a change has a side").name;
            let before = self.nft_frags.remove(name).unwrap_or_default();
            let after = new
                .map(|sp| nft::port_state(sp, &cfg, &mut self.nft_picks))
                .unwrap_or_default();
            for p in before.picks.values() {
                if !after.picks.values().any(|q| q.chain == p.chain) {
                    self.nft_picks.release(&p.chain);
                }
            }
            self.nft_whole.unmerge(&before);
            self.nft_whole.merge(&after);
            before_all.merge(&before);
            after_all.merge(&after);
            if new.is_some() {
                self.nft_frags.insert(name.clone(), after);
            }
            if let Some(o) = old {
                let n = self.cluster_ip_users.entry(o.cluster_ip).or_default();
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.cluster_ip_users.remove(&o.cluster_ip);
                }
            }
            if let Some(n) = new {
                *self.cluster_ip_users.entry(n.cluster_ip).or_default() += 1;
            }
        }
        let old_ips = std::mem::take(&mut self.nft_whole.cluster_ips);
        self.nft_whole.cluster_ips = self.cluster_ip_users.keys().copied().collect();
        for m in [
            nft::SERVICE_IPS,
            nft::SERVICE_NODEPORTS,
            nft::NO_ENDPOINT_SERVICES,
            nft::NO_ENDPOINT_NODEPORTS,
            nft::FIREWALL_IPS,
        ] {
            self.nft_whole.maps.entry(m).or_default();
        }
        if full || self.nft_fresh {
            // Drop the hairpin pairs of endpoints that are gone (see `NftState::hairpin`).
            self.nft_whole.hairpin = self
                .nft_frags
                .values()
                .flat_map(|f| f.hairpin.iter().copied())
                .collect();
        }
        let rules = || vec![("nft".to_string(), self.nft_whole.rule_count())];
        if self.nft_fresh {
            let script = nft::render(&self.nft_whole, &NftState::default(), SyncKind::Fresh, &cfg);
            for t in nft::split_fresh(&script) {
                self.runner.nft_apply(&t).await?;
            }
            self.nft_fresh = false;
            self.nft_stale = nft::Stale::default();
            return Ok((script, rules()));
        }
        let script = if full {
            let prev = previous.unwrap_or_default();
            let mut script = nft::render(&self.nft_whole, &prev, SyncKind::Full, &cfg);
            script.push_str(&nft::render_deletions(&self.nft_stale, &self.nft_whole));
            script
        } else {
            // Cluster IPs are shared by a Service's ports: only the net change is
            // written.
            before_all.cluster_ips = old_ips;
            after_all.cluster_ips = self.nft_whole.cluster_ips.clone();
            after_all.complete_pick_maps(&mut before_all, &self.nft_whole);
            let script = nft::render(&after_all, &before_all, SyncKind::Partial, &cfg);
            self.nft_stale.extend(nft::stale(&after_all, &before_all));
            script
        };
        if !script.is_empty() {
            self.runner.nft_apply(&script).await?;
        }
        if full {
            self.nft_stale = nft::Stale::default();
        }
        Ok((script, rules()))
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
    let mut engine = Engine::new(
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
    if let Some(tx) = cfg.synced.clone() {
        engine.report_first_sync(tx);
    }
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
    let mut canary_at = tokio::time::Instant::now() + CANARY_INTERVAL;
    // Wakes the loop every sync_period; the engine decides whether a full sync is due
    // (see `Engine::full_due`).
    let mut full_timer = tokio::time::interval(sync_period.max(Duration::from_millis(100)));
    // The service ports, updated Service by Service as the cache reports changes.
    let mut ports = ServicePortMap::new();
    loop {
        tokio::select! {
            _ = cache.changed() => dirty = true,
            _ = full_timer.tick() => dirty |= engine.full_due(),
            _ = tokio::time::sleep_until(canary_at) => {
                let t = Instant::now();
                if engine.check_canary().await {
                    dirty = true;
                }
                canary_at = tokio::time::Instant::now() + CANARY_INTERVAL.max(t.elapsed() * 10);
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
        let changes = cache.take_changes();
        for c in &changes.services {
            let skipped = model::update_service(
                &mut ports,
                &c.namespace,
                &c.name,
                c.service.as_ref(),
                &c.slices,
                node_name,
            );
            if let Some(s) = skipped {
                tracing::debug!(service = %s.service, reason = %s.reason, "not proxying service");
            }
        }
        last_sync = Some(Instant::now());
        match engine.sync(&ports, false).await {
            Ok(report) => {
                tracing::debug!(
                    full = report.full,
                    bytes = report.bytes,
                    "synced proxy rules"
                );
                let now = SystemTime::now();
                for t in changes.triggers {
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
        let c: Vec<_> = conntrack_cleanups(&changes(&old, &new))
            .into_iter()
            .collect();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].dnat, Some("10.244.2.5".parse().expect("ip")));
        assert_eq!(c[0].orig_dst, Some("10.96.0.10".parse().expect("ip")));
        let first: Vec<_> = conntrack_cleanups(&changes(&none, &new))
            .into_iter()
            .collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].dnat, None);
    }

    #[tokio::test]
    async fn slow_full_syncs_are_spaced_out() {
        // Every command takes at least 50 ms; full syncs are due every millisecond.
        let runner = Runner::with_prefix(vec![
            "sh".into(),
            "-c".into(),
            "cat >/dev/null; sleep 0.05".into(),
            "sh".into(),
        ]);
        let mut engine = Engine::new(
            EngineConfig {
                mode: ProxyMode::Nftables,
                cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
                masquerade_bit: 14,
                node_ips: vec![],
                sync_period: Duration::from_millis(1),
            },
            runner,
            Metrics::default(),
        );
        let (ports, _) = model::build(&[fixtures::seed_service()], &[fixtures::seed_slice()], "n1");
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(report.full);
        // The next full sync waits 10 times as long as this one took (>= 0.5 s).
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!engine.full_due());
        assert!(!engine.sync(&ports, false).await.expect("sync").full);
    }
}
