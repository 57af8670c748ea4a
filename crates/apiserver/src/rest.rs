//! The REST handlers: GET, LIST, POST, PUT, PATCH, DELETE and deletecollection of every
//! registered resource, plus the small subresources (status, scale, binding, eviction,
//! token, finalize), the computed `componentstatuses` and `metrics.k8s.io`. Objects are stored as JSON in their storage version under
//! `/registry/<group|core>/<plural>/[<namespace>/]<name>`; the store's revision is the
//! `resourceVersion`.

pub(crate) mod body;
mod certificates;
mod componentstatus;
mod eviction;
mod metrics;
mod objects;
mod patch;
mod reviews;
mod rvmatch;
mod subresources;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use serde_json::{json, Value};

use crate::authn::Identity;
use crate::conversion::{list_objects, to_version};
use crate::http::{error_response, json_response, representation, Body, Query};
use crate::request::RequestInfo;
use crate::selectors::Filter;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

pub(crate) use patch::apply_patch;
pub(crate) use write::{create_object, delete_object, update_object, UpdateMode, WriteOpts};

/// Answers one resource request (everything but log/exec/attach/portforward).
pub(crate) async fn dispatch(
    state: Arc<ApiState>,
    ident: Identity,
    t: RequestInfo,
    method: Method,
    q: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if t.info.group.is_empty() && t.info.kind == "ComponentStatus" && t.sub.is_none() {
        // Computed, not stored; the whole API is deprecated, as kube-apiserver warns.
        let result = if method == Method::GET {
            componentstatus::serve(&state, &t, &q, &headers)
        } else {
            Err(ApiError::method_not_allowed())
        };
        return match result {
            Ok(v) => {
                let mut r = json_response(200, &v);
                if let Ok(w) = http::HeaderValue::from_str(&format!(
                    "299 - \"{}\"",
                    componentstatus::DEPRECATED
                )) {
                    r.headers_mut().append("warning", w);
                }
                r
            }
            Err(e) => error_response(&e),
        };
    }
    if t.info.group == skiff_api::metrics::GROUP && t.sub.is_none() {
        // Computed from the agents' statistics, not stored.
        let result = if method == Method::GET {
            metrics::serve(&state, &t, &q, &headers).await
        } else {
            Err(ApiError::method_not_allowed())
        };
        return match result {
            Ok(v) => json_response(200, &v),
            Err(e) => error_response(&e),
        };
    }
    if method == Method::GET && t.name.is_none() && t.sub.is_none() {
        // LIST is encoded straight from the stored bytes (objects::serve_list).
        if let Err(e) = verb_allowed(&t) {
            return error_response(&e);
        }
        match objects::serve_list(&state, &t, &q, &headers).await {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(e) => return error_response(&e),
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Create, update and delete bodies are parsed here once (PATCH parses its own).
    let input = if method == Method::POST
        || method == Method::PUT
        || (method == Method::DELETE && !body.is_empty())
    {
        Some(parse_input(ct, body.clone()).await)
    } else {
        None
    };
    let result = match verb_allowed(&t) {
        Ok(()) => {
            let mut input = Input(input);
            route(&state, &ident, &t, &method, &q, &headers, &body, &mut input).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(Reply {
            code,
            body,
            warnings,
        }) => {
            let body = respond_as(&t, &method, &headers, code, body);
            let mut r = json_response(code, &body);
            for w in warnings {
                if let Ok(v) =
                    http::HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\"")))
                {
                    r.headers_mut().append("warning", v);
                }
            }
            r
        }
        Err(e) => error_response(&e),
    }
}

