//! The OCI runtimes the agent drives, behind one [`Runtime`]: youki's `libcontainer` in
//! the agent's runtime service (`--runtime youki`, the default; see [`super::service`])
//! or a `runc` process per operation (`--runtime runc`). Every caller (the worker,
//! probes, exec/attach, the orphan cleanup, `skiff down`) goes through it.
//!
//! Each runtime keeps its state under its own root (`<data>/youki`, `<data>/runc`), and
//! a container records which runtime started it ([`super::container::SavedState`]), so
//! a node restarted with the other runtime still stops and deletes the containers the
//! first one started.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::service;

/// Which runtime runs a node's containers (`skiff agent --runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// youki's `libcontainer`, in the agent's long-lived runtime service.
    #[default]
    Youki,
    /// A `runc` process per operation.
    Runc,
}

impl RuntimeKind {
    /// What a container saved before runtimes were recorded ran under.
    pub fn legacy() -> RuntimeKind {
        RuntimeKind::Runc
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Youki => "youki",
            RuntimeKind::Runc => "runc",
        })
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "youki" => Ok(RuntimeKind::Youki),
            "runc" => Ok(RuntimeKind::Runc),
            _ => Err(format!("unknown runtime {s:?} (youki or runc)")),
        }
    }
}

/// The runc binary and its state directory (one per agent, under its data dir).
#[derive(Debug, Clone)]
pub struct Runc {
    /// `runc` (from PATH) or a path.
    pub binary: PathBuf,
    /// `--root` for runc's state.
    pub root: PathBuf,
}

/// A container's standard streams at its start.
#[derive(Debug)]
pub enum RunStdio {
    /// Descriptors for its stdin, stdout and stderr.
    Fds([OwnedFd; 3]),
    /// A terminal: the runtime makes a pty and sends its master to this socket.
    Console(PathBuf),
}

/// What [`Runtime::run`] starts.
#[derive(Debug)]
pub struct RunRequest<'a> {
    /// Container ID.
    pub id: &'a str,
    /// Bundle directory.
    pub bundle: &'a Path,
    /// Where the runtime writes the init's host PID.
    pub pid_file: &'a Path,
    /// Its streams.
    pub stdio: RunStdio,
}

/// The runtimes of one agent: the one that starts its containers, and both for the
/// containers an earlier agent started.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// What new containers run under.
    pub kind: RuntimeKind,
    /// runc (also for containers runc started before a switch).
    pub runc: Runc,
    /// libcontainer's service client and state root.
    pub youki: Arc<service::Client>,
}

impl Runtime {
    /// The runtimes of an agent whose data dir is `data_dir`; `service_exe` is the
    /// executable that serves `runtime-service` (started on first use).
    pub fn new(kind: RuntimeKind, data_dir: &Path, service_exe: PathBuf) -> Runtime {
        Runtime {
            kind,
            runc: Runc {
                binary: "runc".into(),
                root: data_dir.join("runc"),
            },
            youki: Arc::new(service::Client::new(service_exe, data_dir.join("youki"))),
        }
    }

    /// Starts a container, detached; returns its init's host PID. The init is a child
    /// of the agent (runc's is reparented to it, the subreaper, when runc exits; the
    /// service creates youki's as the agent's child).
    pub async fn run(&self, req: RunRequest<'_>) -> Result<i32> {
        match self.kind {
            RuntimeKind::Runc => self.runc.run(req).await,
            RuntimeKind::Youki => {
                let (stdio, console_socket) = match &req.stdio {
                    RunStdio::Fds(_) => (true, None),
                    RunStdio::Console(p) => (false, Some(p.clone())),
                };
                let request = service::Request::Run {
                    id: req.id.to_string(),
                    bundle: req.bundle.to_path_buf(),
                    pid_file: req.pid_file.to_path_buf(),
                    console_socket,
                    stdio,
                };
                let fds = match req.stdio {
                    RunStdio::Fds(fds) => Some(fds),
                    RunStdio::Console(_) => None,
                };
                self.call(request, fds).await
            }
        }
    }

