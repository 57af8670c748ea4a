//! Integration tests as root: real rules in network namespaces the tests create.
//!
//! Topology per test: a "node" namespace with a bridge `br0` (10.244.1.1/24) and two
//! "pod" namespaces (10.244.1.101 and .102) serving their own name over HTTP with
//! busybox httpd, plus a "client" namespace (192.168.77.2) outside the pod network,
//! reaching the node at 192.168.77.1. Everything is removed on drop, also on failure.

mod fixtures;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use fixtures::{seed_service, service, slice};
use k8s_openapi::api::core::v1::{ClientIPConfig, Service, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_proxy::metrics::Metrics;
use skiff_proxy::model::{build, RuleConfig};
use skiff_proxy::runner::Exec;
use skiff_proxy::sync::{drive, Engine, EngineConfig};
use skiff_proxy::watch::Cache;
use skiff_proxy::ProxyMode;

const NODE: &str = "k8s-n1";
const CLUSTER_IP: &str = "10.110.212.171";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_ok(cmd: &str) -> Option<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Topology {
    node: String,
    pods: Vec<String>,
    client: String,
    dir: String,
    servers: Vec<Child>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.pods.iter().chain([&self.client, &self.node]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let base = format!("skt-{}-{tag}", std::process::id());
        let mut t = Topology {
            node: format!("{base}-n"),
            pods: vec![format!("{base}-p1"), format!("{base}-p2")],
            client: format!("{base}-c"),
            dir: format!("/tmp/{base}"),
            servers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for ns in t.pods.iter().chain([&t.client, &t.node]) {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        let n = &t.node;
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 && \
             ip -n {n} link add br0 type bridge && ip -n {n} addr add 10.244.1.1/24 dev br0 && ip -n {n} link set br0 up"
        ));
        for (i, p) in t.pods.iter().enumerate() {
            let ip = format!("10.244.1.{}", 101 + i);
            sh(&format!(
                "ip -n {n} link add vp{i} type veth peer name eth0 netns {p} && \
                 ip -n {n} link set vp{i} master br0 up && \
                 ip -n {n} link set vp{i} type bridge_slave hairpin on && \
                 ip -n {p} addr add {ip}/24 dev eth0 && ip -n {p} link set eth0 up && \
                 ip -n {p} route add default via 10.244.1.1"
            ));
            let root = format!("{}/p{}", t.dir, i + 1);
            std::fs::create_dir_all(&root).expect("web root");
            std::fs::write(format!("{root}/index.html"), format!("pod{}\n", i + 1)).expect("page");
            let child = Command::new("ip")
                .args([
                    "netns", "exec", p, "busybox", "httpd", "-f", "-p", "80", "-h", &root,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start busybox httpd");
            t.servers.push(child);
        }
        let c = &t.client;
        sh(&format!(
            "ip -n {n} link add vc type veth peer name eth0 netns {c} && \
             ip -n {n} addr add 192.168.77.1/24 dev vc && ip -n {n} link set vc up && \
             ip -n {c} addr add 192.168.77.2/24 dev eth0 && ip -n {c} link set eth0 up && \
             ip -n {c} route add default via 192.168.77.1 && \
             ip -n {n} route add default via 192.168.77.2"
        ));
        for i in 0..2 {
            let ip = format!("10.244.1.{}", 101 + i);
            wait_for(&format!("pod {ip} serving"), || {
                t.curl_from(&t.node.clone(), &format!("{ip}:80"))
            });
        }
        t
    }

    /// Asserts that a connection from `ns` to `addr` is refused at once (a Service
    /// without endpoints), not left to time out.
    fn assert_refused(&self, ns: &str, addr: &str) {
        let start = Instant::now();
        let status = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-s", "--max-time", "5"])
            .arg(format!("http://{addr}/"))
            .status()
            .expect("curl");
        assert_eq!(status.code(), Some(7), "expected connection refused");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "refusal took long"
        );
    }

    fn runner(&self) -> Exec {
        Exec::with_prefix(vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.node.clone(),
        ])
    }

    fn engine(&self, mode: ProxyMode) -> Engine {
        Engine::new(
            EngineConfig {
                mode,
                rules: RuleConfig {
                    cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
                    masquerade_bit: 14,
                    node_ips: vec!["192.168.77.1".parse().expect("ip")],
                },
                sync_period: Duration::from_secs(3600),
            },
            Arc::new(self.runner()),
            Metrics::default(),
        )
    }

    /// The page served at `addr` (host:port) from namespace `ns`, if it answers.
    fn curl_from(&self, ns: &str, addr: &str) -> Option<String> {
        sh_ok(&format!(
            "ip netns exec {ns} curl -s --max-time 2 http://{addr}/"
        ))
        .map(|s| s.trim().to_string())
    }

    fn iptables_save(&self, table: &str) -> String {
        sh(&format!(
            "ip netns exec {} iptables-save -t {table}",
            self.node
        ))
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
}

impl Topology {
    /// Starts a UDP responder on port 53 in each pod, answering with the pod's name.
    fn start_udp_responders(&mut self) {
        for (i, p) in self.pods.clone().into_iter().enumerate() {
            let stop = self.stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            self.threads.push(std::thread::spawn(move || {
                enter(&p);
                let sock = UdpSocket::bind("0.0.0.0:53").expect("bind udp");
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let _ = tx.send(());
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(format!("pod{}", i + 1).as_bytes(), from);
                    }
                }
            }));
            rx.recv_timeout(Duration::from_secs(5))
                .expect("udp responder started");
        }
    }

    /// Sends one datagram from the node (always from source port 40000, so conntrack
    /// sees one flow) to `addr` and returns the answer.
    fn udp_ask(&self, addr: &str) -> Option<String> {
        let node = self.node.clone();
        let addr = addr.to_string();
        std::thread::spawn(move || {
            enter(&node);
            let sock = UdpSocket::bind("0.0.0.0:40000").ok()?;
            sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            sock.send_to(b"q", &addr).ok()?;
            let mut buf = [0u8; 64];
            let (n, _) = sock.recv_from(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .join()
        .ok()
        .flatten()
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Both pods of the topology as the endpoints of `ns/svc`, on this node.
fn pods_slice(ns: &str, svc: &str, ports: &[(&str, i32, &str)]) -> EndpointSlice {
    slice(
        ns,
        svc,
        &format!("{svc}-1"),
        ports,
        &[
            ("10.244.1.101", NODE, true, true, false),
            ("10.244.1.102", NODE, true, true, false),
        ],
    )
}

/// `default/sticky` (10.96.5.6:80) with ClientIP affinity for 600 s.
fn sticky_service() -> Service {
    let mut sticky = service(
        "default",
        "sticky",
        "ClusterIP",
        "10.96.5.6",
        &[("", 80, "TCP", 0)],
    );
    let spec = sticky.spec.as_mut().expect("spec");
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(600),
        }),
    });
    sticky
}

fn ports(services: &[Service], slices: &[EndpointSlice]) -> skiff_proxy::model::ServicePortMap {
    build(services, slices, NODE).0
}

/// Sends `n` requests to `addr` from `ns` and counts the answers per pod.
fn spread(t: &Topology, ns: &str, addr: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let page = t
            .curl_from(ns, addr)
            .unwrap_or_else(|| panic!("no answer from {addr} in {ns}"));
        *seen.entry(page).or_insert(0) += 1;
    }
    seen
}

