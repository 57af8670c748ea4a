//! Forwarding to upstream servers, in front of the [`Cache`].
//!
//! Each miss is sent over UDP from a fresh socket (a random source port and id, so
//! answers cannot be spoofed by guessing one of them), retried over TCP when the
//! upstream truncates, and tried on the next upstream when one fails or times out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

use crate::cache::{Cache, CacheKey, HitKind};

/// EDNS payload size we ask upstreams for (the DNS flag day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;

/// Why one upstream exchange failed.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// Socket error talking to the upstream.
    #[error("upstream {addr}: {source}")]
    Io {
        /// The upstream.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("upstream {0}: timed out")]
    Timeout(SocketAddr),
    /// The answer could not be parsed.
    #[error("upstream {addr}: bad answer: {source}")]
    Parse {
        /// The upstream.
        addr: SocketAddr,
        /// The parse error.
        source: hickory_proto::ProtoError,
    },
    /// No upstream is configured.
    #[error("no upstream servers configured")]
    NoUpstreams,
}

/// Where a forwarded answer came from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from the cache.
    Cache(HitKind),
    /// Fetched from an upstream (a cache miss).
    Upstream,
}

/// The forwarder: upstreams and the cache.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Cache,
    timeout: Duration,
    preferred: AtomicUsize,
    inflight: Mutex<HashMap<CacheKey, Vec<oneshot::Sender<Message>>>>,
}

impl Forwarder {
    /// A forwarder to `upstreams` (tried in order) with a cache of `cache_size` entries.
    pub fn new(upstreams: Vec<SocketAddr>, cache_size: usize) -> Self {
        Self {
            upstreams,
            cache: Cache::new(cache_size),
            timeout: Duration::from_secs(2),
            preferred: AtomicUsize::new(0),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The cache (for metrics).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cached answer to `req`, if any (no IO: the query loop calls it inline).
    pub fn cached(&self, req: &Message) -> Option<(Message, HitKind)> {
        let key = CacheKey::of(req)?;
        self.cache.get(&key, req)
    }

    /// As [`Forwarder::cached`], with the instant until which the answer is unchanged.
    pub fn cached_until(&self, req: &Message) -> Option<(Message, HitKind, std::time::Instant)> {
        let key = CacheKey::of(req)?;
        self.cache.get_until(&key, req)
    }

    /// Resolves `req` upstream (after a cache miss) and caches the answer. On failure
    /// of every upstream the answer is SERVFAIL. Identical questions arriving while one
    /// is being asked wait for its answer instead of asking again.
    pub async fn resolve(&self, req: &Message) -> Message {
        let key = CacheKey::of(req);
        if let Some(key) = &key {
            let waiter = {
                let mut inflight = self.inflight.lock();
                match inflight.get_mut(key) {
                    Some(waiters) => {
                        let (tx, rx) = oneshot::channel();
                        waiters.push(tx);
                        Some(rx)
                    }
                    None => {
                        inflight.insert(key.clone(), Vec::new());
                        None
                    }
                }
            };
            if let Some(rx) = waiter {
                // The asker went away without an answer: ask ourselves.
                return match rx.await {
                    Ok(shared) => for_request(shared, req),
                    Err(_) => self.ask(req, None).await,
                };
            }
        }
        let guard = key.map(|k| Inflight {
            forwarder: self,
            key: k,
            finished: false,
        });
        self.ask(req, guard).await
    }

    /// Asks the upstreams, caches, and hands the answer to whoever waits on `guard`.
    async fn ask(&self, req: &Message, guard: Option<Inflight<'_>>) -> Message {
        let resp = match self.exchange_any(req).await {
            Ok(resp) => {
                if let Some(key) = CacheKey::of(req) {
                    self.cache.put(key, &resp);
                }
                resp
            }
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                crate::answer::response(req, ResponseCode::ServFail)
            }
        };
        if let Some(g) = guard {
            for tx in g.finish() {
                let _ = tx.send(resp.clone());
            }
        }
        for_request(resp, req)
    }

    async fn exchange_any(&self, req: &Message) -> Result<Message, ForwardError> {
        let mut last = ForwardError::NoUpstreams;
        let n = self.upstreams.len();
        // Start with the upstream that answered last, so a dead first upstream does not
        // cost every query a timeout.
        let first = self.preferred.load(Ordering::Relaxed);
        for k in 0..n {
            let i = (first + k) % n;
            match self.exchange(self.upstreams[i], req).await {
                Ok(resp) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One exchange with one upstream: UDP, then TCP if the answer was truncated.
    async fn exchange(&self, addr: SocketAddr, req: &Message) -> Result<Message, ForwardError> {
        let id: u16 = rand::random();
        let mut q = Message::new();
        q.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_checking_disabled(req.checking_disabled());
        q.add_queries(req.queries().iter().cloned());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        edns.set_dnssec_ok(
            req.extensions()
                .as_ref()
                .is_some_and(|e| e.flags().dnssec_ok),
        );
        q.set_edns(edns);
        let wire = q
            .to_vec()
            .map_err(|source| ForwardError::Parse { addr, source })?;
        let resp = tokio::time::timeout(self.timeout, udp_exchange(addr, &wire, &q))
            .await
            .map_err(|_| ForwardError::Timeout(addr))??;
        if !resp.truncated() {
            return Ok(resp);
        }
        tokio::time::timeout(self.timeout, tcp_exchange(addr, &wire))
            .await
            .map_err(|_| ForwardError::Timeout(addr))?
    }
}

/// `resp` as the answer to `req`: its id, and the question as it was asked (case
/// included).
fn for_request(mut resp: Message, req: &Message) -> Message {
    resp.set_id(req.id());
    *resp.queries_mut() = req.queries().to_vec();
    resp
}

/// A question being asked upstream; dropping it (also when the asking task is
/// cancelled) removes it, so waiters fall back to asking themselves.
struct Inflight<'a> {
    forwarder: &'a Forwarder,
    key: CacheKey,
    finished: bool,
}

impl Inflight<'_> {
    /// Removes the question and returns its waiters.
    fn finish(mut self) -> Vec<oneshot::Sender<Message>> {
        self.finished = true;
        self.forwarder
            .inflight
            .lock()
            .remove(&self.key)
            .unwrap_or_default()
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.forwarder.inflight.lock().remove(&self.key);
        }
    }
}

async fn udp_exchange(addr: SocketAddr, wire: &[u8], q: &Message) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { addr, source };
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(addr).await.map_err(io)?;
    sock.send(wire).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        let Ok(resp) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Ignore anything that is not the answer to this question.
        if resp.id() == q.id()
            && resp.message_type() == MessageType::Response
            && resp.queries() == q.queries()
        {
            return Ok(resp);
        }
    }
}

