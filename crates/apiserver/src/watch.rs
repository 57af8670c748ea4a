//! WATCH: newline-delimited JSON `WatchEvent`s (ADDED, MODIFIED, DELETED, BOOKMARK, and
//! ERROR with a 410 Status when the requested revision is compacted), as kube-apiserver
//! streams them, including watch-list (`sendInitialEvents=true`) and Table events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use skiff_store::{EventKind, Store};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::compat::{self, IncludeObject};
use crate::http::{representation, Body, Query, Representation};
use crate::rest::objects::{decode_bytes, splice_resource_version, storage_info};
use crate::rest::{include_object, list_objects, prefix, to_version, Filter};
use crate::router::Target;
use crate::selectors::FieldSelector;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

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
            Representation::PartialMetadata => compat::partial_metadata(&obj),
            Representation::Table => {
                let mut table = compat::table(
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
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
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

fn error_event(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Serves one watch until the client goes away or `timeoutSeconds` pass.
pub(crate) async fn serve(
    state: Arc<ApiState>,
    t: Target,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response<Body>> {
    let mut filter = Filter::from_query(&q)?;
    if let Some(name) = &t.name {
        // A watch on one object (legacy `/watch/.../<name>` path).
        let extra = FieldSelector::parse(&format!("metadata.name={name}"))
            .map_err(ApiError::bad_request)?;
        filter.fields = FieldSelector::parse(&format!(
            "{}{}",
            q.get("fieldSelector")
                .map(|s| format!("{s},"))
                .unwrap_or_default(),
            format_args!("metadata.name={name}")
        ))
        .unwrap_or(extra);
    }
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
    let list_target = Target {
        name: None,
        ..t.clone()
    };
    let (initial, from) = if send_initial || rv.is_empty() || rv == "0" {
        list_objects(&state, &list_target, &filter)?
    } else {
        let from = rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        (Vec::new(), from)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let watch = state
        .store
        .watch(&prefix(t.info, t.namespace.as_deref()), from);
    let info = t.info;
    tokio::spawn(async move {
        let mut events = match watch {
            Ok(w) => w,
            Err(e) => {
                let _ = tx.send(error_event(&e.into())).await;
                return;
            }
        };
        for (_, obj) in initial {
            if tx.send(render.event("ADDED", obj)).await.is_err() {
                return;
            }
        }
        let mut last = from;
        if send_initial && tx.send(render.bookmark(from, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {
                    if bookmarks && tx.send(render.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                ev = events.recv() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => {
                            let _ = tx.send(error_event(&e.into())).await;
                            return;
                        }
                        None => return,
                    };
                    last = ev.revision;
                    let Some(line) = translate(&ev, info, &filter, &mut render) else { continue };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    let body = StreamBody::new(stream).boxed_unsync();
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A store event as this watcher sees it: objects leaving the selector are DELETED,
/// objects entering it ADDED.
fn translate(
    ev: &skiff_store::Event,
    info: &'static skiff_resources::ResourceInfo,
    filter: &Filter,
    render: &mut Render,
) -> Option<Bytes> {
    if render.rep == Representation::Object
        && filter.is_empty()
        && storage_info(info).api_version() == info.api_version()
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
            return Some(Bytes::from(line));
        }
    }
    let new = decode_bytes(&ev.value, ev.revision)
        .ok()
        .map(|o| to_version(info, o))?;
    let old_matches = ev
        .prev_value
        .as_ref()
        .and_then(|p| decode_bytes(p, ev.revision).ok())
        .map(|o| filter.matches(&to_version(info, o)))
        .unwrap_or(false);
    let new_matches = filter.matches(&new);
    let kind = match ev.kind {
        EventKind::Deleted => {
            if !new_matches && !old_matches {
                return None;
            }
            "DELETED"
        }
        EventKind::Added => {
            if !new_matches {
                return None;
            }
            "ADDED"
        }
        EventKind::Modified => match (old_matches, new_matches) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
    };
    Some(render.event(kind, new))
}