    /// Starts a process in a running container (its OCI process in the file
    /// `process`), detached; returns its host PID, a child of the agent.
    pub async fn exec(
        &self,
        kind: RuntimeKind,
        id: &str,
        process: &Path,
        stdio: RunStdio,
    ) -> Result<i32> {
        match kind {
            RuntimeKind::Runc => self.runc.exec_detached(id, process, stdio).await,
            RuntimeKind::Youki => {
                let (has_fds, console_socket) = match &stdio {
                    RunStdio::Fds(_) => (true, None),
                    RunStdio::Console(p) => (false, Some(p.clone())),
                };
                let request = service::Request::Exec {
                    id: id.to_string(),
                    process: process.to_path_buf(),
                    console_socket,
                    stdio: has_fds,
                };
                let fds = match stdio {
                    RunStdio::Fds(fds) => Some(fds),
                    RunStdio::Console(_) => None,
                };
                self.call(request, fds).await
            }
        }
    }

    async fn call(&self, request: service::Request, fds: Option<[OwnedFd; 3]>) -> Result<i32> {
        let client = self.youki.clone();
        tokio::task::spawn_blocking(move || {
            let borrowed: Vec<_> = fds.iter().flatten().map(|f| f.as_fd()).collect();
            // libcontainer's intermediates are ours to collect (an earlier request's may
            // have still been exiting after its reply).
            service::reap_intermediates();
            let result = client.call(&request, &borrowed);
            service::reap_intermediates();
            result
        })
        .await
        .context("the runtime call panicked")?
    }

    /// Sends a signal (`TERM`, `KILL`) to the container's init. A container that is
    /// gone is not an error.
    pub async fn kill(&self, kind: RuntimeKind, id: &str, signal: &str) -> Result<()> {
        match kind {
            RuntimeKind::Runc => self.runc.kill(id, signal).await,
            RuntimeKind::Youki => {
                let sig = libcontainer::signal::Signal::try_from(signal)
                    .map_err(|e| anyhow::anyhow!("signal {signal}: {e}"))?;
                let dir = self.youki.root().join(id);
                blocking(move || youki_kill(&dir, sig)).await
            }
        }
    }

    /// Deletes the container's state (and cgroup), forcing if it still runs.
    pub async fn delete(&self, kind: RuntimeKind, id: &str) -> Result<()> {
        match kind {
            RuntimeKind::Runc => self.runc.delete(id).await,
            RuntimeKind::Youki => {
                let dir = self.youki.root().join(id);
                blocking(move || youki_delete(&dir)).await
            }
        }
    }

    /// The containers both runtimes know, with the runtime of each.
    pub async fn list(&self) -> Vec<(RuntimeKind, String)> {
        let mut all: Vec<(RuntimeKind, String)> = self
            .runc
            .list()
            .await
            .into_iter()
            .map(|id| (RuntimeKind::Runc, id))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.youki.root()) {
            all.extend(rd.flatten().filter_map(|e| {
                e.file_type()
                    .ok()?
                    .is_dir()
                    .then(|| (RuntimeKind::Youki, e.file_name().to_string_lossy().into()))
            }));
        }
        all
    }
}

async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the runtime call panicked")?
}

// Kill and delete need no clone: libcontainer runs them in the agent (on a blocking
// thread), with no round trip to the service.

fn youki_kill(dir: &Path, signal: libcontainer::signal::Signal) -> Result<()> {
    use libcontainer::container::{Container, ContainerStatus};
    use libcontainer::error::LibcontainerError;
    if !dir.exists() {
        return Ok(());
    }
    let mut c = match Container::load(dir.to_path_buf()) {
        Ok(c) => c,
        Err(_) if !dir.exists() => return Ok(()),
        Err(e) => return Err(e).context("loading the container's state"),
    };
    match c.kill(signal, false) {
        Ok(()) => Ok(()),
        // Already ended (runc's "not running" / "process already finished").
        Err(LibcontainerError::IncorrectStatus(ContainerStatus::Stopped)) => Ok(()),
        Err(e) => Err(e).context("libcontainer kill"),
    }
}

