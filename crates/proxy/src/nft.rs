//! The nftables rule generator: service ports -> kube-proxy's `ip kube-proxy` table
//! (verdict maps `service-ips`/`service-nodeports`, per-service chains, `numgen random`),
//! and the `nft -f -` script that moves the kernel from the previously applied state to
//! the desired one in a single transaction, touching only what changed. The state
//! lives in memory: the table is never listed back. Pure: no IO.
//!
//! The one place where the rules differ from kube-proxy's is how a service chain picks
//! its endpoint (see [`PICK_BUCKETS`]): from an interval map shared with other
//! services, so that an endpoint change rewrites map elements and no rule. The kernel
//! validates the whole table at commit whenever a transaction adds a jump, a goto or a
//! NAT rule (100 ms at 10,000 services); a transaction of map elements alone skips
//! that. Services with ClientIP affinity keep kube-proxy's per-endpoint chains.
//!
//! Scripts are written for nft 1.0.6's cache: before running a script nft fetches what
//! its commands need, and `add rule`, `add element` and every `delete` make it fetch all
//! chains and sets of the table (0.3-0.5 s at 10,000 services). Partial syncs therefore
//! use only commands that need the table alone (`add chain NAME { RULES }`, sets
//! declared again with their new elements, `flush chain`) or its sets (`flush map`).
//! See [`render`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::model::{categorize, Endpoint, RuleConfig, ServicePort, ServicePortMap};
use crate::names;

/// Family and name of the table.
pub const TABLE: &str = "ip kube-proxy";

/// Verdict map: cluster, external and load-balancer IP . protocol . port.
pub const SERVICE_IPS: &str = "service-ips";
/// Verdict map: protocol . node port.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Verdict map: destinations of services without (usable) endpoints.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Verdict map: node ports of services without (usable) endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Verdict map: load-balancer destinations subject to source ranges.
pub const FIREWALL_IPS: &str = "firewall-ips";
/// Set of active cluster IPs.
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Set of the node's addresses (node ports answer on every local address).
pub const NODEPORT_IPS: &str = "nodeport-ips";
/// Set of `endpoint IP . endpoint IP` pairs: a packet DNATed back to its own source
/// (a pod reaching itself through a Service) is masqueraded, as kube-proxy's
/// per-endpoint `ip saddr <endpoint> jump mark-for-masquerade` rule does.
pub const HAIRPIN: &str = "hairpin-endpoints";

/// Buckets of one endpoint pick. A service chain picks its endpoint with `numgen random
/// mod PICK_BUCKETS offset <pick id * PICK_BUCKETS>` looked up in an interval map
/// whose elements give each of the N endpoints an equal share of the buckets (within
/// one bucket: 1/65,536). kube-proxy writes `numgen random mod N vmap { 0 : goto
/// endpoint-A, ... }` instead, so an endpoint change there adds rules and gotos, which
/// makes the kernel validate the whole table.
pub const PICK_BUCKETS: u32 = 1 << 16;
/// Picks whose elements share one map (`endpoints-<protocol>-<pick id / PICKS_PER_MAP>`):
/// few maps (the kernel looks sets up by name in a list) and small ones (a change
/// rewrites its map's elements).
pub const PICKS_PER_MAP: u32 = 64;
/// Number of pick ids: `offset + PICK_BUCKETS - 1` must fit in 32 bits. Past this
/// (65,536 service and local chains), service chains go back to per-endpoint chains.
pub const MAX_PICKS: u32 = (u32::MAX / PICK_BUCKETS) + 1;
/// Declaration body of a protocol's endpoint pick maps. A map serves one protocol:
/// nft 1.0.6 checks a rule's `meta l4proto` against the map's `typeof` (and `th
/// dport` fails that check once the map comes from the kernel).
fn pick_map_type(proto: &str) -> String {
    format!("typeof numgen random mod {PICK_BUCKETS} : ip daddr . {proto} dport ; flags interval ;")
}

/// A verdict map element's value and comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapValue {
    /// Verdict, e.g. `goto service-...`, `drop`.
    pub verdict: String,
    /// Element comment (the service port's name).
    pub comment: Option<String>,
}

/// One chain's choice of endpoint: the endpoints (address, port) that share its
/// buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The service or local chain that picks.
    pub chain: String,
    /// Its protocol (`tcp`, `udp`, `sctp`): each has its own maps.
    pub proto: &'static str,
    /// Its endpoints, in order.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// Pick ids of the chains that pick an endpoint from the maps: stable while a chain
/// exists (its rule names the id), reused once it is gone.
#[derive(Debug, Clone, Default)]
pub struct PickIds {
    by_chain: HashMap<String, u32>,
    free: BTreeSet<u32>,
    next: u32,
}

impl PickIds {
    /// The chain's id, a new one if it has none; `None` when all are taken.
    pub fn get(&mut self, chain: &str) -> Option<u32> {
        if let Some(id) = self.by_chain.get(chain) {
            return Some(*id);
        }
        let id = match self.free.pop_first() {
            Some(id) => id,
            None if self.next < MAX_PICKS => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        self.by_chain.insert(chain.to_string(), id);
        Some(id)
    }

    /// Gives a chain's id back.
    pub fn release(&mut self, chain: &str) {
        if let Some(id) = self.by_chain.remove(chain) {
            self.free.insert(id);
        }
    }

    /// Number of ids in use.
    pub fn len(&self) -> usize {
        self.by_chain.len()
    }

    /// Whether no id is in use.
    pub fn is_empty(&self) -> bool {
        self.by_chain.is_empty()
    }
}

/// Name of the map that holds a pick's elements.
pub fn pick_map(id: u32, proto: &str) -> String {
    format!("endpoints-{proto}-{}", id / PICKS_PER_MAP)
}

impl Pick {
    fn map(&self, id: u32) -> String {
        pick_map(id, self.proto)
    }
}

/// A pick's map elements: endpoint i of N takes buckets `[i*B/N, (i+1)*B/N)` after
/// the pick's offset.
fn pick_elements(id: u32, endpoints: &[(Ipv4Addr, u16)]) -> impl Iterator<Item = String> + '_ {
    let base = u64::from(id) * u64::from(PICK_BUCKETS);
    let (b, n) = (u64::from(PICK_BUCKETS), endpoints.len() as u64);
    endpoints.iter().enumerate().map(move |(i, (ip, port))| {
        let i = i as u64;
        format!(
            "{}-{} : {ip} . {port}",
            base + i * b / n,
            base + (i + 1) * b / n - 1
        )
    })
}

