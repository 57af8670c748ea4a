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

/// The identity of a bearer token, if it is valid.
pub(crate) fn from_bearer(state: &ApiState, token: &str) -> Option<Identity> {
    if token == state.pki.join_token {
        return Some(Identity {
            user: "system:node".into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        });
    }
    crate::tokens::verify(state, token)
}
