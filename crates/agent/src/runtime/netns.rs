//! Named network namespaces under `/var/run/netns`, as `ip netns add` makes them (so
//! `ip netns exec` and `skiff down` see them), made in process: a short-lived thread
//! unshares its network namespace, brings its loopback up and bind-mounts the namespace
//! on its name. A process per pod (`ip`) cost more than the rest of the sandbox.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Directory of named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Path of a named netns.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Makes `/var/run/netns` a shared mount once per process (concurrent first calls would
/// stack bind mounts).
fn prepare_dir() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| share_dir().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Makes `/var/run/netns` a shared mount (binding it on itself first if it is not a
/// mount point), as iproute2 does, so namespaces mounted later show in every mount
/// namespace.
fn share_dir() -> Result<()> {
    std::fs::create_dir_all(NETNS_DIR).with_context(|| format!("creating {NETNS_DIR}"))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {NETNS_DIR} on itself"))?;
            shared().with_context(|| format!("making {NETNS_DIR} a shared mount"))
        }
        Err(e) => Err(e).with_context(|| format!("making {NETNS_DIR} a shared mount")),
    }
}

/// On a thread of its own (it ends in the new namespace): unshare, loopback up, bind
/// mount on `target`.
fn make(target: &Path) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("unsharing the network namespace")?;
            loopback_up()?;
            mount(
                Some("/proc/thread-self/ns/net"),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting the namespace on {}", target.display()))
        })
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))?
    })
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting a netlink runtime")?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        let conn = tokio::spawn(conn);
        let lo = handle
            .link()
            .get()
            .match_name("lo".to_string())
            .execute()
            .try_next()
            .await
            .context("finding lo")?
            .ok_or_else(|| anyhow!("no lo"))?;
        handle
            .link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(lo.header.index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .context("setting lo up")?;
        conn.abort();
        Ok(())
    })
}

/// Creates the named netns (loopback up) unless it exists; returns its path.
pub async fn create(name: &str) -> Result<PathBuf> {
    let p = path(name);
    if p.exists() {
        return Ok(p);
    }
    let target = p.clone();
    let owned = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        prepare_dir()?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        if let Err(e) = make(&target) {
            let _ = std::fs::remove_file(&target);
            return Err(e.context(format!("creating network namespace {owned}")));
        }
        Ok(())
    })
    .await
    .context("the namespace task")??;
    Ok(p)
}

/// Deletes the named netns (no error if it is gone). Lazily: a process still inside
/// keeps the namespace, not its name.
pub async fn delete(name: &str) -> Result<()> {
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", p.display())),
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
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
