//! remotecommand sessions over SPDY/3.1, as the kubelet serves kubectl 1.27-1.29: the
//! client opens one stream per channel (`streamType` error, stdin, stdout, stderr,
//! resize), we answer each, wait for all the request asked for, run the session, then
//! write the status on the error stream (v4: a JSON Status with the exit code; v1-v3:
//! the error message, nothing on success) and half-close every stream.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::channel;
use super::remotecommand::{take_sizes, ClientEvent, Io, Output};
use super::spdy::{self, StreamReader, StreamWriter};

/// The remotecommand sub-protocols over SPDY, most preferred first.
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open its streams (the kubelet's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams a request asks for besides the error stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// `stdin=true`.
    pub stdin: bool,
    /// `stdout=true`.
    pub stdout: bool,
    /// `stderr=true` without a terminal (a terminal merges it into stdout).
    pub stderr: bool,
    /// A terminal, with a protocol that has resize streams (v3+).
    pub resize: bool,
}

impl Expected {
    /// From the request's flags, as the kubelet counts them.
    pub fn new(protocol: Option<&str>, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Self {
        let resizable = matches!(protocol, Some("v4.channel.k8s.io" | "v3.channel.k8s.io"));
        Expected {
            stdin,
            stdout,
            stderr: stderr && !tty,
            resize: tty && resizable,
        }
    }
}

#[derive(Default)]
struct Opened {
    error: Option<StreamWriter>,
    stdin: Option<StreamWriter>,
    stdin_reader: Option<StreamReader>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamWriter>,
    resize_reader: Option<StreamReader>,
    /// Streams of unknown types: answered, then closed with the rest.
    others: Vec<StreamWriter>,
}

impl Opened {
    fn complete(&self, e: Expected) -> bool {
        self.error.is_some()
            && (!e.stdin || self.stdin.is_some())
            && (!e.stdout || self.stdout.is_some())
            && (!e.stderr || self.stderr.is_some())
            && (!e.resize || self.resize.is_some())
    }
}

/// The status on the error stream in the protocol's format (None: nothing to write).
pub fn status_bytes(protocol: Option<&str>, out: &Output) -> Option<Vec<u8>> {
    let v4 = protocol == Some("v4.channel.k8s.io");
    match out {
        Output::Exit(code) if v4 => Some(channel::exit_status(*code).into_bytes()),
        Output::Failure(m) if v4 => Some(channel::error_status(m).into_bytes()),
        Output::Exit(0) => None,
        Output::Exit(code) => Some(
            format!("command terminated with non-zero exit code: error executing command, exit status {code}")
                .into_bytes(),
        ),
        Output::Failure(m) => Some(m.clone().into_bytes()),
        Output::Data(..) => None,
    }
}

/// Serves one upgraded connection: collects the streams, runs `session`, ends the
/// connection.
pub async fn serve_remotecommand<T, F, Fut>(
    io: T,
    protocol: Option<&'static str>,
    expected: Expected,
    session: F,
) where
    T: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(Io) -> Fut,
    Fut: Future<Output = ()>,
{
    let (conn, mut incoming) = spdy::serve(io);
    let mut opened = Opened::default();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !opened.complete(expected) {
        let stream = tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => s,
                None => return,
            },
            _ = &mut deadline => {
                tracing::debug!("spdy exec: timed out waiting for client to create streams");
                break;
            }
        };
        if stream.writer.reply().await.is_err() {
            return;
        }
        let kind = stream
            .header("streamtype")
            .unwrap_or("")
            .to_ascii_lowercase();
        match kind.as_str() {
            "error" => opened.error = Some(stream.writer),
            "stdin" => {
                opened.stdin = Some(stream.writer);
                opened.stdin_reader = Some(stream.reader);
            }
            "stdout" => opened.stdout = Some(stream.writer),
            "stderr" => opened.stderr = Some(stream.writer),
            "resize" => {
                opened.resize = Some(stream.writer);
                opened.resize_reader = Some(stream.reader);
            }
            _ => opened.others.push(stream.writer),
        }
    }
    if !opened.complete(expected) {
        if let Some(e) = &opened.error {
            let msg = Output::Failure("timed out waiting for client to create streams".into());
            if let Some(b) = status_bytes(protocol, &msg) {
                let _ = e.write(&b).await;
            }
        }
        close_all(&opened).await;
        conn.finish(Duration::from_secs(1)).await;
        return;
    }
    // Streams opened late are answered and ignored (their data is dropped unread).
    let late = tokio::spawn(async move {
        while let Some(s) = incoming.recv().await {
            let _ = s.writer.reply().await;
        }
    });

    let (ev_tx, ev_rx) = mpsc::channel::<ClientEvent>(64);
    let mut readers = Vec::new();
    if let Some(mut r) = opened.stdin_reader.take() {
        let tx = ev_tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(d) = r.recv().await {
                if tx.send(ClientEvent::Stdin(d)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(ClientEvent::StdinClosed).await;
        }));
    }
    if let Some(mut r) = opened.resize_reader.take() {
        let tx = ev_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(d) = r.recv().await {
                buf.extend_from_slice(&d);
                for (width, height) in take_sizes(&mut buf) {
                    if tx
                        .send(ClientEvent::Resize { width, height })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }));
    }
    // The events end when the client hangs up (what attach takes as a detach).
    let watchdog = {
        let tx = ev_tx;
        let closed = conn.closed_signal();
        tokio::spawn(async move {
            closed.await;
            drop(tx);
        })
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let writers = (
        opened.error.clone(),
        opened.stdout.clone(),
        opened.stderr.clone(),
    );
    let forward = tokio::spawn(async move {
        let (error, stdout, stderr) = writers;
        while let Some(o) = out_rx.recv().await {
            let ok = match &o {
                Output::Data(channel::STDERR, d) => match &stderr {
                    Some(w) => w.write(d).await.is_ok(),
                    None => true,
                },
                Output::Data(_, d) => match &stdout {
                    Some(w) => w.write(d).await.is_ok(),
                    None => true,
                },
                status => match (&error, status_bytes(protocol, status)) {
                    (Some(w), Some(b)) => w.write(&b).await.is_ok(),
                    _ => true,
                },
            };
            if !ok {
                return;
            }
        }
    });
    session(Io {
        events: ev_rx,
        out: out_tx,
    })
    .await;
    let _ = forward.await;
    close_all(&opened).await;
    conn.finish(Duration::from_secs(2)).await;
    for r in readers {
        r.abort();
    }
    watchdog.abort();
    late.abort();
}

