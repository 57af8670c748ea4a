//! A pod's link to the node's bridge, made in process over rtnetlink as the CNI `bridge`
//! plugin (v1.1, `plugins/main/bridge`) makes it with the config skiff writes
//! (`isGateway`, `hairpinMode`, no `mtu`, no `mac`), without a plugin process per pod:
//!
//! - the bridge `cni0` (made if missing: kernel MTU and queue length, IPv6 router
//!   advertisements ignored, up) with the gateway address, its MAC then set to itself so
//!   that it stays put as ports come and go, and IPv4 forwarding on;
//! - a veth pair: the host end `veth<8 hex digits>` (a random name) on the bridge with
//!   hairpin mode, the pod end `eth0` in the pod's namespace, both up, MTU and MACs the
//!   kernel's;
//! - in the pod's namespace: `arp_notify` on and IPv6 DAD off for `eth0`, the address
//!   and the default route via the gateway.
//!
//! Removal deletes `eth0` in the pod's namespace (which takes the host end with it), and
//! the host end by name when the namespace is already gone.
//!
//! The host side is the network namespace of the calling thread (the node's: the agent
//! runs in it). The pod side is reached with a netlink socket opened in the pod's
//! namespace by a short-lived thread: a socket stays in the namespace it was made in.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ipam::Allocation;

/// The node's bridge, as skiff's CNI config names it.
pub const BRIDGE: &str = "cni0";
/// The pod's interface.
pub const IFNAME: &str = "eth0";

/// Why a pod's link could not be made or removed.
#[derive(Debug, Error)]
pub enum BridgeError {
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was asked (`adding 10.244.1.5/24 to eth0`).
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// A socket, namespace or sysctl could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The node's links are not as the bridge plugin would have them.
    #[error("{0}")]
    Conflict(String),
}

impl BridgeError {
    /// The errno of a refused request.
    fn errno(&self) -> Option<i32> {
        match self {
            BridgeError::Netlink {
                source: rtnetlink::Error::NetlinkError(m),
                ..
            } => Some(m.raw_code().abs()),
            _ => None,
        }
    }
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> BridgeError {
    let what = what.into();
    move |source| BridgeError::Netlink { what, source }
}

/// An interface of a pod's link, as the plugin's CNI result names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address (`0a:58:...`, lower case).
    pub mac: String,
    /// The network namespace it is in, for the pod's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// What [`attach`] made: the result's `interfaces`, in the plugin's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The bridge.
    pub bridge: Interface,
    /// The host end of the veth pair.
    pub host: Interface,
    /// The pod end, `eth0`.
    pub pod: Interface,
}

/// A netlink connection, its task ended with it.
struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// In the calling thread's network namespace.
    fn here() -> Result<Self, BridgeError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| BridgeError::Io {
            what: "opening a netlink socket".into(),
            source,
        })?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// In the network namespace at `path`, opened by a thread of its own that enters it
    /// (and ends there: a pooled thread must never change namespace). `defaults` are
    /// sysctls (`net/ipv4/conf/default/arp_notify`...) written there first, so the
    /// interfaces made in it afterwards start with them.
    async fn enter(
        path: &Path,
        defaults: &'static [(&'static str, &'static str)],
    ) -> Result<Self, BridgeError> {
        let runtime = tokio::runtime::Handle::current();
        let path = path.to_path_buf();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("netns-netlink".into())
            .spawn(move || {
                let opened = (|| {
                    let file = std::fs::File::open(&path).map_err(|source| BridgeError::Io {
                        what: format!("opening network namespace {}", path.display()),
                        source,
                    })?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                        |e| BridgeError::Io {
                            what: format!("entering network namespace {}", path.display()),
                            source: e.into(),
                        },
                    )?;
                    for (key, value) in defaults {
                        // As the plugin: best effort (no IPv6 in the kernel is fine).
                        let _ = std::fs::write(Path::new("/proc/sys/net").join(key), value);
                    }
                    // The connection registers with the reactor as it is made.
                    let _guard = runtime.enter();
                    Netlink::here()
                })();
                let _ = tx.send(opened);
            })
            .map_err(|source| BridgeError::Io {
                what: "starting a thread".into(),
                source,
            })?;
        rx.await
            .map_err(|_| BridgeError::Conflict("the namespace thread panicked".into()))?
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, BridgeError> {
        match self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
        {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => {
                Ok(None)
            }
            Err(e) => Err(netlink(format!("looking up {name}"))(e)),
        }
    }

    async fn delete(&self, link: &LinkMessage, name: &str) -> Result<(), BridgeError> {
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => Ok(()),
            Err(e) => Err(netlink(format!("deleting {name}"))(e)),
        }
    }
}

