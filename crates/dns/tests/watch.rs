//! Integration: `skiff_dns::run` against a fake API server (list + watch of Services
//! and EndpointSlices over plain HTTP on loopback): readiness after the first sync, and
//! changes pushed by the watch answering in DNS.

mod common;
use common::free_port;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Clone)]
struct Fake {
    services: Vec<Value>,
    svc_events: broadcast::Sender<String>,
    slice_events: broadcast::Sender<String>,
}

fn list_or_watch(
    kind: &str,
    items: Vec<Value>,
    events: &broadcast::Sender<String>,
    q: &HashMap<String, String>,
) -> Body {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let rx = events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(line) => return Some((Ok::<_, std::io::Error>(line + "\n"), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Body::from_stream(stream);
    }
    Body::from(
        json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items }).to_string(),
    )
}

async fn services(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Body {
    list_or_watch("ServiceList", f.services.clone(), &f.svc_events, &q)
}

async fn slices(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Body {
    list_or_watch("EndpointSliceList", vec![], &f.slice_events, &q)
}

fn service(name: &str, ip: &str, rv: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "default", "resourceVersion": rv.to_string() },
        "spec": { "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }] }
    })
}

async fn query(server: SocketAddr, name: &str) -> Option<Message> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let req = skiff_dns::answer::request(1, Name::from_ascii(name).ok()?, RecordType::A);
    sock.send_to(&req.to_vec().ok()?, server).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// Polls until `name` has `want` A records (by count) or the deadline passes.
async fn wait_answers(server: SocketAddr, name: &str, want: usize) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(m) = query(server, name).await {
            let n = m.answers().len();
            if n == want && (want > 0 || m.response_code() == ResponseCode::NXDomain) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: never {want} answers"
        );
        tokio::task::yield_now().await;
    }
}

/// Serves `fake` as the API, starts `skiff_dns::run` on it and waits until it is ready
/// (both lists in) and both watches are connected. Returns the DNS address and the task.
async fn start(fake: &Fake) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let app = Router::new()
        .route("/api/v1/services", get(services))
        .route("/apis/discovery.k8s.io/v1/endpointslices", get(slices))
        .with_state(fake.clone());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind api");
    let api_addr = api.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(api, app).await });

    let config = kube::Config::new(format!("http://{api_addr}").parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let ready: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cfg = skiff_dns::DnsConfig {
        listen: dns,
        upstreams: vec!["127.0.0.1:9".parse().expect("addr")],
        health_bind: ([127, 0, 0, 1], free_port()).into(),
        ready_bind: ready,
        metrics_bind: ([127, 0, 0, 1], free_port()).into(),
        ..Default::default()
    };
    let server = tokio::spawn(skiff_dns::run(client, cfg));

    // Ready once both lists are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(!server.is_finished(), "run ended early: {:?}", server.await);
        let ok = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(ready).await.ok()?;
            s.write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out.starts_with("HTTP/1.1 200"))
        }
        .await
        .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::task::yield_now().await;
    }
    while fake.svc_events.receiver_count() == 0 || fake.slice_events.receiver_count() == 0 {
        assert!(Instant::now() < deadline, "watches never connected");
        tokio::task::yield_now().await;
    }
    (dns, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_syncs_from_the_api_and_follows_changes() {
    let fake = Fake {
        services: vec![service("httpd-svc", "10.110.212.171", 1)],
        svc_events: broadcast::channel(64).0,
        slice_events: broadcast::channel(64).0,
    };
    let (dns, server) = start(&fake).await;
    // The listed Service answers.
    wait_answers(dns, "httpd-svc.default.svc.cluster.local.", 1).await;

    // Changes pushed by the watch.
    let ev = json!({ "type": "ADDED", "object": service("fresh", "10.96.3.3", 2) }).to_string();
    fake.svc_events.send(ev).expect("send");
    let took = wait_answers(dns, "fresh.default.svc.cluster.local.", 1).await;
    eprintln!("watch event to DNS answer: {took:?}");
    assert!(took < Duration::from_millis(100), "{took:?}");

    let headless = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default", "resourceVersion": "3" },
        "spec": { "clusterIP": "None", "clusterIPs": ["None"] }
    });
    fake.svc_events
        .send(json!({ "type": "ADDED", "object": headless }).to_string())
        .expect("send");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "web-x1", "namespace": "default", "resourceVersion": "4",
                      "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "endpoints": [
            { "addresses": ["10.244.1.10"], "conditions": { "ready": true } },
            { "addresses": ["10.244.2.10"], "conditions": { "ready": true } }
        ]
    });
    fake.slice_events
        .send(json!({ "type": "ADDED", "object": slice }).to_string())
        .expect("send");
    wait_answers(dns, "web.default.svc.cluster.local.", 2).await;

    let gone = json!({ "type": "DELETED", "object": service("httpd-svc", "10.110.212.171", 5) })
        .to_string();
    fake.svc_events.send(gone).expect("send");
    wait_answers(dns, "httpd-svc.default.svc.cluster.local.", 0).await;
    server.abort();
}

/// A Service with a port named `5` (stored before the API server checked types) in the
/// list and in watch events: DNS still becomes ready and answers for the others, keeps
/// the last good records of a Service that turned bad, and forgets it when deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_does_not_decode_is_skipped() {
    let bad = |name: &str, rv: u32| {
        let mut s = service(name, "10.96.9.9", rv);
        s["spec"]["ports"][0]["name"] = json!(5);
        s
    };
    let fake = Fake {
        services: vec![service("httpd-svc", "10.110.212.171", 1), bad("broken", 1)],
        svc_events: broadcast::channel(64).0,
        slice_events: broadcast::channel(64).0,
    };
    let (dns, server) = start(&fake).await;
    wait_answers(dns, "httpd-svc.default.svc.cluster.local.", 1).await;
    wait_answers(dns, "broken.default.svc.cluster.local.", 0).await;

    // httpd-svc turns bad: its record stays; the watch goes on past it.
    let send = |ty: &str, obj: Value| {
        fake.svc_events
            .send(json!({ "type": ty, "object": obj }).to_string())
            .expect("send");
    };
    send("MODIFIED", bad("httpd-svc", 2));
    send("ADDED", service("fresh", "10.96.3.3", 3));
    wait_answers(dns, "fresh.default.svc.cluster.local.", 1).await;
    wait_answers(dns, "httpd-svc.default.svc.cluster.local.", 1).await;

    // Its deletion (the event carries the bad object) removes it.
    send("DELETED", bad("httpd-svc", 4));
    wait_answers(dns, "httpd-svc.default.svc.cluster.local.", 0).await;
    assert!(!server.is_finished(), "run ended: {:?}", server.await);
    server.abort();
}
