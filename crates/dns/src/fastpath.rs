//! The wire-level fast path: answers kept as bytes, keyed by the question.
//!
//! Most queries repeat. Once the full pipeline has answered a question (parse with
//! hickory, look up, build, encode), the encoded answer is kept; the next identical
//! question — compared after lower-casing, with the same EDNS presence and DO bit — is
//! answered by copying those bytes and patching the id, the RD and CD bits and the
//! question's spelling, without parsing or encoding anything. Answers from the zone are
//! kept until the record store changes (its serial); answers from the forwarding cache
//! until their TTLs would age by a second or the entry expires. Only answers of at most
//! 512 bytes are kept, so no client's size limit can require truncating one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::cache::HitKind;

/// Most answers kept; when full, the map is emptied and refills with what is asked.
const CAPACITY: usize = 20_000;
/// Longest answer kept (the plain-UDP limit, which every client accepts).
const MAX_LEN: usize = 512;

/// A parsed query header and question, borrowed from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct WireQuery {
    /// The key: lower-cased question name (wire form), type, class, EDNS and DO flags.
    pub key: Vec<u8>,
    /// Query type.
    pub qtype: u16,
    /// End of the question name in the datagram (it starts at 12).
    pub name_end: usize,
}

/// Parses the common shape of a query: opcode QUERY, one question, no answer or
/// authority records, at most an EDNS(0) OPT. Anything else returns `None` and takes
/// the full pipeline.
pub fn parse(bytes: &[u8]) -> Option<WireQuery> {
    if bytes.len() < 17 {
        return None;
    }
    let flags = bytes[2];
    // QR must be 0 and the opcode QUERY.
    if flags & 0x80 != 0 || (flags >> 3) & 0x0f != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut key = Vec::with_capacity(64);
    let mut i = 12;
    loop {
        let len = usize::from(*bytes.get(i)?);
        if len == 0 {
            key.push(0);
            i += 1;
            break;
        }
        // No compression in a question we answer from bytes; labels are at most 63.
        if len > 63 || i + 1 + len > bytes.len() {
            return None;
        }
        key.push(len as u8);
        key.extend(bytes[i + 1..i + 1 + len].iter().map(u8::to_ascii_lowercase));
        i += 1 + len;
        if i - 12 > 255 {
            return None;
        }
    }
    let name_end = i;
    let q = bytes.get(i..i + 4)?;
    let qtype = u16::from_be_bytes([q[0], q[1]]);
    key.extend_from_slice(q);
    i += 4;
    if count(10) == 1 {
        // OPT: root name, type 41, class = payload, TTL = ext-rcode, version, flags.
        let opt = bytes.get(i..i + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 || opt[6] != 0 {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        if i + 11 + rdlen != bytes.len() {
            return None;
        }
        key.push(1);
        key.push(opt[7] & 0x80);
    } else {
        if i != bytes.len() {
            return None;
        }
        key.push(0);
        key.push(0);
    }
    Some(WireQuery {
        key,
        qtype,
        name_end,
    })
}

/// How long a kept answer is right.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// While the record store's serial is this.
    Serial(u32),
    /// Until this instant.
    Until(Instant),
}

#[derive(Debug)]
struct Kept {
    bytes: Arc<[u8]>,
    validity: Validity,
    /// Set for answers from the forwarding cache (for the hit metrics).
    cache_hit: Option<HitKind>,
}

/// The kept answers.
#[derive(Debug, Default)]
pub struct FastPath {
    map: RwLock<HashMap<Vec<u8>, Kept>>,
}

/// A fast answer: the bytes to send and what they were.
#[derive(Debug)]
pub struct FastAnswer {
    /// The response, ready to send.
    pub bytes: Vec<u8>,
    /// Its response code (low 4 bits).
    pub rcode: u8,
    /// Whether it came from the forwarding cache, and which kind of hit.
    pub cache_hit: Option<HitKind>,
}

impl FastPath {
    /// The kept answer to `query` (parsed from `bytes`), if still right at `serial`.
    pub fn answer(&self, bytes: &[u8], query: &WireQuery, serial: u32) -> Option<FastAnswer> {
        let map = self.map.read();
        let kept = map.get(&query.key)?;
        let fresh = match kept.validity {
            Validity::Serial(s) => s == serial,
            Validity::Until(t) => Instant::now() < t,
        };
        if !fresh {
            return None;
        }
        let mut out = kept.bytes.to_vec();
        let cache_hit = kept.cache_hit;
        drop(map);
        // The id, RD and CD as asked, and the question spelled as asked (same length:
        // only the case can differ); answers naming it by pointer follow its spelling.
        out[0] = bytes[0];
        out[1] = bytes[1];
        out[2] = (out[2] & !0x01) | (bytes[2] & 0x01);
        out[3] = (out[3] & !0x10) | (bytes[3] & 0x10);
        out[12..query.name_end].copy_from_slice(&bytes[12..query.name_end]);
        Some(FastAnswer {
            rcode: out[3] & 0x0f,
            bytes: out,
            cache_hit,
        })
    }

    /// Keeps `response` (the full pipeline's answer to `query`) if it is small enough.
    pub fn keep(
        &self,
        query: &WireQuery,
        response: &[u8],
        validity: Validity,
        cache_hit: Option<HitKind>,
    ) {
        // Truncated answers depend on the client's size: never keep them.
        if response.len() > MAX_LEN || response.len() < query.name_end || response[2] & 0x02 != 0 {
            return;
        }
        let mut map = self.map.write();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            query.key.clone(),
            Kept {
                bytes: response.into(),
                validity,
                cache_hit,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::request;
    use hickory_proto::op::Edns;
    use hickory_proto::rr::{Name, RecordType};

    fn wire(name: &str, edns: Option<bool>) -> Vec<u8> {
        let mut m = request(0x1234, Name::from_ascii(name).expect("name"), RecordType::A);
        if let Some(dnssec_ok) = edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn keys_ignore_case_and_separate_edns() {
        let a = parse(&wire("Web.Default.svc.cluster.local.", None)).expect("parse");
        let b = parse(&wire("web.default.svc.cluster.local.", None)).expect("parse");
        assert_eq!(a.key, b.key);
        assert_eq!(a.qtype, 1);
        assert_eq!(a.name_end, 12 + 31);
        let c = parse(&wire("web.default.svc.cluster.local.", Some(false))).expect("parse");
        let d = parse(&wire("web.default.svc.cluster.local.", Some(true))).expect("parse");
        assert_ne!(b.key, c.key);
        assert_ne!(c.key, d.key);
    }

    #[test]
    fn unusual_queries_take_the_full_pipeline() {
        let mut bytes = wire("a.example.", None);
        assert!(parse(&bytes).is_some());
        bytes.push(0); // trailing garbage
        assert!(parse(&bytes).is_none());
        let mut resp = wire("a.example.", None);
        resp[2] |= 0x80; // a response
        assert!(parse(&resp).is_none());
        let mut notify = wire("a.example.", None);
        notify[2] |= 4 << 3; // opcode NOTIFY
        assert!(parse(&notify).is_none());
        assert!(parse(&[0u8; 11]).is_none());
    }

    #[test]
    fn answers_are_patched_for_the_asker() {
        let fp = FastPath::default();
        let asked = wire("web.default.svc.cluster.local.", None);
        let q = parse(&asked).expect("parse");
        let mut response = asked.clone();
        response[2] |= 0x80; // QR
        fp.keep(&q, &response, Validity::Serial(7), None);
        let mut again = wire("WEB.default.svc.cluster.local.", None);
        again[0] = 0xab;
        again[1] = 0xcd;
        again[2] &= !0x01; // RD off
        let q2 = parse(&again).expect("parse");
        let out = fp.answer(&again, &q2, 7).expect("kept");
        assert_eq!(&out.bytes[..2], &[0xab, 0xcd]);
        assert_eq!(out.bytes[2] & 0x01, 0);
        assert_eq!(&out.bytes[12..q2.name_end], &again[12..q2.name_end]);
        assert!(
            fp.answer(&again, &q2, 8).is_none(),
            "a store change invalidates"
        );
    }
}
