//! The in-process runtime's service: youki's `libcontainer` run in a long-lived,
//! single-threaded child of the agent (`skiff runtime-service`), and the agent's client
//! of it.
//!
//! Why a separate process: `libcontainer` clones and runs Rust code in the children
//! before they exec; doing that from the agent's multi-threaded tokio process could
//! deadlock a child on a lock (malloc's) another thread held at the clone. The service
//! has one thread, as youki itself, and is started once, not per container (what makes
//! `runc` cost ~18 ms of CPU per pod is a Go binary started, and re-executed, per
//! operation).
//!
//! The protocol: a `SOCK_SEQPACKET` socket pair (the service's end is its fd 3), one
//! JSON [`Request`] per packet with its stdio descriptors attached (`SCM_RIGHTS`), one
//! JSON [`Reply`] per packet back. Requests are served one at a time.
//!
//! The service is not the containers' reaper: it creates them `as_sibling`
//! (`CLONE_PARENT`), so the container's init (and an exec'd process) is a child of the
//! agent, which collects its exit status as it does when runc exits and the init is
//! reparented to it. `libcontainer`'s short-lived intermediate process is a child of
//! the agent too; [`reap_intermediates`] collects it.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

/// The argument that starts the service in the skiff binary (`skiff runtime-service`).
pub const SUBCOMMAND: &str = "runtime-service";

/// The descriptor of the service's end of the socket pair.
pub const SERVICE_FD: RawFd = 3;

/// The name `libcontainer` gives its intermediate process (`prctl(PR_SET_NAME)`).
const INTERMEDIATE_COMM: &str = "youki:[1:INTER]";

/// Largest request or reply (a packet).
const MAX_MESSAGE: usize = 64 * 1024;

/// How long the agent waits for a reply before it gives the service up (and starts a
/// new one for the next request).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the agent asks of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create and start a container from its bundle, detached (as `runc run --detach`).
    Run {
        /// Container ID.
        id: String,
        /// Bundle directory (`config.json`, `rootfs`).
        bundle: PathBuf,
        /// Where the init's host PID is written.
        pid_file: PathBuf,
        /// A terminal: the pty master is sent to this socket (runc's protocol).
        console_socket: Option<PathBuf>,
        /// Three descriptors (stdin, stdout, stderr) come with the request.
        stdio: bool,
    },
    /// Start a process in a running container (as `runc exec --detach`).
    Exec {
        /// Container ID.
        id: String,
        /// The OCI process (JSON file).
        process: PathBuf,
        /// A terminal: the pty master is sent to this socket.
        console_socket: Option<PathBuf>,
        /// Three descriptors (stdin, stdout, stderr) come with the request.
        stdio: bool,
    },
    /// Answers `Started` with the service's own PID (a liveness check, for tests).
    Ping,
}

impl Request {
    fn stdio(&self) -> bool {
        match self {
            Request::Run { stdio, .. } | Request::Exec { stdio, .. } => *stdio,
            Request::Ping => false,
        }
    }
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    /// The process runs; its host PID.
    Started {
        /// Host PID (of the container's init, or of the exec'd process).
        pid: i32,
    },
    /// It could not be started.
    Failed {
        /// libcontainer's error, with its causes.
        error: String,
    },
}

// === the service ===

/// Serves requests on `sock` until the agent closes its end (the agent exited or gave
/// the service up). `root` is libcontainer's state directory. Single-threaded: call it
/// from a process that has started no other thread.
pub fn serve(root: &Path, sock: OwnedFd) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, fds) = receive(sock.as_raw_fd(), &mut buf)?;
        if len == 0 {
            return Ok(());
        }
        let reply = match serde_json::from_slice::<Request>(&buf[..len]) {
            Ok(req) => match handle(root, req, fds) {
                Ok(pid) => Reply::Started { pid },
                Err(e) => Reply::Failed {
                    error: format!("{e:#}"),
                },
            },
            Err(e) => Reply::Failed {
                error: format!("bad request: {e}"),
            },
        };
        send(sock.as_raw_fd(), &serde_json::to_vec(&reply)?, &[])?;
    }
}

/// [`serve`] on descriptor [`SERVICE_FD`], what `skiff runtime-service` runs.
pub fn serve_inherited(root: &Path) -> Result<()> {
    std::fs::symlink_metadata(format!("/proc/self/fd/{SERVICE_FD}"))
        .context("the runtime service expects its socket as fd 3")?;
    // SAFETY: fd 3 is open (checked above) and was handed to this process for the
    // service alone by the agent that spawned it; nothing else in the process owns it.
    #[allow(unsafe_code)]
    let sock = unsafe { OwnedFd::from_raw_fd(SERVICE_FD) };
    serve(root, sock)
}

