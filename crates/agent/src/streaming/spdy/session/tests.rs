//! Unit tests of the SPDY/3.1 session: streams both ways, chunking and reset, flow control, hang-ups.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

/// The client end of a connection, speaking frames with the same codec.
struct Client {
    io: DuplexStream,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Client {
            io,
            enc: Encoder::new(),
            dec: Decoder::new(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        self.enc.encode(&f, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    /// The next frame that is not a WINDOW_UPDATE (None: connection closed).
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                if matches!(f, Frame::WindowUpdate { .. }) {
                    continue;
                }
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                .await
                .expect("a frame in time")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    async fn open(&mut self, id: u32, kind: &str) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), kind.into())],
        })
        .await;
    }
}

fn pair() -> (Client, Connection, mpsc::Receiver<Stream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (conn, incoming) = serve(b);
    (Client::new(a), conn, incoming)
}

#[tokio::test]
async fn streams_carry_data_both_ways() {
    let (mut c, conn, mut incoming) = pair();
    c.open(1, "stdout").await;
    let mut s = incoming.recv().await.unwrap();
    assert_eq!((s.id, s.header("streamType")), (1, Some("stdout")));
    s.writer.reply().await.unwrap();
    s.writer.write(b"hello").await.unwrap();
    s.writer.close().await;
    assert_eq!(
        c.next().await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![]
        })
    );
    assert_eq!(
        c.next().await,
        Some(Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from_static(b"hello")
        })
    );
    assert_eq!(
        c.next().await,
        Some(Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::new()
        })
    );
    c.send(Frame::Data {
        stream_id: 1,
        flags: FLAG_FIN,
        data: Bytes::from_static(b"input"),
    })
    .await;
    assert_eq!(s.reader.recv().await, Some(Bytes::from_static(b"input")));
    assert_eq!(s.reader.recv().await, None);
    // The consumed bytes were acknowledged, stream and connection.
    let mut acks = Vec::new();
    while acks.len() < 2 {
        if c.dec.decode(&mut c.buf).unwrap().is_none() {
            c.io.read_buf(&mut c.buf).await.unwrap();
            continue;
        }
        acks.push(());
    }
    c.send(Frame::Ping { id: 3 }).await;
    assert_eq!(c.next().await, Some(Frame::Ping { id: 3 }));
    // GOAWAY, then the socket closes once the client hangs up.
    let finish = tokio::spawn(conn.finish(Duration::from_secs(5)));
    assert_eq!(
        c.next().await,
        Some(Frame::GoAway {
            last_good: 1,
            status: 0
        })
    );
    drop(c);
    finish.await.unwrap();
}

#[tokio::test]
async fn large_writes_are_chunked_and_reset_ends_writes() {
    let (mut c, _conn, mut incoming) = pair();
    c.open(1, "stdout").await;
    let s = incoming.recv().await.unwrap();
    s.writer.reply().await.unwrap();
    // No WINDOW_UPDATE from this client (as spdystream): writes are not held at 64 KiB.
    let big = vec![7u8; 100 * 1024];
    s.writer.write(&big).await.unwrap();
    assert!(matches!(c.next().await, Some(Frame::SynReply { .. })));
    let mut got = 0;
    while got < big.len() {
        match c.next().await {
            Some(Frame::Data { data, .. }) => {
                assert!(data.len() <= 32 * 1024);
                got += data.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    c.send(Frame::RstStream {
        stream_id: 1,
        status: rst::CANCEL,
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.writer.write(b"x").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes still succeed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn honours_the_window_of_a_flow_controlled_peer() {
    let (mut c, _conn, mut incoming) = pair();
    c.open(1, "stdout").await;
    let s = incoming.recv().await.unwrap();
    s.writer.reply().await.unwrap();
    // This peer does flow control.
    c.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 0,
    })
    .await;
    assert!(matches!(c.next().await, Some(Frame::SynReply { .. })));
    // Make sure the update was seen before writing.
    c.send(Frame::Ping { id: 1 }).await;
    assert_eq!(c.next().await, Some(Frame::Ping { id: 1 }));
    let w = s.writer.clone();
    let write = tokio::spawn(async move { w.write(&vec![1u8; 100 * 1024]).await });
    let mut got = 0;
    while got < DEFAULT_WINDOW as usize {
        if let Some(Frame::Data { data, .. }) = c.next().await {
            got += data.len();
        }
    }
    assert_eq!(got, DEFAULT_WINDOW as usize);
    // Nothing more until the window grows.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.io.read_buf(&mut c.buf))
            .await
            .is_err()
    );
    c.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 64 * 1024,
    })
    .await;
    while got < 100 * 1024 {
        if let Some(Frame::Data { data, .. }) = c.next().await {
            got += data.len();
        }
    }
    write.await.unwrap().unwrap();
}

#[tokio::test]
async fn peer_hangup_ends_streams() {
    let (mut c, conn, mut incoming) = pair();
    c.open(1, "stdin").await;
    let mut s = incoming.recv().await.unwrap();
    // An even stream id from a client is a protocol error.
    c.open(2, "stdin").await;
    assert_eq!(
        c.next().await,
        Some(Frame::RstStream {
            stream_id: 2,
            status: rst::PROTOCOL_ERROR
        })
    );
    drop(c);
    assert_eq!(s.reader.recv().await, None);
    assert!(s.writer.write(b"late").await.is_err());
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
}

/// Throughput of one stream through the session over an in-memory pipe (encoding,
/// framing, the reader's decoding): `cargo test -p skiff-agent --lib bench_spdy_throughput --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_spdy_throughput() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (_conn, mut incoming) = serve(b);
    let mut c = Client::new(a);
    c.open(1, "stdout").await;
    let s = incoming.recv().await.unwrap();
    s.writer.reply().await.unwrap();
    const TOTAL: usize = 512 << 20;
    let w = s.writer.clone();
    let start = std::time::Instant::now();
    tokio::spawn(async move {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            w.write(&chunk).await.unwrap();
            sent += chunk.len();
        }
        w.close().await;
    });
    let mut got = 0;
    let mut frames = 0;
    loop {
        match c.next().await {
            Some(Frame::Data { data, flags, .. }) => {
                got += data.len();
                frames += 1;
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, TOTAL);
    eprintln!(
        "spdy session: {} MiB in {frames} data frames, {:.0} MiB/s",
        TOTAL >> 20,
        (TOTAL >> 20) as f64 / secs
    );
}
