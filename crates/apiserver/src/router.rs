//! Request routing: open health and version endpoints, authentication, discovery,
//! OpenAPI, then resource paths to the REST handlers and node proxies.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;

use crate::auth::{self, Identity};
use crate::http::{error_response, json_response, json_response_ct, text_response, Body, Query};
use crate::state::ApiState;
use crate::status::ApiError;

/// Largest request body accepted: kube-apiserver's `MaxRequestBodyBytes` (3 MiB).
pub(crate) const MAX_BODY: usize = 3 << 20;

/// A parsed resource path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    /// Reached through the legacy `/watch/` prefix.
    pub watch_path: bool,
}

/// Parses `[watch/][namespaces/<ns>/]<plural>[/<name>[/<sub>[/...]]]`.
pub(crate) fn parse_target(group: &str, version: &str, segs: &[&str]) -> Option<Target> {
    let mut segs = segs;
    let mut watch_path = false;
    if segs.first() == Some(&"watch") {
        watch_path = true;
        segs = &segs[1..];
    }
    let (namespace, segs) = if segs.len() >= 3
        && segs[0] == "namespaces"
        && !matches!(segs[2], "status" | "finalize")
    {
        (Some(segs[1].to_string()), &segs[2..])
    } else {
        (None, segs)
    };
    let plural = *segs.first()?;
    let info = skiff_resources::lookup(group, version, plural)?;
    if namespace.is_some() && !info.namespaced {
        return None;
    }
    let name = segs.get(1).map(|s| s.to_string());
    let sub = segs.get(2).map(|s| s.to_string());
    if let Some(s) = &sub {
        if !info.has_subresource(s) {
            return None;
        }
    }
    Some(Target {
        info,
        namespace,
        name,
        sub,
        watch_path,
    })
}

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

/// Handles one request.
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
    let ident = match conn_ident.or_else(|| bearer(&req).and_then(|t| auth::from_bearer(&state, t)))
    {
        Some(i) => i,
        None => return finish_unread(req, error_response(&ApiError::unauthorized())).await,
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => {
            return resource(state, ident, "", "v1", rest, method, req).await
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() => {
            let (g, v) = (g.to_string(), v.to_string());
            return resource(state, ident, &g, &v, rest, method, req).await;
        }
        _ => {}
    }
    use skiff_resources::discovery as d;
    let resp = match segs.as_slice() {
        ["api"] => match aggregated_wanted(&req) {
            Some(v2) => aggregated_response(v2, true),
            None => json_response(200, &d::core_versions()),
        },
        ["apis"] => match aggregated_wanted(&req) {
            Some(v2) => aggregated_response(v2, false),
            None => json_response(200, &d::api_groups()),
        },
        ["api", "v1"] => found(d::resource_list("", "v1")),
        ["apis", g] => found(d::api_group_document(g)),
        ["apis", g, v] => found(d::resource_list(g, v)),
        ["openapi", "v3"] => json_response(200, &skiff_resources::openapi::v3_root()),
        ["openapi", "v3", "api", v] => found(skiff_resources::openapi::v3_document("", v)),
        ["openapi", "v3", "apis", g, v] => found(skiff_resources::openapi::v3_document(g, v)),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => openapi_v2(&req),
        ["metrics"] => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(crate::http::full(state.watch_metrics.render()))
            .unwrap_or_else(|_| Response::new(crate::http::full(""))),
        _ => error_response(&ApiError::path_not_found()),
    };
    finish_unread(req, resp).await
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

async fn resource(
    state: Arc<ApiState>,
    ident: Identity,
    group: &str,
    version: &str,
    segs: &[&str],
    method: Method,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(target) = parse_target(group, version, segs) else {
        return finish_unread(req, error_response(&ApiError::path_not_found())).await;
    };
    let query = Query::parse(req.uri().query());
    match target.sub.as_deref() {
        Some("log") if target.info.kind == "Pod" => {
            return crate::nodeproxy::logs(&state, &target, &query)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        Some("proxy") if matches!(target.info.kind, "Pod" | "Service") => {
            return crate::nodeproxy::http_proxy(&state, &target, req)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        Some("exec") | Some("attach") | Some("portforward") if target.info.kind == "Pod" => {
            return crate::nodeproxy::stream(&state, &target, req)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    crate::rest::dispatch(state, ident, target, method, query, parts.headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("", "v1", &["namespaces", "default", "pods", "x", "log"]).unwrap();
        assert_eq!(
            (
                t.info.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("default"), Some("x"), Some("log"))
        );
        let t = parse_target("", "v1", &["namespaces", "x", "finalize"]).unwrap();
        assert_eq!(
            (
                t.info.plural,
                t.namespace,
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("namespaces", None, Some("x"), Some("finalize"))
        );
        let t = parse_target("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!(
            (t.info.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse_target("", "v1", &["pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_target("apps", "v1", &["watch", "namespaces", "d", "deployments"]).unwrap();
        assert!(t.watch_path);
        assert!(parse_target("", "v1", &["namespaces", "d", "nodes"]).is_none());
        assert!(parse_target("", "v1", &["nope"]).is_none());
    }
}