/// The saved rules with kube-proxy's MARK spellings normalised to the kernel's.
fn normalise(rule: &str) -> String {
    rule.replace("--or-mark 0x4000", "--set-xmark 0x4000/0x4000")
        .replace("--xor-mark 0x4000", "--set-xmark 0x4000/0x0")
        .replace("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable")
}

#[tokio::test]
async fn iptables_seed_rules_traffic_partial_sync_and_canary() {
    let t = Topology::new("ipt");
    let mut engine = t.engine(ProxyMode::Iptables);
    let svc = seed_service();
    let slices = [pods_slice("default", "httpd-svc", &[("", 80, "TCP")])];
    let report = engine
        .sync(&ports(std::slice::from_ref(&svc), &slices), false)
        .await
        .expect("full sync");
    assert!(report.full);

    // Every generated rule is in the kernel exactly as written (modulo MARK spelling).
    let saved = format!("{}{}", t.iptables_save("filter"), t.iptables_save("nat"));
    for line in report.input.lines().filter(|l| l.starts_with("-A ")) {
        assert!(
            saved.lines().any(|s| s == normalise(line)),
            "rule not in iptables-save:\n{line}\n---\n{saved}"
        );
    }
    let nat = t.iptables_save("nat");
    for l in [
        format!("-A KUBE-SERVICES ! -s 10.244.0.0/16 -d {CLUSTER_IP}/32 -p tcp -m comment --comment \"default/httpd-svc: cluster IP\" -m tcp --dport 8080 -j KUBE-MARK-MASQ"),
        format!("-A KUBE-SERVICES -d {CLUSTER_IP}/32 -p tcp -m comment --comment \"default/httpd-svc: cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-RL3JAE4GN7VOGDGP"),
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string(),
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string(),
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".to_string(),
    ] {
        assert!(nat.lines().any(|s| s == l), "missing {l}\n{nat}");
    }
    // The canaries and jumps are recognised in the kernel's own spelling: a second full
    // sync adds none of them again.
    let all = sh(&format!("ip netns exec {} iptables-save", t.node));
    assert_eq!(skiff_proxy::iptables::render_base(&all), None, "{all}");
    let again = engine
        .sync(&ports(std::slice::from_ref(&svc), &slices), true)
        .await
        .expect("second full sync");
    assert!(!again.input.contains("-I "), "{}", again.input);
    let nat = t.iptables_save("nat");
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING "))
        .count();
    assert_eq!(jumps, 1, "{nat}");

    // Traffic to the cluster IP reaches both pods, from the node and from outside.
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 30);
    assert_eq!(seen.len(), 2, "answers: {seen:?}");
    let counts = t.iptables_save("nat");
    let dnat_counts: Vec<&str> = counts.lines().filter(|l| l.contains("-j DNAT")).collect();
    assert_eq!(dnat_counts.len(), 2);

    // A pod reaches itself through its own Service (hairpin, masqueraded).
    let self_seen = spread(&t, &t.pods[0], &format!("{CLUSTER_IP}:8080"), 12);
    assert_eq!(self_seen.len(), 2, "hairpin answers: {self_seen:?}");

    // Partial sync: one endpoint goes away; only its chains change.
    let one = [slice(
        "default",
        "httpd-svc",
        "httpd-svc-1",
        &[("", 80, "TCP")],
        &[("10.244.1.102", NODE, true, true, false)],
    )];
    let report = engine
        .sync(&ports(std::slice::from_ref(&svc), &one), false)
        .await
        .expect("partial sync");
    assert!(!report.full);
    assert!(report.input.contains("-X KUBE-SEP-"), "{}", report.input);
    assert!(!t.iptables_save("nat").contains("10.244.1.101:80"));
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 8);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["pod2"]);

    // Partial syncs that add a service (rules inserted into KUBE-SERVICES) and remove
    // it again (rules deleted, chains removed).
    let extra = service(
        "default",
        "extra",
        "ClusterIP",
        "10.96.9.9",
        &[("", 80, "TCP", 0)],
    );
    let mut with_extra = one.to_vec();
    with_extra.push(pods_slice("default", "extra", &[("", 80, "TCP")]));
    let report = engine
        .sync(&ports(&[svc.clone(), extra], &with_extra), false)
        .await
        .expect("add a service");
    assert!(
        !report.full && report.input.contains("-I KUBE-SERVICES 1 "),
        "{}",
        report.input
    );
    assert!(t.curl_from(&t.node, "10.96.9.9:80").is_some());
    let nat = t.iptables_save("nat");
    let services: Vec<&str> = nat
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SERVICES "))
        .collect();
    assert!(
        services
            .last()
            .is_some_and(|l| l.contains("-j KUBE-NODEPORTS")),
        "{nat}"
    );
    engine
        .sync(&ports(std::slice::from_ref(&svc), &one), false)
        .await
        .expect("remove it");
    let nat = t.iptables_save("nat");
    assert!(
        !nat.contains("10.96.9.9") && !nat.contains("default/extra"),
        "{nat}"
    );

    // Someone flushes everything: the canary notices and a full sync repairs it.
    sh(&format!(
        "ip netns exec {n} iptables -t nat -F && ip netns exec {n} iptables -t nat -X",
        n = t.node
    ));
    assert!(t
        .curl_from(&t.node, &format!("{CLUSTER_IP}:8080"))
        .is_none());
    assert!(engine.check_canary().await, "canary loss not detected");
    let report = engine
        .sync(&ports(&[svc], &one), false)
        .await
        .expect("resync");
    assert!(report.full);
    assert_eq!(
        t.curl_from(&t.node, &format!("{CLUSTER_IP}:8080"))
            .as_deref(),
        Some("pod2")
    );
    assert!(!engine.check_canary().await);
}

