//! How objects are kept in the datastore: the key layout
//! (`/registry/<group|core>/<plural>/[<namespace>/]<name>`), the storage version (the
//! conversions to and from it are `crate::conversion`'s), the encoding (JSON without `resourceVersion`: the store's
//! revision is the `resourceVersion`), and small metadata accessors every layer uses.

pub(crate) mod splice;

pub(crate) use splice::{splice_resource_version, without_managed_fields};

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::KeyValue;

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

/// The key prefix of every object of a custom resource (`group`/`plural` of its CRD),
/// whatever its version: what deleting a CRD removes.
pub(crate) fn custom_prefix(group: &str, plural: &str) -> String {
    format!("/registry/{group}/{plural}/")
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
    // In Go's field order, so that LIST and WATCH, which splice stored bytes, write
    // `kind` first as kube-apiserver does.
    crate::http::to_json(&o)
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
