//! The GET and LIST handlers.

use chrono::Utc;
use http::{HeaderMap, Response};
use serde_json::{json, Value};
use skiff_store::{KeyValue, Store};

use skiff_resources::IncludeObject;

use crate::conversion::{converts_by_webhook, list_objects, stored_as_requested, to_version};
use crate::http::{include_object, representation, Body, Query, Representation};
use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, decode_bytes, key, prefix, splice};

// ---- GET and LIST ----

pub(crate) fn get(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    headers: &HeaderMap,
) -> ApiResult<Value> {
    let kv = state
        .store
        .get(&key(t.info, t.namespace.as_deref(), name))?
        .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
    let obj = to_version(state.store.as_ref(), t.info, decode(&kv)?)?;
    Ok(match representation(headers) {
        Representation::Object => obj,
        Representation::PartialMetadata => crate::http::partial_metadata(&obj),
        Representation::Table => {
            let mut table = skiff_resources::table(
                t.info,
                std::slice::from_ref(&obj),
                IncludeObject::Metadata,
                Utc::now(),
            );
            table["metadata"] = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
            table
        }
    })
}

pub(crate) fn list(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
    headers: &HeaderMap,
    at: Option<super::rvmatch::Snapshot>,
) -> ApiResult<Value> {
    let filter = Filter::from_query(q, t.info)?;
    let (mut items, mut rev) = match at {
        Some(snapshot) => snapshot.objects(state.store.as_ref(), t, &filter)?,
        None => list_objects(state.store.as_ref(), t, &filter)?,
    };
    // Continue tokens: base64 of `<revision>/<last key>`.
    if let Some(tok) = q.get("continue").filter(|s| !s.is_empty()) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(tok)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let (r, last) = raw
            .split_once('/')
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        rev = r.parse().unwrap_or(rev);
        let last = format!("/{last}");
        items.retain(|(k, _)| k.as_str() > last.as_str());
    }
    let mut cont = None;
    let mut remaining = None;
    if let Some(limit) = q.int("limit").filter(|l| *l > 0) {
        let limit = limit as usize;
        if items.len() > limit {
            use base64::Engine;
            remaining = Some(items.len() - limit);
            items.truncate(limit);
            let last = items
                .last()
                .map(|(k, _)| k.trim_start_matches('/').to_string())
                .unwrap_or_default();
            cont = Some(base64::engine::general_purpose::STANDARD.encode(format!("{rev}/{last}")));
        }
    }
    let objs: Vec<Value> = items.into_iter().map(|(_, o)| o).collect();
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(match representation(headers) {
        Representation::Table => {
            let mut table = skiff_resources::table(t.info, &objs, include_object(q), Utc::now());
            table["metadata"] = meta;
            table
        }
        Representation::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", crate::http::meta_version(headers)),
            "metadata": meta,
            "items": objs.iter().map(crate::http::partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": format!("{}List", t.info.kind),
            "apiVersion": t.info.api_version(),
            "metadata": meta,
            "items": objs,
        }),
    })
}

// ---- LIST, encoded directly ----

/// How many objects are decoded at once for a Table (bounds the memory of a large LIST).
const TABLE_CHUNK: usize = 256;

