//! The DNS listeners (UDP and TCP) and the request pipeline.
//!
//! A request is parsed, answered from the zone or the cache without leaving the
//! receiving task, or else handed to a task that asks the upstreams so a slow upstream
//! never holds up other queries. Every response gets the request's EDNS treatment (OPT
//! echoed with our payload size) and, over UDP, is truncated (TC) to what the client can
//! take: 512 bytes, or its EDNS size.

pub mod udp_batch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::answer::{self, Outcome};
use crate::fastpath::{self, FastPath, Validity};
use crate::forward::Forwarder;
use crate::metrics::{Metrics, Proto};
use crate::records::Records;

/// EDNS payload size we advertise, and the most we send over UDP.
const OUR_PAYLOAD: u16 = 1232;
/// Classic DNS UDP limit, for clients without EDNS.
const PLAIN_UDP_LIMIT: usize = 512;
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The request pipeline, shared by all listeners.
#[derive(Debug)]
pub struct Handler {
    records: Arc<Records>,
    ttl: u32,
    forwarder: Forwarder,
    metrics: Metrics,
    fast: FastPath,
}

/// A request that needs the upstreams.
#[derive(Debug)]
pub struct Pending {
    req: Message,
    proto: Proto,
    start: Instant,
    chase: Option<(Message, Name)>,
}

/// What the synchronous part of the pipeline decided.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Ask the upstreams (see [`Handler::upstream`]).
    Upstream(Box<Pending>),
    /// Send nothing (not a DNS query).
    Drop,
}

impl Handler {
    /// A pipeline over `records` forwarding the rest with `forwarder`.
    pub fn new(records: Arc<Records>, ttl: u32, forwarder: Forwarder, metrics: Metrics) -> Self {
        Self {
            records,
            ttl,
            forwarder,
            metrics,
            fast: FastPath::default(),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The forwarder (and its cache).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Handles one request completely (TCP and tests).
    pub async fn handle(&self, bytes: &[u8], proto: Proto) -> Option<Vec<u8>> {
        match self.step(bytes, proto) {
            Step::Reply(b) => Some(b),
            Step::Upstream(p) => Some(self.upstream(*p).await),
            Step::Drop => None,
        }
    }

    /// The part of the pipeline that needs no IO.
    pub fn step(&self, bytes: &[u8], proto: Proto) -> Step {
        let start = Instant::now();
        // Read before answering: an answer built while the store changes is then
        // already stale when kept, never wrongly fresh.
        let serial = self.records.serial();
        let wire = fastpath::parse(bytes);
        if let Some(w) = &wire {
            if let Some(fast) = self.fast.answer(bytes, w, serial) {
                self.metrics.request(proto, RecordType::from(w.qtype));
                if let Some(kind) = fast.cache_hit {
                    self.metrics.cache_hit(kind);
                }
                self.metrics
                    .response(ResponseCode::from(0, fast.rcode), start.elapsed());
                return Step::Reply(fast.bytes);
            }
        }
        let req = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => return self.malformed(bytes, start),
        };
        if req.message_type() != MessageType::Query {
            return Step::Drop;
        }
        let qtype = req
            .queries()
            .first()
            .map(|q| q.query_type())
            .unwrap_or(RecordType::NULL);
        self.metrics.request(proto, qtype);
        if req.op_code() != OpCode::Query {
            let resp = answer::response(&req, ResponseCode::NotImp);
            return Step::Reply(self.finish(&req, resp, proto, start));
        }
        if req.queries().len() != 1 {
            let resp = answer::response(&req, ResponseCode::FormErr);
            return Step::Reply(self.finish(&req, resp, proto, start));
        }
        if let Some(edns) = req.extensions() {
            if edns.version() > 0 {
                let resp = answer::response(&req, ResponseCode::BADVERS);
                return Step::Reply(self.finish(&req, resp, proto, start));
            }
        }
        match answer::answer(&self.records, self.ttl, &req) {
            Outcome::Local(resp) => {
                let out = self.finish(&req, resp, proto, start);
                if let Some(w) = &wire {
                    self.fast.keep(w, &out, Validity::Serial(serial), None);
                }
                Step::Reply(out)
            }
            Outcome::Chase { partial, target } => Step::Upstream(Box::new(Pending {
                req,
                proto,
                start,
                chase: Some((partial, target)),
            })),
            Outcome::Forward => match self.forwarder.cached_until(&req) {
                Some((resp, kind, same_until)) => {
                    self.metrics.cache_hit(kind);
                    let out = self.finish(&req, resp, proto, start);
                    if let Some(w) = &wire {
                        self.fast
                            .keep(w, &out, Validity::Until(same_until), Some(kind));
                    }
                    Step::Reply(out)
                }
                None => Step::Upstream(Box::new(Pending {
                    req,
                    proto,
                    start,
                    chase: None,
                })),
            },
        }
    }

    /// Completes a request that needs the upstreams.
    pub async fn upstream(&self, p: Pending) -> Vec<u8> {
        let resp = match p.chase {
            None => {
                self.metrics.cache_miss();
                self.forwarder.resolve(&p.req).await
            }
            Some((mut partial, target)) => {
                let qtype = p
                    .req
                    .queries()
                    .first()
                    .map(|q| q.query_type())
                    .unwrap_or(RecordType::A);
                let sub = answer::request(p.req.id(), target, qtype);
                let tail = match self.forwarder.cached(&sub) {
                    Some((m, kind)) => {
                        self.metrics.cache_hit(kind);
                        m
                    }
                    None => {
                        self.metrics.cache_miss();
                        self.forwarder.resolve(&sub).await
                    }
                };
                partial.add_answers(tail.answers().iter().cloned());
                if tail.response_code() != ResponseCode::NoError {
                    partial.set_response_code(tail.response_code());
                }
                partial
            }
        };
        self.finish(&p.req, resp, p.proto, p.start)
    }

    /// FORMERR for a message we could not parse, if it has at least a header.
    fn malformed(&self, bytes: &[u8], start: Instant) -> Step {
        // Only answer things that look like queries (QR bit clear), never responses.
        if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
            return Step::Drop;
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
        self.metrics
            .response(ResponseCode::FormErr, start.elapsed());
        match resp.to_vec() {
            Ok(b) => Step::Reply(b),
            Err(_) => Step::Drop,
        }
    }

    /// EDNS, id, serialization and UDP truncation; counts the response.
    fn finish(&self, req: &Message, mut resp: Message, proto: Proto, start: Instant) -> Vec<u8> {
        resp.set_id(req.id());
        let mut limit = match proto {
            Proto::Udp => PLAIN_UDP_LIMIT,
            Proto::Tcp => usize::from(u16::MAX),
        };
        *resp.extensions_mut() = None;
        if let Some(e) = req.extensions() {
            let mut edns = Edns::new();
            edns.set_max_payload(OUR_PAYLOAD);
            edns.set_version(0);
            edns.set_dnssec_ok(e.flags().dnssec_ok);
            resp.set_edns(edns);
            if proto == Proto::Udp {
                limit = usize::from(e.max_payload().clamp(PLAIN_UDP_LIMIT as u16, OUR_PAYLOAD));
            }
        }
        let rcode = resp.response_code();
        let mut bytes = encode(&resp);
        if bytes.len() > limit {
            // Keep what fits, flag the rest: the client retries over TCP.
            resp.set_truncated(true);
            resp.take_additionals();
            resp.take_name_servers();
            bytes = encode(&resp);
            while bytes.len() > limit && !resp.answers().is_empty() {
                resp.answers_mut().pop();
                bytes = encode(&resp);
            }
        }
        self.metrics.response(rcode, start.elapsed());
        bytes
    }
}

fn encode(msg: &Message) -> Vec<u8> {
    msg.to_vec().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not encode a response");
        Message::error_msg(msg.id(), OpCode::Query, ResponseCode::ServFail)
            .to_vec()
            .unwrap_or_default()
    })
}