/// The per-service part of the table: what changes with Services and EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftState {
    /// Regular chains (service, local, external, firewall, endpoint) and their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Verdict maps: map name -> element key -> value.
    pub maps: BTreeMap<&'static str, BTreeMap<String, MapValue>>,
    /// Elements of the `cluster-ips` set.
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    /// ClientIP affinity sets and their timeouts in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// Endpoint picks by pick id.
    pub picks: BTreeMap<u32, Pick>,
    /// Endpoint addresses in the `hairpin-endpoints` set. Partial syncs only add to
    /// it (a stale pair is harmless: a packet DNATed back to its own source always
    /// needs masquerading); full syncs write it anew.
    pub hairpin: BTreeSet<Ipv4Addr>,
}

impl NftState {
    /// Number of rules in the per-service chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    /// Number of endpoint pick map elements.
    pub fn pick_element_count(&self) -> usize {
        self.picks.values().map(|p| p.endpoints.len()).sum()
    }

    fn element(&mut self, map: &'static str, key: String, verdict: String, comment: &str) {
        self.maps.entry(map).or_default().insert(
            key,
            MapValue {
                verdict,
                comment: Some(comment.to_string()),
            },
        );
    }

    fn rule(&mut self, chain: &str, rule: String) {
        self.chains.entry(chain.to_string()).or_default().push(rule);
    }
}

/// Generates the per-service state for the given service ports, with pick ids
/// numbered from 0 in the ports' order.
pub fn generate(ports: &ServicePortMap, cfg: &RuleConfig) -> NftState {
    generate_with(ports, cfg, &mut PickIds::default())
}

/// [`generate`] with the pick ids from `ids`.
pub fn generate_with(ports: &ServicePortMap, cfg: &RuleConfig, ids: &mut PickIds) -> NftState {
    let mut st = NftState::default();
    for m in [
        SERVICE_IPS,
        SERVICE_NODEPORTS,
        NO_ENDPOINT_SERVICES,
        NO_ENDPOINT_NODEPORTS,
        FIREWALL_IPS,
    ] {
        st.maps.insert(m, BTreeMap::new());
    }
    for sp in ports.values() {
        service(&mut st, sp, cfg, ids);
    }
    st
}

/// One service port's part of the state, without its cluster IP (shared by all ports
/// of a Service, so the caller counts its users; see [`NftState::cluster_ips`]). The
/// caller releases the ids of picks its previous part had and this one has not.
pub fn port_state(sp: &ServicePort, cfg: &RuleConfig, ids: &mut PickIds) -> NftState {
    let mut st = NftState::default();
    service(&mut st, sp, cfg, ids);
    st.cluster_ips.clear();
    st
}

