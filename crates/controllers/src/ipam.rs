//! Node IPAM (kube-controller-manager's range allocator): each Node without
//! `spec.podCIDR` gets the next free `/node_cidr_mask` block of the cluster CIDR. The
//! first block is kept for control-plane nodes so that, as on a kubeadm cluster, the
//! control-plane node has `10.244.0.0/24` and the workers `10.244.1.0/24`, `.2.0/24`...

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::events::{Recorder, WARNING};
use crate::informer::{on_change, Change, Informer};
use crate::queue::{run_workers, WorkQueue};

/// Allocates blocks of a cluster CIDR.
#[derive(Debug, Clone)]
pub struct RangeAllocator {
    cluster: Ipv4Net,
    mask: u8,
}

impl RangeAllocator {
    /// An allocator of `/mask` blocks out of `cluster_cidr`.
    pub fn new(cluster_cidr: &str, mask: u8) -> anyhow::Result<Self> {
        let cluster: Ipv4Net = cluster_cidr
            .parse()
            .with_context(|| format!("parsing cluster CIDR {cluster_cidr}"))?;
        anyhow::ensure!(
            mask >= cluster.prefix_len() && mask <= 32,
            "node CIDR mask /{mask} does not fit in {cluster_cidr}"
        );
        Ok(RangeAllocator { cluster, mask })
    }

    /// Number of blocks.
    pub fn size(&self) -> u64 {
        1u64 << (self.mask - self.cluster.prefix_len())
    }

    /// The block with index `i`.
    pub fn block(&self, i: u64) -> Option<Ipv4Net> {
        if i >= self.size() {
            return None;
        }
        let base = u32::from(self.cluster.network()) as u64;
        let addr = base + (i << (32 - self.mask));
        Ipv4Net::new(Ipv4Addr::from(addr as u32), self.mask).ok()
    }

    /// The index of `cidr` if it is one of the blocks.
    pub fn index_of(&self, cidr: &str) -> Option<u64> {
        let net: Ipv4Net = cidr.parse().ok()?;
        if net.prefix_len() != self.mask || !self.cluster.contains(&net) {
            return None;
        }
        let off = u32::from(net.network()) as u64 - u32::from(self.cluster.network()) as u64;
        Some(off >> (32 - self.mask))
    }

    /// The next free block for a node: the lowest free index, but workers skip index 0
    /// while another block is free (it is the control plane's).
    pub fn next_free(&self, used: &BTreeSet<u64>, control_plane: bool) -> Option<Ipv4Net> {
        let start = if control_plane { 0 } else { 1 };
        (start..self.size())
            .chain(0..start)
            .find(|i| !used.contains(i))
            .and_then(|i| self.block(i))
    }
}

/// The order nodes are given blocks in: control-plane nodes first, then by creation
/// time, then by name.
pub fn allocation_order(nodes: &mut [Arc<Node>]) {
    nodes.sort_by_key(|n| {
        (
            !is_control_plane(n),
            n.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            n.name_any(),
        )
    });
}

/// Whether the node is a control-plane node: it carries the role label, or (before the
/// installer labels it: kubelets may not set `node-role` labels) registered with the
/// control-plane taint.
pub fn is_control_plane(node: &Node) -> bool {
    node.labels()
        .contains_key(skiff_api::names::CONTROL_PLANE_LABEL)
        || node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.key == skiff_api::names::CONTROL_PLANE_TAINT)
            })
}

