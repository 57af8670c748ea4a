//! Answering queries for the cluster zone from the record store.
//!
//! [`answer`] is a pure function of the store and the request: it either builds the
//! authoritative response (records, NODATA or NXDOMAIN with the SOA) or says the query
//! must be forwarded. Names are matched case-insensitively and answered with the
//! question's spelling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::{normalize, Lookup, Rec, Records};

/// Version of the Kubernetes DNS specification implemented (`dns-version` TXT).
pub const SPEC_VERSION: &str = "1.1.0";

/// How many CNAMEs inside the zone are followed before giving up.
const MAX_CHAIN: usize = 8;

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// The complete response (without EDNS; the server adds it).
    Local(Message),
    /// Not ours: forward the request upstream.
    Forward,
    /// An in-cluster CNAME (ExternalName) to an outside name: send `partial` after
    /// appending the upstream's answer for `target` (same type).
    Chase {
        /// The response so far (the CNAME chain).
        partial: Message,
        /// The outside name to resolve.
        target: Name,
    },
}

/// Answers `req` (one question) from `records`, with `ttl` on every record.
pub fn answer(records: &Records, ttl: u32, req: &Message) -> Outcome {
    let Some(query) = req.queries().first() else {
        return Outcome::Forward;
    };
    let key = normalize(&query.name().to_ascii());
    let domain = records.domain();
    let in_zone = key == domain
        || (key.len() > domain.len()
            && key.ends_with(domain)
            && key.as_bytes()[key.len() - domain.len() - 1] == b'.');
    let qtype = query.query_type();
    if !in_zone {
        // Reverse names we know answer authoritatively; the rest goes upstream (like
        // CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).
        if key.ends_with(".in-addr.arpa") || key.ends_with(".ip6.arpa") {
            if let Lookup::Found(recs) = records.lookup(&key) {
                let mut msg = response(req, ResponseCode::NoError);
                let mut any = false;
                for r in recs {
                    if let Rec::Ptr(t) = r {
                        if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                            msg.add_answer(Record::from_rdata(
                                query.name().clone(),
                                ttl,
                                RData::PTR(PTR(t)),
                            ));
                        }
                        any = true;
                    }
                }
                if any {
                    return Outcome::Local(msg);
                }
            }
        }
        return Outcome::Forward;
    }
    let mut msg = response(req, ResponseCode::NoError);
    let zone = Zone {
        records,
        ttl,
        domain,
    };
    let found = zone.resolve(&key, query.name(), qtype, &mut msg, 0);
    match found {
        Found::Answered => {}
        Found::NoData => zone.add_soa(&mut msg),
        Found::NxDomain => {
            msg.set_response_code(ResponseCode::NXDomain);
            zone.add_soa(&mut msg);
        }
        Found::Outside(target) => {
            return Outcome::Chase {
                partial: msg,
                target,
            };
        }
    }
    Outcome::Local(msg)
}

/// An empty response to `req` with its question, header bits and `rcode`.
pub fn response(req: &Message, rcode: ResponseCode) -> Message {
    let mut msg = Message::new();
    msg.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(req.checking_disabled())
        .set_response_code(rcode);
    msg.add_queries(req.queries().iter().cloned());
    msg
}

/// The result of resolving one name in the zone.
enum Found {
    /// Records were added to the answer section.
    Answered,
    /// The name exists without records of the type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// A CNAME chain left the zone at this name.
    Outside(Name),
}

struct Zone<'a> {
    records: &'a Records,
    ttl: u32,
    domain: &'a str,
}

