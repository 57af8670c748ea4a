//! What pods leave on the node, removed: a finished pod's network ([`release_network`]),
//! a pod's sandbox once its worker is done ([`cleanup_dir`]: containers, mounts, CNI
//! attachment, netns, cgroups, files), and at
//! the agent's start whatever no pod owns any more ([`clean_orphans`]: pod directories,
//! cgroups and network namespaces of earlier runs).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Kubelet;
use crate::containers::{container, netns};

/// What the worker saves in the pod directory, so a restarted agent (or the orphan
/// cleanup) knows the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    /// Pod UID.
    pub uid: String,
    /// Namespace/name, for logs.
    pub pod: String,
    /// netns name (None for host network).
    pub netns: Option<String>,
    /// Pod IP.
    pub ip: Option<Ipv4Addr>,
}

impl SandboxState {
    /// The state saved in a pod directory, if any.
    pub fn read(dir: &Path) -> Option<SandboxState> {
        std::fs::read(dir.join(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// The file in the pod directory that holds the [`SandboxState`].
pub const FILE: &str = "sandbox.json";

/// Removes a pod's sandbox: containers, mounts, CNI attachment, netns, cgroups, files.
pub async fn cleanup_dir(k: &Kubelet, dir: &Path, uid: &str) {
    let sandbox = SandboxState::read(dir);
    if let Ok(rd) = std::fs::read_dir(dir.join("containers")) {
        for e in rd.flatten() {
            let bundle = e.path();
            if let Ok(b) = std::fs::read(bundle.join("state.json")) {
                if let Ok(s) = serde_json::from_slice::<container::SavedState>(&b) {
                    let _ = k.runtime.delete(s.runtime, &s.id).await;
                }
            }
            if let Err(e) = container::unmount_rootfs(&bundle) {
                tracing::warn!(error = %format!("{e:#}"), "unmounting a container rootfs");
            }
        }
    }
    release_network(k, sandbox.as_ref(), uid).await;
    remove_cgroups(&k.cfg.node_name, uid);
    // The pod's tmpfs volumes go with it (a claim's data is not under the pod dir).
    super::volumes::unmount_all(dir);
    // Never follow into something still mounted.
    let still_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                l.split(' ')
                    .nth(4)
                    .is_some_and(|p| p.starts_with(&*dir.to_string_lossy()))
            })
        })
        .unwrap_or(true);
    if !still_mounted {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Gives a pod's network back: the CNI attachment (DEL returns its address to the pool,
/// removes its host ports) and its network namespace. Done at removal, and as soon as a
/// pod has finished for good, as kubelet stops a terminal pod's sandbox: a finished Job
/// pod keeps its logs, status and volumes until it is deleted, not an address of the
/// node's range. Idempotent.
pub async fn release_network(k: &Kubelet, sandbox: Option<&SandboxState>, uid: &str) {
    let netns_name = sandbox
        .and_then(|s| s.netns.clone())
        .unwrap_or_else(|| k.netns_name(uid));
    let path = netns::path(&netns_name);
    let cni = k.cni.borrow().clone();
    if let Some(cni) = cni {
        if cni.cached_ids().contains(&uid.to_string()) {
            if let Err(e) = cni.del(uid, &path).await {
                tracing::warn!(error = %e, "CNI DEL");
            }
        }
    }
    if let Err(e) = netns::delete(&netns_name).await {
        tracing::warn!(error = %format!("{e:#}"), "deleting the pod netns");
    }
}

fn remove_cgroups(node: &str, uid: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for sub in rd.flatten() {
        let base = sub
            .path()
            .join("skiff")
            .join(node)
            .join(format!("pod{uid}"));
        if let Ok(children) = std::fs::read_dir(&base) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
}

/// At start: removes pods in the data dir that the API no longer has, and pod netns
/// of ours that belong to no pod.
pub async fn clean_orphans(k: &Arc<Kubelet>, keep: &HashSet<String>) {
    let pods_dir = k.cfg.data_dir.join("pods");
    let mut known_netns = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(&pods_dir) {
        for e in rd.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&uid)
                || k.pods
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&uid)
            {
                known_netns.insert(k.netns_name(&uid));
                continue;
            }
            tracing::info!(uid = %uid, "removing an orphaned pod");
            cleanup_dir(k, &e.path(), &uid).await;
        }
    }
    // Pod cgroups of earlier runs (an agent killed with its pods running). rmdir only
    // removes empty cgroups, so a live container's never goes.
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for sub in rd.flatten() {
            let node_dir = sub.path().join("skiff").join(&k.cfg.node_name);
            for pod in std::fs::read_dir(&node_dir).into_iter().flatten().flatten() {
                let name = pod.file_name().to_string_lossy().into_owned();
                let Some(uid) = name.strip_prefix("pod") else {
                    continue;
                };
                let live = keep.contains(uid)
                    || k.pods
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(uid);
                if !live {
                    remove_cgroups(&k.cfg.node_name, uid);
                }
            }
        }
    }
    if k.cfg.netns_prefix.is_empty() {
        return;
    }
    for name in netns::list(&k.cfg.netns_prefix) {
        let owned = k
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .any(|u| k.netns_name(u) == name);
        if !owned && !known_netns.contains(&name) {
            let _ = netns::delete(&name).await;
        }
    }
}
