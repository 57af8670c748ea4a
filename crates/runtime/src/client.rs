//! The API client every skiff component builds from a [`kube::Config`]: kube-rs's own
//! middle (base URI, credentials, extra headers) over a hyper client that offers HTTP/2
//! by ALPN, so that one TLS connection carries every request and watch, as client-go's
//! does against kube-apiserver. kube-rs's default client speaks HTTP/1.1 only: a node
//! then held a connection per concurrent request (its pod watch, Lease renewals, status
//! patches, events; seven on average), and a thousand hollow nodes filled the API
//! server's accept queue until connects timed out and Leases lapsed.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often an idle HTTP/2 connection is pinged, and how long a ping may go unanswered
/// before the connection is dropped (client-go's `ReadIdleTimeout` and `PingTimeout`):
/// a server that went away is noticed even while only watches are open.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of the API `config` describes, multiplexing its requests over HTTP/2 when
/// the server offers it (HTTP/1.1 otherwise). `connect_timeout` is honoured; per-request
/// read timeouts are not (on a shared connection they would cut long watches), the
/// pings stand in for them.
pub fn client(config: kube::Config) -> kube::Result<kube::Client> {
    let mut tls = config.rustls_client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnector::from((http, Arc::new(tls)));
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        // The credentials layer's errors are boxed: box the transport's too.
        .map_err(|e: hyper_util::client::legacy::Error| -> BoxError { Box::new(e) })
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
