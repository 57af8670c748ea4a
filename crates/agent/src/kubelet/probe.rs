//! Startup, liveness and readiness probes: httpGet and tcpSocket against the pod IP from
//! the node, exec through the container runtime. One task per container instance reports
//! threshold crossings to the pod worker.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as ContainerSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::containers::container::Container;
use crate::containers::exec;
use crate::containers::runtime::Runtime;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// startupProbe.
    Startup,
    /// livenessProbe.
    Liveness,
    /// readinessProbe.
    Readiness,
}

impl Kind {
    /// As Kubernetes' messages name it.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A probe crossed a threshold.
#[derive(Debug, Clone)]
pub struct Report {
    /// Container name.
    pub container: String,
    /// Runtime ID of the instance probed.
    pub id: String,
    /// Which probe.
    pub kind: Kind,
    /// Now passing (true) or failing (false).
    pub ok: bool,
    /// Failure message.
    pub message: String,
}

fn resolve_port(spec: &ContainerSpec, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs one probe once. Ok(()) on success, Err(message) on failure.
pub async fn run_once(
    probe: &Probe,
    spec: &ContainerSpec,
    pod_ip: IpAddr,
    runtime: &Runtime,
    container: &Container,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(h) = &probe.http_get {
        let port = resolve_port(spec, &h.port).ok_or("invalid port")?;
        let host = h
            .host
            .clone()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(pod_ip);
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let addr = SocketAddr::new(host, port);
        let scheme = h
            .scheme
            .clone()
            .unwrap_or_else(|| "HTTP".into())
            .to_ascii_lowercase();
        let url = format!("{scheme}://{addr}{path}");
        let fut = async {
            let mut s = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {e}"))?;
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
            for hdr in h.http_headers.iter().flatten() {
                req.push_str(&format!("{}: {}\r\n", hdr.name, hdr.value));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 512];
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&buf[..n]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or("malformed HTTP response")?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        };
        return tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")));
    }
    if let Some(t) = &probe.tcp_socket {
        let port = resolve_port(spec, &t.port).ok_or("invalid port")?;
        let host = t
            .host
            .clone()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(pod_ip);
        let addr = SocketAddr::new(host, port);
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(e) = &probe.exec {
        let args = e.command.clone().unwrap_or_default();
        let started = exec::spawn(runtime, container, &args, false)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let exec::Exec {
            pid,
            mut stdout,
            mut stderr,
            file: _file,
            ..
        } = started;
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (code, _, _) = tokio::join!(
                exec::wait_or_kill(pid),
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
            );
            (code, out)
        };
        return match tokio::time::timeout(timeout, run).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(format!(
                "command {:?} exited with {}: {}",
                args.join(" "),
                code,
                String::from_utf8_lossy(&out).trim()
            )),
            Err(_) => Err(format!("command {:?} timed out", args.join(" "))),
        };
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by skiff".into());
    }
    Ok(())
}

/// Where an instance's probing starts from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume {
    /// The instance is already started (it passed its startup probe before the agent
    /// restarted, as its last posted status says): the startup probe is not run again,
    /// as kubelet keeps `started` across its restarts (KEP-4781).
    pub started: bool,
    /// The agent has just restarted and is taking the instance back: like kubelet's
    /// prober after a restart, the liveness and startup probes of all its containers
    /// start at a random point of their first period instead of all at once. Readiness
    /// is probed at once (kubelet triggers it while it has no result).
    pub stagger: bool,
}

/// Probes one container instance until it exits, reporting to the worker.
pub fn spawn(
    spec: ContainerSpec,
    pod_ip: IpAddr,
    runtime: Runtime,
    container: Arc<Container>,
    tx: mpsc::UnboundedSender<Report>,
    resume: Resume,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut exit = container.exit_watch();
        let work = async {
            if let Some(p) = spec.startup_probe.as_ref().filter(|_| !resume.started) {
                let ok = run_loop(
                    p,
                    &spec,
                    pod_ip,
                    &runtime,
                    &container,
                    Kind::Startup,
                    &tx,
                    resume.stagger,
                )
                .await;
                if !ok {
                    return;
                }
            }
            let live = async {
                if let Some(p) = &spec.liveness_probe {
                    run_loop(
                        p,
                        &spec,
                        pod_ip,
                        &runtime,
                        &container,
                        Kind::Liveness,
                        &tx,
                        resume.stagger,
                    )
                    .await;
                }
            };
            let ready = async {
                if let Some(p) = &spec.readiness_probe {
                    run_loop(
                        p,
                        &spec,
                        pod_ip,
                        &runtime,
                        &container,
                        Kind::Readiness,
                        &tx,
                        false,
                    )
                    .await;
                }
            };
            tokio::join!(live, ready);
        };
        tokio::select! {
            _ = work => {}
            _ = exit.wait_for(|e| e.is_some()) => {}
        }
    })
}

