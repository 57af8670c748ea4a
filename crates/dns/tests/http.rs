//! Integration: the health, readiness and metrics endpoints on loopback.

mod common;
use common::free_port;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_dns::{DnsConfig, DnsServer, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path`, polling until the server accepts; returns (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "{addr} never listened: {e}");
                tokio::task::yield_now().await;
            }
        }
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics() {
    let (h, r, m) = (free_port(), free_port(), free_port());
    let health: SocketAddr = ([127, 0, 0, 1], h).into();
    let ready_addr: SocketAddr = ([127, 0, 0, 1], r).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], m).into();
    let ready = Arc::new(AtomicBool::new(false));
    let cfg = DnsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstreams: vec!["127.0.0.1:9".parse().expect("addr")],
        ..DnsConfig::default()
    };
    let server = DnsServer::bind(&cfg, Arc::new(Records::new("cluster.local")))
        .await
        .expect("bind");
    tokio::spawn(skiff_dns::http::serve_health(health));
    tokio::spawn(skiff_dns::http::serve_ready(ready_addr, ready.clone()));
    tokio::spawn(skiff_dns::http::serve_metrics(metrics, server.handler()));

    assert_eq!(get(health, "/health").await, (200, "OK".to_string()));
    assert_eq!(get(ready_addr, "/ready").await.0, 503);
    ready.store(true, Ordering::Relaxed);
    assert_eq!(get(ready_addr, "/ready").await, (200, "OK".to_string()));
    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE coredns_dns_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains("coredns_dns_request_duration_seconds_bucket{"),
        "{body}"
    );
    assert!(body.contains("coredns_cache_misses_total{"), "{body}");
}

/// `wait_ready` (the addon's postStart hook): false within its limit while nothing
/// listens or `/ready` answers 503, true as soon as it answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_returns_once_ready_and_gives_up_at_its_limit() {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let limit = Duration::from_millis(300);
    let t = Instant::now();
    assert!(
        !skiff_dns::http::wait_ready(addr, limit).await,
        "nothing listens"
    );
    assert!(t.elapsed() < limit * 10, "gave up after {:?}", t.elapsed());

    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(skiff_dns::http::serve_ready(addr, ready.clone()));
    assert_eq!(get(addr, "/ready").await.0, 503);
    assert!(!skiff_dns::http::wait_ready(addr, limit).await, "503");

    let waiter = tokio::spawn(skiff_dns::http::wait_ready(addr, Duration::from_secs(30)));
    ready.store(true, Ordering::Relaxed);
    let t = Instant::now();
    assert!(waiter.await.expect("joined"), "ready");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}