#[tokio::test]
async fn iptables_nodeport_affinity_and_no_endpoints() {
    let t = Topology::new("np");
    let mut engine = t.engine(ProxyMode::Iptables);
    let np = service(
        "default",
        "web",
        "NodePort",
        "10.96.5.5",
        &[("", 80, "TCP", 31688)],
    );
    let sticky = sticky_service();
    let empty = service(
        "default",
        "empty",
        "ClusterIP",
        "10.96.5.7",
        &[("", 80, "TCP", 0)],
    );
    let slices = [
        pods_slice("default", "web", &[("", 80, "TCP")]),
        pods_slice("default", "sticky", &[("", 80, "TCP")]),
    ];
    engine
        .sync(&ports(&[np, sticky, empty], &slices), false)
        .await
        .expect("sync");

    // The node port answers on the node's address, from outside and from the node.
    let seen = spread(&t, &t.client, "192.168.77.1:31688", 20);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(t.curl_from(&t.node, "192.168.77.1:31688").is_some());
    assert!(
        t.curl_from(&t.node, "10.244.1.1:31688").is_some(),
        "node port on the bridge address"
    );

    // ClientIP affinity sticks to one pod.
    let seen = spread(&t, &t.client, "10.96.5.6:80", 10);
    assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");

    // No endpoints: refused at once, not a timeout.
    t.assert_refused(&t.node, "10.96.5.7:80");
}

