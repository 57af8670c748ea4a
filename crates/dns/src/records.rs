//! The in-memory record store: Services and EndpointSlices in, DNS records out.
//!
//! The store keeps a compact copy of each Service and EndpointSlice it was fed, and for
//! every Service the set of names (with their records) that the Kubernetes DNS
//! specification derives from it. A change to a Service or to one of its slices
//! recomputes only that Service's records, so an update costs microseconds and the name
//! answers as soon as [`Records::apply`] returns. Readers (the query path) take a short
//! read lock; nothing is cloned per query except the records answered.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use parking_lot::RwLock;
use skiff_api::names::SERVICE_NAME_LABEL;

/// One change to the store's sources, as the watchers (or a static feeder) report it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A Service was created or modified.
    ServiceApplied(Box<Service>),
    /// A Service was deleted.
    ServiceDeleted {
        /// Namespace of the Service.
        namespace: String,
        /// Name of the Service.
        name: String,
    },
    /// An EndpointSlice was created or modified.
    SliceApplied(Box<EndpointSlice>),
    /// An EndpointSlice was deleted.
    SliceDeleted {
        /// Namespace of the slice.
        namespace: String,
        /// Name of the slice (not of its Service).
        name: String,
    },
    /// The full list of Services (after a watch (re)start): everything else is removed.
    ServicesReplaced(Vec<Service>),
    /// The full list of EndpointSlices (after a watch (re)start).
    SlicesReplaced(Vec<EndpointSlice>),
}

/// A record held for a name. Names are stored lower-cased; targets are fully qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias (ExternalName Services).
    Cname(Name),
    /// Service location for a named port; the weight is computed when answering.
    Srv {
        /// Port number.
        port: u16,
        /// Target host name.
        target: Name,
    },
    /// Reverse pointer.
    Ptr(Name),
    /// The name exists (a Service without addresses): answers NODATA, not NXDOMAIN.
    Exists,
}

/// Namespace and name of a Service (or slice).
type Key = (String, String);

/// One record and the Service it came from.
#[derive(Debug)]
struct Entry {
    owner: Arc<Key>,
    rec: Rec,
}

/// What the store needs of a Service.
#[derive(Debug, Clone, PartialEq)]
enum SvcKind {
    /// Has cluster IPs (ClusterIP, NodePort, LoadBalancer).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: records are the endpoints'.
    Headless { publish_not_ready: bool },
    /// `type: ExternalName`: a CNAME.
    ExternalName(String),
}

/// A named port of a Service or slice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortInfo {
    name: String,
    protocol: String,
    port: u16,
}

/// What the store needs of one endpoint of a slice.
#[derive(Debug, Clone)]
struct EpInfo {
    addresses: Vec<IpAddr>,
    ready: bool,
    hostname: Option<String>,
}

/// What the store needs of an EndpointSlice.
#[derive(Debug, Clone)]
struct SliceInfo {
    service: String,
    ports: Vec<PortInfo>,
    endpoints: Vec<EpInfo>,
}

/// The mutable index behind the lock.
#[derive(Debug, Default)]
struct Index {
    /// Lower-cased name (no trailing dot) -> records.
    names: HashMap<Box<str>, Vec<Entry>>,
    /// Empty non-terminals under the cluster domain, reference-counted.
    ents: HashMap<Box<str>, u32>,
    /// Names each Service contributes, to remove them on change.
    contrib: HashMap<Key, (Arc<Key>, Vec<Box<str>>)>,
    services: HashMap<Key, SvcKind>,
    service_ports: HashMap<Key, Vec<PortInfo>>,
    slices: HashMap<Key, SliceInfo>,
    slices_by_service: HashMap<Key, BTreeSet<String>>,
}

/// The record store. Cheap to share (`Arc<Records>`); all methods take `&self`.
#[derive(Debug)]
pub struct Records {
    domain: String,
    index: RwLock<Index>,
    serial: AtomicU32,
}

/// A snapshot of the records at one name, as the answering code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name has these records (possibly only [`Rec::Exists`]).
    Found(Vec<Rec>),
    /// The name exists only as an ancestor of other names (NODATA for every type).
    EmptyNonTerminal,
    /// The name does not exist.
    Missing,
}

