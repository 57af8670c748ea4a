//! The iptables rule generator: service ports -> the `filter` and `nat` rules kube-proxy
//! writes, and the `iptables-restore --noflush` input that installs them (a full sync, or
//! a partial sync rewriting only chains that changed, as KEP-3453). Pure: no IO.
//!
//! Rules are written in the canonical form `iptables-save` prints (`-s`, `-d`, `-p` first,
//! then the matches in order, then the target), so that the restore input and the saved
//! rules can be compared line for line. The layout follows kube-proxy 1.33 (KUBE-EXT,
//! KUBE-SVL, KUBE-FW, KUBE-PROXY-FIREWALL, REJECT for services without endpoints); the
//! naming and comments follow the seed's kube-proxy: `namespace/name:port` in comments and
//! hashes, the `! -s <cluster CIDR>` masquerade rule in `KUBE-SERVICES` beside the jump,
//! and no comment on the `KUBE-SVC` load-balancing rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{categorize, Endpoint, RuleConfig, ServicePort, ServicePortMap};
use crate::names;

/// nat chain every service port's cluster IP rules live in.
pub const SERVICES_CHAIN: &str = "KUBE-SERVICES";
/// Chain for node ports (nat), and health-check node ports (filter).
pub const NODEPORTS_CHAIN: &str = "KUBE-NODEPORTS";
/// filter chain for externally visible destinations without endpoints.
pub const EXTERNAL_SERVICES_CHAIN: &str = "KUBE-EXTERNAL-SERVICES";
/// filter chain accepting forwarded service traffic.
pub const FORWARD_CHAIN: &str = "KUBE-FORWARD";
/// filter chain dropping load-balancer traffic not allowed by source ranges.
pub const PROXY_FIREWALL_CHAIN: &str = "KUBE-PROXY-FIREWALL";
/// nat chain masquerading marked traffic.
pub const POSTROUTING_CHAIN: &str = "KUBE-POSTROUTING";
/// nat chain marking traffic for masquerade.
pub const MARK_MASQ_CHAIN: &str = "KUBE-MARK-MASQ";
/// Empty chain in mangle, nat and filter whose disappearance means someone flushed
/// the tables: the proxy then resyncs everything at once.
pub const CANARY_CHAIN: &str = "KUBE-PROXY-CANARY";

/// One chain and its rules, each a full `-A CHAIN ...` line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Rules in order.
    pub rules: Vec<String>,
}

/// The chains of one table, in declaration order.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Chains in the order they are declared.
    pub chains: Vec<Chain>,
    /// Position of each chain in `chains`.
    index: HashMap<String, usize>,
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.chains == other.chains
    }
}

impl Eq for Table {}

impl Table {
    fn chain(&mut self, name: &str) -> &mut Chain {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.chains.push(Chain {
                    name: name.to_string(),
                    rules: Vec::new(),
                });
                self.index.insert(name.to_string(), self.chains.len() - 1);
                self.chains.len() - 1
            }
        };
        &mut self.chains[i]
    }

    fn add(&mut self, chain: &str, rest: &str) {
        let line = format!("-A {chain} {rest}");
        self.chain(chain).rules.push(line);
    }

    /// Number of rules in the table.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Looks a chain up by name.
    pub fn get(&self, name: &str) -> Option<&Chain> {
        self.index.get(name).map(|i| &self.chains[*i])
    }
}

/// Everything the proxy programs with `iptables-restore`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The `filter` table's KUBE-* chains.
    pub filter: Table,
    /// The `nat` table's KUBE-* chains.
    pub nat: Table,
}

/// A rule in a built-in chain that jumps to one of ours. kube-proxy ensures each with
/// `iptables -C`/`-I`, because restore with `--noflush` cannot "ensure" a rule; skiff
/// reads them all in one `iptables-save` and inserts the missing ones in the full sync's
/// restore ([`render_base`]): 30 processes fewer on a node's first sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// Table (`filter`, `nat`).
    pub table: &'static str,
    /// Built-in chain holding the jump.
    pub from: &'static str,
    /// Rule arguments after the chain name.
    pub args: Vec<String>,
}

