//! WATCH: newline-delimited JSON `WatchEvent`s (ADDED, MODIFIED, DELETED, BOOKMARK, and
//! ERROR with a 410 Status when the requested revision is compacted), as kube-apiserver
//! streams them, including watch-list (`sendInitialEvents=true`) and Table events.
//!
//! Each watcher has a bounded queue between the task that reads the store and the
//! response body. When a watcher does not read, its queue fills; if it stays full for
//! [`SLOW_WATCHER_TIMEOUT`] the watcher is closed and its queue dropped, as
//! kube-apiserver's cacher terminates unresponsive watchers (clients re-list or resume
//! from their last resourceVersion). Below the queue the store's per-watch channel is
//! bounded too, and above it hyper only pulls the body as the connection drains (HTTP/1
//! write buffer, HTTP/2 flow-control window and send buffer), so the memory a watcher can
//! pin does not grow with how far behind it is.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::{json, Value};
use skiff_store::EventKind;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use skiff_resources::IncludeObject;

use crate::conversion::{list_objects, to_version};
use crate::http::{include_object, representation, Body, Query, Representation};
use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode_bytes, prefix, splice_resource_version};

/// Most events queued for one watcher: kube-apiserver's cacher gives a watcher without
/// an index a channel of 100 events.
const QUEUE_EVENTS: usize = 100;
/// Most bytes queued for one watcher (a single larger event is still queued alone), so
/// that large objects do not turn the event bound into a large one.
const QUEUE_BYTES: usize = 512 << 10;
/// How long a watcher's queue may stay full before the watcher is closed as too slow.
/// kube-apiserver waits at most 100 ms, but its dispatcher is shared by every watcher;
/// here each watcher has a task of its own, so waiting longer blocks nobody else and
/// spares clients that pause briefly (the queue's size bounds memory either way).
pub(crate) const SLOW_WATCHER_TIMEOUT: Duration = Duration::from_secs(1);

/// A poisoned lock only means another task panicked while holding it; the queue and the
/// counters stay consistent, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Queue {
    lines: VecDeque<Bytes>,
    bytes: usize,
    /// Nothing more will be queued: the body ends once the queue is empty.
    closed: bool,
    /// The body's task, waiting for a line.
    reader: Option<Waker>,
}

/// What a watcher's task hands to its response body.
struct Outbox {
    queue: Mutex<Queue>,
    /// Signalled when the body takes a line (room in the queue).
    room: Notify,
    /// Cancelled when the response body is dropped: the client went away.
    gone: CancellationToken,
}

/// What became of a line offered to the outbox.
enum Push {
    Queued,
    /// The client went away.
    Gone,
    /// The queue stayed full for the whole wait.
    Full,
}

impl Outbox {
    fn new() -> Arc<Self> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue {
                lines: VecDeque::new(),
                bytes: 0,
                closed: false,
                reader: None,
            }),
            room: Notify::new(),
            gone: CancellationToken::new(),
        })
    }

    /// Queues `line` if there is room; gives it back if not.
    fn try_push(&self, line: Bytes) -> Result<(), Bytes> {
        let mut q = lock(&self.queue);
        let fits = q.lines.is_empty()
            || (q.lines.len() < QUEUE_EVENTS && q.bytes + line.len() <= QUEUE_BYTES);
        if !fits || q.closed {
            return Err(line);
        }
        q.bytes += line.len();
        q.lines.push_back(line);
        if let Some(w) = q.reader.take() {
            w.wake();
        }
        Ok(())
    }

    /// Queues `line`, waiting up to `wait` for room.
    async fn push(&self, mut line: Bytes, wait: Duration) -> Push {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            // Registered before looking at the queue, so a line taken in between is
            // not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.gone.is_cancelled() {
                return Push::Gone;
            }
            line = match self.try_push(line) {
                Ok(()) => return Push::Queued,
                Err(line) => line,
            };
            tokio::select! {
                _ = &mut room => {}
                _ = self.gone.cancelled() => return Push::Gone,
                _ = &mut deadline => return Push::Full,
            }
        }
    }

    /// Ends the body after what is queued.
    fn finish(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        if let Some(w) = q.reader.take() {
            w.wake();
        }
    }

    /// Ends the body now and frees what is queued, also when the body is never polled
    /// again (a client that reads nothing keeps hyper from polling it).
    fn abort(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        q.lines = VecDeque::new();
        q.bytes = 0;
        if let Some(w) = q.reader.take() {
            w.wake();
        }
    }
}

/// The response body of a watch: the outbox's lines, one frame each.
struct WatchBody {
    outbox: Arc<Outbox>,
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let mut q = lock(&self.outbox.queue);
        if let Some(line) = q.lines.pop_front() {
            q.bytes -= line.len();
            drop(q);
            self.outbox.room.notify_one();
            return Poll::Ready(Some(Ok(Frame::data(line))));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let q = lock(&self.outbox.queue);
        q.closed && q.lines.is_empty()
    }
}

