//! The proxy's view of the cluster: Services and EndpointSlices flattened into service
//! ports with their endpoints, the way kube-proxy's `ServicePortMap` and `EndpointsMap`
//! see them; what changed between two such maps ([`changes`]); and the node's settings
//! the rules depend on ([`RuleConfig`]). Pure: no IO, so the rule generators can be
//! golden-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label naming the service proxy that should handle a Service; kube-proxy ignores
/// Services that carry it (they belong to another proxy).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label the EndpointSlice controller puts on slices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours), as in the API.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`); a missing protocol means TCP.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower-case name as iptables, nft and the chain hashes spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Identity of one port of one Service (kube-proxy's `ServicePortName`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Name of the port (empty for a Service's only, unnamed port).
    pub port: String,
    /// Protocol of the port.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// `namespace/name:port`, the form used in rule comments and chain hashes. As in the
    /// seed's kube-proxy, the colon is present even when the port name is empty.
    pub fn display(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.name, self.port)
    }

    /// `namespace/name`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// One endpoint of a service port, with the conditions that select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod (or other backend) address.
    pub ip: Ipv4Addr,
    /// Target port on the backend.
    pub port: u16,
    /// `conditions.ready` (absent counts as ready).
    pub ready: bool,
    /// `conditions.serving` (absent: same as ready).
    pub serving: bool,
    /// `conditions.terminating` (absent: false).
    pub terminating: bool,
    /// Whether the endpoint lives on this proxy's node.
    pub is_local: bool,
}

impl Endpoint {
    /// `ip:port`, the string endpoints are sorted and hashed by.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// A service port as the proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Identity.
    pub name: ServicePortName,
    /// Cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// Service port number.
    pub port: u16,
    /// Node port, 0 when none.
    pub node_port: u16,
    /// `spec.externalIPs` that parse as IPv4.
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` that parse as IPv4.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges`.
    pub load_balancer_source_ranges: Vec<Ipv4Net>,
    /// ClientIP affinity timeout in seconds, `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local` as declared (applies only if externally accessible).
    pub external_policy_local_declared: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `spec.healthCheckNodePort`, 0 when none.
    pub health_check_node_port: u16,
    /// Endpoints in string order (`ip:port`), duplicates removed.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// NodePort, externalIPs or LoadBalancer IPs make the port reachable from outside.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// `externalTrafficPolicy: Local` in effect.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_policy_local_declared
    }

    /// Whether the port needs "Cluster" endpoints: internal policy Cluster, or any
    /// external access (Local external policy short-circuits pod traffic to them).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether the port needs "Local" endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || self.external_policy_local()
    }
}

/// A Service (or one of its ports) the proxy does not program, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `namespace/name` of the Service.
    pub service: String,
    /// Why it was skipped.
    pub reason: String,
}

/// All programmable service ports, keyed (and so ordered) by name.
pub type ServicePortMap = BTreeMap<ServicePortName, ServicePort>;

/// One changed service port: what was applied before and what is wanted now.
pub type Change<'a> = (Option<&'a ServicePort>, Option<&'a ServicePort>);

/// The service ports that differ between two maps (a merge of the two sorted maps).
pub fn changes<'a>(old: &'a ServicePortMap, new: &'a ServicePortMap) -> Vec<Change<'a>> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((Some(*va), None));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((None, Some(*vb)));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.push((Some(*va), Some(*vb)));
                    }
                    a.next();
                    b.next();
                }
            },
            (Some((_, va)), None) => {
                out.push((Some(*va), None));
                a.next();
            }
            (None, Some((_, vb))) => {
                out.push((None, Some(*vb)));
                b.next();
            }
        }
    }
    out
}

