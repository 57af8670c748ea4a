//! log and exec through the server to a fake node agent (a TLS server on loopback that
//! answers like the agent's :10250 endpoint).

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, AttachParams, LogParams, PostParams};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};

use crate::common;

async fn agent(
    req: Request<hyper::body::Incoming>,
    token: String,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {token}"));
    if !authorized {
        return Ok(Response::builder()
            .status(401)
            .body(Full::new(Bytes::from("no")))
            .unwrap());
    }
    let path = req.uri().path().to_string();
    if path.starts_with("/containerLogs/default/p1/c2") {
        let q = req.uri().query().unwrap_or("").to_string();
        return Ok(Response::new(Full::new(Bytes::from(format!(
            "hello from c2 {q}\n"
        )))));
    }
    let spdy = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"SPDY/3.1"));
    if spdy && (path.starts_with("/portForward/default/p1") || path.starts_with("/exec/")) {
        // Answers with the last protocol the client offered (all must get through) and
        // the query it saw, then echoes the raw bytes back.
        let offered: Vec<String> = req
            .headers()
            .get_all("x-stream-protocol-version")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let query = req.uri().query().unwrap_or("").to_string();
        let mut req = req;
        tokio::spawn(async move {
            let up = hyper::upgrade::on(&mut req).await.unwrap();
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 1024];
            loop {
                match tokio::io::AsyncReadExt::read(&mut io, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tokio::io::AsyncWriteExt::write_all(&mut io, &buf[..n])
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header(
                "x-stream-protocol-version",
                offered.last().cloned().unwrap_or_default(),
            )
            .header("x-seen-path", format!("{path}?{query}"))
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    if path.starts_with("/exec/default/p1/c1") {
        let key = req.headers().get("sec-websocket-key").cloned().unwrap();
        let proto = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let chosen = if proto.contains("v5.channel.k8s.io") {
            "v5.channel.k8s.io"
        } else {
            "v4.channel.k8s.io"
        };
        let mut req = req;
        tokio::spawn(async move {
            let up = hyper::upgrade::on(&mut req).await.unwrap();
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(up),
                Role::Server,
                None,
            )
            .await;
            ws.send(Message::binary([&[1u8][..], b"hi from exec\n"].concat()))
                .await
                .unwrap();
            ws.send(Message::binary(
                [&[3u8][..], br#"{"metadata":{},"status":"Success"}"#].concat(),
            ))
            .await
            .unwrap();
            let _ = ws.close(None).await;
            while ws.next().await.is_some() {}
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .header("sec-websocket-protocol", chosen)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    Ok(Response::builder()
        .status(404)
        .body(Full::new(Bytes::from("not found")))
        .unwrap())
}

/// Starts the fake agent; returns its port.
async fn start_agent(token: String) -> u16 {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let certs = vec![key.cert.der().clone()];
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, pk)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |r| agent(r, token.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_agent() {
    let s = common::start().await;
    let token = skiff_apiserver::pki::join_token(s.dir.path()).unwrap();
    let port = start_agent(token).await;
    let client = s.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"kubectl.kubernetes.io/default-container": "c2"}},
            "spec": {"nodeName": node, "containers": [{"name": "c1", "image": "busybox"}, {"name": "c2", "image": "busybox"}]}
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("p1", Some("n1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p2", None))
        .await
        .unwrap();

    // The default container comes from the annotation; query parameters pass through.
    let logs = pods
        .logs(
            "p1",
            &LogParams {
                tail_lines: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs, "hello from c2 tailLines=5\n");

    let e = pods
        .logs(
            "p1",
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("container nope is not valid for pod p1"),
        "{e}"
    );
    let e = pods.logs("p2", &LogParams::default()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("pod p2 does not have a host assigned"),
        "{e}"
    );

    let mut proc = pods
        .exec(
            "p1",
            ["echo", "hi"],
            &AttachParams::default().container("c1").stderr(false),
        )
        .await
        .unwrap();
    let mut out = String::new();
    proc.stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "hi from exec\n");
    let status = proc.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_proxy_reaches_an_endpoint() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    let s = common::start().await;
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|r: Request<hyper::body::Incoming>| async move {
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(format!(
                        "path {}",
                        r.uri()
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let client = s.client();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]})).unwrap();
    eps.create(&PostParams::default(), &ep).await.unwrap();
    let req = http::Request::get("/api/v1/namespaces/default/services/web:http/proxy/hello?x=1")
        .body(vec![])
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    assert_eq!(text, "path /hello?x=1");
}

/// A TLS connection to the test server as the admin (client certificate).
async fn admin_connection(
    s: &common::TestServer,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
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
    // As kubectl's SPDY dialer: upgrades need HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
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
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// SPDY/3.1 upgrades (kubectl 1.27-1.29 exec/attach/port-forward) pass through to the
/// agent: every offered sub-protocol, the query, the 101 with the agent's choice, then
/// a raw byte tunnel both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrades_become_a_tunnel_to_the_agent() {
    use tokio::io::AsyncWriteExt;
    let s = common::start().await;
    let token = skiff_apiserver::pki::join_token(s.dir.path()).unwrap();
    let port = start_agent(token).await;
    let client = s.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p1"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c1", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    for (path, protocols, seen) in [
        (
            "/api/v1/namespaces/default/pods/p1/portforward?ports=80",
            vec!["portforward.k8s.io"],
            "/portForward/default/p1?ports=80",
        ),
        (
            "/api/v1/namespaces/default/pods/p1/exec?command=sh&stdin=true&stdout=true&tty=true",
            vec!["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"],
            "/exec/default/p1/c1?command=sh&stdin=true&stdout=true&tty=true",
        ),
    ] {
        let mut sender = admin_connection(&s).await;
        let mut b = Request::post(path)
            .header("host", "127.0.0.1")
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1");
        for p in &protocols {
            b = b.header("x-stream-protocol-version", *p);
        }
        let resp = sender
            .send_request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 101, "{path}");
        let h = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("upgrade"), "SPDY/3.1");
        assert_eq!(h("x-stream-protocol-version"), *protocols.last().unwrap());
        assert_eq!(h("x-seen-path"), seen);
        let up = hyper::upgrade::on(resp).await.unwrap();
        let mut io = TokioIo::new(up);
        // A SPDY frame's worth of arbitrary bytes comes back unchanged.
        let frame = [0x80u8, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        io.write_all(&frame).await.unwrap();
        let mut back = [0u8; 12];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(&mut io, &mut back),
        )
        .await
        .expect("echo in time")
        .unwrap();
        assert_eq!(back, frame);
    }
}
