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
    let ns_path = path(netns);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&ns_path)?;
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
        .map_err(|_| anyhow!("the netlink thread for {netns} panicked"))?
    })
    .with_context(|| format!("in network namespace {netns}"))
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
    in_netns(lan, |h| async move {
        // The peer is made straight in the node's namespace (by fd), named eth0 there.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0")
            .setns_by_fd(node_file.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(lan_leg.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .with_context(|| format!("adding veth {lan_leg} (peer eth0 in {node_ns})"))?;
        drop(node_file);
        let leg = link_index(&h, &lan_leg).await?;
        let br = link_index(&h, "br0").await?;
        h.link()
            .set(LinkUnspec::new_with_index(leg).controller(br).up().build())
            .execute()
            .await
            .with_context(|| format!("attaching {lan_leg} to br0"))
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
