//! Golden tests of the generated rules: every feature's iptables-restore input and nft
//! script, compared with `tests/golden/*.txt`. `UPDATE_GOLDEN=1 cargo test -p skiff-proxy
//! --test golden` rewrites the files; review the diff before committing.

mod fixtures;

use std::collections::BTreeSet;
use std::path::Path;

use fixtures::{seed_service, seed_slice, service, slice};
use k8s_openapi::api::core::v1::{ClientIPConfig, Service, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_proxy::iptables;
use skiff_proxy::model::{build, changes, RuleConfig};
use skiff_proxy::nft::{self, NftState, SyncKind};

const NODE: &str = "k8s-n1";

/// The node both generators write for.
fn cfg() -> RuleConfig {
    RuleConfig {
        cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
        masquerade_bit: 14,
        node_ips: vec!["192.168.64.11".parse().expect("ip")],
    }
}

fn iptables_text(services: &[Service], slices: &[EndpointSlice]) -> String {
    let (ports, _) = build(services, slices, NODE);
    iptables::render(&iptables::generate(&ports, &cfg()), None, &BTreeSet::new())
}

fn nft_text(services: &[Service], slices: &[EndpointSlice]) -> String {
    let (ports, _) = build(services, slices, NODE);
    nft::render(
        &nft::generate(&ports, &cfg()),
        &NftState::default(),
        SyncKind::Fresh,
        &cfg(),
    )
}

/// Compares with `tests/golden/<name>`.
#[track_caller]
fn check(name: &str, actual: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    skiff_testkit::golden::check(dir.join(name), actual);
}

fn golden(name: &str, services: &[Service], slices: &[EndpointSlice]) {
    check(
        &format!("{name}.iptables.txt"),
        &iptables_text(services, slices),
    );
    check(&format!("{name}.nft.txt"), &nft_text(services, slices));
}

fn two_node_slice(ns: &str, svc: &str, ports: &[(&str, i32, &str)]) -> EndpointSlice {
    slice(
        ns,
        svc,
        &format!("{svc}-x1"),
        ports,
        &[
            ("10.244.1.5", "k8s-n1", true, true, false),
            ("10.244.2.5", "k8s-n2", true, true, false),
        ],
    )
}

#[test]
fn seed_lines_exactly() {
    let text = iptables_text(&[seed_service()], &[seed_slice()]);
    let lines: Vec<&str> = text.lines().collect();
    // The seed shows 1/3 as "0.33332999982" (kube-proxy 1.12 wrote 5 decimals); modern
    // kube-proxy writes 10 decimals, which iptables-save prints as below.
    let seed = [
        r#"-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.110.212.171/32 -p tcp -m comment --comment "default/httpd-svc: cluster IP" -m tcp --dport 8080 -j KUBE-MARK-MASQ"#,
        r#"-A KUBE-SERVICES -d 10.110.212.171/32 -p tcp -m comment --comment "default/httpd-svc: cluster IP" -m tcp --dport 8080 -j KUBE-SVC-RL3JAE4GN7VOGDGP"#,
        "-A KUBE-SVC-RL3JAE4GN7VOGDGP -m statistic --mode random --probability 0.25000000000 -j KUBE-SEP-R5YBMKYSG56R4KDU",
        "-A KUBE-SVC-RL3JAE4GN7VOGDGP -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-7G5ANBWSVVLRNZAH",
        "-A KUBE-SVC-RL3JAE4GN7VOGDGP -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2PT6QZGNQHS4OL4I",
        "-A KUBE-SVC-RL3JAE4GN7VOGDGP -j KUBE-SEP-I4PXZ6UARQLLOV4E",
    ];
    for l in seed {
        assert!(lines.contains(&l), "missing seed line:\n{l}\nin:\n{text}");
    }
    // The KUBE-SVC chain is exactly those four rules, in that order.
    let svc: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("-A KUBE-SVC-RL3JAE4GN7VOGDGP "))
        .collect();
    assert_eq!(svc, seed[2..]);
    assert!(lines.contains(&"-A KUBE-SEP-R5YBMKYSG56R4KDU -s 10.244.1.101/32 -m comment --comment \"default/httpd-svc:\" -j KUBE-MARK-MASQ"));
    assert!(lines.contains(&"-A KUBE-SEP-R5YBMKYSG56R4KDU -p tcp -m comment --comment \"default/httpd-svc:\" -m tcp -j DNAT --to-destination 10.244.1.101:80"));
    golden("seed", &[seed_service()], &[seed_slice()]);
}

#[test]
fn nodeport() {
    let svc = service(
        "default",
        "httpd-svc",
        "NodePort",
        "10.110.212.171",
        &[("", 8080, "TCP", 31688)],
    );
    golden("nodeport", &[svc], &[seed_slice()]);
}

#[test]
fn external_ips() {
    let mut svc = seed_service();
    svc.spec.as_mut().expect("spec").external_ips = Some(vec!["203.0.113.10".into()]);
    golden("external-ips", &[svc], &[seed_slice()]);
}

