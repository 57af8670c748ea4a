//! The local cluster's network, built and torn down for real (needs root).

use std::process::Command;

use skiff_cluster::{layout, netns};

fn hooks() -> skiff_cluster::Hooks {
    skiff_cluster::Hooks {
        admin_kubeconfig: Box::new(|_, _, _| anyhow::bail!("no server in this test")),
        cleanup_node: Box::new(|_, _, _| Ok(())),
    }
}

/// Removes the test cluster's namespaces even when an assertion fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = skiff_cluster::down(&self.0, &hooks());
    }
}

fn in_ns(ns: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .expect("ip netns exec")
}

#[test]
fn nodes_reach_each_other_over_the_lan_and_down_removes_everything() {
    let name = format!("t{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let lan = layout::lan_netns(&name);
    netns::create_lan(&lan, layout::lan_gateway(), layout::LAN_PREFIX_LEN).unwrap();
    for (i, node) in layout::node_names(2).iter().enumerate() {
        netns::create_node(
            &lan,
            &layout::node_netns(&name, node),
            i,
            layout::node_ip(i),
            layout::LAN_PREFIX_LEN,
            layout::lan_gateway(),
        )
        .unwrap();
    }
    let m = layout::node_netns(&name, "k8s-m");
    let out = in_ns(&m, &["ping", "-c1", "-W2", &layout::node_ip(1).to_string()]);
    assert!(
        out.status.success(),
        "k8s-m cannot reach k8s-n1: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let fwd = in_ns(&m, &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    // The default route goes through the LAN gateway; loopback is up.
    let route = in_ns(&m, &["ip", "-4", "route", "show", "default"]);
    assert!(
        String::from_utf8_lossy(&route.stdout)
            .starts_with(&format!("default via {} dev eth0", layout::lan_gateway())),
        "{}",
        String::from_utf8_lossy(&route.stdout)
    );
    let lo = in_ns(&m, &["ping", "-c1", "-W2", "127.0.0.1"]);
    assert!(lo.status.success(), "loopback is down in k8s-m");
    // The LAN legs live in the LAN's namespace, not in the host's.
    let lan_ns = layout::lan_netns(&name);
    assert!(in_ns(&lan_ns, &["ip", "link", "show", "veth0"])
        .status
        .success());
    let host = Command::new("ip")
        .args(["link", "show", "veth0"])
        .output()
        .unwrap();
    assert!(!host.status.success(), "veth0 is in the host's namespace");

    skiff_cluster::down(&name, &hooks()).unwrap();
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{name}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}