/// Serves UDP: one thread per socket (the sockets share the port with SO_REUSEPORT, so
/// the kernel spreads clients over them), forever. Blocking threads cost less per query
/// than async tasks sharing one socket; work that waits for an upstream goes to `rt`.
pub fn serve_udp(
    socks: Vec<std::net::UdpSocket>,
    handler: Arc<Handler>,
    rt: tokio::runtime::Handle,
) {
    for (i, sock) in socks.into_iter().enumerate() {
        let handler = handler.clone();
        let rt = rt.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp_batch::serve(Arc::new(sock), handler, rt));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "starting a UDP thread");
        }
    }
}

/// Serves TCP on `listener`, forever.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = tcp_conn(stream, handler).await {
                        tracing::debug!(error = %e, "tcp connection");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_conn(mut stream: TcpStream, handler: Arc<Handler>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        let mut lb = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut lb)).await {
            Ok(Ok(_)) => {}
            // Idle, or closed by the client between messages: both are normal ends.
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tcp read"))??;
        let Some(resp) = handler.handle(&buf, Proto::Tcp).await else {
            continue;
        };
        let len = u16::try_from(resp.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&resp);
        stream.write_all(&out).await?;
    }
}

/// Bound listeners, ready to serve.
#[derive(Debug)]
pub struct Listeners {
    /// The UDP sockets, all on the same address (SO_REUSEPORT).
    pub udp: Vec<std::net::UdpSocket>,
    /// The TCP listener.
    pub tcp: TcpListener,
}

impl Listeners {
    /// Binds `udp_sockets` UDP sockets and a TCP listener on `addr`; with port 0 the
    /// port picked for the first UDP socket is used for all.
    pub async fn bind(addr: SocketAddr, udp_sockets: usize) -> anyhow::Result<Self> {
        // With port 0 the port the UDP socket got may be taken for TCP: try others.
        let attempts = if addr.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            match Self::bind_once(addr, udp_sockets).await {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("binding DNS {addr}")))
    }

    async fn bind_once(addr: SocketAddr, udp_sockets: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let first = reuseport_udp(addr).with_context(|| format!("binding DNS UDP {addr}"))?;
        let bound = first.local_addr().context("UDP local address")?;
        let mut udp = vec![first];
        for _ in 1..udp_sockets.max(1) {
            udp.push(reuseport_udp(bound).with_context(|| format!("binding DNS UDP {bound}"))?);
        }
        let tcp = TcpListener::bind(bound)
            .await
            .with_context(|| format!("binding DNS TCP {bound}"))?;
        Ok(Self { udp, tcp })
    }

    /// The bound address (same port for UDP and TCP).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A blocking UDP socket bound to `addr` with SO_REUSEPORT.
fn reuseport_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_port(true)?;
    // Room for bursts while a thread is busy.
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&addr.into())?;
    Ok(sock.into())
}
