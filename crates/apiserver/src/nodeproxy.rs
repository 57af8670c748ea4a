//! Subresources served by the node agent: `pods/log` (streamed through) and
//! `pods/exec|attach|portforward` (the upgrade request forwarded to the agent's
//! `:10250`, the 101 answer relayed, then bytes spliced both ways), as kube-apiserver's
//! UpgradeAwareHandler does. The splice is protocol-blind, so every upgrade kubectl and
//! kube-rs use passes: WebSocket `v5.channel.k8s.io`..`channel.k8s.io` and
//! `SPDY/3.1+portforward.k8s.io` (SPDY frames in WebSocket messages, unwrapped by the
//! agent rather than here), and `Upgrade: SPDY/3.1` with its `X-Stream-Protocol-Version`
//! offers (kubectl 1.27-1.29, and newer ones falling back). It also fetches an agent's
//! `/stats/summary` for `metrics.k8s.io` (`stats_summary`).
//!
//! The agent's certificate is not verified (as kube-apiserver's default
//! `--kubelet-certificate-authority` unset); the server authenticates with the join token.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_store::Store;

use crate::http::{Body, Query};
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key};

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where a pod's container runs: (node address, kubelet port, container).
async fn locate(
    state: &ApiState,
    t: &RequestInfo,
    container: Option<&str>,
    needs_container: bool,
) -> ApiResult<(String, u16, String)> {
    let name = t.name.as_deref().unwrap_or("");
    let pod_info = t.info;
    let kv = state
        .store
        .get(&key(pod_info, t.namespace.as_deref(), name))?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let pod = decode(&kv)?;
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let mut all = containers.clone();
    all.extend(names("initContainers"));
    all.extend(names("ephemeralContainers"));
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => {
            let annotated = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|c| all.iter().any(|x| x == c))
                .map(str::to_string);
            match annotated.or_else(|| containers.first().cloned()) {
                Some(c) => c,
                None if !needs_container => String::new(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}"
                    )))
                }
            }
        }
    };
    if needs_container && !all.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let (addr, port) = node_endpoint(state, &node)?;
    Ok((addr, port, container))
}

/// The kubelet endpoint of a node: its InternalIP and `daemonEndpoints` port.
fn node_endpoint(state: &ApiState, node: &str) -> ApiResult<(String, u16)> {
    let node_info = skiff_resources::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes not registered"))?;
    let nkv = state
        .store
        .get(&key(node_info, None, node))?
        .ok_or_else(|| ApiError::not_found("", "nodes", node))?;
    let nobj = decode(&nkv)?;
    let addr = nobj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                .and_then(|x| x.get("address").and_then(Value::as_str))
        })
        .ok_or_else(|| ApiError::internal(format!("node {node} has no InternalIP address")))?
        .to_string();
    let port = nobj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .unwrap_or(skiff_api::defaults::KUBELET_PORT as u64) as u16;
    Ok((addr, port))
}

/// GET the agent's `/stats/summary` of node `node` (for `metrics.k8s.io`).
pub(crate) async fn stats_summary(state: &ApiState, node: &str) -> ApiResult<Value> {
    let (addr, port) = node_endpoint(state, node)?;
    let mut sender = connect(&addr, port).await?;
    let req = Request::get("/stats/summary")
        .header("host", format!("{addr}:{port}"))
        .header("authorization", format!("Bearer {}", state.pki.join_token))
        .body(empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let failed = |e: String| {
        ApiError::new(
            502,
            "InternalError",
            format!("unable to fetch metrics from node {node}: {e}"),
        )
    };
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(failed(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| failed(e.to_string()))
    })
    .await
    .map_err(|_| failed("timed out".into()))??;
    Ok(resp)
}

type Sender = hyper::client::conn::http1::SendRequest<
    http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>,
>;