/// Answers a LIST in the Object or Table representation straight into the response
/// bytes: stored objects are spliced in as they are (see [`splice`]) unless they need a
/// conversion or the request has selectors, and Table rows are printed chunk by chunk.
/// `None` for representations this path does not serve (partial metadata), which
/// [`list`] answers.
pub(crate) async fn serve_list(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult<Option<Response<Body>>> {
    let rep = representation(headers);
    // A conversion webhook converts a LIST in one call: `list` does that.
    if rep == Representation::PartialMetadata || converts_by_webhook(t.info) {
        return Ok(None);
    }
    let filter = Filter::from_query(q, t.info)?;
    let at = super::rvmatch::snapshot(state, t, q).await?;
    let (kvs, mut rev) = match (at, single_key(t, &filter)) {
        (Some(s), _) => (s.kvs, s.rev),
        // One object can match: read its key, not the whole prefix, as kube-apiserver's
        // registry does for a selector that `MatchesSingle` (a node's watch of its own
        // Node listed, and decoded, every Node: quadratic in the nodes registering).
        (None, Some(k)) => {
            let rev = state.store.current_revision()?;
            let kv = state.store.get(&k)?;
            // The list is as of a revision that includes the object read.
            let rev = kv.as_ref().map_or(rev, |kv| rev.max(kv.mod_revision));
            (kv.into_iter().collect(), rev)
        }
        (None, None) => state.store.list(&prefix(t.info, t.namespace.as_deref()))?,
    };
    let mut after: Option<String> = None;
    if let Some(tok) = q.get("continue").filter(|s| !s.is_empty()) {
        let (r, last) = decode_continue(tok)?;
        rev = r.unwrap_or(rev);
        after = Some(last);
    }
    let limit = q
        .int("limit")
        .filter(|l| *l > 0)
        .map(|l| l as usize)
        .unwrap_or(usize::MAX);
    let selective = !filter.is_empty();
    let convert = !stored_as_requested(t.info);
    // Labels alone can be read without building the whole object.
    let labels_only = selective && !convert && filter.fields.is_empty();
    // Objects whose stored bytes show they cannot match are not decoded (a kubelet's
    // list of its pods by `spec.nodeName` would decode every pod of the cluster).
    let needles = filter.fields.needles();

    // The page: matching objects after the continue key, up to the limit. Objects are
    // decoded here only when they must be (conversion, field selectors); a Table
    // decodes its page chunk by chunk while printing.
    let candidates = kvs
        .iter()
        .filter(|kv| after.as_deref().is_none_or(|a| kv.key.as_str() > a));
    let mut page: Vec<(&KeyValue, Option<Value>)> = Vec::new();
    let mut remaining = 0usize;
    let mut more = false;
    for kv in candidates {
        if page.len() >= limit && !selective {
            // Without selectors every further object counts: no need to decode it.
            more = true;
            remaining += 1;
            continue;
        }
        let obj = if labels_only {
            if !filter.labels.matches(&stored_labels(kv)?) {
                continue;
            }
            None
        } else if selective || convert {
            if !Filter::may_match_bytes(&needles, &kv.value) {
                continue;
            }
            let o = to_version(state.store.as_ref(), t.info, decode(kv)?)?;
            if !filter.matches(&o) {
                continue;
            }
            Some(o)
        } else {
            None
        };
        if page.len() < limit {
            page.push((kv, obj));
        } else {
            // kube-apiserver does not count the rest when selectors filter it.
            more = true;
            break;
        }
    }
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if more {
        let last = page.last().map(|(kv, _)| kv.key.as_str()).unwrap_or("");
        meta["continue"] = json!(encode_continue(rev, last));
        if !selective {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(
        page.iter()
            .map(|(kv, _)| kv.value.len() + 32)
            .sum::<usize>()
            + 256,
    );
    match rep {
        Representation::Table => write_table(state.store.as_ref(), &mut out, t, q, &meta, page)?,
        _ => {
            out.extend_from_slice(b"{\"kind\":");
            write_json(&mut out, &json!(format!("{}List", t.info.kind)));
            out.extend_from_slice(b",\"apiVersion\":");
            write_json(&mut out, &json!(t.info.api_version()));
            out.extend_from_slice(b",\"metadata\":");
            write_json(&mut out, &meta);
            out.extend_from_slice(b",\"items\":[");
            for (i, (kv, obj)) in page.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_object(&mut out, kv, obj)?;
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'\n');
    Ok(Some(raw_json_response(out)))
}

/// The one key a LIST can match: its field selector requires `metadata.name`, and the
/// request names the namespace (or the kind has none).
fn single_key(t: &RequestInfo, filter: &Filter) -> Option<String> {
    if t.info.namespaced && t.namespace.is_none() {
        return None;
    }
    let name = filter.fields.required("metadata.name")?;
    (!name.is_empty() && !name.contains('/')).then(|| key(t.info, t.namespace.as_deref(), name))
}

/// One list item: the decoded object if there is one (already converted), else the
/// stored bytes with the revision spliced in.
fn write_object(out: &mut Vec<u8>, kv: &KeyValue, obj: Option<Value>) -> ApiResult<()> {
    if obj.is_none() && splice::splice_resource_version(&kv.value, kv.mod_revision, out) {
        return Ok(());
    }
    let obj = match obj {
        Some(o) => o,
        None => decode(kv)?,
    };
    write_json(out, &obj);
    Ok(())
}

/// A stored object for the Table printers: without `metadata.managedFields`, often a
/// third of a pod's bytes, which they never read (row objects are spliced from the
/// stored bytes).
fn decode_for_printing(kv: &KeyValue) -> ApiResult<Value> {
    match splice::without_managed_fields(&kv.value) {
        Some(pruned) => decode_bytes(&pruned, kv.mod_revision),
        None => decode(kv),
    }
}

/// `metadata.labels` of a stored object, read without building the object.
fn stored_labels(kv: &KeyValue) -> ApiResult<std::collections::BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Stored {
        #[serde(default)]
        metadata: Meta,
    }
    #[derive(serde::Deserialize, Default)]
    struct Meta {
        #[serde(default)]
        labels: Option<std::collections::BTreeMap<String, String>>,
    }
    let s: Stored = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding a stored object: {e}")))?;
    Ok(s.metadata.labels.unwrap_or_default())
}

/// A Table of the page: the skeleton's fields in order, rows printed chunk by chunk.
/// With `includeObject=Metadata` (kubectl's default) each row's partial object is
/// spliced from the stored metadata rather than cloned and re-encoded.
fn write_table(
    store: &dyn skiff_store::Store,
    out: &mut Vec<u8>,
    t: &RequestInfo,
    q: &Query,
    meta: &Value,
    mut page: Vec<(&KeyValue, Option<Value>)>,
) -> ApiResult<()> {
    let include = include_object(q);
    let now = Utc::now();
    let raw_meta = include == IncludeObject::Metadata && stored_as_requested(t.info);
    let printed = if raw_meta {
        IncludeObject::None
    } else {
        include
    };
    let skeleton = skiff_resources::table(t.info, &[], include, now);
    out.push(b'{');
    for (i, (k, v)) in skeleton.as_object().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, &json!(k));
        out.push(b':');
        match k.as_str() {
            "metadata" => write_json(out, meta),
            "rows" => {
                out.push(b'[');
                let mut first = true;
                for chunk in page.chunks_mut(TABLE_CHUNK) {
                    let mut objs = Vec::with_capacity(chunk.len());
                    for (kv, o) in chunk.iter_mut() {
                        objs.push(match o.take() {
                            Some(o) => o,
                            None => to_version(store, t.info, decode_for_printing(kv)?)?,
                        });
                    }
                    let table = skiff_resources::table(t.info, &objs, printed, now);
                    drop(objs);
                    let rows = table["rows"].as_array().into_iter().flatten();
                    for (row, (kv, _)) in rows.zip(chunk.iter()) {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        write_json(out, row);
                        if raw_meta && out.last() == Some(&b'}') {
                            let at = out.len() - 1;
                            let mut obj = Vec::with_capacity(1024);
                            obj.extend_from_slice(
                                b",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
                            );
                            if !splice::metadata_with_resource_version(
                                &kv.value,
                                kv.mod_revision,
                                &mut obj,
                            ) {
                                let o = decode(kv)?;
                                write_json(&mut obj, o.get("metadata").unwrap_or(&json!({})));
                            }
                            obj.extend_from_slice(b"}}");
                            out.truncate(at);
                            out.extend_from_slice(&obj);
                        }
                    }
                }
                out.push(b']');
            }
            _ => write_json(out, v),
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing a Value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A 200 answer with an already encoded JSON body.
fn raw_json_response(body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(crate::http::full(body))
        .unwrap_or_else(|_| Response::new(crate::http::full("")))
}

/// Continue tokens: base64 of `<revision>/<last key without its leading slash>`.
fn encode_continue(rev: i64, last_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(format!("{rev}/{}", last_key.trim_start_matches('/')))
}

/// The revision (if it parses) and the last key of a continue token.
fn decode_continue(tok: &str) -> ApiResult<(Option<i64>, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(tok)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
    let (r, last) = raw
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
    Ok((r.parse().ok(), format!("/{last}")))
}
