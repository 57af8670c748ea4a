//! Pod network namespaces: named ones (see `skiff_netns`), made off the async runtime.

use std::path::PathBuf;

use anyhow::{Context, Result};

pub use skiff_netns::{list, path, NETNS_DIR};

/// Creates the named netns (loopback up) unless it exists; returns its path.
pub async fn create(name: &str) -> Result<PathBuf> {
    let p = path(name);
    if p.exists() {
        return Ok(p);
    }
    let owned = name.to_string();
    tokio::task::spawn_blocking(move || skiff_netns::create(&owned))
        .await
        .context("the namespace task")?
}

/// Deletes the named netns (no error if it is gone). Lazily: a process still inside
/// keeps the namespace, not its name.
pub async fn delete(name: &str) -> Result<()> {
    skiff_netns::delete(name)
}
