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
    let net = layout::default_lan();
    netns::create_lan(&lan, layout::lan_gateway(net), net.prefix_len()).unwrap();
    for (i, node) in layout::node_names(2).iter().enumerate() {
        netns::create_node(
            &lan,
            &layout::node_netns(&name, node),
            i,
            layout::node_ip(net, i),
            net.prefix_len(),
            layout::lan_gateway(net),
        )
        .unwrap();
    }
    let m = layout::node_netns(&name, "k8s-m");
    let out = in_ns(
        &m,
        &["ping", "-c1", "-W2", &layout::node_ip(net, 1).to_string()],
    );
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
        String::from_utf8_lossy(&route.stdout).starts_with(&format!(
            "default via {} dev eth0",
            layout::lan_gateway(net)
        )),
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

#[test]
#[ignore = "needs root"]
fn the_host_link_reaches_the_nodes_and_down_removes_exactly_it() {
    use skiff_cluster::hostnet::{self, Firewall};
    for fw in [Firewall::Iptables, Firewall::Nftables] {
        let name = format!("h{}{}", std::process::id(), &fw.name()[..1]);
        let before = skiff_testkit::hostnet::snapshot();
        let cleanup = Cleanup(name.clone());
        let mut taken = netns::host_networks().unwrap();
        taken.push(layout::default_lan()); // leave the usual first one to real clusters
        let net = layout::choose_lan(&taken).unwrap();
        let lan = layout::lan_netns(&name);
        let link = layout::host_link(&name);
        netns::create_lan(&lan, layout::bridge_ip(net), net.prefix_len()).unwrap();
        netns::link_host(&lan, &link, layout::lan_gateway(net), net.prefix_len()).unwrap();
        hostnet::enable_forwarding().unwrap();
        hostnet::add(&name, net, &link, fw).unwrap();
        let node = layout::node_netns(&name, "k8s-m");
        netns::create_node(
            &lan,
            &node,
            0,
            layout::node_ip(net, 0),
            net.prefix_len(),
            layout::lan_gateway(net),
        )
        .unwrap();
        hostnet::add_node(&node, net, fw).unwrap();

        // The host reaches the node, and the node its gateway, the host.
        let ping = Command::new("ping")
            .args(["-c1", "-W2", &layout::node_ip(net, 0).to_string()])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "{fw:?}: the host cannot reach the node"
        );
        let gw = layout::lan_gateway(net).to_string();
        assert!(in_ns(&node, &["ping", "-c1", "-W2", &gw]).status.success());
        let during = skiff_testkit::hostnet::snapshot();
        assert!(
            during.contains(&format!("{net} dev {link} proto kernel")),
            "{during}"
        );
        match fw {
            Firewall::Iptables => {
                assert!(during.contains(&format!("-j {}", layout::nat_chain(&name))))
            }
            Firewall::Nftables => {
                assert!(during.contains(&format!("table ip {}", layout::nft_table(&name))))
            }
        }
        assert!(
            String::from_utf8_lossy(&in_ns(&node, &["iptables-save", "-t", "nat"]).stdout)
                .contains("SKIFF-POD-MASQ")
                || String::from_utf8_lossy(&in_ns(&node, &["nft", "list", "ruleset"]).stdout)
                    .contains("skiff-node"),
            "no pod masquerade on the node"
        );

        skiff_cluster::down(&name, &hooks()).unwrap();
        drop(cleanup);
        skiff_testkit::hostnet::assert_unchanged(
            &before,
            &skiff_testkit::hostnet::snapshot(),
            &format!("{fw:?}: up and down"),
        );
    }
}