impl Drop for WatchBody {
    fn drop(&mut self) {
        self.outbox.gone.cancel();
    }
}

/// Why a watcher's task ended.
enum End {
    /// Timeout, store error, or the store's stream ended: the queue is sent out.
    Done,
    /// The client went away.
    Gone,
    /// The client did not read: the watcher is closed.
    Slow,
}

/// How an event's object is rendered.
struct Render {
    rep: Representation,
    include: IncludeObject,
    info: &'static skiff_resources::ResourceInfo,
    first_table: bool,
}

impl Render {
    fn event(&mut self, kind: &str, obj: Value) -> Bytes {
        let object = match self.rep {
            Representation::Object => obj,
            Representation::PartialMetadata => crate::http::partial_metadata(&obj),
            Representation::Table => {
                let mut table = skiff_resources::table(
                    self.info,
                    std::slice::from_ref(&obj),
                    self.include,
                    Utc::now(),
                );
                table["metadata"] = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                // Like kube-apiserver, only the first event carries the column definitions.
                if !self.first_table {
                    table["columnDefinitions"] = Value::Null;
                }
                self.first_table = false;
                table
            }
        };
        event_line(kind, &object)
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.rep {
            Representation::Table => ("Table".to_string(), "meta.k8s.io/v1".to_string()),
            Representation::PartialMetadata => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
            Representation::Object => (self.info.kind.to_string(), self.info.api_version()),
        };
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// One watch event, its object in Go's field order ([`crate::http::GoOrder`]).
fn event_line(kind: &str, object: &Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: crate::http::GoOrder<'a>,
    }
    let mut line = serde_json::to_vec(&Event {
        kind,
        object: crate::http::GoOrder(object),
    })
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn error_event(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Serves one watch until the client goes away or `timeoutSeconds` pass.
pub(crate) async fn serve(
    state: Arc<ApiState>,
    t: RequestInfo,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response<Body>> {
    let filter = match &t.name {
        // A watch on one object (legacy `/watch/.../<name>` path).
        Some(name) => Filter::parse(
            q.get("labelSelector").unwrap_or(""),
            &format!(
                "{}metadata.name={name}",
                q.get("fieldSelector")
                    .map(|s| format!("{s},"))
                    .unwrap_or_default()
            ),
            t.info,
        )?,
        None => Filter::from_query(&q, t.info)?,
    };
    let mut render = Render {
        rep: representation(&headers),
        include: include_object(&q),
        info: t.info,
        first_table: true,
    };
    let rv = q.get("resourceVersion").unwrap_or("");
    let send_initial = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout =
        Duration::from_secs(q.int("timeoutSeconds").filter(|s| *s > 0).unwrap_or(1800) as u64);
    let list_target = RequestInfo {
        name: None,
        ..t.clone()
    };
    let (initial, from) = if send_initial || rv.is_empty() || rv == "0" {
        list_objects(state.store.as_ref(), &list_target, &filter)?
    } else {
        let from = rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        (Vec::new(), from)
    };
    // A watch of pods by node (every kubelet's) or of one object by name is handed only
    // the events of its node's pods, or of that object.
    let root = prefix(t.info, None);
    let trigger = filter
        .fields
        .required(crate::watchcache::trigger_field(&root))
        .map(str::to_string);
    let watch = state.watch_cache.watch(
        &state.store,
        &root,
        &prefix(t.info, t.namespace.as_deref()),
        from,
        trigger,
    );
    let info = t.info;
    let outbox = Outbox::new();
    let body = WatchBody {
        outbox: outbox.clone(),
    };
    tokio::spawn(async move {
        let end = match watch {
            Ok(events) => {
                let run = Run {
                    outbox: &outbox,
                    store: state.store.as_ref(),
                    info,
                    filter: &filter,
                    render: &mut render,
                };
                match run
                    .events(events, initial, from, send_initial, bookmarks, timeout)
                    .await
                {
                    Ok(()) => End::Done,
                    Err(end) => end,
                }
            }
            Err(e) => match outbox
                .push(error_event(&e.into()), SLOW_WATCHER_TIMEOUT)
                .await
            {
                Push::Full => End::Slow,
                _ => End::Done,
            },
        };
        match end {
            End::Done | End::Gone => outbox.finish(),
            End::Slow => {
                outbox.abort();
                state.watch_metrics.terminated(info.group, info.plural);
                tracing::info!(
                    resource = %crate::status::qualified(info.group, info.plural),
                    "closed a watcher that did not read: its queue stayed full ({QUEUE_EVENTS} events or {QUEUE_BYTES} bytes) for {SLOW_WATCHER_TIMEOUT:?}"
                );
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body.boxed_unsync())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// One watcher's task: store events in, rendered lines out.
struct Run<'a> {
    outbox: &'a Outbox,
    /// Where a conversion webhook's Service is.
    store: &'a dyn skiff_store::Store,
    info: &'static skiff_resources::ResourceInfo,
    filter: &'a Filter,
    render: &'a mut Render,
}

impl Run<'_> {
    /// Queues one line; `Err` ends the watch.
    async fn send(&self, line: Bytes) -> Result<(), End> {
        match self.outbox.push(line, SLOW_WATCHER_TIMEOUT).await {
            Push::Queued => Ok(()),
            Push::Gone => Err(End::Gone),
            Push::Full => Err(End::Slow),
        }
    }

    async fn events(
        self,
        mut watch: crate::watchcache::Watch,
        initial: Vec<(String, Value)>,
        from: i64,
        send_initial: bool,
        bookmarks: bool,
        timeout: Duration,
    ) -> Result<(), End> {
        for (_, obj) in initial {
            let line = self.render.event("ADDED", obj);
            self.send(line).await?;
        }
        let mut last = from;
        if send_initial {
            let line = self.render.bookmark(from, true);
            self.send(line).await?;
        }
        let needles = self.filter.fields.needles();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                _ = self.outbox.gone.cancelled() => return Err(End::Gone),
                _ = tick.tick() => {
                    // Like the cacher's, a periodic bookmark is skipped, not waited for,
                    // when the watcher's queue is full.
                    if bookmarks {
                        // A watcher handed only some events (by node) has still seen
                        // everything up to the hub's progress once its queue is empty:
                        // progress is read first, so an event it covers is already queued.
                        if let Some(p) = watch.progress() {
                            if watch.events.is_empty() {
                                last = last.max(p);
                            }
                        }
                        let _ = self.outbox.try_push(self.render.bookmark(last, false));
                    }
                }
                ev = watch.events.recv() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => {
                            self.send(error_event(&e.into())).await?;
                            return Ok(());
                        }
                        None => return Ok(()),
                    };
                    last = ev.revision;
                    match translate(self.store, &ev, self.info, self.filter, &needles, self.render) {
                        Ok(Some(line)) => self.send(line).await?,
                        Ok(None) => {}
                        Err(e) => {
                            // A conversion webhook failed: the watch ends with the error,
                            // as kube-apiserver's does.
                            self.send(error_event(&e)).await?;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// A store event as this watcher sees it: objects leaving the selector are DELETED,
/// objects entering it ADDED. `Err`: the object could not be converted.
fn translate(
    store: &dyn skiff_store::Store,
    ev: &skiff_store::Event,
    info: &'static skiff_resources::ResourceInfo,
    filter: &Filter,
    needles: &[Vec<u8>],
    render: &mut Render,
) -> ApiResult<Option<Bytes>> {
    if render.rep == Representation::Object
        && filter.is_empty()
        && crate::conversion::stored_as_requested(info)
    {
        // Every watcher of the collection sees every event as stored: splice the
        // revision into the stored bytes, no decoding or re-encoding per watcher.
        let kind: &[u8] = match ev.kind {
            EventKind::Added => b"ADDED",
            EventKind::Modified => b"MODIFIED",
            EventKind::Deleted => b"DELETED",
        };
        let mut line = Vec::with_capacity(ev.value.len() + 64);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind);
        line.extend_from_slice(b"\",\"object\":");
        if splice_resource_version(&ev.value, ev.revision, &mut line) {
            line.extend_from_slice(b"}\n");
            return Ok(Some(Bytes::from(line)));
        }
    }
    // Neither the object nor its previous version can match: no decoding needed.
    if !needles.is_empty()
        && !Filter::may_match_bytes(needles, &ev.value)
        && !ev
            .prev_value
            .as_ref()
            .is_some_and(|p| Filter::may_match_bytes(needles, p))
    {
        return Ok(None);
    }
    let Ok(new) = decode_bytes(&ev.value, ev.revision) else {
        return Ok(None);
    };
    let new = to_version(store, info, new)?;
    // Without selectors the previous object matched whatever it was (no conversion).
    let old_matches = match ev
        .prev_value
        .as_ref()
        .and_then(|p| decode_bytes(p, ev.revision).ok())
    {
        Some(_) if filter.is_empty() => true,
        Some(o) => filter.matches(&to_version(store, info, o)?),
        None => false,
    };
    let new_matches = filter.matches(&new);
    let kind = match ev.kind {
        EventKind::Deleted => {
            if !new_matches && !old_matches {
                return Ok(None);
            }
            "DELETED"
        }
        EventKind::Added => {
            if !new_matches {
                return Ok(None);
            }
            "ADDED"
        }
        EventKind::Modified => match (old_matches, new_matches) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return Ok(None),
        },
    };
    Ok(Some(render.event(kind, new)))
}
