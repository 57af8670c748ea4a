//! Starting a server for one test.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use skiff_apiserver::{Server, ServerConfig, ServerHandle};
use skiff_testkit::kubectl::Kubectl;

/// A running server and the directory it keeps its state in.
pub struct TestServer {
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

/// The datastore of a test server keeping its state in `dir`: SQLite in `dir` by default;
/// with `SKIFF_TEST_DATASTORE=etcd`, a key prefix named after `dir` in an etcd cluster
/// that the test process shares (so a server restarted on `dir` finds its objects).
fn datastore(dir: &Path) -> Option<String> {
    match std::env::var("SKIFF_TEST_DATASTORE").as_deref() {
        Ok("etcd") => {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some(skiff_testkit::etcd::EtcdCluster::shared().url(&format!("/{name}")))
        }
        _ => None,
    }
}

pub async fn start_in(dir: &Path) -> ServerHandle {
    let cfg = ServerConfig {
        data_dir: dir.to_path_buf(),
        bind: (Ipv4Addr::LOCALHOST, 0).into(),
        advertise_address: Some(Ipv4Addr::LOCALHOST),
        datastore: datastore(dir),
        ..Default::default()
    };
    Server::start(cfg).await.expect("server starts")
}

pub async fn start() -> TestServer {
    let dir = tempfile::Builder::new()
        .prefix(&format!("skt-{}-api-", std::process::id()))
        .tempdir()
        .expect("temp dir");
    let handle = start_in(dir.path()).await;
    TestServer { handle, dir }
}

impl TestServer {
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.handle.admin_client_config()).expect("client")
    }

    /// Writes an admin kubeconfig and returns its path.
    pub fn kubeconfig(&self) -> PathBuf {
        let url = format!("https://127.0.0.1:{}", self.handle.port());
        let text = skiff_apiserver::pki::admin_kubeconfig(self.dir.path(), &url, "skiff-test")
            .expect("kubeconfig");
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// kubectl `bin` against this server, with a cache directory of its own.
    pub fn kubectl(&self, bin: PathBuf) -> Kubectl {
        Kubectl::new(bin, self.kubeconfig()).cache_dir(self.dir.path().join("cache"))
    }
}

/// Starts an HTTPS webhook server on loopback (a self-signed certificate for
/// 127.0.0.1) that answers each JSON review with `answer(path, review)`; its port and
/// its CA (PEM), to give as `caBundle`.
pub async fn start_https_hook(
    answer: impl Fn(&str, &Value) -> Value + Send + Sync + 'static,
) -> (u16, String) {
    let answer = Arc::new(answer);
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca_pem = key.cert.pem();
    let certs = vec![key.cert.der().clone()];
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, pk)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |r: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let path = r.uri().path().to_string();
                        let body = r.into_body().collect().await?.to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let out = answer(&path, &review).to_string();
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(out)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, ca_pem)
}
