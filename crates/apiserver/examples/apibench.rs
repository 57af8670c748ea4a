//! API server benchmark: a real `skiff-apiserver` in a child process (this binary run
//! with `--serve DIR`), driven over HTTPS with the admin client certificate.
//!
//! `cargo build --release -p skiff-apiserver --example apibench`, then
//! `target/release/examples/apibench [--pods 10000] [--watchers 100]` (or `bench/apiserver.sh`).
//!
//! Reports: creates/s with 8 concurrent clients, p50/p99 of GET and of LIST of every pod
//! (JSON as kube-rs and `kubectl get -o json` ask, Table as `kubectl get` asks, and
//! kubectl's default `limit=500` pagination), watch fan-out (time for one write to reach
//! every watcher; events/s delivered in a burst), and the server's RSS.

use std::io::Write;
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use kube::client::Body;
use tokio::sync::mpsc;

use common::{cpu_secs, ServerProcess};

/// kubectl's Accept header for `kubectl get` (server-side printing).
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// Concurrent writers.
const WRITERS: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let dir = PathBuf::from(args.get(1).context("--serve DIR")?);
        return common::serve(&dir).await;
    }
    let mut pods = 10_000usize;
    let mut watchers = 100usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pods" => pods = it.next().context("--pods N")?.parse()?,
            "--watchers" => watchers = it.next().context("--watchers N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    run(pods, watchers).await
}

fn client(cfg: &kube::Config) -> Result<kube::Client> {
    Ok(kube::Client::try_from(cfg.clone())?)
}

/// Sends one request; returns the status and the whole body.
async fn call(
    c: &kube::Client,
    method: &str,
    uri: &str,
    accept: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes)> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", accept);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Body::from(body.unwrap_or_default()))?;
    let resp = c.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((code, bytes))
}

fn pod_body(ns: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                 "ports": [{"containerPort": 80}],
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .unwrap_or_default()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{label:<44} p50 {:>8.2} ms  p99 {:>8.2} ms  (n={})",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len()
    );
}

/// [`summary`] plus the server's CPU time per operation since `cpu0` (independent of
/// how busy the machine is).
fn summary_cpu(label: &str, lat: Vec<Duration>, server: &ServerProcess, cpu0: f64) {
    let n = lat.len().max(1) as f64;
    summary(label, lat);
    println!(
        "{:<44} server CPU {:.2} ms per request",
        "",
        (server.cpu_secs() - cpu0) * 1000.0 / n
    );
}

async fn run(pods: usize, watchers: usize) -> Result<()> {
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let (server, cfg) = ServerProcess::start("apibench").await?;
    let c = client(&cfg)?;
    println!(
        "server pid {} started; RSS {} MiB",
        server.pid(),
        server.rss_mib().0
    );
    for ns in ["bench", "fanout"] {
        let body = serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        let (code, b) = call(
            &c,
            "POST",
            "/api/v1/namespaces",
            "application/json",
            Some(body),
        )
        .await?;
        if code != 201 {
            bail!(
                "creating namespace {ns}: {code} {}",
                String::from_utf8_lossy(&b)
            );
        }
    }

    // --- creates: 8 clients, one connection each.
    let cpu0 = server.cpu_secs();
    let own0 = cpu_secs("self");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = client(&cfg)?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..pods).step_by(WRITERS) {
                let body = pod_body("bench", &format!("pod-{i:06}"));
                let s = Instant::now();
                let (code, b) = call(
                    &c,
                    "POST",
                    "/api/v1/namespaces/bench/pods",
                    "application/json",
                    Some(body),
                )
                .await?;
                if code != 201 {
                    bail!("create pod-{i:06}: {code} {}", String::from_utf8_lossy(&b));
                }
                lat.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let el = t0.elapsed();
    println!(
        "create {pods} pods, {WRITERS} clients: {:.2} s = {:.0} creates/s (CPU: server {:.1} s, clients {:.1} s)",
        el.as_secs_f64(),
        pods as f64 / el.as_secs_f64(),
        server.cpu_secs() - cpu0,
        cpu_secs("self") - own0
    );
    summary("  create latency", lat);
    let rss = server.rss_mib();
    println!(
        "server RSS with {pods} pods: {} MiB (peak {} MiB)",
        rss.0, rss.1
    );

    // --- get: one client, sequential.
    let cpu0 = server.cpu_secs();
    let mut lat = Vec::new();
    for i in 0..2000usize {
        let n = (i * 7919) % pods;
        let s = Instant::now();
        let (code, _) = call(
            &c,
            "GET",
            &format!("/api/v1/namespaces/bench/pods/pod-{n:06}"),
            "application/json",
            None,
        )
        .await?;
        if code != 200 {
            bail!("get: {code}");
        }
        lat.push(s.elapsed());
    }
    summary_cpu("get pod (JSON)", lat, &server, cpu0);

    // --- list.
    let mut bytes = 0;
    let cpu0 = server.cpu_secs();
    let mut lat = Vec::new();
    for _ in 0..20 {
        let s = Instant::now();
        let (code, b) = call(
            &c,
            "GET",
            "/api/v1/namespaces/bench/pods",
            "application/json",
            None,
        )
        .await?;
        if code != 200 {
            bail!("list: {code}");
        }
        lat.push(s.elapsed());
        bytes = b.len();
    }
    summary_cpu(
        &format!("list {pods} pods (JSON, {} KiB)", bytes / 1024),
        lat,
        &server,
        cpu0,
    );
    let cpu0 = server.cpu_secs();
    let mut lat = Vec::new();
    for _ in 0..20 {
        let s = Instant::now();
        let (code, b) = call(
            &c,
            "GET",
            "/api/v1/namespaces/bench/pods",
            TABLE_ACCEPT,
            None,
        )
        .await?;
        if code != 200 {
            bail!("list table: {code}");
        }
        lat.push(s.elapsed());
        bytes = b.len();
    }
    summary_cpu(
        &format!("list {pods} pods (Table, {} KiB)", bytes / 1024),
        lat,
        &server,
        cpu0,
    );
    let mut lat = Vec::new();
    for _ in 0..5 {
        let s = Instant::now();
        let mut cont = String::new();
        let mut pages = 0;
        loop {
            let uri = if cont.is_empty() {
                "/api/v1/namespaces/bench/pods?limit=500".to_string()
            } else {
                format!("/api/v1/namespaces/bench/pods?limit=500&continue={cont}")
            };
            let (code, b) = call(&c, "GET", &uri, TABLE_ACCEPT, None).await?;
            if code != 200 {
                bail!("list page: {code}");
            }
            pages += 1;
            let v: serde_json::Value = serde_json::from_slice(&b)?;
            match v.pointer("/metadata/continue").and_then(|c| c.as_str()) {
                Some(c) if !c.is_empty() => cont = c.to_string(),
                _ => break,
            }
            if pages > pods / 500 + 2 {
                bail!("pagination does not end");
            }
        }
        lat.push(s.elapsed());
    }
    summary("list all, kubectl pages of 500 (Table)", lat);
    let mut lat = Vec::new();
    for _ in 0..20 {
        let s = Instant::now();
        let (code, _) = call(
            &c,
            "GET",
            "/api/v1/namespaces/bench/pods?labelSelector=app%3Dnone",
            "application/json",
            None,
        )
        .await?;
        if code != 200 {
            bail!("list selector: {code}");
        }
        lat.push(s.elapsed());
    }
    summary("list with a selector matching none", lat);
    let rss = server.rss_mib();
    println!("server RSS after lists: {} MiB (peak {} MiB)", rss.0, rss.1);

    // --- watch fan-out.
    fanout(&cfg, watchers).await?;
    let rss = server.rss_mib();
    println!(
        "server RSS at the end ({watchers} watches open before): {} MiB (peak {} MiB)",
        rss.0, rss.1
    );
    Ok(())
}

