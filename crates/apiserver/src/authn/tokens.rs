//! Service-account tokens: TokenRequest issues JWTs signed with the service-account key,
//! and the server accepts them as bearer tokens with kube-apiserver's checks
//! (`pkg/serviceaccount/jwt.go` and `claims.go`):
//! - the signature and the issuer;
//! - the audiences must include one the caller asks for (the API server's own,
//!   [`API_AUDIENCES`], for requests; `spec.audiences` in a TokenReview);
//! - `nbf`, `exp` and `iat` with go-jose's one-minute leeway;
//! - the ServiceAccount must still exist with the uid in the token, and so must the Pod or
//!   Secret a bound token names (a deleted object, or one re-created with another uid,
//!   invalidates its tokens).
//!
//! The objects are read from the store on every request, as kube-apiserver reads them from
//! its informers, so a deletion invalidates tokens at once.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use skiff_store::Store;

use super::Identity;

/// Issuer of every token, as kube-apiserver's default `--service-account-issuer`.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The audiences the API server itself accepts (kube-apiserver's `--api-audiences`
/// defaults to the issuer); also the default audiences of a TokenRequest.
pub(crate) const API_AUDIENCES: [&str; 1] = [ISSUER];

/// Clock skew tolerated on `nbf`, `exp` and `iat`, and how long a deleted object's
/// tokens stay valid: go-jose's `DefaultLeeway`, which kube-apiserver uses.
const LEEWAY_SECONDS: i64 = 60;

/// `spec.expirationSeconds` of a TokenRequest without one (kube's defaulting).
pub(crate) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token kube-apiserver issues (`MinTokenAgeSec`).
pub(crate) const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// The longest (`1 << 32` seconds, kube's validation).
pub(crate) const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// The registered claims and kube's private `kubernetes.io` claim.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// A string or a list in JWTs (RFC 7519); always written as a list, as kube does.
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    iss: String,
    sub: String,
    #[serde(rename = "kubernetes.io", default)]
    k8s: Private,
}

/// `kubernetes.io` in a token: what it is bound to.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Private {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
}

/// The name and uid of an object a token names.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
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

/// The object a token is bound to besides its ServiceAccount.
pub(crate) enum Bound {
    /// A Pod, and the Node it runs on when it is scheduled (kube's
    /// `ServiceAccountTokenPodNodeInfo`: the node's uid is empty if the Node is missing).
    Pod {
        pod: ObjectRef,
        node: Option<ObjectRef>,
    },
    /// A Secret.
    Secret(ObjectRef),
}

/// What a token is issued for.
pub(crate) struct TokenSubject<'a> {
    pub namespace: &'a str,
    pub service_account: ObjectRef,
    pub bound: Option<Bound>,
}

/// Issues a token valid from `now` (unix seconds) for `expiration_seconds`; returns it
/// and its expiry.
pub(crate) fn issue(
    keys: &SigningKeys,
    subject: TokenSubject<'_>,
    audiences: Vec<String>,
    now: i64,
    expiration_seconds: i64,
) -> anyhow::Result<(String, i64)> {
    let exp = now + expiration_seconds;
    let mut k8s = Private {
        namespace: subject.namespace.to_string(),
        serviceaccount: subject.service_account,
        ..Default::default()
    };
    match subject.bound {
        Some(Bound::Pod { pod, node }) => {
            k8s.pod = Some(pod);
            k8s.node = node;
        }
        Some(Bound::Secret(secret)) => k8s.secret = Some(secret),
        None => {}
    }
    let claims = Claims {
        aud: audiences,
        exp: Some(exp),
        iat: Some(now),
        nbf: Some(now),
        iss: ISSUER.into(),
        sub: format!(
            "system:serviceaccount:{}:{}",
            subject.namespace, k8s.serviceaccount.name
        ),
        k8s,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &keys.encoding)?;
    Ok((token, exp))
}

/// A token that authenticated: who, and the audiences it was accepted for.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub identity: Identity,
    pub audiences: Vec<String>,
}

/// Checks a service-account token for one of the `wanted` audiences (the API server's
/// when empty). The error is kube-apiserver's reason (what a TokenReview reports).
pub(crate) fn authenticate(
    keys: &SigningKeys,
    store: &dyn Store,
    token: &str,
    wanted: &[String],
) -> Result<Authenticated, String> {
    let claims = decode(keys, token)?;
    let token_auds = claims.aud.clone();
    let wanted: Vec<String> = if wanted.is_empty() {
        API_AUDIENCES.iter().map(|s| s.to_string()).collect()
    } else {
        wanted.to_vec()
    };
    let audiences: Vec<String> = wanted
        .iter()
        .filter(|w| token_auds.contains(w))
        .cloned()
        .collect();
    if audiences.is_empty() {
        return Err(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quoted(&token_auds),
            go_quoted(&wanted)
        ));
    }
    check_times(&claims, Utc::now().timestamp())?;
    let identity = check_objects(store, &claims)?;
    Ok(Authenticated {
        identity,
        audiences,
    })
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

