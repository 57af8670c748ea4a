//! The benchmark: a 1,000-replica Deployment over 100 registered nodes. Reports
//! the time until every pod is bound, the scheduler's rate (end to end, where it can go
//! no faster than the ReplicaSet controller creates pods, and alone, started with 1,000
//! pods pending), the latency from a pod's readiness change to its EndpointSlice, and
//! for reference the API server's raw pod create rate from this process. Ignored by
//! default (minutes of CPU on 2 cores); the phases run one after the other so that they
//! do not compete:
//! `cargo test -p skiff-controllers --release --test bench -- --ignored --nocapture`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

const NODES: usize = 100;
const REPLICAS: i32 = 1000;
/// Readiness changes timed (each a pod turning not ready or ready again).
const CHANGES: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly"]
async fn bench_thousand_replicas_on_a_hundred_nodes() {
    println!(
        "bench: profile {}, load average {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        load_average()
    );
    compute_costs();
    api_create_rate().await;
    end_to_end(&["*"]).await;
    scheduler_alone().await;
    // The same readiness changes without the legacy Endpoints controller: how much of
    // the latency is the 1,000-address Endpoints object's write path.
    end_to_end(&["*", "-endpoint"]).await;
    println!("bench: load average at the end {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time of this whole process (API server, controllers, scheduler and the test's
/// clients), from /proc (USER_HZ ticks, 100 per second on Linux): wall times on a loaded
/// machine say little, CPU per unit of work says what the code costs.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at "state" (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// The fastest of `runs` runs of `f`, which filters out preemption by other load.
fn fastest(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// What one endpoints sync of a 1,000-pod Service costs to compute (no API calls).
fn compute_costs() {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "httpd-svc", "namespace": "default", "uid": "svc"},
        "spec": {"selector": {"run": "httpd"}, "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
    }))
    .expect("svc");
    let pods: Vec<Pod> = (0..REPLICAS as usize)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("httpd-67f654567-{i:05}"), "namespace": "default",
                             "uid": format!("uid-{i}"), "labels": {"run": "httpd", "pod-template-hash": "67f654567"}},
                "spec": {"nodeName": format!("node-{:03}", i % NODES),
                         "containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i % NODES, 100 + i / NODES),
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .expect("pod")
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let select = fastest(50, || {
        let n = pods
            .iter()
            .filter(|p| skiff_controllers::podendpoint::selects(&svc, p))
            .count();
        assert_eq!(n, REPLICAS as usize);
    });
    let slices = fastest(50, || {
        let d = skiff_controllers::endpointslice::desired_slices(&svc, &refs);
        assert_eq!(d.len(), 10);
    });
    let subsets = fastest(50, || {
        let d = skiff_controllers::endpoints::build_subsets(&svc, &refs);
        assert_eq!(d.len(), 1);
    });
    println!(
        "bench: compute for one Service over {REPLICAS} pods (fastest of 50): selection {} us, \
         EndpointSlices {} us, Endpoints subsets {} us",
        select.as_micros(),
        slices.as_micros(),
        subsets.as_micros()
    );
}