/// Opens an HTTP/1.1 connection over TLS to the agent.
async fn connect(addr: &str, port: u16) -> ApiResult<Sender> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::internal(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let unavailable =
        |e: String| ApiError::new(502, "InternalError", format!("error dialing backend: {e}"));
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((addr, port)),
    )
    .await
    .map_err(|_| unavailable(format!("dial tcp {addr}:{port}: i/o timeout")))?
    .map_err(|e| unavailable(format!("dial tcp {addr}:{port}: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(addr.to_string())
        .map_err(|e| unavailable(e.to_string()))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

fn empty() -> http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error> {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// GET `pods/<name>/log`.
pub(crate) async fn logs(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let (addr, port, container) = locate(state, t, q.get("container"), true).await?;
    let mut params = Vec::new();
    for k in [
        "follow",
        "previous",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "timestamps",
        "limitBytes",
    ] {
        if let Some(v) = q.get(k) {
            params.push(format!(
                "{k}={}",
                v.replace(' ', "%20")
                    .replace(':', "%3A")
                    .replace('+', "%2B")
            ));
        }
    }
    let path = format!(
        "/containerLogs/{}/{}/{}{}",
        t.namespace.as_deref().unwrap_or("default"),
        t.name.as_deref().unwrap_or(""),
        container,
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    );
    let mut sender = connect(&addr, port).await?;
    let req = Request::get(path)
        .header("host", format!("{addr}:{port}"))
        .header("authorization", format!("Bearer {}", state.pki.join_token))
        .body(empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| {
        ApiError::new(
            502,
            "InternalError",
            format!("error reading from the node: {e}"),
        )
    })?;
    let (parts, body) = resp.into_parts();
    let body = body.map_err(std::io::Error::other).boxed_unsync();
    let mut out = Response::builder().status(parts.status);
    out = out.header(
        "content-type",
        parts
            .headers
            .get("content-type")
            .cloned()
            .unwrap_or(http::HeaderValue::from_static("text/plain")),
    );
    out.body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// exec, attach and portforward: forwards the upgrade and splices the streams.
pub(crate) async fn stream(
    state: &ApiState,
    t: &RequestInfo,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(req.uri().query());
    let sub = t.sub.as_deref().unwrap_or("");
    let is_pf = sub == "portforward";
    let (addr, port, container) = locate(state, t, q.get("container"), !is_pf).await?;
    let ns = t.namespace.as_deref().unwrap_or("default");
    let pod = t.name.as_deref().unwrap_or("");
    let raw_query = req
        .uri()
        .query()
        .map(|s| format!("?{s}"))
        .unwrap_or_default();
    let path = match sub {
        "exec" => format!("/exec/{ns}/{pod}/{container}{raw_query}"),
        "attach" => format!("/attach/{ns}/{pod}/{container}{raw_query}"),
        _ => format!("/portForward/{ns}/{pod}{raw_query}"),
    };
    let mut sender = connect(&addr, port).await?;
    let mut b = Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        let n = k.as_str();
        if n == "authorization" || n == "host" || n == "content-length" {
            continue;
        }
        b = b.header(k, v);
    }
    let upstream_req = b
        .header("host", format!("{addr}:{port}"))
        .header("authorization", format!("Bearer {}", state.pki.join_token))
        .body(empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = sender.send_request(upstream_req).await.map_err(|e| {
        ApiError::new(
            502,
            "InternalError",
            format!("error talking to the node: {e}"),
        )
    })?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let body = body.map_err(std::io::Error::other).boxed_unsync();
        return Ok(Response::from_parts(parts, body));
    }
    let mut out = Response::builder().status(101);
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let downstream = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let (up, down) = match tokio::join!(upstream, downstream) {
            (Ok(u), Ok(d)) => (u, d),
            (u, d) => {
                tracing::debug!(
                    "upgrade failed: upstream {:?}, downstream {:?}",
                    u.err(),
                    d.err()
                );
                return;
            }
        };
        let mut up = TokioIo::new(up);
        let mut down = TokioIo::new(down);
        let _ = tokio::io::copy_bidirectional(&mut up, &mut down).await;
    });
    out.body(crate::http::full(bytes::Bytes::new()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `services/<name>[:<port>]/proxy/<path>` and `pods/<name>[:<port>]/proxy/<path>`:
/// plain HTTP to a ready endpoint of the Service (or the pod's IP), streamed back.
pub(crate) async fn http_proxy(
    state: &ApiState,
    t: &RequestInfo,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let raw = t.name.as_deref().unwrap_or("");
    // `[scheme:]name[:port]`
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, port_ref) = match parts.as_slice() {
        [n] => (*n, ""),
        [n, p] => (*n, *p),
        [_, n, p] => (*n, *p),
        _ => return Err(ApiError::bad_request(format!("invalid proxy target {raw}"))),
    };
    let ns = t.namespace.as_deref().unwrap_or("default");
    let (ip, port) = if t.info.kind == "Pod" {
        let kv = state
            .store
            .get(&key(t.info, Some(ns), name))?
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        let pod = decode(&kv)?;
        let ip = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::new(503, "ServiceUnavailable", format!("pod {name} has no IP"))
            })?
            .to_string();
        let port = port_ref.parse::<u16>().unwrap_or(80);
        (ip, port)
    } else {
        service_endpoint(state, ns, name, port_ref)?
    };
    let path = req.uri().path().to_string();
    let rest = path
        .find("/proxy")
        .map(|i| &path[i + "/proxy".len()..])
        .unwrap_or("");
    let rest = if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let unavailable = |e: String| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
        )
    };
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((ip.as_str(), port)),
    )
    .await
    .map_err(|_| unavailable(format!("dial tcp {ip}:{port}: i/o timeout")))?
    .map_err(|e| unavailable(format!("dial tcp {ip}:{port}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (parts, body) = req.into_parts();
    let mut b = Request::builder()
        .method(parts.method)
        .uri(format!("{rest}{query}"));
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "authorization" | "host" | "connection" | "upgrade"
        ) {
            b = b.header(k, v);
        }
    }
    let upstream = b
        .header("host", format!("{ip}:{port}"))
        .body(body.map_err(std::io::Error::other).boxed_unsync())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender
        .send_request(upstream)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        body.map_err(std::io::Error::other).boxed_unsync(),
    ))
}