/// Index of the `fan-NNNNNN` pod an event line is about.
fn fan_index(line: &[u8]) -> Option<usize> {
    const MARK: &[u8] = b"\"name\":\"fan-";
    let at = line.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    std::str::from_utf8(line.get(at..at + 6)?)
        .ok()?
        .parse()
        .ok()
}

async fn fanout(cfg: &kube::Config, watchers: usize) -> Result<()> {
    let c = client(cfg)?;
    let (_, b) = call(
        &c,
        "GET",
        "/api/v1/namespaces/fanout/pods",
        "application/json",
        None,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&b)?;
    let rv = v
        .pointer("/metadata/resourceVersion")
        .and_then(|r| r.as_str())
        .unwrap_or("0")
        .to_string();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut open = Vec::new();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for _ in 0..watchers {
        let c = client(cfg)?;
        let tx = tx.clone();
        let ready = ready_tx.clone();
        let uri = format!("/api/v1/namespaces/fanout/pods?watch=1&resourceVersion={rv}");
        open.push(tokio::spawn(async move {
            let req = Request::builder()
                .uri(uri)
                .header("accept", "application/json")
                .body(Body::from(Vec::new()))?;
            let resp = c.send(req).await?;
            let _ = ready.send(());
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if let Some(i) = fan_index(&line) {
                        if tx.send((i, Instant::now())).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    drop(tx);
    for _ in 0..watchers {
        ready_rx.recv().await.context("a watch failed to open")?;
    }
    // Single writes: time until every watcher has the event.
    let writer = client(cfg)?;
    let mut lat = Vec::new();
    let single = 50usize;
    for i in 0..single {
        let t0 = Instant::now();
        let (code, _) = call(
            &writer,
            "POST",
            "/api/v1/namespaces/fanout/pods",
            "application/json",
            Some(pod_body("fanout", &format!("fan-{i:06}"))),
        )
        .await?;
        if code != 201 {
            bail!("fan-out create: {code}");
        }
        let mut got = 0;
        let mut last = t0;
        while got < watchers {
            let (idx, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .context("watch event not delivered within 30 s")?
                .context("watchers ended")?;
            if idx == i {
                got += 1;
                last = last.max(at);
            }
        }
        lat.push(last - t0);
    }
    summary(&format!("one write reaches all {watchers} watchers"), lat);
    // Burst: writes from 8 clients; events delivered per second over all watchers.
    let burst = 1000usize;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = client(cfg)?;
        tasks.push(tokio::spawn(async move {
            for i in (single + w..single + burst).step_by(WRITERS) {
                let (code, _) = call(
                    &c,
                    "POST",
                    "/api/v1/namespaces/fanout/pods",
                    "application/json",
                    Some(pod_body("fanout", &format!("fan-{i:06}"))),
                )
                .await?;
                if code != 201 {
                    bail!("burst create: {code}");
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let want = burst * watchers;
    let mut got = 0;
    while got < want {
        let (idx, _) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("burst events not delivered within 60 s")?
            .context("watchers ended")?;
        if idx >= single {
            got += 1;
        }
    }
    let el = t0.elapsed();
    for t in tasks {
        t.await??;
    }
    println!(
        "burst of {burst} creates to {watchers} watchers: {:.2} s, {:.0} events/s delivered",
        el.as_secs_f64(),
        want as f64 / el.as_secs_f64()
    );
    for t in open {
        t.abort();
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