/// The ceiling of the ReplicaSet controller: bare pod creates (ignored by the scheduler
/// and every controller) from this process at a few concurrencies.
async fn api_create_rate() {
    let cl = start_controllers(Duration::from_secs(40)).await;
    let pods: Api<Pod> = Api::namespaced(cl.client.clone(), "default");
    let pod = |i: usize, c: usize| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("raw-{c}-{i}"), "labels": {"bench": "raw"}},
            "spec": {"schedulerName": "bench-none",
                     "containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]}
        }))
        .expect("pod")
    };
    for concurrency in [1usize, 8, 64] {
        let n = if concurrency == 1 { 200 } else { 500 };
        let t = Instant::now();
        let results: Vec<_> = futures::stream::iter(0..n)
            .map(|i| {
                let pods = pods.clone();
                let p = pod(i, concurrency);
                async move { pods.create(&PostParams::default(), &p).await }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let secs = t.elapsed().as_secs_f64();
        assert!(results.iter().all(Result::is_ok), "raw creates");
        println!(
            "bench: API server: {n} pod creates with {concurrency} in flight: {:.0} creates/s",
            n as f64 / secs
        );
    }
}

/// (first binding, all pods created, all pods bound).
type Bindings = (Option<Instant>, Option<Instant>, Instant);

/// Counts pods of `run=httpd` as they are created and bound. The receiver fires once the
/// watch has its initial list. Returns (first binding, all created, all bound).
fn watch_bindings(pods: Api<Pod>) -> (oneshot::Receiver<()>, tokio::task::JoinHandle<Bindings>) {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut seen = HashSet::new();
        let mut created = HashSet::new();
        let mut all_created: Option<Instant> = None;
        let mut first: Option<Instant> = None;
        let mut stream =
            watcher::watcher(pods, watcher::Config::default().labels("run=httpd")).boxed();
        while let Some(ev) = stream.next().await {
            let p = match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            created.insert(p.name_any());
            if created.len() == REPLICAS as usize && all_created.is_none() {
                all_created = Some(Instant::now());
            }
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                first.get_or_insert_with(Instant::now);
                seen.insert(p.name_any());
                if seen.len() == REPLICAS as usize {
                    return (first, all_created, Instant::now());
                }
            }
        }
        (first, all_created, Instant::now())
    });
    (rx, task)
}

/// Registers the nodes and keeps them Ready; returns their names.
async fn add_nodes(client: &Client) -> (Vec<String>, tokio::task::JoinHandle<()>) {
    let names: Vec<String> = (0..NODES).map(|i| format!("node-{i:03}")).collect();
    let ips: Vec<String> = (0..NODES).map(|i| format!("192.0.2.{}", i + 1)).collect();
    for (n, ip) in names.iter().zip(&ips) {
        add_node(client, n, ip, false).await;
    }
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(ips.iter().map(String::as_str))
        .collect();
    // Kubelets post status every 10 s (their default lease renewal period).
    let hb = heartbeats_every(client.clone(), &pairs, Duration::from_secs(10));
    (names, hb)
}

async fn create_deployment(client: &Client) -> Instant {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = httpd_deployment("httpd");
    if let Some(s) = d.spec.as_mut() {
        s.replicas = Some(REPLICAS);
    }
    let t0 = Instant::now();
    deps.create(&PostParams::default(), &d)
        .await
        .expect("deployment");
    t0
}

