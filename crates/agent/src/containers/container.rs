//! Containers: the bundle (overlayfs rootfs + `config.json`), started detached by the
//! node's [`Runtime`] with the container's stdio handed over (FIFOs for stdout/stderr,
//! so output survives an agent restart; a pipe for stdin), the CRI log file, attach
//! fan-out, and the exit status (the container's init is the agent's child: runc's is
//! reparented to the agent, a child subreaper, when runc exits; the runtime service
//! creates youki's as the agent's child).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch};

use super::crilog::{self, Stream};
use super::oci::{self, ContainerConfig};
use super::runtime::{RunRequest, RunStdio, Runtime, RuntimeKind};

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128 + signal for a signal).
    pub code: i32,
    /// The memory cgroup killed it.
    pub oom_killed: bool,
    /// When the agent saw it end.
    pub finished_at: DateTime<Utc>,
}

impl Exit {
    /// The Kubernetes reason: Completed, OOMKilled or Error.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The runtime's container ID.
    pub id: String,
    /// Bundle directory (made if missing).
    pub bundle: PathBuf,
    /// The image's layers, topmost first (overlay lower dirs).
    pub lower: Vec<PathBuf>,
    /// The image's ID, written into the bundle (`images::BUNDLE_IMAGE_FILE`) so that
    /// image garbage collection and `skiff image rm` see the image in use while the
    /// bundle exists (empty: not recorded).
    pub image_id: String,
    /// The process, namespaces, mounts, limits.
    pub config: ContainerConfig,
    /// CRI log file.
    pub log_path: PathBuf,
    /// Keep stdin open as a pipe the agent can write to.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Run with a terminal (`tty: true`): output and input go through a pty.
    pub tty: bool,
}

/// Saved in the bundle so a restarted agent can take the container back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState {
    /// The runtime's container ID.
    pub id: String,
    /// Host PID of the container's init.
    pub pid: i32,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// CRI log file.
    pub log_path: PathBuf,
    /// The runtime that started it (runc for a state saved before this was recorded).
    #[serde(default = "RuntimeKind::legacy")]
    pub runtime: RuntimeKind,
}

/// Where the container's stdin is written.
type StdinWriter = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

struct LogSink {
    file: File,
    written: u64,
}

/// A started container.
pub struct Container {
    /// The runtime's container ID.
    pub id: String,
    /// The runtime that started it (and stops it).
    pub runtime: RuntimeKind,
    /// Host PID of its init.
    pub pid: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its CRI log file.
    pub log_path: PathBuf,
    /// Bundle directory.
    pub bundle: PathBuf,
    stdin_once: bool,
    /// True for a container with a terminal.
    pub tty: bool,
    /// The pty master, for resizing.
    master: Option<File>,
    stdin: tokio::sync::Mutex<Option<StdinWriter>>,
    sink: Arc<Mutex<LogSink>>,
    output: broadcast::Sender<(Stream, Bytes)>,
    written: watch::Receiver<u64>,
    exit: watch::Receiver<Option<Exit>>,
    attached_once: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .finish()
    }
}

fn mount_overlay(lower: &[PathBuf], bundle: &Path) -> Result<PathBuf> {
    let rootfs = bundle.join("rootfs");
    for d in ["rootfs", "upper", "work"] {
        fs::create_dir_all(bundle.join(d))
            .with_context(|| format!("creating {}/{d}", bundle.display()))?;
    }
    if is_mountpoint(&rootfs) {
        return Ok(rootfs);
    }
    let lowerdir: Vec<String> = lower.iter().map(|l| l.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        bundle.join("upper").display(),
        bundle.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .with_context(|| format!("mounting the overlay rootfs at {}", rootfs.display()))?;
    Ok(rootfs)
}

/// True if `p` is a mount point (its device differs from its parent's, or it is listed
/// in /proc/self/mountinfo).
pub fn is_mountpoint(p: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = p.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_ref()))
}

/// Unmounts the bundle's rootfs (lazily, so a busy mount never blocks teardown).
pub fn unmount_rootfs(bundle: &Path) -> Result<()> {
    let rootfs = bundle.join("rootfs");
    while is_mountpoint(&rootfs) {
        nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", rootfs.display()))?;
    }
    Ok(())
}

fn fifo(path: &Path) -> Result<()> {
    if !path.exists() {
        nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", path.display()))?;
    }
    Ok(())
}

/// Output a container printed before an attach, per stream, in order.
pub type Replay = Vec<(Stream, Vec<u8>)>;

