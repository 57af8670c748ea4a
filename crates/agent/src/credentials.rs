//! The node's identities. An agent starts with the join token, a bootstrap identity that
//! may do one thing: post the node's name to the API server's
//! `/skiff/v1/node-credentials` and get back two client certificates signed by the
//! cluster CA, `system:node:<name>` (group `system:nodes`) for the kubelet and
//! `system:kube-proxy` for the proxy. From then on the API server judges the kubelet as
//! kube judges kubelets (the Node authorizer and NodeRestriction), and the join token is
//! used for nothing else but the API server's calls to the kubelet port.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::AgentConfig;

/// Where the API server issues node credentials.
pub const PATH: &str = skiff_api::names::NODE_CREDENTIALS_PATH;

/// A client certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCredentials {
    /// The certificate.
    pub certificate: String,
    /// Its private key.
    pub key: String,
}

impl ClientCredentials {
    /// `config` authenticating with this certificate instead of any token.
    pub fn apply(&self, config: &mut kube::Config) {
        let b64 = base64::engine::general_purpose::STANDARD;
        config.auth_info.token = None;
        config.auth_info.client_certificate_data = Some(b64.encode(&self.certificate));
        config.auth_info.client_key_data = Some(b64.encode(&self.key).into());
    }
}

/// The identities the API server issues to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// The kubelet's: `system:node:<name>` in `system:nodes`.
    pub kubelet: ClientCredentials,
    /// The proxy's: `system:kube-proxy`.
    pub kube_proxy: ClientCredentials,
}

/// Asks the API server for this node's credentials with the join token, retrying while
/// the server cannot be reached (an agent may start first); a refusal (a wrong token, a
/// bad node name) is an error at once.
pub async fn fetch(cfg: &AgentConfig) -> Result<NodeCredentials> {
    let mut token_config = crate::client_config(&AgentConfig {
        credentials: None,
        ..cfg.clone()
    })?;
    token_config.read_timeout = Some(Duration::from_secs(30));
    let client = kube::Client::try_from(token_config).context("building the API client")?;
    let body = serde_json::to_vec(&serde_json::json!({ "nodeName": cfg.node_name }))?;
    let mut wait = Duration::from_millis(200);
    loop {
        let req = http::Request::post(PATH)
            .header("content-type", "application/json")
            .body(body.clone())
            .context("building the credentials request")?;
        match client.request::<NodeCredentials>(req).await {
            Ok(c) => return Ok(c),
            Err(kube::Error::Api(s)) if s.code == 401 => {
                anyhow::bail!("the API server refused the join token (401 Unauthorized)")
            }
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                return Err(kube::Error::Api(s)).context("fetching the node credentials")
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the node credentials; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
