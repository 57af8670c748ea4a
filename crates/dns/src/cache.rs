//! A bounded cache of forwarded answers, positive and negative.
//!
//! Entries are keyed by the lower-cased question and the DO/CD bits, live for the
//! smallest TTL of the answer (negative answers: the SOA's, RFC 2308), and are served
//! with their TTLs decreased by the time spent in the cache. The map is split into
//! shards so that the query workers rarely wait for each other.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record};
use parking_lot::Mutex;

/// Longest time a positive answer is kept (as CoreDNS's cache plugin).
const MAX_POSITIVE_TTL: u32 = 3600;
/// Longest time a negative answer is kept.
const MAX_NEGATIVE_TTL: u32 = 1800;
/// How long an upstream SERVFAIL is kept, so a failing upstream is not hammered.
const SERVFAIL_TTL: u32 = 5;
const SHARDS: usize = 16;

/// The cache key: lower-cased name, type, class and the DO and CD bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl CacheKey {
    /// The key of a request, `None` if it has no question.
    pub fn of(req: &Message) -> Option<Self> {
        let q = req.queries().first()?;
        Some(Self {
            name: q.name().to_ascii().to_ascii_lowercase(),
            qtype: u16::from(q.query_type()),
            qclass: u16::from(q.query_class()),
            dnssec_ok: req
                .extensions()
                .as_ref()
                .is_some_and(|e| e.flags().dnssec_ok),
            checking_disabled: req.checking_disabled(),
        })
    }
}

/// What a hit is: positive (`success`) or negative (`denial`), as CoreDNS labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    /// An answer with records.
    Success,
    /// NXDOMAIN, NODATA or SERVFAIL.
    Denial,
}

#[derive(Debug)]
struct CacheEntry {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    authentic_data: bool,
    stored: Instant,
    expires: Instant,
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<HashMap<CacheKey, CacheEntry>>>,
    per_shard: usize,
}

impl Cache {
    /// A cache of at most about `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &CacheKey) -> &Mutex<HashMap<CacheKey, CacheEntry>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// The cached answer to `req` with TTLs aged, if any; the response keeps `req`'s
    /// id and question.
    pub fn get(&self, key: &CacheKey, req: &Message) -> Option<(Message, HitKind)> {
        self.get_until(key, req).map(|(m, k, _)| (m, k))
    }