/// What the rules depend on besides the service ports: the node's settings, the same
/// for both generators ([`crate::iptables`] and [`crate::nft`]).
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Pod network: traffic from outside it to a cluster IP is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// Bit of the packet mark that requests masquerade (14 -> 0x4000).
    pub masquerade_bit: u8,
    /// The node's addresses (node ports answer on them; load-balancer source ranges
    /// that include the node let it in).
    pub node_ips: Vec<Ipv4Addr>,
}

impl RuleConfig {
    /// The masquerade mark as iptables and nft spell it, e.g. `0x4000`.
    pub fn mark(&self) -> String {
        format!("{:#x}", 1u32 << self.masquerade_bit.min(31))
    }
}

/// Flattens Services and EndpointSlices into service ports with endpoints, as kube-proxy
/// does. Services that cannot be programmed (headless, ExternalName, invalid cluster IP,
/// handled by another proxy) are returned in the second list; they never prevent the
/// others from being programmed.
pub fn build(
    services: &[Service],
    slices: &[EndpointSlice],
    node_name: &str,
) -> (ServicePortMap, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut map = ServicePortMap::new();
    let endpoints = endpoints_by_port(slices, node_name);
    for svc in services {
        match service_ports(svc, &endpoints) {
            Ok(ports) => {
                for p in ports {
                    map.insert(p.name.clone(), p);
                }
            }
            Err(reason) => skipped.push(Skipped {
                service: format!(
                    "{}/{}",
                    svc.metadata.namespace.as_deref().unwrap_or(""),
                    svc.metadata.name.as_deref().unwrap_or("")
                ),
                reason,
            }),
        }
    }
    (map, skipped)
}

/// Replaces the ports of Service `namespace/name` in `map` with those built from the
/// Service (`None`: it was deleted) and its EndpointSlices: the incremental form of
/// [`build`], so that a change costs in proportion to the Service, not the cluster.
/// Returns why the Service is skipped, if it is.
pub fn update_service(
    map: &mut ServicePortMap,
    namespace: &str,
    name: &str,
    svc: Option<&Service>,
    slices: &[EndpointSlice],
    node_name: &str,
) -> Option<Skipped> {
    let start = ServicePortName {
        namespace: namespace.to_string(),
        name: name.to_string(),
        port: String::new(),
        protocol: Protocol::Tcp,
    };
    let old: Vec<ServicePortName> = map
        .range(start..)
        .take_while(|(k, _)| k.namespace == namespace && k.name == name)
        .map(|(k, _)| k.clone())
        .collect();
    for k in old {
        map.remove(&k);
    }
    let svc = svc?;
    let endpoints = endpoints_by_port(slices, node_name);
    match service_ports(svc, &endpoints) {
        Ok(ports) => {
            for p in ports {
                map.insert(p.name.clone(), p);
            }
            None
        }
        Err(reason) => Some(Skipped {
            service: format!("{namespace}/{name}"),
            reason,
        }),
    }
}

/// Endpoints of every service port, from all slices of each Service, deduplicated by
/// `ip:port` and sorted in string order.
fn endpoints_by_port(
    slices: &[EndpointSlice],
    node_name: &str,
) -> BTreeMap<ServicePortName, Vec<Endpoint>> {
    let mut out: BTreeMap<ServicePortName, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let labels = slice.metadata.labels.as_ref();
        let Some(svc_name) = labels.and_then(|l| l.get(skiff_api::names::SERVICE_NAME_LABEL))
        else {
            continue;
        };
        if labels.is_some_and(|l| l.contains_key(HEADLESS_LABEL)) {
            continue;
        }
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        for port in slice.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                continue;
            };
            let Some(number) = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            else {
                continue;
            };
            let key = ServicePortName {
                namespace: namespace.clone(),
                name: svc_name.clone(),
                port: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let entry = out.entry(key).or_default();
            for ep in &slice.endpoints {
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                let is_local = ep.node_name.as_deref() == Some(node_name);
                // kube-proxy uses only the first address of an endpoint.
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let e = Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving,
                    terminating,
                    is_local,
                };
                entry.entry(e.addr()).or_insert(e);
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect()
}

