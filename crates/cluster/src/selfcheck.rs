//! The check `up` makes before it calls a cluster ready: from every node, the cluster's own
//! Services work through the service proxy — the API through the `kubernetes` Service, and
//! every CoreDNS replica through `kube-dns` on each of its ports (DNS over UDP and TCP,
//! metrics). A node whose dataplane is broken (no br_netfilter, rules not programmed, no
//! route to another node's pods) fails here, with the node named, instead of later in a
//! user's first `kubectl run`.
//!
//! Each probe opens a new connection (a new source port), so the proxy's random choice of
//! endpoint is drawn anew; in iptables mode the node's own rule counters tell which
//! endpoints have answered, and probing goes on until every one has.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// The longest a probe waits for an answer.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Services whose every endpoint must be reachable from every node.
const SYSTEM_SERVICES: [&str; 2] = ["default/kubernetes", "kube-system/kube-dns"];

/// Runs the check from inside the network namespace at `netns` (on a thread of its own,
/// which enters that namespace), until it passes or `deadline`. `dns_pods` are the IPs of
/// the ready CoreDNS pods: each must be reached on each of its ports.
pub fn check_node(netns: &Path, dns_pods: &[Ipv4Addr], deadline: Instant) -> anyhow::Result<()> {
    let netns = netns.to_path_buf();
    let expected: Vec<String> = dns_pods
        .iter()
        .flat_map(|ip| [format!("{ip}:53"), format!("{ip}:9153")])
        .collect();
    std::thread::spawn(move || {
        crate::netns::enter(&netns)?;
        check_here(&expected, deadline)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("self-check thread panicked"))?
}

fn check_here(expected: &[String], deadline: Instant) -> anyhow::Result<()> {
    let api = SocketAddr::from((skiff_api::defaults::KUBERNETES_SERVICE_IP, 443));
    let dns_ip = skiff_api::defaults::DNS_SERVICE_IP;
    let name = format!(
        "kubernetes.default.svc.{}.",
        skiff_api::defaults::CLUSTER_DOMAIN
    );
    let query = dns_query(&name)?;
    // How long one probe waits for an answer: short first, as answers on a node take well
    // under a millisecond and a lost packet (a query sent just before the node's proxy
    // had the endpoints) would otherwise hold the round for the whole timeout; doubled
    // after each failed round, so a loaded machine still gets its answers.
    let mut wait = Duration::from_millis(100);
    // With n replicas and 3n probes, a replica is missed with probability
    // ((n-1)/n)^3n, under 5%.
    let probes = (expected.len() / 2 * 3).max(1);
    loop {
        let round = (|| -> anyhow::Result<()> {
            TcpStream::connect_timeout(&api, wait)
                .context("connecting to the kubernetes Service (10.96.0.1:443)")?;
            // The proxy picks an endpoint at random for each connection: several probes
            // a round make it likely that every replica has answered before the rule
            // counters are read (a process, dearer than the probes).
            for _ in 0..probes {
                let answer =
                    dns_over_udp(dns_ip, &query, wait).context("DNS over UDP via kube-dns")?;
                ensure_answers(&answer, &name)?;
                let answer =
                    dns_over_tcp(dns_ip, &query, wait).context("DNS over TCP via kube-dns")?;
                ensure_answers(&answer, &name)?;
                metrics(dns_ip, wait).context("kube-dns metrics port")?;
            }
            Ok(())
        })();
        let last_err = match round {
            Ok(()) => match silent_endpoints(expected) {
                Some(0) | None => return Ok(()),
                Some(_) => None,
            },
            Err(e) => {
                wait = (wait * 2).min(MAX_WAIT);
                Some(e)
            }
        };
        if Instant::now() > deadline {
            match last_err {
                Some(e) => return Err(e),
                None => bail!("some endpoints of the system Services never answered"),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dns_query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::new();
    msg.set_id(rand_id())
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(msg.to_vec()?)
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        & 0xffff) as u16
}

fn ensure_answers(answer: &[u8], name: &str) -> anyhow::Result<()> {
    let msg = Message::from_vec(answer).context("parsing the DNS answer")?;
    anyhow::ensure!(
        !msg.answers().is_empty(),
        "no answer for {name} (rcode {})",
        msg.response_code()
    );
    Ok(())
}

fn dns_over_udp(server: Ipv4Addr, query: &[u8], wait: Duration) -> anyhow::Result<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(wait))?;
    socket.connect((server, 53))?;
    socket.send(query)?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    Ok(buf[..n].to_vec())
}

fn dns_over_tcp(server: Ipv4Addr, query: &[u8], wait: Duration) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((server, 53)), wait)?;
    stream.set_read_timeout(Some(wait))?;
    let len = u16::try_from(query.len())?.to_be_bytes();
    stream.write_all(&len)?;
    stream.write_all(query)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn metrics(server: Ipv4Addr, wait: Duration) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((server, 9153)), wait)?;
    stream.set_read_timeout(Some(wait))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: kube-dns\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.") && &head[9..12] == b"200",
        "unexpected answer {:?}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

/// How many endpoints of the system Services this node has not reached yet: DNAT rules
/// that have seen no packet, and `expected` destinations without a rule (the proxy has not
/// caught up with them). `None` where that can't be told (nftables mode).
fn silent_endpoints(expected: &[String]) -> Option<usize> {
    let out = Command::new("iptables-save")
        .args(["-c", "-t", "nat"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rules = dnat_counters(&text);
    if rules.is_empty() {
        return None;
    }
    let missing = expected
        .iter()
        .filter(|dest| !rules.iter().any(|(d, _)| d == *dest))
        .count();
    Some(missing + rules.iter().filter(|(_, packets)| *packets == 0).count())
}

/// Destinations and packet counters of the system Services' endpoint DNAT rules in
/// `iptables-save -c` text.
pub fn dnat_counters(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.contains(" -A KUBE-SEP-") && l.contains("-j DNAT"))
        .filter(|l| {
            SYSTEM_SERVICES.iter().any(|s| {
                l.contains(&format!("--comment \"{s}:")) || l.contains(&format!("--comment {s}:"))
            })
        })
        .filter_map(|l| {
            let packets = l.strip_prefix('[')?.split(':').next()?.parse().ok()?;
            let dest = l.split("--to-destination ").nth(1)?.split(' ').next()?;
            Some((dest.to_string(), packets))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_system_service_dnat_rules() {
        let text = r#"*nat
[3:180] -A KUBE-SEP-AAAAAAAAAAAAAAAA -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.1.2:53
[0:0] -A KUBE-SEP-AAAAAAAAAAAAAAAA -s 10.244.1.2/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ
[0:0] -A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "kube-system/kube-dns:metrics" -m tcp -j DNAT --to-destination 10.244.2.2:9153
[1:60] -A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 172.18.0.2:6443
[0:0] -A KUBE-SEP-DDDDDDDDDDDDDDDD -p tcp -m comment --comment "default/httpd-svc" -m tcp -j DNAT --to-destination 10.244.1.3:80
"#;
        assert_eq!(
            dnat_counters(text),
            vec![
                ("10.244.1.2:53".to_string(), 3),
                ("10.244.2.2:9153".to_string(), 0),
                ("172.18.0.2:6443".to_string(), 1)
            ]
        );
    }
}
