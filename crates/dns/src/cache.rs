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
        Some((msg, kind))
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
