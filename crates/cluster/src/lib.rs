//! Local clusters: `skiff up`, `skiff down`, `skiff node exec`.
//!
//! A local cluster is a set of network namespaces on one machine: one for the cluster's
//! private LAN (a bridge) and one per node, each with a veth leg on that bridge and its own
//! address. `skiff server` and one `skiff agent` per node run detached, each inside its
//! node's namespace. The host gets a loopback listener (the API server's
//! `127.0.0.1:<port>`, and the `--port` forwarders') and, unless `--isolated`, a link
//! into the LAN with its gateway address, `net.ipv4.ip_forward` and NAT/forward rules in
//! chains or a table of the cluster's own (`hostnet`); `down` removes exactly that.
//!
//! Architecture invariant: this crate knows nothing of the API server's internals. It
//! reads the files the server documents (`token`, `pki/ca.crt`), asks the binary for the
//! admin kubeconfig through [`Hooks`], and otherwise talks to the cluster through the API.

pub mod files;
pub mod hostnet;
pub mod kubeconfig;
pub mod layout;
pub mod list;
pub mod netns;
pub mod process;
pub mod progress;
pub mod selfcheck;
pub mod up;

pub use hostnet::Firewall;
pub use layout::{ClusterState, HostLink, NodeState, ProcessState};
pub use up::{
    client_from_yaml, down, node_exec, up, AdminKubeconfigFn, CleanupNodeFn, Hooks, UpOptions,
};

/// Where local clusters keep their state, one sub-directory per cluster.
pub const CLUSTERS_DIR: &str = "/var/lib/skiff/clusters";
