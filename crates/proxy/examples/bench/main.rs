//! Benchmark of both modes with many services (5 endpoints each): time of a full sync,
//! time to apply one changed endpoint, and the proxy's RSS.
//!
//! `cargo run -p skiff-proxy --release --example bench -- [--apply] [--datapath] [N...]`
//! Without `--apply` only rule generation is timed (no root needed); with it the rules
//! are applied in a network namespace the benchmark creates (`skb-<pid>`, removed at the
//! end, also on failure) with the real `iptables-restore` and `nft`. `--datapath`
//! measures connections per second to a pod through a cluster IP (with N services
//! programmed) against straight to the pod IP, with the same load generator (see
//! `datapath.rs` for its options). `--mode iptables|nftables` restricts either to one
//! mode; `--keep` leaves the last namespace of `--apply` for profiling by hand.

mod datapath;
#[path = "../../tests/fixtures/mod.rs"]
mod fixtures;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixtures::{many, service, slice};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_proxy::metrics::Metrics;
use skiff_proxy::model::{build, changes, update_service, RuleConfig};
use skiff_proxy::runner::{ApplyError, Exec, Output, Runner};
use skiff_proxy::sync::{Engine, EngineConfig};
use skiff_proxy::ProxyMode;

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// An engine as the benchmarks use it: the pod network 10.244.0.0/16, no periodic
/// full syncs.
pub fn engine(mode: ProxyMode, runner: Arc<dyn Runner>) -> anyhow::Result<Engine> {
    Ok(Engine::new(
        EngineConfig {
            mode,
            rules: rules()?,
            sync_period: Duration::from_secs(3600),
        },
        runner,
        Metrics::default(),
    ))
}

/// The rule settings of every benchmark: the pod network 10.244.0.0/16.
fn rules() -> anyhow::Result<RuleConfig> {
    Ok(RuleConfig {
        cluster_cidr: "10.244.0.0/16".parse()?,
        masquerade_bit: 14,
        node_ips: vec![],
    })
}

/// Runs the kernel commands in network namespace `ns`.
pub fn in_netns(ns: &str) -> Arc<dyn Runner> {
    Arc::new(Exec::with_prefix(vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.into(),
    ]))
}

/// For timing generation alone: every command succeeds at once, nothing is run.
#[derive(Debug)]
struct Discard;

impl Runner for Discard {
    fn run<'a>(
        &'a self,
        _program: &'a str,
        _args: &'a [&'a str],
        _stdin: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Output, ApplyError>> {
        Box::pin(async { Ok(Output::default()) })
    }
}

