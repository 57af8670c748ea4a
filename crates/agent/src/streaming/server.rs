//! The kubelet's HTTPS endpoint (:10250): `/containerLogs`, `/exec`, `/attach`,
//! `/portForward`, `/stats/summary`, `/metrics/resource` and `/healthz`, behind a
//! bearer-token check. The streaming endpoints
//! take WebSocket upgrades (remotecommand/portforward channel protocols, and SPDY
//! tunnelled in binary messages for port-forward) and SPDY/3.1 upgrades.

// Handlers return early with a ready-made error Response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::remotecommand::{self, AttachRequest, ExecRequest};
use super::{channel, portforward, spdy, spdy_streams, websocket};
use crate::containers::container::Container;
use crate::containers::crilog::{self, LogOptions};
use crate::containers::runtime::Runtime;

/// What the endpoint needs to find containers.
pub trait Streams: Send + Sync + 'static {
    /// The latest instance of a container.
    fn container(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<Container>>;
    /// A container's log files, oldest first.
    fn logs(&self, ns: &str, pod: &str, container: &str) -> Vec<PathBuf>;
    /// Container names of a pod (None: no such pod here).
    fn containers(&self, ns: &str, pod: &str) -> Option<Vec<String>>;
    /// The pod's IP.
    fn pod_ip(&self, ns: &str, pod: &str) -> Option<Ipv4Addr>;
    /// The pod's network namespace (None: unknown or the host's), where port-forward
    /// connects to `localhost:<port>` as the kubelet does.
    fn pod_netns(&self, _ns: &str, _pod: &str) -> Option<PathBuf> {
        None
    }
    /// The container runtime, for exec.
    fn runtime(&self) -> &Runtime;
    /// The sampled resource usage (None: not collected; the stats endpoints answer 404).
    fn stats(&self) -> Option<&crate::stats::Stats> {
        None
    }
}

#[derive(Clone)]
struct AppState {
    streams: Arc<dyn Streams>,
    token: Arc<String>,
}

/// Query parameters, with repeated keys kept (`command=a&command=b`).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The endpoint's routes (without TLS), for [`serve`] and tests.
pub fn router(streams: Arc<dyn Streams>, token: String) -> Router {
    let state = AppState {
        streams,
        token: Arc::new(token),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/stats/summary", get(stats_summary))
        .route("/metrics/resource", get(resource_metrics))
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(exec_handler).post(exec_handler),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(attach_handler).post(attach_handler),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward_handler).post(port_forward_handler),
        )
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == s.token.as_str());
    if ok {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

/// `GET /stats/summary`: the node's, pods' and containers' CPU and memory (JSON).
async fn stats_summary(State(s): State<AppState>) -> Response {
    match s.streams.stats() {
        Some(st) => axum::Json(st.summary()).into_response(),
        None => not_found("stats are not collected".into()),
    }
}

/// `GET /metrics/resource`: the same counters in the Prometheus text format.
async fn resource_metrics(State(s): State<AppState>) -> Response {
    match s.streams.stats() {
        Some(st) => (
            [(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            st.resource_metrics(),
        )
            .into_response(),
        None => not_found("stats are not collected".into()),
    }
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, what).into_response()
}

fn resolve_container(
    s: &AppState,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    let Some(names) = s.streams.containers(ns, pod) else {
        return Err(not_found(format!(
            "pod \"{pod}\" in namespace \"{ns}\" is not running on this node"
        )));
    };
    if !container.is_empty() {
        return Ok(container.to_string());
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("a container name must be specified for pod {pod}"),
        )
            .into_response()),
    }
}

