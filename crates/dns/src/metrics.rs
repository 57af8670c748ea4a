//! Prometheus metrics under CoreDNS's names, kept in atomics and rendered as text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::cache::HitKind;

/// Transport a query came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Query types counted separately (CoreDNS's list); the rest are `other`.
const TYPES: [(RecordType, &str); 11] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::MX, "MX"),
    (RecordType::NS, "NS"),
    (RecordType::PTR, "PTR"),
    (RecordType::SOA, "SOA"),
    (RecordType::SRV, "SRV"),
    (RecordType::TXT, "TXT"),
    (RecordType::ANY, "ANY"),
    (RecordType::HTTPS, "HTTPS"),
];
const OTHER: usize = TYPES.len();
/// Response codes counted by name (0..=10), the rest as their number.
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];
/// Histogram bounds in seconds (CoreDNS's `dns_request_duration_seconds`).
const BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

/// The counters.
#[derive(Debug)]
pub struct Metrics {
    server: String,
    requests: [[AtomicU64; OTHER + 1]; 2],
    responses: [AtomicU64; RCODES.len() + 1],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_ns: AtomicU64,
    cache_hits_success: AtomicU64,
    cache_hits_denial: AtomicU64,
    cache_misses: AtomicU64,
    forward_requests: AtomicU64,
}

impl Metrics {
    /// Metrics for the server listening on `listen` (the `server` label).
    pub fn new(listen: std::net::SocketAddr) -> Self {
        Self {
            server: format!("dns://:{}", listen.port()),
            requests: Default::default(),
            responses: Default::default(),
            buckets: Default::default(),
            duration_count: AtomicU64::new(0),
            duration_sum_ns: AtomicU64::new(0),
            cache_hits_success: AtomicU64::new(0),
            cache_hits_denial: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            forward_requests: AtomicU64::new(0),
        }
    }

    /// Counts a request.
    pub fn request(&self, proto: Proto, qtype: RecordType) {
        let t = TYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(OTHER);
        self.requests[proto as usize][t].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response and how long it took.
    pub fn response(&self, rcode: ResponseCode, took: Duration) {
        let code = usize::from(u16::from(rcode));
        self.responses[code.min(RCODES.len())].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts a cache hit.
    pub fn cache_hit(&self, kind: HitKind) {
        match kind {
            HitKind::Success => &self.cache_hits_success,
            HitKind::Denial => &self.cache_hits_denial,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a cache miss (a query sent upstream).
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        self.forward_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Total responses sent (tests).
    pub fn responses_total(&self) -> u64 {
        self.responses
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Cache hits so far (tests).
    pub fn cache_hits_total(&self) -> u64 {
        self.cache_hits_success.load(Ordering::Relaxed)
            + self.cache_hits_denial.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition; `cache_entries` is the cache's current size.
    pub fn render(&self, cache_entries: usize) -> String {
        let s = &self.server;
        let mut out = String::new();
        let _ = writeln!(out, "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.");
        let _ = writeln!(out, "# TYPE coredns_dns_requests_total counter");
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            for (t, c) in self.requests[p].iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v == 0 {
                    continue;
                }
                let ty = TYPES.get(t).map(|(_, n)| *n).unwrap_or("other");
                let _ = writeln!(
                    out,
                    "coredns_dns_requests_total{{family=\"1\",proto=\"{proto}\",server=\"{s}\",type=\"{ty}\",view=\"\",zone=\".\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP coredns_dns_responses_total Counter of response status codes."
        );
        let _ = writeln!(out, "# TYPE coredns_dns_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let rcode = RCODES.get(i).copied().unwrap_or("OTHER");
            let _ = writeln!(
                out,
                "coredns_dns_responses_total{{plugin=\"\",rcode=\"{rcode}\",server=\"{s}\",view=\"\",zone=\".\"}} {v}"
            );
        }
        let _ = writeln!(out, "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.");
        let _ = writeln!(out, "# TYPE coredns_dns_request_duration_seconds histogram");
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{server=\"{s}\",view=\"\",zone=\".\",le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let sum = self.duration_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "coredns_dns_request_duration_seconds_bucket{{server=\"{s}\",view=\"\",zone=\".\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "coredns_dns_request_duration_seconds_sum{{server=\"{s}\",view=\"\",zone=\".\"}} {sum}"
        );
        let _ = writeln!(out, "coredns_dns_request_duration_seconds_count{{server=\"{s}\",view=\"\",zone=\".\"}} {count}");
        let _ = writeln!(
            out,
            "# HELP coredns_cache_hits_total The count of cache hits."
        );
        let _ = writeln!(out, "# TYPE coredns_cache_hits_total counter");
        let _ = writeln!(
            out,
            "coredns_cache_hits_total{{server=\"{s}\",type=\"denial\",view=\"\",zones=\".\"}} {}",
            self.cache_hits_denial.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "coredns_cache_hits_total{{server=\"{s}\",type=\"success\",view=\"\",zones=\".\"}} {}",
            self.cache_hits_success.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP coredns_cache_misses_total The count of cache misses."
        );
        let _ = writeln!(out, "# TYPE coredns_cache_misses_total counter");
        let _ = writeln!(
            out,
            "coredns_cache_misses_total{{server=\"{s}\",view=\"\",zones=\".\"}} {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP coredns_cache_entries The number of elements in the cache."
        );
        let _ = writeln!(out, "# TYPE coredns_cache_entries gauge");
        let _ = writeln!(out, "coredns_cache_entries{{server=\"{s}\",type=\"success\",view=\"\",zones=\".\"}} {cache_entries}");
        let _ = writeln!(
            out,
            "# HELP coredns_forward_requests_total Counter of requests made per upstream."
        );
        let _ = writeln!(out, "# TYPE coredns_forward_requests_total counter");
        let _ = writeln!(
            out,
            "coredns_forward_requests_total {}",
            self.forward_requests.load(Ordering::Relaxed)
        );
        out
    }
}
