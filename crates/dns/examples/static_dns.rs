//! A skiff-dns server over a static set of Services, for benchmarks.
//!
//! `static_dns --listen 127.0.0.1:5300 --services 1000 [--upstream 127.0.0.1:5301]
//! [--measure-update]` serves `svc-<i>.default.svc.cluster.local` -> `10.100.<i/250>.<i%250+1>`
//! for i in 0..N (the bench script generates the same names for its peers), and
//! forwards everything else to the upstream. With `--measure-update` it instead measures,
//! 200 times, how long a new Service takes from `Records::apply` to answering over UDP, prints
//! the distribution and exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::api::ObjectMeta;
use skiff_dns::{Change, DnsConfig, DnsServer, Records};

fn service(name: &str, ip: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ip_of(i: usize) -> String {
    format!("10.100.{}.{}", i / 250, i % 250 + 1)
}

async fn measure_updates(records: Arc<Records>, server: SocketAddr) -> anyhow::Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(server).await?;
    let mut times = Vec::new();
    let mut buf = vec![0u8; 4096];
    for k in 0..200u16 {
        let name = format!("probe-{k}");
        let qname = Name::from_ascii(format!("{name}.default.svc.cluster.local."))?;
        let start = Instant::now();
        records.apply(Change::ServiceApplied(Box::new(service(
            &name,
            &format!("10.200.0.{}", k % 250 + 1),
        ))));
        loop {
            let q = skiff_dns::answer::request(k, qname.clone(), RecordType::A);
            sock.send(&q.to_vec()?).await?;
            let n = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await??;
            let resp = Message::from_vec(&buf[..n])?;
            if resp.response_code() == ResponseCode::NoError && !resp.answers().is_empty() {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(5),
                "{name} never answered"
            );
        }
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "update-to-answer over {} changes: median {:?}, p99 {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut cfg = DnsConfig {
        listen: "127.0.0.1:5300".parse()?,
        ..DnsConfig::default()
    };
    let mut n = 1000usize;
    let mut measure = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => cfg.listen = args.next().unwrap_or_default().parse()?,
            "--services" => n = args.next().unwrap_or_default().parse()?,
            "--upstream" => cfg.upstreams.push(args.next().unwrap_or_default().parse()?),
            "--measure-update" => measure = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let records = Arc::new(Records::new(&cfg.domain));
    let start = Instant::now();
    for i in 0..n {
        records.apply(Change::ServiceApplied(Box::new(service(
            &format!("svc-{i}"),
            &ip_of(i),
        ))));
    }
    eprintln!("loaded {n} services in {:?}", start.elapsed());
    let server = DnsServer::bind(&cfg, records.clone()).await?;
    let addr = server.local_addr();
    eprintln!("serving on {addr}");
    if measure {
        // Measure, print and exit: the bench runs this mode on its own.
        tokio::spawn(server.serve());
        return measure_updates(records, addr).await;
    }
    server.serve().await
}
