//! The webhook server of `webhook_pod.rs`, run in a pod from an image the test makes of
//! its own binary: HTTPS on port 8443 with the certificate and key of `/tls/tls.crt` and
//! `/tls/tls.key` (a Secret volume), answering
//!
//! - `/mutate`: an AdmissionReview v1, with a JSONPatch labelling the object
//!   `mutated=yes` and a warning;
//! - `/validate`: an AdmissionReview v1, denying an object with a `data.forbidden` key;
//! - `/convert`: a ConversionReview (v1 or v1beta1), moving `spec.color` (`v1`) to
//!   `spec.paint.color` (`v2`) and back.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// The answer to an AdmissionReview at `/mutate` or `/validate`.
fn admit(path: &str, review: &Value) -> Value {
    let req = &review["request"];
    let obj = &req["object"];
    let mut response = json!({"uid": req["uid"], "allowed": true});
    if path == "/mutate" {
        let patch = if obj.pointer("/metadata/labels").is_some() {
            json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
        } else {
            json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
        };
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        response["warnings"] = json!(["mutated by the webhook pod"]);
    } else if obj.pointer("/data/forbidden").is_some() {
        response["allowed"] = json!(false);
        response["status"] = json!({"code": 403, "reason": "Forbidden",
                                    "message": "the key forbidden is not allowed"});
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The answer to a ConversionReview.
fn convert(review: &Value) -> Value {
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].as_str().unwrap_or("");
    let converted: Vec<Value> = req["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let mut out = o.clone();
            out["apiVersion"] = json!(desired);
            let mut spec = out
                .get_mut("spec")
                .and_then(Value::as_object_mut)
                .map(std::mem::take)
                .unwrap_or_default();
            if desired.ends_with("/v2") {
                if let Some(c) = spec.remove("color") {
                    spec.insert("paint".into(), json!({"color": c}));
                }
            } else if let Some(c) = spec
                .remove("paint")
                .and_then(|mut p| p.get_mut("color").map(Value::take))
            {
                spec.insert("color".into(), c);
            }
            out["spec"] = Value::Object(spec);
            out
        })
        .collect();
    json!({"apiVersion": review["apiVersion"], "kind": "ConversionReview",
           "response": {"uid": req["uid"], "result": {"status": "Success"},
                        "convertedObjects": converted}})
}

fn tls_config(cert: &str, key: &str) -> Result<rustls::ServerConfig, String> {
    let certs = rustls_pemfile::certs(
        &mut std::fs::read(cert)
            .map_err(|e| format!("{cert}: {e}"))?
            .as_slice(),
    )
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| format!("{cert}: {e}"))?;
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(key)
            .map_err(|e| format!("{key}: {e}"))?
            .as_slice(),
    )
    .map_err(|e| format!("{key}: {e}"))?
    .ok_or_else(|| format!("{key}: no private key"))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// The port the server listens on.
pub const PORT: u16 = 8443;

/// Serves until the process is stopped.
pub async fn serve() -> Result<(), String> {
    let (cert, key, port) = ("/tls/tls.crt", "/tls/tls.key", PORT);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(cert, key)?));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .await
        .map_err(|e| format!("listening on {port}: {e}"))?;
    eprintln!("webhook server listening on :{port}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(|r: hyper::Request<hyper::body::Incoming>| async move {
                let path = r.uri().path().to_string();
                let body = r.into_body().collect().await?.to_bytes();
                let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let out = match path.as_str() {
                    "/convert" => convert(&review),
                    _ => admit(&path, &review),
                };
                eprintln!("{path}: {}", out["response"]["uid"]);
                Ok::<_, hyper::Error>(
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(out.to_string())))
                        .expect("a response"),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}