impl NftState {
    /// Adds a port's part (from [`port_state`]) to a whole state.
    pub fn merge(&mut self, part: &NftState) {
        for (k, v) in &part.chains {
            self.chains.insert(k.clone(), v.clone());
        }
        for (m, elems) in &part.maps {
            let dst = self.maps.entry(m).or_default();
            for (k, v) in elems {
                dst.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &part.affinity_sets {
            self.affinity_sets.insert(k.clone(), *v);
        }
        for (id, p) in &part.picks {
            self.picks.insert(*id, p.clone());
        }
        self.hairpin.extend(part.hairpin.iter().copied());
    }

    /// Removes a port's part (as previously merged) from a whole state.
    pub fn unmerge(&mut self, part: &NftState) {
        for k in part.chains.keys() {
            self.chains.remove(k);
        }
        for (m, elems) in &part.maps {
            if let Some(dst) = self.maps.get_mut(m) {
                for k in elems.keys() {
                    dst.remove(k);
                }
            }
        }
        for k in part.affinity_sets.keys() {
            self.affinity_sets.remove(k);
        }
        // Another port may share an id now (it was released and reused); hairpin
        // addresses stay until a full sync (see `hairpin`).
        for (id, p) in &part.picks {
            if self.picks.get(id) == Some(p) {
                self.picks.remove(id);
            }
        }
    }

    /// Adds to `self` and `other` the picks of `whole` that share a map with a pick
    /// that differs between them, so that rendering the two rewrites those maps whole.
    /// A partial sync renders only the changed ports' parts; a map is written whole.
    pub fn complete_pick_maps(&mut self, other: &mut NftState, whole: &NftState) {
        let maps: BTreeSet<String> = self
            .picks
            .iter()
            .chain(other.picks.iter())
            .filter(|(id, _)| self.picks.get(id) != other.picks.get(id))
            .map(|(id, p)| p.map(*id))
            .collect();
        // Only the picks neither side has: a pick that one side has and the other
        // lacks is a change, and must stay one.
        for (id, p) in &whole.picks {
            if maps.contains(&p.map(*id))
                && !self.picks.contains_key(id)
                && !other.picks.contains_key(id)
            {
                self.picks.insert(*id, p.clone());
                other.picks.insert(*id, p.clone());
            }
        }
    }
}

fn service(st: &mut NftState, sp: &ServicePort, cfg: &RuleConfig, ids: &mut PickIds) {
    let name = sp.name.display();
    let proto = sp.name.protocol.lower();
    let cat = categorize(sp);
    let base = names::nft_service_base(&sp.name);
    let cluster_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let external_chain = format!("external-{base}");
    let fw_chain = format!("firewall-{base}");

    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let has_endpoints = cat.has_any;
    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&local_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local() {
        (&local_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_endpoints)
    };
    let uses_external_chain = has_endpoints && sp.externally_accessible();
    let uses_fw_chain =
        !sp.load_balancer_ips.is_empty() && !sp.load_balancer_source_ranges.is_empty();
    let filter_verdict = if has_endpoints {
        "drop"
    } else {
        "goto reject-chain"
    };

    let key = |ip: Ipv4Addr, port: u16| format!("{ip} . {proto} . {port}");

    st.cluster_ips.insert(sp.cluster_ip);
    if has_internal {
        st.element(
            SERVICE_IPS,
            key(sp.cluster_ip, sp.port),
            format!("goto {internal_chain}"),
            &name,
        );
    } else {
        st.element(
            NO_ENDPOINT_SERVICES,
            key(sp.cluster_ip, sp.port),
            filter_verdict.into(),
            &name,
        );
    }
    // External and load-balancer IPs lead to the external chain; only load-balancer
    // IPs are subject to source ranges.
    let external = sp.external_ips.iter().map(|ip| (ip, false));
    let balancer = sp.load_balancer_ips.iter().map(|ip| (ip, true));
    for (ip, is_lb) in external.chain(balancer) {
        let k = key(*ip, sp.port);
        if has_endpoints {
            st.element(
                SERVICE_IPS,
                k.clone(),
                format!("goto {external_chain}"),
                &name,
            );
        }
        if is_lb && uses_fw_chain {
            st.element(FIREWALL_IPS, k.clone(), format!("goto {fw_chain}"), &name);
        }
        if !has_external {
            st.element(NO_ENDPOINT_SERVICES, k, filter_verdict.into(), &name);
        }
    }
    if sp.node_port != 0 {
        let k = format!("{proto} . {}", sp.node_port);
        if has_endpoints {
            st.element(
                SERVICE_NODEPORTS,
                k.clone(),
                format!("goto {external_chain}"),
                &name,
            );
        }
        if !has_external {
            st.element(NO_ENDPOINT_NODEPORTS, k, filter_verdict.into(), &name);
        }
    }

    if has_internal {
        st.rule(
            internal_chain,
            format!(
                "ip daddr {} {proto} dport {} ip saddr != {} jump mark-for-masquerade",
                sp.cluster_ip, sp.port, cfg.cluster_cidr
            ),
        );
    }

    if uses_external_chain {
        if !sp.external_policy_local() {
            // Endpoints may be on other nodes: masquerade so replies come back here.
            st.rule(&external_chain, "jump mark-for-masquerade".into());
        } else {
            st.rule(
                &external_chain,
                format!(
                    "ip saddr {} goto {cluster_chain} comment \"short-circuit pod traffic\"",
                    cfg.cluster_cidr
                ),
            );
            st.rule(
                &external_chain,
                "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".into(),
            );
            st.rule(
                &external_chain,
                format!("fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""),
            );
        }
        if has_external {
            st.rule(&external_chain, format!("goto {external_policy_chain}"));
        } else {
            // Keep the chain even if it ends up empty: the maps point at it.
            st.chains.entry(external_chain.clone()).or_default();
        }
    }

    if uses_fw_chain {
        let mut sources: Vec<String> = sp
            .load_balancer_source_ranges
            .iter()
            .map(|c| c.to_string())
            .collect();
        if sp
            .load_balancer_source_ranges
            .iter()
            .any(|c| cfg.node_ips.iter().any(|ip| c.contains(ip)))
        {
            sources.extend(sp.load_balancer_ips.iter().map(|ip| ip.to_string()));
        }
        st.rule(
            &fw_chain,
            format!("ip saddr != {{ {} }} drop", sources.join(", ")),
        );
    }

    // Endpoints are picked from the maps unless the service has ClientIP affinity
    // (the affinity sets are per endpoint), or the pick ids ran out.
    let mut picks = Vec::new();
    if sp.affinity_timeout.is_none() {
        for (used, chain, eps) in [
            (uses_cluster_chain, &cluster_chain, &cat.cluster),
            (uses_local_chain, &local_chain, &cat.local),
        ] {
            if used {
                picks.push((chain, eps, ids.get(chain)));
            }
        }
    }
    if !picks.is_empty()
        && picks
            .iter()
            .all(|(_, eps, id)| id.is_some() && eps.len() <= PICK_BUCKETS as usize)
    {
        for (chain, eps, id) in picks {
            pick(st, sp, chain, eps, id.expect("checked"));
        }
        return;
    }
    for (chain, _, _) in &picks {
        ids.release(chain);
    }
    if uses_cluster_chain {
        balance(st, sp, &cluster_chain, &cat.cluster);
    }
    if uses_local_chain {
        balance(st, sp, &local_chain, &cat.local);
    }

    for ep in &cat.all_reachable {
        let eb = names::nft_endpoint_base(&sp.name, ep);
        let chain = format!("endpoint-{eb}");
        st.rule(
            &chain,
            format!("ip saddr {} jump mark-for-masquerade", ep.ip),
        );
        if let Some(timeout) = sp.affinity_timeout {
            let set = format!("affinity-{eb}");
            st.rule(&chain, format!("update @{set} {{ ip saddr }}"));
            st.affinity_sets.insert(set, timeout);
        }
        st.rule(
            &chain,
            format!("meta l4proto {proto} dnat to {}", ep.addr()),
        );
    }
}

/// The rule that picks an endpoint from the maps (see [`PICK_BUCKETS`]).
fn pick(st: &mut NftState, sp: &ServicePort, chain: &str, endpoints: &[Endpoint], id: u32) {
    let proto = sp.name.protocol.lower();
    let offset = match u64::from(id) * u64::from(PICK_BUCKETS) {
        0 => String::new(),
        o => format!(" offset {o}"),
    };
    st.rule(
        chain,
        format!(
            "meta l4proto {proto} dnat ip addr . port to numgen random mod {PICK_BUCKETS}{offset} map @{}",
            pick_map(id, proto)
        ),
    );
    st.picks.insert(
        id,
        Pick {
            chain: chain.to_string(),
            proto,
            endpoints: endpoints.iter().map(|e| (e.ip, e.port)).collect(),
        },
    );
    st.hairpin.extend(endpoints.iter().map(|e| e.ip));
}

/// kube-proxy's per-endpoint balancing, for services with ClientIP affinity.
fn balance(st: &mut NftState, sp: &ServicePort, chain: &str, endpoints: &[Endpoint]) {
    if sp.affinity_timeout.is_some() {
        for ep in endpoints {
            let eb = names::nft_endpoint_base(&sp.name, ep);
            st.rule(chain, format!("ip saddr @affinity-{eb} goto endpoint-{eb}"));
        }
    }
    // kube-proxy picks the endpoint with one rule, `numgen random mod N vmap { 0 : goto
    // endpoint-A, ... }`: an anonymous set per service. The kernel looks sets up by name
    // in a list (and names anonymous ones by scanning it), so a table with a set per
    // service costs quadratic time to build: minutes at 10,000 services, and still so
    // with named maps. The endpoint is picked as iptables mode does instead, one rule
    // per endpoint, endpoint i taken with probability 1/(N-i): uniform, and no sets.
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let target = format!("goto endpoint-{}", names::nft_endpoint_base(&sp.name, ep));
        if i + 1 < n {
            st.rule(chain, format!("numgen random mod {} 0 {target}", n - i));
        } else {
            st.rule(chain, target);
        }
    }
}

/// How much of the table a script rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Start: delete any table left from before and create everything.
    Fresh,
    /// Periodic full sync: re-declare the table's layout and rewrite its fixed chains,
    /// then apply the difference to the previous state (affinity sets are kept).
    Full,
    /// Only what differs from the previously applied state.
    Partial,
}

struct Script(String);

impl Script {
    fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }

