//! Golden-style tests of the zone's answers: typed Services and EndpointSlices in,
//! responses rendered as text (one line per record, dig-like) out.

use super::*;
use crate::records::Change;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn port(name: &str, proto: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        protocol: Some(proto.into()),
        port,
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ip: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn headless(ns: &str, name: &str, publish_not_ready: bool) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            publish_not_ready_addresses: Some(publish_not_ready),
            ports: Some(vec![port("http", "TCP", 80)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// (address, ready, hostname)
fn slice(ns: &str, name: &str, svc: &str, eps: &[(&str, bool, Option<&str>)]) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, ready, host)| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                hostname: host.map(str::to_string),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(80),
            ..Default::default()
        }]),
    }
}

fn store() -> Records {
    let r = Records::new("cluster.local");
    r.apply(Change::ServicesReplaced(vec![
        cluster_ip(
            "default",
            "httpd-svc",
            "10.110.212.171",
            vec![port("http", "TCP", 8080)],
        ),
        cluster_ip(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            vec![port("dns", "UDP", 53), port("dns-tcp", "TCP", 53)],
        ),
        headless("apps", "web", false),
        headless("apps", "pnr", true),
        external("default", "ext", "Example.COM"),
        external("default", "alias", "httpd-svc.default.svc.cluster.local"),
    ]));
    r.apply(Change::SlicesReplaced(vec![
        slice(
            "apps",
            "web-abcde",
            "web",
            &[
                ("10.244.1.5", true, Some("web-0")),
                ("10.244.2.6", true, None),
                ("10.244.3.7", false, None),
            ],
        ),
        slice("apps", "pnr-xyz", "pnr", &[("10.244.4.8", false, None)]),
    ]));
    r
}

/// Renders a response: header line, then each section's records.
fn render(msg: &Message) -> String {
    let mut out = format!(
        "{}{}{}",
        msg.response_code(),
        if msg.authoritative() { " aa" } else { "" },
        if msg.truncated() { " tc" } else { "" }
    );
    for (label, recs) in [
        ("AN", msg.answers()),
        ("NS", msg.name_servers()),
        ("AD", msg.additionals()),
    ] {
        for r in recs {
            out.push_str(&format!(
                "\n{label} {} {} {} {}",
                r.name(),
                r.ttl(),
                r.record_type(),
                r.data()
            ));
        }
    }
    out
}

fn ask(r: &Records, name: &str, qtype: RecordType) -> Outcome {
    let req = request(7, Name::from_ascii(name).expect("name"), qtype);
    answer(r, 5, &req)
}

fn local(r: &Records, name: &str, qtype: RecordType) -> String {
    match ask(r, name, qtype) {
        Outcome::Local(m) => {
            assert_eq!(m.id(), 7);
            assert_eq!(m.queries()[0].name().to_ascii(), name, "question echoed");
            render(&m)
        }
        other => panic!("{name} {qtype}: expected a local answer, got {other:?}"),
    }
}

fn soa_line(serial: u32) -> String {
    format!("NS cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. {serial} 7200 1800 86400 5")
}

#[test]
fn cluster_ip_a_record_keeps_question_case() {
    let r = store();
    assert_eq!(
        local(&r, "HTTPD-Svc.Default.svc.Cluster.Local.", RecordType::A),
        "No Error aa\nAN HTTPD-Svc.Default.svc.Cluster.Local. 5 A 10.110.212.171"
    );
}

#[test]
fn aaaa_for_ipv4_service_is_nodata_with_soa() {
    let r = store();
    assert_eq!(
        local(&r, "httpd-svc.default.svc.cluster.local.", RecordType::AAAA),
        format!("No Error aa\n{}", soa_line(r.serial()))
    );
}

#[test]
fn missing_names_are_nxdomain_with_soa() {
    let r = store();
    for name in [
        "nope.default.svc.cluster.local.",
        "httpd-svc.nope.svc.cluster.local.",
        "x.httpd-svc.default.svc.cluster.local.",
        "foo.cluster.local.",
        "httpd-svc.default.cluster.local.",
    ] {
        assert_eq!(
            local(&r, name, RecordType::A),
            format!("Non-Existent Domain aa\n{}", soa_line(r.serial())),
            "{name}"
        );
    }
}

#[test]
fn empty_non_terminals_are_nodata() {
    let r = store();
    for name in [
        "default.svc.cluster.local.",
        "svc.cluster.local.",
        "apps.svc.cluster.local.",
        "_tcp.httpd-svc.default.svc.cluster.local.",
        "pod.cluster.local.",
        "apps.pod.cluster.local.",
    ] {
        assert_eq!(
            local(&r, name, RecordType::A),
            format!("No Error aa\n{}", soa_line(r.serial())),
            "{name}"
        );
    }
}

