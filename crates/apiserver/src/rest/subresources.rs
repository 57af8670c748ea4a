//! Small subresources: scale, binding and TokenRequest (eviction has its own module).

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::patch::apply_patch;
use super::write::{update_object, UpdateMode, WriteOpts};
use super::Reply;
use crate::admission;
use crate::conversion::to_version;
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{success, ApiError, ApiResult};
use crate::storage::{decode, key, meta_str, now_ts};

fn load(state: &ApiState, t: &RequestInfo, name: &str) -> ApiResult<(Value, i64)> {
    let kv = state
        .store
        .get(&key(t.info, t.namespace.as_deref(), name))?
        .ok_or_else(|| ApiError::not_found(t.info.group, t.info.plural, name))?;
    Ok((
        to_version(state.store.as_ref(), t.info, decode(&kv)?)?,
        kv.mod_revision,
    ))
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

/// `.spec.replicas` → `/spec/replicas` (the simple JSON paths a CRD's scale names).
fn pointer(path: &str) -> String {
    path.split('.')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |acc, s| format!("{acc}/{s}"))
}

/// Where the replicas and selector of a resource are: built-in kinds' fields or a CRD's
/// `subresources.scale` paths.
fn scale_paths(info: &ResourceInfo) -> (String, String, Option<String>) {
    match info.custom.and_then(|c| c.scale.as_ref()) {
        Some(sc) => (
            pointer(&sc.spec_replicas),
            pointer(&sc.status_replicas),
            sc.label_selector.as_deref().map(pointer),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

fn scale_of(info: &ResourceInfo, obj: &Value) -> Value {
    let (spec_path, status_path, selector_path) = scale_paths(info);
    let selector = match (&selector_path, info.custom.is_some()) {
        (Some(p), _) => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        (None, true) => String::new(),
        (None, false) => selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
    };
    let default_replicas = if info.custom.is_some() {
        json!(0)
    } else {
        json!(1)
    };
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
        "spec": {"replicas": obj.pointer(&spec_path).cloned().unwrap_or(default_replicas)},
        "status": {
            "replicas": obj.pointer(&status_path).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_at(obj: &mut Value, ptr: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = ptr.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i + 1 == segs.len() {
            cur[*seg] = v;
            return;
        }
        cur = &mut cur[*seg];
    }
}

/// GET `.../scale`.
pub(crate) fn get_scale(state: &ApiState, t: &RequestInfo, name: &str) -> ApiResult<Value> {
    Ok(scale_of(t.info, &load(state, t, name)?.0))
}

async fn set_replicas(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    obj: Value,
    rev: i64,
    replicas: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let mut obj = obj;
    let (spec_path, _, _) = scale_paths(t.info);
    set_at(&mut obj, &spec_path, replicas);
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
    Ok(Reply::ok(
        200,
        scale_of(t.info, &to_version(state.store.as_ref(), t.info, out)?),
    ))
}

/// PUT `.../scale`.
pub(crate) async fn put_scale(
    state: &ApiState,
    t: &RequestInfo,
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
    t: &RequestInfo,
    name: &str,
    ct: &str,
    body: &Bytes,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    for _ in 0..8 {
        let (obj, rev) = load(state, t, name)?;
        let scale = apply_patch(t.info, ct, &scale_of(t.info, &obj), body)?;
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
    t: &RequestInfo,
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
            .update(&k, &crate::storage::encode(&pod), Some(kv.mod_revision))
        {
            Ok(_) => return Ok(Reply::ok(201, success(None))),
            Err(skiff_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("", "pods", name))
}

/// POST `serviceaccounts/<name>/token`: a TokenRequest, as kube-apiserver's `TokenREST`
/// (`pkg/registry/core/serviceaccount/storage/token.go`): the token lives exactly
/// `spec.expirationSeconds` (10 minutes to 2^32 seconds, default an hour), for
/// `spec.audiences` (default the API server's), bound to `spec.boundObjectRef` (a Pod or a
/// Secret of the namespace, whose uid must match when given).
pub(crate) async fn token(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    use crate::authn::tokens::{self, ObjectRef};
    const GROUP: &str = "authentication.k8s.io";
    const KIND: &str = "TokenRequest";
    let ns = t.namespace.as_deref().unwrap_or("default");
    let invalid = |obj_name: &str, field: &str, value: &str, why: &str| {
        ApiError::invalid(
            GROUP,
            KIND,
            obj_name,
            vec![(
                field.to_string(),
                "FieldValueInvalid".to_string(),
                format!("{field}: Invalid value: {value}: {why}"),
            )],
        )
    };
    // The name and namespace in the body, when given, must be the URL's.
    let body_meta = |f: &str| {
        body.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(n) = body_meta("name").filter(|n| *n != name) {
        return Err(invalid(
            name,
            "metadata.name",
            &json!(n).to_string(),
            "must match the service account name if specified",
        ));
    }
    if let Some(n) = body_meta("namespace").filter(|n| *n != ns) {
        return Err(invalid(
            name,
            "metadata.namespace",
            &json!(n).to_string(),
            "must match the service account namespace if specified",
        ));
    }
    let (sa, _) = load(state, t, name)?;
    // Admission sees the TokenRequest as a create of `serviceaccounts/token`
    // (NodeRestriction: a node asks only for tokens bound to its pods).
    let mut body = body;
    let attrs = admission::Attributes {
        info: t.info,
        requested: t.info,
        operation: admission::Operation::Create,
        namespace: Some(ns),
        name,
        subresource: Some("token"),
        user: opts.user.as_ref(),
    };
    state.admission.admit(&attrs, &mut body, None)?;
    state.admission.validate(&attrs, &body, None)?;
    let sa_uid = meta_str(&sa, "uid").unwrap_or_default().to_string();
    let mut audiences = tokens::spec_audiences(&body);
    if audiences.is_empty() {
        audiences = tokens::API_AUDIENCES
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    let expiration = match body.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => tokens::DEFAULT_EXPIRATION_SECONDS,
        // The typed decode of the body (rest::write::decode_sub) made it an int64.
        Some(v) => v.as_i64().unwrap_or(tokens::DEFAULT_EXPIRATION_SECONDS),
    };
    if expiration < tokens::MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > tokens::MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match body
        .pointer("/spec/boundObjectRef")
        .filter(|r| !r.is_null())
    {
        Some(r) => Some(bound_object(state, ns, name, r)?),
        None => None,
    };
    let now = chrono::Utc::now();
    let subject = tokens::TokenSubject {
        namespace: ns,
        service_account: ObjectRef {
            name: name.to_string(),
            uid: sa_uid.clone(),
        },
        bound,
    };
    let (token, exp) = tokens::issue(
        state.authn.keys(),
        subject,
        audiences.clone(),
        now.timestamp(),
        expiration,
    )
    .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let exp_ts = chrono::DateTime::from_timestamp(exp, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut out = if body.is_object() { body } else { json!({}) };
    out["kind"] = json!(KIND);
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    out["metadata"]["name"] = json!(name);
    out["metadata"]["namespace"] = json!(ns);
    out["metadata"]["uid"] = json!(sa_uid);
    out["metadata"]["creationTimestamp"] = json!(now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    if !out.get("spec").is_some_and(Value::is_object) {
        out["spec"] = json!({});
    }
    out["spec"]["audiences"] = json!(audiences);
    out["spec"]["expirationSeconds"] = json!(expiration);
    out["status"] = json!({"token": token, "expirationTimestamp": exp_ts});
    Ok(Reply::ok(201, out))
}

/// The object a TokenRequest's `boundObjectRef` names, checked as kube-apiserver does.
fn bound_object(
    state: &ApiState,
    ns: &str,
    sa_name: &str,
    r: &Value,
) -> ApiResult<crate::authn::tokens::Bound> {
    use crate::authn::tokens::{get_core, Bound, ObjectRef};
    let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind, name, uid) = (
        field("apiVersion"),
        field("kind"),
        field("name"),
        field("uid"),
    );
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let read = |plural: &str, ns: Option<&str>, name: &str| -> ApiResult<Value> {
        get_core(state.store.as_ref(), plural, ns, name)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("", plural, name))
    };
    let uid_of = |obj: &Value| meta_str(obj, "uid").unwrap_or_default().to_string();
    let (bound, found_uid) = match (group, kind) {
        ("", "Pod") => {
            let pod = read("pods", Some(ns), name)?;
            let pod_sa = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            if pod_sa != sa_name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                    json!(sa_name)
                )));
            }
            // The node the pod runs on goes into the token too (kube 1.30+).
            let node = match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(node) if !node.is_empty() => Some(ObjectRef {
                    name: node.to_string(),
                    uid: get_core(state.store.as_ref(), "nodes", None, node)
                        .map_err(ApiError::internal)?
                        .map(|n| uid_of(&n))
                        .unwrap_or_default(),
                }),
                _ => None,
            };
            let pod_uid = uid_of(&pod);
            let pod_ref = ObjectRef {
                name: name.to_string(),
                uid: pod_uid.clone(),
            };
            (Bound::Pod { pod: pod_ref, node }, pod_uid)
        }
        ("", "Secret") => {
            let secret = read("secrets", Some(ns), name)?;
            let secret_uid = uid_of(&secret);
            let secret_ref = ObjectRef {
                name: name.to_string(),
                uid: secret_uid.clone(),
            };
            (Bound::Secret(secret_ref), secret_uid)
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )))
        }
    };
    if !uid.is_empty() && uid != found_uid {
        return Err(ApiError::conflict_msg(
            "",
            kind,
            name,
            &format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
        ));
    }
    Ok(bound)
}
