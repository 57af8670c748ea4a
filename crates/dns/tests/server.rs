//! Integration: a real server on loopback, queried with hickory messages, the hickory
//! resolver and `dig`, over UDP and TCP; forwarding to a `dnsmasq` the test starts.

mod common;
use common::free_port;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_dns::answer::request;
use skiff_dns::{Change, DnsConfig, DnsServer, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn svc(ns: &str, name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(spec),
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ip: &str) -> Service {
    svc(
        ns,
        name,
        ServiceSpec {
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ..Default::default()
        },
    )
}

/// A headless service `big` in `default` with `n` ready endpoints.
fn big_headless(n: usize) -> (Service, EndpointSlice) {
    let s = svc(
        "default",
        "big",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        },
    );
    let mut m = meta("default", "big-1");
    m.labels = Some([("kubernetes.io/service-name".to_string(), "big".to_string())].into());
    let slice = EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: (0..n)
            .map(|i| Endpoint {
                addresses: vec![format!("10.244.{}.{}", i / 200, i % 200 + 1)],
                ..Default::default()
            })
            .collect(),
        ports: None,
    };
    (s, slice)
}

/// Kills the child process when the test ends, also on failure.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn udp_query(server: SocketAddr, msg: &Message) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.connect(server).await.expect("connect");
    sock.send(&msg.to_vec().expect("encode"))
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("parse")
}

async fn tcp_query(server: SocketAddr, msg: &Message) -> Message {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    let wire = msg.to_vec().expect("encode");
    s.write_all(&(wire.len() as u16).to_be_bytes())
        .await
        .expect("write");
    s.write_all(&wire).await.expect("write");
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).await.expect("len");
    let mut buf = vec![0u8; u16::from_be_bytes(lb) as usize];
    s.read_exact(&mut buf).await.expect("body");
    Message::from_vec(&buf).expect("parse")
}

fn q(name: &str, t: RecordType) -> Message {
    request(4242, Name::from_ascii(name).expect("name"), t)
}

fn a_records(m: &Message) -> Vec<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

struct Fixture {
    addr: SocketAddr,
    records: Arc<Records>,
    handler: Arc<skiff_dns::server::Handler>,
    _dnsmasq: Reap,
    upstream: SocketAddr,
}

