//! The shape of a local cluster: names, addresses and directories, and its state file.
//!
//! Everything here is pure so that `up` and `down` agree on names without talking to each
//! other: `down` recomputes what `up` made from the cluster name alone, which is what lets
//! it clean up after a crash that left no state file.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Name of the control-plane node.
pub const CONTROL_PLANE_NODE: &str = "k8s-m";

/// The LAN of a cluster whose state file names none (made before LANs were chosen), and
/// the first one [`choose_lan`] tries: Docker's first user network.
pub fn default_lan() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(172, 18, 0, 0), 24).expect("a valid prefix")
}

/// The LANs [`choose_lan`] tries, in order: as Docker's default address pools,
/// 172.18.0.0/16 upward to 172.31.0.0/16, then 192.168.0.0/16, in /24 steps (a cluster
/// needs no more than 200 nodes).
pub fn candidate_lans() -> impl Iterator<Item = Ipv4Net> {
    let private_172 = (18u8..=31).flat_map(|b| (0u8..=255).map(move |c| [172, b, c]));
    let private_192 = (0u8..=255).map(|c| [192, 168, c]);
    private_172
        .chain(private_192)
        .map(|[a, b, c]| Ipv4Net::new(Ipv4Addr::new(a, b, c, 0), 24).expect("a valid prefix"))
}

/// Whether two networks share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first candidate LAN that overlaps none of `taken` (the host's routes and addresses,
/// other clusters' LANs).
pub fn choose_lan(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    candidate_lans().find(|lan| !taken.iter().any(|t| overlaps(*lan, *t)))
}

/// How many nodes fit on `lan`: every address but the network, the broadcast, the
/// gateway (`.1`) and the LAN namespace's own ([`bridge_ip`]).
pub fn lan_capacity(lan: Ipv4Net) -> usize {
    (1usize << (32 - u32::from(lan.prefix_len()))).saturating_sub(4)
}

/// Checks a `--subnet` for a cluster of `nodes` nodes.
pub fn check_lan(lan: Ipv4Net, nodes: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        lan.network() == lan.addr(),
        "--subnet {lan}: not a network address (did you mean {}?)",
        lan.trunc()
    );
    anyhow::ensure!(
        lan_capacity(lan) >= nodes,
        "--subnet {lan} is too small for {nodes} node(s) (it holds {})",
        lan_capacity(lan)
    );
    Ok(())
}

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

/// LAN address of the node at `index` (0 = control plane): `.2` onwards (`.1` is the
/// gateway).
pub fn node_ip(lan: Ipv4Net, index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(lan.network()) + 2 + index as u32)
}

/// The LAN's gateway, the nodes' default route: the host's end of its link to the LAN (as
/// Docker's bridge gateway), or, for an `--isolated` cluster, the bridge, where traffic
/// goes no further.
pub fn lan_gateway(lan: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(lan.network()) + 1)
}

/// The LAN namespace's own address on its bridge when the host holds the gateway (the
/// last address before the broadcast): the API balancer and the port forwarders there
/// reach the nodes from it.
pub fn bridge_ip(lan: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(lan.broadcast()) - 1)
}

/// Name of the host's end of the link to the cluster's LAN: `skf` and a hash of the
/// cluster name (interface names hold 15 bytes, cluster names up to 20).
pub fn host_link(cluster: &str) -> String {
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = cluster.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("skf{hash:08x}")
}