fn handle(root: &Path, req: Request, fds: Vec<OwnedFd>) -> Result<i32> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let want = if req.stdio() { 3 } else { 0 };
    if fds.len() != want {
        bail!("expected {want} descriptors, got {}", fds.len());
    }
    let (id, pid_file, console) = match &req {
        Request::Run {
            id,
            pid_file,
            console_socket,
            ..
        } => (id.clone(), Some(pid_file.clone()), console_socket.clone()),
        Request::Exec {
            id, console_socket, ..
        } => (id.clone(), None, console_socket.clone()),
        Request::Ping => return Ok(std::process::id() as i32),
    };
    let mut builder = ContainerBuilder::new(id, SyscallType::default())
        .with_root_path(root)?
        .with_pid_file(pid_file)?
        .with_console_socket(console)
        .with_executor(SizedTerminal);
    let mut fds = fds.into_iter();
    if let (Some(i), Some(o), Some(e)) = (fds.next(), fds.next(), fds.next()) {
        builder = builder.with_stdin(i).with_stdout(o).with_stderr(e);
    }
    match req {
        Request::Run { bundle, .. } => {
            let mut c = builder
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .as_sibling(true)
                .build()?;
            c.start()?;
            let pid = c.pid().ok_or_else(|| anyhow!("the container has no PID"))?;
            Ok(pid.as_raw())
        }
        Request::Exec { process, .. } => {
            let pid = builder
                .as_tenant()
                .with_process(Some(process))
                .with_detach(true)
                .as_sibling(true)
                .build()?;
            Ok(pid.as_raw())
        }
        Request::Ping => unreachable!("answered above"),
    }
}

/// libcontainer's executor, which first gives a terminal the process's `consoleSize`
/// (runc does; libcontainer does not, so `kubectl exec -it -- stty size` would see 0x0,
/// the client's first resize arriving after the command ran). Runs in the container's
/// init, on its terminal, right before the exec.
#[derive(Clone)]
struct SizedTerminal;

impl libcontainer::workload::Executor for SizedTerminal {
    fn exec(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        let size = spec
            .process()
            .as_ref()
            .filter(|p| p.terminal() == Some(true))
            .and_then(|p| p.console_size());
        if let Some(size) = size {
            let ws = libc::winsize {
                ws_row: size.height() as u16,
                ws_col: size.width() as u16,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads one winsize from a live local; fd 0 is the
            // terminal libcontainer connected (an error leaves the size as it was).
            #[allow(unsafe_code)]
            unsafe {
                libc::ioctl(0, libc::TIOCSWINSZ, &ws);
            }
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        libcontainer::workload::default::get_executor().setup_envs(envs)
    }
}

fn receive(sock: RawFd, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.context("receiving from the runtime socket")?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().context("reading the control message")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed this descriptor in our table for us
                // (SCM_RIGHTS); nothing else owns it.
                #[allow(unsafe_code)]
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        bail!("a runtime message over {MAX_MESSAGE} bytes");
    }
    Ok((msg.bytes, fds))
}

fn send(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock, &[IoSlice::new(data)], cmsgs, MsgFlags::empty(), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => {
                r.context("sending on the runtime socket")?;
                return Ok(());
            }
        }
    }
}

// === the agent's client ===

/// One running service and the agent's end of its socket.
struct Conn {
    sock: OwnedFd,
    child: Child,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing the socket ends the service; kill it in case it is stuck.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's side: a few services (started on first use, again when one died), each
/// serving one request at a time.
pub struct Client {
    exe: PathBuf,
    root: PathBuf,
    slots: Vec<Mutex<Option<Conn>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("exe", &self.exe)
            .field("root", &self.root)
            .field("services", &self.slots.len())
            .finish()
    }
}