impl Container {
    /// Makes the bundle and starts the container. Returns once its init runs.
    pub async fn start(runtime: &Runtime, spec: ContainerSpec) -> Result<Arc<Container>> {
        let bundle = spec.bundle.clone();
        fs::create_dir_all(&bundle).with_context(|| format!("creating {}", bundle.display()))?;
        if !spec.image_id.is_empty() {
            fs::write(
                bundle.join(super::images::BUNDLE_IMAGE_FILE),
                &spec.image_id,
            )
            .context("recording the container's image")?;
        }
        mount_overlay(&spec.lower, &bundle)?;
        let config = oci::config_json(&spec.config);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )
        .context("writing config.json")?;
        if spec.tty {
            return Self::start_tty(runtime, spec).await;
        }
        fifo(&bundle.join("stdout"))?;
        fifo(&bundle.join("stderr"))?;
        // The container's ends are opened read-write: it then never gets SIGPIPE while
        // the agent is away (restarting); output waits in the pipe until it is back.
        let ctr_out = OpenOptions::new()
            .read(true)
            .write(true)
            .open(bundle.join("stdout"))?;
        let ctr_err = OpenOptions::new()
            .read(true)
            .write(true)
            .open(bundle.join("stderr"))?;
        let rx_out = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(bundle.join("stdout"))?;
        let rx_err = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(bundle.join("stderr"))?;
        let (ctr_in, stdin): (OwnedFd, Option<StdinWriter>) = if spec.stdin {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .context("making the stdin pipe")?;
            let w = pipe::Sender::from_owned_fd(w).context("the stdin pipe")?;
            (r, Some(Box::new(w) as StdinWriter))
        } else {
            (File::open("/dev/null")?.into(), None)
        };
        let pid = Self::run(
            runtime,
            &spec,
            RunStdio::Fds([ctr_in, ctr_out.into(), ctr_err.into()]),
        )
        .await?;
        let saved = SavedState {
            id: spec.id.clone(),
            pid,
            started_at: Utc::now(),
            log_path: spec.log_path.clone(),
            runtime: runtime.kind,
        };
        fs::write(bundle.join("state.json"), serde_json::to_vec(&saved)?)
            .context("writing state.json")?;
        Ok(Self::wire(
            runtime,
            saved,
            bundle,
            vec![(rx_out, Stream::Stdout), (rx_err, Stream::Stderr)],
            stdin,
            spec.stdin_once,
            None,
            cgroup_memory_dir(&spec.config.cgroups_path),
        ))
    }

    /// Runs the bundle; on failure removes what the runtime left and unmounts the
    /// rootfs.
    async fn run(runtime: &Runtime, spec: &ContainerSpec, stdio: RunStdio) -> Result<i32> {
        let started = runtime
            .run(RunRequest {
                id: &spec.id,
                bundle: &spec.bundle,
                pid_file: &spec.bundle.join("pid"),
                stdio,
            })
            .await;
        match started {
            Ok(pid) => Ok(pid),
            Err(e) => {
                let _ = runtime.delete(runtime.kind, &spec.id).await;
                let _ = unmount_rootfs(&spec.bundle);
                bail!("{} run failed: {e:#}", runtime.kind)
            }
        }
    }

    /// Starts a container with a terminal: the runtime sends the pty master over a
    /// console socket; output (all of it "stdout") is read from it and input written to
    /// it.
    async fn start_tty(runtime: &Runtime, spec: ContainerSpec) -> Result<Arc<Container>> {
        let bundle = spec.bundle.clone();
        let console = super::console::ConsoleSocket::new()?;
        let sock = console.path().to_path_buf();
        let master = tokio::spawn(console.receive());
        let pid = match Self::run(runtime, &spec, RunStdio::Console(sock)).await {
            Ok(pid) => pid,
            Err(e) => {
                master.abort();
                return Err(e);
            }
        };
        let master = master.await.context("receiving the pty")??;
        let reader = pipe::Receiver::from_file_unchecked(master.try_clone()?)?;
        let resizer = master.try_clone()?;
        let stdin = if spec.stdin {
            Some(Box::new(pipe::Sender::from_file_unchecked(master)?) as StdinWriter)
        } else {
            None
        };
        let saved = SavedState {
            id: spec.id.clone(),
            pid,
            started_at: Utc::now(),
            log_path: spec.log_path.clone(),
            runtime: runtime.kind,
        };
        fs::write(bundle.join("state.json"), serde_json::to_vec(&saved)?)
            .context("writing state.json")?;
        Ok(Self::wire(
            runtime,
            saved,
            bundle,
            vec![(reader, Stream::Stdout)],
            stdin,
            spec.stdin_once,
            Some(resizer),
            cgroup_memory_dir(&spec.config.cgroups_path),
        ))
    }

    /// Takes back a container started by an earlier agent (its init is no longer our
    /// child: its end is seen by polling, and its exit code is unknown), under the
    /// runtime that started it.
    pub fn adopt(runtime: &Runtime, bundle: &Path, cgroups_path: &str) -> Result<Arc<Container>> {
        let saved: SavedState = serde_json::from_slice(
            &fs::read(bundle.join("state.json")).context("reading state.json")?,
        )
        .context("parsing state.json")?;
        let rx_out = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(bundle.join("stdout"))?;
        let rx_err = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(bundle.join("stderr"))?;
        Ok(Self::wire(
            runtime,
            saved,
            bundle.to_path_buf(),
            vec![(rx_out, Stream::Stdout), (rx_err, Stream::Stderr)],
            None,
            false,
            None,
            cgroup_memory_dir(cgroups_path),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn wire(
        runtime: &Runtime,
        saved: SavedState,
        bundle: PathBuf,
        outputs: Vec<(pipe::Receiver, Stream)>,
        stdin: Option<StdinWriter>,
        stdin_once: bool,
        master: Option<File>,
        memcg: PathBuf,
    ) -> Arc<Container> {
        let tty = master.is_some();
        if let Some(dir) = saved.log_path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&saved.log_path)
            .or_else(|_| OpenOptions::new().write(true).open("/dev/null"));
        let (written_tx, written_rx) = watch::channel(0u64);
        let (exit_tx, exit_rx) = watch::channel(None);
        let (output, _) = broadcast::channel(1024);
        let sink = match file {
            Ok(file) => {
                let written = file.metadata().map(|m| m.len()).unwrap_or(0);
                Arc::new(Mutex::new(LogSink { file, written }))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open a log file or /dev/null");
                // Nothing sensible can be done without any file; keep running blind.
                return Arc::new(Container {
                    id: saved.id,
                    runtime: saved.runtime,
                    pid: saved.pid,
                    started_at: saved.started_at,
                    log_path: saved.log_path,
                    bundle,
                    stdin_once,
                    tty,
                    master: master.as_ref().and_then(|m| m.try_clone().ok()),
                    stdin: tokio::sync::Mutex::new(stdin),
                    sink: Arc::new(Mutex::new(LogSink {
                        file: tempfile_fallback(),
                        written: 0,
                    })),
                    output,
                    written: written_rx,
                    exit: exit_rx,
                    attached_once: false.into(),
                });
            }
        };
        let c = Arc::new(Container {
            id: saved.id.clone(),
            runtime: saved.runtime,
            pid: saved.pid,
            started_at: saved.started_at,
            log_path: saved.log_path.clone(),
            bundle: bundle.clone(),
            stdin_once,
            tty,
            master: master.as_ref().and_then(|m| m.try_clone().ok()),
            stdin: tokio::sync::Mutex::new(stdin),
            sink: sink.clone(),
            output: output.clone(),
            written: written_rx,
            exit: exit_rx,
            attached_once: false.into(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let written_tx = Arc::new(written_tx);
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(rx, stream)| {
                tokio::spawn(pump(
                    rx,
                    stream,
                    sink.clone(),
                    output.clone(),
                    written_tx.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let pid = saved.pid;
        let runtime = runtime.clone();
        let kind = saved.runtime;
        let id = saved.id;
        tokio::spawn(async move {
            let code = wait_for_exit(pid).await;
            let oom_killed = oom_killed(&memcg);
            let _ = stop_tx.send(true);
            for p in pumps {
                let _ = p.await;
            }
            if let Err(e) = runtime.delete(kind, &id).await {
                tracing::warn!(container = %id, error = %e, "deleting the exited container");
            }
            if let Err(e) = unmount_rootfs(&bundle) {
                tracing::warn!(container = %id, error = %e, "unmounting the exited container's rootfs");
            }
            let _ = exit_tx.send(Some(Exit {
                code,
                oom_killed,
                finished_at: Utc::now(),
            }));
        });
        c
    }

    /// The exit, once there is one.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// A receiver that changes when the container exits.
    pub fn exit_watch(&self) -> watch::Receiver<Option<Exit>> {
        self.exit.clone()
    }

    /// Waits for the container to exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    code: 137,
                    oom_killed: false,
                    finished_at: Utc::now(),
                };
            }
        }
    }

    /// A receiver of the log file's size, for followers.
    pub fn log_watch(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Starts an attach session: a receiver of live output, and (when `replay`) the
    /// output logged before it, per stream, with no gap or overlap between the two.
    pub fn attach(&self, replay: bool) -> (Replay, broadcast::Receiver<(Stream, Bytes)>) {
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.output.subscribe();
        let len = sink.written;
        drop(sink);
        let mut past = Vec::new();
        if replay {
            if let Ok(data) = fs::read(&self.log_path) {
                let data = &data[..(len as usize).min(data.len())];
                for line in data.split(|b| *b == b'\n') {
                    if let Some(rec) = crilog::parse(line) {
                        let mut content = rec.content;
                        if !rec.partial {
                            content.push(b'\n');
                        }
                        past.push((rec.stream, content));
                    }
                }
            }
        }
        (past, rx)
    }

    /// True the first time it is called (the first attach of a `kubectl run -i` pod
    /// replays what the container printed before kubectl got there).
    pub fn first_attach(&self) -> bool {
        !self
            .attached_once
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Writes to the container's stdin. Errors if it has none (or it was closed).
    pub async fn write_stdin(&self, data: &[u8]) -> Result<()> {
        let mut guard = self.stdin.lock().await;
        let w = guard
            .as_mut()
            .ok_or_else(|| anyhow!("the container's stdin is closed"))?;
        w.write_all(data)
            .await
            .context("writing to the container's stdin")?;
        w.flush().await?;
        Ok(())
    }

    /// Whether the container was started with an open stdin.
    pub async fn has_stdin(&self) -> bool {
        self.stdin.lock().await.is_some()
    }

    /// Resizes the container's terminal (no-op without one).
    pub fn resize(&self, width: u16, height: u16) {
        if let Some(m) = &self.master {
            super::console::resize(m, width, height);
        }
    }

    /// Closes stdin (EOF for the container).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }

    /// Called when an attach session ends: stdinOnce containers lose their stdin.
    pub async fn attach_ended(&self) {
        if self.stdin_once {
            self.close_stdin().await;
        }
    }
}

fn tempfile_fallback() -> File {
    // Only reached when even /dev/null cannot be opened; an anonymous temp file keeps
    // the types simple.
    tempfile_in_tmp().unwrap_or_else(|_| std::process::exit(70))
}

fn tempfile_in_tmp() -> std::io::Result<File> {
    let p = std::env::temp_dir().join(format!("skiff-log-{}", uuid::Uuid::new_v4()));
    let f = OpenOptions::new().create(true).append(true).open(&p)?;
    let _ = fs::remove_file(&p);
    Ok(f)
}

/// Copies one output FIFO into the log file and to attached clients, until told to stop
/// (then drains what is left).
async fn pump(
    rx: pipe::Receiver,
    stream: Stream,
    sink: Arc<Mutex<LogSink>>,
    output: broadcast::Sender<(Stream, Bytes)>,
    written: Arc<watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                r = rx.readable() => { if r.is_err() { return; } }
                _ = stop.changed() => { stopping = true; }
            }
        }
        // Once stopping, read the pipe directly: tokio's try_read answers WouldBlock
        // from its cached readiness, which may not have seen the last write yet, and
        // the container's final output would be lost.
        let read = if stopping {
            nix::unistd::read(&rx, &mut buf).map_err(std::io::Error::from)
        } else {
            rx.try_read(&mut buf)
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                let chunk = &buf[..n];
                let rec = crilog::encode(Utc::now(), stream, chunk);
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.file.write_all(&rec).is_ok() {
                    s.written += rec.len() as u64;
                }
                let _ = output.send((stream, Bytes::copy_from_slice(chunk)));
                written.send_replace(s.written);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stopping {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Waits for the container's init to end. It is our child (we are a subreaper) unless
/// an earlier agent started it; then its end is polled.
pub(crate) async fn wait_for_exit(pid: i32) -> i32 {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let status = loop {
                // __WALL: an init created `as_sibling` by the runtime service has no
                // exit signal (a "clone" child), which a plain waitpid does not see.
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
                    Ok(WaitStatus::Exited(_, code)) => break Some(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break Some(128 + sig as i32),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break None,
                }
            };
            let _ = tx.send(status);
        });
    let status = match spawned {
        Ok(_) => rx.await.ok().flatten(),
        Err(_) => None,
    };
    if let Some(code) = status {
        return code;
    }
    // Not our child: poll until the process is gone.
    while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    137
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(true)
}

fn cgroup_memory_dir(cgroups_path: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/memory").join(cgroups_path.trim_start_matches('/'))
}

/// Whether the memory cgroup's OOM killer killed something (cgroup v1 `oom_kill` count).
fn oom_killed(memcg: &Path) -> bool {
    fs::read_to_string(memcg.join("memory.oom_control"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
        })
        .is_some_and(|n| n > 0)
}

/// Makes the agent a child subreaper, so container inits become its children when runc
/// exits (and stay its children should its runtime service die) and their exit statuses can be collected.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")
}
