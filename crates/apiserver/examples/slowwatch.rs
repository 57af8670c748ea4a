//! Slow-watcher benchmark: does the server's memory stay flat when watchers stop reading?
//!
//! `cargo build --release -p skiff-apiserver --example slowwatch`, then
//! `target/release/examples/slowwatch [--watchers 20] [--writers 10] [--secs 20] [--kib 10]`.
//!
//! A real `skiff-apiserver` runs in a child process (this binary run with `--serve DIR`).
//! Two rounds, each on a fresh server:
//!
//! - **stalled**: `--watchers` watches of one namespace's ConfigMaps over HTTP/1.1 that
//!   send their request and never read a byte (raw TLS connections), while `--writers`
//!   clients rewrite `--kib` KiB ConfigMaps in that namespace for `--secs` seconds;
//! - **reading**: the same load with watchers that read every event (kube-rs clients, one
//!   connection each). A watcher the server closes resumes from the last
//!   resourceVersion it saw, as client-go's reflector does; every watcher must end with
//!   every write's event, once, in order.
//!
//! Each round prints the server's RSS before the load, its peak during the load (sampled
//! every 50 ms), and 5 s after the load, and the server's count of watchers it closed
//! for not reading (`apiserver_terminated_watchers_total` on `/metrics`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use kube::client::Body;
use tokio::io::AsyncWriteExt;

use common::{rss_mib, ServerProcess};

struct Opts {
    watchers: usize,
    writers: usize,
    secs: u64,
    kib: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let dir = PathBuf::from(args.get(1).context("--serve DIR")?);
        return common::serve(&dir).await;
    }
    let mut o = Opts {
        watchers: 20,
        writers: 10,
        secs: 20,
        kib: 10,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || -> Result<usize> { Ok(it.next().context("a value")?.parse()?) };
        match a.as_str() {
            "--watchers" => o.watchers = val()?,
            "--writers" => o.writers = val()?,
            "--secs" => o.secs = val()? as u64,
            "--kib" => o.kib = val()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{} watchers, {} writers of {} KiB ConfigMaps for {} s",
        o.watchers, o.writers, o.kib, o.secs
    );
    round(&o, false).await?;
    round(&o, true).await?;
    Ok(())
}

/// Sends one request; returns the status and the whole body.
async fn call(
    c: &kube::Client,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes)> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Body::from(body.unwrap_or_default()))?;
    let resp = c.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((code, bytes))
}

fn configmap(name: &str, kib: usize, n: u64) -> Vec<u8> {
    // Different content on every write, so that no write is a no-op.
    let mut data = format!("{n:020}");
    data.push_str(&"x".repeat(kib * 1024));
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "slow"},
        "data": {"payload": data}
    }))
    .unwrap_or_default()
}

/// A TLS connection as the admin user that sends one watch request over HTTP/1.1 and
/// then never reads.
async fn stalled_watch(dir: &Path, port: u16, uri: &str) -> Result<impl Send> {
    let pem = |f: &str| std::fs::read(dir.join("pki").join(f)).with_context(|| f.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem("ca.crt")?.as_slice()) {
        roots.add(c?)?;
    }
    let certs =
        rustls_pemfile::certs(&mut pem("admin.crt")?.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut pem("admin.key")?.as_slice())?.context("admin key")?;
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    tls.write_all(
        format!("GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    tls.flush().await?;
    Ok(tls)
}

/// resourceVersions of the `slow` ConfigMaps' events in a chunk of watch lines.
fn event_rvs(line: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"\"resourceVersion\":\"";
    let at = line.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let end = line[at..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&line[at..at + end]).ok()?.parse().ok()
}

/// A reading watcher: resumes after the last resourceVersion when the server closes it.
/// Returns (events, resumptions); fails on an event out of order or seen twice.
async fn reading_watch(cfg: kube::Config, from: u64, stop: Arc<AtomicBool>) -> Result<(u64, u64)> {
    let c = kube::Client::try_from(cfg)?;
    let mut last = from;
    let mut events = 0u64;
    let mut resumed = 0u64;
    loop {
        let uri = format!(
            "/api/v1/namespaces/slow/configmaps?watch=1&resourceVersion={last}&timeoutSeconds=600"
        );
        let req = Request::builder()
            .uri(uri)
            .header("accept", "application/json")
            .body(Body::from(Vec::new()))?;
        let mut body = c.send(req).await?.into_body();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok((events, resumed));
                    }
                    continue;
                }
            };
            let Some(frame) = frame else { break };
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Some(rv) = event_rvs(&line) {
                    if rv <= last {
                        bail!("event {rv} after {last}: out of order or repeated");
                    }
                    last = rv;
                    events += 1;
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok((events, resumed));
        }
        resumed += 1;
    }
}