    /// A chain and its rules in one command. `add chain NAME { RULE ; ... }` needs only
    /// the table in nft's cache, whereas `add rule` makes nft 1.0.6 fetch every chain
    /// and set of the table first (half a second at 10,000 services).
    fn chain(&mut self, name: &str, rules: &[String]) {
        if rules.is_empty() {
            self.line(format!("add chain {TABLE} {name}"));
        } else {
            self.line(format!(
                "add chain {TABLE} {name} {{ {} ; }}",
                rules.join(" ; ")
            ));
        }
    }

    /// Adds elements by declaring their set again with them, for the same reason as
    /// [`Script::chain`]: `add element` fetches the whole table's cache, a set
    /// declaration only the table. Long lists are spread over several lines so that a
    /// fresh script can be cut between them.
    fn elements(&mut self, set: &str, elems: &[String]) {
        let Some((kind, decl)) = declaration(set) else {
            return;
        };
        for chunk in elems.chunks(ELEMENTS_PER_LINE) {
            self.line(format!(
                "add {kind} {TABLE} {set} {{ {decl} elements = {{ {} }} ; }}",
                chunk.join(", ")
            ));
        }
    }

    /// Deletes elements (this one command still makes nft fetch the whole cache; it
    /// is only written when elements go away or change).
    fn delete_elements(&mut self, set: &str, keys: &[String]) {
        if !keys.is_empty() {
            self.line(format!(
                "delete element {TABLE} {set} {{ {} }}",
                keys.join(", ")
            ));
        }
    }
}

/// Elements per line of a set declaration that carries elements.
const ELEMENTS_PER_LINE: usize = 500;

/// Kind (`set` or `map`) and body of the declaration of one of the table's fixed sets.
fn declaration(name: &str) -> Option<(&'static str, String)> {
    match name {
        CLUSTER_IPS => Some((
            "set",
            "type ipv4_addr ; comment \"Active ClusterIPs\" ;".into(),
        )),
        NODEPORT_IPS => Some((
            "set",
            "type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ;".into(),
        )),
        HAIRPIN => Some((
            "set",
            "type ipv4_addr . ipv4_addr ; comment \"Endpoints that may reach themselves through a service\" ;".into(),
        )),
        _ if name.starts_with("endpoints-") => {
            let proto = name.split('-').nth(1)?;
            Some(("map", pick_map_type(proto)))
        }
        _ => MAPS.iter().find(|m| m.0 == name).map(|(_, ty, comment)| {
            (
                "map",
                format!("type {ty} : verdict ; comment {} ;", quote(comment)),
            )
        }),
    }
}

/// Declaration of a ClientIP affinity set.
fn affinity_set(name: &str, timeout: u32) -> String {
    format!("add set {TABLE} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}")
}

