//! The kubelet's HTTPS endpoint (:10250): `/containerLogs`, `/exec`, `/attach`,
//! `/portForward` (WebSocket, remotecommand/portforward channel protocols) and
//! `/healthz`, behind a bearer-token check.

// Handlers return early with a ready-made error Response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::channel::{self, Incoming};
use crate::runtime::container::{Container, Runc};
use crate::runtime::crilog::{self, LogOptions, Stream};
use crate::runtime::{console, exec};

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
    /// runc, for exec.
    fn runc(&self) -> &Runc;
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
        .route("/exec/{ns}/{pod}/{container}", get(exec_ws).post(exec_ws))
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(attach_ws).post(attach_ws),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward_ws).post(port_forward_ws),
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

async fn send(sink: &mpsc::Sender<Message>, stream: u8, data: &[u8]) -> bool {
    sink.send(Message::Binary(Bytes::from(channel::frame(stream, data))))
        .await
        .is_ok()
}

/// Runs the WebSocket writer: everything sent to the returned channel goes out in order,
/// then a close frame.
fn writer(
    socket: futures::stream::SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let task = tokio::spawn(async move {
        let mut socket = socket;
        while let Some(m) = rx.recv().await {
            if socket.send(m).await.is_err() {
                return;
            }
        }
        // A normal closure (1000): client-go reads it as the end of every stream, while
        // a close without a code is an error to it.
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = socket.send(Message::Close(Some(close))).await;
        let _ = socket.close().await;
    });
    (tx, task)
}

async fn exec_ws(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
    req: Request,
) -> Response {
    let _ = headers;
    let q = Query::parse(req.uri().query());
    let (ws, _proto) = match upgrade(ws, &channel::PROTOCOLS) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let container = match resolve_container(&s, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ctr = s.streams.container(&ns, &pod, &container);
    let command = q.all("command");
    let want_stdin = q.flag("stdin");
    let want_tty = q.flag("tty");
    let runc = s.streams.runc().clone();
    ws.on_upgrade(move |socket| async move {
        let (sink, mut stream) = socket.split();
        let (tx, writer_task) = writer(sink);
        let Some(ctr) = ctr.filter(|c| c.exit().is_none()) else {
            let _ = tx
                .send(Message::Binary(Bytes::from(channel::frame(
                    channel::ERROR,
                    channel::error_status(&format!("container {container} is not running"))
                        .as_bytes(),
                ))))
                .await;
            drop(tx);
            let _ = writer_task.await;
            return;
        };
        let spawned = start_exec(&runc, &ctr, &command, want_stdin, want_tty).await;
        let ExecIo {
            exit,
            outs,
            mut stdin,
            resizer,
            _keep,
        } = match spawned {
            Ok(x) => x,
            Err(e) => {
                let _ = send(
                    &tx,
                    channel::ERROR,
                    channel::error_status(&format!("{e:#}")).as_bytes(),
                )
                .await;
                drop(tx);
                let _ = writer_task.await;
                return;
            }
        };
        let mut pumps = Vec::new();
        for (mut out, n) in outs {
            let tx = tx.clone();
            pumps.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match out.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            if !send(&tx, n, &buf[..k]).await {
                                return;
                            }
                        }
                    }
                }
            }));
        }
        let input = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Binary(b) => match channel::decode(&b) {
                        Incoming::Stdin(d) => {
                            if let Some(w) = stdin.as_mut() {
                                if w.write_all(d).await.is_err() || w.flush().await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        Incoming::Close(channel::STDIN) => stdin = None,
                        Incoming::Resize { width, height } => {
                            if let Some(m) = &resizer {
                                console::resize(m, width, height);
                            }
                        }
                        _ => {}
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        let code = exit.await;
        // Output still in flight is sent; a background process holding the output
        // open does not keep the session alive for long.
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let _ = send(&tx, channel::ERROR, channel::exit_status(code).as_bytes()).await;
        drop(tx);
        let _ = writer_task.await;
        finish_reading(input).await;
    })
}

