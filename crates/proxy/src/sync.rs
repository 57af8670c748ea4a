//! The sync engine and the loop that drives it.
//!
//! [`Engine`] is the part both modes share: it keeps the service ports last synced,
//! hands the changes to its [`Backend`] (iptables or nftables, which owns what it
//! generated), decides when a sync is full (first, after a failure or a flushed canary,
//! every `sync_period` stretched to 10 times the last full sync) and deletes stale UDP
//! conntrack entries once a sync succeeded. It touches the kernel only through a
//! [`Runner`], so its unit tests run against a recording fake, without root.
//!
//! [`drive`] runs it from the watch cache: changes batched by `min_sync_period`,
//! periodic full syncs, the canary check, and a retry after a failed sync.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
// tokio's clock, so that tests with a paused clock see time pass as commands take it.
use tokio::time::Instant;

use crate::apply;
use crate::backend::{self, Applied, Backend};
use crate::metrics::Metrics;
use crate::model::{
    self, categorize, changes, Change, Protocol, RuleConfig, ServicePort, ServicePortMap,
    ServicePortName,
};
use crate::runner::{ApplyError, Exec, Runner};
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
    /// iptables or nftables: which [`Backend`].
    pub mode: ProxyMode,
    /// What the rules depend on besides the services.
    pub rules: RuleConfig,
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

/// Decides when a sync is full, keeps the service ports last synced and the conntrack
/// deletions owed, and has its [`Backend`] write the changes.
///
/// Rules are generated per service port and kept by the backend; a sync regenerates
/// only the ports that changed and, between full syncs, writes only what they changed.
#[derive(Debug)]
pub struct Engine {
    sync_period: Duration,
    backend: Box<dyn Backend>,
    runner: Arc<dyn Runner>,
    metrics: Metrics,
    /// Whether the kernel holds what the backend says (else the next sync is full).
    in_sync: bool,
    last_full: Option<Instant>,
    /// Time between full syncs: `sync_period`, stretched to 10 times the last full
    /// sync's duration (iptables mode needs minutes for a full sync at 30,000 services;
    /// full syncs back to back would leave no time for anything else).
    full_every: Duration,
    ports: ServicePortMap,
    /// Conntrack deletions owed by changes whose sync failed (done after the next one).
    pending_cleanups: BTreeSet<ConntrackCleanup>,
    /// Told once the first sync succeeded (see [`crate::ProxyConfig::synced`]).
    synced: Option<tokio::sync::watch::Sender<bool>>,
}

impl Engine {
    /// A new engine with the backend of `cfg.mode`, running its commands with `runner`;
    /// its first sync is full.
    pub fn new(cfg: EngineConfig, runner: Arc<dyn Runner>, metrics: Metrics) -> Engine {
        Engine::with_backend(
            backend::for_mode(cfg.mode, cfg.rules),
            cfg.sync_period,
            runner,
            metrics,
        )
    }