async fn logs(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let container = match resolve_container(&s, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let files = s.streams.logs(&ns, &pod, &container);
    let previous = q.flag("previous");
    let file = if previous {
        files.len().checked_sub(2).map(|i| files[i].clone())
    } else {
        files.last().cloned()
    };
    let Some(file) = file else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return (StatusCode::BAD_REQUEST, msg).into_response();
    };
    let since = q
        .get("sinceSeconds")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| Utc::now() - chrono::Duration::seconds(s))
        .or_else(|| {
            q.get("sinceTime")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        });
    let opts = LogOptions {
        timestamps: q.flag("timestamps"),
        tail_lines: q.get("tailLines").and_then(|v| v.parse().ok()),
        since,
        limit_bytes: q.get("limitBytes").and_then(|v| v.parse().ok()),
    };
    let follow = q.flag("follow") && !previous;
    let live = if follow {
        s.streams
            .container(&ns, &pod, &container)
            .filter(|c| c.log_path == file)
    } else {
        None
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let data = tokio::fs::read(&file).await.unwrap_or_default();
        let (out, mut offset) = crilog::render(&data, &opts);
        let mut remaining = opts.limit_bytes.map(|l| l.saturating_sub(out.len()));
        if tx.send(Ok(Bytes::from(out))).await.is_err() {
            return;
        }
        let Some(c) = live else { return };
        let mut written = c.log_watch();
        let mut exit = c.exit_watch();
        let follow_opts = LogOptions {
            tail_lines: None,
            ..opts
        };
        loop {
            if remaining == Some(0) {
                return;
            }
            let exited = exit.borrow().is_some();
            let data = tokio::fs::read(&file).await.unwrap_or_default();
            if data.len() > offset {
                let (mut out, used) = crilog::render(&data[offset..], &follow_opts);
                offset += used;
                if let Some(r) = remaining.as_mut() {
                    out.truncate(*r);
                    *r -= out.len();
                }
                if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                    return;
                }
            }
            if exited {
                return;
            }
            tokio::select! {
                _ = written.changed() => {}
                _ = exit.changed() => {}
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Response::builder()
        .header("Content-Type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn upgrade(
    ws: WebSocketUpgrade,
    protocols: &[&'static str],
) -> Result<(WebSocketUpgrade, &'static str), Response> {
    let ws = ws.protocols(protocols.iter().copied());
    let Some(p) = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(|p| protocols.iter().copied().find(|x| *x == p))
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            "no supported WebSocket subprotocol (want v5.channel.k8s.io or v4.channel.k8s.io)",
        )
            .into_response());
    };
    Ok((ws, p))
}

/// How a streaming request wants to talk.
enum Transport {
    WebSocket(WebSocketUpgrade),
    /// SPDY/3.1 with the negotiated sub-protocol (None: the client named none).
    Spdy(Option<&'static str>, hyper::upgrade::OnUpgrade),
}

/// Tells WebSocket from SPDY upgrades; anything else is answered here.
async fn transport(
    s: &AppState,
    req: Request,
    spdy_protocols: &[&'static str],
) -> Result<Transport, Response> {
    let (mut parts, _body) = req.into_parts();
    if spdy::handshake::is_spdy_upgrade(&parts.headers) {
        let protocol = match spdy::handshake::negotiate(&parts.headers, spdy_protocols) {
            spdy::handshake::Negotiated::Protocol(p) => Some(p),
            spdy::handshake::Negotiated::Unspecified => None,
            spdy::handshake::Negotiated::Refused(msg) => {
                return Err((StatusCode::FORBIDDEN, msg).into_response())
            }
        };
        let Some(on) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "connection cannot be upgraded",
            )
                .into_response());
        };
        return Ok(Transport::Spdy(protocol, on));
    }
    match WebSocketUpgrade::from_request_parts(&mut parts, s).await {
        Ok(ws) => Ok(Transport::WebSocket(ws)),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "Upgrade request required (WebSocket or SPDY/3.1)",
        )
            .into_response()),
    }
}