/// What kube-apiserver's handlers do to a write's result before writing it: a `Status`
/// that a create returns carries the answer's code (`createHandler`: eviction and
/// binding answer 201 with `"code": 201`), and the object is given in the representation
/// `Accept` asks for (`transformResponseObject`: `as=PartialObjectMetadata` of a PATCH,
/// PUT or POST, as of a GET).
fn respond_as(
    t: &RequestInfo,
    method: &Method,
    headers: &HeaderMap,
    code: u16,
    mut body: Value,
) -> Value {
    if body["kind"] == "Status" {
        if *method == Method::POST && body.get("code").is_none() {
            body["code"] = json!(code);
        }
        return body;
    }
    if *method == Method::GET || t.sub.as_deref().is_some_and(|s| s == "scale") {
        // GET answers in its representation already; Scale is its own kind.
        return body;
    }
    if t.name.is_some()
        && body.get("metadata").is_some()
        && representation(headers) == crate::http::Representation::PartialMetadata
    {
        return crate::http::partial_metadata(&body);
    }
    body
}

/// A successful answer.
pub(crate) struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Self {
        Reply {
            code,
            body,
            warnings: Vec::new(),
        }
    }
}

/// Parses a request body by its `Content-Type` (JSON when there is none): protobuf,
/// JSON or YAML. Large bodies are parsed on a blocking thread so that a slow body never
/// holds an async worker.
pub(crate) async fn parse_input(content_type: &str, body: Bytes) -> ApiResult<Value> {
    let media = body::media(content_type)?;
    let small = body.len() < body::BLOCKING_PARSE_BYTES;
    let parse = move || match media {
        body::Media::Protobuf => crate::proto::decode(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as protobuf: {e}"
            ))
        }),
        m => body::parse(m, &body),
    };
    if matches!(media, body::Media::Protobuf) || small {
        return parse();
    }
    match tokio::task::spawn_blocking(parse).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("parsing the request body: {e}"))),
    }
}

/// The parsed body of a create, update or delete, taken once by the handler.
struct Input(Option<ApiResult<Value>>);

impl Input {
    fn take(&mut self) -> ApiResult<Value> {
        self.0
            .take()
            .unwrap_or_else(|| Err(ApiError::bad_request("the request has no body")))
    }

    /// A DELETE's options: `{}` without a body.
    fn take_or_empty(&mut self) -> ApiResult<Value> {
        match self.0.take() {
            Some(r) => r,
            None => Ok(json!({})),
        }
    }
}

