//! PATCH: JSON patch, merge patch, strategic merge patch and server-side apply (as
//! create-or-merge), retried on write conflicts unless the patch names a
//! resourceVersion.

use bytes::Bytes;
use serde_json::Value;
use skiff_store::Store;

use super::objects::{decode, key, meta_str, to_version};
use super::write::{check_unknown_pub, create_object, update_object, UpdateMode, WriteOpts};
use super::Reply;
use crate::compat;
use crate::http::Query;
use crate::router::Target;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

/// The patch content types kube-apiserver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_kind(ct: &str) -> ApiResult<PatchKind> {
    match ct.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media(other)),
    }
}

/// Applies a patch of the given content type to `cur` (both in the request version).
pub(crate) fn apply_patch(
    info: &skiff_resources::ResourceInfo,
    ct: &str,
    cur: &Value,
    body: &Bytes,
) -> ApiResult<Value> {
    let kind = patch_kind(ct)?;
    let parse_err = |e: String| ApiError::bad_request(format!("error decoding patch: {e}"));
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| parse_err(e.to_string()))?;
            let mut doc = cur.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(doc)
        }
        PatchKind::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| parse_err(e.to_string()))?;
            let mut doc = cur.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| parse_err(e.to_string()))?;
            compat::strategic_merge_patch(info, cur, &p).map_err(ApiError::bad_request)
        }
        PatchKind::Apply => {
            let p: Value = serde_yaml_ng::from_slice(body).map_err(|e| parse_err(e.to_string()))?;
            compat::strategic_merge_patch(info, cur, &p).map_err(ApiError::bad_request)
        }
    }
}

/// PATCH of an object or its status.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn patch(
    state: &ApiState,
    t: &Target,
    name: &str,
    ct: &str,
    body: &Bytes,
    mode: UpdateMode,
    opts: &WriteOpts,
    _q: &Query,
) -> ApiResult<Reply> {
    let kind = patch_kind(ct)?;
    let ns = t.namespace.as_deref();
    for _ in 0..8 {
        let Some(kv) = state.store.get(&key(t.info, ns, name))? else {
            if kind == PatchKind::Apply && mode == UpdateMode::Main {
                // Server-side apply of a missing object creates it.
                let obj: Value = serde_yaml_ng::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let (out, warnings) = create_object(state, t.info, ns, obj, opts).await?;
                return Ok(Reply {
                    code: 201,
                    body: to_version(t.info, out),
                    warnings,
                });
            }
            return Err(ApiError::not_found(t.info.group, t.info.plural, name));
        };
        let cur = to_version(t.info, decode(&kv)?);
        let new = apply_patch(t.info, ct, &cur, body)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the patched object is not an object"));
        }
        let warnings = check_unknown_pub(t.info, &new, opts)?;
        // A resourceVersion in the patch is a precondition; otherwise retry conflicts.
        let pinned = meta_str(&new, "resourceVersion")
            .filter(|rv| *rv != kv.mod_revision.to_string())
            .map(|rv| rv.to_string());
        if pinned.is_some() {
            return Err(ApiError::conflict(t.info.group, t.info.plural, name));
        }
        match update_object(
            state,
            t.info,
            ns,
            name,
            new,
            mode,
            Some(kv.mod_revision),
            opts,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
            Ok(out) => {
                return Ok(Reply {
                    code: 200,
                    body: to_version(t.info, out),
                    warnings,
                })
            }
        }
    }
    Err(ApiError::conflict(t.info.group, t.info.plural, name))
}
