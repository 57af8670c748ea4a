//! Exec: a new process in a running container, with the container's own process
//! settings (user, env, cwd, capabilities) and the requested argv, started detached by
//! the container's runtime ([`Runtime::exec`]). The process is a child of the agent,
//! which collects its exit status.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::unix::pipe;

use super::container::Container;
use super::runtime::{RunStdio, Runtime};

/// The process file of an exec (the container's process with the exec's argv).
fn write_process(
    bundle: &Path,
    args: &[String],
    terminal: bool,
    size: Option<(u16, u16)>,
) -> Result<ExecFile> {
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json"))
            .context("reading the container's config.json")?,
    )
    .context("parsing the container's config.json")?;
    let mut process = config["process"].clone();
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(terminal);
    if terminal {
        if let Some((width, height)) = size {
            process["consoleSize"] = serde_json::json!({"width": width, "height": height});
        }
        if let Some(env) = process["env"].as_array_mut() {
            if !env
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with("TERM=")))
            {
                env.push(serde_json::json!("TERM=xterm"));
            }
        }
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let file = bundle.join(format!("exec-{tag}.json"));
    std::fs::write(&file, serde_json::to_vec(&process)?)
        .context("writing the exec process file")?;
    Ok(ExecFile(vec![file]))
}

/// A pipe whose ends are close-on-exec (the process gets its end through the runtime).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making a pipe")
}

/// An exec without a terminal: its streams as pipes.
#[derive(Debug)]
pub struct Exec {
    /// Host PID of the process (the agent's child).
    pub pid: i32,
    /// Its stdin, when asked for (else it reads /dev/null).
    pub stdin: Option<pipe::Sender>,
    /// Its stdout.
    pub stdout: pipe::Receiver,
    /// Its stderr.
    pub stderr: pipe::Receiver,
    /// The process file (removed on drop).
    pub file: ExecFile,
}

/// Starts `args` in the container. stdout and stderr are pipes; stdin a pipe when
/// asked, else /dev/null.
pub async fn spawn(
    runtime: &Runtime,
    ctr: &Container,
    args: &[String],
    stdin: bool,
) -> Result<Exec> {
    let file = write_process(&ctr.bundle, args, false, None)?;
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (
            File::open("/dev/null").context("opening /dev/null")?.into(),
            None,
        )
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let pid = runtime
        .exec(
            ctr.runtime,
            &ctr.id,
            &file.0[0],
            RunStdio::Fds([in_r, out_w, err_w]),
        )
        .await?;
    Ok(Exec {
        pid,
        stdin: in_w
            .map(pipe::Sender::from_owned_fd)
            .transpose()
            .context("the stdin pipe")?,
        stdout: pipe::Receiver::from_owned_fd(out_r).context("the stdout pipe")?,
        stderr: pipe::Receiver::from_owned_fd(err_r).context("the stderr pipe")?,
        file,
    })
}

/// The files of an exec (process file); removed when dropped.
#[derive(Debug)]
pub struct ExecFile(Vec<std::path::PathBuf>);

impl Drop for ExecFile {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// An exec with a terminal (started detached: its process is our child, and its exit
/// status is collected from it).
#[derive(Debug)]
pub struct TtyExec {
    /// Host PID of the exec'd process.
    pub pid: i32,
    /// The pty master.
    pub master: std::fs::File,
    /// The process file (removed on drop).
    pub file: ExecFile,
}

impl TtyExec {
    /// Waits for the process to end; its exit code (128 + signal when killed).
    pub async fn wait(pid: i32) -> i32 {
        super::container::wait_for_exit(pid).await
    }
}

/// Waits for an exec'd process to end (its exit code, 128 + signal when killed); the
/// process is killed if the future is dropped first (a probe's timeout, a client gone).
pub async fn wait_or_kill(pid: i32) -> i32 {
    struct KillOnDrop(Option<i32>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                // Not reaped yet (the waiting thread reaps it when it ends), so the PID
                // is still this process's.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let mut guard = KillOnDrop(Some(pid));
    let code = super::container::wait_for_exit(pid).await;
    guard.0 = None;
    code
}

/// Starts `args` in the container with a terminal (the runtime's console socket).
pub async fn spawn_tty(runtime: &Runtime, ctr: &Container, args: &[String]) -> Result<TtyExec> {
    spawn_tty_sized(runtime, ctr, args, None).await
}

/// [`spawn_tty`] with the terminal's initial size (columns, rows), so the process never
/// sees a 0x0 terminal.
pub async fn spawn_tty_sized(
    runtime: &Runtime,
    ctr: &Container,
    args: &[String],
    size: Option<(u16, u16)>,
) -> Result<TtyExec> {
    let file = write_process(&ctr.bundle, args, true, size)?;
    let console = super::console::ConsoleSocket::new()?;
    let sock = console.path().to_path_buf();
    let master = tokio::spawn(console.receive());
    let started = runtime
        .exec(ctr.runtime, &ctr.id, &file.0[0], RunStdio::Console(sock))
        .await;
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            master.abort();
            return Err(e);
        }
    };
    let master = tokio::time::timeout(std::time::Duration::from_secs(10), master)
        .await
        .context("the runtime did not hand over a terminal")?
        .context("receiving the terminal")??;
    Ok(TtyExec { pid, master, file })
}