/// Runs the allocator: one worker, so that two nodes never get the same block.
pub fn run(client: Client, nodes: Arc<Informer<Node>>, alloc: RangeAllocator) {
    let queue = WorkQueue::new();
    let q = queue.clone();
    on_change(&nodes, move |c| match c {
        Change::Applied(n) if n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none() => {
            q.add("all")
        }
        Change::Resync => q.add("all"),
        _ => {}
    });
    let recorder = Recorder::new(client.clone(), "cidrAllocator");
    let api: Api<Node> = Api::all(client);
    // Blocks handed out by this process, by node: the cache may not show them yet, and a
    // node's podCIDR must never change once set.
    let assigned: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    run_workers("nodeipam", queue, 1, move |_key| {
        let nodes = nodes.clone();
        let api = api.clone();
        let alloc = alloc.clone();
        let recorder = recorder.clone();
        let assigned = assigned.clone();
        async move {
            let all = nodes.list();
            let mine = {
                let mut m = assigned.lock().unwrap_or_else(|e| e.into_inner());
                // Forget what the cache shows now, and nodes that are gone.
                m.retain(|name, _| {
                    all.iter().any(|n| {
                        n.name_any() == *name
                            && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
                    })
                });
                m.clone()
            };
            let mut used: BTreeSet<u64> = all
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
                .filter_map(|c| alloc.index_of(c))
                .chain(mine.values().copied())
                .collect();
            let mut todo: Vec<Arc<Node>> = all
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none())
                .filter(|n| !mine.contains_key(&n.name_any()))
                .cloned()
                .collect();
            allocation_order(&mut todo);
            // Blocks are chosen in order, one worker at a time; the patches go out
            // together (a cluster's nodes register at once, and each waits for its block
            // before it can start a pod).
            let mut picked = Vec::new();
            for node in todo {
                let Some(block) = alloc.next_free(&used, is_control_plane(&node)) else {
                    recorder.publish(
                        node.as_ref(),
                        WARNING,
                        "CIDRNotAvailable",
                        format!("Node {} status is now: CIDRNotAvailable", node.name_any()),
                    );
                    continue;
                };
                if let Some(i) = alloc.index_of(&block.to_string()) {
                    used.insert(i);
                }
                picked.push((node.name_any(), block));
            }
            let patches = picked.iter().map(|(name, block)| {
                let patch = serde_json::json!({"spec": {"podCIDR": block.to_string(), "podCIDRs": [block.to_string()]}});
                let api = api.clone();
                async move {
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .with_context(|| format!("assigning {block} to node {name}"))
                }
            });
            let results = futures::future::join_all(patches).await;
            let mut first_err = None;
            for ((name, block), result) in picked.iter().zip(results) {
                match result {
                    Ok(_) => {
                        tracing::info!(node = %name, cidr = %block, "assigned pod CIDR");
                        if let Some(i) = alloc.index_of(&block.to_string()) {
                            assigned
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name.clone(), i);
                        }
                    }
                    // The block stays free: the retry chooses again.
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            Ok(None)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_reservation() {
        let a = RangeAllocator::new("10.244.0.0/16", 24).expect("alloc");
        assert_eq!(a.size(), 256);
        assert_eq!(
            a.block(0).map(|b| b.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
        assert_eq!(
            a.block(2).map(|b| b.to_string()).as_deref(),
            Some("10.244.2.0/24")
        );
        assert_eq!(a.index_of("10.244.7.0/24"), Some(7));
        assert_eq!(a.index_of("10.245.7.0/24"), None);
        let mut used = BTreeSet::new();
        assert_eq!(
            a.next_free(&used, false).map(|b| b.to_string()).as_deref(),
            Some("10.244.1.0/24")
        );
        assert_eq!(
            a.next_free(&used, true).map(|b| b.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
        used.insert(0);
        used.insert(1);
        assert_eq!(
            a.next_free(&used, false).map(|b| b.to_string()).as_deref(),
            Some("10.244.2.0/24")
        );
        assert_eq!(
            a.next_free(&used, true).map(|b| b.to_string()).as_deref(),
            Some("10.244.2.0/24")
        );
        let small = RangeAllocator::new("10.0.0.0/23", 24).expect("alloc");
        let used: BTreeSet<u64> = [1].into();
        assert_eq!(
            small
                .next_free(&used, false)
                .map(|b| b.to_string())
                .as_deref(),
            Some("10.0.0.0/24")
        );
        assert!(RangeAllocator::new("10.0.0.0/16", 8).is_err());
    }

    #[test]
    fn control_plane_first_then_creation() {
        let node = |name: &str, cp: bool, ts: i64| {
            let mut v = serde_json::json!({"metadata": {"name": name, "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(ts).expect("ts").to_string()}});
            if cp {
                v["metadata"]["labels"] =
                    serde_json::json!({"node-role.kubernetes.io/control-plane": ""});
            }
            Arc::new(serde_json::from_value::<Node>(v).expect("node"))
        };
        let mut nodes = vec![
            node("k8s-n2", false, 30),
            node("k8s-n1", false, 20),
            node("k8s-m", true, 40),
        ];
        allocation_order(&mut nodes);
        let names: Vec<_> = nodes.iter().map(|n| n.name_any()).collect();
        assert_eq!(names, ["k8s-m", "k8s-n1", "k8s-n2"]);
    }
}
