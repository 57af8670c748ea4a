//! The server side of a SPDY/3.1 connection, as kubectl's `httpstream` client
//! (moby/spdystream) expects it: the client opens every stream, we answer each with a
//! SYN_REPLY, data flows both ways with FIN half-closes, PINGs are echoed, GOAWAY ends the
//! connection.
//!
//! Flow control: what we receive is acknowledged with WINDOW_UPDATE once the handler has
//! consumed it, so a peer that honours windows never stalls; a full per-stream queue holds
//! the connection's reader (as spdystream's own unbuffered channels do) rather than
//! buffering without bound. What we send honours the peer's per-stream window (64 KiB
//! unless SETTINGS say otherwise) once the peer has shown it does flow control (a
//! WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting): spdystream never sends
//! WINDOW_UPDATE, and blocking on its window would stall every output after 64 KiB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::frame::{self, rst, Decoder, Encoder, Frame, Headers, FLAG_FIN};

/// The per-stream window both sides start with.
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Largest data frame we send (well under the 24-bit limit; keeps streams interleaved).
const MAX_CHUNK: usize = 32 * 1024;
/// Data frames a stream may have queued for its handler before the reader waits.
const STREAM_QUEUE: usize = 16;

/// A stream or connection that can no longer carry data.
#[derive(Debug, thiserror::Error)]
#[error("SPDY stream {0} is closed")]
pub struct Closed(pub u32);

enum Out {
    Frame(Frame),
    /// Everything queued before is written; then the socket's write side is shut.
    Finish(oneshot::Sender<()>),
}

/// A send window shared by a stream's writers and the connection's reader.
struct Window {
    avail: AtomicI64,
    /// Set when the stream was reset or the connection ended: writes fail.
    dead: AtomicBool,
    changed: Notify,
}

struct Slot {
    /// Data toward the handler; None after the peer's FIN.
    data: Option<mpsc::Sender<Bytes>>,
    window: Arc<Window>,
    local_closed: bool,
}

struct Shared {
    out: mpsc::Sender<Out>,
    streams: Mutex<HashMap<u32, Slot>>,
    /// The peer's initial window for new streams.
    initial_window: AtomicI64,
    /// The peer does flow control (sent WINDOW_UPDATE or INITIAL_WINDOW_SIZE).
    peer_flow_control: AtomicBool,
    /// Highest stream id the peer opened (for GOAWAY).
    last_stream: AtomicI64,
    /// True once the connection's reader has ended.
    closed: watch::Sender<bool>,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, f: Frame) -> bool {
        self.out.send(Out::Frame(f)).await.is_ok()
    }

    /// Forgets a stream once both halves are closed.
    fn maybe_forget(&self, id: u32) {
        let mut slots = self.slots();
        if slots
            .get(&id)
            .is_some_and(|s| s.local_closed && s.data.is_none())
        {
            slots.remove(&id);
        }
    }
}

/// A stream the client opened.
pub struct Stream {
    /// Stream id (odd: client-initiated).
    pub id: u32,
    /// The SYN_STREAM's headers (names lowercase).
    pub headers: Headers,
    /// Data from the client.
    pub reader: StreamReader,
    /// Data toward the client.
    pub writer: StreamWriter,
}

impl Stream {
    /// A header of the SYN_STREAM (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

impl StreamReader {
    /// The next chunk of data; None after the client's FIN, a reset, or the end of the
    /// connection. Each chunk taken is acknowledged with WINDOW_UPDATE (stream and
    /// connection windows).
    pub async fn recv(&mut self) -> Option<Bytes> {
        let b = self.rx.recv().await?;
        let delta = b.len() as u32;
        if delta > 0 {
            let _ = self
                .shared
                .send(Frame::WindowUpdate {
                    stream_id: self.id,
                    delta,
                })
                .await;
            let _ = self
                .shared
                .send(Frame::WindowUpdate {
                    stream_id: 0,
                    delta,
                })
                .await;
        }
        Some(b)
    }
}

/// The sending half of a stream (cheap to clone).
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    window: Arc<Window>,
}

impl StreamWriter {
    /// Stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Accepts the stream (SYN_REPLY without headers). The client waits for it before
    /// using the stream, and ignores data sent before it.
    pub async fn reply(&self) -> Result<(), Closed> {
        self.shared
            .send(Frame::SynReply {
                stream_id: self.id,
                flags: 0,
                headers: Vec::new(),
            })
            .await
            .then_some(())
            .ok_or(Closed(self.id))
    }

