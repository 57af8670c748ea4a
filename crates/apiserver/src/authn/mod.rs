//! The authentication layer of the request chain: who is asking. Client certificates
//! (verified by TLS against the cluster CA: CN the user, each O a group), the join token
//! (a bootstrap identity that may only fetch node credentials: `crate::nodecreds`) and
//! service-account JWTs ([`tokens`]); then whom the caller acts as ([`impersonation`]).
//! What the identity may do is the authorizer's question (`crate::authz`).

pub(crate) mod impersonation;
pub(crate) mod tokens;

use std::sync::Arc;

use skiff_store::Store;

use self::tokens::SigningKeys;
use skiff_api::names::BOOTSTRAPPERS_GROUP;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The group every authenticated identity is in (kube's `user.AllAuthenticated`).
pub(crate) const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The identity in a verified client certificate: CN is the user, each O a group, and
/// `system:authenticated` (kube-apiserver's authenticated-group adder puts every
/// authenticated user in it; the discovery roles are bound to it).
pub(crate) fn from_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Some(Identity { user, groups })
}

/// Checks bearer tokens: the join token and service-account tokens. Service-account
/// tokens are checked against the objects they name, read from the store on each use.
pub(crate) struct Authenticator {
    join_token: String,
    keys: SigningKeys,
    store: Arc<dyn Store>,
}

impl Authenticator {
    /// An authenticator accepting `join_token` and tokens signed with `keys`.
    pub fn new(join_token: String, keys: SigningKeys, store: Arc<dyn Store>) -> Self {
        Authenticator {
            join_token,
            keys,
            store,
        }
    }

    /// The service-account signing keys (TokenRequest signs with them).
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// The identity of a bearer token, if it is valid for the API server.
    pub fn bearer(&self, token: &str) -> Option<Identity> {
        match self.review(token, &[]) {
            Ok((identity, _)) => Some(identity),
            Err(why) => {
                // kube-apiserver logs the reason and answers a bare 401.
                tracing::debug!(%why, "rejected a bearer token");
                None
            }
        }
    }

    /// What a TokenReview answers: the identity of `token` and the audiences (of
    /// `wanted`, or of the API server's when empty) it is valid for, or why it is not.
    pub fn review(
        &self,
        token: &str,
        wanted: &[String],
    ) -> Result<(Identity, Vec<String>), String> {
        if token == self.join_token {
            // The join token is for the API server only (as kube's bootstrap tokens).
            let api: Vec<String> = tokens::API_AUDIENCES
                .iter()
                .map(|s| s.to_string())
                .collect();
            if !wanted.is_empty() && !wanted.iter().any(|w| api.contains(w)) {
                return Err("invalid bearer token".into());
            }
            // A bootstrap identity, as kube's bootstrap tokens: it may only fetch node
            // credentials (`crate::nodecreds`).
            let id = token.split('.').next().unwrap_or_default();
            let identity = Identity {
                user: format!("system:bootstrap:{id}"),
                groups: vec![BOOTSTRAPPERS_GROUP.into(), "system:authenticated".into()],
            };
            return Ok((identity, api));
        }
        tokens::authenticate(&self.keys, self.store.as_ref(), token, wanted)
            .map(|a| (a.identity, a.audiences))
    }
}
