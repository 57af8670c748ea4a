//! exec and attach, whatever carries them: the sessions here read [`ClientEvent`]s and
//! write [`Output`]s, and the transports ([`websocket`](super::websocket) for the
//! `channel.k8s.io` family, [`spdy_streams`](super::spdy_streams) for SPDY/3.1) turn
//! those into frames.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::channel;
use crate::containers::container::Container;
use crate::containers::crilog::Stream;
use crate::containers::runtime::Runtime;
use crate::containers::{console, exec};

/// What the client sent, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Bytes for the process's stdin.
    Stdin(Bytes),
    /// No more stdin (the client closed it).
    StdinClosed,
    /// The client's terminal size changed.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
}

/// What goes to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Output on a stream ([`channel::STDOUT`] or [`channel::STDERR`]).
    Data(u8, Bytes),
    /// The command ended with this exit code (attach: 0 when the container ended or the
    /// client detached).
    Exit(i32),
    /// The command could not run.
    Failure(String),
}

/// How long a terminal exec waits for the client's size before starting anyway.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(1);

/// A session's two directions. `events` ends when the client went away.
pub struct Io {
    /// From the client.
    pub events: mpsc::Receiver<ClientEvent>,
    /// To the client.
    pub out: mpsc::Sender<Output>,
}

