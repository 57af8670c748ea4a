//! The request chain: open health and version endpoints, then authentication and
//! impersonation, request info, authorization, and the handlers (REST, watch, node
//! proxies, discovery, OpenAPI).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::authn::{impersonation, Identity};
use crate::authz::Attributes;
use crate::http::{error_response, json_response, json_response_ct, text_response, Body, Query};
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::ApiError;

/// Largest request body accepted: kube-apiserver's `MaxRequestBodyBytes` (3 MiB).
pub(crate) const MAX_BODY: usize = 3 << 20;

fn version_info() -> Value {
    json!({
        "major": skiff_api::defaults::KUBERNETES_MAJOR,
        "minor": skiff_api::defaults::KUBERNETES_MINOR,
        "emulationMajor": skiff_api::defaults::KUBERNETES_MAJOR,
        "emulationMinor": skiff_api::defaults::KUBERNETES_MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": skiff_api::defaults::KUBERNETES_VERSION,
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

/// `Some(true)` for aggregated discovery v2, `Some(false)` for v2beta1, `None` for legacy.
fn aggregated_wanted(req: &Request<Incoming>) -> Option<bool> {
    let accept = req.headers().get("accept")?.to_str().ok()?;
    for alt in accept.split(',') {
        if !alt.contains("as=APIGroupDiscoveryList") || !alt.contains("g=apidiscovery.k8s.io") {
            if alt.trim().starts_with("application/json") {
                return None;
            }
            continue;
        }
        if !alt.trim().starts_with("application/json") {
            continue;
        }
        if alt.contains("v=v2beta1") {
            return Some(false);
        }
        if alt.contains("v=v2") {
            return Some(true);
        }
    }
    None
}

fn aggregated_response(v2: bool, core: bool) -> Response<Body> {
    let ct = if v2 {
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    } else {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    };
    let mut r = json_response_ct(200, &skiff_resources::discovery::aggregated(core, v2), ct);
    r.headers_mut()
        .insert("vary", http::HeaderValue::from_static("Accept"));
    r
}

fn found(v: Option<Value>) -> Response<Body> {
    match v {
        Some(v) => json_response(200, &v),
        None => error_response(&ApiError::path_not_found()),
    }
}

/// `/openapi/v2`: kubectl up to 1.28 insists on fetching it (as gnostic protobuf) before
/// `apply`. An empty document is served to protobuf requests: kubectl then skips
/// client-side schema validation and computes patches from its built-in types, as it does
/// for kinds a server does not describe. Everyone else gets 404 (skiff serves OpenAPI v3).
fn openapi_v2(req: &Request<Incoming>) -> Response<Body> {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        return Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(crate::http::full(bytes::Bytes::new()))
            .unwrap_or_else(|_| Response::new(crate::http::full("")));
    }
    error_response(&ApiError::path_not_found())
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    h.strip_prefix("Bearer ").map(str::trim)
}

/// Handles one request, through the layers kube-apiserver's `DefaultBuildHandlerChain`
/// puts in front of its handlers: open endpoints (health, version) → authentication →
/// request info → authorization → the handler (REST, watch, node proxy, discovery).
/// Admission runs inside the REST write path, after decoding.
pub(crate) async fn handle(
    state: Arc<ApiState>,
    conn_ident: Option<Identity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    tracing::debug!(%method, uri = %req.uri(), "request");
    // Open endpoints: health and version.
    for open in ["/healthz", "/livez", "/readyz"] {
        if path == open || path.starts_with(&format!("{open}/")) {
            return text_response(200, "ok");
        }
    }
    if path == "/version" || path == "/version/" {
        return json_response(200, &version_info());
    }
    let ident = match conn_ident.or_else(|| bearer(&req).and_then(|t| state.authn.bearer(t))) {
        Some(i) => i,
        None => return finish_unread(req, error_response(&ApiError::unauthorized())).await,
    };
    let mut req = req;
    // The authorizers are asked from here: authn may not import authz (authz imports it).
    let may_impersonate =
        |who: &Identity, w: &_| state.authz.check(&Attributes::impersonate(who, w));
    let ident = match impersonation::impersonate(ident, req.headers_mut(), may_impersonate) {
        Ok(i) => i,
        Err(refusal) => {
            let uri = req
                .uri()
                .path_and_query()
                .map_or_else(|| path.clone(), |p| p.to_string());
            return finish_unread(req, refusal.response(&uri)).await;
        }
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource_path = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => Some(("", "v1", rest)),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => Some((*g, *v, rest)),
        _ => None,
    };
    if let Some((group, version, rest)) = resource_path {
        let query = Query::parse(req.uri().query());
        let Some(ri) = RequestInfo::parse(&method, group, version, rest, query.flag("watch"))
        else {
            return finish_unread(req, error_response(&ApiError::path_not_found())).await;
        };
        if let Err(e) = state.authz.check(&Attributes::resource(&ident, &ri)) {
            return finish_unread(req, error_response(&e)).await;
        }
        // Latency until the response is ready, as kube's metric; watches and streamed
        // subresources (logs, exec...) last as long as the client wants, so they are
        // not timed.
        let key =
            (ri.verb != "watch" && !ri.watch_path && !streamed(ri.sub.as_deref())).then(|| {
                crate::metrics::RequestKey {
                    verb: crate::metrics::verb_label(ri.verb, is_apply(&req)),
                    group: ri.info.group,
                    version: ri.info.version,
                    resource: ri.info.plural,
                    subresource: ri.sub.clone().unwrap_or_default(),
                    scope: match (&ri.namespace, &ri.name) {
                        (_, Some(_)) => "resource",
                        (Some(_), None) => "namespace",
                        (None, None) => "cluster",
                    },
                }
            });
        let started = std::time::Instant::now();
        let resp = resource(state.clone(), ident, ri, query, req).await;
        if let Some(key) = key {
            state.request_metrics.observe(key, started.elapsed());
        }
        return resp;
    }
    let verb = match method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    if let Err(e) = state.authz.check(&Attributes::path(&ident, verb, &path)) {
        return finish_unread(req, error_response(&e)).await;
    }
    if path == crate::nodecreds::PATH {
        if method != Method::POST {
            return finish_unread(req, error_response(&ApiError::method_not_allowed())).await;
        }
        let (parts, body) = req.into_parts();
        return match read_body(&parts, body).await {
            Ok(body) => match crate::nodecreds::issue(&state, &body) {
                Ok(v) => json_response(200, &v),
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(&e),
        };
    }
    let resp = non_resource(&state, &segs, &req);
    finish_unread(req, resp).await
}

/// Subresources whose responses stream for as long as the client keeps them open.
fn streamed(sub: Option<&str>) -> bool {
    matches!(
        sub,
        Some("log" | "exec" | "attach" | "portforward" | "proxy")
    )
}

/// A server-side apply patch (kube labels its latency `APPLY`, not `PATCH`).
fn is_apply<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"))
}

/// Discovery, OpenAPI and metrics.
fn non_resource(state: &ApiState, segs: &[&str], req: &Request<Incoming>) -> Response<Body> {
    use skiff_resources::discovery as d;
    match segs {
        ["api"] => match aggregated_wanted(req) {
            Some(v2) => aggregated_response(v2, true),
            None => json_response(200, &d::core_versions()),
        },
        ["apis"] => match aggregated_wanted(req) {
            Some(v2) => aggregated_response(v2, false),
            None => json_response(200, &d::api_groups()),
        },
        ["api", "v1"] => found(d::resource_list("", "v1")),
        ["apis", g] => found(d::api_group_document(g)),
        ["apis", g, v] => found(d::resource_list(g, v)),
        ["openapi", "v3"] => json_response(200, &skiff_resources::openapi::v3_root()),
        ["openapi", "v3", "api", v] => found(skiff_resources::openapi::v3_document("", v)),
        ["openapi", "v3", "apis", g, v] => found(skiff_resources::openapi::v3_document(g, v)),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => openapi_v2(req),
        ["metrics"] => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(crate::http::full(
                state.watch_metrics.render()
                    + &state.request_metrics.render()
                    + &state.extra_metrics.render(),
            ))
            .unwrap_or_else(|_| Response::new(crate::http::full(""))),
        _ => error_response(&ApiError::path_not_found()),
    }
}

/// Most bytes of an unwanted request body read (and thrown away) before answering.
const DRAIN_MAX: u64 = 16 << 20;
/// Longest time spent reading an unwanted request body before answering.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers `resp` to a request whose body the handler does not want, once that body has
/// been read to its end and thrown away (up to [`DRAIN_MAX`] bytes and [`DRAIN_TIME`]).
///
/// Answering while the client is still sending means ending the exchange early: over
/// HTTP/2 the stream is then reset right after the answer (RST_STREAM NO_ERROR, RFC 9113
/// §8.1), and clients still uploading fail the whole request on it (curl/nghttp2: "Stream
/// error in the HTTP/2 framing layer", no status); over HTTP/1.1 the connection is closed
/// with the upload unread (hyper's client: "error writing a body to connection"). Reading
/// the rest first makes the answer an ordinary one on both. A client that announced
/// `Expect: 100-continue` has sent nothing yet and sends nothing after a final answer, so
/// its body is not read. Past the bounds the answer goes out as it is, with the reset or
/// close that implies, as kube-apiserver's Go server answers a request it stops reading.
async fn finish_unread<B>(req: Request<B>, resp: Response<Body>) -> Response<Body>
where
    B: hyper::body::Body + Unpin,
{
    let (parts, body) = req.into_parts();
    let expects = parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects || declared_length(&parts.headers).is_some_and(|n| n > DRAIN_MAX) {
        return resp;
    }
    drain(body).await;
    resp
}

/// Reads `body` to its end (at most [`DRAIN_MAX`] bytes, [`DRAIN_TIME`]), discarding it.
async fn drain<B>(mut body: B)
where
    B: hyper::body::Body + Unpin,
{
    if body.is_end_stream() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut n = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                n += bytes::Buf::remaining(d) as u64;
                if n > DRAIN_MAX {
                    return;
                }
            }
        }
    })
    .await;
}