/// The jumps from built-in chains to kube-proxy's chains.
pub fn jumps() -> Vec<Jump> {
    let new = ["-m", "conntrack", "--ctstate", "NEW"];
    let spec: [(&str, &str, &str, &str, bool); 12] = [
        (
            "filter",
            "INPUT",
            EXTERNAL_SERVICES_CHAIN,
            "kubernetes externally-visible service portals",
            true,
        ),
        (
            "filter",
            "FORWARD",
            EXTERNAL_SERVICES_CHAIN,
            "kubernetes externally-visible service portals",
            true,
        ),
        (
            "filter",
            "INPUT",
            NODEPORTS_CHAIN,
            "kubernetes health check service ports",
            false,
        ),
        (
            "filter",
            "FORWARD",
            SERVICES_CHAIN,
            "kubernetes service portals",
            true,
        ),
        (
            "filter",
            "OUTPUT",
            SERVICES_CHAIN,
            "kubernetes service portals",
            true,
        ),
        (
            "filter",
            "FORWARD",
            FORWARD_CHAIN,
            "kubernetes forwarding rules",
            false,
        ),
        (
            "filter",
            "INPUT",
            PROXY_FIREWALL_CHAIN,
            "kubernetes load balancer firewall",
            true,
        ),
        (
            "filter",
            "OUTPUT",
            PROXY_FIREWALL_CHAIN,
            "kubernetes load balancer firewall",
            true,
        ),
        (
            "filter",
            "FORWARD",
            PROXY_FIREWALL_CHAIN,
            "kubernetes load balancer firewall",
            true,
        ),
        (
            "nat",
            "OUTPUT",
            SERVICES_CHAIN,
            "kubernetes service portals",
            false,
        ),
        (
            "nat",
            "PREROUTING",
            SERVICES_CHAIN,
            "kubernetes service portals",
            false,
        ),
        (
            "nat",
            "POSTROUTING",
            POSTROUTING_CHAIN,
            "kubernetes postrouting rules",
            false,
        ),
    ];
    spec.iter()
        .map(|(table, from, to, comment, ct_new)| {
            let mut args: Vec<String> = Vec::new();
            if *ct_new {
                args.extend(new.iter().map(|s| s.to_string()));
            }
            args.extend(["-m", "comment", "--comment", comment, "-j", to].map(String::from));
            Jump { table, from, args }
        })
        .collect()
}

/// The lines of one table of `iptables-save` output (between `*table` and `COMMIT`).
pub fn saved_table<'a>(saved: &'a str, table: &str) -> Vec<&'a str> {
    let header = format!("*{table}");
    saved
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| *l != "COMMIT")
        .collect()
}

