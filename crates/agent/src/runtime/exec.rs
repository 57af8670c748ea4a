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
    let guard = ExecFile(file.clone());
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

/// The process file of an exec; removed when dropped.
#[derive(Debug)]
pub struct ExecFile(std::path::PathBuf);

impl Drop for ExecFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
