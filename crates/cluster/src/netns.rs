//! Network namespaces and links of a local cluster.
//!
//! Named namespaces come from `skiff_netns` (made as `ip netns add` makes them). Links, addresses and routes are programmed over rtnetlink from a
//! short-lived thread that first enters the namespace it acts in: `setns` moves only that
//! thread, and every function here names its namespace, so nothing can touch the host's
//! own network namespace.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{anyhow, Context};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

pub use skiff_netns::{create, delete, enter, path, NETNS_DIR};

/// Runs `work` on a thread of its own inside the named namespace, with an rtnetlink
/// handle whose socket lives there. Blocking: callers may be on an async runtime, whose
/// threads must stay where they are.
fn in_netns<T, F, Fut>(netns: &str, work: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<T>>,
{
    on_thread(Some(netns), work).with_context(|| format!("in network namespace {netns}"))
}

/// Runs `work` as [`in_netns`] does, in `netns`, or with `None` in the namespace of the
/// caller (the host's, for `skiff up`).
fn on_thread<T, F, Fut>(netns: Option<&str>, work: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let ns_path = netns.map(path);
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(p) = &ns_path {
                enter(p)?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a netlink runtime")?;
            rt.block_on(async {
                let (conn, handle, _) =
                    rtnetlink::new_connection().context("opening a netlink socket")?;
                let conn = tokio::spawn(conn);
                let result = work(handle).await;
                conn.abort();
                result
            })
        })
        .join()
        .map_err(|_| anyhow!("a netlink thread panicked"))?
    })
}

/// Index of the link named `name`.
async fn link_index(h: &Handle, name: &str) -> anyhow::Result<u32> {
    let link = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .with_context(|| format!("finding link {name}"))?
        .ok_or_else(|| anyhow!("no link {name}"))?;
    Ok(link.header.index)
}

/// Sets a link up.
async fn link_up(h: &Handle, index: u32) -> anyhow::Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .context("setting a link up")
}

/// Adds `addr/prefix_len` to a link.
async fn add_address(h: &Handle, index: u32, addr: Ipv4Addr, prefix_len: u8) -> anyhow::Result<()> {
    h.address()
        .add(index, IpAddr::V4(addr), prefix_len)
        .execute()
        .await
        .with_context(|| format!("adding address {addr}/{prefix_len}"))
}

/// Writes a sysctl inside a namespace (sysctls under net/ are per namespace: a thread
/// inside it sees that namespace's).
pub fn sysctl(netns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let file = Path::new("/proc/sys").join(key.replace('.', "/"));
    let value = value.to_string();
    in_netns(netns, move |_| async move {
        std::fs::write(&file, format!("{value}\n"))
            .with_context(|| format!("writing {}", file.display()))
    })
    .with_context(|| format!("sysctl {key}"))
}

/// Names of all named network namespaces.
pub fn list() -> Vec<String> {
    skiff_netns::list("")
}

/// Creates the LAN namespace with its bridge `br0` at `gateway/prefix_len`.
pub fn create_lan(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> anyhow::Result<()> {
    create(name)?;
    in_netns(name, |h| async move {
        h.link()
            .add(LinkBridge::new("br0").build())
            .execute()
            .await
            .context("adding bridge br0")?;
        let br = link_index(&h, "br0").await?;
        add_address(&h, br, gateway, prefix_len).await?;
        link_up(&h, br).await
    })
}

/// Creates a node namespace wired to the LAN: `eth0` at `ip/prefix_len`, default route
/// through the LAN gateway (so cluster IPs route before the proxy's DNAT rewrites them),
/// forwarding on (the node routes its pods' traffic).
pub fn create_node(
    lan: &str,
    node_ns: &str,
    index: usize,
    ip_addr: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> anyhow::Result<()> {
    create(node_ns)?;
    // The LAN-side leg is named by index: interface names are limited to 15 bytes.
    let lan_leg = format!("veth{index}");
    let node_file = std::fs::File::open(path(node_ns))
        .with_context(|| format!("opening network namespace {node_ns}"))?;
    // The peer is made straight in the node's namespace (by fd), named eth0 there.
    in_netns(lan, |h| async move {
        bridge_port(&h, &lan_leg, "eth0", node_file, node_ns).await
    })?;
    in_netns(node_ns, |h| async move {
        let eth0 = link_index(&h, "eth0").await?;
        add_address(&h, eth0, ip_addr, prefix_len).await?;
        link_up(&h, eth0).await?;
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("adding the default route via {gateway}"))
    })?;
    sysctl(node_ns, "net.ipv4.ip_forward", "1")
}

/// Adds a veth to the LAN's bridge `br0` (in the namespace of `h`): its end `leg` is a
/// port of the bridge, up; its peer `peer` is made straight in the namespace `peer_ns`
/// (named `peer_ns_name` in errors), where its owner sets it up.
async fn bridge_port(
    h: &Handle,
    leg: &str,
    peer: &str,
    peer_ns: std::fs::File,
    peer_ns_name: &str,
) -> anyhow::Result<()> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer)
        .setns_by_fd(peer_ns.as_raw_fd())
        .build();
    let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(leg.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link()
        .add(veth)
        .execute()
        .await
        .with_context(|| format!("adding veth {leg} (peer {peer} in {peer_ns_name})"))?;
    drop(peer_ns);
    let index = link_index(h, leg).await?;
    let br = link_index(h, "br0").await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(br)
                .up()
                .build(),
        )
        .execute()
        .await
        .with_context(|| format!("attaching {leg} to br0"))
}