#[tokio::test]
async fn nftables_traffic_partial_sync_and_no_endpoints() {
    let t = Topology::new("nft");
    let mut engine = t.engine(ProxyMode::Nftables);
    let np = service(
        "default",
        "httpd-svc",
        "NodePort",
        CLUSTER_IP,
        &[("", 8080, "TCP", 31688)],
    );
    let empty = service(
        "default",
        "empty",
        "ClusterIP",
        "10.96.5.7",
        &[("", 80, "TCP", 0)],
    );
    let slices = [pods_slice("default", "httpd-svc", &[("", 80, "TCP")])];
    let report = engine
        .sync(&ports(&[np.clone(), empty.clone()], &slices), false)
        .await
        .expect("fresh sync");
    assert!(report.full);
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 30);
    assert_eq!(seen.len(), 2, "{seen:?}");
    let seen = spread(&t, &t.client, "192.168.77.1:31688", 20);
    assert_eq!(seen.len(), 2, "{seen:?}");
    let self_seen = spread(&t, &t.pods[1], &format!("{CLUSTER_IP}:8080"), 12);
    assert_eq!(self_seen.len(), 2, "hairpin: {self_seen:?}");
    t.assert_refused(&t.node, "10.96.5.7:80");

    // Partial: drop one endpoint; then the empty service gains it.
    let one = [
        slice(
            "default",
            "httpd-svc",
            "httpd-svc-1",
            &[("", 80, "TCP")],
            &[("10.244.1.102", NODE, true, true, false)],
        ),
        slice(
            "default",
            "empty",
            "empty-1",
            &[("", 80, "TCP")],
            &[("10.244.1.101", NODE, true, true, false)],
        ),
    ];
    let report = engine
        .sync(&ports(&[np.clone(), empty.clone()], &one), false)
        .await
        .expect("partial sync");
    assert!(!report.full);
    assert!(!report.input.contains("add table"), "{}", report.input);
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 8);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["pod2"]);
    assert_eq!(
        t.curl_from(&t.node, "10.96.5.7:80").as_deref(),
        Some("pod1")
    );

    // Recreating the table keeps everything working; deleting the services empties it.
    engine.invalidate();
    engine
        .sync(&ports(&[np, empty], &one), false)
        .await
        .expect("full");
    assert_eq!(
        t.curl_from(&t.node, "10.96.5.7:80").as_deref(),
        Some("pod1")
    );
    // A partial sync flushes the chains it no longer uses; the next full one deletes
    // them.
    let list = || {
        sh(&format!(
            "ip netns exec {} nft list table ip kube-proxy",
            t.node
        ))
    };
    engine
        .sync(&ports(&[], &[]), false)
        .await
        .expect("delete all");
    let listing = list();
    assert!(
        !listing.contains("dnat to"),
        "service rules left:\n{listing}"
    );
    assert!(!listing.contains("10.110.212.171"), "{listing}");
    engine
        .sync(&ports(&[], &[]), true)
        .await
        .expect("full sync");
    let listing = list();
    assert!(
        !listing.contains("default/"),
        "service chains left:\n{listing}"
    );
}

