//! Pod networks on both paths (needs root), in a "node" network namespace each test
//! makes: the in-process bridge and host-local IPAM give pods addresses that reach each
//! other and the gateway; the CNI plugins and the in-process path share one node's
//! addresses and tear down each other's pods; a setup that fails half way leaves
//! nothing; teardown works when the pod's namespace is already gone; hostPorts work on
//! both paths.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_agent::containers::cni::{Cni, PortMapping};
use skiff_agent::containers::{ipam, netns};
use skiff_agent::Network;

/// Removes the test's namespaces (the node's takes its bridge and veths with it).
struct Cleanup {
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in netns::list(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

/// A test's node: its namespace prefix, state directory and pod CIDR.
struct Node {
    prefix: String,
    state: PathBuf,
    cidr: String,
}

impl Node {
    fn cni(&self, network: Network) -> Cni {
        Cni {
            bin_dir: "/usr/lib/cni".into(),
            state_dir: self.state.clone(),
            pod_cidr: self.cidr.clone(),
            network,
        }
    }

    async fn pod(&self, name: &str) -> PathBuf {
        netns::create(&format!("{}{name}", self.prefix))
            .await
            .expect("pod netns")
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The addresses host-local's store holds.
    fn reserved(&self) -> Vec<Ipv4Addr> {
        ipam::Store::open(&self.state.join("ipam"), "skiff")
            .unwrap()
            .reserved()
            .unwrap()
    }

    fn cached(&self, id: &str) -> bool {
        self.state
            .join("results")
            .join(format!("{id}.json"))
            .exists()
    }
}

/// Runs `scenario` with this thread (and the runtime's threads) in a fresh node netns.
fn on_node(tag: &str, cidr: &str, scenario: impl AsyncFnOnce(Node)) {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root");
    let prefix = format!("skn-{}{tag}-", std::process::id());
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let state = tempfile::tempdir().unwrap();
    let node_ns = format!("{prefix}node");
    run(&["ip", "netns", "add", &node_ns]);
    let f = std::fs::File::open(netns::path(&node_ns)).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    run(&["ip", "link", "set", "lo", "up"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = Node {
        prefix,
        state: state.path().join("cni"),
        cidr: cidr.into(),
    };
    rt.block_on(async {
        let done = tokio::time::timeout(Duration::from_secs(60), scenario(node)).await;
        assert!(done.is_ok(), "the scenario timed out");
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// Runs a command in this thread's namespace; its stdout, or a panic with its stderr.
fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeds(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One ping from a pod's namespace, retried until a deadline (the first may race the
/// bridge's port leaving its learning state).
fn pings(from_ns: &str, to: Ipv4Addr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let to = to.to_string();
    loop {
        if succeeds(&[
            "ip", "netns", "exec", from_ns, "ping", "-c", "1", "-W", "1", &to,
        ]) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// The veths on the node's bridge.
fn bridge_ports() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", "cni0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn builtin_pods_reach_each_other_and_the_gateway() {
    on_node("b", "10.250.8.0/24", async |node: Node| {
        let cni = node.cni(Network::Builtin);
        let (a_ns, b_ns) = (node.pod("a").await, node.pod("b").await);
        let t = Instant::now();
        let a = cni.add("pod-a", &a_ns, &[]).await.expect("ADD a");
        eprintln!("builtin ADD took {:?}", t.elapsed());
        let b = cni.add("pod-b", &b_ns, &[]).await.expect("ADD b");
        assert_eq!(a, Ipv4Addr::new(10, 250, 8, 2));
        assert_eq!(b, Ipv4Addr::new(10, 250, 8, 3));
        let gw = Ipv4Addr::new(10, 250, 8, 1);

        // The node's side, as the bridge plugin leaves it.
        let br = run(&["ip", "-o", "-4", "addr", "show", "dev", "cni0"]);
        assert!(br.contains("inet 10.250.8.1/24"), "{br}");
        let ports = bridge_ports();
        assert_eq!(ports.len(), 2, "{ports:?}");
        for p in &ports {
            assert!(p.starts_with("veth") && p.len() == 12, "{p}");
            let detail = run(&["ip", "-d", "link", "show", "dev", p]);
            assert!(detail.contains("hairpin on"), "{detail}");
            assert!(detail.contains("state UP"), "{detail}");
        }
        // The pod's side.
        let addr = run(&[
            "ip",
            "netns",
            "exec",
            &node.ns("a"),
            "ip",
            "-o",
            "-4",
            "addr",
        ]);
        assert!(
            addr.lines()
                .any(|l| l.contains("eth0") && l.contains("inet 10.250.8.2/24")),
            "{addr}"
        );
        let routes = run(&["ip", "netns", "exec", &node.ns("a"), "ip", "route"]);
        assert!(
            routes.contains("default via 10.250.8.1 dev eth0"),
            "{routes}"
        );
        let notify = run(&[
            "ip",
            "netns",
            "exec",
            &node.ns("a"),
            "cat",
            "/proc/sys/net/ipv4/conf/eth0/arp_notify",
        ]);
        assert_eq!(notify.trim(), "1");
        // host-local's files.
        let held = std::fs::read_to_string(node.state.join("ipam/skiff/10.250.8.2")).unwrap();
        assert_eq!(held, "pod-a\r\neth0");

        assert!(pings(&node.ns("a"), b), "pod a to pod b");
        assert!(pings(&node.ns("b"), a), "pod b to pod a");
        assert!(pings(&node.ns("a"), gw), "pod a to the gateway");
        // The node reaches its pods through the bridge.
        assert!(succeeds(&["ping", "-c", "1", "-W", "2", &b.to_string()]));

        cni.del("pod-a", &a_ns).await.expect("DEL a");
        cni.del("pod-b", &b_ns).await.expect("DEL b");
        assert_eq!(bridge_ports(), Vec::<String>::new());
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert!(!node.cached("pod-a") && !node.cached("pod-b"));
        // DEL is idempotent.
        cni.del("pod-a", &a_ns).await.expect("DEL a again");
    });
}

#[test]
#[ignore = "needs root"]
fn paths_share_addresses_and_tear_down_each_other() {
    on_node("s", "10.250.9.0/24", async |node: Node| {
        let plugins = node.cni(Network::Plugins);
        let builtin = node.cni(Network::Builtin);
        let (a_ns, b_ns, c_ns) = (
            node.pod("a").await,
            node.pod("b").await,
            node.pod("c").await,
        );
        let t = Instant::now();
        let a = plugins
            .add("pod-a", &a_ns, &[])
            .await
            .expect("plugins ADD a");
        eprintln!("plugins ADD took {:?}", t.elapsed());
        let b = builtin
            .add("pod-b", &b_ns, &[])
            .await
            .expect("builtin ADD b");
        let c = plugins
            .add("pod-c", &c_ns, &[])
            .await
            .expect("plugins ADD c");
        // One round-robin over one store: each path continues where the other stopped.
        assert_eq!(
            [a, b, c],
            [
                Ipv4Addr::new(10, 250, 9, 2),
                Ipv4Addr::new(10, 250, 9, 3),
                Ipv4Addr::new(10, 250, 9, 4)
            ]
        );
        assert!(pings(&node.ns("b"), a), "builtin pod to plugin pod");
        assert!(pings(&node.ns("a"), b), "plugin pod to builtin pod");
        assert!(pings(&node.ns("c"), b), "plugin pod to builtin pod");

        // Each path tears down the other's pods.
        builtin.del("pod-a", &a_ns).await.expect("builtin DEL of a");
        plugins.del("pod-b", &b_ns).await.expect("plugins DEL of b");
        assert_eq!(node.reserved(), vec![c]);
        assert_eq!(bridge_ports().len(), 1);
        // A freed address is not reused before the rest of the range, on either path.
        let d = builtin
            .add("pod-d", &a_ns, &[])
            .await
            .expect("builtin ADD d");
        assert_eq!(d, Ipv4Addr::new(10, 250, 9, 5));
        builtin.del("pod-c", &c_ns).await.expect("builtin DEL of c");
        plugins.del("pod-d", &a_ns).await.expect("plugins DEL of d");
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert_eq!(bridge_ports(), Vec::<String>::new());
    });
}

#[test]
#[ignore = "needs root"]
fn a_failed_setup_leaves_nothing_and_teardown_outlives_the_netns() {
    on_node("f", "10.250.10.0/24", async |node: Node| {
        let cni = node.cni(Network::Builtin);
        // The pod's namespace already has an eth0: the veth cannot be made.
        let taken = node.pod("taken").await;
        run(&[
            "ip",
            "netns",
            "exec",
            &node.ns("taken"),
            "ip",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "other",
        ]);
        let err = cni.add("pod-x", &taken, &[]).await.unwrap_err();
        assert!(err.to_string().contains("eth0"), "{err}");
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert!(!node.cached("pod-x"));
        assert_eq!(bridge_ports(), Vec::<String>::new());
        // A namespace that does not exist.
        let err = cni
            .add("pod-y", Path::new("/var/run/netns/skn-none"), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("skn-none"), "{err}");
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert!(!node.cached("pod-y"));
        // The bridge holds another address than the range's gateway.
        run(&["ip", "addr", "flush", "dev", "cni0"]);
        run(&["ip", "addr", "add", "10.99.0.1/24", "dev", "cni0"]);
        let ok = node.pod("ok").await;
        let err = cni.add("pod-z", &ok, &[]).await.unwrap_err();
        assert!(
            err.to_string().contains("already has an IP address"),
            "{err}"
        );
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert_eq!(bridge_ports(), Vec::<String>::new());
        run(&["ip", "addr", "flush", "dev", "cni0"]);

        // Teardown when the namespace's name is gone but a process (here, an open
        // file) still holds the namespace, so the veth lives on.
        let ip = cni.add("pod-h", &ok, &[]).await.expect("ADD h");
        let held = std::fs::File::open(&ok).unwrap();
        netns::delete(&node.ns("ok")).await.unwrap();
        assert_eq!(bridge_ports().len(), 1);
        cni.del("pod-h", &ok).await.expect("DEL without the netns");
        assert_eq!(bridge_ports(), Vec::<String>::new());
        assert!(!node.reserved().contains(&ip));
        drop(held);

        // And when the namespace itself is gone (its veth went with it).
        let gone = node.pod("gone").await;
        cni.add("pod-g", &gone, &[]).await.expect("ADD g");
        netns::delete(&node.ns("gone")).await.unwrap();
        cni.del("pod-g", &gone).await.expect("DEL of a gone netns");
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
        assert!(!node.cached("pod-g"));
    });
}

/// Serves one connection from inside a pod's namespace: answers `hi`.
fn serve_once(netns: &Path, port: u16) -> std::thread::JoinHandle<()> {
    let netns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let f = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"hi");
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("listening");
    server
}

#[test]
#[ignore = "needs root"]
fn host_ports_on_both_paths() {
    on_node("p", "10.250.11.0/24", async |node: Node| {
        let gw = Ipv4Addr::new(10, 250, 11, 1);
        for (i, network) in [Network::Builtin, Network::Plugins].into_iter().enumerate() {
            let cni = node.cni(network);
            let pod = node.pod(&format!("hp{i}")).await;
            let host_port = 18080 + i as u16;
            let ports = [PortMapping {
                host_port,
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }];
            let id = format!("pod-hp{i}");
            cni.add(&id, &pod, &ports)
                .await
                .expect("ADD with a hostPort");
            let server = serve_once(&pod, 8080);
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((gw, host_port)),
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("{network}: connecting to the hostPort: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert_eq!(answer, "hi", "{network}");
            server.join().unwrap();
            let nat = run(&["iptables-save", "-t", "nat"]);
            assert!(nat.contains(&format!("--dport {host_port}")), "{nat}");
            cni.del(&id, &pod).await.expect("DEL with a hostPort");
            let nat = run(&["iptables-save", "-t", "nat"]);
            assert!(!nat.contains(&format!("--dport {host_port}")), "{nat}");
        }
        assert_eq!(node.reserved(), Vec::<Ipv4Addr>::new());
    });
}