fn service_ports(
    svc: &Service,
    endpoints: &BTreeMap<ServicePortName, Vec<Endpoint>>,
) -> Result<Vec<ServicePort>, String> {
    let meta = &svc.metadata;
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return Err(format!(
            "label {SERVICE_PROXY_NAME_LABEL} hands it to another proxy"
        ));
    }
    let spec = svc.spec.as_ref().ok_or("no spec")?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err("type ExternalName (DNS only)".into());
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => return Err("headless (no cluster IP)".into()),
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("cluster IP {ip:?} is not an IPv4 address"))?,
    };
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let external_ips: Vec<Ipv4Addr> = unique(
        spec.external_ips
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok()),
    );
    let load_balancer_ips: Vec<Ipv4Addr> = unique(
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            // ipMode Proxy means the load balancer delivers to the node, not the VIP.
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref().and_then(|ip| ip.parse().ok())),
    );
    let load_balancer_source_ranges: Vec<Ipv4Net> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let is_lb = spec.type_.as_deref() == Some("LoadBalancer");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let spn = ServicePortName {
            namespace: namespace.clone(),
            name: name.clone(),
            port: p.name.clone().unwrap_or_default(),
            protocol,
        };
        // A clash (same port name twice, or the same port/protocol twice) keeps the first.
        if port == 0
            || !seen.insert((spn.port.clone(), protocol))
            || !seen.insert((port.to_string(), protocol))
        {
            continue;
        }
        let node_port = p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
        out.push(ServicePort {
            endpoints: endpoints.get(&spn).cloned().unwrap_or_default(),
            name: spn,
            cluster_ip,
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: if is_lb {
                load_balancer_ips.clone()
            } else {
                Vec::new()
            },
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            affinity_timeout,
            external_policy_local_declared: spec.external_traffic_policy.as_deref()
                == Some("Local"),
            internal_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            health_check_node_port: spec
                .health_check_node_port
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0),
        });
    }
    Ok(out)
}

fn unique<T: Ord + Copy>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    it.filter(|x| seen.insert(*x)).collect()
}

/// The endpoints a service port uses, split by traffic policy (kube-proxy's
/// `CategorizeEndpoints`, without topology hints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for "Cluster" policy: ready ones, else serving+terminating (KEP-1669).
    pub cluster: Vec<Endpoint>,
    /// Endpoints for "Local" policy: local ready ones, else local serving+terminating.
    pub local: Vec<Endpoint>,
    /// Union of the two: every endpoint this node may send to (gets an endpoint chain).
    pub all_reachable: Vec<Endpoint>,
    /// Whether the port has usable endpoints anywhere in the cluster.
    pub has_any: bool,
}

