//! Routes to the other nodes' pod networks, flannel host-gw style: every node reaches a pod
//! CIDR through the InternalIP of the node that owns it. Nodes must share an L2 segment (a
//! local cluster's LAN does).
//!
//! Runs in the agent's network namespace; it only ever touches routes for the cluster's pod
//! CIDR, and only in that namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};

/// Keeps one route per other node's `spec.podCIDR` via its InternalIP, forever.
pub async fn run(client: Client, own_node: String) -> anyhow::Result<()> {
    let (store, writer) = reflector::store::<Node>();
    let stream = reflector(
        writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    futures::pin_mut!(stream);
    let mut installed: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            tracing::warn!("watching nodes: {e}");
            continue;
        }
        let wanted = wanted_routes(store.state().iter().map(|n| n.as_ref()), &own_node);
        for (cidr, via) in &wanted {
            if installed.get(cidr) != Some(via) {
                match ip_route(&["replace", cidr, "via", &via.to_string()]) {
                    Ok(()) => {
                        tracing::info!("route {cidr} via {via}");
                        installed.insert(cidr.clone(), *via);
                    }
                    Err(e) => tracing::warn!("route {cidr} via {via}: {e:#}"),
                }
            }
        }
        let stale: Vec<String> = installed
            .keys()
            .filter(|c| !wanted.contains_key(*c))
            .cloned()
            .collect();
        for cidr in stale {
            if let Err(e) = ip_route(&["del", &cidr]) {
                tracing::warn!("removing route {cidr}: {e:#}");
            }
            installed.remove(&cidr);
        }
    }
    Ok(())
}

/// The routes this node needs: every other node's pod CIDR via its InternalIP.
pub fn wanted_routes<'a>(
    nodes: impl Iterator<Item = &'a Node>,
    own_node: &str,
) -> BTreeMap<String, Ipv4Addr> {
    nodes
        .filter(|n| n.metadata.name.as_deref() != Some(own_node))
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.clone()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some((cidr, ip))
        })
        .collect()
}

fn ip_route(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").arg("route").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip route {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn routes_to_every_other_node_with_a_pod_cidr() {
        let nodes = [
            node("k8s-m", Some("10.244.0.0/24"), "172.18.0.2"),
            node("k8s-n1", Some("10.244.1.0/24"), "172.18.0.3"),
            node("k8s-n2", None, "172.18.0.4"),
        ];
        let routes = wanted_routes(nodes.iter(), "k8s-n1");
        assert_eq!(
            routes.into_iter().collect::<Vec<_>>(),
            vec![("10.244.0.0/24".to_string(), Ipv4Addr::new(172, 18, 0, 2))]
        );
    }
}