/// The request's `Content-Length`, if it has a valid one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The request body, at most [`MAX_BODY`] bytes; 413 over that, as kube-apiserver's
/// `limitedReadBody` answers (after reading the rest, see [`finish_unread`]).
async fn read_body(parts: &http::request::Parts, mut body: Incoming) -> Result<Bytes, ApiError> {
    let too_large = ApiError::entity_too_large(MAX_BODY);
    if declared_length(&parts.headers).is_some_and(|n| n > MAX_BODY as u64) {
        let expects = parts
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects && declared_length(&parts.headers).is_some_and(|n| n <= DRAIN_MAX) {
            drain(body).await;
        }
        return Err(too_large);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > MAX_BODY {
            drain(body).await;
            return Err(too_large);
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// A resource request, authorized: streamed subresources go to the node proxies, watches
/// to the watch handler, the rest (after reading the body) to the REST handlers.
async fn resource(
    state: Arc<ApiState>,
    ident: Identity,
    ri: RequestInfo,
    query: Query,
    req: Request<Incoming>,
) -> Response<Body> {
    match ri.sub.as_deref() {
        Some("log") if ri.info.kind == "Pod" => {
            return crate::nodeproxy::logs(&state, &ri, &query)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        Some("proxy") if matches!(ri.info.kind, "Pod" | "Service") => {
            return crate::nodeproxy::http_proxy(&state, &ri, req)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        Some("exec") | Some("attach") | Some("portforward") if ri.info.kind == "Pod" => {
            return crate::nodeproxy::stream(&state, &ri, req)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        _ => {}
    }
    if ri.is_watch() && req.method() == Method::GET {
        let headers = req.headers().clone();
        let resp = crate::watch::serve(state, ri, query, headers)
            .await
            .unwrap_or_else(|e| error_response(&e));
        return finish_unread(req, resp).await;
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    crate::rest::dispatch(state, ident, ri, parts.method, query, parts.headers, body).await
}