    /// Sends data, in frames of at most 32 KiB, within the peer's window if it keeps one.
    pub async fn write(&self, mut data: &[u8]) -> Result<(), Closed> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_CHUNK)).await?;
            let f = Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(&data[..n]),
            };
            if !self.shared.send(f).await {
                return Err(Closed(self.id));
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Waits for room in the window; returns how many bytes may go now.
    async fn reserve(&self, want: usize) -> Result<usize, Closed> {
        loop {
            let notified = self.window.changed.notified();
            if self.window.dead.load(Ordering::Acquire) {
                return Err(Closed(self.id));
            }
            let avail = self.window.avail.load(Ordering::Acquire);
            if !self.shared.peer_flow_control.load(Ordering::Acquire) {
                self.window.avail.fetch_sub(want as i64, Ordering::AcqRel);
                return Ok(want);
            }
            if avail > 0 {
                let n = want.min(avail as usize);
                self.window.avail.fetch_sub(n as i64, Ordering::AcqRel);
                return Ok(n);
            }
            notified.await;
        }
    }

    /// Half-closes our side (an empty data frame with FLAG_FIN); idempotent.
    pub async fn close(&self) {
        let first = {
            let mut slots = self.shared.slots();
            match slots.get_mut(&self.id) {
                Some(s) if !s.local_closed => {
                    s.local_closed = true;
                    true
                }
                _ => false,
            }
        };
        if first {
            let _ = self
                .shared
                .send(Frame::Data {
                    stream_id: self.id,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                })
                .await;
            self.shared.maybe_forget(self.id);
        }
    }

    /// Aborts the stream (RST_STREAM with `status`, see [`frame::rst`]).
    pub async fn reset(&self, status: u32) {
        self.window.dead.store(true, Ordering::Release);
        self.window.changed.notify_waiters();
        self.shared.slots().remove(&self.id);
        let _ = self
            .shared
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await;
    }
}

/// A served SPDY connection.
pub struct Connection {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    closed: watch::Receiver<bool>,
}

/// Serves the server side of a SPDY/3.1 connection on `io`: returns the connection and
/// the streams the client opens, in order (not yet replied to).
pub fn serve<T>(io: T) -> (Connection, mpsc::Receiver<Stream>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (closed_tx, closed_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        out: out_tx,
        streams: Mutex::new(HashMap::new()),
        initial_window: AtomicI64::new(DEFAULT_WINDOW),
        peer_flow_control: AtomicBool::new(false),
        last_stream: AtomicI64::new(0),
        closed: closed_tx,
    });
    let (new_tx, new_rx) = mpsc::channel::<Stream>(16);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let reader = tokio::spawn(read_loop(rd, shared.clone(), new_tx));
    (
        Connection {
            shared,
            reader,
            writer,
            closed: closed_rx,
        },
        new_rx,
    )
}