/// Asserts that a sync's nft script wrote endpoint map `map` anew.
fn assert_rewrites(report: &skiff_proxy::sync::SyncReport, map: &str) {
    assert!(
        report
            .input
            .contains(&format!("flush map ip kube-proxy {map}\n")),
        "{}",
        report.input
    );
}

/// Services share the endpoint maps (64 picks a map): an endpoint change of one rewrites
/// its map whole, with the other services' elements, and writes no rule.
#[tokio::test]
async fn nftables_endpoint_maps_shared_by_many_services() {
    let t = Topology::new("nfm");
    let mut engine = t.engine(ProxyMode::Nftables);
    // 63 services with unreachable endpoints, then the real one: 64 picks, one map.
    let (mut services, mut slices) = fixtures::many(63);
    services.push(seed_service());
    slices.push(pods_slice("default", "httpd-svc", &[("", 80, "TCP")]));
    engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("fresh sync");
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 30);
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Another service of the same map loses an endpoint.
    slices[0].endpoints.pop();
    let report = engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("partial sync");
    assert!(!report.full);
    assert!(!report.input.contains("add chain"), "{}", report.input);
    assert_rewrites(&report, "endpoints-tcp-0");
    assert!(
        report.input.contains("10.244.1.102 . 80"),
        "{}",
        report.input
    );
    let listing = sh(&format!(
        "ip netns exec {} nft list map ip kube-proxy endpoints-tcp-0",
        t.node
    ));
    assert_eq!(listing.matches(" . 8080").count(), 62 * 5 + 4, "{listing}");
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 30);
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The real service loses all its endpoints (refused), then gets them back alone.
    let real = slices.pop().expect("real slice");
    engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("no endpoints");
    t.assert_refused(&t.node, &format!("{CLUSTER_IP}:8080"));
    slices.push(real);
    let report = engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("endpoints back");
    assert_rewrites(&report, "endpoints-tcp-0");
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 30);
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A 65th pick opens the next map; deleting it leaves that map empty.
    let (more, more_slices) = fixtures::many(64);
    services.push(more[63].clone());
    slices.push(more_slices[63].clone());
    let report = engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("one more");
    assert!(report.input.contains("endpoints-tcp-1"), "{}", report.input);
    services.pop();
    slices.pop();
    engine
        .sync(&ports(&services, &slices), false)
        .await
        .expect("one less");
    let listing = sh(&format!(
        "ip netns exec {} nft list map ip kube-proxy endpoints-tcp-1",
        t.node
    ));
    assert!(!listing.contains("elements"), "{listing}");
    let seen = spread(&t, &t.node, &format!("{CLUSTER_IP}:8080"), 10);
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn nftables_affinity_across_partial_syncs() {
    let t = Topology::new("nfa");
    let mut engine = t.engine(ProxyMode::Nftables);
    let sticky = sticky_service();
    let both = [pods_slice("default", "sticky", &[("", 80, "TCP")])];
    engine
        .sync(&ports(std::slice::from_ref(&sticky), &both), false)
        .await
        .expect("fresh sync");
    let seen = spread(&t, &t.client, "10.96.5.6:80", 10);
    assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");
    let first = seen.keys().next().expect("a pod").clone();
    let first_ip = if first == "pod1" {
        "10.244.1.101"
    } else {
        "10.244.1.102"
    };
    let only = [slice(
        "default",
        "sticky",
        "sticky-1",
        &[("", 80, "TCP")],
        &[(first_ip, NODE, true, true, false)],
    )];
    // The other pod leaves and comes back (partial syncs rewrite the service chain,
    // which refers to the affinity sets), then a full sync deletes what was left: the
    // client stays with its pod throughout.
    for (slices, full) in [(&only, false), (&both, false), (&both, true)] {
        let report = engine
            .sync(&ports(std::slice::from_ref(&sticky), slices), full)
            .await
            .expect("sync");
        assert_eq!(report.full, full);
        let seen = spread(&t, &t.client, "10.96.5.6:80", 6);
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            [&first],
            "{}",
            report.input
        );
    }
}