fn youki_delete(dir: &Path) -> Result<()> {
    use libcontainer::container::Container;
    if !dir.exists() {
        return Ok(());
    }
    let mut c = match Container::load(dir.to_path_buf()) {
        Ok(c) => c,
        Err(e) => {
            // A state directory libcontainer cannot read (a creation that failed half
            // way): nothing to stop, remove it.
            tracing::debug!(dir = %dir.display(), error = %e, "removing an unreadable container state");
            let _ = std::fs::remove_dir_all(dir);
            return Ok(());
        }
    };
    c.delete(true).context("libcontainer delete")
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `runc run --detach`, its errors read from its JSON log in the bundle.
    async fn run(&self, req: RunRequest<'_>) -> Result<i32> {
        let log = req.bundle.join("runc.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.cmd();
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--detach");
        match req.stdio {
            RunStdio::Fds([i, o, e]) => {
                cmd.stdin(Stdio::from(i))
                    .stdout(Stdio::from(o))
                    .stderr(Stdio::from(e));
            }
            RunStdio::Console(sock) => {
                cmd.arg("--console-socket")
                    .arg(sock)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        cmd.arg("--pid-file")
            .arg(req.pid_file)
            .arg("--bundle")
            .arg(req.bundle)
            .arg(req.id);
        let mut child = cmd.spawn().context("running runc")?;
        // The container's ends of its streams are the container's alone from now.
        drop(cmd);
        let status = child.wait().await.context("waiting for runc run")?;
        if !status.success() {
            bail!("{}", runc_error(&log));
        }
        read_pid(req.pid_file)
    }

    /// `runc exec --detach`: with a terminal through the console socket, else on the
    /// given descriptors. runc's errors are read from its JSON log (its stderr may be
    /// the process's).
    async fn exec_detached(&self, id: &str, process: &Path, stdio: RunStdio) -> Result<i32> {
        let pid_file = process.with_extension("pid");
        let log = process.with_extension("log");
        let mut cmd = self.cmd();
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("exec")
            .arg("--detach");
        match stdio {
            RunStdio::Console(sock) => {
                cmd.arg("--tty")
                    .arg("--console-socket")
                    .arg(sock)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
            RunStdio::Fds([i, o, e]) => {
                cmd.stdin(Stdio::from(i))
                    .stdout(Stdio::from(o))
                    .stderr(Stdio::from(e));
            }
        }
        cmd.arg("--pid-file")
            .arg(&pid_file)
            .arg("--process")
            .arg(process)
            .arg(id);
        let status = match cmd.spawn() {
            Ok(mut child) => {
                // The process's ends of its streams are its own from now.
                drop(cmd);
                child.wait().await.context("waiting for runc exec")
            }
            Err(e) => Err(e).context("running runc exec"),
        };
        let pid = match status {
            Ok(s) if s.success() => read_pid(&pid_file),
            Ok(_) => Err(anyhow::anyhow!("runc exec: {}", runc_error(&log))),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        pid
    }

    /// Sends a signal (`TERM`, `KILL`) to the container's init. A container that is gone
    /// is not an error.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let out = self
            .cmd()
            .args(["kill", id, signal])
            .output()
            .await
            .context("running runc kill")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            && !err.contains("not exist")
            && !err.contains("not running")
            && !err.contains("process already finished")
        {
            bail!("runc kill {id} {signal}: {}", err.trim());
        }
        Ok(())
    }

    /// Deletes the container's runc state (and cgroup), forcing if it still runs.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let out = self
            .cmd()
            .args(["delete", "--force", id])
            .output()
            .await
            .context("running runc delete")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("not exist") {
            bail!("runc delete {id}: {}", err.trim());
        }
        Ok(())
    }

    /// IDs of the containers runc knows.
    pub async fn list(&self) -> Vec<String> {
        let Ok(out) = self.cmd().args(["list", "--format", "json"]).output().await else {
            return Vec::new();
        };
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        serde_json::from_slice::<Option<Vec<Item>>>(&out.stdout)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.id)
            .collect()
    }
}

fn read_pid(path: &Path) -> Result<i32> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the pid file {}", path.display()))?
        .trim()
        .parse()
        .context("parsing the pid file")
}

/// Reads runc's last error from its JSON log.
fn runc_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["level"] == "error").then(|| v["msg"].as_str().unwrap_or_default().to_string())
        })
        .unwrap_or_else(|| text.lines().last().unwrap_or("unknown error").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names() {
        for k in [RuntimeKind::Youki, RuntimeKind::Runc] {
            assert_eq!(k.to_string().parse::<RuntimeKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("crun".parse::<RuntimeKind>().is_err());
        assert_eq!(RuntimeKind::default(), RuntimeKind::Youki);
    }
}