#[test]
fn load_balancer() {
    let svc = service(
        "default",
        "web",
        "LoadBalancer",
        "10.96.0.80",
        &[("http", 80, "TCP", 30080)],
    );
    let svc = fixtures::with_lb_ingress(svc, &["192.168.64.11", "192.168.64.12"]);
    let mut ranged = service(
        "default",
        "fw",
        "LoadBalancer",
        "10.96.0.81",
        &[("http", 80, "TCP", 30081)],
    );
    ranged
        .spec
        .as_mut()
        .expect("spec")
        .load_balancer_source_ranges = Some(vec!["192.168.64.0/24".into()]);
    let ranged = fixtures::with_lb_ingress(ranged, &["192.168.64.100"]);
    golden(
        "load-balancer",
        &[svc, ranged],
        &[
            two_node_slice("default", "web", &[("http", 80, "TCP")]),
            two_node_slice("default", "fw", &[("http", 80, "TCP")]),
        ],
    );
}

#[test]
fn session_affinity() {
    let mut svc = seed_service();
    let spec = svc.spec.as_mut().expect("spec");
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(10800),
        }),
    });
    golden(
        "session-affinity",
        &[svc],
        &[two_node_slice("default", "httpd-svc", &[("", 80, "TCP")])],
    );
}

#[test]
fn external_traffic_policy_local() {
    let mut svc = service(
        "default",
        "etp",
        "NodePort",
        "10.96.0.90",
        &[("", 80, "TCP", 30090)],
    );
    svc.spec.as_mut().expect("spec").external_traffic_policy = Some("Local".into());
    // A second one whose endpoints are all on another node: external traffic is dropped.
    let mut remote = service(
        "default",
        "etp-remote",
        "NodePort",
        "10.96.0.91",
        &[("", 80, "TCP", 30091)],
    );
    remote.spec.as_mut().expect("spec").external_traffic_policy = Some("Local".into());
    let remote_slice = slice(
        "default",
        "etp-remote",
        "etp-remote-1",
        &[("", 80, "TCP")],
        &[("10.244.2.9", "k8s-n2", true, true, false)],
    );
    golden(
        "etp-local",
        &[svc, remote],
        &[
            two_node_slice("default", "etp", &[("", 80, "TCP")]),
            remote_slice,
        ],
    );
}

#[test]
fn internal_traffic_policy_local() {
    let mut svc = service(
        "default",
        "itp",
        "ClusterIP",
        "10.96.0.92",
        &[("", 80, "TCP", 0)],
    );
    svc.spec.as_mut().expect("spec").internal_traffic_policy = Some("Local".into());
    let mut remote = service(
        "default",
        "itp-remote",
        "ClusterIP",
        "10.96.0.93",
        &[("", 80, "TCP", 0)],
    );
    remote.spec.as_mut().expect("spec").internal_traffic_policy = Some("Local".into());
    let remote_slice = slice(
        "default",
        "itp-remote",
        "itp-remote-1",
        &[("", 80, "TCP")],
        &[("10.244.2.9", "k8s-n2", true, true, false)],
    );
    golden(
        "itp-local",
        &[svc, remote],
        &[
            two_node_slice("default", "itp", &[("", 80, "TCP")]),
            remote_slice,
        ],
    );
}

#[test]
fn no_endpoints() {
    let svc = service(
        "default",
        "x",
        "NodePort",
        "10.96.0.100",
        &[("", 80, "TCP", 30100)],
    );
    let mut ext = service(
        "default",
        "y",
        "ClusterIP",
        "10.96.0.101",
        &[("", 80, "TCP", 0)],
    );
    ext.spec.as_mut().expect("spec").external_ips = Some(vec!["203.0.113.11".into()]);
    // Endpoints that are neither ready nor serving do not count.
    let dead = slice(
        "default",
        "x",
        "x-1",
        &[("", 80, "TCP")],
        &[("10.244.1.7", "k8s-n1", false, false, false)],
    );
    golden("no-endpoints", &[svc, ext], &[dead]);
}

#[test]
fn terminating_fallback() {
    let svc = service(
        "default",
        "t",
        "ClusterIP",
        "10.96.0.110",
        &[("", 80, "TCP", 0)],
    );
    let s = slice(
        "default",
        "t",
        "t-1",
        &[("", 80, "TCP")],
        &[
            ("10.244.1.8", "k8s-n1", false, true, true),
            ("10.244.2.8", "k8s-n2", false, false, true),
        ],
    );
    golden("terminating-fallback", &[svc], &[s]);
}

