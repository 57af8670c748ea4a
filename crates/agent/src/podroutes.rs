//! Routes to the other nodes' pod networks, flannel host-gw style: every node reaches a
//! pod CIDR through the InternalIP of the node that owns it. Nodes must share an L2
//! segment (a local cluster's LAN does).
//!
//! The routes are programmed over rtnetlink in the network namespace the agent runs in
//! (the node's own). They carry skiff's routing protocol number ([`ROUTE_PROTOCOL`]), so
//! the agent finds the routes it made (also those of an earlier run, for Nodes deleted
//! meanwhile) and never changes or removes anybody else's.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use skiff_runtime::tolerant;
use thiserror::Error;

/// The `rtm_protocol` of the routes skiff makes (`ip route show proto 83`); iproute2
/// names 0-4, 8-19, 42 and 186-192, so 83 (`S`) is nobody's.
pub const ROUTE_PROTOCOL: u8 = 83;

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// How often the routes are checked again without any Node change (a route someone
/// removed comes back), and how soon after a failed change.
const RESYNC_PERIOD: Duration = Duration::from_secs(30);
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a route operation failed.
#[derive(Debug, Error)]
pub enum RoutesError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was asked (`adding route 10.244.1.0/24 via 172.18.0.3`).
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
}

/// The routes this node needs: every other node's IPv4 pod CIDRs (`spec.podCIDRs`, or
/// `spec.podCIDR`) via its first IPv4 InternalIP. Nodes without either are skipped.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own_node: &str,
) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own_node) {
            continue;
        }
        let Some(via) = internal_ipv4(node) else {
            continue;
        };
        let spec = node.spec.as_ref();
        let cidrs: Vec<&String> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(list) if !list.is_empty() => list.iter().collect(),
            _ => spec.and_then(|s| s.pod_cidr.as_ref()).into_iter().collect(),
        };
        for cidr in cidrs {
            if let Ok(net) = cidr.parse::<Ipv4Net>() {
                routes.insert(net.trunc(), via);
            }
        }
    }
    routes
}

fn internal_ipv4(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The main routing table of the calling thread's network namespace, as far as skiff's
/// routes go.
#[derive(Debug, Clone)]
pub struct RouteTable {
    handle: Handle,
}

/// What a [`RouteTable::sync`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Routes added or pointed at a new gateway.
    pub set: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Routes removed.
    pub removed: Vec<Ipv4Net>,
}

impl RouteTable {
    /// Opens a netlink socket in the calling thread's network namespace; its connection
    /// runs as a task on the current tokio runtime.
    pub fn connect() -> Result<Self, RoutesError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// skiff's IPv4 routes in the main table: destination → gateway.
    pub async fn installed(&self) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, RoutesError> {
        Ok(self
            .ours()
            .await?
            .iter()
            .filter_map(route_of)
            .collect::<BTreeMap<_, _>>())
    }