/// The chains `iptables-save` lists in `table`.
pub fn saved_chains(saved: &str, table: &str) -> BTreeSet<String> {
    saved_table(saved, table)
        .iter()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

impl Jump {
    /// The rule's arguments as `iptables-save` prints them (the comment quoted).
    fn saved_args(&self) -> String {
        let mut out = Vec::with_capacity(self.args.len());
        let mut after_comment = false;
        for a in &self.args {
            out.push(if after_comment { quote(a) } else { a.clone() });
            after_comment = a == "--comment";
        }
        out.join(" ")
    }
}

/// What a full sync adds after its chains exist, given the kernel's `iptables-save`
/// output from before it: the canary chains and the [`jumps`] that are missing, as one
/// restore input (inserted in [`jumps`]' order, as one `iptables -I` each would), or
/// `None` when everything is in place.
pub fn render_base(saved: &str) -> Option<String> {
    let mut out = String::new();
    for table in ["mangle", "nat", "filter"] {
        let lines = saved_table(saved, table);
        let canary = format!(":{CANARY_CHAIN} ");
        let mut body = String::new();
        if !lines.iter().any(|l| l.starts_with(&canary)) {
            let _ = writeln!(body, ":{CANARY_CHAIN} - [0:0]");
        }
        for j in jumps().iter().filter(|j| j.table == table) {
            let args = j.saved_args();
            if !lines.contains(&format!("-A {} {args}", j.from).as_str()) {
                let _ = writeln!(body, "-I {} {args}", j.from);
            }
        }
        if !body.is_empty() {
            let _ = write!(out, "*{table}\n{body}COMMIT\n");
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Quotes a comment as `iptables-save` prints it: bare when it is only letters, digits,
/// `_` and `-`, in double quotes otherwise.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn comment(s: &str) -> String {
    format!("-m comment --comment {}", quote(s))
}

/// The probability of picking endpoint `i` of the remaining `n`, as kube-proxy writes it
/// (`%0.10f` of 1/n) and then as the kernel stores and `iptables-save` prints it (a 31-bit
/// fixed-point value printed with 11 decimals), so that rules round-trip exactly.
pub fn probability(n: usize) -> String {
    let written = format!("{:.10}", 1.0 / n as f64);
    let value: f64 = written.parse().unwrap_or(0.0);
    let fixed = (value * 2_147_483_648.0).round();
    format!("{:.11}", fixed / 2_147_483_648.0)
}

/// Static chains of the filter table, in declaration order.
const FILTER_STATIC: [&str; 5] = [
    SERVICES_CHAIN,
    EXTERNAL_SERVICES_CHAIN,
    FORWARD_CHAIN,
    NODEPORTS_CHAIN,
    PROXY_FIREWALL_CHAIN,
];
/// Static chains of the nat table, in declaration order.
const NAT_STATIC: [&str; 4] = [
    SERVICES_CHAIN,
    NODEPORTS_CHAIN,
    POSTROUTING_CHAIN,
    MARK_MASQ_CHAIN,
];

/// The static chains with their fixed rules (no service contributions yet).
fn static_rules(cfg: &RuleConfig) -> Ruleset {
    let mut rs = Ruleset::default();
    for name in FILTER_STATIC {
        rs.filter.chain(name);
    }
    for name in NAT_STATIC {
        rs.nat.chain(name);
    }
    let mark = cfg.mark();
    // Drop INVALID packets: with them conntrack would reset connections.
    rs.filter
        .add(FORWARD_CHAIN, "-m conntrack --ctstate INVALID -j DROP");
    rs.filter.add(
        FORWARD_CHAIN,
        &format!(
            "{} -m mark --mark {mark}/{mark} -j ACCEPT",
            comment("kubernetes forwarding rules")
        ),
    );
    rs.filter.add(
        FORWARD_CHAIN,
        &format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("kubernetes forwarding conntrack rule")
        ),
    );
    rs.nat.add(
        POSTROUTING_CHAIN,
        &format!("-m mark ! --mark {mark}/{mark} -j RETURN"),
    );
    // Clear the mark so a packet re-traversing the stack is not masqueraded twice.
    rs.nat
        .add(POSTROUTING_CHAIN, &format!("-j MARK --xor-mark {mark}"));
    rs.nat.add(
        POSTROUTING_CHAIN,
        &format!(
            "{} -j MASQUERADE --random-fully",
            comment("kubernetes service traffic requiring SNAT")
        ),
    );
    rs.nat
        .add(MARK_MASQ_CHAIN, &format!("-j MARK --or-mark {mark}"));
    rs
}

/// The last rule of nat `KUBE-SERVICES`: local destinations go on to the node ports.
fn nodeports_jump() -> String {
    format!(
        "-A {SERVICES_CHAIN} {} -m addrtype --dst-type LOCAL -j {NODEPORTS_CHAIN}",
        comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    )
}

/// One service port's contribution: its rules in the static chains and its own chains.
pub fn port_rules(sp: &ServicePort, cfg: &RuleConfig) -> Ruleset {
    let mut rs = Ruleset::default();
    service_rules(&mut rs, sp, cfg);
    rs
}

/// Puts the static rules and the ports' contributions (in order) together.
pub fn assemble<'a>(frags: impl IntoIterator<Item = &'a Ruleset>, cfg: &RuleConfig) -> Ruleset {
    let mut rs = static_rules(cfg);
    for f in frags {
        for (mine, theirs) in [(&mut rs.filter, &f.filter), (&mut rs.nat, &f.nat)] {
            for c in &theirs.chains {
                mine.chain(&c.name).rules.extend(c.rules.iter().cloned());
            }
        }
    }
    let last = nodeports_jump();
    rs.nat.chain(SERVICES_CHAIN).rules.push(last);
    rs
}

/// Generates the full rule set for the given service ports.
pub fn generate(ports: &ServicePortMap, cfg: &RuleConfig) -> Ruleset {
    let frags: Vec<Ruleset> = ports.values().map(|sp| port_rules(sp, cfg)).collect();
    assemble(&frags, cfg)
}

/// Lines per `iptables-restore` transaction in a full sync. iptables-nft 1.8's restore
/// slows down quadratically with the size of one `--noflush` transaction (60,000 chain
/// declarations take minutes in one, two seconds in chunks of this size).
pub const CHUNK_LINES: usize = 2000;

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

/// A full sync as a sequence of `iptables-restore --noflush` inputs, applied in order:
///
/// 1. the masquerade chains (so that per-service chains can jump to them);
/// 2. the per-service chains, a bounded number of lines per transaction, each port's
///    chains together (they only jump to each other and to `KUBE-MARK-MASQ`);
/// 3. one transaction rewriting the dispatch chains of both tables at once (filter
///    `KUBE-SERVICES`..., nat `KUBE-SERVICES`, `KUBE-NODEPORTS`), which switches the
///    traffic over atomically;
/// 4. the removal of per-service chains that exist (`existing`, read from the kernel)
///    but are no longer wanted: all flushed first, then deleted.
pub fn render_full<'a>(
    frags: impl Iterator<Item = &'a Ruleset> + Clone,
    existing: &BTreeSet<String>,
    cfg: &RuleConfig,
) -> Vec<String> {
    let statics = static_rules(cfg);
    let mut txs = Vec::new();
    let mut first = String::from("*nat\n");
    for n in [MARK_MASQ_CHAIN, POSTROUTING_CHAIN] {
        let _ = writeln!(first, ":{n} - [0:0]");
    }
    for n in [MARK_MASQ_CHAIN, POSTROUTING_CHAIN] {
        for r in statics
            .nat
            .get(n)
            .map(|c| c.rules.as_slice())
            .unwrap_or_default()
        {
            push_line(&mut first, r);
        }
    }
    first.push_str("COMMIT\n");
    txs.push(first);

    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let (mut decl, mut rules, mut lines) = (String::new(), String::new(), 0usize);
    let flush =
        |decl: &mut String, rules: &mut String, lines: &mut usize, txs: &mut Vec<String>| {
            if *lines > 0 {
                txs.push(format!("*nat\n{decl}{rules}COMMIT\n"));
                decl.clear();
                rules.clear();
                *lines = 0;
            }
        };
    for f in frags.clone() {
        for c in f
            .nat
            .chains
            .iter()
            .filter(|c| names::is_service_chain(&c.name))
        {
            wanted.insert(&c.name);
            let _ = writeln!(decl, ":{} - [0:0]", c.name);
            for r in &c.rules {
                push_line(&mut rules, r);
            }
            lines += 1 + c.rules.len();
        }
        if lines >= CHUNK_LINES {
            flush(&mut decl, &mut rules, &mut lines, &mut txs);
        }
    }
    flush(&mut decl, &mut rules, &mut lines, &mut txs);

    let mut dispatch = String::new();
    for (table, names_) in [
        ("filter", &FILTER_STATIC[..]),
        ("nat", &[SERVICES_CHAIN, NODEPORTS_CHAIN][..]),
    ] {
        let pick = |r: &'a Ruleset| if table == "filter" { &r.filter } else { &r.nat };
        let static_table = if table == "filter" {
            &statics.filter
        } else {
            &statics.nat
        };
        let _ = writeln!(dispatch, "*{table}");
        for n in names_ {
            let _ = writeln!(dispatch, ":{n} - [0:0]");
        }
        for n in names_ {
            for r in static_table
                .get(n)
                .map(|c| c.rules.as_slice())
                .unwrap_or_default()
            {
                push_line(&mut dispatch, r);
            }
            for f in frags.clone() {
                for r in pick(f)
                    .get(n)
                    .map(|c| c.rules.as_slice())
                    .unwrap_or_default()
                {
                    push_line(&mut dispatch, r);
                }
            }
            if table == "nat" && *n == SERVICES_CHAIN {
                push_line(&mut dispatch, &nodeports_jump());
            }
        }
        dispatch.push_str("COMMIT\n");
    }
    txs.push(dispatch);

    let stale: Vec<&String> = existing
        .iter()
        .filter(|n| names::is_service_chain(n) && !wanted.contains(n.as_str()))
        .collect();
    for part in stale.chunks(CHUNK_LINES) {
        let mut t = String::from("*nat\n");
        for n in part {
            let _ = writeln!(t, ":{n} - [0:0]");
        }
        t.push_str("COMMIT\n");
        txs.push(t);
    }
    for part in stale.chunks(CHUNK_LINES) {
        let mut t = String::from("*nat\n");
        for n in part {
            let _ = writeln!(t, "-X {n}");
        }
        t.push_str("COMMIT\n");
        txs.push(t);
    }
    txs
}