#[test]
fn udp() {
    let svc = service(
        "kube-system",
        "kube-dns",
        "ClusterIP",
        "10.96.0.10",
        &[("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0)],
    );
    let s = two_node_slice(
        "kube-system",
        "kube-dns",
        &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
    );
    golden("udp", &[svc], &[s]);
}

#[test]
fn sctp() {
    let svc = service(
        "default",
        "s",
        "ClusterIP",
        "10.96.0.120",
        &[("", 9999, "SCTP", 0)],
    );
    golden(
        "sctp",
        &[svc],
        &[two_node_slice("default", "s", &[("", 9999, "SCTP")])],
    );
}

#[test]
fn multiple_ports() {
    let svc = service(
        "default",
        "multi",
        "NodePort",
        "10.96.0.130",
        &[("http", 80, "TCP", 30130), ("https", 443, "TCP", 30131)],
    );
    let s = two_node_slice(
        "default",
        "multi",
        &[("http", 8080, "TCP"), ("https", 8443, "TCP")],
    );
    golden("multiple-ports", &[svc], &[s]);
}

#[test]
fn headless_and_external_name_have_no_rules() {
    let headless = service("default", "h", "ClusterIP", "None", &[("", 80, "TCP", 0)]);
    let mut ext = service("default", "e", "ExternalName", "", &[]);
    ext.spec.as_mut().expect("spec").external_name = Some("example.com".into());
    let s = two_node_slice("default", "h", &[("", 80, "TCP")]);
    let empty_ipt = iptables_text(&[], &[]);
    assert_eq!(
        iptables_text(&[headless.clone(), ext.clone()], std::slice::from_ref(&s)),
        empty_ipt
    );
    assert_eq!(
        nft_text(&[headless.clone(), ext.clone()], std::slice::from_ref(&s)),
        nft_text(&[], &[])
    );
    golden("empty", &[headless, ext], &[s]);
}

fn other_service() -> Service {
    service(
        "default",
        "other",
        "ClusterIP",
        "10.96.0.140",
        &[("", 80, "TCP", 0)],
    )
}

#[test]
fn full_sync_transactions_hold_the_same_rules() {
    let udp = service(
        "kube-system",
        "kube-dns",
        "NodePort",
        "10.96.0.10",
        &[("dns", 53, "UDP", 30053)],
    );
    let services = [seed_service(), udp];
    let slices = [
        seed_slice(),
        two_node_slice("kube-system", "kube-dns", &[("dns", 53, "UDP")]),
    ];
    let (ports, _) = build(&services, &slices, NODE);
    let frags: Vec<_> = ports
        .values()
        .map(|sp| iptables::port_rules(sp, &cfg()))
        .collect();
    let existing = BTreeSet::from([
        "KUBE-SVC-GONEGONEGONEGONE".to_string(),
        "KUBE-SERVICES".to_string(),
    ]);
    let txs = iptables::render_full(frags.iter(), &existing, &cfg());
    let sorted = |text: &str| {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let single = iptables::render(&iptables::generate(&ports, &cfg()), None, &BTreeSet::new());
    assert_eq!(sorted(&txs.concat()), sorted(&single));
    let last = txs.last().expect("transactions");
    assert_eq!(last, "*nat\n-X KUBE-SVC-GONEGONEGONEGONE\nCOMMIT\n");
    check(
        "full-transactions.iptables.txt",
        &txs.join("# --- next transaction ---\n"),
    );
}

#[test]
fn partial_sync_rewrites_only_changed_chains() {
    let other_slice = two_node_slice("default", "other", &[("", 80, "TCP")]);
    let (before, _) = build(
        &[seed_service(), other_service()],
        &[seed_slice(), other_slice.clone()],
        NODE,
    );
    let mut changed = seed_slice();
    changed
        .endpoints
        .retain(|e| e.addresses[0] != "10.244.2.35");
    // The other service goes away in the same sync.
    let (after, _) = build(&[seed_service()], &[changed], NODE);
    let frag = |sp: Option<&skiff_proxy::model::ServicePort>| {
        sp.map(|sp| iptables::port_rules(sp, &cfg()))
    };
    let frags: Vec<_> = changes(&before, &after)
        .into_iter()
        .map(|(o, n)| (frag(o), frag(n)))
        .collect();
    let refs: Vec<_> = frags
        .iter()
        .map(|(a, b)| (a.as_ref(), b.as_ref()))
        .collect();
    let text = iptables::render_partial(&refs);
    assert!(text.contains("-X KUBE-SEP-2PT6QZGNQHS4OL4I"), "{text}");
    assert!(
        !text.contains(":KUBE-SEP-R5YBMKYSG56R4KDU"),
        "unchanged endpoint chain rewritten:\n{text}"
    );
    assert!(
        !text.contains(":KUBE-SERVICES"),
        "dispatch chain flushed:\n{text}"
    );
    assert!(
        text.contains("-D KUBE-SERVICES -d 10.96.0.140/32"),
        "{text}"
    );
    check("partial.iptables.txt", &text);

    let nb = nft::generate(&before, &cfg());
    let na = nft::generate(&after, &cfg());
    check(
        "partial.nft.txt",
        &nft::render(&na, &nb, SyncKind::Partial, &cfg()),
    );
}