/// What an exec runs.
pub struct ExecRequest {
    /// The runtime, to exec in the container.
    pub runtime: Runtime,
    /// The container (None: not running here).
    pub container: Option<Arc<Container>>,
    /// Its name, for messages.
    pub name: String,
    /// argv.
    pub command: Vec<String>,
    /// The client sends stdin.
    pub stdin: bool,
    /// With a terminal.
    pub tty: bool,
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
type ExitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>;

/// A running exec's streams.
struct ExecIo {
    /// Resolves to the exit code.
    exit: ExitFuture,
    /// Output streams with their channel numbers.
    outs: Vec<(Reader, u8)>,
    /// Where stdin goes, if asked for.
    stdin: Option<Writer>,
    /// The pty master, with a terminal.
    resizer: Option<std::fs::File>,
    /// Files to remove when the exec is over.
    _keep: exec::ExecFile,
}

async fn start_exec(
    runtime: &Runtime,
    ctr: &Container,
    command: &[String],
    want_stdin: bool,
    tty: Option<Option<(u16, u16)>>,
) -> anyhow::Result<ExecIo> {
    if let Some(size) = tty {
        let exec::TtyExec { pid, master, file } =
            exec::spawn_tty_sized(runtime, ctr, command, size).await?;
        let reader = tokio::net::unix::pipe::Receiver::from_file_unchecked(master.try_clone()?)?;
        let resizer = master.try_clone()?;
        let writer = tokio::net::unix::pipe::Sender::from_file_unchecked(master)?;
        return Ok(ExecIo {
            exit: Box::pin(exec::TtyExec::wait(pid)),
            outs: vec![(Box::new(reader), channel::STDOUT)],
            stdin: want_stdin.then(|| Box::new(writer) as Writer),
            resizer: Some(resizer),
            _keep: file,
        });
    }
    let exec::Exec {
        pid,
        stdin,
        stdout,
        stderr,
        file,
    } = exec::spawn(runtime, ctr, command, want_stdin).await?;
    Ok(ExecIo {
        exit: Box::pin(exec::wait_or_kill(pid)),
        outs: vec![
            (Box::new(stdout), channel::STDOUT),
            (Box::new(stderr), channel::STDERR),
        ],
        stdin: stdin.map(|w| Box::new(w) as Writer),
        resizer: None,
        _keep: file,
    })
}

/// Runs a command in a container for a client until it exits; the exit code is the last
/// output.
pub async fn exec_session(io: Io, req: ExecRequest) {
    let Io { mut events, out } = io;
    let Some(ctr) = req.container.filter(|c| c.exit().is_none()) else {
        let _ = out
            .send(Output::Failure(format!(
                "container {} is not running",
                req.name
            )))
            .await;
        return;
    };
    // A terminal starts at the client's size: its first resize comes right after the
    // streams are set up (what arrives meanwhile is replayed to the process).
    let mut early = Vec::new();
    let tty = if req.tty {
        let first = tokio::time::timeout(FIRST_SIZE_WAIT, async {
            while let Some(ev) = events.recv().await {
                match ev {
                    ClientEvent::Resize { width, height } if width > 0 && height > 0 => {
                        return Some((width, height))
                    }
                    ClientEvent::Resize { .. } => return None,
                    other => early.push(other),
                }
            }
            None
        })
        .await;
        Some(first.ok().flatten())
    } else {
        None
    };
    let spawned = start_exec(&req.runtime, &ctr, &req.command, req.stdin, tty).await;
    let ExecIo {
        exit,
        outs,
        mut stdin,
        resizer,
        _keep,
    } = match spawned {
        Ok(x) => x,
        Err(e) => {
            let _ = out.send(Output::Failure(format!("{e:#}"))).await;
            return;
        }
    };
    let mut pumps = Vec::new();
    for (mut r, n) in outs {
        let out = out.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        let data = Bytes::copy_from_slice(&buf[..k]);
                        if out.send(Output::Data(n, data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let input = tokio::spawn(async move {
        let mut early = early.into_iter();
        loop {
            let ev = match early.next() {
                Some(ev) => ev,
                None => match events.recv().await {
                    Some(ev) => ev,
                    None => break,
                },
            };
            match ev {
                ClientEvent::Stdin(d) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&d).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                ClientEvent::StdinClosed => stdin = None,
                ClientEvent::Resize { width, height } => {
                    if let Some(m) = &resizer {
                        console::resize(m, width, height);
                    }
                }
            }
        }
    });
    let code = exit.await;
    // Output still in flight is sent; a background process holding the output open does
    // not keep the session alive for long.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    let _ = out.send(Output::Exit(code)).await;
    input.abort();
}

/// What an attach wants.
pub struct AttachRequest {
    /// The running container.
    pub container: Arc<Container>,
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr.
    pub stderr: bool,
}

/// Attaches a client to a container's stdio until the container exits or the client
/// goes away. The first attach of a stdinOnce container (kubectl run -i) also gets what
/// the container printed before it came.
pub async fn attach_session(io: Io, req: AttachRequest) {
    let Io { mut events, out } = io;
    let ctr = req.container;
    let replay = ctr.has_stdin().await && ctr.first_attach();
    let (past, mut live) = ctr.attach(replay || ctr.exit().is_some());
    let wanted = |st: Stream| match st {
        Stream::Stdout => req.stdout,
        Stream::Stderr => req.stderr,
    };
    let num = |st: Stream| {
        if st == Stream::Stdout {
            channel::STDOUT
        } else {
            channel::STDERR
        }
    };
    for (st, data) in past {
        if wanted(st) {
            let _ = out.send(Output::Data(num(st), Bytes::from(data))).await;
        }
    }
    let input_ctr = ctr.clone();
    let want_stdin = req.stdin;
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let _gone = gone_tx;
        while let Some(ev) = events.recv().await {
            match ev {
                ClientEvent::Stdin(d) if want_stdin => {
                    let _ = input_ctr.write_stdin(&d).await;
                }
                // No more input; the client still reads output.
                ClientEvent::StdinClosed => input_ctr.attach_ended().await,
                ClientEvent::Resize { width, height } => input_ctr.resize(width, height),
                _ => {}
            }
        }
        input_ctr.attach_ended().await;
    });
    let mut exit = ctr.exit_watch();
    loop {
        if exit.borrow().is_some() {
            while let Ok((st, data)) = live.try_recv() {
                if wanted(st) {
                    let _ = out.send(Output::Data(num(st), data)).await;
                }
            }
            break;
        }
        tokio::select! {
            r = live.recv() => match r {
                Ok((st, data)) => {
                    if wanted(st) && out.send(Output::Data(num(st), data)).await.is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = exit.changed() => {}
            _ = out.closed() => break,
            // The client went away (detached).
            _ = &mut gone => break,
        }
    }
    let _ = out.send(Output::Exit(0)).await;
    // The input side ends with the client (its attach_ended runs then).
    drop(input);
}

/// Parses the resize stream of SPDY sessions: JSON `{"Width":..,"Height":..}` objects
/// one after another; returns the sizes complete so far and keeps the rest in `buf`.
pub fn take_sizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(s)) => {
                sizes.push((s.width, s.height));
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Garbage: drop what was buffered rather than wedge the stream.
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    buf.drain(..used);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_arrive_in_pieces() {
        let mut buf = br#"{"Width":80,"Height":24}
{"Width":100,"#
            .to_vec();
        assert_eq!(take_sizes(&mut buf), vec![(80, 24)]);
        buf.extend_from_slice(br#""Height":30}"#);
        assert_eq!(take_sizes(&mut buf), vec![(100, 30)]);
        assert!(take_sizes(&mut buf).is_empty());
        let mut junk = b"nonsense".to_vec();
        assert!(take_sizes(&mut junk).is_empty());
        assert!(junk.is_empty());
    }
}