/// externalTrafficPolicy and internalTrafficPolicy Local keep traffic on the node: pod1
/// is on this node, pod2 is declared on another one (it is reachable here, so a wrong
/// rule would show as answers from pod2).
#[tokio::test]
async fn local_policy_keeps_traffic_on_the_node() {
    for (mode, tag) in [(ProxyMode::Iptables, "lpi"), (ProxyMode::Nftables, "lpn")] {
        let t = Topology::new(tag);
        let mut engine = t.engine(mode);
        let mut etp = service(
            "default",
            "etp",
            "NodePort",
            "10.96.5.8",
            &[("", 80, "TCP", 31690)],
        );
        etp.spec.as_mut().expect("spec").external_traffic_policy = Some("Local".into());
        let mut itp = service(
            "default",
            "itp",
            "ClusterIP",
            "10.96.5.9",
            &[("", 80, "TCP", 0)],
        );
        itp.spec.as_mut().expect("spec").internal_traffic_policy = Some("Local".into());
        let eps = [
            ("10.244.1.101", NODE, true, true, false),
            ("10.244.1.102", "k8s-n2", true, true, false),
        ];
        let slices = [
            slice("default", "etp", "etp-1", &[("", 80, "TCP")], &eps),
            slice("default", "itp", "itp-1", &[("", 80, "TCP")], &eps),
        ];
        engine
            .sync(&ports(&[etp, itp], &slices), false)
            .await
            .expect("sync");

        // From outside, the node port reaches only the local endpoint.
        let seen = spread(&t, &t.client, "192.168.77.1:31690", 12);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["pod1"], "{mode:?}");
        // The same Service's cluster IP (internal policy Cluster) reaches both.
        let seen = spread(&t, &t.node, "10.96.5.8:80", 24);
        assert_eq!(seen.len(), 2, "{mode:?}: {seen:?}");
        // internalTrafficPolicy Local: the cluster IP reaches only the local endpoint.
        let seen = spread(&t, &t.node, "10.96.5.9:80", 12);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["pod1"], "{mode:?}");
    }
}