    /// As [`Cache::get`], with the instant until which the answer stays the same (its
    /// TTLs age in whole seconds), for the wire-level fast path.
    pub fn get_until(&self, key: &CacheKey, req: &Message) -> Option<(Message, HitKind, Instant)> {
        if self.per_shard == 0 {
            return None;
        }
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        let entry = shard.get(key)?;
        if entry.expires <= now {
            shard.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        let mut msg = crate::answer::response(req, entry.rcode);
        msg.set_authoritative(false)
            .set_authentic_data(entry.authentic_data);
        let aged = |r: &Record| {
            let mut r = r.clone();
            r.set_ttl(r.ttl().saturating_sub(age));
            r
        };
        msg.add_answers(entry.answers.iter().map(aged));
        msg.add_name_servers(entry.authority.iter().map(aged));
        msg.add_additionals(entry.additionals.iter().map(aged));
        let kind = if entry.rcode == ResponseCode::NoError && !entry.answers.is_empty() {
            HitKind::Success
        } else {
            HitKind::Denial
        };
        let same_until =
            (entry.stored + Duration::from_secs(u64::from(age) + 1)).min(entry.expires);
        Some((msg, kind, same_until))
    }

    /// Stores an upstream response if it is cacheable.
    pub fn put(&self, key: CacheKey, resp: &Message) {
        if self.per_shard == 0 || resp.truncated() {
            return;
        }
        let Some(ttl) = cache_ttl(resp) else {
            return;
        };
        if ttl == 0 {
            return;
        }
        let now = Instant::now();
        let entry = CacheEntry {
            rcode: resp.response_code(),
            answers: resp.answers().to_vec(),
            authority: resp.name_servers().to_vec(),
            additionals: resp.additionals().to_vec(),
            authentic_data: resp.authentic_data(),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
        };
        let mut shard = self.shard(&key).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                // Still full: evict the entry closest to expiry.
                if let Some(k) = shard
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(key, entry);
    }

    /// Number of entries held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a response may be cached, `None` if it must not be.
pub fn cache_ttl(resp: &Message) -> Option<u32> {
    match resp.response_code() {
        ResponseCode::NoError if !resp.answers().is_empty() => {
            let min = resp.answers().iter().map(Record::ttl).min()?;
            Some(min.min(MAX_POSITIVE_TTL))
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            // RFC 2308: the negative TTL is min(SOA TTL, SOA minimum); no SOA, no caching.
            let soa = resp.name_servers().iter().find_map(|r| match r.data() {
                RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
                _ => None,
            })?;
            Some(soa.min(MAX_NEGATIVE_TTL))
        }
        ResponseCode::ServFail => Some(SERVFAIL_TTL),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::request;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RecordType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn upstream_answer(
        req: &Message,
        rcode: ResponseCode,
        a_ttl: Option<u32>,
        soa: Option<(u32, u32)>,
    ) -> Message {
        let mut m = crate::answer::response(req, rcode);
        if let Some(ttl) = a_ttl {
            m.add_answer(Record::from_rdata(
                name("www.example.test."),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        if let Some((ttl, minimum)) = soa {
            let soa = SOA::new(
                name("ns.example.test."),
                name("h.example.test."),
                1,
                1,
                1,
                1,
                minimum,
            );
            m.add_name_server(Record::from_rdata(
                name("example.test."),
                ttl,
                RData::SOA(soa),
            ));
        }
        m
    }

    #[test]
    fn ttls_positive_negative_and_uncacheable() {
        let req = request(1, name("www.example.test."), RecordType::A);
        assert_eq!(
            cache_ttl(&upstream_answer(
                &req,
                ResponseCode::NoError,
                Some(300),
                None
            )),
            Some(300)
        );
        assert_eq!(
            cache_ttl(&upstream_answer(
                &req,
                ResponseCode::NoError,
                Some(99999),
                None
            )),
            Some(3600)
        );
        // Negative: min(SOA TTL, SOA minimum).
        assert_eq!(
            cache_ttl(&upstream_answer(
                &req,
                ResponseCode::NXDomain,
                None,
                Some((600, 60))
            )),
            Some(60)
        );
        assert_eq!(
            cache_ttl(&upstream_answer(
                &req,
                ResponseCode::NoError,
                None,
                Some((30, 900))
            )),
            Some(30)
        );
        assert_eq!(
            cache_ttl(&upstream_answer(&req, ResponseCode::NXDomain, None, None)),
            None
        );
        assert_eq!(
            cache_ttl(&upstream_answer(&req, ResponseCode::ServFail, None, None)),
            Some(5)
        );
        assert_eq!(
            cache_ttl(&upstream_answer(&req, ResponseCode::Refused, None, None)),
            None
        );
    }

    #[test]
    fn hits_are_case_insensitive_and_keep_the_question() {
        let cache = Cache::new(100);
        let req = request(1, name("www.example.test."), RecordType::A);
        cache.put(
            CacheKey::of(&req).expect("key"),
            &upstream_answer(&req, ResponseCode::NoError, Some(300), None),
        );
        let other = request(9, name("WWW.Example.Test."), RecordType::A);
        let (m, kind) = cache
            .get(&CacheKey::of(&other).expect("key"), &other)
            .expect("hit");
        assert_eq!(kind, HitKind::Success);
        assert_eq!(m.id(), 9);
        assert_eq!(m.queries()[0].name().to_ascii(), "WWW.Example.Test.");
        assert_eq!(m.answers()[0].ttl(), 300);
        // Another type misses.
        let aaaa = request(2, name("www.example.test."), RecordType::AAAA);
        assert!(cache
            .get(&CacheKey::of(&aaaa).expect("key"), &aaaa)
            .is_none());
        // A negative answer is a denial hit.
        cache.put(
            CacheKey::of(&aaaa).expect("key"),
            &upstream_answer(&aaaa, ResponseCode::NoError, None, Some((60, 60))),
        );
        let (_, kind) = cache
            .get(&CacheKey::of(&aaaa).expect("key"), &aaaa)
            .expect("hit");
        assert_eq!(kind, HitKind::Denial);
    }

    #[test]
    fn size_is_bounded() {
        let cache = Cache::new(32);
        for i in 0..1000 {
            let req = request(1, name(&format!("h{i}.example.test.")), RecordType::A);
            cache.put(
                CacheKey::of(&req).expect("key"),
                &upstream_answer(&req, ResponseCode::NoError, Some(300), None),
            );
        }
        assert!(cache.len() <= 32, "{}", cache.len());
    }
}
