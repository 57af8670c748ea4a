//! Cluster-wide defaults. They follow kubeadm's, as `PRODUCT.md` fixes them.

use std::net::Ipv4Addr;

/// Kubernetes version skiff reports at `/version`; kubectl picks its client by this minor.
pub const KUBERNETES_VERSION: &str = "v1.33.0";
/// Major part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MAJOR: &str = "1";
/// Minor part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MINOR: &str = "33";

/// Pod network of the whole cluster; each node gets a `/24` of it as `spec.podCIDR`.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Prefix length of each node's pod CIDR.
pub const NODE_CIDR_MASK: u8 = 24;
/// Range that cluster IPs are allocated from.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// Cluster IP of the `default/kubernetes` Service (first address of [`SERVICE_CIDR`]).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Cluster IP of `kube-system/kube-dns` (tenth address of [`SERVICE_CIDR`]).
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Cluster DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// First port of the NodePort range.
pub const NODE_PORT_MIN: u16 = 30000;
/// Last port of the NodePort range (inclusive).
pub const NODE_PORT_MAX: u16 = 32767;
/// Last port of the static band (KEP-3668): dynamic allocation prefers ports above it.
pub const NODE_PORT_STATIC_BAND_MAX: u16 = 30085;

/// Port the API server listens on.
pub const API_SERVER_PORT: u16 = 6443;
/// Port the agent's kubelet endpoint listens on.
pub const KUBELET_PORT: u16 = 10250;
/// How often the agent samples its pods' and node's CPU and memory; a CPU rate is the
/// usage over this window, which `metrics.k8s.io` reports as `window` (cAdvisor's
/// housekeeping interval, as metrics-server's `--metric-resolution` was the window).
pub const METRICS_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Port of the proxy's metrics endpoint.
pub const PROXY_METRICS_PORT: u16 = 10249;

/// Seconds a node may be silent before the node lifecycle controller marks it unknown.
pub const NODE_MONITOR_GRACE_SECONDS: u64 = 40;
/// Seconds between the agent's Lease renewals.
pub const NODE_LEASE_RENEW_SECONDS: u64 = 10;
/// Default `tolerationSeconds` for the not-ready and unreachable taints.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The User-Agent a component sends, in client-go's shape (`kubelet/v1.33.0 (linux/amd64)
/// ...`): the API server names a write's field manager after its first part, so skiff's
/// components own their fields as `kubelet`, `kube-controller-manager`... as in Kubernetes.
pub fn user_agent(component: &str) -> String {
    format!(
        "{component}/{KUBERNETES_VERSION} (linux/amd64) skiff/{}",
        env!("CARGO_PKG_VERSION")
    )
}