/// The sysctls the plugin sets on the pod's interface, as the pod namespace's defaults.
const POD_DEFAULTS: &[(&str, &str)] = &[
    ("ipv6/conf/default/accept_dad", "0"),
    ("ipv4/conf/default/arp_notify", "1"),
];

fn mac_of(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn kind_of(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

/// `veth` and 8 random hex digits, as the plugin's `RandomVethName`.
fn random_veth_name() -> String {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// The bridge, made and set up if missing (the plugin's `ensureBridge`).
async fn ensure_bridge(node: &Netlink) -> Result<LinkMessage, BridgeError> {
    if let Some(br) = node.link(BRIDGE).await? {
        if kind_of(&br) != Some(&InfoKind::Bridge) {
            return Err(BridgeError::Conflict(format!(
                "{BRIDGE:?} already exists but is not a bridge"
            )));
        }
        return Ok(br);
    }
    match node
        .handle
        .link()
        // Made down: set up once its sysctl is written, as the plugin does.
        .add(LinkMessageBuilder::<LinkBridge>::new(BRIDGE).build())
        .execute()
        .await
    {
        Ok(()) => {}
        // Another pod's setup made it meanwhile.
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => {}
        Err(e) => return Err(netlink(format!("could not add {BRIDGE:?}"))(e)),
    }
    let br = node
        .link(BRIDGE)
        .await?
        .ok_or_else(|| BridgeError::Conflict(format!("{BRIDGE:?} vanished as it was made")))?;
    // "We want to own the routes for this interface."
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{BRIDGE}/accept_ra"), "0");
    node.handle
        .link()
        .set(LinkUnspec::new_with_index(br.header.index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {BRIDGE} up")))?;
    Ok(br)
}

/// The gateway address on the bridge (the plugin's `ensureAddr`): nothing to do when it
/// is there; another IPv4 address there is an error; else it is added, the bridge's MAC
/// set to itself (a bridge otherwise takes the lowest MAC of its ports, which changes as
/// pods come and go), and forwarding enabled.
async fn ensure_gateway(
    node: &Netlink,
    br: &LinkMessage,
    alloc: &Allocation,
) -> Result<(), BridgeError> {
    let gw = alloc.gateway;
    let prefix = alloc.address.prefix_len();
    let addrs: Vec<_> = node
        .handle
        .address()
        .get()
        .set_link_index_filter(br.header.index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink(format!("listing the addresses of {BRIDGE}")))?;
    for a in addrs.iter().filter(|a| a.header.index == br.header.index) {
        let Some(ip) = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        }) else {
            continue;
        };
        if ip == gw && a.header.prefix_len == prefix {
            return Ok(());
        }
        return Err(BridgeError::Conflict(format!(
            "failed to set bridge addr: {BRIDGE:?} already has an IP address different from {gw}/{prefix}"
        )));
    }
    match node
        .handle
        .address()
        .add(br.header.index, IpAddr::V4(gw), prefix)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => {}
        Err(e) => {
            return Err(netlink(format!("could not add IP address to {BRIDGE:?}"))(
                e,
            ));
        }
    }
    let current = node.link(BRIDGE).await?.unwrap_or_else(|| br.clone());
    let mac = current.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => Some(b.clone()),
        _ => None,
    });
    if let Some(mac) = mac {
        node.handle
            .link()
            .set(
                LinkUnspec::new_with_index(br.header.index)
                    .address(mac)
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink("could not set bridge's mac"))?;
    }
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    Ok(())
}