/// Name of the LAN namespace's end of the link to the host.
const UPLINK: &str = "uplink";

/// Links the host to a cluster's LAN: a veth whose end `uplink` joins the LAN's bridge
/// and whose end `host_link` stays in the caller's namespace (the host's) with
/// `gateway/prefix_len`, which also gives the host its route to the LAN.
pub fn link_host(
    lan: &str,
    host_link: &str,
    gateway: Ipv4Addr,
    prefix_len: u8,
) -> anyhow::Result<()> {
    // The caller's namespace, as this thread sees it (the netlink thread enters the LAN's).
    let host_ns = std::fs::File::open("/proc/thread-self/ns/net")
        .context("opening the host's network namespace")?;
    let name = host_link.to_string();
    in_netns(lan, |h| async move {
        bridge_port(&h, UPLINK, &name, host_ns, "the host").await
    })?;
    let name = host_link.to_string();
    on_thread(None, |h| async move {
        let link = link_index(&h, &name).await?;
        add_address(&h, link, gateway, prefix_len).await?;
        link_up(&h, link).await
    })
    .with_context(|| format!("setting up {host_link} on the host"))
}

/// Deletes the host's link `name` if there is one (its peer goes with it). Deleting the
/// LAN's namespace removes it too, but only once the kernel has torn that namespace down,
/// which happens after `down` returned.
pub fn unlink_host(name: &str) -> anyhow::Result<()> {
    let name = name.to_string();
    on_thread(None, |h| async move {
        let Some(link) = h
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
            .ok()
            .flatten()
        else {
            return Ok(());
        };
        h.link()
            .del(link.header.index)
            .execute()
            .await
            .with_context(|| format!("deleting link {name}"))
    })
}

/// Every IPv4 network the host routes or holds an address in (the default route aside):
/// what a new cluster's LAN must not overlap.
pub fn host_networks() -> anyhow::Result<Vec<ipnet::Ipv4Net>> {
    use rtnetlink::packet_route::address::AddressAttribute;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    on_thread(None, |h| async move {
        let mut nets = Vec::new();
        let mut routes = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(r) = routes.try_next().await.context("listing routes")? {
            let len = r.header.destination_prefix_length;
            let dest = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(ip), true) = (dest, len > 0) {
                nets.extend(ipnet::Ipv4Net::new(ip, len).ok().map(|n| n.trunc()));
            }
        }
        let mut addrs = h.address().get().execute();
        while let Some(a) = addrs.try_next().await.context("listing addresses")? {
            let len = a.header.prefix_len;
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    nets.extend(ipnet::Ipv4Net::new(*ip, len).ok().map(|n| n.trunc()));
                }
            }
        }
        Ok(nets)
    })
    .context("reading the host's routes and addresses")
}

/// Runs `program args` inside a namespace with `input` on its standard input, and fails
/// with its standard error if it fails.
pub fn run_in(netns: &str, program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    in_netns(netns, |_| async move {
        crate::process::run(program, args, input)
    })
}