/// Names of the sets a rule refers to (`@name`).
fn set_refs(rule: &str) -> impl Iterator<Item = &str> {
    // Every other piece between double quotes is a comment.
    rule.split('"')
        .step_by(2)
        .flat_map(str::split_whitespace)
        .filter_map(|w| w.strip_prefix('@'))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

/// Base chains: (name, type, hook, priority). Priorities are numeric (dstnat is -100,
/// srcnat 100) because nft before 1.0.7 accepts the symbolic names only on some hooks.
const BASE_CHAINS: [(&str, &str, &str, &str); 8] = [
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
];

/// The fixed chains and their rules.
fn static_chains(cfg: &RuleConfig) -> Vec<(&'static str, Option<&'static str>, Vec<String>)> {
    let mark = cfg.mark();
    let new = |c: &str| format!("ct state new jump {c}");
    let dispatch = |m: &str| format!("ip daddr . meta l4proto . th dport vmap @{m}");
    let local_ports = |m: &str| {
        format!("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{m}")
    };
    vec![
        ("filter-prerouting", None, vec![new("firewall-check")]),
        (
            "filter-input",
            None,
            vec![new("nodeport-endpoints-check"), new("service-endpoints-check")],
        ),
        (
            "filter-forward",
            None,
            vec![new("service-endpoints-check"), new("cluster-ips-check")],
        ),
        (
            "filter-output",
            None,
            vec![new("service-endpoints-check"), new("firewall-check")],
        ),
        ("filter-output-post-dnat", None, vec![new("cluster-ips-check")]),
        ("nat-prerouting", None, vec!["jump services".into()]),
        ("nat-output", None, vec!["jump services".into()]),
        (
            "nat-postrouting",
            None,
            vec![
                format!("ct status dnat ip saddr . ip daddr @{HAIRPIN} jump mark-for-masquerade"),
                "jump masquerading".into(),
            ],
        ),
        ("mark-for-masquerade", None, vec![format!("mark set mark or {mark}")]),
        (
            "masquerading",
            None,
            vec![
                format!("mark and {mark} == 0 return"),
                format!("mark set mark xor {mark}"),
                "masquerade fully-random".into(),
            ],
        ),
        (
            "services",
            None,
            vec![dispatch(SERVICE_IPS), local_ports(SERVICE_NODEPORTS)],
        ),
        ("service-endpoints-check", None, vec![dispatch(NO_ENDPOINT_SERVICES)]),
        ("nodeport-endpoints-check", None, vec![local_ports(NO_ENDPOINT_NODEPORTS)]),
        ("firewall-check", None, vec![dispatch(FIREWALL_IPS)]),
        (
            "reject-chain",
            Some("helper for @no-endpoint-services / @no-endpoint-nodeports"),
            vec!["reject".into()],
        ),
        (
            "cluster-ips-check",
            None,
            vec![format!(
                "ip daddr @{CLUSTER_IPS} reject comment \"Reject traffic to invalid ports of ClusterIPs\""
            )],
        ),
    ]
}

/// Verdict maps: (name, key type, comment).
const MAPS: [(&str, &str, &str); 5] = [
    (
        NO_ENDPOINT_SERVICES,
        "ipv4_addr . inet_proto . inet_service",
        "vmap to drop or reject packets to services with no endpoints",
    ),
    (
        NO_ENDPOINT_NODEPORTS,
        "inet_proto . inet_service",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    ),
    (
        FIREWALL_IPS,
        "ipv4_addr . inet_proto . inet_service",
        "destinations that are subject to LoadBalancerSourceRanges",
    ),
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service",
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    ),
    (
        SERVICE_NODEPORTS,
        "inet_proto . inet_service",
        "NodePort traffic",
    ),
];

fn element(key: &str, v: &MapValue) -> String {
    match &v.comment {
        Some(c) => format!("{key} comment {} : {}", quote(c), v.verdict),
        None => format!("{key} : {}", v.verdict),
    }
}

