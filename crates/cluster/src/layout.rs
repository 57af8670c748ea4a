//! The shape of a local cluster: names, addresses and directories, and its state file.
//!
//! Everything here is pure so that `up` and `down` agree on names without talking to each
//! other: `down` recomputes what `up` made from the cluster name alone, which is what lets
//! it clean up after a crash that left no state file.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Name of the control-plane node.
pub const CONTROL_PLANE_NODE: &str = "k8s-m";
/// The LAN every node of a cluster sits on (inside the cluster's own namespaces).
pub const LAN_PREFIX: [u8; 3] = [172, 18, 0];
/// Prefix length of the LAN.
pub const LAN_PREFIX_LEN: u8 = 24;

/// Node names of an `n`-node cluster: `k8s-m`, then `k8s-n1`..`k8s-n{n-1}`.
pub fn node_names(n: usize) -> Vec<String> {
    node_names_with_servers(n, 1)
}

/// Node names of an `n`-node cluster whose first `servers` nodes run a server: `k8s-m`,
/// `k8s-m2`.. `k8s-m{servers}` (as kind numbers its control-plane nodes), then the
/// workers `k8s-n1`...
pub fn node_names_with_servers(n: usize, servers: usize) -> Vec<String> {
    let servers = servers.clamp(1, n.max(1));
    (0..n)
        .map(|i| match i {
            0 => CONTROL_PLANE_NODE.to_string(),
            i if i < servers => format!("{CONTROL_PLANE_NODE}{}", i + 1),
            i => format!("k8s-n{}", i + 1 - servers),
        })
        .collect()
}

/// LAN address of the node at `index` (0 = control plane); `.1` is the bridge.
pub fn node_ip(index: usize) -> Ipv4Addr {
    let [a, b, c] = LAN_PREFIX;
    Ipv4Addr::new(a, b, c, (index + 2) as u8)
}

/// Address of the LAN bridge, which nodes use as their default gateway. Traffic sent to it
/// goes nowhere: the LAN namespace has no uplink.
pub fn lan_gateway() -> Ipv4Addr {
    let [a, b, c] = LAN_PREFIX;
    Ipv4Addr::new(a, b, c, 1)
}

/// Every namespace of a cluster starts with this, so `down` finds them all (pods' too).
pub fn netns_prefix(cluster: &str) -> String {
    format!("{cluster}-")
}

/// Network namespace of the cluster's LAN bridge.
pub fn lan_netns(cluster: &str) -> String {
    format!("{cluster}-lan")
}

/// Network namespace of a node.
pub fn node_netns(cluster: &str, node: &str) -> String {
    format!("{cluster}-{node}")
}

/// Prefix for the network namespaces of the pods on a node.
pub fn pod_netns_prefix(cluster: &str, node: &str) -> String {
    format!("{cluster}-{node}-pod-")
}

/// Checks a cluster name: it becomes part of namespace and interface names.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    anyhow::ensure!(
        ok,
        "invalid cluster name {name:?}: use at most 20 lower-case letters, digits and '-'"
    );
    Ok(())
}

/// What `up` records about a running cluster, in `<cluster dir>/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Cluster name.
    pub name: String,
    /// Loopback port on the host that reaches the API server.
    pub api_port: u16,
    /// Pid of `skiff server`.
    pub server_pid: u32,
    /// Arguments `skiff server` was started with (to start it again).
    #[serde(default)]
    pub server_args: Vec<String>,
    /// The nodes, control plane first.
    pub nodes: Vec<NodeState>,
    /// With several servers: the etcd members, the other servers and the host's API
    /// balancer, in the order they start (empty for a one-server cluster).
    #[serde(default)]
    pub extra: Vec<ProcessState>,
}

/// A process of a local cluster other than the first server and the agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessState {
    /// What it is: `etcd`, `server` or `lb`.
    pub role: String,
    /// The node it runs on (the LAN for `lb`).
    pub node: String,
    /// Its pid.
    pub pid: u32,
    /// Arguments of the skiff binary that start it again.
    pub args: Vec<String>,
    /// Its log file.
    pub log: PathBuf,
}

/// One node of a local cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// Node name (`k8s-m`, `k8s-n1`...).
    pub name: String,
    /// LAN address (the node's InternalIP).
    pub ip: Ipv4Addr,
    /// Network namespace name.
    pub netns: String,
    /// Pid of the node's `skiff agent`.
    pub agent_pid: u32,
    /// Arguments the agent was started with (to start it again).
    #[serde(default)]
    pub agent_args: Vec<String>,
}

impl ClusterState {
    /// Directory of a cluster's state, logs and data.
    pub fn dir(name: &str) -> PathBuf {
        Path::new(crate::CLUSTERS_DIR).join(name)
    }

    /// Path of the state file.
    pub fn file(name: &str) -> PathBuf {
        Self::dir(name).join("cluster.json")
    }

    /// Reads a cluster's state file.
    pub fn load(name: &str) -> anyhow::Result<Self> {
        let path = Self::file(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no cluster {name:?} (reading {}): is it up?",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the state file (0600, as everything in the cluster's directory).
    pub fn save(&self) -> anyhow::Result<()> {
        let path = Self::file(&self.name);
        crate::files::write_private(&path, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("saving the state of cluster {:?}", self.name))
    }

    /// The server's data directory.
    pub fn server_dir(name: &str) -> PathBuf {
        Self::dir(name).join(CONTROL_PLANE_NODE).join("server")
    }

    /// The data directory of the server on `node`.
    pub fn server_dir_on(name: &str, node: &str) -> PathBuf {
        Self::dir(name).join(node).join("server")
    }

    /// A node agent's data directory.
    pub fn agent_dir(name: &str, node: &str) -> PathBuf {
        Self::dir(name).join(node).join("agent")
    }

    /// The API server URL as seen from the host.
    pub fn host_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_node_names_and_addresses() {
        assert_eq!(node_names(3), ["k8s-m", "k8s-n1", "k8s-n2"]);
        assert_eq!(node_ip(0), Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(node_ip(2), Ipv4Addr::new(172, 18, 0, 4));
        assert_eq!(node_netns("seedwalk", "k8s-n1"), "seedwalk-k8s-n1");
        assert!(pod_netns_prefix("a", "k8s-m").starts_with(&netns_prefix("a")));
        assert!(lan_netns("a").starts_with(&netns_prefix("a")));
    }

    #[test]
    fn servers_come_first_and_are_numbered_as_kind_does() {
        assert_eq!(
            node_names_with_servers(5, 3),
            ["k8s-m", "k8s-m2", "k8s-m3", "k8s-n1", "k8s-n2"]
        );
        assert_eq!(node_names_with_servers(2, 5), ["k8s-m", "k8s-m2"]);
        assert_eq!(node_names_with_servers(3, 1), node_names(3));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("seedwalk").is_ok());
        assert!(validate_name("Bad").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("way-too-long-a-name-for-this").is_err());
    }
}
