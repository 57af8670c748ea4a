//! Objects between the version of a request and the storage version: the built-in
//! conversions of `skiff_resources::convert`, and custom resources through their CRD's
//! conversion webhook (`spec.conversion.strategy: Webhook`), as apiextensions-apiserver's
//! `webhookConverter` does: the objects not yet in the desired version go to the webhook in one
//! `ConversionReview` (one per LIST, one per object otherwise), over the admission
//! webhooks' HTTPS client (`caBundle`, a Service reached at its cluster IP), and the
//! answer is checked by `skiff_resources::crd::conversion`. A failure is HTTP 500 with
//! kube-apiserver's text (`conversion webhook for <group>/<version>, Kind=<kind> failed:
//! ...`).
//!
//! Conversion is synchronous (GET, LIST, WATCH and the write path all call
//! [`to_version`]), so the call is driven to completion on the current runtime
//! (`block_in_place`, letting the worker's other tasks move elsewhere) or, where that is
//! not possible, on a thread of its own.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use skiff_resources::crd::conversion::{self, Webhook};
use skiff_resources::ResourceInfo;
use skiff_store::{KeyValue, Store};

use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, prefix, storage_info};
use crate::webhookclient::{self as client, resolve};

/// The conversion webhook that converts `info`'s objects, if its CRD has one.
fn webhook(info: &'static ResourceInfo) -> Option<&'static Webhook> {
    info.custom.and_then(|c| c.conversion.as_ref())
}

/// Whether `info`'s stored objects are in the requested version as they are, so a read
/// may use their bytes: it is the storage version, and no object can be stored in
/// another (a CRD whose storage version moved keeps older objects in the old one).
pub(crate) fn stored_as_requested(info: &'static ResourceInfo) -> bool {
    storage_info(info).api_version() == info.api_version()
        && !info.custom.is_some_and(|c| c.mixed_storage)
}

/// The object in the version of `info` (the request's), through the CRD's conversion
/// webhook if it has one (`store`: where the webhook's Service is).
pub(crate) fn to_version(
    store: &dyn Store,
    info: &'static ResourceInfo,
    obj: Value,
) -> ApiResult<Value> {
    if let Some(hook) = webhook(info) {
        return one(convert(store, hook, vec![obj], &info.api_version(), None)?);
    }
    if stored_as_requested(info) {
        return Ok(obj);
    }
    Ok(skiff_resources::convert(obj, &info.api_version()))
}

/// Objects read together (a LIST) in the version of `info`: one call of a conversion
/// webhook for all of them, as kube-apiserver converts a list.
pub(crate) fn list_to_version(
    store: &dyn Store,
    info: &'static ResourceInfo,
    objs: Vec<Value>,
) -> ApiResult<Vec<Value>> {
    if let Some(hook) = webhook(info) {
        let list_kind = info.custom.map(|c| c.list_kind.as_str()).unwrap_or("");
        return convert(store, hook, objs, &info.api_version(), Some(list_kind));
    }
    objs.into_iter()
        .map(|o| to_version(store, info, o))
        .collect()
}

/// The object in `info`'s storage version (through the CRD's conversion webhook if it
/// has one).
pub(crate) fn to_storage(
    store: &dyn Store,
    info: &'static ResourceInfo,
    obj: Value,
) -> ApiResult<Value> {
    let s = storage_info(info);
    if let Some(hook) = webhook(info) {
        return one(convert(store, hook, vec![obj], &s.api_version(), None)?);
    }
    if s.api_version() == info.api_version() {
        return Ok(obj);
    }
    Ok(skiff_resources::convert(obj, &s.api_version()))
}

/// Whether reading `info` may call a conversion webhook (then a LIST is converted as
/// one list, not object by object).
pub(crate) fn converts_by_webhook(info: &'static ResourceInfo) -> bool {
    webhook(info).is_some() && !stored_as_requested(info)
}

fn one(mut v: Vec<Value>) -> ApiResult<Value> {
    v.pop()
        .ok_or_else(|| ApiError::internal("a conversion returned no object"))
}

/// Objects of a LIST (requested version, filtered) and the list's revision.
pub(crate) fn list_objects(
    store: &dyn Store,
    t: &RequestInfo,
    filter: &Filter,
) -> ApiResult<(Vec<(String, Value)>, i64)> {
    let (kvs, rev) = store.list(&prefix(t.info, t.namespace.as_deref()))?;
    Ok((filtered(store, t, &kvs, filter)?, rev))
}

/// Stored objects in the request's version (one conversion for all), filtered, with
/// their keys.
pub(crate) fn filtered(
    store: &dyn Store,
    t: &RequestInfo,
    kvs: &[KeyValue],
    filter: &Filter,
) -> ApiResult<Vec<(String, Value)>> {
    let objs = kvs.iter().map(decode).collect::<ApiResult<Vec<_>>>()?;
    let objs = list_to_version(store, t.info, objs)?;
    Ok(kvs
        .iter()
        .zip(objs)
        .filter(|(_, o)| filter.matches(o))
        .map(|(kv, o)| (kv.key.clone(), o))
        .collect())
}

/// How long kube-apiserver waits for a conversion webhook (its webhook client's default).
const TIMEOUT: Duration = Duration::from_secs(30);

/// `objects` in `desired` (an `apiVersion`), those in another version converted by one
/// call of `hook`. `list_kind` names the list they were read as (kube's errors name the
/// list's kind then), `None` for a single object.
pub(crate) fn convert(
    store: &dyn Store,
    hook: &Webhook,
    mut objects: Vec<Value>,
    desired: &str,
    list_kind: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let todo = conversion::to_convert(&objects, desired);
    if todo.is_empty() {
        return Ok(objects);
    }
    let first = &objects[todo[0]];
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    // kube names what it converts by its GroupVersionKind: the stored list for a LIST
    // (its items' version), the object itself otherwise.
    let from = conversion::gvk(
        &str_of(first, "apiVersion"),
        list_kind.unwrap_or(&str_of(first, "kind")),
    );
    let originals: Vec<&Value> = todo.iter().map(|&i| &objects[i]).collect();
    let uid = uuid::Uuid::new_v4().to_string();
    let review = conversion::request(hook.review_version, &uid, desired, &originals);
    let failed = |why: &str| -> ApiError {
        ApiError::new(
            500,
            "",
            format!("conversion webhook for {from} failed: {why}"),
        )
    };
    let target = resolve(store, &hook.client_config).map_err(|e| failed(&e))?;
    let ca = hook
        .client_config
        .get("caBundle")
        .and_then(Value::as_str)
        .map(str::to_string);
    let answer =
        block_on(async move { client::call(&target, ca.as_deref(), TIMEOUT, &review).await })
            .map_err(|e| {
                // The admission client words failures for admission (`failed to call
                // webhook: Post ...`); kube's conversion errors carry Go's client error alone.
                failed(e.strip_prefix("failed to call webhook: ").unwrap_or(&e))
            })?;
    let converted = conversion::read_response(
        hook.review_version,
        &uid,
        desired,
        &from,
        list_kind.is_some(),
        &originals,
        &answer,
    )
    .map_err(|e| ApiError::new(500, "", e))?;
    for (i, obj) in todo.into_iter().zip(converted) {
        objects[i] = obj;
    }
    Ok(objects)
}

/// Drives the webhook call `f` to completion from synchronous code inside (or outside)
/// a Tokio runtime.
fn block_on<F>(f: F) -> Result<Value, String>
where
    F: Future<Output = Result<Value, String>> + Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(f))
        }
        // A current-thread runtime cannot lend its only thread: run the call on a
        // thread with a runtime of its own.
        _ => std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting a runtime for the call: {e}"))?
                    .block_on(f)
            })
            .join()
            .unwrap_or_else(|_| Err("the call panicked".into()))
        }),
    }
}