/// Whether the resource serves the verb (kube-apiserver answers 405 otherwise).
fn verb_allowed(t: &RequestInfo) -> ApiResult<()> {
    if t.sub.is_some() {
        return Ok(());
    }
    if !t.verb.is_empty() && t.info.has_verb(t.verb) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    state: &Arc<ApiState>,
    ident: &Identity,
    t: &RequestInfo,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    input: &mut Input,
) -> ApiResult<Reply> {
    let mut opts = WriteOpts::from_request(q, headers, t.sub.as_deref())?;
    opts.user = Some(ident.clone());
    let name = t.name.as_deref();
    match (method.clone(), name, t.sub.as_deref()) {
        (Method::GET, None, None) => {
            let at = rvmatch::snapshot(state, t, q).await?;
            objects::list(state, t, q, headers, at).map(|v| Reply::ok(200, v))
        }
        (Method::GET, Some(n), None | Some("status") | Some("ephemeralcontainers")) => {
            objects::get(state, t, n, headers).map(|v| Reply::ok(200, v))
        }
        (Method::GET, Some(n), Some("scale")) => {
            subresources::get_scale(state, t, n).map(|v| Reply::ok(200, v))
        }
        (Method::POST, None, None) => {
            let obj = input.take()?;
            if !obj.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request must be an object",
                ));
            }
            body::check_kind(t.info, &obj)?;
            // Reviews and bindings are answered here, not stored: decode them now.
            let answered_here = matches!(
                t.info.group,
                "authentication.k8s.io" | "authorization.k8s.io"
            );
            let obj = if t.info.kind == "Binding" || answered_here {
                write::decode_sub(t.info.group, t.info.version, t.info.kind, obj)?
            } else {
                obj
            };
            if let Some(r) =
                reviews::answer(state, ident, t.info.kind, t.namespace.as_deref(), &obj)
            {
                return r;
            }
            if t.info.kind == "Binding" {
                // POST namespaces/<ns>/bindings: the pod is named by the Binding.
                let pod_info = skiff_resources::lookup("", "v1", "pods")
                    .ok_or_else(|| ApiError::internal("pods not registered"))?;
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let pt = RequestInfo {
                    info: pod_info,
                    name: Some(name.clone()),
                    sub: Some("binding".into()),
                    ..t.clone()
                };
                return subresources::binding(state, &pt, &name, obj, &opts).await;
            }
            let (out, warnings) =
                create_object(state, t.info, t.namespace.as_deref(), obj, &opts).await?;
            Ok(Reply {
                code: 201,
                body: to_version(state.store.as_ref(), t.info, out)?,
                warnings,
            })
        }
        (Method::POST, Some(n), Some("binding")) => {
            let b = write::decode_sub("", "v1", "Binding", input.take()?)?;
            subresources::binding(state, t, n, b, &opts).await
        }
        (Method::POST, Some(n), Some("eviction")) => {
            let e = write::decode_sub("policy", "v1", "Eviction", input.take()?)?;
            eviction::evict(state, t, n, e, &opts).await
        }
        (Method::POST, Some(n), Some("token")) => {
            let tr =
                write::decode_sub("authentication.k8s.io", "v1", "TokenRequest", input.take()?)?;
            subresources::token(state, t, n, tr, &opts).await
        }
        (
            Method::PUT,
            Some(n),
            sub @ (None
            | Some("status")
            | Some("finalize")
            | Some("ephemeralcontainers")
            | Some("approval")),
        ) => {
            let mode = UpdateMode::from_sub(sub);
            let obj = input.take()?;
            if obj.is_object() {
                body::check_kind(t.info, &obj)?;
            }
            let (mut out, warnings) = write::put(state, t, n, obj, mode, &opts).await?;
            if mode == UpdateMode::Approval {
                out = certificates::sign_if_approved(state, t.info, n, out).await?;
            }
            Ok(Reply {
                code: 200,
                body: to_version(state.store.as_ref(), t.info, out)?,
                warnings,
            })
        }
        (Method::PUT, Some(n), Some("scale")) => {
            let s = write::decode_sub("autoscaling", "v1", "Scale", input.take()?)?;
            subresources::put_scale(state, t, n, s, &opts).await
        }
        (Method::PATCH, Some(n), sub @ (None | Some("status") | Some("ephemeralcontainers"))) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            patch::patch(state, t, n, ct, body, UpdateMode::from_sub(sub), &opts, q).await
        }
        (Method::PATCH, Some(n), Some("scale")) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            subresources::patch_scale(state, t, n, ct, body, &opts).await
        }
        (Method::DELETE, Some(n), None) => {
            let dopts = input.take_or_empty()?;
            let (code, out) =
                delete_object(state, t.info, t.namespace.as_deref(), n, &dopts, q, &opts).await?;
            Ok(Reply::ok(code, out))
        }
        (Method::DELETE, None, None) => {
            let dopts = input.take_or_empty()?;
            delete_collection(state, t, q, &dopts, &opts).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn delete_collection(
    state: &Arc<ApiState>,
    t: &RequestInfo,
    q: &Query,
    dopts: &Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    let filter = Filter::from_query(q, t.info)?;
    let (items, rev) = list_objects(state.store.as_ref(), t, &filter)?;
    let mut deleted = Vec::new();
    for (_, obj) in items {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        match delete_object(state, t.info, ns.as_deref(), &name, dopts, q, opts).await {
            Ok((_, o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(
        200,
        json!({
            "kind": format!("{}List", t.info.kind),
            "apiVersion": t.info.api_version(),
            "metadata": {"resourceVersion": rev.to_string()},
            "items": deleted,
        }),
    ))
}
