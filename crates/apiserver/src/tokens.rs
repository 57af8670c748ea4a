//! Service-account tokens: TokenRequest issues JWTs signed with the service-account key,
//! and the server accepts them as bearer tokens.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::state::ApiState;

/// Issuer of every token (and the default audience), as kube-apiserver's default.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    iss: String,
    sub: String,
    #[serde(rename = "kubernetes.io")]
    k8s: Value,
}

/// The keys tokens are signed and checked with.
pub(crate) struct SigningKeys {
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl SigningKeys {
    pub fn from_pem(private_pkcs8: &str, public_spki: &str) -> anyhow::Result<Self> {
        Ok(SigningKeys {
            encoding: EncodingKey::from_ec_pem(private_pkcs8.as_bytes())?,
            decoding: DecodingKey::from_ec_pem(public_spki.as_bytes())?,
        })
    }
}

/// What a token is bound to.
pub(crate) struct TokenSubject<'a> {
    pub namespace: &'a str,
    pub sa_name: &'a str,
    pub sa_uid: &'a str,
    pub pod: Option<(String, String)>,
}

/// Issues a token; returns it and its expiry (unix seconds).
pub(crate) fn issue(
    state: &ApiState,
    subject: &TokenSubject<'_>,
    audiences: Vec<String>,
    expiration_seconds: i64,
) -> anyhow::Result<(String, i64)> {
    let now = Utc::now().timestamp();
    let exp = now + expiration_seconds;
    let mut k8s = json!({
        "namespace": subject.namespace,
        "serviceaccount": {"name": subject.sa_name, "uid": subject.sa_uid},
    });
    if let Some((name, uid)) = &subject.pod {
        k8s["pod"] = json!({"name": name, "uid": uid});
    }
    let claims = Claims {
        aud: if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        },
        exp,
        iat: now,
        nbf: now,
        iss: ISSUER.into(),
        sub: format!(
            "system:serviceaccount:{}:{}",
            subject.namespace, subject.sa_name
        ),
        k8s,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &state.sa_keys.encoding,
    )?;
    Ok((token, exp))
}

/// The service account identity of a valid token.
pub(crate) fn verify(state: &ApiState, token: &str) -> Option<Identity> {
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    v.set_issuer(&[ISSUER]);
    let data = jsonwebtoken::decode::<Claims>(token, &state.sa_keys.decoding, &v).ok()?;
    let ns = data.claims.k8s.get("namespace")?.as_str()?.to_string();
    Some(Identity {
        user: data.claims.sub,
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    })
}