/// How many services the agent may run: one per core (a container's creation is mostly
/// the service's and its children's CPU), at most 4; `SKIFF_AGENT_RUNTIME_SERVICES`
/// overrides.
fn service_count() -> usize {
    std::env::var("SKIFF_AGENT_RUNTIME_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        })
}

impl Client {
    /// A client of services run as `<exe> runtime-service --root <root>`.
    pub fn new(exe: PathBuf, root: PathBuf) -> Client {
        Client {
            exe,
            root,
            slots: (0..service_count()).map(|_| Mutex::new(None)).collect(),
            next: 0.into(),
        }
    }

    /// libcontainer's state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn spawn(&self) -> Result<Conn> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("making the runtime socket pair")?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg(SUBCOMMAND)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let raw = theirs.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (dup2, fcntl) on descriptors it owns.
        #[allow(unsafe_code)]
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if raw == SERVICE_FD {
                    let flags = libc::fcntl(raw, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, SERVICE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting the runtime service {} {SUBCOMMAND}",
                self.exe.display()
            )
        })?;
        drop(theirs);
        let timeout = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .context("setting the runtime socket's timeout")?;
        Ok(Conn { sock: ours, child })
    }

    /// Sends a request with its descriptors and waits for the reply (blocking: call it
    /// from a blocking thread). A service that fails to answer is replaced for the next
    /// request.
    pub fn call(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<i32> {
        let slot = self.pick();
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|c| !alive(&c.child)) {
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.spawn()?);
        }
        let Some(conn) = guard.as_ref() else {
            bail!("no runtime service");
        };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let result = (|| {
            send(
                conn.sock.as_raw_fd(),
                &serde_json::to_vec(req)?,
                raw.as_slice(),
            )?;
            let mut buf = vec![0u8; MAX_MESSAGE];
            let (len, _) = receive(conn.sock.as_raw_fd(), &mut buf)?;
            if len == 0 {
                bail!("the runtime service exited");
            }
            serde_json::from_slice::<Reply>(&buf[..len]).context("parsing the runtime's reply")
        })();
        match result {
            Ok(Reply::Started { pid }) => Ok(pid),
            Ok(Reply::Failed { error }) => Err(anyhow!(error)),
            Err(e) => {
                // The service's state is unknown: the next request gets a new one.
                *guard = None;
                Err(e)
            }
        }
    }

    /// A free service if there is one, else the next in turn. Services found dead on
    /// the way are collected (and replaced when next used).
    fn pick(&self) -> &Mutex<Option<Conn>> {
        for s in &self.slots {
            if let Ok(mut g) = s.try_lock() {
                if g.as_ref().is_some_and(|c| !alive(&c.child)) {
                    *g = None;
                }
            }
        }
        for s in &self.slots {
            if !s.is_poisoned() {
                if let Ok(g) = s.try_lock() {
                    drop(g);
                    return s;
                }
            }
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.slots[n % self.slots.len()]
    }

    /// Starts the first service now (at the agent's start, so that the first pod does
    /// not wait for it). Blocking. The others start when requests first overlap: each
    /// is a process of the agent's binary, whose start costs a few milliseconds of CPU
    /// that a node running one pod at a time (a fresh cluster's) need not spend.
    pub fn warm(&self) -> Result<()> {
        let Some(slot) = self.slots.first() else {
            return Ok(());
        };
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.spawn()?);
        }
        Ok(())
    }

    /// Host PIDs of the running services (for tests).
    pub fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|c| c.child.id())
            })
            .collect()
    }
}

fn alive(child: &Child) -> bool {
    // A zombie (or a gone process) is not alive; the service is never waited for
    // elsewhere, so its /proc entry tells.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Collects libcontainer's intermediate processes that have exited: created
/// `as_sibling`, they are children of the agent (with no exit signal), and no one else
/// waits for them. Only zombies are collected, without blocking: a live process with
/// the intermediate's name may be a container's init just cloned from it (it inherits
/// the name until it renames itself), whose exit status is its waiter's. An
/// intermediate still exiting is collected by the next call (each runtime request
/// calls this before and after).
pub fn reap_intermediates() {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    for pid in children() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        if comm != INTERMEDIATE_COMM || !rest.trim_start().starts_with('Z') {
            continue;
        }
        let _ = waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
        );
    }
}

/// The PIDs of this process's children (`/proc/self/task/*/children`: a child belongs
/// to the thread that created it).
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_as_json() {
        let req = Request::Run {
            id: "c1".into(),
            bundle: "/b".into(),
            pid_file: "/b/pid".into(),
            console_socket: None,
            stdio: true,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"op":"run","id":"c1","bundle":"/b","pid_file":"/b/pid","console_socket":null,"stdio":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let reply = Reply::Failed { error: "no".into() };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"result":"failed","error":"no"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        assert_eq!(
            serde_json::to_string(&Request::Ping).unwrap(),
            r#"{"op":"ping"}"#
        );
    }

    /// The framing and descriptor passing, with the service loop on a thread of the
    /// test (a ping and a request with the wrong number of descriptors; nothing is
    /// cloned).
    #[test]
    fn serves_over_a_socket_pair_with_descriptors() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().to_path_buf();
        let service = std::thread::spawn(move || serve(&root_path, theirs));
        let call = |req: &Request, fds: &[RawFd]| {
            send(ours.as_raw_fd(), &serde_json::to_vec(req).unwrap(), fds).unwrap();
            let mut buf = vec![0u8; MAX_MESSAGE];
            let (len, _) = receive(ours.as_raw_fd(), &mut buf).unwrap();
            serde_json::from_slice::<Reply>(&buf[..len]).unwrap()
        };
        assert_eq!(
            call(&Request::Ping, &[]),
            Reply::Started {
                pid: std::process::id() as i32
            }
        );
        let null = std::fs::File::open("/dev/null").unwrap();
        let req = Request::Exec {
            id: "nothing".into(),
            process: "/nonexistent".into(),
            console_socket: None,
            stdio: true,
        };
        // One descriptor where three are expected: refused before libcontainer.
        let Reply::Failed { error } = call(&req, &[null.as_raw_fd()]) else {
            panic!("accepted one descriptor");
        };
        assert!(error.contains("expected 3 descriptors, got 1"), "{error}");
        // Three: passed through, and libcontainer reports the missing container.
        let fds = [null.as_raw_fd(), null.as_raw_fd(), null.as_raw_fd()];
        let Reply::Failed { error } = call(&req, &fds) else {
            panic!("exec in a missing container");
        };
        assert!(!error.contains("descriptors"), "{error}");
        drop(ours);
        service.join().unwrap().unwrap();
    }
}
