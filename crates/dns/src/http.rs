//! Health (`/health`), readiness (`/ready`) and metrics (`/metrics`) over HTTP, each on
//! its own port as CoreDNS serves them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::server::Handler;

/// Serves `router` on `addr` forever.
async fn serve(addr: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, router)
        .await
        .with_context(|| format!("serving {addr}"))
}

/// `/health`: "OK" while the process runs.
pub async fn serve_health(addr: SocketAddr) -> anyhow::Result<()> {
    serve(addr, Router::new().route("/health", get(|| async { "OK" }))).await
}

/// `/ready`: 200 "OK" once `ready` is set (the watchers' first sync), 503 before.
pub async fn serve_ready(addr: SocketAddr, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let router = Router::new().route(
        "/ready",
        get(move || {
            let ready = ready.clone();
            async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "OK")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "kubernetes")
                }
            }
        }),
    );
    serve(addr, router).await
}

/// Waits until `/ready` at `addr` answers 200, polling every 10 ms, for at most
/// `limit`; whether it did. The addon's postStart hook runs this (`skiff dns
/// --wait-ready`) so that the container counts as started only once it serves, and its
/// first readiness probe passes instead of failing and waiting a whole period.
pub async fn wait_ready(addr: SocketAddr, limit: std::time::Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + limit;
    let once = async || -> Option<bool> {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"HTTP/1.1 200"))
    };
    loop {
        if tokio::time::timeout_at(deadline, once()).await == Ok(Some(true)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `/metrics`: the Prometheus text exposition.
pub async fn serve_metrics(addr: SocketAddr, handler: Arc<Handler>) -> anyhow::Result<()> {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let handler = handler.clone();
            async move {
                let body = handler.metrics().render(handler.forwarder().cache().len());
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    serve(addr, router).await
}