impl Zone<'_> {
    fn apex(&self) -> Name {
        fqdn(self.domain)
    }

    fn add_soa(&self, msg: &mut Message) {
        let soa = SOA::new(
            fqdn(&format!("ns.dns.{}", self.domain)),
            fqdn(&format!("hostmaster.{}", self.domain)),
            self.records.serial(),
            7200,
            1800,
            86400,
            self.ttl,
        );
        msg.add_name_server(Record::from_rdata(self.apex(), self.ttl, RData::SOA(soa)));
    }

    fn rec(&self, owner: &Name, data: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, data)
    }

    /// Resolves `key` (spelled `owner` in the answer) for `qtype` into `msg`.
    fn resolve(
        &self,
        key: &str,
        owner: &Name,
        qtype: RecordType,
        msg: &mut Message,
        depth: usize,
    ) -> Found {
        let d = self.domain;
        if key == d {
            return match qtype {
                RecordType::SOA => {
                    self.add_soa_answer(owner, msg);
                    Found::Answered
                }
                RecordType::NS => {
                    msg.add_answer(self.rec(owner, RData::NS(NS(fqdn(&format!("ns.dns.{d}"))))));
                    self.add_ns_glue(msg);
                    Found::Answered
                }
                RecordType::ANY => {
                    self.add_soa_answer(owner, msg);
                    msg.add_answer(self.rec(owner, RData::NS(NS(fqdn(&format!("ns.dns.{d}"))))));
                    Found::Answered
                }
                _ => Found::NoData,
            };
        }
        let rel = &key[..key.len() - d.len() - 1];
        if rel == "dns-version" {
            if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                msg.add_answer(self.rec(owner, RData::TXT(TXT::new(vec![SPEC_VERSION.into()]))));
                return Found::Answered;
            }
            return Found::NoData;
        }
        if rel == "ns.dns" {
            let before = msg.answers().len();
            for ip in self.records.service_ips("kube-system", "kube-dns") {
                if let Some(r) = self.addr_record(owner, &ip, qtype) {
                    msg.add_answer(r);
                }
            }
            return if msg.answers().len() > before {
                Found::Answered
            } else {
                Found::NoData
            };
        }
        if rel == "dns" || rel == "svc" || rel == "pod" {
            return Found::NoData;
        }
        if let Some(pod) = rel.strip_suffix(".pod") {
            return self.pod(pod, owner, qtype, msg);
        }
        match self.records.lookup(key) {
            Lookup::Missing => Found::NxDomain,
            Lookup::EmptyNonTerminal => Found::NoData,
            Lookup::Found(recs) => self.found(owner, recs, qtype, msg, depth),
        }
    }

    fn found(
        &self,
        owner: &Name,
        recs: Vec<Rec>,
        qtype: RecordType,
        msg: &mut Message,
        depth: usize,
    ) -> Found {
        // A CNAME owns the name: every other type follows it.
        if let Some(target) = recs.iter().find_map(|r| match r {
            Rec::Cname(t) => Some(t.clone()),
            _ => None,
        }) {
            msg.add_answer(self.rec(owner, RData::CNAME(CNAME(target.clone()))));
            if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                return Found::Answered;
            }
            let tkey = normalize(&target.to_ascii());
            let d = self.domain;
            let inside = tkey == d || tkey.ends_with(&format!(".{d}"));
            if !inside {
                return Found::Outside(target);
            }
            if depth >= MAX_CHAIN {
                return Found::Answered;
            }
            // The chain stays in the zone: answer for the target; its absence is not
            // an error of the alias (the CNAME is the answer).
            return match self.resolve(&tkey, &target, qtype, msg, depth + 1) {
                Found::NxDomain | Found::NoData => Found::Answered,
                other => other,
            };
        }
        let srv_count = recs.iter().filter(|r| matches!(r, Rec::Srv { .. })).count();
        let mut any = false;
        for r in &recs {
            let data = match (r, qtype) {
                (Rec::A(ip), RecordType::A | RecordType::ANY) => RData::A(A(*ip)),
                (Rec::Aaaa(ip), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(*ip)),
                (Rec::Ptr(t), RecordType::PTR | RecordType::ANY) => RData::PTR(PTR(t.clone())),
                (Rec::Srv { port, target }, RecordType::SRV | RecordType::ANY) => {
                    // As CoreDNS: all at priority 0, the weight split evenly over 100.
                    let weight = (100 / srv_count.max(1)).max(1) as u16;
                    self.add_target_glue(target, msg);
                    RData::SRV(SRV::new(0, weight, *port, target.clone()))
                }
                _ => continue,
            };
            msg.add_answer(self.rec(owner, data));
            any = true;
        }
        if any {
            Found::Answered
        } else {
            Found::NoData
        }
    }

    /// Additional A/AAAA records for an SRV target.
    fn add_target_glue(&self, target: &Name, msg: &mut Message) {
        if msg.additionals().iter().any(|r| r.name() == target) {
            return;
        }
        if let Lookup::Found(recs) = self.records.lookup(&normalize(&target.to_ascii())) {
            for r in recs {
                match r {
                    Rec::A(ip) => {
                        msg.add_additional(self.rec(target, RData::A(A(ip))));
                    }
                    Rec::Aaaa(ip) => {
                        msg.add_additional(self.rec(target, RData::AAAA(AAAA(ip))));
                    }
                    _ => {}
                }
            }
        }
    }

    fn add_ns_glue(&self, msg: &mut Message) {
        let ns = fqdn(&format!("ns.dns.{}", self.domain));
        for ip in self.records.service_ips("kube-system", "kube-dns") {
            if let Some(r) = self.addr_record(&ns, &ip, RecordType::ANY) {
                msg.add_additional(r);
            }
        }
    }

    fn add_soa_answer(&self, owner: &Name, msg: &mut Message) {
        let mut tmp = Message::new();
        self.add_soa(&mut tmp);
        for mut r in tmp.take_name_servers() {
            r.set_name(owner.clone());
            msg.add_answer(r);
        }
    }

    fn addr_record(&self, owner: &Name, ip: &IpAddr, qtype: RecordType) -> Option<Record> {
        match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                Some(self.rec(owner, RData::A(A(*v4))))
            }
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                Some(self.rec(owner, RData::AAAA(AAAA(*v6))))
            }
            _ => None,
        }
    }

    /// `<a-b-c-d>.<ns>.pod.<domain>` ("pods insecure": any namespace, no pod check).
    fn pod(&self, rel: &str, owner: &Name, qtype: RecordType, msg: &mut Message) -> Found {
        let mut parts = rel.splitn(2, '.');
        let (Some(first), second) = (parts.next(), parts.next()) else {
            return Found::NxDomain;
        };
        let Some(ns) = second else {
            // `<ns>.pod.<domain>` itself: an empty non-terminal.
            return Found::NoData;
        };
        if ns.contains('.') {
            return Found::NxDomain;
        }
        let ip = if first.matches('-').count() == 3 && !first.contains("--") {
            first
                .replace('-', ".")
                .parse::<Ipv4Addr>()
                .ok()
                .map(IpAddr::V4)
        } else {
            first
                .replace('-', ":")
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        };
        let Some(ip) = ip else {
            return Found::NxDomain;
        };
        match self.addr_record(owner, &ip, qtype) {
            Some(r) => {
                msg.add_answer(r);
                Found::Answered
            }
            None => Found::NoData,
        }
    }
}

/// A fully qualified name from a lower-case ASCII name that is known to be valid.
fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

/// A request for `name`/`qtype` (tests and the chase path build these).
pub fn request(id: u16, name: Name, qtype: RecordType) -> Message {
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    msg.add_query(Query::query(name, qtype));
    msg
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