/// A ready endpoint (IP, target port) of a Service port named or numbered `port_ref`.
fn service_endpoint(
    state: &ApiState,
    ns: &str,
    name: &str,
    port_ref: &str,
) -> ApiResult<(String, u16)> {
    let svc_info = skiff_resources::lookup("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services not registered"))?;
    let kv = state
        .store
        .get(&key(svc_info, Some(ns), name))?
        .ok_or_else(|| ApiError::not_found("", "services", name))?;
    let svc = decode(&kv)?;
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sp = ports
        .iter()
        .find(|p| {
            port_ref.is_empty()
                || p.get("name").and_then(Value::as_str) == Some(port_ref)
                || p.get("port")
                    .and_then(Value::as_u64)
                    .map(|n| n.to_string())
                    .as_deref()
                    == Some(port_ref)
        })
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("no service port {port_ref:?} found for service \"{name}\""),
            )
        })?;
    let port_name = sp
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ep_info = skiff_resources::lookup("", "v1", "endpoints")
        .ok_or_else(|| ApiError::internal("endpoints not registered"))?;
    let unavailable = || {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service \"{name}\""),
        )
    };
    let ep = state
        .store
        .get(&key(ep_info, Some(ns), name))?
        .ok_or_else(unavailable)?;
    let ep = decode(&ep)?;
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let port = subset
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            })
            .and_then(|p| p.get("port").and_then(Value::as_u64));
        let ip = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.get("ip").and_then(Value::as_str));
        if let (Some(ip), Some(port)) = (ip, port) {
            return Ok((ip.to_string(), port as u16));
        }
    }
    Err(unavailable())
}
