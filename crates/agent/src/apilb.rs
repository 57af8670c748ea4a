//! A client-side load balancer for several API servers, as k3s's agent runs one: a TCP
//! listener on loopback that splices each connection to the first API server that
//! answers, starting with the one that answered last.
//!
//! The node's clients (kubelet, proxy, routes) all talk to `https://127.0.0.1:<port>`, so
//! when their server stops, their next connection (kube-rs watchers reconnect on their
//! own) lands on another. TLS passes through untouched: every server's certificate names
//! 127.0.0.1, and the servers share one CA.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long one server gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The `host:port` of each server in a `--server` value: one URL or several separated by
/// commas (`https://10.0.0.1:6443,https://10.0.0.2:6443`).
pub fn parse_servers(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"))
                .unwrap_or(u);
            let hostport = rest.split('/').next().unwrap_or(rest);
            if hostport.contains(':') {
                hostport.to_string()
            } else {
                format!("{hostport}:443")
            }
        })
        .collect()
}

/// Listens on `bind` (use port 0 for any) and balances connections over `servers`
/// (`host:port`) until the runtime stops. Returns the bound address.
pub async fn start(bind: SocketAddr, servers: Vec<String>) -> io::Result<SocketAddr> {
    if servers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no API server to balance over",
        ));
    }
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, servers, API_LB));
    Ok(addr)
}

/// What the logs call the balancer [`start`] runs.
pub const API_LB: &str = "API load balancer";

/// Balances the connections `listener` accepts over `servers` (`host:port`), forever.
/// `label` names it in the logs (the API balancer, or a `--port` forwarder).
pub async fn serve(listener: TcpListener, servers: Vec<String>, label: &str) {
    let servers: Arc<Vec<String>> = Arc::new(servers);
    let label: Arc<str> = Arc::from(label);
    let preferred = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{label}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (servers, preferred, label) = (servers.clone(), preferred.clone(), label.clone());
        tokio::spawn(async move {
            let Some(mut upstream) = connect_any(&servers, &preferred, &label).await else {
                tracing::warn!("{label}: none of {} answers", servers.join(", "));
                return;
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

/// Connects to the first server that answers, starting with the preferred one, and makes
/// it the preferred one.
async fn connect_any(
    servers: &[String],
    preferred: &AtomicUsize,
    label: &str,
) -> Option<TcpStream> {
    let start = preferred.load(Ordering::Relaxed);
    for i in 0..servers.len() {
        let idx = (start + i) % servers.len();
        let target = &servers[idx];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                if idx != start {
                    tracing::info!(server = %target, "{label}: switched server");
                    preferred.store(idx, Ordering::Relaxed);
                }
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => tracing::debug!(server = %target, "{label}: {e}"),
            Err(_) => tracing::debug!(server = %target, "{label}: connect timed out"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn server_lists_parse() {
        assert_eq!(
            parse_servers("https://10.0.0.1:6443, https://10.0.0.2:6443/,k8s.example"),
            vec!["10.0.0.1:6443", "10.0.0.2:6443", "k8s.example:443"]
        );
    }

    /// A server that answers every connection with its name.
    async fn named(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        (addr, task)
    }

    async fn ask(lb: SocketAddr) -> String {
        let mut s = TcpStream::connect(lb).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn connections_fail_over_to_a_live_server() {
        let (a, a_task) = named("a").await;
        let (b, _b_task) = named("b").await;
        let lb = start(
            "127.0.0.1:0".parse().unwrap(),
            vec![a.to_string(), b.to_string()],
        )
        .await
        .unwrap();
        assert_eq!(ask(lb).await, "a");
        assert_eq!(ask(lb).await, "a");
        // a stops (its listener closes): new connections go to b, and stay there.
        a_task.abort();
        let _ = a_task.await;
        assert_eq!(ask(lb).await, "b");
        assert_eq!(ask(lb).await, "b");
    }
}