/// `apiserver_terminated_watchers_total` summed over resources.
async fn terminated(c: &kube::Client) -> String {
    match call(c, "GET", "/metrics", None).await {
        Ok((200, b)) => String::from_utf8_lossy(&b)
            .lines()
            .filter(|l| l.starts_with("apiserver_terminated_watchers_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
            .to_string(),
        _ => "n/a".to_string(),
    }
}

async fn round(o: &Opts, reading: bool) -> Result<()> {
    let tag = if reading { "reading" } else { "stalled" };
    let (server, cfg) = ServerProcess::start(&format!("slowwatch-{tag}")).await?;
    let pid = server.pid();

    let c = kube::Client::try_from(cfg.clone())?;
    let ns = serde_json::to_vec(
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "slow"}}),
    )?;
    let (code, b) = call(&c, "POST", "/api/v1/namespaces", Some(ns)).await?;
    if code != 201 {
        bail!(
            "creating the namespace: {code} {}",
            String::from_utf8_lossy(&b)
        );
    }
    // Ten objects per writer, rewritten in turn.
    for w in 0..o.writers {
        for i in 0..10 {
            let body = configmap(&format!("w{w}-{i}"), o.kib, 0);
            let (code, b) =
                call(&c, "POST", "/api/v1/namespaces/slow/configmaps", Some(body)).await?;
            if code != 201 {
                bail!("create: {code} {}", String::from_utf8_lossy(&b));
            }
        }
    }
    let (_, b) = call(
        &c,
        "GET",
        "/api/v1/namespaces/slow/configmaps?limit=1",
        None,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&b)?;
    let rv: u64 = v
        .pointer("/metadata/resourceVersion")
        .and_then(|r| r.as_str())
        .unwrap_or("0")
        .parse()?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut stalled = Vec::new();
    let mut readers = Vec::new();
    let uri = format!("/api/v1/namespaces/slow/configmaps?watch=1&resourceVersion={rv}");
    for _ in 0..o.watchers {
        if reading {
            readers.push(tokio::spawn(reading_watch(cfg.clone(), rv, stop.clone())));
        } else {
            stalled.push(stalled_watch(&server.dir, server.port, &uri).await?);
        }
    }
    // Let the watches open before the load starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mib(pid).0;
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib(pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(o.secs);
    let mut writers = Vec::new();
    for w in 0..o.writers {
        let c = kube::Client::try_from(cfg.clone())?;
        let kib = o.kib;
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let name = format!("w{w}-{}", n % 10);
                let (code, b) = call(
                    &c,
                    "PUT",
                    &format!("/api/v1/namespaces/slow/configmaps/{name}"),
                    Some(configmap(&name, kib, n)),
                )
                .await?;
                if code != 200 {
                    bail!("update {name}: {code} {}", String::from_utf8_lossy(&b));
                }
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut writes = 0;
    for t in writers {
        writes += t.await??;
    }
    let elapsed = t0.elapsed();
    let peak_load = peak.load(Ordering::Relaxed);
    // After the load: the readers catch up, the server closes what it closes.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let after = rss_mib(pid).0;
    let closed = terminated(&c).await;
    stop.store(true, Ordering::Relaxed);
    println!(
        "{tag:>7} watchers: {writes} writes in {:.1} s ({:.0}/s); server RSS before {before} MiB, peak {} MiB, 5 s after {after} MiB; watchers closed by the server: {closed}",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        peak.load(Ordering::Relaxed).max(peak_load),
    );
    if reading && !readers.is_empty() {
        let mut min = u64::MAX;
        let mut resumed = 0;
        for r in readers {
            let (events, res) = r.await??;
            min = min.min(events);
            resumed += res;
        }
        println!(
            "{:>7}  every reader got {} of {writes} events in order (resumed {resumed} times in all){}",
            "",
            min,
            if min == writes { "" } else { "  ** EVENTS LOST **" }
        );
    }
    drop(stalled);
    Ok(())
}