#[test]
fn srv_for_named_port_with_additional_a() {
    let r = store();
    assert_eq!(
        local(&r, "_http._tcp.httpd-svc.default.svc.cluster.local.", RecordType::SRV),
        "No Error aa\n\
         AN _http._tcp.httpd-svc.default.svc.cluster.local. 5 SRV 0 100 8080 httpd-svc.default.svc.cluster.local.\n\
         AD httpd-svc.default.svc.cluster.local. 5 A 10.110.212.171"
    );
    // The protocol label must match.
    assert!(local(
        &r,
        "_http._udp.httpd-svc.default.svc.cluster.local.",
        RecordType::SRV
    )
    .starts_with("Non-Existent"));
    assert_eq!(
        local(&r, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", RecordType::SRV),
        "No Error aa\n\
         AN _dns._udp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.\n\
         AD kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"
    );
}

#[test]
fn ptr_for_cluster_ip() {
    let r = store();
    assert_eq!(
        local(&r, "171.212.110.10.in-addr.arpa.", RecordType::PTR),
        "No Error aa\nAN 171.212.110.10.in-addr.arpa. 5 PTR httpd-svc.default.svc.cluster.local."
    );
}

#[test]
fn unknown_reverse_names_are_forwarded() {
    let r = store();
    assert!(matches!(
        ask(&r, "1.2.0.192.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    ));
    // Not-ready endpoints have no PTR of ours.
    assert!(matches!(
        ask(&r, "7.3.244.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    ));
}

#[test]
fn headless_a_lists_ready_endpoints() {
    let r = store();
    assert_eq!(
        local(&r, "web.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\n\
         AN web.apps.svc.cluster.local. 5 A 10.244.1.5\n\
         AN web.apps.svc.cluster.local. 5 A 10.244.2.6"
    );
    assert_eq!(
        local(&r, "web-0.web.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN web-0.web.apps.svc.cluster.local. 5 A 10.244.1.5"
    );
    assert_eq!(
        local(&r, "10-244-2-6.web.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN 10-244-2-6.web.apps.svc.cluster.local. 5 A 10.244.2.6"
    );
    // Not ready: not published.
    assert!(
        local(&r, "10-244-3-7.web.apps.svc.cluster.local.", RecordType::A)
            .starts_with("Non-Existent")
    );
    assert_eq!(
        local(&r, "5.1.244.10.in-addr.arpa.", RecordType::PTR),
        "No Error aa\nAN 5.1.244.10.in-addr.arpa. 5 PTR web-0.web.apps.svc.cluster.local."
    );
    // Without a hostname, the PTR names the system-assigned one.
    assert_eq!(
        local(&r, "6.2.244.10.in-addr.arpa.", RecordType::PTR),
        "No Error aa\nAN 6.2.244.10.in-addr.arpa. 5 PTR 10-244-2-6.web.apps.svc.cluster.local."
    );
}

#[test]
fn headless_publish_not_ready_lists_all() {
    let r = store();
    assert_eq!(
        local(&r, "pnr.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN pnr.apps.svc.cluster.local. 5 A 10.244.4.8"
    );
}

#[test]
fn headless_srv_targets_each_endpoint() {
    let r = store();
    assert_eq!(
        local(&r, "_http._tcp.web.apps.svc.cluster.local.", RecordType::SRV),
        "No Error aa\n\
         AN _http._tcp.web.apps.svc.cluster.local. 5 SRV 0 50 80 web-0.web.apps.svc.cluster.local.\n\
         AN _http._tcp.web.apps.svc.cluster.local. 5 SRV 0 50 80 10-244-2-6.web.apps.svc.cluster.local.\n\
         AD web-0.web.apps.svc.cluster.local. 5 A 10.244.1.5\n\
         AD 10-244-2-6.web.apps.svc.cluster.local. 5 A 10.244.2.6"
    );
}

#[test]
fn external_name_is_a_cname_chased_outside() {
    let r = store();
    assert_eq!(
        local(&r, "ext.default.svc.cluster.local.", RecordType::CNAME),
        "No Error aa\nAN ext.default.svc.cluster.local. 5 CNAME example.com."
    );
    match ask(&r, "ext.default.svc.cluster.local.", RecordType::A) {
        Outcome::Chase { partial, target } => {
            assert_eq!(target.to_ascii(), "example.com.");
            assert_eq!(
                render(&partial),
                "No Error aa\nAN ext.default.svc.cluster.local. 5 CNAME example.com."
            );
        }
        other => panic!("expected a chase, got {other:?}"),
    }
}

#[test]
fn external_name_inside_the_zone_is_followed() {
    let r = store();
    assert_eq!(
        local(&r, "alias.default.svc.cluster.local.", RecordType::A),
        "No Error aa\n\
         AN alias.default.svc.cluster.local. 5 CNAME httpd-svc.default.svc.cluster.local.\n\
         AN httpd-svc.default.svc.cluster.local. 5 A 10.110.212.171"
    );
}

#[test]
fn pod_records() {
    let r = store();
    assert_eq!(
        local(&r, "10-244-1-5.apps.pod.cluster.local.", RecordType::A),
        "No Error aa\nAN 10-244-1-5.apps.pod.cluster.local. 5 A 10.244.1.5"
    );
    assert_eq!(
        local(&r, "fd00--1.apps.pod.cluster.local.", RecordType::AAAA),
        "No Error aa\nAN fd00--1.apps.pod.cluster.local. 5 AAAA fd00::1"
    );
    assert!(
        local(&r, "10-244-1-5.apps.pod.cluster.local.", RecordType::AAAA)
            .starts_with("No Error aa\nNS ")
    );
    assert!(
        local(&r, "not-an-ip.apps.pod.cluster.local.", RecordType::A).starts_with("Non-Existent")
    );
    assert!(
        local(&r, "10-244-1-5.x.apps.pod.cluster.local.", RecordType::A)
            .starts_with("Non-Existent")
    );
}

#[test]
fn dns_version_txt() {
    let r = store();
    assert_eq!(
        local(&r, "dns-version.cluster.local.", RecordType::TXT),
        "No Error aa\nAN dns-version.cluster.local. 5 TXT 1.1.0"
    );
    assert!(local(&r, "dns-version.cluster.local.", RecordType::A).starts_with("No Error aa\nNS "));
}

#[test]
fn apex_soa_and_ns() {
    let r = store();
    assert_eq!(
        local(&r, "cluster.local.", RecordType::SOA),
        format!(
            "No Error aa\n{}",
            soa_line(r.serial()).replacen("NS ", "AN ", 1)
        )
    );
    assert_eq!(
        local(&r, "cluster.local.", RecordType::NS),
        "No Error aa\nAN cluster.local. 5 NS ns.dns.cluster.local.\nAD ns.dns.cluster.local. 5 A 10.96.0.10"
    );
    assert_eq!(
        local(&r, "ns.dns.cluster.local.", RecordType::A),
        "No Error aa\nAN ns.dns.cluster.local. 5 A 10.96.0.10"
    );
}

#[test]
fn names_outside_the_zone_are_forwarded() {
    let r = store();
    assert!(matches!(
        ask(&r, "example.com.", RecordType::A),
        Outcome::Forward
    ));
    assert!(matches!(
        ask(&r, "cluster.local.example.com.", RecordType::A),
        Outcome::Forward
    ));
    assert!(matches!(
        ask(&r, "notcluster.local.", RecordType::A),
        Outcome::Forward
    ));
}

#[test]
fn changes_apply_immediately() {
    let r = store();
    r.apply(Change::ServiceDeleted {
        namespace: "default".into(),
        name: "httpd-svc".into(),
    });
    assert!(
        local(&r, "httpd-svc.default.svc.cluster.local.", RecordType::A)
            .starts_with("Non-Existent")
    );
    assert!(matches!(
        ask(&r, "171.212.110.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Forward
    ));
    // The namespace still has a service (ext, alias): still an empty non-terminal.
    assert!(local(&r, "default.svc.cluster.local.", RecordType::A).starts_with("No Error"));

    // An endpoint becomes ready, another goes.
    r.apply(Change::SliceApplied(Box::new(slice(
        "apps",
        "web-abcde",
        "web",
        &[("10.244.3.7", true, None)],
    ))));
    assert_eq!(
        local(&r, "web.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN web.apps.svc.cluster.local. 5 A 10.244.3.7"
    );
    assert!(
        local(&r, "web-0.web.apps.svc.cluster.local.", RecordType::A).starts_with("Non-Existent")
    );
    r.apply(Change::SliceDeleted {
        namespace: "apps".into(),
        name: "web-abcde".into(),
    });
    // Headless without endpoints: the name exists, without addresses.
    assert!(local(&r, "web.apps.svc.cluster.local.", RecordType::A).starts_with("No Error aa\nNS "));
    assert!(local(
        &r,
        "_http._tcp.web.apps.svc.cluster.local.",
        RecordType::SRV
    )
    .starts_with("Non-Existent"));

    // A relist drops what is gone.
    r.apply(Change::ServicesReplaced(vec![cluster_ip(
        "default",
        "new",
        "10.96.5.5",
        vec![],
    )]));
    assert!(
        local(&r, "ext.default.svc.cluster.local.", RecordType::CNAME).starts_with("Non-Existent")
    );
    assert!(local(&r, "apps.svc.cluster.local.", RecordType::A).starts_with("Non-Existent"));
    assert_eq!(
        local(&r, "new.default.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN new.default.svc.cluster.local. 5 A 10.96.5.5"
    );
}

#[test]
fn slices_arriving_before_their_service_count_once_it_exists() {
    let r = Records::new("cluster.local");
    r.apply(Change::SliceApplied(Box::new(slice(
        "apps",
        "web-1",
        "web",
        &[("10.244.1.5", true, None)],
    ))));
    assert!(local(&r, "web.apps.svc.cluster.local.", RecordType::A).starts_with("Non-Existent"));
    r.apply(Change::ServiceApplied(Box::new(headless(
        "apps", "web", false,
    ))));
    assert_eq!(
        local(&r, "web.apps.svc.cluster.local.", RecordType::A),
        "No Error aa\nAN web.apps.svc.cluster.local. 5 A 10.244.1.5"
    );
}
