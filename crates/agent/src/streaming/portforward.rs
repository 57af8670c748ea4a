//! port-forward over SPDY/3.1 (`portforward.k8s.io`): per forwarded connection the client
//! opens an error stream and a data stream carrying the same `port` and `requestID`
//! headers; we connect to `localhost:<port>` inside the pod's network namespace (as the
//! kubelet's runtime does) and copy bytes both ways. The pod closing its side ends the
//! pair; the client closing its side only half-closes the pod connection.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spdy::frame::rst;
use super::spdy::{self, Stream};

/// The port-forward sub-protocol over SPDY.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket sub-protocol of kubectl 1.30+: SPDY frames in binary messages.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Where a pod's ports are reached.
#[derive(Debug, Clone)]
pub struct Target {
    /// Pod name, for messages.
    pub pod: String,
    /// The pod's network namespace (connections go to localhost there).
    pub netns: Option<PathBuf>,
    /// Otherwise its IP (host-network pods, or a runtime that does not say).
    pub ip: Option<Ipv4Addr>,
}

/// Connects to `port` of the pod: `localhost` inside its netns (IPv4, then IPv6), else
/// its IP.
pub async fn dial(target: &Target, port: u16) -> std::io::Result<TcpStream> {
    match &target.netns {
        Some(path) => {
            let path = path.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A thread of its own enters the netns: the socket keeps that namespace, and
            // no runtime thread is left in the pod's.
            std::thread::Builder::new()
                .name("portforward-dial".into())
                .spawn(move || {
                    let _ = tx.send(dial_in(&path, port));
                })?;
            let s = rx
                .await
                .map_err(|_| std::io::Error::other("the dialing thread died"))??;
            TcpStream::from_std(s)
        }
        None => {
            let ip = target.ip.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "the pod has no IP yet")
            })?;
            tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((ip, port)))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))?
        }
    }
}

fn dial_in(netns: &std::path::Path, port: u16) -> std::io::Result<std::net::TcpStream> {
    let f = std::fs::File::open(netns)?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)?;
    let timeout = Duration::from_secs(10);
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let s = match std::net::TcpStream::connect_timeout(&v4, timeout) {
        Ok(s) => s,
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|e6| {
            // The runtime's wording, so the message reads as on any cluster.
            std::io::Error::new(
                e4.kind(),
                format!(
                    "failed to connect to localhost:{port} inside namespace {:?}, IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {}",
                    netns.display().to_string(),
                    describe(&e4),
                    describe(&e6)
                ),
            )
        })?,
    };
    s.set_nonblocking(true)?;
    Ok(s)
}

/// An OS error as Go prints it ("connection refused"), without Rust's "(os error 111)".
fn describe(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// How long the second stream of a pair may take (the kubelet's stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    /// When its first stream came.
    since: Option<tokio::time::Instant>,
}

/// Gives up on pairs whose second stream never came: the error stream (if any) says so.
async fn expire(pending: &mut HashMap<String, Pair>) {
    let now = tokio::time::Instant::now();
    let old: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.since.is_some_and(|t| now - t > PAIR_TIMEOUT))
        .map(|(k, _)| k.clone())
        .collect();
    for id in old {
        let Some(p) = pending.remove(&id) else {
            continue;
        };
        if let Some(e) = &p.error {
            let msg = format!("timed out waiting for the streams of request {id}");
            let _ = e.writer.write(msg.as_bytes()).await;
        }
        for s in p.error.iter().chain(p.data.iter()) {
            s.writer.close().await;
        }
    }
}

/// Why a stream is refused (the client sees the stream reset).
fn check(stream: &Stream) -> Result<(u16, &'static str), String> {
    let port = stream
        .header("port")
        .ok_or_else(|| "\"port\" header is required".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port == 0 {
        return Err(format!("port {port:?} must be > 0"));
    }
    match stream.header("streamtype") {
        Some("error") => Ok((port, "error")),
        Some("data") => Ok((port, "data")),
        Some(other) => Err(format!("invalid stream type {other:?}")),
        None => Err("\"streamType\" header is required".to_string()),
    }
}

/// Serves one upgraded port-forward connection until the client hangs up.
pub async fn serve_spdy<T>(io: T, target: Target)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (conn, mut incoming) = spdy::serve(io);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut tasks = Vec::new();
    let mut sweep = tokio::time::interval(PAIR_TIMEOUT / 4);
    loop {
        let stream = tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = sweep.tick() => {
                expire(&mut pending).await;
                continue;
            }
        };
        let (port, kind) = match check(&stream) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward: refusing a stream");
                stream.writer.reset(rst::REFUSED_STREAM).await;
                continue;
            }
        };
        if stream.writer.reply().await.is_err() {
            break;
        }
        // Clients before requestID derive the pair from the stream ids.
        let id = match stream.header("requestid") {
            Some(r) => r.to_string(),
            None if kind == "error" => stream.id.to_string(),
            None => (stream.id.saturating_sub(2)).to_string(),
        };
        let pair = pending.entry(id.clone()).or_insert_with(|| Pair {
            since: Some(tokio::time::Instant::now()),
            ..Default::default()
        });
        if kind == "error" {
            pair.error = Some(stream);
        } else {
            pair.data = Some(stream);
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pending.remove(&id)
            {
                tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                tasks.push(tokio::spawn(forward(target.clone(), port, error, data)));
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    conn.finish(Duration::from_secs(1)).await;
}

/// Copies one connection's bytes between the data stream and the pod's port.
async fn forward(target: Target, port: u16, error: Stream, data: Stream) {
    let tcp = match dial(&target, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {}: {e}", target.pod);
            tracing::debug!("{msg}");
            let _ = error.writer.write(msg.as_bytes()).await;
            error.writer.close().await;
            data.writer.close().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let Stream {
        reader: mut from_client,
        writer: to_client,
        ..
    } = data;
    let upstream = tokio::spawn(async move {
        while let Some(d) = from_client.recv().await {
            if to_pod.write_all(&d).await.is_err() {
                return;
            }
        }
        // The client is done sending: the pod sees EOF but may still answer.
        let _ = to_pod.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from_pod.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_client.write(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    to_client.close().await;
    error.writer.close().await;
    upstream.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_in_go() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(describe(&e), "connection refused");
    }

    #[tokio::test]
    #[ignore = "needs root"]
    async fn dials_localhost_in_a_netns_of_its_own() {
        let name = format!("skt-{}-pf", std::process::id());
        let path = std::path::PathBuf::from("/var/run/netns").join(&name);
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        assert!(std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let _gone = Gone(name.clone());
        let target = Target {
            pod: "p".into(),
            netns: Some(path.clone()),
            ip: None,
        };
        // Loopback is down in a fresh netns: the dial fails with the runtime's wording.
        let e = dial(&target, 80).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to connect to localhost:80 inside namespace"),
            "{e}"
        );
        // A listener inside it is reached through its localhost.
        assert!(std::process::Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&p).unwrap();
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            std::io::Write::write_all(&mut c, b"inside").unwrap();
        });
        let port = rx.recv().unwrap();
        let mut s = dial(&target, port).await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "inside");
    }
}
