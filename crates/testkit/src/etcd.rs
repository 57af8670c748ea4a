//! Real etcd clusters for tests and benchmarks: 1 or 3 `etcd` processes (Debian's
//! `etcd-server`) on loopback with free ports, data in a temporary directory, every
//! member killed and the directory removed on drop, also when the test fails. Knows
//! nothing of skiff's store: it hands out endpoints and `etcd://` datastore URLs.
//!
//! Each member runs under a small shell that holds the read end of a pipe from the test
//! process: when the test process exits, however it dies, the pipe closes and the shell
//! kills its member. So [`EtcdCluster::shared`], which lives in a static and is never
//! dropped, leaves nothing running either.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a cluster may take to elect a leader and serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells clusters of one process apart (in their tokens and directory names).
static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// The process-wide cluster of [`EtcdCluster::shared`].
static SHARED: OnceLock<EtcdCluster> = OnceLock::new();

/// Runs etcd (`$@`) in the background; a second background job waits for the end of the
/// pipe on fd 3 (the shell's stdin, saved before `&` could point it at /dev/null), then
/// kills etcd and removes `$SKT_ETCD_RM` if set. The shell exits when etcd does.
const WRAPPER: &str = r#"exec 3<&0
etcd "$@" 3<&- &
pid=$!
{ read -r _ <&3; kill -9 "$pid"; if [ -n "$SKT_ETCD_RM" ]; then sleep 1; rm -rf "$SKT_ETCD_RM"; fi; } 2>/dev/null &
wait "$pid"
"#;

/// Server certificates for a cluster that serves its clients over TLS (PEM files).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// CA whose client certificates the members accept (`--trusted-ca-file`).
    pub ca_file: PathBuf,
    /// The members' serving certificate (with 127.0.0.1 as a SAN).
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
}

/// One etcd member.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health` and `/metrics`, also when clients speak TLS.
    metrics_port: u16,
    /// The wrapper shell (see [`WRAPPER`]); closing its stdin kills etcd.
    child: Option<Child>,
}

/// A running etcd cluster on 127.0.0.1.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    /// Whether the wrappers remove the directory when the process exits (shared).
    remove_on_exit: bool,
    /// TLS of the client URLs, with client certificates required.
    tls: Option<ServerTls>,
}

/// Ports chosen by the kernel: bound together so that they differ, released right before
/// etcd binds them.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl EtcdCluster {
    /// Starts a cluster of `members` members (1 or 3, typically) and waits until every
    /// member reports itself healthy (which needs an elected leader).
    pub fn start(members: usize) -> std::io::Result<Self> {
        Self::start_with(members, false, None)
    }

    /// Starts a cluster whose members serve clients over TLS and require a client
    /// certificate signed by `tls.ca_file`.
    pub fn start_tls(members: usize, tls: ServerTls) -> std::io::Result<Self> {
        Self::start_with(members, false, Some(tls))
    }

    /// One single-member cluster for the whole test process, started on first use:
    /// tests that each need a datastore use their own key prefix in it. Its member stops
    /// and its directory goes when the process exits.
    ///
    /// # Panics
    /// If etcd cannot be started (the message says why).
    pub fn shared() -> &'static EtcdCluster {
        SHARED.get_or_init(|| {
            Self::start_with(1, true, None)
                .unwrap_or_else(|e| panic!("starting the shared etcd: {e}"))
        })
    }

    fn start_with(
        members: usize,
        remove_on_exit: bool,
        tls: Option<ServerTls>,
    ) -> std::io::Result<Self> {
        let n = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let token = format!("skt-{}-etcd-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{token}-"))
            .tempdir()?;
        let ports = free_ports(3 * members)?;
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                metrics_port: ports[3 * i + 2],
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir,
            token,
            members,
            remove_on_exit,
            tls,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_healthy(&(0..cluster.members.len()).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> std::io::Result<()> {
        let initial = self.initial_cluster();
        let dir = self.dir.path().to_path_buf();
        let m = &mut self.members[i];
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", m.name)))?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WRAPPER, "skiff-etcd"]);
        if self.remove_on_exit {
            cmd.env("SKT_ETCD_RM", &dir);
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert_file)
                .arg("--key-file")
                .arg(&tls.key_file)
                .arg("--trusted-ca-file")
                .arg(&tls.ca_file)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(dir.join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting etcd (apt-get install etcd-server): {e}"),
                )
            })?;
        m.child = Some(child);
        Ok(())
    }

    /// Waits until each of the members `which` answers `/health` with a leader.
    fn wait_healthy(&mut self, which: &[usize]) -> std::io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for &i in which {
            loop {
                if health(self.members[i].metrics_port) {
                    break;
                }
                if let Some(child) = self.members[i].child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        return Err(self.failure(
                            i,
                            &format!("exited with {status} (is etcd-server installed?)"),
                        ));
                    }
                }
                if Instant::now() > deadline {
                    return Err(self.failure(i, "not healthy within 60 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn failure(&self, i: usize, what: &str) -> std::io::Error {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        std::io::Error::other(format!(
            "etcd member {} {what}; its log ends with:\n{}",
            self.members[i].name,
            tail.join("\n")
        ))
    }

    /// The log file of member `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The data directory of the cluster (each member in a subdirectory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:port` of every member's client URL (TLS for a [`Self::start_tls`]
    /// cluster).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// A datastore URL for the cluster with a key prefix (`""` for none).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoints().join(","))
    }

    /// Kills member `i` (SIGKILL, as a crash) and reaps it.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        if let Some(mut child) = self.members[i].child.take() {
            // The wrapper kills etcd when its stdin closes, then exits.
            drop(child.stdin.take());
            child.wait()?;
        }
        Ok(())
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i)?;
        self.spawn(i, "existing")?;
        self.wait_healthy(&[i])
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i);
        }
    }
}

/// Whether the member on `port` answers `/health` with `"health":"true"`.
fn health(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