    /// A new engine over the given backend; its first sync is full.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        sync_period: Duration,
        runner: Arc<dyn Runner>,
        metrics: Metrics,
    ) -> Engine {
        Engine {
            sync_period,
            backend,
            runner,
            metrics,
            in_sync: false,
            last_full: None,
            full_every: sync_period,
            ports: ServicePortMap::new(),
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
        self.backend.invalidate();
    }

    /// Whether the next sync will be full.
    pub fn full_due(&self) -> bool {
        !self.in_sync
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= self.full_every)
    }

    /// Whether the rules were flushed behind the proxy's back (in iptables mode: the
    /// canary chains are gone): then the next sync is made full.
    pub async fn check_canary(&mut self) -> bool {
        if !self.in_sync {
            return false;
        }
        match self.backend.flushed(&*self.runner).await {
            Ok(false) => false,
            Ok(true) => {
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
        let mut old_ports = std::mem::take(&mut self.ports);
        let changed = changes(&old_ports, ports);
        let result = self.backend.sync(&*self.runner, &changed, full).await;
        self.pending_cleanups.extend(conntrack_cleanups(&changed));
        // The backend's state now describes `ports`, applied or not; copy only what
        // changed.
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
            Ok(Applied { input, rules }) => {
                self.in_sync = true;
                if let Some(tx) = self.synced.take() {
                    tx.send_replace(true);
                }
                if full {
                    self.last_full = Some(Instant::now());
                    self.full_every = self.sync_period.max(start.elapsed() * 10);
                }
                for c in std::mem::take(&mut self.pending_cleanups) {
                    if let Err(e) = apply::conntrack_delete(
                        &*self.runner,
                        c.protocol,
                        c.orig_dst,
                        c.orig_port,
                        c.dnat,
                    )
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
            rules: RuleConfig {
                cluster_cidr,
                masquerade_bit: cfg.masquerade_bit,
                node_ips,
            },
            sync_period: cfg.sync_period,
        },
        Arc::new(Exec::local()),
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
    use crate::runner::{Call, Recording};
    use crate::{iptables, nft};

    const NODE: &str = "k8s-n1";

    fn rules() -> RuleConfig {
        RuleConfig {
            cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
            masquerade_bit: 14,
            node_ips: vec!["192.168.64.11".parse().expect("ip")],
        }
    }

    /// An engine over a recording fake kernel, with no periodic full syncs.
    fn engine(mode: ProxyMode) -> (Engine, Arc<Recording>, Metrics) {
        engine_every(mode, Duration::from_secs(3600))
    }

    fn engine_every(mode: ProxyMode, sync_period: Duration) -> (Engine, Arc<Recording>, Metrics) {
        let kernel = Arc::new(Recording::new());
        let metrics = Metrics::default();
        let engine = Engine::new(
            EngineConfig {
                mode,
                rules: rules(),
                sync_period,
            },
            kernel.clone(),
            metrics.clone(),
        );
        (engine, kernel, metrics)
    }

    fn other_service() -> k8s_openapi::api::core::v1::Service {
        fixtures::service(
            "default",
            "other",
            "ClusterIP",
            "10.96.0.140",
            &[("", 80, "TCP", 0)],
        )
    }

    fn other_slice() -> k8s_openapi::api::discovery::v1::EndpointSlice {
        fixtures::slice(
            "default",
            "other",
            "other-1",
            &[("", 8080, "TCP")],
            &[
                ("10.244.1.50", "k8s-n1", true, true, false),
                ("10.244.2.50", "k8s-n2", true, true, false),
            ],
        )
    }

    /// The seed's Service and `default/other`.
    fn two_services() -> ServicePortMap {
        model::build(
            &[fixtures::seed_service(), other_service()],
            &[fixtures::seed_slice(), other_slice()],
            NODE,
        )
        .0
    }

    /// `two_services` with the seed's endpoint 10.244.2.35 gone.
    fn one_endpoint_less() -> ServicePortMap {
        let mut slice = fixtures::seed_slice();
        slice.endpoints.retain(|e| e.addresses[0] != "10.244.2.35");
        model::build(
            &[fixtures::seed_service(), other_service()],
            &[slice, other_slice()],
            NODE,
        )
        .0
    }

    fn lines(calls: &[Call]) -> Vec<String> {
        calls.iter().map(Call::line).collect()
    }

    fn programs(calls: &[Call]) -> Vec<&str> {
        calls.iter().map(|c| c.program.as_str()).collect()
    }

    const RESTORE: &str = "iptables-restore -w 5 --noflush --counters";

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
    async fn iptables_first_sync_is_full() {
        let (mut engine, kernel, metrics) = engine(ProxyMode::Iptables);
        // A chain left by an earlier run, which the full sync deletes.
        let saved = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-GONEGONEGONEGONE - [0:0]\nCOMMIT\n";
        kernel.stdout("iptables-save", saved);
        let ports = two_services();
        assert!(engine.full_due());
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(report.full);

        let calls = kernel.take();
        assert_eq!(calls[0].line(), "iptables-save");
        let restores: Vec<&Call> = calls.iter().filter(|c| c.line() == RESTORE).collect();
        let frags: Vec<_> = ports
            .values()
            .map(|sp| iptables::port_rules(sp, &rules()))
            .collect();
        let existing = ["KUBE-SERVICES", "KUBE-SVC-GONEGONEGONEGONE"]
            .map(String::from)
            .into();
        let mut want = iptables::render_full(frags.iter(), &existing, &rules());
        // Last, the canaries and jumps the kernel lacks (here all of them).
        want.extend(iptables::render_base(saved));
        let got: Vec<&str> = restores.iter().map(|c| c.input()).collect();
        assert_eq!(got, want);
        assert_eq!(report.input, want.concat());
        assert!(report.input.contains("-X KUBE-SVC-GONEGONEGONEGONE"));
        // One look at the kernel, then restores only.
        assert_eq!(calls.len(), 1 + restores.len(), "{:#?}", lines(&calls));
        assert_eq!(metrics.syncs(), (1, 0));

        // Nothing changed: nothing is written.
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(!report.full);
        assert_eq!(report.input, "");
        assert_eq!(kernel.take(), vec![]);
        assert_eq!(metrics.syncs(), (1, 1));
    }

    #[tokio::test]
    async fn iptables_full_sync_adds_only_missing_canaries_and_jumps() {
        let (mut engine, kernel, _) = engine(ProxyMode::Iptables);
        // An empty kernel: the last restore creates the canaries and every jump.
        engine.sync(&two_services(), false).await.expect("sync");
        let calls = kernel.take();
        let last = calls.last().expect("calls").input();
        assert_eq!(Some(last.to_string()), iptables::render_base(""));
        assert_eq!(last.matches(":KUBE-PROXY-CANARY - [0:0]").count(), 3);
        assert_eq!(last.matches("\n-I ").count(), iptables::jumps().len());

        // A kernel holding them all (as the restore above leaves it): nothing is added.
        let mut saved = String::new();
        for table in ["mangle", "nat", "filter"] {
            saved += &format!("*{table}\n:KUBE-PROXY-CANARY - [0:0]\n");
            let base = iptables::render_base("").expect("base");
            for l in iptables::saved_table(&base, table) {
                if let Some(rule) = l.strip_prefix("-I ") {
                    saved += &format!("-A {rule}\n");
                }
            }
            saved += "COMMIT\n";
        }
        assert_eq!(iptables::render_base(&saved), None);
        kernel.stdout("iptables-save", &saved);
        engine.sync(&two_services(), true).await.expect("sync");
        let calls = kernel.take();
        let all: String = calls.iter().map(Call::input).collect();
        assert!(!all.contains("KUBE-PROXY-CANARY"), "{all}");
        assert!(!all.contains("\n-I "), "{all}");
    }

    #[tokio::test]
    async fn iptables_partial_sync_sends_only_changed_chains() {
        let (mut engine, kernel, _) = engine(ProxyMode::Iptables);
        let before = two_services();
        engine.sync(&before, false).await.expect("sync");
        kernel.take();

        let after = one_endpoint_less();
        let report = engine.sync(&after, false).await.expect("sync");
        assert!(!report.full);
        let calls = kernel.take();
        assert_eq!(lines(&calls), [RESTORE]);
        let frag = |sp: Option<&ServicePort>| sp.map(|sp| iptables::port_rules(sp, &rules()));
        let pairs: Vec<_> = changes(&before, &after)
            .into_iter()
            .map(|(o, n)| (frag(o), frag(n)))
            .collect();
        assert_eq!(pairs.len(), 1, "only the seed's port changed");
        let refs: Vec<_> = pairs
            .iter()
            .map(|(a, b)| (a.as_ref(), b.as_ref()))
            .collect();
        assert_eq!(calls[0].input(), iptables::render_partial(&refs));
        assert_eq!(report.input, calls[0].input());
        // The removed endpoint's chain goes; the other Service is not touched.
        let other = after
            .keys()
            .find(|k| k.name == "other")
            .expect("other's port");
        let text = calls[0].input();
        assert!(text.contains("-X KUBE-SEP-2PT6QZGNQHS4OL4I"), "{text}");
        assert!(!text.contains(&crate::names::svc_chain(other)), "{text}");
        assert!(!text.contains(":KUBE-SERVICES"), "{text}");
    }

    #[tokio::test]
    async fn a_failed_restore_makes_the_next_sync_full() {
        let (mut engine, kernel, metrics) = engine(ProxyMode::Iptables);
        engine.sync(&two_services(), false).await.expect("sync");
        kernel.take();

        kernel.fail_call(0);
        let after = one_endpoint_less();
        let err = engine.sync(&after, false).await.expect_err("restore fails");
        assert!(matches!(err, ApplyError::Failed { .. }), "{err}");
        assert_eq!(lines(&kernel.take()), [RESTORE]);
        assert_eq!(metrics.syncs(), (1, 0));
        assert!(engine.full_due());

        // Nothing changed since, but everything is written again, as it is now.
        let report = engine.sync(&after, false).await.expect("sync");
        assert!(report.full);
        let calls = kernel.take();
        assert_eq!(calls[0].line(), "iptables-save");
        let frags: Vec<_> = after
            .values()
            .map(|sp| iptables::port_rules(sp, &rules()))
            .collect();
        let mut want = iptables::render_full(frags.iter(), &Default::default(), &rules());
        want.extend(iptables::render_base(""));
        let got: Vec<&str> = calls
            .iter()
            .filter(|c| c.line() == RESTORE)
            .map(Call::input)
            .collect();
        assert_eq!(got, want);
        assert!(!engine.full_due());
        assert_eq!(metrics.syncs(), (2, 0));
    }

    #[tokio::test]
    async fn a_flushed_canary_makes_the_next_sync_full() {
        let (mut engine, kernel, _) = engine(ProxyMode::Iptables);
        // Before the first sync there is nothing to check.
        assert!(!engine.check_canary().await);
        assert_eq!(kernel.take(), vec![]);
        let ports = two_services();
        engine.sync(&ports, false).await.expect("sync");
        kernel.take();

        assert!(!engine.check_canary().await);
        assert_eq!(kernel.take().len(), 3, "one look per table");
        assert!(!engine.full_due());

        kernel.fail_when("-t nat -n -L KUBE-PROXY-CANARY");
        assert!(engine.check_canary().await);
        assert!(engine.full_due());
        kernel.heal();
        kernel.take();
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(report.full);
        assert_eq!(kernel.take()[0].line(), "iptables-save");
    }

    #[tokio::test]
    async fn nftables_first_sync_creates_the_table_in_pieces() {
        let (mut engine, kernel, _) = engine(ProxyMode::Nftables);
        let (ports, _) = model::build(&[fixtures::seed_service()], &[fixtures::seed_slice()], NODE);
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(report.full);
        // The same text the golden test checks, from the generator alone.
        let want = nft::render(
            &nft::generate(&ports, &rules()),
            &nft::NftState::default(),
            nft::SyncKind::Fresh,
            &rules(),
        );
        assert_eq!(report.input, want);
        let calls = kernel.take();
        assert!(calls.iter().all(|c| c.line() == "nft -f -"));
        let got: Vec<&str> = calls.iter().map(Call::input).collect();
        assert_eq!(got, nft::split_fresh(&want));
        assert_eq!(got.concat(), want);
        // Nothing changed: nothing is written.
        assert_eq!(engine.sync(&ports, false).await.expect("sync").input, "");
        assert_eq!(kernel.take(), vec![]);
    }

    #[tokio::test]
    async fn nftables_flushed_chains_are_deleted_by_the_next_full_sync() {
        let (mut engine, kernel, _) = engine(ProxyMode::Nftables);
        engine.sync(&two_services(), false).await.expect("sync");
        let first = kernel.take();
        let other_chain = first
            .iter()
            .flat_map(|c| c.input().lines())
            .filter_map(|l| l.strip_prefix("add chain ip kube-proxy "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .find(|c| c.starts_with("service-") && c.contains("other"))
            .expect("the other Service's chain");

        // The other Service goes: a partial sync only flushes its chain.
        let (seed_only, _) =
            model::build(&[fixtures::seed_service()], &[fixtures::seed_slice()], NODE);
        let report = engine.sync(&seed_only, false).await.expect("sync");
        assert!(!report.full);
        let calls = kernel.take();
        assert_eq!(programs(&calls), ["nft"]);
        let text = calls[0].input();
        assert!(
            text.contains(&format!("flush chain ip kube-proxy {other_chain}")),
            "{text}"
        );
        assert!(!text.contains("delete chain"), "{text}");

        // The next full sync deletes it, and only that one does.
        let report = engine.sync(&seed_only, true).await.expect("sync");
        assert!(report.full);
        assert!(
            report
                .input
                .contains(&format!("delete chain ip kube-proxy {other_chain}\n")),
            "{}",
            report.input
        );
        assert!(!report.input.contains("delete table"), "{}", report.input);
        let report = engine.sync(&seed_only, true).await.expect("sync");
        assert!(!report.input.contains("delete chain"), "{}", report.input);
    }

    #[tokio::test]
    async fn nftables_failed_sync_recreates_the_table() {
        let (mut engine, kernel, metrics) = engine(ProxyMode::Nftables);
        engine.sync(&two_services(), false).await.expect("sync");
        kernel.take();

        kernel.fail_call(0);
        let after = one_endpoint_less();
        engine.sync(&after, false).await.expect_err("nft fails");
        assert_eq!(programs(&kernel.take()), ["nft"]);
        assert!(engine.full_due());

        let report = engine.sync(&after, false).await.expect("sync");
        assert!(report.full);
        let want = nft::render(
            &nft::generate(&after, &rules()),
            &nft::NftState::default(),
            nft::SyncKind::Fresh,
            &rules(),
        );
        assert_eq!(report.input, want);
        assert!(want.contains("delete table ip kube-proxy"));
        assert_eq!(metrics.syncs(), (2, 0));
    }

    #[tokio::test]
    async fn udp_conntrack_cleanup_waits_for_a_successful_sync() {
        let (mut engine, kernel, _) = engine(ProxyMode::Iptables);
        let svc = fixtures::service(
            "kube-system",
            "dns",
            "ClusterIP",
            "10.96.0.10",
            &[("dns", 53, "UDP", 0)],
        );
        let both = fixtures::slice(
            "kube-system",
            "dns",
            "dns-1",
            &[("dns", 53, "UDP")],
            &[
                ("10.244.1.5", "n1", true, true, false),
                ("10.244.2.5", "n2", true, true, false),
            ],
        );
        let mut one = both.clone();
        one.endpoints.pop();
        let (before, _) = model::build(std::slice::from_ref(&svc), &[both], "n1");
        let (after, _) = model::build(std::slice::from_ref(&svc), &[one], "n1");
        let conntrack = |calls: &[Call]| -> Vec<String> {
            calls
                .iter()
                .filter(|c| c.program == "conntrack")
                .map(Call::line)
                .collect()
        };

        // Its first endpoints: flows rejected until now are forgotten, after the rules.
        engine.sync(&before, false).await.expect("sync");
        let calls = kernel.take();
        assert_eq!(
            conntrack(&calls),
            ["conntrack -D -p udp --orig-dst 10.96.0.10"]
        );
        assert_eq!(calls.last().map(|c| c.program.as_str()), Some("conntrack"));

        // An endpoint goes but the restore fails: its flows stay until rules are written.
        kernel.fail_call(0);
        engine.sync(&after, false).await.expect_err("restore fails");
        assert_eq!(conntrack(&kernel.take()), Vec::<String>::new());
        engine.sync(&after, false).await.expect("sync");
        let calls = kernel.take();
        assert_eq!(
            conntrack(&calls),
            ["conntrack -D -p udp --orig-dst 10.96.0.10 --dst-nat 10.244.2.5"]
        );
        assert_eq!(calls.last().map(|c| c.program.as_str()), Some("conntrack"));
        // Owed once: the next sync deletes nothing.
        engine.sync(&after, true).await.expect("sync");
        assert_eq!(conntrack(&kernel.take()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn the_first_successful_sync_is_reported() {
        let (mut engine, kernel, _) = engine(ProxyMode::Nftables);
        let (tx, rx) = tokio::sync::watch::channel(false);
        engine.report_first_sync(tx);
        kernel.fail_call(0);
        engine
            .sync(&two_services(), false)
            .await
            .expect_err("nft fails");
        assert!(!*rx.borrow());
        engine.sync(&two_services(), false).await.expect("sync");
        assert!(*rx.borrow());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_full_syncs_are_spaced_out() {
        // Every command takes 50 ms (of the paused clock); full syncs are due every
        // millisecond.
        let (mut engine, kernel, _) = engine_every(ProxyMode::Nftables, Duration::from_millis(1));
        kernel.delay(Duration::from_millis(50));
        let (ports, _) = model::build(&[fixtures::seed_service()], &[fixtures::seed_slice()], "n1");
        let report = engine.sync(&ports, false).await.expect("sync");
        assert!(report.full);
        // The next full sync waits 10 times as long as this one took (>= 0.5 s).
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(!engine.full_due());
        assert!(!engine.sync(&ports, false).await.expect("sync").full);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(engine.full_due());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sync_loop_retries_a_failed_sync_and_follows_the_cache() {
        let kernel = Arc::new(Recording::new());
        let engine = Engine::new(
            EngineConfig {
                mode: ProxyMode::Nftables,
                rules: rules(),
                sync_period: Duration::from_secs(3600),
            },
            kernel.clone(),
            Metrics::default(),
        );
        let cache = Cache::default();
        cache.apply_service(fixtures::seed_service());
        cache.apply_slice(fixtures::seed_slice());
        // The first command fails: the loop retries (after RETRY_DELAY) from scratch.
        kernel.fail_call(0);
        let task = tokio::spawn(drive(
            cache.clone(),
            engine,
            NODE,
            Duration::from_secs(3600),
            Duration::from_millis(20),
            Metrics::default(),
        ));
        let creates = |calls: &[Call]| {
            calls
                .iter()
                .filter(|c| c.input().starts_with("add table ip kube-proxy"))
                .count()
        };
        // Nothing is written before the cache has listed everything once.
        tokio::task::yield_now().await;
        assert_eq!(kernel.take(), vec![]);
        cache.mark_synced();
        kernel.wait_until(|calls| creates(calls) == 2).await;
        let calls = kernel.take();
        let starts: Vec<usize> = (0..calls.len())
            .filter(|i| calls[*i].input().starts_with("add table ip kube-proxy"))
            .collect();
        assert_eq!(starts[0], 0, "the failed attempt");
        assert_eq!(
            calls[0].stdin, calls[starts[1]].stdin,
            "the retry starts over"
        );

        // An EndpointSlice change: one partial sync with the new endpoint.
        let mut slice = fixtures::seed_slice();
        slice.endpoints[0].addresses = vec!["10.244.1.200".into()];
        cache.apply_slice(slice);
        kernel.wait_until(|calls| !calls.is_empty()).await;
        let calls = kernel.take();
        assert_eq!(programs(&calls), ["nft"]);
        assert!(
            calls[0].input().contains("10.244.1.200"),
            "{}",
            calls[0].input()
        );
        assert!(
            !calls[0].input().contains("add table"),
            "{}",
            calls[0].input()
        );
        task.abort();
    }
}
