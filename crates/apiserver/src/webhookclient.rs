//! The HTTPS call to a webhook (admission webhooks and CRD conversion webhooks): where
//! it is (a `url`, or a `service` resolved as
//! kube-apiserver's default service resolver does, to the Service's cluster IP, with
//! the TLS name `<service>.<namespace>.svc`), TLS with the configuration's `caBundle`
//! (the host's trust store without one), one POST of the review under the webhook's
//! timeout. Errors read as Go's `Post "url": ...` for kube's messages.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_store::Store;

use crate::storage::{decode, key};

/// Where to send the review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host to connect to (an IP or a name).
    pub connect_host: String,
    pub port: u16,
    /// The name the certificate must be valid for.
    pub server_name: String,
    /// Path (and nothing else) of the request.
    pub path: String,
    /// The URL as kube prints it in errors.
    pub url: String,
}

/// The target of a `url` client configuration.
pub(crate) fn url_target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("unsupported URL {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority)?;
    Ok(Target {
        connect_host: host.clone(),
        port,
        server_name: host,
        path: path.to_string(),
        url: url.to_string(),
    })
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid host {authority:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
            None => 443,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        )),
        None => Ok((authority.to_string(), 443)),
    }
}

/// The target of a `service` client configuration whose Service has `cluster_ip`.
pub(crate) fn service_target(
    namespace: &str,
    name: &str,
    path: &str,
    port: u16,
    cluster_ip: &str,
) -> Target {
    let server_name = format!("{name}.{namespace}.svc");
    let path = if path.is_empty() { "/" } else { path };
    Target {
        connect_host: cluster_ip.to_string(),
        port,
        url: format!("https://{server_name}:{port}{path}"),
        server_name,
        path: path.to_string(),
    }
}

/// The roots a webhook's certificate must chain to.
fn roots(ca_bundle: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let pem = match ca_bundle.filter(|b| !b.is_empty()) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("invalid caBundle: {e}"))?,
        None => std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default(),
    };
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.map_err(|e| format!("invalid caBundle: {e}"))?;
        store.add(c).map_err(|e| format!("invalid caBundle: {e}"))?;
    }
    Ok(store)
}

/// POSTs `review` to the target; the parsed answer, or why the call failed (as kube
/// words it after `failed calling webhook "x": `).
pub(crate) async fn call(
    target: &Target,
    ca_bundle: Option<&str>,
    timeout: Duration,
    review: &Value,
) -> Result<Value, String> {
    let secs = timeout.as_secs();
    let url = format!("{}?timeout={secs}s", target.url);
    let fail = |why: String| format!("failed to call webhook: Post {url:?}: {why}");
    let roots = roots(ca_bundle).map_err(fail)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let server_name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
        .map_err(|e| fail(e.to_string()))?;
    let body = serde_json::to_vec(review).map_err(|e| fail(e.to_string()))?;
    let host = target.connect_host.clone();
    let port = target.port;
    let path = format!("{}?timeout={secs}s", target.path);
    let authority = format!("{}:{}", target.server_name, port);
    let exchange = async move {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", go_io_error(&e)))?;
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::post(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Err(fail(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into(),
            ))
        }
        Ok(r) => r.map_err(fail)?,
    };
    if !status.is_success() {
        // kube: the webhook answered with an HTTP error instead of a review.
        return Err(format!(
            "failed to call webhook: the server responded with the status code {} but did not return more information",
            status.as_u16()
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("failed to call webhook: decoding the response: {e}"))
}

/// An IO error as Go prints it (`connection refused`, not `Connection refused (os error 111)`).
fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// Where a webhook `clientConfig` points (admission and CRD conversion webhooks): its
/// `url`, or its `service` at the Service's cluster IP (read from `store`).
pub(crate) fn resolve(store: &dyn Store, cc: &Value) -> Result<Target, String> {
    if let Some(url) = cc.get("url").and_then(Value::as_str) {
        return url_target(url);
    }
    let svc = cc.get("service").unwrap_or(&Value::Null);
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
    let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443) as u16;
    let info = skiff_resources::lookup("", "v1", "services")
        .ok_or_else(|| "services are not served".to_string())?;
    let kv = store
        .get(&key(info, Some(ns), name))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let service = decode(&kv).map_err(|e| e.message)?;
    // kube-apiserver's default resolver: the cluster IP, which the proxy of the
    // server's node translates to a ready endpoint.
    let ip = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ip.is_empty() || ip == "None" {
        return Err(format!("cannot route to service with ClusterIP {ip:?}"));
    }
    let has_port = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .is_some_and(|ps| {
            ps.iter()
                .any(|p| p.get("port").and_then(Value::as_u64) == Some(port as u64))
        });
    if !has_port {
        return Err(format!("unable to find service port {port}"));
    }
    Ok(service_target(ns, name, path, port, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = url_target("https://127.0.0.1:9443/mutate").unwrap();
        assert_eq!(
            (t.connect_host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9443, "/mutate")
        );
        let t = url_target("https://hooks.example.com").unwrap();
        assert_eq!(
            (t.server_name.as_str(), t.port, t.path.as_str()),
            ("hooks.example.com", 443, "/")
        );
        let t = service_target("webhooks", "hook", "/validate", 443, "10.96.0.20");
        assert_eq!(t.server_name, "hook.webhooks.svc");
        assert_eq!(t.connect_host, "10.96.0.20");
        assert_eq!(t.url, "https://hook.webhooks.svc:443/validate");
    }
}