/// Splits a port's endpoints by policy.
pub fn categorize(sp: &ServicePort) -> Categorized {
    let mut c = Categorized::default();
    let eps = &sp.endpoints;
    if sp.uses_cluster_endpoints() {
        c.cluster = eps.iter().filter(|e| e.ready).cloned().collect();
        if c.cluster.is_empty() {
            c.cluster = eps
                .iter()
                .filter(|e| e.serving && e.terminating)
                .cloned()
                .collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !sp.uses_local_endpoints() {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let (mut local_ready, mut local_st) = (false, false);
    for e in eps {
        if e.ready {
            c.has_any = true;
            local_ready |= e.is_local;
        } else if e.serving && e.terminating {
            c.has_any = true;
            local_st |= e.is_local;
        }
    }
    if local_ready {
        c.local = eps
            .iter()
            .filter(|e| e.is_local && e.ready)
            .cloned()
            .collect();
    } else if local_st {
        c.local = eps
            .iter()
            .filter(|e| e.is_local && e.serving && e.terminating)
            .cloned()
            .collect();
    }
    if !sp.uses_cluster_endpoints() {
        c.all_reachable = c.local.clone();
        return c;
    }
    c.all_reachable = c.cluster.clone();
    for e in &c.local {
        if !c.all_reachable.contains(e) {
            c.all_reachable.push(e.clone());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// A bare ClusterIP port `default/t:` on 10.96.0.50:80 with endpoints given as
    /// (IP, ready, serving, terminating), all local, port 80.
    fn port_with(eps: &[(&str, bool, bool, bool)]) -> ServicePort {
        ServicePort {
            name: ServicePortName {
                namespace: "default".into(),
                name: "t".into(),
                port: String::new(),
                protocol: Protocol::Tcp,
            },
            cluster_ip: "10.96.0.50".parse().expect("literal IP"),
            port: 80,
            node_port: 0,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            affinity_timeout: None,
            external_policy_local_declared: false,
            internal_policy_local: false,
            health_check_node_port: 0,
            endpoints: eps
                .iter()
                .map(|(ip, ready, serving, terminating)| Endpoint {
                    ip: ip.parse().expect("literal IP"),
                    port: 80,
                    ready: *ready,
                    serving: *serving,
                    terminating: *terminating,
                    is_local: true,
                })
                .collect(),
        }
    }

    #[test]
    fn seed_service_flattens_in_string_order() {
        let (map, skipped) = build(
            &[fixtures::seed_service()],
            &[fixtures::seed_slice()],
            "k8s-n1",
        );
        assert!(skipped.is_empty());
        let sp = map.values().next().expect("one port");
        assert_eq!(sp.name.display(), "default/httpd-svc:");
        let addrs: Vec<String> = sp.endpoints.iter().map(Endpoint::addr).collect();
        assert_eq!(
            addrs,
            [
                "10.244.1.101:80",
                "10.244.1.102:80",
                "10.244.2.35:80",
                "10.244.2.36:80"
            ]
        );
        assert_eq!(sp.endpoints.iter().filter(|e| e.is_local).count(), 2);
    }

    #[test]
    fn odd_services_are_skipped_not_fatal() {
        let mut headless = fixtures::seed_service();
        headless.metadata.name = Some("headless".into());
        headless.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
        let mut bad = fixtures::seed_service();
        bad.metadata.name = Some("bad".into());
        bad.spec.as_mut().expect("spec").cluster_ip = Some("10.0.0.300".into());
        let (map, skipped) = build(
            &[headless, bad, fixtures::seed_service()],
            &[fixtures::seed_slice()],
            "k8s-n1",
        );
        assert_eq!(map.len(), 1);
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn incremental_update_matches_a_full_build() {
        let other = fixtures::service(
            "default",
            "a",
            "ClusterIP",
            "10.96.0.9",
            &[("x", 1, "TCP", 0), ("y", 2, "UDP", 0)],
        );
        let (mut map, _) = build(
            &[fixtures::seed_service(), other.clone()],
            &[fixtures::seed_slice()],
            "k8s-n1",
        );
        assert_eq!(map.len(), 3);
        let mut slice = fixtures::seed_slice();
        slice.endpoints.pop();
        update_service(
            &mut map,
            "default",
            "httpd-svc",
            Some(&fixtures::seed_service()),
            std::slice::from_ref(&slice),
            "k8s-n1",
        );
        let (want, _) = build(&[fixtures::seed_service(), other], &[slice], "k8s-n1");
        assert_eq!(map, want);
        update_service(&mut map, "default", "a", None, &[], "k8s-n1");
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn terminating_endpoints_are_a_fallback() {
        let mut sp = port_with(&[
            ("10.244.1.5", false, true, true),
            ("10.244.1.6", false, false, true),
        ]);
        let c = categorize(&sp);
        assert_eq!(c.cluster.len(), 1);
        assert!(c.has_any);
        sp.endpoints[1].ready = true;
        let c = categorize(&sp);
        assert_eq!(c.cluster.len(), 1);
        assert_eq!(c.cluster[0].ip.to_string(), "10.244.1.6");
    }
}
