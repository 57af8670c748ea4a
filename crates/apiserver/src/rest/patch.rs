//! PATCH: JSON patch, merge patch, strategic merge patch and server-side apply with
//! field managers (`skiff_resources::managedfields`), retried on write conflicts unless
//! the patch names a resourceVersion.

use bytes::Bytes;
use serde_json::Value;
use skiff_store::Store;

use super::write::{
    create_object, decode_patched, field_manager_invalid, update_object_with_warnings, UpdateMode,
    WriteOpts,
};
use super::Reply;
use crate::conversion::to_version;
use crate::http::Query;
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key, meta_str};

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
            skiff_resources::strategic_merge_patch(info, cur, &p)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
        PatchKind::Apply => {
            let p: Value = super::body::parse_yaml(body).map_err(parse_err)?;
            skiff_resources::strategic_merge_patch(info, cur, &p)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// PATCH of an object or its status.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn patch(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    ct: &str,
    body: &Bytes,
    mode: UpdateMode,
    opts: &WriteOpts,
    _q: &Query,
) -> ApiResult<Reply> {
    let kind = patch_kind(ct)?;
    if kind == PatchKind::Strategic && t.info.custom.is_some() {
        // Custom resources have no patch strategies (kube-apiserver's CRD handler
        // leaves strategic merge patch out of the accepted types).
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if kind == PatchKind::Apply {
        return server_side_apply(state, t, name, body, mode, opts).await;
    }
    if opts.force.is_some() {
        return Err(field_manager_invalid(
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let ns = t.namespace.as_deref();
    for _ in 0..8 {
        let Some(kv) = state.store.get(&key(t.info, ns, name))? else {
            return Err(ApiError::not_found(t.info.group, t.info.plural, name));
        };
        let cur = to_version(state.store.as_ref(), t.info, decode(&kv)?)?;
        let new = apply_patch(t.info, ct, &cur, body)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the patched object is not an object"));
        }
        let (new, warnings) = decode_patched(t.info, new, opts)?;
        // A resourceVersion in the patch is a precondition; otherwise retry conflicts.
        let pinned = meta_str(&new, "resourceVersion")
            .filter(|rv| *rv != kv.mod_revision.to_string())
            .map(|rv| rv.to_string());
        if pinned.is_some() {
            return Err(ApiError::conflict(t.info.group, t.info.plural, name));
        }
        match update_object_with_warnings(
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
            Ok((out, mut admission_warnings)) => {
                let mut warnings = warnings;
                warnings.append(&mut admission_warnings);
                return Ok(Reply {
                    code: 200,
                    body: to_version(state.store.as_ref(), t.info, out)?,
                    warnings,
                });
            }
        }
    }
    Err(ApiError::conflict(t.info.group, t.info.plural, name))
}

/// `application/apply-patch+yaml`: the configuration becomes the manager's set of
/// fields; conflicts with other managers are 409 unless `force=true`; a missing object
/// is created.
async fn server_side_apply(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    body: &Bytes,
    mode: UpdateMode,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    if !opts.manager_given {
        return Err(field_manager_invalid(
            "fieldManager: Required value: is required for apply patch",
        ));
    }
    let config: Value = super::body::parse_yaml(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration is not an object",
        ));
    }
    let version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if version != t.info.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {}",
            t.info.api_version()
        )));
    }
    if config.pointer("/metadata/managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    if let Some(n) = meta_str(&config, "name").filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let api_version = t.info.api_version();
    // Fields the schema does not declare are refused whatever fieldValidation says,
    // with structured-merge-diff's words (a plain error: 500 without a reason).
    let ty = skiff_resources::managedfields::Ty::of_info(t.info);
    let undeclared = skiff_resources::managedfields::walk::undeclared_fields(&ty, &config);
    if !undeclared.is_empty() {
        let errs: Vec<String> = undeclared
            .iter()
            .map(|p| format!("{p}: field not declared in schema"))
            .collect();
        let text = if errs.len() == 1 {
            errs[0].clone()
        } else {
            format!("errors:\n  {}", errs.join("\n  "))
        };
        let ns = meta_str(&config, "namespace")
            .or(t.namespace.as_deref())
            .unwrap_or("");
        let (group, version) = (t.info.group, t.info.version);
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({ns}/{name}; {gv}, Kind={}): {text}",
                t.info.kind
            ),
        ));
    }
    let time = crate::storage::now_ts();
    let op = skiff_resources::managedfields::Operation {
        manager: &opts.manager,
        api_version: &api_version,
        subresource: opts.subresource.as_deref(),
        time: &time,
    };
    let force = opts.force.unwrap_or(false);
    let conflict = |e: skiff_resources::managedfields::ApplyError| {
        ApiError::new(409, "Conflict", e.to_string())
            .with_details(serde_json::json!({ "causes": e.causes() }))
    };
    let mut done = opts.clone();
    done.managed_fields_done = true;
    let ns = t.namespace.as_deref();
    for _ in 0..8 {
        let Some(kv) = state.store.get(&key(t.info, ns, name))? else {
            if mode != UpdateMode::Main {
                return Err(ApiError::not_found(t.info.group, t.info.plural, name));
            }
            let mut obj = skiff_resources::managedfields::apply(t.info, None, &config, &op, force)
                .map_err(conflict)?;
            if meta_str(&obj, "name").is_none() {
                obj["metadata"]["name"] = Value::String(name.to_string());
            }
            let (out, warnings) = create_object(state, t.info, ns, obj, &done).await?;
            return Ok(Reply {
                code: 201,
                body: to_version(state.store.as_ref(), t.info, out)?,
                warnings,
            });
        };
        // A resourceVersion in the configuration is a precondition.
        if let Some(rv) = meta_str(&config, "resourceVersion").filter(|rv| !rv.is_empty()) {
            if rv != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(t.info.group, t.info.plural, name));
            }
        }
        let cur = to_version(state.store.as_ref(), t.info, decode(&kv)?)?;
        let new = skiff_resources::managedfields::apply(t.info, Some(&cur), &config, &op, force)
            .map_err(conflict)?;
        let (new, warnings) = decode_patched(t.info, new, opts)?;
        match update_object_with_warnings(
            state,
            t.info,
            ns,
            name,
            new,
            mode,
            Some(kv.mod_revision),
            &done,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
            Ok((out, mut admission_warnings)) => {
                let mut warnings = warnings;
                warnings.append(&mut admission_warnings);
                return Ok(Reply {
                    code: 200,
                    body: to_version(state.store.as_ref(), t.info, out)?,
                    warnings,
                });
            }
        }
    }
    Err(ApiError::conflict(t.info.group, t.info.plural, name))
}
