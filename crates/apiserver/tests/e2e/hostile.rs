//! Hostile clients: watchers that never read are closed while readers get every event;
//! bodies over the limit and requests to unknown resources get a Status, not a reset
//! stream, over HTTP/1.1 and HTTP/2 alike.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use crate::common;

type ReqBody = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A body sent in 64 KiB chunks with no length announced (no `Content-Length`).
fn streamed(len: usize) -> ReqBody {
    let chunks = (0..len.div_ceil(65536))
        .map(move |i| {
            let n = 65536.min(len - i * 65536);
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b' '; n])))
        })
        .collect::<Vec<_>>();
    StreamBody::new(futures::stream::iter(chunks)).boxed()
}

/// One client connection as the admin, HTTP/2 or HTTP/1.1 as ALPN picks.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

/// Connects with ALPN offering only `h2` or only `http/1.1`; over HTTP/2 with the given
/// flow-control window (what the server may send before the client reads).
async fn connect(s: &common::TestServer, h2: bool, window: u32) -> Conn {
    let pki = s.dir.path().join("pki");
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read("ca.crt").as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut read("admin.crt").as_slice())
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pemfile::private_key(&mut read("admin.key").as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, s.handle.port()))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if h2 {
        assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(window)
            .initial_connection_window_size(window)
            .handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::H1(sender)
    }
}

impl Conn {
    async fn send(
        &mut self,
        port: u16,
        method: &str,
        path: &str,
        body: ReqBody,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        let b = Request::builder()
            .method(method)
            .header("accept", "application/json")
            .header("content-type", "application/json");
        match self {
            Conn::H1(s) => {
                let req = b
                    .uri(path)
                    .header("host", format!("127.0.0.1:{port}"))
                    .body(body)
                    .unwrap();
                s.ready().await?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                let req = b
                    .uri(format!("https://127.0.0.1:{port}{path}"))
                    .body(body)
                    .unwrap();
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// Status and JSON body of a request that must be answered in full.
    async fn call(&mut self, port: u16, method: &str, path: &str, body: ReqBody) -> (u16, Value) {
        let resp = self
            .send(port, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"))
            .to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&bytes))
        });
        (code, v)
    }
}

/// A ConfigMap body of about `kib` KiB.
fn configmap(name: &str, kib: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"payload": "x".repeat(kib * 1024)}
    }))
    .unwrap()
}

/// Over both protocols: a body over 3 MiB is 413 RequestEntityTooLarge (announced with
/// a Content-Length or not), a POST to a resource that does not exist is 404, each with
/// a Status, and the connection still serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_unknown_resources_get_a_status_over_h1_and_h2() {
    let s = common::start().await;
    let port = s.handle.port();
    let limit = 3 * 1024 * 1024;
    for h2 in [false, true] {
        let proto = if h2 { "HTTP/2" } else { "HTTP/1.1" };
        let mut c = connect(&s, h2, 1 << 20).await;
        for (how, body) in [
            ("with a Content-Length", full(vec![b' '; limit + 1])),
            ("streamed", streamed(limit + 1)),
            ("of 8 MiB", full(vec![b' '; 8 << 20])),
        ] {
            let (code, status) = c
                .call(port, "POST", "/api/v1/namespaces/default/configmaps", body)
                .await;
            assert_eq!(code, 413, "{proto}, body {how}: {status}");
            assert_eq!(status["kind"], "Status", "{proto}: {status}");
            assert_eq!(
                status["reason"], "RequestEntityTooLarge",
                "{proto}: {status}"
            );
            assert_eq!(
                status["message"], "Request entity too large: limit is 3145728",
                "{proto}: {status}"
            );
            assert_eq!(status["code"], 413, "{proto}: {status}");
        }
        // A body at the limit is read (and then judged on its content).
        let mut at_limit = configmap("at-limit", 0);
        at_limit.truncate(at_limit.len() - 1);
        let pad = limit - at_limit.len() - 1;
        at_limit.extend(std::iter::repeat_n(b' ', pad));
        at_limit.push(b'}');
        assert_eq!(at_limit.len(), limit);
        let (code, v) = c
            .call(
                port,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                full(at_limit),
            )
            .await;
        assert_eq!(code, 201, "{proto}: {v}");
        c.call(
            port,
            "DELETE",
            "/api/v1/namespaces/default/configmaps/at-limit",
            full(""),
        )
        .await;

        for (path, kib) in [
            ("/api/v1/namespaces/default/widgets", 1),
            ("/api/v1/namespaces/default/widgets", 900),
            ("/apis/example.com/v1/namespaces/default/widgets", 900),
            ("/apis/example.com", 200),
            ("/nowhere", 200),
        ] {
            let (code, status) = c.call(port, "POST", path, full(configmap("w", kib))).await;
            assert_eq!(code, 404, "{proto} POST {path}: {status}");
            assert_eq!(status["kind"], "Status", "{proto} POST {path}: {status}");
            assert_eq!(
                status["reason"], "NotFound",
                "{proto} POST {path}: {status}"
            );
        }
        // The connection is still good.
        let (code, v) = c
            .call(
                port,
                "GET",
                "/api/v1/namespaces/default/configmaps",
                full(""),
            )
            .await;
        assert_eq!(code, 200, "{proto}: {v}");
    }
}

