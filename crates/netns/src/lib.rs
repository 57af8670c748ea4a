//! Named network namespaces under `/var/run/netns`, made as `ip netns add` makes them
//! (so `ip netns exec`, `skiff down` and every other tool see them), in process: a
//! short-lived thread unshares its network namespace, brings its loopback up over
//! rtnetlink and bind-mounts the namespace on its name. The agent makes one per pod
//! (a process per pod cost more than the rest of the sandbox); the local cluster makes
//! one per node and one for its LAN.
//!
//! Every call here is blocking; async callers wrap creation in `spawn_blocking`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Directory where named network namespaces are bind-mounted (iproute2's convention).
pub const NETNS_DIR: &str = "/var/run/netns";

/// Path of a named network namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Moves the calling thread into the network namespace at `path`.
///
/// Call it before starting any other thread (before an async runtime) for the whole
/// process to live in that namespace.
pub fn enter(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening network namespace {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {}", path.display()))
}

/// Creates a named namespace with its loopback up and returns its path. An existing
/// one is an error, as with `ip netns add`.
pub fn create(name: &str) -> Result<PathBuf> {
    prepare_dir()?;
    let target = path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    if let Err(e) = make(&target) {
        let _ = std::fs::remove_file(&target);
        return Err(e.context(format!("creating network namespace {name}")));
    }
    Ok(target)
}

/// Deletes a named namespace; a missing one is not an error. Lazily: a process still
/// inside keeps the namespace alive, not its name.
pub fn delete(name: &str) -> Result<()> {
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

/// Names of the named namespaces that start with `prefix` (all of them for `""`).
pub fn list(prefix: &str) -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `/var/run/netns` a shared mount once per process (concurrent first calls
/// would stack bind mounts).
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
        let up = handle
            .link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(lo.header.index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .context("setting lo up");
        conn.abort();
        up
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root"]
    fn create_list_delete() {
        let name = format!("skn-{}", std::process::id());
        let p = create(&name).expect("create");
        assert_eq!(p, path(&name));
        assert!(create(&name).is_err(), "an existing namespace is an error");
        assert_eq!(list(&name), vec![name.clone()]);
        // Loopback is up inside.
        let flags = std::thread::scope(|s| {
            s.spawn(|| {
                enter(&p).expect("enter");
                nix::ifaddrs::getifaddrs()
                    .expect("getifaddrs")
                    .find(|i| i.interface_name == "lo")
                    .map(|i| i.flags)
            })
            .join()
            .expect("thread")
        });
        assert!(
            flags.is_some_and(|f| f.contains(nix::net::if_::InterfaceFlags::IFF_UP)),
            "{flags:?}"
        );
        delete(&name).expect("delete");
        assert!(!path(&name).exists());
        delete(&name).expect("deleting a missing namespace is fine");
    }
}
