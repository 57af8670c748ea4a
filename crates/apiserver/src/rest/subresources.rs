//! Small subresources: scale, binding, eviction and TokenRequest.

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_store::Store;

use super::objects::{decode, key, meta_str, now_ts, to_version};
use super::patch::apply_patch;
use super::write::{delete_object, update_object, UpdateMode, WriteOpts};
use super::Reply;
use crate::http::Query;
use crate::router::Target;
use crate::state::ApiState;
use crate::status::{success, ApiError, ApiResult};

fn load(state: &ApiState, t: &Target, name: &str) -> ApiResult<(Value, i64)> {
    let kv = state
        .store
        .get(&key(t.info, t.namespace.as_deref(), name))?
        .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
    Ok((to_version(t.info, decode(&kv)?), kv.mod_revision))
}

/// `matchLabels` and `matchExpressions` as a selector string (Scale's status.selector).
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let k = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{k} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{k} notin ({})", vals.join(","))),
                "Exists" => parts.push(k.to_string()),
                "DoesNotExist" => parts.push(format!("!{k}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            meta[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

/// GET `.../scale`.
pub(crate) fn get_scale(state: &ApiState, t: &Target, name: &str) -> ApiResult<Value> {
    Ok(scale_of(&load(state, t, name)?.0))
}

async fn set_replicas(
    state: &ApiState,
    t: &Target,
    name: &str,
    obj: Value,
    rev: i64,
    replicas: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let mut obj = obj;
    obj["spec"]["replicas"] = replicas;
    let out = update_object(
        state,
        t.info,
        t.namespace.as_deref(),
        name,
        obj,
        UpdateMode::Main,
        Some(rev),
        opts,
    )
    .await?;
    Ok(Reply::ok(200, scale_of(&to_version(t.info, out))))
}

/// PUT `.../scale`.
pub(crate) async fn put_scale(
    state: &ApiState,
    t: &Target,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let (obj, rev) = load(state, t, name)?;
    if let Some(rv) = meta_str(&body, "resourceVersion").filter(|s| !s.is_empty()) {
        if rv != rev.to_string() {
            return Err(ApiError::conflict(t.info.group, t.info.plural, name));
        }
    }
    let replicas = body.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    set_replicas(state, t, name, obj, rev, replicas, opts).await
}

/// PATCH `.../scale`.
pub(crate) async fn patch_scale(
    state: &ApiState,
    t: &Target,
    name: &str,
    ct: &str,
    body: &Bytes,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    for _ in 0..8 {
        let (obj, rev) = load(state, t, name)?;
        let scale = apply_patch(t.info, ct, &scale_of(&obj), body)?;
        let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        match set_replicas(state, t, name, obj, rev, replicas, opts).await {
            Err(e) if e.reason == "Conflict" => continue,
            r => return r,
        }
    }
    Err(ApiError::conflict(t.info.group, t.info.plural, name))
}

/// POST `pods/<name>/binding`: assigns the pod to a node. Written directly (one write,
/// no update validation): binding is the one way `spec.nodeName` may change.
pub(crate) async fn binding(
    state: &ApiState,
    t: &Target,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                name,
                vec![(
                    "target.name".into(),
                    "FieldValueRequired".into(),
                    "target.name: Required value".into(),
                )],
            )
        })?
        .to_string();
    let k = key(t.info, t.namespace.as_deref(), name);
    for _ in 0..8 {
        let kv = state
            .store
            .get(&k)?
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        let mut pod = decode(&kv)?;
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict_msg(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(cur) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return Err(ApiError::conflict_msg(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node \"{cur}\""),
            ));
        }
        if !pod.get("spec").is_some_and(Value::is_object) {
            pod["spec"] = json!({});
        }
        pod["spec"]["nodeName"] = json!(node);
        if !pod.get("status").is_some_and(Value::is_object) {
            pod["status"] = json!({});
        }
        let mut conds: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_ts()}));
        pod["status"]["conditions"] = json!(conds);
        if opts.dry_run {
            return Ok(Reply::ok(201, success(None)));
        }
        match state
            .store
            .update(&k, &super::objects::encode(&pod), Some(kv.mod_revision))
        {
            Ok(_) => return Ok(Reply::ok(201, success(None))),
            Err(skiff_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("", "pods", name))
}

/// POST `pods/<name>/eviction`: deletes the pod (PodDisruptionBudgets are not checked).
pub(crate) async fn eviction(
    state: &ApiState,
    t: &Target,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let dopts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    delete_object(
        state,
        t.info,
        t.namespace.as_deref(),
        name,
        &dopts,
        &Query::default(),
        opts,
    )
    .await?;
    Ok(Reply::ok(201, success(None)))
}

/// POST `serviceaccounts/<name>/token`: a TokenRequest.
pub(crate) async fn token(
    state: &ApiState,
    t: &Target,
    name: &str,
    body: Value,
) -> ApiResult<Reply> {
    let (sa, _) = load(state, t, name)?;
    let ns = t.namespace.as_deref().unwrap_or("default");
    let audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let expiration = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600)
        .max(600);
    let pod = match body.pointer("/spec/boundObjectRef") {
        Some(r) if r.get("kind") == Some(&json!("Pod")) => Some((
            r.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            r.get("uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )),
        _ => None,
    };
    let subject = crate::tokens::TokenSubject {
        namespace: ns,
        sa_name: name,
        sa_uid: meta_str(&sa, "uid").unwrap_or_default(),
        pod,
    };
    let (token, exp) = crate::tokens::issue(state, &subject, audiences.clone(), expiration)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let exp_ts = chrono::DateTime::from_timestamp(exp, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut out = body.clone();
    out["kind"] = json!("TokenRequest");
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    out["metadata"]["name"] = json!(name);
    out["metadata"]["namespace"] = json!(ns);
    out["metadata"]["creationTimestamp"] = Value::Null;
    if !out.get("spec").is_some_and(Value::is_object) {
        out["spec"] = json!({});
    }
    out["spec"]["audiences"] = json!(if audiences.is_empty() {
        vec![crate::tokens::ISSUER.to_string()]
    } else {
        audiences
    });
    out["spec"]["expirationSeconds"] = json!(expiration);
    out["status"] = json!({"token": token, "expirationTimestamp": exp_ts});
    Ok(Reply::ok(201, out))
}
