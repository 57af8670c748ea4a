//! `skiff ls` (`skiff get clusters`): every local cluster on this machine and its state,
//! as `kind get clusters` and `k3d cluster list` show theirs, read from the clusters'
//! directories and `/proc` alone (no API call: a stopped cluster must list too).

use std::path::Path;

use crate::layout::ClusterState;
use crate::{netns, process};

/// What is known of one local cluster.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Cluster name.
    pub name: String,
    /// Its state file, if it could be read.
    pub state: Option<ClusterState>,
    /// `running` (every process alive), `stopped` (none alive: `skiff up` starts it
    /// again) or `broken` (some alive, or its namespaces or state are gone: `skiff down`
    /// removes it).
    pub status: &'static str,
}

/// Every cluster under [`crate::CLUSTERS_DIR`], sorted by name.
pub fn clusters() -> Vec<Summary> {
    let mut out: Vec<Summary> = std::fs::read_dir(crate::CLUSTERS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|name| {
            let state = ClusterState::load(&name).ok();
            let status = state.as_ref().map_or("broken", status);
            Summary {
                name,
                state,
                status,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `running`, `stopped` or `broken` (see [`Summary::status`]).
fn status(state: &ClusterState) -> &'static str {
    let pids: Vec<u32> = std::iter::once(state.server_pid)
        .chain(state.nodes.iter().map(|n| n.agent_pid))
        .chain(state.extra.iter().map(|p| p.pid))
        .collect();
    let alive = pids.iter().filter(|p| process::alive(**p)).count();
    let intact = state.nodes.iter().all(|n| netns::path(&n.netns).exists())
        && state
            .host
            .as_ref()
            .is_none_or(|h| Path::new("/sys/class/net").join(&h.link).exists());
    match (alive, intact) {
        (n, true) if n == pids.len() => "running",
        (0, true) => "stopped",
        _ => "broken",
    }
}

/// The table `skiff ls` prints: one line per cluster.
pub fn table(clusters: &[Summary]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATUS".into(),
        "NODES".into(),
        "LAN".into(),
        "NODE IPS".into(),
        "API".into(),
        "HOST LINK".into(),
    ]];
    for c in clusters {
        let none = || "<none>".to_string();
        let s = c.state.as_ref();
        rows.push([
            c.name.clone(),
            c.status.to_string(),
            s.map_or_else(none, |s| s.nodes.len().to_string()),
            s.map_or_else(none, |s| s.lan.to_string()),
            s.map_or_else(none, |s| {
                let ips: Vec<String> = s.nodes.iter().map(|n| n.ip.to_string()).collect();
                ips.join(",")
            }),
            s.map_or_else(none, |s| s.host_url()),
            s.map_or_else(none, |s| {
                s.host
                    .as_ref()
                    .map_or_else(|| "<isolated>".to_string(), |h| h.link.clone())
            }),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{HostLink, NodeState};

    #[test]
    fn the_table_shows_each_cluster_on_a_line() {
        let state = ClusterState {
            name: "demo".into(),
            api_port: 40123,
            server_pid: 1,
            server_args: vec![],
            nodes: vec![NodeState {
                name: "k8s-m".into(),
                ip: "172.18.1.2".parse().unwrap(),
                netns: "demo-k8s-m".into(),
                agent_pid: 1,
                agent_args: vec![],
            }],
            lan: "172.18.1.0/24".parse().unwrap(),
            host: Some(HostLink {
                link: "skf0011aabb".into(),
                firewall: "iptables".into(),
            }),
            extra: vec![],
        };
        let table = table(&[
            Summary {
                name: "demo".into(),
                state: Some(state),
                status: "running",
            },
            Summary {
                name: "gone".into(),
                state: None,
                status: "broken",
            },
        ]);
        assert_eq!(
            table,
            "NAME   STATUS    NODES    LAN             NODE IPS     API                       HOST LINK\n\
             demo   running   1        172.18.1.0/24   172.18.1.2   https://127.0.0.1:40123   skf0011aabb\n\
             gone   broken    <none>   <none>          <none>       <none>                    <none>\n"
        );
    }
}