/// A partial sync's restore input from the changed ports' fragments alone, touching
/// only what changed: the changed ports' own chains are rewritten (declaring a chain
/// flushes it), their rules in the shared dispatch chains are removed (`-D`) or inserted
/// at the top (`-I CHAIN 1`, keeping the node-port jump last), and own chains that went
/// away are deleted (`-X`). `changes` pairs each changed port's previous fragment with
/// its new one (`None`: absent). Empty when nothing changes.
pub fn render_partial(changes: &[(Option<&Ruleset>, Option<&Ruleset>)]) -> String {
    fn pick<'b>(r: Option<&'b Ruleset>, table: &str) -> Option<&'b Table> {
        r.map(|r| if table == "filter" { &r.filter } else { &r.nat })
    }
    let empty = Table::default();
    let mut out = String::new();
    for table in TABLES {
        let (mut decl, mut deletes, mut inserts, mut rules, mut removes) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        for (old, new) in changes {
            let old_t = pick(*old, table).unwrap_or(&empty);
            let new_t = pick(*new, table).unwrap_or(&empty);
            for c in &new_t.chains {
                if names::is_service_chain(&c.name) && old_t.get(&c.name) != Some(c) {
                    let _ = writeln!(decl, ":{} - [0:0]", c.name);
                    for r in &c.rules {
                        push_line(&mut rules, r);
                    }
                }
            }
            for c in &old_t.chains {
                if names::is_service_chain(&c.name) && new_t.get(&c.name).is_none() {
                    let _ = writeln!(decl, ":{} - [0:0]", c.name);
                    let _ = writeln!(removes, "-X {}", c.name);
                }
            }
            // A port's rules in a dispatch chain are replaced as a group, so that their
            // order (masquerade before jump) is kept.
            let dispatch: BTreeSet<&str> = old_t
                .chains
                .iter()
                .chain(&new_t.chains)
                .map(|c| c.name.as_str())
                .filter(|n| !names::is_service_chain(n))
                .collect();
            for n in dispatch {
                let before = old_t.get(n).map(|c| c.rules.as_slice()).unwrap_or_default();
                let after = new_t.get(n).map(|c| c.rules.as_slice()).unwrap_or_default();
                if before == after {
                    continue;
                }
                for r in before {
                    if let Some(rest) = r.strip_prefix("-A ") {
                        let _ = writeln!(deletes, "-D {rest}");
                    }
                }
                // Inserting each at position 1 in reverse keeps their order, and keeps
                // the node-port jump at the end of KUBE-SERVICES.
                let prefix = format!("-A {n} ");
                for r in after.iter().rev() {
                    if let Some(rest) = r.strip_prefix(&prefix) {
                        let _ = writeln!(inserts, "-I {n} 1 {rest}");
                    }
                }
            }
        }
        if decl.is_empty() && deletes.is_empty() && inserts.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "*{table}\n{decl}{deletes}{inserts}{rules}{removes}COMMIT\n"
        );
    }
    out
}