/// The 101 answer to a SPDY upgrade; `run` gets the upgraded connection.
fn spdy_switch<F, Fut>(
    protocol: Option<&'static str>,
    on: hyper::upgrade::OnUpgrade,
    run: F,
) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match on.await {
            Ok(up) => run(TokioIo::new(up)).await,
            Err(e) => tracing::debug!(error = %e, "spdy upgrade failed"),
        }
    });
    let mut b = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, spdy::handshake::SPDY_31);
    if let Some(p) = protocol {
        b = b.header(spdy::handshake::PROTOCOL_HEADER, p);
    }
    b.body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn flag_or(q: &Query, k: &str, default: bool) -> bool {
    match q.get(k) {
        None => default,
        Some(v) => v == "true" || v == "1",
    }
}

async fn exec_handler(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let transport = match transport(&s, req, &spdy_streams::PROTOCOLS).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let container = match resolve_container(&s, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let exec = ExecRequest {
        runtime: s.streams.runtime().clone(),
        container: s.streams.container(&ns, &pod, &container),
        name: container,
        command: q.all("command"),
        stdin: q.flag("stdin"),
        tty: q.flag("tty"),
    };
    match transport {
        Transport::WebSocket(ws) => {
            let (ws, _proto) = match upgrade(ws, &channel::PROTOCOLS) {
                Ok(x) => x,
                Err(r) => return r,
            };
            ws.on_upgrade(move |socket| {
                websocket::serve_remotecommand(socket, move |io| {
                    remotecommand::exec_session(io, exec)
                })
            })
        }
        Transport::Spdy(protocol, on) => {
            let expected = spdy_streams::Expected::new(
                protocol,
                exec.stdin,
                q.flag("stdout"),
                q.flag("stderr"),
                exec.tty,
            );
            spdy_switch(protocol, on, move |io| {
                spdy_streams::serve_remotecommand(io, protocol, expected, move |io| {
                    remotecommand::exec_session(io, exec)
                })
            })
        }
    }
}

async fn attach_handler(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let transport = match transport(&s, req, &spdy_streams::PROTOCOLS).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let container = match resolve_container(&s, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(ctr) = s.streams.container(&ns, &pod, &container) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running"),
        )
            .into_response();
    };
    match transport {
        Transport::WebSocket(ws) => {
            let (ws, _proto) = match upgrade(ws, &channel::PROTOCOLS) {
                Ok(x) => x,
                Err(r) => return r,
            };
            // WebSocket clients that leave stdout/stderr out still get them (kube-rs).
            let attach = AttachRequest {
                container: ctr,
                stdin: q.flag("stdin"),
                stdout: flag_or(&q, "stdout", true),
                stderr: flag_or(&q, "stderr", true),
            };
            ws.on_upgrade(move |socket| {
                websocket::serve_remotecommand(socket, move |io| {
                    remotecommand::attach_session(io, attach)
                })
            })
        }
        Transport::Spdy(protocol, on) => {
            let tty = q.flag("tty");
            let attach = AttachRequest {
                container: ctr,
                stdin: q.flag("stdin"),
                stdout: q.flag("stdout"),
                stderr: q.flag("stderr") && !tty,
            };
            let expected = spdy_streams::Expected::new(
                protocol,
                attach.stdin,
                attach.stdout,
                attach.stderr,
                tty,
            );
            spdy_switch(protocol, on, move |io| {
                spdy_streams::serve_remotecommand(io, protocol, expected, move |io| {
                    remotecommand::attach_session(io, attach)
                })
            })
        }
    }
}