/// Makes the pod's link: bridge, veth pair, the pod's address and default route (see
/// the module's doc). On failure nothing of the pod's is left (the bridge stays).
pub async fn attach(netns: &Path, alloc: &Allocation) -> Result<Attached, BridgeError> {
    let node = Netlink::here()?;
    let pod = Netlink::enter(netns, POD_DEFAULTS).await?;
    let br = ensure_bridge(&node).await?;
    ensure_gateway(&node, &br, alloc).await?;
    let ns_file = std::fs::File::open(netns).map_err(|source| BridgeError::Io {
        what: format!("opening network namespace {}", netns.display()),
        source,
    })?;
    let mut host_name = random_veth_name();
    let mut tries = 0;
    loop {
        use std::os::fd::AsRawFd;
        // The pod's end cannot be set up in this request (the kernel configures it
        // before the pair is linked: ENOTCONN); configure() does it.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(IFNAME.to_string())
            .setns_by_fd(ns_file.as_raw_fd())
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name.clone())
            .controller(br.header.index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        match node.handle.link().add(msg).execute().await {
            Ok(()) => break,
            Err(e) => {
                let err = netlink(format!("creating veth pair {host_name} - {IFNAME}"))(e);
                if err.errno() != Some(libc::EEXIST) {
                    return Err(err);
                }
                if pod.link(IFNAME).await?.is_some() {
                    return Err(BridgeError::Conflict(format!(
                        "container veth name provided ({IFNAME}) already exists"
                    )));
                }
                tries += 1;
                if tries >= 5 {
                    return Err(err);
                }
                host_name = random_veth_name();
            }
        }
    }
    match configure(&node, &pod, &host_name, netns, alloc).await {
        Ok(attached) => Ok(attached),
        Err(e) => {
            // Deleting either end deletes the pair.
            if let Ok(Some(link)) = node.link(&host_name).await {
                let _ = node.delete(&link, &host_name).await;
            }
            Err(e)
        }
    }
}

/// Hairpin mode on the host end, the pod's address and route, and the result.
async fn configure(
    node: &Netlink,
    pod: &Netlink,
    host_name: &str,
    netns: &Path,
    alloc: &Allocation,
) -> Result<Attached, BridgeError> {
    let host = node
        .link(host_name)
        .await?
        .ok_or_else(|| BridgeError::Conflict(format!("{host_name} vanished as it was made")))?;
    node.handle
        .link()
        .set_port(LinkBridgePort::new(host.header.index).hairpin(true).build())
        .execute()
        .await
        .map_err(netlink(format!(
            "failed to setup hairpin mode for {host_name}"
        )))?;
    let eth0 = pod
        .link(IFNAME)
        .await?
        .ok_or_else(|| BridgeError::Conflict(format!("no {IFNAME} in {}", netns.display())))?;
    pod.handle
        .link()
        .set(LinkUnspec::new_with_index(eth0.header.index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {IFNAME} up")))?;
    let ip = alloc.address.addr();
    let prefix = alloc.address.prefix_len();
    pod.handle
        .address()
        .add(eth0.header.index, IpAddr::V4(ip), prefix)
        .execute()
        .await
        .map_err(netlink(format!("adding {ip}/{prefix} to {IFNAME}")))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(alloc.gateway)
        .output_interface(eth0.header.index)
        .protocol(RouteProtocol::Boot)
        .build();
    pod.handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(netlink(format!(
            "adding the default route via {} on {IFNAME}",
            alloc.gateway
        )))?;
    // The bridge's MAC may have changed as its first port joined.
    let br = node
        .link(BRIDGE)
        .await?
        .ok_or_else(|| BridgeError::Conflict(format!("{BRIDGE:?} vanished")))?;
    Ok(Attached {
        bridge: Interface {
            name: BRIDGE.into(),
            mac: mac_of(&br),
            sandbox: None,
        },
        host: Interface {
            name: host_name.to_string(),
            mac: mac_of(&host),
            sandbox: None,
        },
        pod: Interface {
            name: IFNAME.into(),
            mac: mac_of(&eth0),
            sandbox: Some(netns.display().to_string()),
        },
    })
}

/// Removes the pod's link: `eth0` in its namespace when the namespace is there, and the
/// host end `host` (when known) if it outlived it (the namespace's name gone while a
/// process still holds it). Nothing to remove is fine.
pub async fn detach(netns: &Path, host: Option<&str>) -> Result<(), BridgeError> {
    let mut first_err = None;
    // A name left without its namespace (not a namespace mount any more) fails to be
    // entered: nothing of the pod's is in there then.
    let pod = if netns.exists() {
        Netlink::enter(netns, &[]).await.ok()
    } else {
        None
    };
    if let Some(pod) = pod {
        match pod.link(IFNAME).await {
            Ok(Some(link)) => {
                if let Err(e) = pod.delete(&link, IFNAME).await {
                    first_err.get_or_insert(e);
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(name) = host {
        let node = Netlink::here()?;
        if let Some(link) = node.link(name).await? {
            if kind_of(&link) == Some(&InfoKind::Veth) {
                if let Err(e) = node.delete(&link, name).await {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_as_the_plugin_makes_them() {
        let a = random_veth_name();
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_veth_name());
    }

    #[test]
    fn macs_are_lower_case_and_colon_separated() {
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::Address(vec![0x0a, 0x58, 0xAB, 0, 1, 0xff]));
        assert_eq!(mac_of(&link), "0a:58:ab:00:01:ff");
    }
}
