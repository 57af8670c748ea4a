//! kube-proxy's Prometheus metrics, served as text on `/metrics` (and `/healthz`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// A histogram with the given upper bounds (ascending).
    pub fn new(bounds: Vec<f64>) -> Histogram {
        let n = bounds.len();
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// `ExponentialBuckets(0.001, 2, 15)`: kube-proxy's sync duration buckets.
fn sync_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// kube-proxy's network programming latency buckets (0.25 s .. 5 min).
fn programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    b
}

#[derive(Debug)]
struct Inner {
    sync_duration: Histogram,
    programming: Histogram,
    rules: Vec<(String, usize)>,
    last_sync: f64,
    full_syncs: u64,
    partial_syncs: u64,
    sync_failures: u64,
}

/// The proxy's metrics, shared between the sync loop and the HTTP endpoint.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Arc::new(Mutex::new(Inner {
                sync_duration: Histogram::new(sync_buckets()),
                programming: Histogram::new(programming_buckets()),
                rules: Vec::new(),
                last_sync: 0.0,
                full_syncs: 0,
                partial_syncs: 0,
                sync_failures: 0,
            })),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Records a successful sync: its duration, whether it was full, and the rule counts
    /// per table (`filter`, `nat`, or `nft`).
    pub fn record_sync(&self, took: Duration, full: bool, rules: Vec<(String, usize)>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.with(|m| {
            m.sync_duration.observe(took.as_secs_f64());
            m.rules = rules;
            m.last_sync = now;
            if full {
                m.full_syncs += 1;
            } else {
                m.partial_syncs += 1;
            }
        });
    }

    /// Records a failed sync.
    pub fn record_failure(&self) {
        self.with(|m| m.sync_failures += 1);
    }

    /// Records the time from an EndpointSlice change to its rules being in the kernel.
    pub fn record_programming(&self, latency: Duration) {
        self.with(|m| m.programming.observe(latency.as_secs_f64()));
    }

    /// Number of syncs recorded (full and partial).
    pub fn syncs(&self) -> (u64, u64) {
        self.with(|m| (m.full_syncs, m.partial_syncs))
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            m.sync_duration.render(
                &mut out,
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
            );
            m.programming.render(
                &mut out,
                "kubeproxy_network_programming_duration_seconds",
                "In Cluster Network Programming Latency in seconds",
            );
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_proxy_rules_iptables_total Total number of iptables rules owned by kube-proxy\n# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge"
            );
            for (table, n) in &m.rules {
                let _ = writeln!(out, "kubeproxy_sync_proxy_rules_iptables_total{{table=\"{table}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced\n# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\nkubeproxy_sync_proxy_rules_last_timestamp_seconds {}",
                m.last_sync
            );
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_full_proxy_rules_total Full syncs\n# TYPE kubeproxy_sync_full_proxy_rules_total counter\nkubeproxy_sync_full_proxy_rules_total {}",
                m.full_syncs
            );
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_partial_proxy_rules_total Partial syncs\n# TYPE kubeproxy_sync_partial_proxy_rules_total counter\nkubeproxy_sync_partial_proxy_rules_total {}",
                m.partial_syncs
            );
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_proxy_rules_failures_total Failed syncs\n# TYPE kubeproxy_sync_proxy_rules_failures_total counter\nkubeproxy_sync_proxy_rules_failures_total {}",
                m.sync_failures
            );
            out
        })
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body, ctype) = match path {
                "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
                "/healthz" | "/livez" => ("200 OK", "ok\n".to_string(), "text/plain"),
                _ => ("404 Not Found", "not found\n".to_string(), "text/plain"),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_healthz_over_http() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let m = Metrics::default();
        m.record_sync(Duration::from_millis(1), true, vec![("nat".into(), 3)]);
        let server = tokio::spawn(serve(addr, m));
        let get = |path: &'static str| async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                        .await
                        .expect("send");
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.expect("read");
                    return out;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "metrics server not up"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let body = get("/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 3"));
        assert!(get("/healthz").await.ends_with("ok\n"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }

    #[test]
    fn exposition_has_kube_proxy_names() {
        let m = Metrics::default();
        m.record_sync(
            Duration::from_millis(3),
            true,
            vec![("nat".into(), 12), ("filter".into(), 4)],
        );
        m.record_programming(Duration::from_millis(300));
        let text = m.render();
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
        assert!(text.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 12"));
        assert!(
            text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.5\"} 1")
        );
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_count 1"));
    }
}