/// `-d ip/32 -p proto -m comment ... -m proto --dport port` with an optional source
/// prefix, in `iptables-save` order.
fn dest_match(src: &str, ip: Ipv4Addr, proto: &str, cmt: &str, port: u16) -> String {
    format!(
        "{src}-d {ip}/32 -p {proto} {} -m {proto} --dport {port}",
        comment(cmt)
    )
}

fn service_rules(rs: &mut Ruleset, sp: &ServicePort, cfg: &RuleConfig) {
    let name = sp.name.display();
    let proto = sp.name.protocol.lower();
    let cat = categorize(sp);
    let svc_chain = names::svc_chain(&sp.name);
    let svl_chain = names::svl_chain(&sp.name);
    let ext_chain = names::ext_chain(&sp.name);
    let fw_chain = names::fw_chain(&sp.name);

    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let has_endpoints = cat.has_any;

    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&svl_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&svc_chain, has_endpoints)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local() {
        (&svl_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&svc_chain, has_endpoints)
    };
    let uses_ext_chain = has_endpoints && sp.externally_accessible();
    let uses_fw_chain = has_endpoints
        && !sp.load_balancer_ips.is_empty()
        && !sp.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw_chain { &fw_chain } else { &ext_chain };

    let (internal_filter, external_filter) = if !has_endpoints {
        let c = format!("{name} has no endpoints");
        (("REJECT", c.clone()), ("REJECT", c))
    } else {
        let c = format!("{name} has no local endpoints");
        (("DROP", c.clone()), ("DROP", c))
    };

    // The cluster IP: masquerade traffic from outside the pod network, then dispatch.
    if has_internal {
        let m = dest_match(
            "",
            sp.cluster_ip,
            proto,
            &format!("{name} cluster IP"),
            sp.port,
        );
        rs.nat.add(
            SERVICES_CHAIN,
            &format!("! -s {} {m} -j {MARK_MASQ_CHAIN}", cfg.cluster_cidr),
        );
        rs.nat
            .add(SERVICES_CHAIN, &format!("{m} -j {internal_chain}"));
    } else {
        let m = dest_match("", sp.cluster_ip, proto, &internal_filter.1, sp.port);
        rs.filter
            .add(SERVICES_CHAIN, &format!("{m} -j {}", internal_filter.0));
    }

    for ip in &sp.external_ips {
        if has_endpoints {
            let m = dest_match("", *ip, proto, &format!("{name} external IP"), sp.port);
            rs.nat.add(SERVICES_CHAIN, &format!("{m} -j {ext_chain}"));
        }
        if !has_external {
            let m = dest_match("", *ip, proto, &external_filter.1, sp.port);
            rs.filter.add(
                EXTERNAL_SERVICES_CHAIN,
                &format!("{m} -j {}", external_filter.0),
            );
        }
    }

    for ip in &sp.load_balancer_ips {
        if has_endpoints {
            let m = dest_match("", *ip, proto, &format!("{name} loadbalancer IP"), sp.port);
            rs.nat.add(SERVICES_CHAIN, &format!("{m} -j {lb_chain}"));
        }
        if uses_fw_chain {
            let m = dest_match(
                "",
                *ip,
                proto,
                &format!("{name} traffic not accepted by {fw_chain}"),
                sp.port,
            );
            rs.filter.add(PROXY_FIREWALL_CHAIN, &format!("{m} -j DROP"));
        }
    }
    if !has_external {
        for ip in &sp.load_balancer_ips {
            let m = dest_match("", *ip, proto, &external_filter.1, sp.port);
            rs.filter.add(
                EXTERNAL_SERVICES_CHAIN,
                &format!("{m} -j {}", external_filter.0),
            );
        }
    }

    if sp.node_port != 0 {
        if has_endpoints {
            rs.nat.add(
                NODEPORTS_CHAIN,
                &format!(
                    "-p {proto} {} -m {proto} --dport {} -j {ext_chain}",
                    comment(&name),
                    sp.node_port
                ),
            );
        }
        if !has_external {
            rs.filter.add(
                EXTERNAL_SERVICES_CHAIN,
                &format!(
                    "-p {proto} {} -m addrtype --dst-type LOCAL -m {proto} --dport {} -j {}",
                    comment(&external_filter.1),
                    sp.node_port,
                    external_filter.0
                ),
            );
        }
    }

    if sp.health_check_node_port != 0 {
        rs.filter.add(
            NODEPORTS_CHAIN,
            &format!(
                "-p tcp {} -m tcp --dport {} -j ACCEPT",
                comment(&format!("{name} health check node port")),
                sp.health_check_node_port
            ),
        );
    }

    if uses_ext_chain {
        rs.nat.chain(&ext_chain);
        if !sp.external_policy_local() {
            // Endpoints may be on other nodes: masquerade so replies come back here.
            rs.nat.add(
                &ext_chain,
                &format!(
                    "{} -j {MARK_MASQ_CHAIN}",
                    comment(&format!(
                        "masquerade traffic for {name} external destinations"
                    ))
                ),
            );
        } else {
            // Pods reaching an external address get "Cluster" policy, as if they went
            // out to the load balancer and came back.
            rs.nat.add(
                &ext_chain,
                &format!(
                    "-s {} {} -j {svc_chain}",
                    cfg.cluster_cidr,
                    comment(&format!("pod traffic for {name} external destinations"))
                ),
            );
            // The node itself: its source is a local address, masquerade it.
            rs.nat.add(
                &ext_chain,
                &format!(
                    "{} -m addrtype --src-type LOCAL -j {MARK_MASQ_CHAIN}",
                    comment(&format!(
                        "masquerade LOCAL traffic for {name} external destinations"
                    ))
                ),
            );
            rs.nat.add(
                &ext_chain,
                &format!(
                    "{} -m addrtype --src-type LOCAL -j {svc_chain}",
                    comment(&format!(
                        "route LOCAL traffic for {name} external destinations"
                    ))
                ),
            );
        }
        if has_external {
            rs.nat
                .add(&ext_chain, &format!("-j {external_policy_chain}"));
        }
    }

    if uses_fw_chain {
        rs.nat.chain(&fw_chain);
        let lb_comment = comment(&format!("{name} loadbalancer IP"));
        let mut allow_from_node = false;
        for cidr in &sp.load_balancer_source_ranges {
            rs.nat
                .add(&fw_chain, &format!("-s {cidr} {lb_comment} -j {ext_chain}"));
            allow_from_node |= cfg.node_ips.iter().any(|ip| cidr.contains(ip));
        }
        if allow_from_node {
            // A node reaching a VIP that is routed locally arrives with the VIP as source.
            for ip in &sp.load_balancer_ips {
                rs.nat.add(
                    &fw_chain,
                    &format!("-s {ip}/32 {lb_comment} -j {ext_chain}"),
                );
            }
        }
        rs.nat.add(
            &fw_chain,
            &comment(&format!(
                "other traffic to {name} will be dropped by {PROXY_FIREWALL_CHAIN}"
            )),
        );
    }

    if uses_cluster_chain {
        rs.nat.chain(&svc_chain);
        balance(rs, sp, &svc_chain, &cat.cluster);
    }
    if uses_local_chain {
        rs.nat.chain(&svl_chain);
        balance(rs, sp, &svl_chain, &cat.local);
    }

    for ep in &cat.all_reachable {
        let sep = names::sep_chain(&sp.name, ep);
        rs.nat.chain(&sep);
        rs.nat.add(
            &sep,
            &format!("-s {}/32 {} -j {MARK_MASQ_CHAIN}", ep.ip, comment(&name)),
        );
        let affinity = match sp.affinity_timeout {
            Some(_) => format!(" -m recent --set --name {sep} --mask 255.255.255.255 --rsource"),
            None => String::new(),
        };
        rs.nat.add(
            &sep,
            &format!(
                "-p {proto} {}{affinity} -m {proto} -j DNAT --to-destination {}",
                comment(&name),
                ep.addr()
            ),
        );
    }
}

