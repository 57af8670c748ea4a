//! Authentication: client certificates (verified by TLS against the cluster CA), the
//! join token (agents, group `system:nodes`) and service-account JWTs.
//! Authorization is "every authenticated identity may do everything" for now.

use skiff_api::names::NODES_GROUP;

use crate::state::ApiState;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The identity in a verified client certificate: CN is the user, each O a group.
pub(crate) fn from_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { user, groups })
}

/// The identity of a bearer token, if it is valid for the API server.
pub(crate) fn from_bearer(state: &ApiState, token: &str) -> Option<Identity> {
    match review(state, token, &[]) {
        Ok((identity, _)) => Some(identity),
        Err(why) => {
            // kube-apiserver logs the reason and answers a bare 401.
            tracing::debug!(%why, "rejected a bearer token");
            None
        }
    }
}

/// What a TokenReview answers: the identity of `token` and the audiences (of `wanted`,
/// or of the API server's when empty) it is valid for, or why it is not valid.
pub(crate) fn review(
    state: &ApiState,
    token: &str,
    wanted: &[String],
) -> Result<(Identity, Vec<String>), String> {
    if token == state.pki.join_token {
        // The join token is for the API server only (as kube's bootstrap tokens).
        let api: Vec<String> = crate::tokens::API_AUDIENCES
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !wanted.is_empty() && !wanted.iter().any(|w| api.contains(w)) {
            return Err("invalid bearer token".into());
        }
        let identity = Identity {
            user: "system:node".into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        };
        return Ok((identity, api));
    }
    crate::tokens::authenticate(state, token, wanted).map(|a| (a.identity, a.audiences))
}
