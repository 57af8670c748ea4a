//! Network namespaces and links of a local cluster.
//!
//! Links and addresses are made with iproute2 (`ip -n NS ...`), which every machine that
//! can run a cluster has; every command names the namespace it acts in, so nothing here can
//! touch the host's own network namespace.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Directory where named network namespaces are bind-mounted (iproute2's convention).
pub const NETNS_DIR: &str = "/var/run/netns";

/// Path of a named network namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Moves the calling thread into the network namespace at `path`.
///
/// Call it before starting any other thread (before the async runtime) so that the whole
/// process lives in that namespace.
pub fn enter(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening network namespace {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {}", path.display()))?;
    Ok(())
}

/// Runs `ip ARGS...`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes a sysctl inside a namespace (sysctls under net/ are per namespace).
pub fn sysctl(netns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .output()
        .context("running sysctl")?;
    if !out.status.success() {
        bail!(
            "sysctl {key}={value} in {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Names of all named network namespaces.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates a named namespace with its loopback up.
pub fn create(name: &str) -> anyhow::Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Deletes a named namespace; a missing one is not an error.
pub fn delete(name: &str) -> anyhow::Result<()> {
    if path(name).exists() {
        ip(&["netns", "delete", name])?;
    }
    Ok(())
}

/// Creates the LAN namespace with its bridge `br0` at `gateway/prefix_len`.
pub fn create_lan(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> anyhow::Result<()> {
    create(name)?;
    ip(&["-n", name, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        name,
        "addr",
        "add",
        &format!("{gateway}/{prefix_len}"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", name, "link", "set", "br0", "up"])
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
    ip(&[
        "-n", lan, "link", "add", &lan_leg, "type", "veth", "peer", "name", "eth0", "netns",
        node_ns,
    ])?;
    ip(&["-n", lan, "link", "set", &lan_leg, "master", "br0", "up"])?;
    ip(&[
        "-n",
        node_ns,
        "addr",
        "add",
        &format!("{ip_addr}/{prefix_len}"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", node_ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        node_ns,
        "route",
        "add",
        "default",
        "via",
        &gateway.to_string(),
    ])?;
    sysctl(node_ns, "net.ipv4.ip_forward", "1")
}