async fn close_all(o: &Opened) {
    let all = o
        .error
        .iter()
        .chain(o.stdin.iter())
        .chain(o.stdout.iter())
        .chain(o.stderr.iter())
        .chain(o.resize.iter())
        .chain(o.others.iter());
    for w in all {
        w.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_expected_as_the_kubelet_counts_them() {
        let v4 = Some("v4.channel.k8s.io");
        assert_eq!(
            Expected::new(v4, true, true, true, true),
            Expected {
                stdin: true,
                stdout: true,
                stderr: false,
                resize: true
            }
        );
        let e = Expected::new(Some("v2.channel.k8s.io"), false, true, true, true);
        assert!(!e.resize && !e.stderr && e.stdout);
        assert!(Expected::new(None, false, true, true, false).stderr);
    }

    #[test]
    fn status_per_protocol() {
        let v4 = Some("v4.channel.k8s.io");
        let s: serde_json::Value =
            serde_json::from_slice(&status_bytes(v4, &Output::Exit(3)).unwrap()).unwrap();
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status_bytes(v4, &Output::Exit(0)).unwrap(),
            br#"{"metadata":{},"status":"Success"}"#
        );
        // Older protocols: nothing on success, the message otherwise.
        let v3 = Some("v3.channel.k8s.io");
        assert_eq!(status_bytes(v3, &Output::Exit(0)), None);
        assert!(
            String::from_utf8(status_bytes(v3, &Output::Exit(2)).unwrap())
                .unwrap()
                .contains("exit status 2")
        );
        assert_eq!(
            status_bytes(None, &Output::Failure("boom".into())).unwrap(),
            b"boom"
        );
    }
}
