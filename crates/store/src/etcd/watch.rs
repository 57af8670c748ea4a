//! Watches: one etcd watch stream per store watch, forwarded to the caller's channel and
//! reopened after the last delivered revision when the stream breaks (a member stopped,
//! lost its leader, or the connection went away), so the caller misses nothing.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::retry::{self, Kind};
use crate::{Event, EventKind, StoreError, WatchReceiver};

/// Buffer of each watch channel (as the SQLite store's): what a watcher that stopped
/// taking events pins here; etcd and the gRPC stream's flow control hold back the rest.
const WATCH_BUFFER: usize = 16;
/// First pause before reopening a broken watch.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts to reopen a watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a watch stream could not be opened.
#[derive(Debug)]
pub(super) enum OpenError {
    /// etcd's history starts at this compact revision, after the one asked for.
    Compacted(i64),
    /// Anything else; worth another try.
    Failed(StoreError),
}

impl OpenError {
    /// The error for the caller of a watch that asked for the events after `requested`.
    pub(super) fn into_store_error(self, requested: i64) -> StoreError {
        match self {
            OpenError::Compacted(rev) => too_old(requested, rev),
            OpenError::Failed(e) => e,
        }
    }
}

/// What one watch follows.
#[derive(Clone)]
pub(super) struct Watch {
    /// The client (its channel balances over every member).
    pub client: Client,
    /// The full key prefix in etcd.
    pub key: String,
    /// Length of the store's own prefix, stripped from the keys delivered.
    pub prefix_len: usize,
    /// How long opening a stream may take.
    pub timeout: Duration,
}

impl Watch {
    /// Opens a stream of the events after revision `after`, once etcd confirmed it.
    pub(super) async fn open(&self, after: i64) -> Result<WatchStream, OpenError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut wc = self
            .client
            .watch_client()
            .max_decoding_message_size(super::MAX_MESSAGE);
        let opened = tokio::time::timeout(self.timeout, async {
            let mut stream = wc.watch(self.key.clone(), Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        })
        .await;
        let (stream, first) = match opened {
            Err(_) => {
                return Err(OpenError::Failed(StoreError::Backend(format!(
                    "etcd watch: no answer within {:?}",
                    self.timeout
                ))))
            }
            Ok(Err(e)) => return Err(OpenError::Failed(retry::backend("watch", e))),
            Ok(Ok(v)) => v,
        };
        match first {
            Some(r) if r.compact_revision() > 0 => Err(OpenError::Compacted(r.compact_revision())),
            Some(r) if r.created() && !r.canceled() => Ok(stream),
            Some(r) => Err(OpenError::Failed(StoreError::Backend(format!(
                "etcd refused the watch: {}",
                r.cancel_reason()
            )))),
            None => Err(OpenError::Failed(StoreError::Backend(
                "etcd closed the watch before confirming it".into(),
            ))),
        }
    }

    /// Forwards `stream` (opened after revision `after`) to a new channel from a task on
    /// `handle`, reopening it as needed until the receiver is dropped.
    pub(super) fn spawn(self, handle: &Handle, stream: WatchStream, after: i64) -> WatchReceiver {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        handle.spawn(self.forward(stream, after, tx));
        rx
    }

    async fn forward(
        self,
        stream: WatchStream,
        mut last: i64,
        tx: mpsc::Sender<Result<std::sync::Arc<Event>, StoreError>>,
    ) {
        let mut stream = Some(stream);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut s = match stream.take() {
                Some(s) => s,
                None => {
                    let opened = tokio::select! {
                        _ = tx.closed() => return,
                        r = self.open(last) => r,
                    };
                    match opened {
                        Ok(s) => {
                            backoff = FIRST_BACKOFF;
                            tracing::debug!(key = %self.key, after = last, "etcd watch resumed");
                            s
                        }
                        Err(OpenError::Compacted(rev)) => {
                            let _ = tx.send(Err(too_old(last, rev))).await;
                            return;
                        }
                        Err(OpenError::Failed(e)) => {
                            tracing::warn!(key = %self.key, "reopening an etcd watch: {e}");
                            tokio::select! {
                                _ = tx.closed() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
            };
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    m = s.message() => m,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => break,
                    Err(e) => {
                        if retry::kind(&e) != Kind::Unavailable {
                            tracing::debug!(key = %self.key, "etcd watch stream failed: {e}");
                        }
                        break;
                    }
                };
                if resp.compact_revision() > 0 {
                    // The watcher fell behind a compaction: its events are gone.
                    let _ = tx.send(Err(too_old(last, resp.compact_revision()))).await;
                    return;
                }
                if resp.canceled() {
                    tracing::debug!(key = %self.key, reason = resp.cancel_reason(), "etcd cancelled a watch");
                    break;
                }
                for ev in resp.events() {
                    let Some(ev) = convert_event(self.prefix_len, ev) else {
                        continue;
                    };
                    // Reopened streams start after `last`, so nothing is delivered twice.
                    last = ev.revision;
                    if tx.send(Ok(std::sync::Arc::new(ev))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// TooOld for a watch that had delivered up to `last` when etcd's history started at
/// `compact_revision`.
fn too_old(last: i64, compact_revision: i64) -> StoreError {
    StoreError::TooOld {
        requested: last,
        compacted: compact_revision - 1,
    }
}

/// One of etcd's events as the store's; `None` for keys that are not UTF-8.
fn convert_event(prefix_len: usize, ev: &etcd_client::Event) -> Option<Event> {
    let kv = ev.kv()?;
    let key = String::from_utf8(kv.key().get(prefix_len..)?.to_vec()).ok()?;
    let prev = ev.prev_kv().map(|p| p.value().to_vec());
    Some(match ev.event_type() {
        EventType::Put => Event {
            kind: if kv.create_revision() == kv.mod_revision() {
                EventKind::Added
            } else {
                EventKind::Modified
            },
            key,
            value: kv.value().to_vec(),
            prev_value: prev,
            revision: kv.mod_revision(),
        },
        EventType::Delete => Event {
            kind: EventKind::Deleted,
            key,
            // etcd's delete event carries no value: the last one is the previous value.
            value: prev.clone().unwrap_or_default(),
            prev_value: prev,
            revision: kv.mod_revision(),
        },
    })
}