async fn port_forward_handler(
    State(s): State<AppState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let transport = match transport(&s, req, &[portforward::PROTOCOL]).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if s.streams.containers(&ns, &pod).is_none() {
        return not_found(format!(
            "pod \"{pod}\" in namespace \"{ns}\" is not running on this node"
        ));
    }
    let target = portforward::Target {
        pod: pod.clone(),
        netns: s.streams.pod_netns(&ns, &pod),
        ip: s.streams.pod_ip(&ns, &pod),
    };
    match transport {
        Transport::Spdy(protocol, on) => {
            spdy_switch(protocol, on, move |io| portforward::serve_spdy(io, target))
        }
        Transport::WebSocket(ws) => {
            let mut protocols = vec![portforward::TUNNEL_PROTOCOL];
            protocols.extend(channel::PORT_FORWARD_PROTOCOLS);
            let (ws, proto) = match upgrade(ws, &protocols) {
                Ok(x) => x,
                Err(r) => return r,
            };
            if proto == portforward::TUNNEL_PROTOCOL {
                return ws.on_upgrade(move |socket| {
                    portforward::serve_spdy(websocket::byte_stream(socket), target)
                });
            }
            let ports: Vec<u16> = q
                .all("ports")
                .iter()
                .flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>())
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            ws.on_upgrade(move |socket| port_forward_channels(socket, target, ports))
        }
    }
}

/// port-forward over the WebSocket channel protocol (kube-rs): per port a data channel
/// (2i) and an error channel (2i+1), each opened with the port number.
async fn port_forward_channels(socket: WebSocket, target: portforward::Target, ports: Vec<u16>) {
    let (sink, mut stream) = socket.split();
    let (tx, writer_task) = websocket::writer(sink);
    let mut conns: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data_ch = (2 * i) as u8;
        let err_ch = data_ch + 1;
        let _ = tx
            .send(Message::Binary(Bytes::from(channel::port_header(
                data_ch, *port,
            ))))
            .await;
        let _ = tx
            .send(Message::Binary(Bytes::from(channel::port_header(
                err_ch, *port,
            ))))
            .await;
        match portforward::dial(&target, *port).await {
            Ok(conn) => {
                let (mut r, w) = conn.into_split();
                conns.push(Some(w));
                let tx = tx.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if !websocket::send(&tx, data_ch, &buf[..n]).await {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            Err(e) => {
                conns.push(None);
                let msg = format!("error forwarding port {port} to pod {}: {e}", target.pod);
                websocket::send(&tx, err_ch, msg.as_bytes()).await;
            }
        }
    }
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    // Every pod connection over (the pod closed it, or none could be dialled): the
    // session ends and the client sees its sockets close, as kubelet's does.
    let pods_done = futures::future::join_all(readers);
    tokio::pin!(pods_done);
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = &mut pods_done => break,
        };
        let Some(Ok(msg)) = msg else { break };
        match msg {
            Message::Binary(_) | Message::Text(_) if !websocket::payload(&msg).is_empty() => {
                let b = websocket::payload(&msg);
                let ch = b[0] as usize;
                if ch.is_multiple_of(2) {
                    if let Some(Some(w)) = conns.get_mut(ch / 2) {
                        // The first frame of a channel repeats the port; data follows.
                        let data = &b[1..];
                        if w.write_all(data).await.is_err() {
                            conns[ch / 2] = None;
                        }
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    for a in aborts {
        a.abort();
    }
    drop(tx);
    let _ = writer_task.await;
}

/// A self-signed certificate for the endpoint (node name and IP as SANs).
pub fn self_signed(node_name: &str, node_ip: Ipv4Addr) -> anyhow::Result<rustls::ServerConfig> {
    let mut params = rcgen::CertificateParams::new(vec![node_name.to_string()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(node_ip.into()));
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{node_name}@skiff-agent"),
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    Ok(config)
}

/// TLS connections, handshaken in the background, as an axum listener.
struct TlsListener {
    rx: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves the endpoint over TLS on `addr` forever.
pub async fn serve(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    router: Router,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                {
                    let _ = tx.send((tls, peer)).await;
                }
            });
        }
    });
    axum::serve(TlsListener { rx, local }, router).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeats_and_decodes() {
        let q = Query::parse(Some("command=echo&command=hi%20there&stdin=true&x=a+b"));
        assert_eq!(q.all("command"), vec!["echo", "hi there"]);
        assert!(q.flag("stdin"));
        assert_eq!(q.get("x"), Some("a b"));
        assert_eq!(decode("%zz%"), "%zz%");
    }
}
