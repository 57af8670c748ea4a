//! `runc exec`: a new process in a running container, with the container's own process
//! settings (user, env, cwd, capabilities) and the requested argv.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use super::container::Runc;

/// Starts `args` in the container whose bundle is `bundle`. stdout and stderr are
/// pipes; stdin a pipe when asked, else /dev/null. The child's exit status is the
/// process's.
pub async fn spawn(
    runc: &Runc,
    id: &str,
    bundle: &Path,
    args: &[String],
    stdin: bool,
) -> Result<(Child, ExecFile)> {
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json"))
            .context("reading the container's config.json")?,
    )
    .context("parsing the container's config.json")?;
    let mut process = config["process"].clone();
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(false);
    let file = bundle.join(format!("exec-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(&process)?)
        .context("writing the exec process file")?;
    let guard = ExecFile(vec![file.clone()]);
    let child = Command::new(&runc.binary)
        .arg("--root")
        .arg(&runc.root)
        .arg("exec")
        .arg("--process")
        .arg(&file)
        .arg(id)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running runc exec")?;
    Ok((child, guard))
}

/// The files of an exec (process file, pid file); removed when dropped.
#[derive(Debug)]
pub struct ExecFile(Vec<std::path::PathBuf>);

impl Drop for ExecFile {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// An exec with a terminal (started detached: its process is our child as we are a
/// subreaper, and its exit status is collected from it).
#[derive(Debug)]
pub struct TtyExec {
    /// Host PID of the exec'd process.
    pub pid: i32,
    /// The pty master.
    pub master: std::fs::File,
    /// The process and pid files (removed on drop).
    pub file: ExecFile,
}

impl TtyExec {
    /// Waits for the process to end; its exit code (128 + signal when killed).
    pub async fn wait(pid: i32) -> i32 {
        super::container::wait_for_exit(pid).await
    }
}

/// Starts `args` in the container with a terminal (runc's console socket).
pub async fn spawn_tty(runc: &Runc, id: &str, bundle: &Path, args: &[String]) -> Result<TtyExec> {
    spawn_tty_sized(runc, id, bundle, args, None).await
}

/// [`spawn_tty`] with the terminal's initial size (columns, rows), so the process never
/// sees a 0x0 terminal.
pub async fn spawn_tty_sized(
    runc: &Runc,
    id: &str,
    bundle: &Path,
    args: &[String],
    size: Option<(u16, u16)>,
) -> Result<TtyExec> {
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json"))
            .context("reading the container's config.json")?,
    )
    .context("parsing the container's config.json")?;
    let mut process = config["process"].clone();
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(true);
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
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let file = bundle.join(format!("exec-{tag}.json"));
    std::fs::write(&file, serde_json::to_vec(&process)?)
        .context("writing the exec process file")?;
    let pid_file = bundle.join(format!("exec-{tag}.pid"));
    let guard = ExecFile(vec![file.clone(), pid_file.clone()]);
    let console = super::console::ConsoleSocket::new()?;
    let sock = console.path().to_path_buf();
    let master = tokio::spawn(console.receive());
    // runc only hands a terminal over when it detaches.
    let out = Command::new(&runc.binary)
        .arg("--root")
        .arg(&runc.root)
        .arg("exec")
        .arg("--detach")
        .arg("--tty")
        .arg("--console-socket")
        .arg(&sock)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--process")
        .arg(&file)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .context("running runc exec")?;
    if !out.status.success() {
        master.abort();
        anyhow::bail!("runc exec: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let master = tokio::time::timeout(std::time::Duration::from_secs(10), master)
        .await
        .context("runc exec did not hand over a terminal")?
        .context("receiving the terminal")??;
    let pid = std::fs::read_to_string(&pid_file)
        .context("reading runc's pid file")?
        .trim()
        .parse()
        .context("parsing runc's pid file")?;
    Ok(TtyExec {
        pid,
        master,
        file: guard,
    })
}