#[tokio::test]
async fn udp_follows_a_replaced_endpoint() {
    for mode in [ProxyMode::Iptables, ProxyMode::Nftables] {
        let tag = if mode == ProxyMode::Iptables {
            "udpi"
        } else {
            "udpn"
        };
        let mut t = Topology::new(tag);
        t.start_udp_responders();
        let mut engine = t.engine(mode);
        let dns = service(
            "kube-system",
            "dns",
            "ClusterIP",
            "10.96.0.10",
            &[("dns", 53, "UDP", 0)],
        );
        let on = |ip: &str| {
            [slice(
                "kube-system",
                "dns",
                "dns-1",
                &[("dns", 53, "UDP")],
                &[(ip, NODE, true, true, false)],
            )]
        };
        // The flow sticks to pod1 (asked twice); then the endpoint is replaced while
        // pod1 still answers, so only the conntrack flush moves the flow to pod2.
        let steps: [(&str, &[&str]); 2] = [
            ("10.244.1.101", &["pod1", "pod1"]),
            ("10.244.1.102", &["pod2"]),
        ];
        for (endpoint, answers) in steps {
            engine
                .sync(&ports(std::slice::from_ref(&dns), &on(endpoint)), false)
                .await
                .expect("sync");
            for want in answers {
                assert_eq!(
                    t.udp_ask("10.96.0.10:53").as_deref(),
                    Some(*want),
                    "{mode:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_loop_follows_the_cache() {
    let t = Topology::new("loop");
    let cache = Cache::default();
    let metrics = Metrics::default();
    let engine = t.engine(ProxyMode::Iptables);
    let task = tokio::spawn({
        let (cache, metrics) = (cache.clone(), metrics.clone());
        async move {
            drive(
                cache,
                engine,
                NODE,
                Duration::from_secs(3600),
                Duration::from_millis(10),
                metrics,
            )
            .await
        }
    });
    // Nothing is written before both kinds are listed.
    cache.apply_service(seed_service());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!t.iptables_save("nat").contains(CLUSTER_IP));
    cache.apply_slice(pods_slice("default", "httpd-svc", &[("", 80, "TCP")]));
    cache.mark_synced();
    let addr = format!("{CLUSTER_IP}:8080");
    wait_for("the service to answer", || t.curl_from(&t.node, &addr));

    // An endpoint leaves: the loop notices the slice change and programs it.
    cache.apply_slice(slice(
        "default",
        "httpd-svc",
        "httpd-svc-1",
        &[("", 80, "TCP")],
        &[("10.244.1.102", NODE, true, true, false)],
    ));
    wait_for("the removed endpoint to disappear", || {
        (!t.iptables_save("nat").contains("10.244.1.101:80")).then_some(())
    });
    assert_eq!(
        spread(&t, &t.node, &addr, 5).keys().collect::<Vec<_>>(),
        ["pod2"]
    );
    assert!(metrics
        .render()
        .contains("kubeproxy_network_programming_duration_seconds_count 1"));

    // The Service is deleted: its rules go.
    cache.delete_service("default", "httpd-svc");
    wait_for("the service rules to go", || {
        (!t.iptables_save("nat").contains(CLUSTER_IP)).then_some(())
    });
    task.abort();
}

/// Every golden rule file (full iptables-restore input, fresh nft script) is accepted by
/// the real tools, so the golden tests check text the kernel takes.
#[test]
fn golden_files_apply_in_the_kernel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("")
            .to_string();
        // Partial inputs need the state they were computed against.
        if file.starts_with("partial") || file.starts_with("full-transactions") {
            continue;
        }
        let tool = if file.ends_with(".nft.txt") {
            "nft -f"
        } else if file.ends_with(".iptables.txt") {
            "iptables-restore --noflush"
        } else {
            continue;
        };
        let ns = format!("skt-{}-golden", std::process::id());
        sh(&format!("ip netns add {ns}"));
        let result = sh_ok(&format!(
            "ip netns exec {ns} {tool} {} 2>&1",
            path.display()
        ));
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        assert!(result.is_some(), "{file} rejected by {tool}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} golden files checked");
}