/// The claims of a token signed with our key by our issuer.
fn decode(keys: &SigningKeys, token: &str) -> Result<Claims, String> {
    let mut v = Validation::new(Algorithm::ES256);
    // Times and audiences are checked below with kube's rules and messages.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Claims>(token, &keys.decoding, &v)
        .map(|d| d.claims)
        .map_err(|_| "invalid bearer token".to_string())
}

/// go-jose's `ValidateWithLeeway`, in its order.
fn check_times(claims: &Claims, now: i64) -> Result<(), String> {
    if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    if claims.exp.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
        return Err("service account token has expired".into());
    }
    if claims.iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token is issued in the future".into());
    }
    Ok(())
}

/// A stored object of the core group, by plural (`pods`), namespace and name.
pub(crate) fn get_core(
    store: &dyn Store,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, String> {
    let info =
        skiff_resources::lookup("", "v1", plural).ok_or_else(|| format!("no resource {plural}"))?;
    let Some(kv) = store
        .get(&crate::storage::key(info, namespace, name))
        .map_err(|e| format!("reading {plural} {name}: {e}"))?
    else {
        return Ok(None);
    };
    crate::storage::decode(&kv)
        .map(Some)
        .map_err(|e| format!("reading {plural} {name}: {}", e.message))
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the object was deleted more than the leeway ago (a finalizer keeps it).
fn deleted_before_leeway(obj: &Value, now: i64) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .is_some_and(|t| t.timestamp() < now - LEEWAY_SECONDS)
}

/// kube's `validator.Validate` after the times: the ServiceAccount and the bound objects
/// must still exist with the uids in the token.
fn check_objects(store: &dyn Store, claims: &Claims) -> Result<Identity, String> {
    let now = Utc::now().timestamp();
    let ns = claims.k8s.namespace.as_str();
    let sa_ref = &claims.k8s.serviceaccount;
    let sa = get_core(store, "serviceaccounts", Some(ns), &sa_ref.name)?
        .ok_or_else(|| format!("serviceaccount \"{}\" not found", sa_ref.name))?;
    if uid_of(&sa) != sa_ref.uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({})",
            uid_of(&sa),
            sa_ref.uid
        ));
    }
    if deleted_before_leeway(&sa, now) {
        return Err(format!(
            "service account {ns}/{} has been deleted",
            sa_ref.name
        ));
    }
    let invalidated = || "service account token has been invalidated".to_string();
    if let Some(secret_ref) = &claims.k8s.secret {
        let secret =
            get_core(store, "secrets", Some(ns), &secret_ref.name)?.ok_or_else(invalidated)?;
        if uid_of(&secret) != secret_ref.uid {
            return Err(format!(
                "secret UID ({}) does not match service account secret ref claim ({})",
                uid_of(&secret),
                secret_ref.uid
            ));
        }
        if deleted_before_leeway(&secret, now) {
            return Err(invalidated());
        }
    }
    if let Some(pod_ref) = &claims.k8s.pod {
        let pod = get_core(store, "pods", Some(ns), &pod_ref.name)?.ok_or_else(invalidated)?;
        if uid_of(&pod) != pod_ref.uid {
            return Err(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                uid_of(&pod),
                pod_ref.uid
            ));
        }
        if deleted_before_leeway(&pod, now) {
            return Err(invalidated());
        }
    }
    if claims.k8s.node.is_some() && claims.k8s.pod.is_none() {
        // Tokens bound to a Node alone are not issued here (kube: a feature gate).
        return Err(invalidated());
    }
    Ok(Identity {
        user: claims.sub.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    })
}

/// `spec.audiences` of a TokenRequest or TokenReview body (empty when absent).
pub(crate) fn spec_audiences(body: &serde_json::Value) -> Vec<String> {
    body.pointer("/spec/audiences")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: serde_json::Value) -> Claims {
        serde_json::from_value(serde_json::json!({
            "aud": aud, "iss": ISSUER, "sub": "system:serviceaccount:default:default",
            "exp": 1_000, "nbf": 100, "iat": 100,
        }))
        .unwrap()
    }

    #[test]
    fn audience_may_be_a_string_or_a_list() {
        assert_eq!(claims(serde_json::json!("vault")).aud, vec!["vault"]);
        assert_eq!(claims(serde_json::json!(["a", "b"])).aud, vec!["a", "b"]);
    }

    #[test]
    fn times_are_checked_with_a_minute_of_leeway() {
        let c = claims(serde_json::json!([ISSUER]));
        assert_eq!(check_times(&c, 500), Ok(()));
        // nbf 100: valid from 40 on.
        assert_eq!(check_times(&c, 40), Ok(()));
        assert_eq!(
            check_times(&c, 39).unwrap_err(),
            "service account token is not valid yet"
        );
        // exp 1000: valid until 1060.
        assert_eq!(check_times(&c, 1_060), Ok(()));
        assert_eq!(
            check_times(&c, 1_061).unwrap_err(),
            "service account token has expired"
        );
    }

    #[test]
    fn audiences_are_quoted_as_go_does() {
        assert_eq!(go_quoted(&["vault".into(), "x".into()]), r#"["vault" "x"]"#);
    }
}