/// The modes to measure: `--mode iptables` or `--mode nftables`, else both.
fn modes(args: &[String]) -> Vec<ProxyMode> {
    match args
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("iptables") => vec![ProxyMode::Iptables],
        Some("nftables") => vec![ProxyMode::Nftables],
        _ => vec![ProxyMode::Iptables, ProxyMode::Nftables],
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let apply = args.iter().any(|a| a == "--apply");
    let keep = args.iter().any(|a| a == "--keep");
    // Numbers are service counts, except the values of options.
    let mut counts: Vec<u32> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            *i == 0
                || !["--rounds", "--secs", "--clients", "--mode"].contains(&args[i - 1].as_str())
        })
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if counts.is_empty() {
        counts = vec![1000, 10000, 30000];
    }
    if args.iter().any(|a| a == "--datapath") {
        let opts = datapath::Options::from_args(&args);
        println!("{opts:?}");
        println!("| mode | services | client | style | direct req/s (median) | cluster IP req/s (median) | ratio: median (min-max) |");
        println!("|---|---|---|---|---|---|---|");
        for &n in &counts {
            for mode in modes(&args) {
                datapath::run(n, mode, &opts).await?;
            }
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--profile") {
        for &n in &counts {
            let (services, slices) = many(n);
            let t = Instant::now();
            let (ports, _) = build(&services, &slices, "n1");
            let b = t.elapsed();
            let t = Instant::now();
            let cfg = rules()?;
            let st = skiff_proxy::nft::generate(&ports, &cfg);
            let g = t.elapsed();
            let t = Instant::now();
            let txt = skiff_proxy::nft::render(&st, &st, skiff_proxy::nft::SyncKind::Partial, &cfg);
            let r = t.elapsed();
            let t = Instant::now();
            let c = ports.clone();
            let cl = t.elapsed();
            let t = Instant::now();
            let cc = skiff_proxy::sync::conntrack_cleanups(&changes(&c, &ports));
            let ct = t.elapsed();
            println!(
                "{n}: build {} generate {} render {} ({}) clone {} conntrack {} ({})",
                ms(b),
                ms(g),
                ms(r),
                txt.len(),
                ms(cl),
                ms(ct),
                cc.len()
            );
        }
        return Ok(());
    }
    println!(
        "| mode | services | fresh full sync | one endpoint changed: median (min-max of 5) | service added | service deleted | periodic full sync | RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in counts {
        let (services, mut slices) = many(n);
        for mode in modes(&args) {
            let name = format!("skb-{}-{n}-{mode:?}", std::process::id()).to_lowercase();
            let mut _guard = None;
            let runner = if apply {
                let st = Command::new("ip").args(["netns", "add", &name]).status()?;
                anyhow::ensure!(st.success(), "ip netns add {name}");
                _guard = Some(Netns(name.clone()));
                in_netns(&name)
            } else {
                // Generation only: nothing is run.
                Arc::new(Discard)
            };
            let mut engine = engine(mode, runner)?;
            let t0 = Instant::now();
            let (mut ports, _) = build(&services, &slices, "n1");
            engine.sync(&ports, false).await?;
            let full = t0.elapsed();
            // One endpoint of one service changes: the sync loop rebuilds that Service's
            // ports and syncs. Five times, on different services.
            let mut ones = Vec::new();
            let mut last_input = String::new();
            let mut bytes = 0;
            for k in 0..5 {
                let i = (n as usize / 2 + k * 7) % n as usize;
                let orig = std::mem::replace(
                    &mut slices[i].endpoints[0].addresses[0],
                    format!("192.0.2.{}", k + 1),
                );
                let t1 = Instant::now();
                update(&mut ports, &services[i], &slices[i]);
                let report = engine.sync(&ports, false).await?;
                ones.push(t1.elapsed());
                bytes = report.bytes;
                last_input = report.input;
                slices[i].endpoints[0].addresses[0] = orig;
                anyhow::ensure!(!report.full, "sync was not partial");
            }
            ones.sort();
            // A new Service (new map elements), then its removal (elements deleted).
            let (extra_svc, extra_slices) = extra();
            let t2 = Instant::now();
            update(&mut ports, &extra_svc, &extra_slices);
            engine.sync(&ports, false).await?;
            let added = t2.elapsed();
            let t3 = Instant::now();
            update_service(&mut ports, "bench", "extra", None, &[], "n1");
            engine.sync(&ports, false).await?;
            let removed = t3.elapsed();
            // The periodic full sync (nothing changed; deletes what partial syncs left).
            let t4 = Instant::now();
            engine.sync(&ports, true).await?;
            let periodic = t4.elapsed();
            if keep {
                // For profiling by hand: the namespace stays, with the last change's input.
                std::mem::forget(_guard.take());
                std::fs::write(format!("/tmp/{name}.partial"), &last_input)?;
                eprintln!("kept namespace {name}; last change in /tmp/{name}.partial");
            }
            println!(
                "| {mode:?} | {n} | {} | {} ({}-{}, {bytes} bytes) | {} | {} | {} | {} MiB |",
                ms(full),
                ms(ones[2]),
                ms(ones[0]),
                ms(ones[4]),
                ms(added),
                ms(removed),
                ms(periodic),
                rss_kib() / 1024
            );
        }
    }
    Ok(())
}

/// The sync loop's work for one changed Service: rebuild its ports.
fn update(ports: &mut skiff_proxy::model::ServicePortMap, svc: &Service, slice: &EndpointSlice) {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    update_service(
        ports,
        "bench",
        name,
        Some(svc),
        std::slice::from_ref(slice),
        "n1",
    );
}

/// One more Service `bench/extra` with 5 endpoints, outside the ranges of [`many`].
fn extra() -> (Service, EndpointSlice) {
    let svc = service(
        "bench",
        "extra",
        "ClusterIP",
        "10.99.0.1",
        &[("http", 80, "TCP", 0)],
    );
    let eps: Vec<String> = (0..5).map(|k| format!("192.0.2.{}", 100 + k)).collect();
    let specs: Vec<(&str, &str, bool, bool, bool)> = eps
        .iter()
        .map(|e| (e.as_str(), "n1", true, true, false))
        .collect();
    let sl = slice(
        "bench",
        "extra",
        "extra-1",
        &[("http", 8080, "TCP")],
        &specs,
    );
    (svc, sl)
}