/// Builds the `nft -f -` script that takes the kernel from `previous` (what was last
/// applied; ignored for [`SyncKind::Fresh`]) to `desired`.
///
/// Every command is one that nft 1.0.6 runs with only the table in its cache
/// (`add chain NAME { rules }`, sets declared again with their new elements, `flush
/// chain`), except `delete element` and `delete chain`/`delete set`: elements are
/// deleted only when they go away or change, and chains and sets that fall out of use
/// are flushed by a partial sync and deleted by the next full one (as kube-proxy does;
/// see [`render_deletions`]).
///
/// A fresh script may be applied in pieces of whole lines (see [`split_fresh`]): its
/// commands are ordered so that everything a line refers to is created on an earlier
/// line.
pub fn render(desired: &NftState, previous: &NftState, kind: SyncKind, cfg: &RuleConfig) -> String {
    let mut s = Script(String::new());
    let empty = NftState::default();
    let prev = if kind == SyncKind::Fresh {
        &empty
    } else {
        previous
    };
    let t = TABLE;

    if kind == SyncKind::Fresh {
        // "add" first so that "delete" cannot fail on a missing table.
        s.line(format!(
            "add table {t} {{ comment \"rules for kube-proxy\" ; }}"
        ));
        s.line(format!("delete table {t}"));
        s.line(format!(
            "add table {t} {{ comment \"rules for kube-proxy\" ; }}"
        ));
    } else if kind == SyncKind::Full {
        // Without its comment block: "add table" with a block makes nft fetch the
        // whole table's cache.
        s.line(format!("add table {t}"));
    }
    if kind != SyncKind::Partial {
        for (name, ty, hook, prio) in BASE_CHAINS {
            s.line(format!(
                "add chain {t} {name} {{ type {ty} hook {hook} priority {prio} ; }}"
            ));
        }
        for (name, comment, _) in static_chains(cfg) {
            if BASE_CHAINS.iter().any(|b| b.0 == name) {
                continue;
            }
            match comment {
                Some(c) => s.line(format!("add chain {t} {name} {{ comment {} ; }}", quote(c))),
                None => s.line(format!("add chain {t} {name}")),
            }
        }
        let pick_maps: BTreeSet<String> = desired
            .picks
            .iter()
            .chain(prev.picks.iter())
            .map(|(id, p)| p.map(*id))
            .collect();
        for name in [CLUSTER_IPS, NODEPORT_IPS, HAIRPIN]
            .into_iter()
            .chain(MAPS.iter().map(|m| m.0))
            .chain(pick_maps.iter().map(String::as_str))
        {
            if let Some((kind, decl)) = declaration(name) {
                s.line(format!("add {kind} {t} {name} {{ {decl} }}"));
            }
        }
        // The node's addresses do not change while the proxy runs: declaring them again
        // is enough.
        let ips: Vec<String> = cfg.node_ips.iter().map(|i| i.to_string()).collect();
        s.elements(NODEPORT_IPS, &ips);
    }

    // 1. Elements that go away or change drop their references first.
    for (map, elems) in &prev.maps {
        let want = desired.maps.get(map);
        let gone: Vec<String> = elems
            .iter()
            .filter(|(k, v)| want.and_then(|w| w.get(*k)) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        s.delete_elements(map, &gone);
    }
    let gone_ips: Vec<String> = prev
        .cluster_ips
        .difference(&desired.cluster_ips)
        .map(|i| i.to_string())
        .collect();
    s.delete_elements(CLUSTER_IPS, &gone_ips);

    // 2. Chains: new ones are declared before any rule refers to them; changed ones are
    // flushed; then the rules of new and changed chains, with the fixed chains' first.
    let written: Vec<(&str, &Vec<String>)> = desired
        .chains
        .iter()
        .filter(|(name, rules)| prev.chains.get(*name) != Some(*rules))
        .map(|(n, r)| (n.as_str(), r))
        .collect();
    // Sets the written rules use are declared again (nft must know their types, and its
    // cache holds only the table), new ones for the first time.
    let mut sets: BTreeSet<&str> = written
        .iter()
        .flat_map(|(_, rules)| rules.iter().flat_map(|r| set_refs(r)))
        .collect();
    sets.extend(
        desired
            .affinity_sets
            .keys()
            .filter(|n| !prev.affinity_sets.contains_key(*n))
            .map(String::as_str),
    );
    for name in sets {
        // The kernel's set keeps the timeout it was created with.
        let timeout = prev
            .affinity_sets
            .get(name)
            .or_else(|| desired.affinity_sets.get(name));
        if let Some(timeout) = timeout {
            s.line(affinity_set(name, *timeout));
        } else if let Some((kind, decl)) = declaration(name) {
            s.line(format!("add {kind} {t} {name} {{ {decl} }}"));
        }
    }
    for (name, _) in &written {
        if !prev.chains.contains_key(*name) {
            s.line(format!("add chain {t} {name}"));
        } else {
            s.line(format!("flush chain {t} {name}"));
        }
    }
    if kind != SyncKind::Partial {
        for (name, _, rules) in static_chains(cfg) {
            if kind == SyncKind::Full {
                s.line(format!("flush chain {t} {name}"));
            }
            s.chain(name, &rules);
        }
    }
    for (name, rules) in &written {
        if !rules.is_empty() {
            s.chain(name, rules);
        }
    }

    // 3. New and changed elements.
    let new_ips: Vec<String> = desired
        .cluster_ips
        .difference(&prev.cluster_ips)
        .map(|i| i.to_string())
        .collect();
    s.elements(CLUSTER_IPS, &new_ips);
    for (map, elems) in &desired.maps {
        let had = prev.maps.get(map);
        let added: Vec<String> = elems
            .iter()
            .filter(|(k, v)| had.and_then(|h| h.get(*k)) != Some(*v))
            .map(|(k, v)| element(k, v))
            .collect();
        s.elements(map, &added);
    }
    // Endpoint picks: a map with a changed pick is written anew, whole (its other
    // picks are in `desired` too, see `NftState::complete_pick_maps`).
    let mut rewritten: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, p) in desired.picks.iter().chain(prev.picks.iter()) {
        if desired.picks.get(id) != prev.picks.get(id) {
            rewritten.entry(p.map(*id)).or_default();
        }
    }
    for (id, p) in &desired.picks {
        if let Some(elems) = rewritten.get_mut(&p.map(*id)) {
            elems.extend(pick_elements(*id, &p.endpoints));
        }
    }
    for (map, elems) in &rewritten {
        if kind != SyncKind::Fresh {
            if let Some((_, decl)) = declaration(map) {
                s.line(format!("add map {t} {map} {{ {decl} }}"));
            }
            s.line(format!("flush map {t} {map}"));
        }
        s.elements(map, elems);
    }
    // Hairpin pairs: added by partial syncs, written anew by full ones.
    let pairs = |ips: &mut dyn Iterator<Item = &Ipv4Addr>| -> Vec<String> {
        ips.map(|ip| format!("{ip} . {ip}")).collect()
    };
    let hairpin = match kind {
        SyncKind::Partial => pairs(&mut desired.hairpin.difference(&prev.hairpin)),
        SyncKind::Full => {
            s.line(format!("flush set {t} {HAIRPIN}"));
            pairs(&mut desired.hairpin.iter())
        }
        SyncKind::Fresh => pairs(&mut desired.hairpin.iter()),
    };
    s.elements(HAIRPIN, &hairpin);

    // 4. Chains no longer used lose their rules (and with them their jumps to each
    // other); a partial sync leaves deleting them, and the affinity sets their rules
    // used, to the next full one.
    let stale = stale(desired, prev);
    for n in &stale.chains {
        s.line(format!("flush chain {t} {n}"));
    }
    if kind != SyncKind::Partial {
        s.0.push_str(&render_deletions(&stale, desired));
    }
    s.0
}

/// Chains and affinity sets that are no longer used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stale {
    /// Chain names.
    pub chains: BTreeSet<String>,
    /// Affinity set names.
    pub sets: BTreeSet<String>,
}