impl Records {
    /// An empty store for the cluster domain `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str) -> Self {
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Self {
            domain: normalize(domain),
            index: RwLock::new(Index::default()),
            serial: AtomicU32::new(serial),
        }
    }

    /// The cluster domain, lower-cased, without trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The zone's SOA serial: bumped on every change.
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Relaxed)
    }

    /// Applies one change; the records it implies answer as soon as this returns.
    pub fn apply(&self, change: Change) {
        let mut idx = self.index.write();
        match change {
            Change::ServiceApplied(svc) => {
                if let Some((key, kind, ports)) = service_info(&svc) {
                    idx.services.insert(key.clone(), kind);
                    idx.service_ports.insert(key.clone(), ports);
                    idx.rebuild(&self.domain, &key);
                }
            }
            Change::ServiceDeleted { namespace, name } => {
                let key = (namespace, name);
                idx.services.remove(&key);
                idx.service_ports.remove(&key);
                idx.rebuild(&self.domain, &key);
            }
            Change::SliceApplied(slice) => {
                if let Some((key, info)) = slice_info(&slice) {
                    idx.put_slice(&self.domain, key, info);
                }
            }
            Change::SliceDeleted { namespace, name } => {
                idx.remove_slice(&self.domain, &(namespace, name));
            }
            Change::ServicesReplaced(list) => {
                let mut fresh = HashMap::new();
                let mut ports = HashMap::new();
                for svc in &list {
                    if let Some((key, kind, p)) = service_info(svc) {
                        ports.insert(key.clone(), p);
                        fresh.insert(key, kind);
                    }
                }
                let old: Vec<Key> = idx.services.keys().cloned().collect();
                idx.services = fresh;
                idx.service_ports = ports;
                let mut touched: BTreeSet<Key> = old.into_iter().collect();
                touched.extend(idx.services.keys().cloned());
                for key in touched {
                    idx.rebuild(&self.domain, &key);
                }
            }
            Change::SlicesReplaced(list) => {
                let old: Vec<Key> = idx.slices.keys().cloned().collect();
                let mut fresh = HashMap::new();
                for slice in &list {
                    if let Some((key, info)) = slice_info(slice) {
                        fresh.insert(key, info);
                    }
                }
                let mut touched: BTreeSet<Key> = BTreeSet::new();
                for key in old {
                    if !fresh.contains_key(&key) {
                        if let Some(info) = idx.slices.get(&key) {
                            touched.insert((key.0.clone(), info.service.clone()));
                        }
                        idx.detach_slice(&key);
                    }
                }
                for (key, info) in fresh {
                    if let Some(prev) = idx.slices.get(&key) {
                        touched.insert((key.0.clone(), prev.service.clone()));
                    }
                    idx.detach_slice(&key);
                    touched.insert((key.0.clone(), info.service.clone()));
                    idx.attach_slice(key, info);
                }
                for key in touched {
                    idx.rebuild(&self.domain, &key);
                }
            }
        }
        self.serial.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks a lower-cased name (no trailing dot) up.
    pub fn lookup(&self, name: &str) -> Lookup {
        let idx = self.index.read();
        if let Some(entries) = idx.names.get(name) {
            return Lookup::Found(entries.iter().map(|e| e.rec.clone()).collect());
        }
        if idx.ents.contains_key(name) {
            return Lookup::EmptyNonTerminal;
        }
        Lookup::Missing
    }

    /// The cluster IPs of the Service `namespace/name` (for `ns.dns.<domain>`).
    pub fn service_ips(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        let idx = self.index.read();
        match idx.services.get(&(namespace.to_string(), name.to_string())) {
            Some(SvcKind::ClusterIp(ips)) => ips.clone(),
            _ => Vec::new(),
        }
    }

    /// Number of names holding records (for tests and the bench).
    pub fn len(&self) -> usize {
        self.index.read().names.len()
    }

    /// Whether the store holds no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Index {
    fn put_slice(&mut self, domain: &str, key: Key, info: SliceInfo) {
        let mut touched = Vec::new();
        if let Some(prev) = self.slices.get(&key) {
            if prev.service != info.service {
                touched.push((key.0.clone(), prev.service.clone()));
            }
        }
        self.detach_slice(&key);
        let svc_key = (key.0.clone(), info.service.clone());
        self.attach_slice(key, info);
        touched.push(svc_key);
        for k in touched {
            self.rebuild(domain, &k);
        }
    }

    fn remove_slice(&mut self, domain: &str, key: &Key) {
        if let Some(info) = self.slices.get(key) {
            let svc_key = (key.0.clone(), info.service.clone());
            self.detach_slice(key);
            self.rebuild(domain, &svc_key);
        }
    }

    fn detach_slice(&mut self, key: &Key) {
        if let Some(info) = self.slices.remove(key) {
            let svc_key = (key.0.clone(), info.service);
            if let Some(set) = self.slices_by_service.get_mut(&svc_key) {
                set.remove(&key.1);
                if set.is_empty() {
                    self.slices_by_service.remove(&svc_key);
                }
            }
        }
    }

    fn attach_slice(&mut self, key: Key, info: SliceInfo) {
        self.slices_by_service
            .entry((key.0.clone(), info.service.clone()))
            .or_default()
            .insert(key.1.clone());
        self.slices.insert(key, info);
    }

    /// Recomputes the records of the Service `key` and swaps them in.
    fn rebuild(&mut self, domain: &str, key: &Key) {
        // Remove what the Service contributed before.
        if let Some((_, names)) = self.contrib.remove(key) {
            for name in names {
                if let Some(entries) = self.names.get_mut(&name) {
                    entries.retain(|e| *e.owner != *key);
                    if entries.is_empty() {
                        self.names.remove(&name);
                    }
                }
                for anc in ancestors(&name, domain) {
                    if let Some(n) = self.ents.get_mut(anc) {
                        *n -= 1;
                        if *n == 0 {
                            self.ents.remove(anc);
                        }
                    }
                }
            }
        }
        let Some(kind) = self.services.get(key) else {
            return;
        };
        let slices: Vec<&SliceInfo> = self
            .slices_by_service
            .get(key)
            .map(|set| {
                set.iter()
                    .filter_map(|s| self.slices.get(&(key.0.clone(), s.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let ports = self.service_ports.get(key).cloned().unwrap_or_default();
        let recs = service_records(domain, &key.0, &key.1, kind, &ports, &slices);
        let owner = Arc::new(key.clone());
        let mut names: Vec<Box<str>> = Vec::new();
        for (name, rec) in recs {
            let entries = self.names.entry(name.clone().into_boxed_str()).or_default();
            if !entries.iter().any(|e| *e.owner == *key) {
                names.push(name.clone().into_boxed_str());
            }
            if !entries.iter().any(|e| *e.owner == *key && e.rec == rec) {
                entries.push(Entry {
                    owner: owner.clone(),
                    rec,
                });
            }
        }
        for name in &names {
            for anc in ancestors(name, domain) {
                *self.ents.entry(anc.into()).or_insert(0) += 1;
            }
        }
        self.contrib.insert(key.clone(), (owner, names));
    }
}

/// The proper ancestors of `name` strictly below the apex `domain`.
fn ancestors<'a>(name: &'a str, domain: &str) -> impl Iterator<Item = &'a str> {
    let under = name.len() > domain.len() + 1
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.';
    let stop = name.len().saturating_sub(domain.len() + 1);
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if !under {
            return None;
        }
        let dot = name[pos..stop].find('.')?;
        pos += dot + 1;
        Some(&name[pos..])
    })
}

/// Lower-cases a name and drops its trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A fully qualified hickory name from a lower-cased name without trailing dot.
fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// The endpoint's DNS label: its hostname, or its address with dashes (as CoreDNS).
fn endpoint_label(ep: &EpInfo, addr: &IpAddr) -> String {
    match &ep.hostname {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => dashed(addr),
    }
}

/// `10.0.0.1` -> `10-0-0-1`, `fd00::1` -> `fd00--1`.
pub(crate) fn dashed(addr: &IpAddr) -> String {
    addr.to_string().replace(['.', ':'], "-")
}

/// The reverse-lookup name of an address, lower-cased without trailing dot.
pub(crate) fn reverse_name(addr: &IpAddr) -> String {
    normalize(&Name::from(*addr).to_ascii())
}

/// Every (name, record) the DNS specification derives from one Service.
fn service_records(
    domain: &str,
    ns: &str,
    name: &str,
    kind: &SvcKind,
    svc_ports: &[PortInfo],
    slices: &[&SliceInfo],
) -> Vec<(String, Rec)> {
    let base = format!(
        "{}.{}.svc.{domain}",
        name.to_ascii_lowercase(),
        ns.to_ascii_lowercase()
    );
    let Some(base_name) = fqdn(&base) else {
        return Vec::new();
    };
    let mut out = vec![(base.clone(), Rec::Exists)];
    let srv_name = |p: &PortInfo| format!("_{}._{}.{base}", p.name, p.protocol);
    match kind {
        SvcKind::ClusterIp(ips) => {
            for ip in ips {
                out.push((base.clone(), addr_rec(ip)));
                out.push((reverse_name(ip), Rec::Ptr(base_name.clone())));
            }
            for p in svc_ports.iter().filter(|p| !p.name.is_empty()) {
                out.push((
                    srv_name(p),
                    Rec::Srv {
                        port: p.port,
                        target: base_name.clone(),
                    },
                ));
            }
        }
        SvcKind::Headless { publish_not_ready } => {
            let mut ports: BTreeSet<PortInfo> = BTreeSet::new();
            for slice in slices {
                ports.extend(slice.ports.iter().filter(|p| !p.name.is_empty()).cloned());
            }
            for slice in slices {
                for ep in &slice.endpoints {
                    if !(ep.ready || *publish_not_ready) {
                        continue;
                    }
                    for addr in &ep.addresses {
                        let host = format!("{}.{base}", endpoint_label(ep, addr));
                        let Some(host_name) = fqdn(&host) else {
                            continue;
                        };
                        out.push((base.clone(), addr_rec(addr)));
                        out.push((host.clone(), addr_rec(addr)));
                        // The spec's endpoint "hostname" is the hostname field or a
                        // system-assigned identifier (here the dashed address), so every
                        // published endpoint gets its PTR.
                        out.push((reverse_name(addr), Rec::Ptr(host_name.clone())));
                        for p in slice.ports.iter().filter(|p| !p.name.is_empty()) {
                            out.push((
                                srv_name(p),
                                Rec::Srv {
                                    port: p.port,
                                    target: host_name.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            // Named ports with no ready endpoint still exist as names (NODATA).
            for p in &ports {
                out.push((srv_name(p), Rec::Exists));
            }
        }
        SvcKind::ExternalName(target) => {
            if let Some(t) = fqdn(&normalize(target)) {
                out.push((base.clone(), Rec::Cname(t)));
            }
        }
    }
    // Drop Exists markers where the name has real records.
    let real: BTreeSet<String> = out
        .iter()
        .filter(|(_, r)| *r != Rec::Exists)
        .map(|(n, _)| n.clone())
        .collect();
    out.retain(|(n, r)| *r != Rec::Exists || !real.contains(n));
    out
}

fn addr_rec(ip: &IpAddr) -> Rec {
    match ip {
        IpAddr::V4(v4) => Rec::A(*v4),
        IpAddr::V6(v6) => Rec::Aaaa(*v6),
    }
}

/// Extracts the key, kind and ports of a Service; `None` if it has no name.
fn service_info(svc: &Service) -> Option<(Key, SvcKind, Vec<PortInfo>)> {
    let name = svc.metadata.name.clone()?;
    let ns = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(PortInfo {
                name: p.name.unwrap_or_default().to_ascii_lowercase(),
                protocol: p
                    .protocol
                    .unwrap_or_else(|| "TCP".into())
                    .to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        SvcKind::ExternalName(spec.external_name.unwrap_or_default())
    } else {
        let mut ips: Vec<String> = spec.cluster_ips.unwrap_or_default();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip);
        }
        if ips.iter().any(|ip| ip == "None") {
            SvcKind::Headless {
                publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
            }
        } else {
            SvcKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        }
    };
    Some(((ns, name), kind, ports))
}

/// Extracts the key and contents of an EndpointSlice; `None` without a Service label.
fn slice_info(slice: &EndpointSlice) -> Option<(Key, SliceInfo)> {
    let name = slice.metadata.name.clone()?;
    let ns = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .clone();
    if slice.address_type == "FQDN" {
        return None;
    }
    let ports = slice
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(PortInfo {
                name: p.name.unwrap_or_default().to_ascii_lowercase(),
                protocol: p
                    .protocol
                    .unwrap_or_else(|| "TCP".into())
                    .to_ascii_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|ep| EpInfo {
            addresses: ep.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            // A nil `ready` means unknown, which consumers must treat as ready.
            ready: ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            hostname: ep.hostname.clone(),
        })
        .collect();
    Some((
        (ns, name),
        SliceInfo {
            service,
            ports,
            endpoints,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_stop_below_apex() {
        let a: Vec<&str> =
            ancestors("_http._tcp.web.default.svc.cluster.local", "cluster.local").collect();
        assert_eq!(
            a,
            vec![
                "_tcp.web.default.svc.cluster.local",
                "web.default.svc.cluster.local",
                "default.svc.cluster.local",
                "svc.cluster.local"
            ]
        );
        assert_eq!(ancestors("cluster.local", "cluster.local").count(), 0);
        assert_eq!(ancestors("x.example.com", "cluster.local").count(), 0);
        assert_eq!(
            ancestors("1.0.0.10.in-addr.arpa", "cluster.local").count(),
            0
        );
    }

    #[test]
    fn dashed_and_reverse() {
        let v4: IpAddr = "10.110.212.171".parse().unwrap();
        assert_eq!(dashed(&v4), "10-110-212-171");
        assert_eq!(reverse_name(&v4), "171.212.110.10.in-addr.arpa");
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(dashed(&v6), "fd00--1");
    }
}