    async fn ours(&self) -> Result<Vec<RouteMessage>, RoutesError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let all: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|source| RoutesError::Netlink {
                what: "listing routes".into(),
                source,
            })?;
        Ok(all.into_iter().filter(is_ours).collect())
    }

    /// Adds the route, or points an existing one to `via`.
    pub async fn replace(&self, dst: Ipv4Net, via: Ipv4Addr) -> Result<(), RoutesError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(via)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .kind(RouteType::Unicast)
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|source| RoutesError::Netlink {
                what: format!("setting route {dst} via {via}"),
                source,
            })
    }

    /// Removes skiff's route to `dst` (none is fine).
    pub async fn remove(&self, dst: Ipv4Net) -> Result<(), RoutesError> {
        for msg in self.ours().await? {
            if route_of(&msg).is_some_and(|(d, _)| d == dst) {
                self.delete(msg, dst).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, msg: RouteMessage, dst: Ipv4Net) -> Result<(), RoutesError> {
        self.handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(|source| RoutesError::Netlink {
                what: format!("removing route {dst}"),
                source,
            })
    }

    /// Makes skiff's routes exactly `desired`: sets the missing and changed ones and
    /// removes the others. Every change is tried; the first failure is returned.
    pub async fn sync(
        &self,
        desired: &BTreeMap<Ipv4Net, Ipv4Addr>,
    ) -> Result<SyncReport, RoutesError> {
        let current = self.ours().await?;
        let installed: BTreeMap<Ipv4Net, Ipv4Addr> = current.iter().filter_map(route_of).collect();
        let mut report = SyncReport::default();
        let mut first_err = None;
        for (dst, via) in desired {
            if installed.get(dst) == Some(via) {
                continue;
            }
            match self.replace(*dst, *via).await {
                Ok(()) => report.set.push((*dst, *via)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for msg in current {
            let Some((dst, _)) = route_of(&msg) else {
                continue;
            };
            if desired.contains_key(&dst) {
                continue;
            }
            match self.delete(msg, dst).await {
                Ok(()) => report.removed.push(dst),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

fn is_ours(msg: &RouteMessage) -> bool {
    msg.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL) && table_of(msg) == MAIN_TABLE
}

fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn route_of(msg: &RouteMessage) -> Option<(Ipv4Net, Ipv4Addr)> {
    let mut dst = None;
    let mut via = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
            _ => {}
        }
    }
    let net = Ipv4Net::new(dst?, msg.header.destination_prefix_length).ok()?;
    Some((net, via?))
}

/// Keeps one route per other node's pod CIDR via its InternalIP, forever, in the calling
/// thread's network namespace (the agent's: the node's own).
pub async fn run(client: Client, own_node: String) -> anyhow::Result<()> {
    let table = RouteTable::connect()?;
    let (store, writer) = reflector::store::<Node>();
    // A Node that does not decode is skipped (its route kept while it was good before).
    let api = tolerant::api(&Api::<Node>::all(client));
    let stream = tolerant::reflector(writer, api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Routes last written; None forces a sync (at start, on the period, after errors).
    let mut applied: Option<BTreeMap<Ipv4Net, Ipv4Addr>> = None;
    let mut resync_at = tokio::time::Instant::now() + RESYNC_PERIOD;
    // Until the first list is complete the store is empty or partial: syncing then would
    // remove the routes an earlier run made for Nodes that still exist.
    let mut listed = false;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                None => anyhow::bail!("the Node watch ended"),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching Nodes");
                    continue;
                }
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {}
            },
            _ = tokio::time::sleep_until(resync_at) => {
                applied = None;
                resync_at = tokio::time::Instant::now() + RESYNC_PERIOD;
            }
        }
        if !listed {
            continue;
        }
        let desired = desired_routes(store.state().iter().map(|n| n.as_ref()), &own_node);
        // Node heartbeats change nothing here: only a different set of routes is worth
        // a netlink round trip.
        if applied.as_ref() == Some(&desired) {
            continue;
        }
        match table.sync(&desired).await {
            Ok(report) => {
                for (dst, via) in &report.set {
                    tracing::info!(%dst, %via, "pod route set");
                }
                for dst in &report.removed {
                    tracing::info!(%dst, "pod route removed");
                }
                applied = Some(desired);
            }
            Err(e) => {
                tracing::warn!(error = %e, "programming pod routes; retrying");
                applied = None;
                resync_at = tokio::time::Instant::now() + RETRY_DELAY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, cidrs: &[&str], addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidrs.first().map(|c| c.to_string()),
                pod_cidrs: (!cidrs.is_empty())
                    .then(|| cidrs.iter().map(|c| c.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn text(routes: &BTreeMap<Ipv4Net, Ipv4Addr>) -> String {
        routes
            .iter()
            .map(|(d, v)| format!("{d} via {v}\n"))
            .collect()
    }

    #[test]
    fn routes_every_other_nodes_pod_cidrs_via_its_internal_ip() {
        let nodes = [
            node("k8s-m", &["10.244.0.0/24"], &[("InternalIP", "172.18.0.2")]),
            node(
                "k8s-n1",
                &["10.244.1.0/24"],
                &[("InternalIP", "172.18.0.3")],
            ),
            // Not yet given a pod CIDR by the IPAM controller.
            node("k8s-n2", &[], &[("InternalIP", "172.18.0.4")]),
            // Hostname first, an IPv6 InternalIP before the IPv4 one, dual-stack CIDRs,
            // and a CIDR with host bits set.
            node(
                "k8s-n3",
                &["10.244.3.7/24", "fd00:10:244:3::/64"],
                &[
                    ("Hostname", "k8s-n3"),
                    ("InternalIP", "fd00::5"),
                    ("InternalIP", "172.18.0.5"),
                ],
            ),
            // No address yet.
            node("k8s-n4", &["10.244.4.0/24"], &[]),
        ];
        assert_eq!(
            text(&desired_routes(&nodes, "k8s-n1")),
            "10.244.0.0/24 via 172.18.0.2\n10.244.3.0/24 via 172.18.0.5\n"
        );
        assert_eq!(
            text(&desired_routes(&nodes, "k8s-m")),
            "10.244.1.0/24 via 172.18.0.3\n10.244.3.0/24 via 172.18.0.5\n"
        );
    }

    #[test]
    fn pod_cidr_alone_counts_when_pod_cidrs_is_missing() {
        let mut n = node("a", &[], &[("InternalIP", "10.0.0.1")]);
        n.spec = Some(NodeSpec {
            pod_cidr: Some("10.244.9.0/24".into()),
            ..Default::default()
        });
        assert_eq!(
            text(&desired_routes([&n], "b")),
            "10.244.9.0/24 via 10.0.0.1\n"
        );
    }

    #[test]
    fn recognises_only_its_own_routes_in_the_main_table() {
        let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(10, 244, 1, 0), 24)
            .gateway(Ipv4Addr::new(172, 18, 0, 3))
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        assert!(is_ours(&msg));
        assert_eq!(
            route_of(&msg),
            Some((
                "10.244.1.0/24".parse().unwrap(),
                Ipv4Addr::new(172, 18, 0, 3)
            ))
        );
        msg.header.protocol = RouteProtocol::Static;
        assert!(!is_ours(&msg));
        msg.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
        msg.attributes.push(RouteAttribute::Table(100));
        assert!(!is_ours(&msg));
    }
}
