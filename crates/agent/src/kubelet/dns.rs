//! The files the kubelet writes into every pod: `/etc/resolv.conf` per `dnsPolicy`,
//! `/etc/hosts` and `/etc/hostname`.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodSpec};

/// Cluster DNS settings the pod's resolv.conf is made from.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    /// The cluster DNS Service IP (10.96.0.10).
    pub server: Ipv4Addr,
    /// The cluster domain (cluster.local).
    pub domain: String,
}

/// What a resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => r.searches = words.map(String::from).collect(),
            Some("options") => r.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    r
}

fn merge_dns_config(r: &mut Resolv, cfg: Option<&PodDNSConfig>) {
    let Some(cfg) = cfg else { return };
    for ns in cfg.nameservers.iter().flatten() {
        if !r.nameservers.contains(ns) {
            r.nameservers.push(ns.clone());
        }
    }
    for s in cfg.searches.iter().flatten() {
        if !r.searches.contains(s) {
            r.searches.push(s.clone());
        }
    }
    for o in cfg.options.iter().flatten() {
        let rendered = match &o.value {
            Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
            None => o.name.clone().unwrap_or_default(),
        };
        let name = o.name.clone().unwrap_or_default();
        r.options
            .retain(|x| x.split(':').next() != Some(name.as_str()));
        r.options.push(rendered);
    }
}

/// The pod's resolv.conf. `host_resolv` is the node's own (for `Default`, and for
/// `ClusterFirst` on the host network, as the kubelet does).
pub fn resolv_conf(spec: &PodSpec, namespace: &str, dns: &ClusterDns, host_resolv: &str) -> String {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut r = match policy {
        "None" => Resolv::default(),
        "Default" => parse_resolv(host_resolv),
        "ClusterFirst" if host_network => parse_resolv(host_resolv),
        _ => Resolv {
            nameservers: vec![dns.server.to_string()],
            searches: vec![
                format!("{namespace}.svc.{}", dns.domain),
                format!("svc.{}", dns.domain),
                dns.domain.clone(),
            ],
            options: vec!["ndots:5".into()],
        },
    };
    merge_dns_config(&mut r, spec.dns_config.as_ref());
    let mut out = String::new();
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    for ns in &r.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !r.options.is_empty() {
        out.push_str(&format!("options {}\n", r.options.join(" ")));
    }
    out
}

/// The pod's hostname: spec.hostname or the pod name (truncated to 63 characters).
pub fn hostname(spec: &PodSpec, pod_name: &str) -> String {
    let h = spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod_name.to_string());
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// Where systemd-resolved keeps the resolv.conf that names the real upstream servers
/// (`/etc/resolv.conf` then names only its stub at 127.0.0.53).
pub const SYSTEMD_RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Whether a resolv.conf names at least one nameserver and only loopback ones: a pod
/// (with a loopback of its own) cannot use it.
pub fn only_loopback_nameservers(text: &str) -> bool {
    let servers = parse_resolv(text).nameservers;
    !servers.is_empty()
        && servers.iter().all(|s| {
            s.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}

/// The node's resolv.conf for pods when none was configured: `/etc/resolv.conf`, unless it
/// names only a loopback stub (systemd-resolved, a local dnsmasq) and systemd-resolved's
/// own file names real servers; that one, then, as kubeadm configures the kubelet and k3s
/// does. Returns the text and the path it came from.
pub fn default_host_resolv(etc: &str, systemd_resolved: Option<&str>) -> (String, &'static str) {
    match systemd_resolved {
        Some(upstream)
            if only_loopback_nameservers(etc)
                && !only_loopback_nameservers(upstream)
                && !parse_resolv(upstream).nameservers.is_empty() =>
        {
            (upstream.to_string(), SYSTEMD_RESOLVED_CONF)
        }
        _ => (etc.to_string(), "/etc/resolv.conf"),
    }
}

/// The kubelet-managed /etc/hosts.
pub fn hosts_file(
    spec: &PodSpec,
    namespace: &str,
    pod_name: &str,
    pod_ip: &str,
    domain: &str,
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(spec, pod_name);
    match &spec.subdomain {
        Some(sub) if !sub.is_empty() => {
            out.push_str(&format!(
                "{pod_ip}\t{host}.{sub}.{namespace}.svc.{domain}\t{host}\n"
            ));
        }
        _ => out.push_str(&format!("{pod_ip}\t{host}\n")),
    }
    let aliases = spec.host_aliases.as_deref().unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_stub_gives_way_to_systemd_resolved_s_servers() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let real = "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n";
        assert!(only_loopback_nameservers(stub));
        assert!(!only_loopback_nameservers(real));
        assert!(!only_loopback_nameservers(""));
        assert_eq!(
            default_host_resolv(stub, Some(real)),
            (real.to_string(), SYSTEMD_RESOLVED_CONF)
        );
        // Nothing better to offer: the host's own file stays.
        assert_eq!(default_host_resolv(stub, None).1, "/etc/resolv.conf");
        assert_eq!(default_host_resolv(stub, Some(stub)).1, "/etc/resolv.conf");
        assert_eq!(default_host_resolv(stub, Some("")).1, "/etc/resolv.conf");
        // A usable /etc/resolv.conf is kept even where systemd-resolved runs.
        let plain = "nameserver 198.51.100.1\n";
        assert_eq!(default_host_resolv(plain, Some(real)).0, plain);
    }
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    fn dns() -> ClusterDns {
        ClusterDns {
            server: Ipv4Addr::new(10, 96, 0, 10),
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn cluster_first() {
        let got = resolv_conf(
            &PodSpec::default(),
            "default",
            &dns(),
            "nameserver 1.1.1.1\n",
        );
        assert_eq!(
            got,
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_and_none_and_host_network() {
        let host = "search lan\nnameserver 192.168.1.1\noptions edns0\n";
        let spec = PodSpec {
            dns_policy: Some("Default".into()),
            ..Default::default()
        };
        assert_eq!(resolv_conf(&spec, "x", &dns(), host), host);
        let spec = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        assert_eq!(resolv_conf(&spec, "x", &dns(), host), host);
        let spec = PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["8.8.8.8".into()]),
                searches: Some(vec!["a.b".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
            }),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&spec, "x", &dns(), host),
            "search a.b\nnameserver 8.8.8.8\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts() {
        let spec = PodSpec::default();
        let got = hosts_file(&spec, "default", "web-1", "10.244.1.5", "cluster.local");
        assert!(got.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(got.ends_with("10.244.1.5\tweb-1\n"));
        let spec = PodSpec {
            hostname: Some("h".into()),
            subdomain: Some("s".into()),
            ..Default::default()
        };
        assert!(hosts_file(&spec, "ns", "p", "1.2.3.4", "cluster.local")
            .ends_with("1.2.3.4\th.s.ns.svc.cluster.local\th\n"));
    }
}