impl Connection {
    /// Resolves when the client has closed the connection (or it broke).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// A future that resolves when the client has closed the connection, independent of
    /// this handle's lifetime.
    pub fn closed_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.clone();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Ends the connection: GOAWAY, a short wait for the client to hang up (so frames in
    /// flight are read, not lost to a reset), then every queued frame is written and the
    /// socket closed.
    pub async fn finish(self, grace: Duration) {
        let last_good = self.shared.last_stream.load(Ordering::Acquire) as u32;
        let _ = self
            .shared
            .send(Frame::GoAway {
                last_good,
                status: 0,
            })
            .await;
        let _ = tokio::time::timeout(grace, self.closed()).await;
        let (tx, rx) = oneshot::channel();
        if self.shared.out.send(Out::Finish(tx)).await.is_ok() {
            let _ = tokio::time::timeout(grace, rx).await;
        }
        self.reader.abort();
        self.writer.abort();
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut wr = std::pin::pin!(wr);
    let mut enc = Encoder::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut finish = None;
        // Batch what is queued into one write.
        while let Some(o) = next.take() {
            match o {
                Out::Frame(f) => {
                    if let Err(e) = enc.encode(&f, &mut buf) {
                        tracing::debug!(error = %e, "spdy: encoding a frame");
                        return;
                    }
                }
                Out::Finish(done) => {
                    finish = Some(done);
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            buf.clear();
        }
        if let Some(done) = finish {
            let _ = wr.shutdown().await;
            let _ = done.send(());
            return;
        }
    }
}

async fn read_loop<R: AsyncRead>(rd: R, shared: Arc<Shared>, new_streams: mpsc::Sender<Stream>) {
    let mut rd = std::pin::pin!(rd);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'conn: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy: bad frame; closing");
                    let _ = shared
                        .send(Frame::GoAway {
                            last_good: shared.last_stream.load(Ordering::Acquire) as u32,
                            status: 1,
                        })
                        .await;
                    break 'conn;
                }
            };
            handle(&shared, &new_streams, frame).await;
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Every stream ends: readers see EOF, writers fail.
    let slots: Vec<Slot> = shared.slots().drain().map(|(_, s)| s).collect();
    for s in slots {
        s.window.dead.store(true, Ordering::Release);
        s.window.changed.notify_waiters();
    }
    let _ = shared.closed.send(true);
}

async fn handle(shared: &Arc<Shared>, new_streams: &mpsc::Sender<Stream>, frame: Frame) {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let bad = stream_id == 0
                || stream_id % 2 == 0
                || shared.slots().contains_key(&stream_id)
                || i64::from(stream_id) <= shared.last_stream.load(Ordering::Acquire);
            if bad {
                let _ = shared
                    .send(Frame::RstStream {
                        stream_id,
                        status: rst::PROTOCOL_ERROR,
                    })
                    .await;
                return;
            }
            shared
                .last_stream
                .store(i64::from(stream_id), Ordering::Release);
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            let window = Arc::new(Window {
                avail: AtomicI64::new(shared.initial_window.load(Ordering::Acquire)),
                dead: AtomicBool::new(false),
                changed: Notify::new(),
            });
            let fin = flags & FLAG_FIN != 0;
            shared.slots().insert(
                stream_id,
                Slot {
                    data: (!fin).then_some(tx),
                    window: window.clone(),
                    local_closed: false,
                },
            );
            let stream = Stream {
                id: stream_id,
                headers,
                reader: StreamReader {
                    id: stream_id,
                    rx,
                    shared: shared.clone(),
                },
                writer: StreamWriter {
                    id: stream_id,
                    shared: shared.clone(),
                    window,
                },
            };
            if let Err(refused) = new_streams.send(stream).await {
                refused.0.writer.reset(rst::REFUSED_STREAM).await;
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let tx = shared.slots().get(&stream_id).and_then(|s| s.data.clone());
            if !data.is_empty() {
                match tx {
                    Some(tx) => {
                        if tx.send(data.clone()).await.is_err() {
                            // Nobody reads this stream any more: still acknowledged, so
                            // the peer's window does not run dry.
                            ack(shared, stream_id, data.len()).await;
                        }
                    }
                    None => ack(shared, stream_id, data.len()).await,
                }
            }
            if flags & FLAG_FIN != 0 {
                if let Some(s) = shared.slots().get_mut(&stream_id) {
                    s.data = None;
                }
                shared.maybe_forget(stream_id);
            }
        }
        Frame::RstStream { stream_id, .. } => {
            if let Some(s) = shared.slots().remove(&stream_id) {
                s.window.dead.store(true, Ordering::Release);
                s.window.changed.notify_waiters();
            }
        }
        Frame::Settings { entries, .. } => {
            for e in entries {
                if e.id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                    let new = i64::from(e.value);
                    let old = shared.initial_window.swap(new, Ordering::AcqRel);
                    shared.peer_flow_control.store(true, Ordering::Release);
                    for s in shared.slots().values() {
                        s.window.avail.fetch_add(new - old, Ordering::AcqRel);
                        s.window.changed.notify_waiters();
                    }
                }
            }
        }
        Frame::Ping { id } => {
            // Client pings are odd; even ids would answer pings of ours (we send none).
            if id % 2 == 1 {
                let _ = shared.send(Frame::Ping { id }).await;
            }
        }
        Frame::WindowUpdate { stream_id, delta } => {
            shared.peer_flow_control.store(true, Ordering::Release);
            if stream_id != 0 {
                if let Some(s) = shared.slots().get(&stream_id) {
                    s.window.avail.fetch_add(i64::from(delta), Ordering::AcqRel);
                    s.window.changed.notify_waiters();
                }
            } else {
                // Flow-controlled peers that only update the connection window still
                // make progress: wake every writer to re-check.
                for s in shared.slots().values() {
                    s.window.changed.notify_waiters();
                }
            }
        }
        // GOAWAY: the client opens nothing more; the connection ends when it hangs up.
        Frame::GoAway { .. } | Frame::Headers { .. } | Frame::SynReply { .. } => {}
        Frame::Unknown { kind } => tracing::debug!(kind, "spdy: ignoring unknown frame"),
    }
}

async fn ack(shared: &Shared, stream_id: u32, len: usize) {
    let delta = len as u32;
    let _ = shared.send(Frame::WindowUpdate { stream_id, delta }).await;
    let _ = shared
        .send(Frame::WindowUpdate {
            stream_id: 0,
            delta,
        })
        .await;
}

#[cfg(test)]
mod tests;