/// Whether `link` is named as [`host_link`] names a cluster's link.
pub fn is_host_link(link: &str) -> bool {
    link.len() == 11 && link.starts_with("skf") && link[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The iptables chain (table `nat`) that masquerades the cluster's traffic leaving the
/// host, jumped to from `POSTROUTING` (at most 28 bytes: names hold 20).
pub fn nat_chain(cluster: &str) -> String {
    format!("SKF-NAT-{cluster}")
}

/// The iptables chain (table `filter`) that accepts the cluster's forwarded traffic,
/// jumped to from `FORWARD`.
pub fn forward_chain(cluster: &str) -> String {
    format!("SKF-FWD-{cluster}")
}

/// The nft table (family `ip`) that holds the same rules on a host without `iptables`.
pub fn nft_table(cluster: &str) -> String {
    format!("skiff-{cluster}")
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
    /// The cluster's LAN.
    #[serde(default = "default_lan")]
    pub lan: Ipv4Net,
    /// What `up` added to the host to link it to the LAN (none: `--isolated`, or a
    /// cluster made before host links).
    #[serde(default)]
    pub host: Option<HostLink>,
    /// With several servers: the etcd members, the other servers and the host's API
    /// balancer, in the order they start (empty for a one-server cluster).
    #[serde(default)]
    pub extra: Vec<ProcessState>,
}

/// What `up` added to the host for a cluster, so that `down` removes exactly that. Every
/// name in it is also derived from the cluster's name ([`host_link`], [`nat_chain`]...),
/// so `down` finds it even without this record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostLink {
    /// The host's end of the veth into the LAN bridge (holding the LAN's gateway address,
    /// and with it the route to the LAN).
    pub link: String,
    /// Which firewall holds the NAT and forward rules: `iptables` or `nftables`.
    pub firewall: String,
}

/// A process of a local cluster other than the first server and the agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessState {
    /// What it is: `etcd`, `server`, `lb` or `port` (a `--port` forwarder).
    pub role: String,
    /// The node it runs on (`lan` for `lb` and `port`).
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
        let lan = default_lan();
        assert_eq!(node_ip(lan, 0), Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(node_ip(lan, 2), Ipv4Addr::new(172, 18, 0, 4));
        assert_eq!(lan_gateway(lan), Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(bridge_ip(lan), Ipv4Addr::new(172, 18, 0, 254));
        let other: Ipv4Net = "10.1.2.0/23".parse().unwrap();
        assert_eq!(node_ip(other, 300), Ipv4Addr::new(10, 1, 3, 46));
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
    fn lans_avoid_what_is_taken_as_docker_picks_its_networks() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(choose_lan(&[]), Some(net("172.18.0.0/24")));
        // The host's own LAN and another cluster's.
        assert_eq!(
            choose_lan(&[net("192.0.2.0/24"), net("172.18.0.0/24")]),
            Some(net("172.18.1.0/24"))
        );
        // A Docker network holding all of 172.18.0.0/16; a host route to a single address.
        assert_eq!(
            choose_lan(&[net("172.18.0.0/16"), net("172.19.0.7/32")]),
            Some(net("172.19.1.0/24"))
        );
        // A route covering a whole range skips it.
        assert_eq!(
            choose_lan(&[net("172.16.0.0/12")]),
            Some(net("192.168.0.0/24"))
        );
        assert_eq!(choose_lan(&[net("128.0.0.0/1")]), None);
        assert!(overlaps(net("10.0.0.0/8"), net("10.1.0.0/16")));
        assert!(!overlaps(net("10.0.0.0/16"), net("10.1.0.0/16")));
    }

    #[test]
    fn subnets_are_checked() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(check_lan(net("10.9.0.0/24"), 200).is_ok());
        assert!(check_lan(net("10.9.0.0/29"), 4).is_ok());
        assert!(check_lan(net("10.9.0.0/29"), 5).is_err());
        let err = check_lan(net("10.9.0.5/24"), 1).unwrap_err().to_string();
        assert!(err.contains("did you mean 10.9.0.0/24"), "{err}");
    }

    #[test]
    fn host_names_fit_their_limits() {
        let longest = "a".repeat(20);
        assert!(host_link(&longest).len() <= 15);
        assert_ne!(host_link("a"), host_link("b"));
        assert_eq!(host_link("a"), host_link("a"));
        assert!(is_host_link(&host_link(&longest)));
        assert!(!is_host_link("skfnothex123") && !is_host_link("eth0"));
        assert!(nat_chain(&longest).len() <= 28);
        assert!(forward_chain(&longest).len() <= 28);
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
