//! `POST /skiff/v1/node-credentials`: how an agent holding the join token gets the
//! identities it runs under. kubeadm and kubelets do this with a bootstrap token and a
//! CertificateSigningRequest the controller manager approves and signs; k3s serves
//! node certificates from its own endpoint, and skiff does as k3s: the join token is a
//! bootstrap identity (`system:bootstrap:<token-id>` in `system:bootstrappers`) that
//! RBAC lets post here and nowhere else, and the answer is two client certificates
//! signed by the cluster CA: `system:node:<name>` in `system:nodes` for the kubelet (the
//! Node authorizer and NodeRestriction then judge it as kube judges kubelets), and
//! `system:kube-proxy` for the proxy (bound to `system:node-proxier`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pki::{issue_client, ClientCredentials};
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

/// The path agents post to.
pub(crate) const PATH: &str = skiff_api::names::NODE_CREDENTIALS_PATH;

/// What an agent asks for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsRequest {
    /// The node's name (what it registers its Node as).
    node_name: String,
}

/// What an agent gets.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeCredentials {
    /// For the kubelet: `system:node:<name>` in `system:nodes`.
    kubelet: ClientCredentials,
    /// For the proxy: `system:kube-proxy`.
    kube_proxy: ClientCredentials,
}

/// Whether `name` is a DNS-1123 subdomain, as Node names must be.
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Answers a request whose body is `body` (authorized already).
pub(crate) fn issue(state: &ApiState, body: &[u8]) -> ApiResult<Value> {
    let req: CredentialsRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("decoding the request: {e}")))?;
    if !valid_node_name(&req.node_name) {
        return Err(ApiError::bad_request(format!(
            "invalid node name {:?}: must be a lowercase RFC 1123 subdomain",
            req.node_name
        )));
    }
    let user = format!("{}{}", crate::authz::node::NODE_USER_PREFIX, req.node_name);
    let issued = |user: &str, groups: &[&str]| {
        issue_client(&state.pki, user, groups)
            .map_err(|e| ApiError::internal(format!("issuing credentials: {e:#}")))
    };
    let creds = NodeCredentials {
        kubelet: issued(&user, &[skiff_api::names::NODES_GROUP])?,
        kube_proxy: issued("system:kube-proxy", &[])?,
    };
    tracing::info!(node = %req.node_name, "issued node credentials");
    serde_json::to_value(creds).map_err(|e| ApiError::internal(format!("encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_subdomains() {
        for ok in ["n1", "node-1.example", "a"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        for bad in ["", "N1", "-a", "a-", "a..b", "a_b", &"x".repeat(254)] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }
}
