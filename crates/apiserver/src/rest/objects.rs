//! Storage layout and encoding of objects, and the GET and LIST handlers.

use chrono::Utc;
use http::HeaderMap;
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::{KeyValue, Store};

use crate::compat::{self, IncludeObject};
use crate::http::{representation, Query, Representation};
use crate::router::Target;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

/// The resource objects are stored as: the same group at the storage version, except
/// `events.k8s.io` Events, which kube-apiserver stores as core `v1` Events (one set of
/// objects served by both APIs).
pub(crate) fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    let group = if info.group == "events.k8s.io" {
        ""
    } else {
        info.group
    };
    skiff_resources::lookup(group, info.storage_version, info.plural).unwrap_or(info)
}

fn group_dir(info: &'static ResourceInfo) -> &'static str {
    let s = storage_info(info);
    if s.group.is_empty() {
        "core"
    } else {
        s.group
    }
}

/// The store key of one object.
pub(crate) fn key(info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> String {
    match ns.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/{name}", group_dir(info), info.plural),
        None => format!("/registry/{}/{}/{name}", group_dir(info), info.plural),
    }
}

/// The key prefix of a collection (all namespaces when `ns` is `None`).
pub(crate) fn prefix(info: &'static ResourceInfo, ns: Option<&str>) -> String {
    match ns.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/", group_dir(info), info.plural),
        None => format!("/registry/{}/{}/", group_dir(info), info.plural),
    }
}

/// A stored object with its `resourceVersion` (the key's modification revision).
pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Value> {
    decode_bytes(&kv.value, kv.mod_revision)
}

/// Decodes stored bytes and sets `metadata.resourceVersion` to `rev`.
pub(crate) fn decode_bytes(bytes: &[u8], rev: i64) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("decoding a stored object: {e}")))?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    Ok(v)
}

/// The bytes to store: the object without `resourceVersion` (the store keeps that).
pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// The object in the version of `info` (the request's).
pub(crate) fn to_version(info: &'static ResourceInfo, obj: Value) -> Value {
    if storage_info(info).api_version() == info.api_version() {
        return obj;
    }
    compat::convert(obj, &info.api_version())
}

/// The object in `info`'s storage version.
pub(crate) fn to_storage(info: &'static ResourceInfo, obj: Value) -> Value {
    let s = storage_info(info);
    if s.api_version() == info.api_version() {
        return obj;
    }
    compat::convert(obj, &s.api_version())
}

/// `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, `Z`).
pub(crate) fn now_ts() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata`, created if missing.
pub(crate) fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Just made an object above.
        _ => unreachable!("metadata is an object"),
    }
}

// ---- GET and LIST ----

pub(crate) fn get(
    state: &ApiState,
    t: &Target,
    name: &str,
    headers: &HeaderMap,
) -> ApiResult<Value> {
    let kv = state
        .store
        .get(&key(t.info, t.namespace.as_deref(), name))?
        .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
    let obj = to_version(t.info, decode(&kv)?);
    Ok(match representation(headers) {
        Representation::Object => obj,
        Representation::PartialMetadata => compat::partial_metadata(&obj),
        Representation::Table => {
            let mut table = compat::table(
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

/// Selectors of a LIST or WATCH.
pub(crate) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        Ok(Filter {
            labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        })
    }
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
}

pub(crate) fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// Objects of a LIST (requested version, filtered) and the list's revision.
pub(crate) fn list_objects(
    state: &ApiState,
    t: &Target,
    filter: &Filter,
) -> ApiResult<(Vec<(String, Value)>, i64)> {
    let (kvs, rev) = state.store.list(&prefix(t.info, t.namespace.as_deref()))?;
    let mut out = Vec::with_capacity(kvs.len());
    for kv in &kvs {
        let obj = to_version(t.info, decode(kv)?);
        if filter.matches(&obj) {
            out.push((kv.key.clone(), obj));
        }
    }
    Ok((out, rev))
}

pub(crate) fn list(
    state: &ApiState,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    at: Option<super::rvmatch::Snapshot>,
) -> ApiResult<Value> {
    let filter = Filter::from_query(q)?;
    let (mut items, mut rev) = match at {
        Some(snapshot) => snapshot.objects(t, &filter)?,
        None => list_objects(state, t, &filter)?,
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
            let mut table = compat::table(t.info, &objs, include_object(q), Utc::now());
            table["metadata"] = meta;
            table
        }
        Representation::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", crate::http::meta_version(headers)),
            "metadata": meta,
            "items": objs.iter().map(compat::partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": format!("{}List", t.info.kind),
            "apiVersion": t.info.api_version(),
            "metadata": meta,
            "items": objs,
        }),
    })
}