/// How long before a probe's first run: what is left of its initial delay, counted from
/// the container's start as kubelet counts it (an instance taken back after an agent
/// restart has usually served it already), or, with `stagger`, a random point of the
/// first period if that is later.
pub fn first_delay(
    probe: &Probe,
    started_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    stagger: bool,
    random: f64,
) -> Duration {
    let initial = chrono::Duration::seconds(probe.initial_delay_seconds.unwrap_or(0).max(0).into());
    let left = (started_at + initial - now).to_std().unwrap_or_default();
    if !stagger {
        return left;
    }
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    left.max(period.mul_f64(random.clamp(0.0, 1.0)))
}

/// A number in [0, 1) that differs between calls (no cryptographic quality needed: it
/// only spreads probes over a period).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs a probe periodically. A startup probe returns true once it passes, false once
/// it failed for good; the others report every transition forever.
#[allow(clippy::too_many_arguments)]
async fn run_loop(
    probe: &Probe,
    spec: &ContainerSpec,
    pod_ip: IpAddr,
    runtime: &Runtime,
    container: &Container,
    kind: Kind,
    tx: &mpsc::UnboundedSender<Report>,
    stagger: bool,
) -> bool {
    let until_success = kind == Kind::Startup;
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    tokio::time::sleep(first_delay(
        probe,
        container.started_at,
        chrono::Utc::now(),
        stagger,
        random_fraction(),
    ))
    .await;
    let (mut successes, mut failures) = (0, 0);
    let mut reported: Option<bool> = None;
    loop {
        let result = run_once(probe, spec, pod_ip, runtime, container).await;
        let report = |ok: bool, message: String| {
            let _ = tx.send(Report {
                container: spec.name.clone(),
                id: container.id.clone(),
                kind,
                ok,
                message,
            });
        };
        match result {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if successes >= success_threshold && reported != Some(true) {
                    reported = Some(true);
                    report(true, String::new());
                    if until_success {
                        return true;
                    }
                }
            }
            Err(msg) => {
                successes = 0;
                failures += 1;
                if failures >= failure_threshold && reported != Some(false) {
                    reported = Some(false);
                    report(false, msg);
                    if until_success {
                        return false;
                    }
                    if kind == Kind::Liveness {
                        // The worker restarts the container; this task ends with it.
                        failures = 0;
                        reported = None;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(initial: i32, period: i32) -> Probe {
        Probe {
            initial_delay_seconds: Some(initial),
            period_seconds: Some(period),
            ..Default::default()
        }
    }

    #[test]
    fn initial_delay_counts_from_the_container_start() {
        let now = chrono::Utc::now();
        // A new container waits its whole initial delay.
        assert_eq!(
            first_delay(&probe(5, 10), now, now, false, 0.5),
            Duration::from_secs(5)
        );
        // One taken back after an agent restart has served part or all of it.
        let started = now - chrono::Duration::seconds(3);
        assert_eq!(
            first_delay(&probe(5, 10), started, now, false, 0.5),
            Duration::from_secs(2)
        );
        let started = now - chrono::Duration::seconds(60);
        assert_eq!(
            first_delay(&probe(5, 10), started, now, false, 0.5),
            Duration::ZERO
        );
    }

    #[test]
    fn staggered_probes_start_within_their_first_period() {
        let now = chrono::Utc::now();
        let started = now - chrono::Duration::seconds(60);
        assert_eq!(
            first_delay(&probe(0, 10), started, now, true, 0.25),
            Duration::from_millis(2500)
        );
        // An initial delay still running wins over an earlier random point.
        assert_eq!(
            first_delay(&probe(8, 10), now, now, true, 0.25),
            Duration::from_secs(8)
        );
        for _ in 0..100 {
            let r = random_fraction();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}