/// The load-balancing rules of a KUBE-SVC/KUBE-SVL chain: affinity checks first, then
/// one random-probability jump per endpoint, the last one unconditional.
fn balance(rs: &mut Ruleset, sp: &ServicePort, chain: &str, endpoints: &[Endpoint]) {
    if let Some(timeout) = sp.affinity_timeout {
        for ep in endpoints {
            let sep = names::sep_chain(&sp.name, ep);
            rs.nat.add(
                chain,
                &format!(
                    "{} -m recent --rcheck --seconds {timeout} --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}",
                    comment(&sp.name.display())
                ),
            );
        }
    }
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let sep = names::sep_chain(&sp.name, ep);
        if i + 1 < n {
            rs.nat.add(
                chain,
                &format!(
                    "-m statistic --mode random --probability {} -j {sep}",
                    probability(n - i)
                ),
            );
        } else {
            rs.nat.add(chain, &format!("-j {sep}"));
        }
    }
}

/// Tables the restore input covers, in order.
const TABLES: [&str; 2] = ["filter", "nat"];

/// Chains always rewritten, even in a partial sync: the dispatch chains that every
/// service contributes to.
fn is_static(name: &str) -> bool {
    !names::is_service_chain(name)
}

/// Builds the `iptables-restore --noflush` input.
///
/// With `previous` absent (a full sync) every chain is declared and written. With the
/// previously applied rule set, a per-service chain whose rules did not change is left
/// out entirely (declaring a chain flushes it). Per-service nat chains that were in use
/// before, or that exist in the kernel (`existing`: names read back at a full sync), and
/// are no longer used are flushed and deleted with `-X`.
pub fn render(
    desired: &Ruleset,
    previous: Option<&Ruleset>,
    existing: &BTreeSet<String>,
) -> String {
    let mut out = String::new();
    for table in TABLES {
        let (want, prev) = match table {
            "filter" => (&desired.filter, previous.map(|p| &p.filter)),
            _ => (&desired.nat, previous.map(|p| &p.nat)),
        };
        let prev_chains: BTreeMap<&str, &Chain> = prev
            .map(|t| t.chains.iter().map(|c| (c.name.as_str(), c)).collect())
            .unwrap_or_default();
        let write: Vec<&Chain> = want
            .chains
            .iter()
            .filter(|c| is_static(&c.name) || prev_chains.get(c.name.as_str()) != Some(c))
            .collect();
        let wanted: BTreeSet<&str> = want.chains.iter().map(|c| c.name.as_str()).collect();
        let mut stale: BTreeSet<&str> = prev_chains
            .keys()
            .copied()
            .filter(|n| names::is_service_chain(n) && !wanted.contains(n))
            .collect();
        if table == "nat" {
            stale.extend(
                existing
                    .iter()
                    .map(String::as_str)
                    .filter(|n| names::is_service_chain(n) && !wanted.contains(n)),
            );
        }
        let _ = writeln!(out, "*{table}");
        for c in &write {
            let _ = writeln!(out, ":{} - [0:0]", c.name);
        }
        for n in &stale {
            let _ = writeln!(out, ":{n} - [0:0]");
        }
        for c in &write {
            for r in &c.rules {
                out.push_str(r);
                out.push('\n');
            }
        }
        for n in &stale {
            let _ = writeln!(out, "-X {n}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_round_trip_like_iptables_save() {
        assert_eq!(probability(4), "0.25000000000");
        assert_eq!(probability(3), "0.33333333349");
        assert_eq!(probability(2), "0.50000000000");
        assert_eq!(probability(7), "0.14285714272");
    }

    #[test]
    fn comments_are_quoted_like_iptables_save() {
        assert_eq!(quote("x"), "x");
        assert_eq!(quote("a/b:"), "\"a/b:\"");
        assert_eq!(
            quote("kubernetes service portals"),
            "\"kubernetes service portals\""
        );
    }
}
