//! Named network namespaces under `/var/run/netns`, as `ip netns` makes them (so `ip
//! netns exec` and `skiff down` see them).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// Directory of named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Path of a named netns.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Creates the named netns unless it exists; returns its path.
pub async fn create(name: &str) -> Result<PathBuf> {
    let p = path(name);
    if p.exists() {
        return Ok(p);
    }
    let out = Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .await
        .context("running ip netns add")?;
    if !out.status.success() && !p.exists() {
        bail!(
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(p)
}

/// Deletes the named netns (no error if it is gone).
pub async fn delete(name: &str) -> Result<()> {
    if !path(name).exists() {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["netns", "del", name])
        .output()
        .await
        .context("running ip netns del")?;
    if !out.status.success() && path(name).exists() {
        bail!(
            "ip netns del {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Names of existing netns starting with a prefix.
pub fn list(prefix: &str) -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