async fn tcp_exchange(addr: SocketAddr, wire: &[u8]) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let len = u16::try_from(wire.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(wire.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wire);
    stream.write_all(&out).await.map_err(io)?;
    let mut lb = [0u8; 2];
    stream.read_exact(&mut lb).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Message::from_vec(&buf).map_err(|source| ForwardError::Parse { addr, source })
}

/// The `nameserver` addresses of a resolv.conf text (port 53).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A loopback upstream answering every A query with 192.0.2.99, counting queries.
    async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                let mut r = crate::answer::response(&q, ResponseCode::NoError);
                let name = q.queries()[0].name().clone();
                r.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::A(A::new(192, 0, 2, 99)),
                ));
                let _ = sock.send_to(&r.to_vec().expect("encode"), peer).await;
            }
        });
        (addr, count)
    }

    #[tokio::test]
    async fn identical_questions_in_flight_are_asked_once() {
        let (up, count) = counting_upstream().await;
        let fwd = Forwarder::new(vec![up], 100);
        let reqs: Vec<Message> = (0..5u16)
            .map(|id| {
                crate::answer::request(
                    id,
                    Name::from_ascii("same.example.").expect("name"),
                    RecordType::A,
                )
            })
            .collect();
        // All five are polled (and register) before the first answer can be read.
        let answers = futures::future::join_all(reqs.iter().map(|r| fwd.resolve(r))).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a.id(), i as u16);
            assert_eq!(a.answers().len(), 1);
        }
        assert!(fwd.inflight.lock().is_empty());
        // Now cached.
        assert!(fwd.cached(&reqs[0]).is_some());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\nnameserver  fe80::1%eth0\noptions ndots:5\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
