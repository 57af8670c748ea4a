//! The benchmark: a 1,000-replica Deployment over 100 registered nodes. Reports
//! the time until every pod is bound, the scheduler's rate, and the latency from a pod's
//! readiness change to its EndpointSlice. Ignored by default (minutes of CPU on 2 cores):
//! `cargo test -p skiff-controllers --release --test bench -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

const NODES: usize = 100;
const REPLICAS: i32 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly"]
async fn thousand_replicas_on_a_hundred_nodes() {
    let cl = start_with(Duration::from_secs(40)).await;
    let client = cl.client.clone();
    let names: Vec<String> = (0..NODES).map(|i| format!("node-{i:03}")).collect();
    let ips: Vec<String> = (0..NODES).map(|i| format!("192.0.2.{}", i + 1)).collect();
    for (n, ip) in names.iter().zip(&ips) {
        add_node(&client, n, ip, false).await;
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(ips.iter().map(String::as_str))
        .collect();
    // Kubelets post status every 10 s (their default lease renewal period).
    let _hb = heartbeats_every(client.clone(), &pairs, Duration::from_secs(10));

    // Watch bindings as they happen.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let watch_pods = pods.clone();
    let bound = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut created = std::collections::HashSet::new();
        let mut all_created: Option<Instant> = None;
        let mut first: Option<Instant> = None;
        let mut stream =
            watcher::watcher(watch_pods, watcher::Config::default().labels("run=httpd")).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) = ev {
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
        }
        (first, all_created, Instant::now())
    });
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = httpd_deployment("httpd");
    if let Some(s) = d.spec.as_mut() {
        s.replicas = Some(REPLICAS);
    }
    let t0 = Instant::now();
    deps.create(&PostParams::default(), &d)
        .await
        .expect("deployment");
    let (first_bound, all_created, all_bound) =
        tokio::time::timeout(Duration::from_secs(600), bound)
            .await
            .expect("all pods bound in time")
            .expect("watch task");
    let total = all_bound - t0;
    let sched = all_bound - first_bound.unwrap_or(t0);
    if let Some(c) = all_created {
        println!(
            "bench: the ReplicaSet controller created {REPLICAS} pods in {:.2} s",
            (c - t0).as_secs_f64()
        );
    }
    println!(
        "bench: {REPLICAS} pods bound over {NODES} nodes {:.2} s after the Deployment was created; \
         scheduler {:.0} pods/s (first to last binding)",
        total.as_secs_f64(),
        REPLICAS as f64 / sched.as_secs_f64().max(0.001)
    );

    // Endpoint latency: a Service over the pods, then readiness flips of single pods.
    let _kubelets = fake_kubelets(client.clone(), &name_refs);
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
        .list(&ListParams::default().labels("run=httpd").limit(20))
        .await
        .expect("pods")
        .items;
    // Watch the slices, flip one pod at a time to not ready, and time until a slice
    // event shows that endpoint not ready.
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
    let mut latencies = Vec::new();
    for p in victims.iter().take(20) {
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
        let t = Instant::now();
        pods.patch_status(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("not ready");
        let victim = p.name_any();
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = slice_events.next().await {
                if let Ok(watcher::Event::Apply(s)) = ev {
                    let flipped = s.endpoints.iter().any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.name.as_deref())
                            == Some(victim.as_str())
                            && e.conditions.as_ref().and_then(|c| c.ready) == Some(false)
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
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "bench: readiness change -> EndpointSlice watch event ({REPLICAS} endpoints in 10 slices): p50 {:.0} ms, p99 {:.0} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
}