impl Stale {
    /// Adds another list.
    pub fn extend(&mut self, other: Stale) {
        self.chains.extend(other.chains);
        self.sets.extend(other.sets);
    }
}

/// What `previous` has and `desired` no longer has.
pub fn stale(desired: &NftState, previous: &NftState) -> Stale {
    Stale {
        chains: previous
            .chains
            .keys()
            .filter(|n| !desired.chains.contains_key(*n))
            .cloned()
            .collect(),
        sets: previous
            .affinity_sets
            .keys()
            .filter(|n| !desired.affinity_sets.contains_key(*n))
            .cloned()
            .collect(),
    }
}

/// Deletes stale chains (already flushed) and affinity sets that `desired` has not
/// taken back. Costly with nft 1.0.6 (it fetches the whole table's cache for a
/// delete), so it is written by full syncs only.
pub fn render_deletions(stale: &Stale, desired: &NftState) -> String {
    let mut s = Script(String::new());
    for n in stale
        .chains
        .iter()
        .filter(|n| !desired.chains.contains_key(*n))
    {
        s.line(format!("delete chain {TABLE} {n}"));
    }
    for n in stale
        .sets
        .iter()
        .filter(|n| !desired.affinity_sets.contains_key(*n))
    {
        s.line(format!("delete set {TABLE} {n}"));
    }
    s.0
}

/// Lines per `nft -f` transaction when creating the table from scratch. The kernel's
/// cost of one transaction grows faster than linearly with its size (10,000 services
/// take minutes in one transaction), so a fresh table is created in pieces.
pub const FRESH_CHUNK_LINES: usize = 10_000;

/// Splits a fresh script into transactions of at most [`FRESH_CHUNK_LINES`] lines.
///
/// nft knows only the sets a transaction declares (its cache holds only the table), so
/// a piece whose rules refer to sets declared by an earlier piece starts by declaring
/// them again.
pub fn split_fresh(script: &str) -> Vec<String> {
    let lines: Vec<&str> = script.lines().collect();
    let mut declared: BTreeMap<&str, String> = BTreeMap::new();
    let mut out = Vec::new();
    for chunk in lines.chunks(FRESH_CHUNK_LINES) {
        let mut t = String::new();
        let refs: BTreeSet<&str> = chunk.iter().flat_map(|l| set_refs(l)).collect();
        for r in refs {
            if let Some(d) = declared.get(r) {
                t.push_str(d);
                t.push('\n');
            }
        }
        for l in chunk {
            t.push_str(l);
            t.push('\n');
            if let Some((name, decl)) = declared_set(l) {
                declared.entry(name).or_insert(decl);
            }
        }
        out.push(t);
    }
    out
}