/// Reads watch lines from `body` until `done` says so or the body ends; returns the
/// lines' (type, name, resourceVersion) and whether the body ended.
async fn read_events(
    body: &mut Incoming,
    events: &mut Vec<(String, String, u64)>,
    buf: &mut Vec<u8>,
    done: impl Fn(&[(String, String, u64)]) -> bool,
    deadline: Instant,
) -> bool {
    while !done(events) {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame())
            .await
            .expect("watch events within the deadline");
        let Some(frame) = frame else { return true };
        let Ok(data) = frame.expect("reading the watch").into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: Value = serde_json::from_slice(&line).expect("a JSON watch event");
            events.push((
                v["type"].as_str().unwrap_or("").to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
            ));
        }
    }
    false
}

/// `apiserver_terminated_watchers_total` for ConfigMaps, from `/metrics`.
async fn terminated_configmap_watchers(c: &mut Conn, port: u16) -> u64 {
    let resp = c.send(port, "GET", "/metrics", full("")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| {
            l.starts_with("apiserver_terminated_watchers_total{group=\"\",resource=\"configmaps\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Two HTTP/2 watchers of the same ConfigMaps: one never reads (a 64 KiB window, so the
/// server can send it almost nothing), one reads everything. Under 4 MiB of writes the
/// server closes the first (counted on `/metrics`; its stream ends once it reads again)
/// and the second gets every event, in order, on its one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_closed_and_a_reader_gets_every_event() {
    let s = common::start().await;
    let port = s.handle.port();
    let mut admin = connect(&s, true, 1 << 20).await;
    let (code, list) = admin
        .call(
            port,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            full(""),
        )
        .await;
    assert_eq!(code, 200, "{list}");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}");

    let mut stalled_conn = connect(&s, true, 65_535).await;
    let stalled = stalled_conn
        .send(port, "GET", &watch, full(""))
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    // The reader's window holds more than everything written: it is never the one
    // holding the server back, however late its task runs.
    let mut reader_conn = connect(&s, true, 64 << 20).await;
    let reader = reader_conn
        .send(port, "GET", &watch, full(""))
        .await
        .unwrap();
    assert_eq!(reader.status(), 200);

    // 128 objects of 32 KiB: 4 MiB, four times what a watcher may have queued.
    let n = 128;
    for i in 0..n {
        let (code, v) = admin
            .call(
                port,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                full(configmap(&format!("cm-{i:03}"), 32)),
            )
            .await;
        assert_eq!(code, 201, "{v}");
    }

    // The reader, on its one stream: every event, in order.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = reader.into_body();
    let (mut events, mut buf) = (Vec::new(), Vec::new());
    let ended = read_events(&mut body, &mut events, &mut buf, |e| e.len() >= n, deadline).await;
    assert!(
        !ended,
        "the reader's watch ended after {} events",
        events.len()
    );
    assert_eq!(events.len(), n);
    for (i, (kind, name, _)) in events.iter().enumerate() {
        assert_eq!(
            (kind.as_str(), name.as_str()),
            ("ADDED", format!("cm-{i:03}").as_str())
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].2 < w[1].2),
        "resourceVersions increase"
    );

    // The server gives up on the other one...
    loop {
        if terminated_configmap_watchers(&mut admin, port).await >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher that does not read was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...whose stream, read now, ends after what was already on its way.
    let mut body = stalled.into_body();
    let (mut events, mut buf) = (Vec::new(), Vec::new());
    let ended = read_events(&mut body, &mut events, &mut buf, |_| false, deadline).await;
    assert!(ended);
    assert!(
        events.len() < n,
        "the closed watcher got all {} events",
        events.len()
    );
    for (i, (_, name, _)) in events.iter().enumerate() {
        assert_eq!(
            name,
            &format!("cm-{i:03}"),
            "a prefix of the events, in order"
        );
    }
    assert_eq!(terminated_configmap_watchers(&mut admin, port).await, 1);
}
