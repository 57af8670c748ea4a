//! remotecommand sessions over WebSocket (`v5.channel.k8s.io` .. `channel.k8s.io`): binary
//! (or, from some clients, text) messages whose first byte names the stream, the status as JSON on stream 3, then a
//! normal close.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::channel::{self, Incoming};
use super::remotecommand::{ClientEvent, Io, Output};

/// Runs `session` with the socket as its client, then closes the socket.
pub async fn serve_remotecommand<F, Fut>(socket: WebSocket, session: F)
where
    F: FnOnce(Io) -> Fut,
    Fut: Future<Output = ()>,
{
    let (sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let (tx, writer_task) = writer(sink);
    let encoder = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let msg = match o {
                Output::Data(n, d) => channel::frame(n, &d),
                Output::Exit(code) => {
                    channel::frame(channel::ERROR, channel::exit_status(code).as_bytes())
                }
                Output::Failure(m) => {
                    channel::frame(channel::ERROR, channel::error_status(&m).as_bytes())
                }
            };
            if tx.send(Message::Binary(Bytes::from(msg))).await.is_err() {
                return;
            }
        }
    });
    let (ev_tx, ev_rx) = mpsc::channel::<ClientEvent>(64);
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let ev = match msg {
                Message::Binary(_) | Message::Text(_) => match channel::decode(payload(&msg)) {
                    Incoming::Stdin(d) => ClientEvent::Stdin(Bytes::copy_from_slice(d)),
                    Incoming::Close(channel::STDIN) => ClientEvent::StdinClosed,
                    Incoming::Resize { width, height } => ClientEvent::Resize { width, height },
                    _ => continue,
                },
                Message::Close(_) => break,
                _ => continue,
            };
            // After the session ended nobody listens; keep reading to the close.
            let _ = ev_tx.send(ev).await;
        }
    });
    session(Io {
        events: ev_rx,
        out: out_tx,
    })
    .await;
    let _ = encoder.await;
    let _ = writer_task.await;
    finish_reading(input).await;
}

/// The bytes of a data message. Clients may send them in text frames as well as binary
/// ones (the Python `kubernetes` client writes stdin as text): kubelet's `wsstream`
/// reads both the same way, and so does skiff.
pub fn payload(msg: &Message) -> &[u8] {
    match msg {
        Message::Binary(b) => b,
        Message::Text(t) => t.as_bytes(),
        _ => &[],
    }
}

/// Sends one frame of `data` on `stream`.
pub async fn send(sink: &mpsc::Sender<Message>, stream: u8, data: &[u8]) -> bool {
    sink.send(Message::Binary(Bytes::from(channel::frame(stream, data))))
        .await
        .is_ok()
}

/// Runs the WebSocket writer: everything sent to the returned channel goes out in order,
/// then a close frame.
pub fn writer(
    socket: futures::stream::SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let task = tokio::spawn(async move {
        let mut socket = socket;
        while let Some(m) = rx.recv().await {
            if socket.send(m).await.is_err() {
                return;
            }
        }
        // A normal closure (1000): client-go reads it as the end of every stream, while
        // a close without a code is an error to it.
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = socket.send(Message::Close(Some(close))).await;
        let _ = socket.close().await;
    });
    (tx, task)
}

/// After our close frame: keeps reading until the client's close answer (or a short
/// while), so the connection is not torn down with unread frames in it (a reset that
/// could lose our last frames on the way through the API server).
pub async fn finish_reading(input: tokio::task::JoinHandle<()>) {
    let abort = input.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), input)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// A WebSocket as a byte stream (each binary message's payload in order; what is
/// written goes out as binary messages): how kubectl 1.30+ tunnels SPDY port-forward
/// (`SPDY/3.1+portforward.k8s.io`).
pub fn byte_stream(socket: WebSocket) -> tokio::io::DuplexStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(_) | Message::Text(_)
                    if wr.write_all(payload(&m)).await.is_err() =>
                {
                    break
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    });
    ours
}