/// The name of the set a line declares and that declaration without elements, if
/// the line declares a set.
fn declared_set(line: &str) -> Option<(&str, String)> {
    let rest = line
        .strip_prefix("add set ")
        .or_else(|| line.strip_prefix("add map "))?
        .strip_prefix(TABLE)?;
    let name = rest.split_whitespace().next()?;
    let bare = match line.find(" elements = ") {
        Some(at) => format!("{} }}", &line[..at]),
        None => line.to_string(),
    };
    Some((name, bare))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::model::build;

    fn cfg() -> RuleConfig {
        RuleConfig {
            cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
            masquerade_bit: 14,
            node_ips: vec![],
        }
    }

    #[test]
    fn partial_sync_touches_only_the_changed_service() {
        let other = fixtures::service(
            "default",
            "other",
            "ClusterIP",
            "10.96.0.77",
            &[("", 80, "TCP", 0)],
        );
        let (ports, _) = build(
            &[fixtures::seed_service(), other.clone()],
            &[fixtures::seed_slice()],
            "k8s-n1",
        );
        let before = generate(&ports, &cfg());
        let mut slice = fixtures::seed_slice();
        slice.endpoints.pop();
        let (ports, _) = build(&[fixtures::seed_service(), other], &[slice], "k8s-n1");
        let after = generate(&ports, &cfg());
        let script = render(&after, &before, SyncKind::Partial, &cfg());
        assert!(!script.contains("10.96.0.77"), "{script}");
        // An endpoint change rewrites map elements only: no rule, so the kernel does
        // not validate the table.
        assert_eq!(
            script,
            "add map ip kube-proxy endpoints-tcp-0 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }\n\
             flush map ip kube-proxy endpoints-tcp-0\n\
             add map ip kube-proxy endpoints-tcp-0 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; \
             elements = { 0-21844 : 10.244.1.101 . 80, 21845-43689 : 10.244.2.35 . 80, 43690-65535 : 10.244.2.36 . 80 } ; }\n"
        );
        assert_eq!(render(&after, &after, SyncKind::Partial, &cfg()), "");
    }

    #[test]
    fn affinity_services_keep_per_endpoint_chains() {
        let mut svc = fixtures::seed_service();
        svc.spec.as_mut().expect("spec").session_affinity = Some("ClientIP".into());
        let (ports, _) = build(std::slice::from_ref(&svc), &[fixtures::seed_slice()], "n1");
        let before = generate(&ports, &cfg());
        assert!(before.picks.is_empty());
        let mut slice = fixtures::seed_slice();
        slice.endpoints.pop();
        let (ports, _) = build(std::slice::from_ref(&svc), &[slice], "n1");
        let after = generate(&ports, &cfg());
        let script = render(&after, &before, SyncKind::Partial, &cfg());
        assert!(script.contains("numgen random mod 3 0 goto"), "{script}");
        assert!(script.contains("numgen random mod 2 0 goto"), "{script}");
        // The removed endpoint's chain is flushed now and deleted by a full sync.
        assert!(
            script.contains("flush chain ip kube-proxy endpoint-"),
            "{script}"
        );
        assert!(!script.contains("delete chain"), "{script}");
        let gone = stale(&after, &before);
        assert_eq!(gone.chains.len(), 1, "{gone:?}");
        let deletions = render_deletions(&gone, &after);
        assert!(
            deletions.starts_with("delete chain ip kube-proxy endpoint-"),
            "{deletions}"
        );
        // A chain the desired state uses again is not deleted.
        assert_eq!(render_deletions(&gone, &before), "");
        // Only `delete element` and `delete chain` need nft's whole cache.
        for line in script.lines() {
            assert!(
                line.starts_with("add chain ")
                    || line.starts_with("flush chain ")
                    || line.starts_with("add set ")
                    || line.starts_with("add map "),
                "{line}"
            );
        }
    }

    #[test]
    fn picks_share_buckets_evenly() {
        let eps: Vec<(Ipv4Addr, u16)> = (1..=7).map(|i| (Ipv4Addr::new(10, 0, 0, i), 80)).collect();
        for id in [0, 1, MAX_PICKS - 1] {
            let base = u64::from(id) * u64::from(PICK_BUCKETS);
            let mut next = base;
            for (e, ep) in pick_elements(id, &eps).zip(&eps) {
                let (range, target) = e.split_once(" : ").expect("element");
                let (lo, hi) = range.split_once('-').expect("range");
                let (lo, hi): (u64, u64) = (lo.parse().expect("lo"), hi.parse().expect("hi"));
                assert_eq!(lo, next, "{e}");
                let share = hi - lo + 1;
                assert!((9362..=9363).contains(&share), "{e}");
                assert_eq!(target, format!("{} . {}", ep.0, ep.1));
                next = hi + 1;
            }
            assert_eq!(next, base + u64::from(PICK_BUCKETS));
            assert!(next - 1 <= u64::from(u32::MAX));
        }
    }

    #[test]
    fn pick_ids_are_stable_and_reused() {
        let mut ids = PickIds::default();
        assert_eq!(ids.get("a"), Some(0));
        assert_eq!(ids.get("b"), Some(1));
        assert_eq!(ids.get("a"), Some(0));
        ids.release("a");
        assert_eq!(ids.get("c"), Some(0));
        assert_eq!(ids.len(), 2);
        let mut full = PickIds {
            next: MAX_PICKS,
            ..PickIds::default()
        };
        assert_eq!(full.get("x"), None);
    }

    #[test]
    fn without_pick_ids_services_fall_back_to_per_endpoint_chains() {
        let (ports, _) = build(&[fixtures::seed_service()], &[fixtures::seed_slice()], "n1");
        let mut ids = PickIds {
            next: MAX_PICKS,
            ..PickIds::default()
        };
        let st = generate_with(&ports, &cfg(), &mut ids);
        assert!(st.picks.is_empty());
        assert!(ids.is_empty());
        assert_eq!(
            st.chains
                .keys()
                .filter(|c| c.starts_with("endpoint-"))
                .count(),
            4
        );
        assert!(st
            .chains
            .values()
            .flatten()
            .any(|r| r.contains("numgen random mod 4 0 goto")));
    }

    #[test]
    fn a_partial_sync_writes_the_whole_map_of_a_changed_pick() {
        let mut ids = PickIds::default();
        let (services, slices) = fixtures::many(3);
        let (ports, _) = build(&services, &slices, "n1");
        let whole = generate_with(&ports, &cfg(), &mut ids);
        assert_eq!(whole.picks.len(), 3);
        let changed = whole.picks.keys().next().copied().expect("a pick");
        let mut before = NftState::default();
        before.picks.insert(changed, whole.picks[&changed].clone());
        let mut after = before.clone();
        after.picks.get_mut(&changed).expect("pick").endpoints.pop();
        after.complete_pick_maps(&mut before, &whole);
        assert_eq!(after.picks.len(), 3);
        let script = render(&after, &before, SyncKind::Partial, &cfg());
        let elements = script.lines().last().expect("elements");
        let elements = elements.split_once("elements = ").expect("elements").1;
        assert_eq!(elements.matches(" . ").count(), 5 * 3 - 1, "{script}");

        // A pick that appears (a Service gains its endpoints) or goes away is a change
        // too, also when the whole state already has it.
        let only_changed = || {
            let mut st = NftState::default();
            st.picks.insert(changed, whole.picks[&changed].clone());
            st
        };
        for (mut before, mut after) in [
            (NftState::default(), only_changed()),
            (only_changed(), NftState::default()),
        ] {
            after.complete_pick_maps(&mut before, &whole);
            assert_ne!(before.picks, after.picks);
            let script = render(&after, &before, SyncKind::Partial, &cfg());
            assert!(
                script.contains("flush map ip kube-proxy endpoints-tcp-0"),
                "{script}"
            );
        }
    }

    #[test]
    fn every_fresh_piece_declares_the_sets_it_uses() {
        // Enough services with ClientIP affinity for several pieces.
        let (mut services, slices) = fixtures::many(1500);
        for svc in &mut services {
            let spec = svc.spec.as_mut().expect("spec");
            spec.session_affinity = Some("ClientIP".into());
        }
        let (ports, _) = build(&services, &slices, "n1");
        let st = generate(&ports, &cfg());
        let pieces = split_fresh(&render(&st, &st, SyncKind::Fresh, &cfg()));
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let mut known = BTreeSet::new();
            for line in piece.lines() {
                for r in set_refs(line) {
                    assert!(known.contains(r), "piece {i}: @{r} used undeclared: {line}");
                }
                if let Some((name, _)) = declared_set(line) {
                    known.insert(name);
                }
            }
        }
    }
}
