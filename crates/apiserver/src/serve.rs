//! Listening: TLS (client certificates optional, verified against the cluster CA),
//! HTTP/1.1 and HTTP/2 with upgrades, the connection's identity handed to the router.

use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::{self, Identity};
use crate::pki::Pki;
use crate::state::ApiState;

/// The rustls configuration: serving certificate, optional client certificates, ALPN.
pub(crate) fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_cert.as_bytes()) {
        roots.add(c.context("parsing ca.crt")?)?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let certs = rustls_pemfile::certs(&mut pki.server_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing apiserver.crt")?;
    let key = rustls_pemfile::private_key(&mut pki.server_key.as_bytes())
        .context("parsing apiserver.key")?
        .context("no key in apiserver.key")?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("serving certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections forever.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake: {e}");
                    return;
                }
            };
            let ident: Option<Identity> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| authn::from_certificate(c));
            let svc = service_fn(move |req| {
                let state = state.clone();
                let ident = ident.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        crate::router::handle(state, ident, req).await,
                    )
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(1000);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "connection: {e}");
            }
        });
    }
}