/// Deployment to bound pods with everything running, then readiness flips.
async fn end_to_end(controllers: &[&str]) {
    println!("bench: end to end with controllers {controllers:?}");
    let cl = start_these_controllers(Duration::from_secs(40), controllers).await;
    start_scheduler(&cl.client);
    let client = cl.client.clone();
    let (names, hb) = add_nodes(&client).await;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (init, bound) = watch_bindings(pods.clone());
    let _ = init.await;
    let cpu0 = process_cpu();
    let t0 = create_deployment(&client).await;
    let (first_bound, all_created, all_bound) =
        tokio::time::timeout(Duration::from_secs(600), bound)
            .await
            .expect("all pods bound in time")
            .expect("watch task");
    let cpu = process_cpu() - cpu0;
    let total = all_bound - t0;
    let sched = all_bound - first_bound.unwrap_or(t0);
    if let Some(c) = all_created {
        println!(
            "bench: end to end: the ReplicaSet controller created {REPLICAS} pods in {:.2} s ({:.0} pods/s)",
            (c - t0).as_secs_f64(),
            REPLICAS as f64 / (c - t0).as_secs_f64()
        );
    }
    println!(
        "bench: end to end: {REPLICAS} pods bound over {NODES} nodes {:.2} s after the Deployment was created; \
         scheduler {:.0} pods/s (first to last binding)",
        total.as_secs_f64(),
        REPLICAS as f64 / sched.as_secs_f64().max(0.001)
    );
    println!(
        "bench: end to end: process CPU {:.2} s for creating and binding, {:.2} ms per pod",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / REPLICAS as f64
    );

    // Endpoint latency: a Service over the pods, then readiness flips of single pods.
    let kubelets = fake_kubelets(client.clone(), &name_refs);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually(600, "rollout", || rollout_done(&deps, "httpd", REPLICAS)).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "httpd-svc"},
            "spec": {"selector": {"run": "httpd"}, "ports": [{"port": 80}]}}))
        .expect("svc"),
    )
    .await
    .expect("svc");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let ready_in_slices = || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=httpd-svc"))
            .await
            .ok()?;
        let ready = l
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        Some(ready)
    };
    eventually(120, "all endpoints ready", || async {
        (ready_in_slices().await? == REPLICAS as usize).then_some(())
    })
    .await;
    let victims: Vec<Pod> = pods
        .list(&ListParams::default().labels("run=httpd"))
        .await
        .expect("pods")
        .items;
    // Watch the slices, flip one pod at a time to not ready (and later back to ready),
    // and time until a slice event shows that endpoint's new condition.
    let mut slice_events = watcher::watcher(
        slices.clone(),
        watcher::Config::default().labels("kubernetes.io/service-name=httpd-svc"),
    )
    .boxed();
    // Drain the initial list.
    while let Some(Ok(ev)) = slice_events.next().await {
        if matches!(ev, watcher::Event::InitDone) {
            break;
        }
    }
    let flips: Vec<(&Pod, bool)> = victims
        .iter()
        .take(CHANGES / 2)
        .map(|p| (p, false))
        .chain(victims.iter().take(CHANGES / 2).map(|p| (p, true)))
        .collect();
    let mut latencies = Vec::new();
    let cpu0 = process_cpu();
    for (p, ready) in flips {
        let status = json!({"status": {"conditions": [{"type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
        let t = Instant::now();
        pods.patch_status(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("readiness change");
        let victim = p.name_any();
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = slice_events.next().await {
                if let Ok(watcher::Event::Apply(s)) = ev {
                    let flipped = s.endpoints.iter().any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.name.as_deref())
                            == Some(victim.as_str())
                            && e.conditions.as_ref().and_then(|c| c.ready) == Some(ready)
                    });
                    if flipped {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "slice update for {victim}");
        latencies.push(t.elapsed());
    }
    let cpu = process_cpu() - cpu0;
    latencies.sort();
    let pct = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    println!(
        "bench: readiness change -> EndpointSlice watch event ({REPLICAS} endpoints in 10 slices, {} changes): \
         p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(50).as_secs_f64() * 1000.0,
        pct(90).as_secs_f64() * 1000.0,
        pct(99).as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "bench: readiness changes: process CPU {:.1} ms per change (API writes of the pod, \
         its Endpoints, EndpointSlice, ReplicaSet and Deployment status, and every watch)",
        cpu.as_secs_f64() * 1000.0 / latencies.len() as f64
    );
    // The next phase has a cluster of its own: stop playing this one's nodes.
    hb.abort();
    kubelets.abort();
}

/// The scheduler started with every pod already pending: its own rate, not bounded by
/// the ReplicaSet controller's.
async fn scheduler_alone() {
    let cl = start_controllers(Duration::from_secs(40)).await;
    let client = cl.client.clone();
    let (_names, hb) = add_nodes(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_deployment(&client).await;
    eventually(300, "all pods created", || async {
        let l = pods
            .list(&ListParams::default().labels("run=httpd"))
            .await
            .ok()?;
        (l.items.len() == REPLICAS as usize).then_some(())
    })
    .await;
    let (init, bound) = watch_bindings(pods.clone());
    let _ = init.await;
    let t0 = Instant::now();
    let cpu0 = process_cpu();
    start_scheduler(&client);
    let (first_bound, _, all_bound) = tokio::time::timeout(Duration::from_secs(600), bound)
        .await
        .expect("all pods bound in time")
        .expect("watch task");
    let cpu = process_cpu() - cpu0;
    let sched = all_bound - first_bound.unwrap_or(t0);
    println!(
        "bench: scheduler alone: {REPLICAS} pending pods bound {:.2} s after it started; \
         {:.0} pods/s (first to last binding)",
        (all_bound - t0).as_secs_f64(),
        REPLICAS as f64 / sched.as_secs_f64().max(0.001)
    );
    println!(
        "bench: scheduler alone: process CPU {:.2} s, {:.2} ms per pod",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / REPLICAS as f64
    );
    hb.abort();
}