/// A server on 127.0.0.1 (random port) over a small store, forwarding to a dnsmasq
/// that knows `example.test`.
async fn start() -> Fixture {
    let port = free_port();
    let upstream: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            &format!("--port={port}"),
            "--address=/example.test/192.0.2.10",
            "--local-ttl=300",
            "--pid-file=",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq");
    let reap = Reap(child);
    // Wait for dnsmasq to answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let _ = sock
            .send_to(
                &q("www.example.test.", RecordType::A).to_vec().expect("enc"),
                upstream,
            )
            .await;
        let mut buf = [0u8; 512];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "dnsmasq did not start");
    }

    let records = Arc::new(Records::new("cluster.local"));
    let (big, big_slice) = big_headless(100);
    records.apply(Change::ServicesReplaced(vec![
        cluster_ip("default", "httpd-svc", "10.110.212.171"),
        cluster_ip("other", "db", "10.96.7.7"),
        big,
        svc(
            "default",
            "ext",
            ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("www.example.test".into()),
                ..Default::default()
            },
        ),
    ]));
    records.apply(Change::SlicesReplaced(vec![big_slice]));
    let cfg = DnsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstreams: vec![upstream],
        ..DnsConfig::default()
    };
    let server = DnsServer::bind(&cfg, records.clone()).await.expect("bind");
    let addr = server.local_addr();
    let handler = server.handler();
    tokio::spawn(server.serve());
    Fixture {
        addr,
        records,
        handler,
        _dnsmasq: reap,
        upstream,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_over_udp_and_tcp() {
    let f = start().await;
    let m = udp_query(
        f.addr,
        &q("httpd-svc.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(m.id(), 4242);
    assert!(m.authoritative());
    assert_eq!(
        a_records(&m),
        vec!["10.110.212.171".parse::<IpAddr>().unwrap()]
    );
    // Asked again in other spellings (the second one is answered from kept bytes): the
    // question and the answer's owner are spelled as asked.
    for spelling in [
        "HTTPD-Svc.Default.SVC.cluster.local.",
        "httpd-svc.DEFAULT.svc.Cluster.Local.",
    ] {
        let m = udp_query(f.addr, &q(spelling, RecordType::A)).await;
        assert_eq!(m.id(), 4242);
        assert_eq!(m.queries()[0].name().to_ascii(), spelling);
        assert_eq!(m.answers()[0].name().to_ascii(), spelling);
        assert_eq!(
            a_records(&m),
            vec!["10.110.212.171".parse::<IpAddr>().unwrap()]
        );
    }
    let m = tcp_query(f.addr, &q("db.other.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(a_records(&m), vec!["10.96.7.7".parse::<IpAddr>().unwrap()]);
    let m = udp_query(f.addr, &q("nope.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(m.name_servers().len(), 1, "SOA in authority");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_and_truncation() {
    let f = start().await;
    // 100 A records (~1.6 KB) do not fit 512 bytes: TC over UDP...
    let m = udp_query(f.addr, &q("big.default.svc.cluster.local.", RecordType::A)).await;
    assert!(m.truncated());
    assert!(m.answers().len() < 100);
    assert!(m.to_vec().unwrap().len() <= 512);
    // ...nor 1232 with EDNS; the OPT is echoed with our size.
    let mut req = q("big.default.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    req.set_edns(e);
    let m = udp_query(f.addr, &req).await;
    assert!(m.truncated());
    assert_eq!(m.extensions().as_ref().map(|e| e.max_payload()), Some(1232));
    assert!(m.to_vec().unwrap().len() <= 1232);
    // TCP carries everything.
    let m = tcp_query(f.addr, &q("big.default.svc.cluster.local.", RecordType::A)).await;
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 100);
    // EDNS version 1 is refused with BADVERS.
    let mut req = q("httpd-svc.default.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    req.set_edns(e);
    let m = udp_query(f.addr, &req).await;
    // (BADVERS shares its code, 16, with BADSIG; hickory decodes it as the latter.)
    assert_eq!(u16::from(m.response_code()), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_and_cache() {
    let f = start().await;
    let before = f.handler.metrics().cache_hits_total();
    let m = udp_query(f.addr, &q("www.example.test.", RecordType::A)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&m), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    // Again, with another case: a cache hit, spelled as asked.
    let m = udp_query(f.addr, &q("WWW.Example.TEST.", RecordType::A)).await;
    assert_eq!(a_records(&m), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(m.queries()[0].name().to_ascii(), "WWW.Example.TEST.");
    assert!(!m.authoritative(), "cached answers are not authoritative");
    assert_eq!(f.handler.metrics().cache_hits_total(), before + 1);
    // A third time, from the kept bytes: same answer, spelled as asked, counted as a hit.
    let m = udp_query(f.addr, &q("www.EXAMPLE.test.", RecordType::A)).await;
    assert_eq!(a_records(&m), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(m.queries()[0].name().to_ascii(), "www.EXAMPLE.test.");
    assert_eq!(f.handler.metrics().cache_hits_total(), before + 2);
    // Over TCP as well.
    let m = tcp_query(f.addr, &q("tcp.example.test.", RecordType::A)).await;
    assert_eq!(a_records(&m), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    // An ExternalName to the outside: CNAME, then the upstream's A.
    let m = udp_query(f.addr, &q("ext.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(m.answers().len(), 2, "{m:?}");
    assert_eq!(m.answers()[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&m), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    let text = f
        .handler
        .metrics()
        .render(f.handler.forwarder().cache().len());
    for metric in [
        "coredns_dns_requests_total{",
        "coredns_dns_responses_total{plugin=\"\",rcode=\"NOERROR\"",
        "coredns_dns_request_duration_seconds_bucket{",
        "coredns_cache_hits_total{",
        "coredns_cache_misses_total{",
    ] {
        assert!(text.contains(metric), "{metric} in\n{text}");
    }
    assert_ne!(f.upstream, f.addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_resolver_and_dig() {
    let f = start().await;
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;
    let cfg = ResolverConfig::from_parts(
        None,
        vec![],
        NameServerConfigGroup::from_ips_clear(&[f.addr.ip()], f.addr.port(), true),
    );
    let resolver = Resolver::builder_with_config(cfg, TokioConnectionProvider::default()).build();
    let ips: Vec<IpAddr> = resolver
        .lookup_ip("httpd-svc.default.svc.cluster.local.")
        .await
        .expect("lookup")
        .iter()
        .collect();
    assert_eq!(ips, vec!["10.110.212.171".parse::<IpAddr>().unwrap()]);

    let port = f.addr.port().to_string();
    for transport in ["+notcp", "+tcp"] {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                transport,
                "+short",
                "httpd-svc.default.svc.cluster.local",
            ])
            .output()
            .expect("dig");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "10.110.212.171",
            "dig {transport}"
        );
    }
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port, "-x", "10.110.212.171", "+short"])
        .output()
        .expect("dig");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "httpd-svc.default.svc.cluster.local."
    );
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port, "www.example.test", "+short"])
        .output()
        .expect("dig");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "192.0.2.10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_change_answers_within_100ms() {
    let f = start().await;
    let name = "fresh.default.svc.cluster.local.";
    let m = udp_query(f.addr, &q(name, RecordType::A)).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let start = Instant::now();
    f.records.apply(Change::ServiceApplied(Box::new(cluster_ip(
        "default",
        "fresh",
        "10.96.9.9",
    ))));
    loop {
        let m = udp_query(f.addr, &q(name, RecordType::A)).await;
        if !a_records(&m).is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "never answered");
    }
    let took = start.elapsed();
    eprintln!("service change to answer: {took:?}");
    assert!(took < Duration::from_millis(100), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_skipped() {
    let f = start().await;
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cfg = DnsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstreams: vec![dead, f.upstream],
        ..DnsConfig::default()
    };
    let server = DnsServer::bind(&cfg, Arc::new(Records::new("cluster.local")))
        .await
        .expect("bind");
    let addr = server.local_addr();
    tokio::spawn(server.serve());
    for name in ["one.example.test.", "two.example.test."] {
        let m = udp_query(addr, &q(name, RecordType::A)).await;
        assert_eq!(
            a_records(&m),
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()],
            "{name}"
        );
    }
}