/// After our close frame: keeps reading until the client's close answer (or a short
/// while), so the connection is not torn down with unread frames in it (a reset that
/// could lose our last frames on the way through the API server).
async fn finish_reading(input: tokio::task::JoinHandle<()>) {
    let abort = input.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), input)
        .await
        .is_err()
    {
        abort.abort();
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
type ExitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>;

/// A running exec's streams.
struct ExecIo {
    /// Resolves to the exit code.
    exit: ExitFuture,
    /// Output streams with their channel numbers.
    outs: Vec<(Reader, u8)>,
    /// Where stdin goes, if asked for.
    stdin: Option<Writer>,
    /// The pty master, with a terminal.
    resizer: Option<std::fs::File>,
    /// Files to remove when the exec is over.
    _keep: exec::ExecFile,
}

async fn start_exec(
    runc: &Runc,
    ctr: &Container,
    command: &[String],
    want_stdin: bool,
    want_tty: bool,
) -> anyhow::Result<ExecIo> {
    if want_tty {
        let exec::TtyExec { pid, master, file } =
            exec::spawn_tty(runc, &ctr.id, &ctr.bundle, command).await?;
        let reader = tokio::net::unix::pipe::Receiver::from_file_unchecked(master.try_clone()?)?;
        let resizer = master.try_clone()?;
        let writer = tokio::net::unix::pipe::Sender::from_file_unchecked(master)?;
        return Ok(ExecIo {
            exit: Box::pin(exec::TtyExec::wait(pid)),
            outs: vec![(Box::new(reader), channel::STDOUT)],
            stdin: want_stdin.then(|| Box::new(writer) as Writer),
            resizer: Some(resizer),
            _keep: file,
        });
    }
    let (mut child, file) = exec::spawn(runc, &ctr.id, &ctr.bundle, command, want_stdin).await?;
    let mut outs: Vec<(Reader, u8)> = Vec::new();
    if let Some(o) = child.stdout.take() {
        outs.push((Box::new(o), channel::STDOUT));
    }
    if let Some(o) = child.stderr.take() {
        outs.push((Box::new(o), channel::STDERR));
    }
    let stdin = child.stdin.take().map(|w| Box::new(w) as Writer);
    Ok(ExecIo {
        exit: Box::pin(async move { child.wait().await.ok().and_then(|s| s.code()).unwrap_or(1) }),
        outs,
        stdin,
        resizer: None,
        _keep: file,
    })
}

async fn attach_ws(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    ws: WebSocketUpgrade,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let (ws, _proto) = match upgrade(ws, &channel::PROTOCOLS) {
        Ok(x) => x,
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
    let want_stdin = q.flag("stdin");
    let want_stdout = q.get("stdout").is_none_or(|v| v == "true" || v == "1");
    let want_stderr = q.get("stderr").is_none_or(|v| v == "true" || v == "1");
    ws.on_upgrade(move |socket| async move {
        attach_session(socket, ctr, want_stdin, want_stdout, want_stderr).await
    })
}

/// Attaches a client to a container's stdio until the container exits or the client
/// goes away. The first attach of a stdinOnce container (kubectl run -i) also gets what
/// the container printed before it came.
pub async fn attach_session(
    socket: WebSocket,
    ctr: Arc<Container>,
    want_stdin: bool,
    want_stdout: bool,
    want_stderr: bool,
) {
    let (sink, mut stream) = socket.split();
    let (tx, writer_task) = writer(sink);
    let replay = ctr.has_stdin().await && ctr.first_attach();
    let (past, mut live) = ctr.attach(replay || ctr.exit().is_some());
    let wanted = |st: Stream| match st {
        Stream::Stdout => want_stdout,
        Stream::Stderr => want_stderr,
    };
    let num = |st: Stream| {
        if st == Stream::Stdout {
            channel::STDOUT
        } else {
            channel::STDERR
        }
    };
    for (st, data) in past {
        if wanted(st) {
            send(&tx, num(st), &data).await;
        }
    }
    let input_ctr = ctr.clone();
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let _gone = gone_tx;
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) => match channel::decode(&b) {
                    Incoming::Stdin(d) if want_stdin => {
                        let _ = input_ctr.write_stdin(d).await;
                    }
                    // No more input; the client still reads output.
                    Incoming::Close(channel::STDIN) => input_ctr.attach_ended().await,
                    Incoming::Resize { width, height } => input_ctr.resize(width, height),
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        input_ctr.attach_ended().await;
    });
    let mut exit = ctr.exit_watch();
    loop {
        if exit.borrow().is_some() {
            while let Ok((st, data)) = live.try_recv() {
                if wanted(st) {
                    send(&tx, num(st), &data).await;
                }
            }
            break;
        }
        tokio::select! {
            r = live.recv() => match r {
                Ok((st, data)) => { if wanted(st) && !send(&tx, num(st), &data).await { break; } }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = exit.changed() => {}
            _ = tx.closed() => break,
            // The client went away (detached).
            _ = &mut gone => break,
        }
    }
    let _ = send(&tx, channel::ERROR, channel::exit_status(0).as_bytes()).await;
    drop(tx);
    let _ = writer_task.await;
    finish_reading(input).await;
}

async fn port_forward_ws(
    State(s): State<AppState>,
    Path((ns, pod)): Path<(String, String)>,
    ws: WebSocketUpgrade,
    req: Request,
) -> Response {
    let q = Query::parse(req.uri().query());
    let (ws, _proto) = match upgrade(ws, &channel::PORT_FORWARD_PROTOCOLS) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(ip) = s.streams.pod_ip(&ns, &pod) else {
        return not_found(format!(
            "pod \"{pod}\" in namespace \"{ns}\" is not running on this node"
        ));
    };
    let ports: Vec<u16> = q
        .all("ports")
        .iter()
        .flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    ws.on_upgrade(move |socket| async move {
        let (sink, mut stream) = socket.split();
        let (tx, writer_task) = writer(sink);
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
            match tokio::net::TcpStream::connect(SocketAddr::from((ip, *port))).await {
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
                                    if !send(&tx, data_ch, &buf[..n]).await {
                                        return;
                                    }
                                }
                            }
                        }
                    }));
                }
                Err(e) => {
                    conns.push(None);
                    let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                    send(&tx, err_ch, msg.as_bytes()).await;
                }
            }
        }
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => {
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
        for r in readers {
            r.abort();
        }
        drop(tx);
        let _ = writer_task.await;
    })
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
