//! Impersonation (kube-apiserver's `WithImpersonation` filter): an authenticated caller
//! may act as another user with the `Impersonate-User`, `Impersonate-Group` (repeated),
//! `Impersonate-Uid` and `Impersonate-Extra-<key>` headers, if it may `impersonate` each
//! of those: `users`, `groups`, `serviceaccounts` (for `system:serviceaccount:<ns>:<name>`,
//! in that namespace), and in `authentication.k8s.io` `uids` and `userextras/<key>`.
//!
//! The headers are read by the pure [`wanted`] and turned into an identity by
//! [`identity`]; [`impersonate`] runs both around the caller's authorization checks (the
//! request chain passes them in, this layer knowing nothing of the authorizers).
//! skiff's [`Identity`] carries no uid or extra values: they are authorized but dropped.

use http::{HeaderMap, Response};

use super::Identity;
use crate::http::{error_response, Body};
use crate::status::ApiError;

/// kube's header names, lower-case as HTTP/2 and hyper carry them.
const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// The group every authenticated identity is in.
const AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user.
const ANONYMOUS: &str = "system:anonymous";
/// The user-name prefix of service accounts.
const SA_PREFIX: &str = "system:serviceaccount:";
/// The group of every service account.
const SA_GROUP: &str = "system:serviceaccounts";
/// The API group of `uids` and `userextras`.
const AUTHENTICATION_V1: &str = "authentication.k8s.io/v1";

/// What kind of thing is impersonated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user (`Impersonate-User` not naming a service account).
    User,
    /// A service account (`Impersonate-User: system:serviceaccount:<ns>:<name>`).
    ServiceAccount,
    /// A group (`Impersonate-Group`).
    Group,
    /// A value of an extra key (`Impersonate-Extra-<key>`).
    UserExtra,
    /// A uid (`Impersonate-Uid`).
    Uid,
}

/// One thing a request asks to act as (kube's impersonation `ObjectReference`), each
/// authorized on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// What it is.
    pub kind: Kind,
    /// The service account's namespace; empty otherwise.
    pub namespace: String,
    /// The user, service account, group, uid or extra value.
    pub name: String,
    /// The extra key (lower-case, unescaped); empty otherwise.
    pub extra_key: String,
}

impl Wanted {
    fn new(kind: Kind, name: &str) -> Self {
        Wanted {
            kind,
            namespace: String::new(),
            name: name.to_string(),
            extra_key: String::new(),
        }
    }

    /// The API group of the `impersonate` check.
    pub fn group(&self) -> &'static str {
        match self.kind {
            Kind::UserExtra | Kind::Uid => "authentication.k8s.io",
            _ => "",
        }
    }

    /// The resource of the `impersonate` check.
    pub fn resource(&self) -> &'static str {
        match self.kind {
            Kind::User => "users",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Group => "groups",
            Kind::UserExtra => "userextras",
            Kind::Uid => "uids",
        }
    }

    /// The subresource of the `impersonate` check: the extra key.
    pub fn subresource(&self) -> Option<&str> {
        Some(self.extra_key.as_str()).filter(|k| !k.is_empty())
    }

    /// The namespace of the `impersonate` check: the service account's.
    pub fn namespace(&self) -> Option<&str> {
        Some(self.namespace.as_str()).filter(|n| !n.is_empty())
    }

    /// Go's `%v` of kube's `ObjectReference` (Kind, Namespace, Name, UID, APIVersion,
    /// ResourceVersion, FieldPath), as kube's error prints it.
    fn go_value(&self) -> String {
        let (kind, api_version) = match self.kind {
            Kind::User => ("User", ""),
            Kind::ServiceAccount => ("ServiceAccount", ""),
            Kind::Group => ("Group", ""),
            Kind::UserExtra => ("UserExtra", AUTHENTICATION_V1),
            Kind::Uid => ("UID", AUTHENTICATION_V1),
        };
        let fields = [
            kind,
            &self.namespace,
            &self.name,
            "",
            api_version,
            "",
            &self.extra_key,
        ];
        format!("{{{}}}", fields.join(" "))
    }
}

/// Whether `s` is a DNS-1123 label (a namespace name).
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a DNS-1123 subdomain (a service account name).
fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// kube's `serviceaccount.SplitUsername`: the namespace and name of a service account's
/// user name, if it is a valid one.
fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SA_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!name.contains(':') && is_label(ns) && is_subdomain(name)).then_some((ns, name))
}

/// Go's `url.PathUnescape`, or the key as it is when it is not valid escaping (kube
/// keeps malformed keys verbatim).
fn unescape(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

/// The things `headers` ask to impersonate, in kube's order (the user, the groups, the
/// extras, the uid); empty when none. Groups, extras or a uid without a user are kube's
/// error `requested [...] without impersonating a user`.
pub(crate) fn wanted(headers: &HeaderMap) -> Result<Vec<Wanted>, String> {
    let value = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut out = Vec::new();
    let user = headers.get(USER).map(value).unwrap_or_default();
    let has_user = !user.is_empty();
    if has_user {
        out.push(match split_service_account(&user) {
            Some((ns, name)) => Wanted {
                namespace: ns.to_string(),
                ..Wanted::new(Kind::ServiceAccount, name)
            },
            None => Wanted::new(Kind::User, &user),
        });
    }
    let mut others = false;
    for g in headers.get_all(GROUP) {
        others = true;
        out.push(Wanted::new(Kind::Group, &value(g)));
    }
    for (name, v) in headers {
        let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) else {
            continue;
        };
        others = true;
        out.push(Wanted {
            extra_key: unescape(&key.to_ascii_lowercase()),
            ..Wanted::new(Kind::UserExtra, &value(v))
        });
    }
    let uid = headers.get(UID).map(value).unwrap_or_default();
    if !uid.is_empty() {
        others = true;
        out.push(Wanted::new(Kind::Uid, &uid));
    }
    if others && !has_user {
        let list: Vec<String> = out.iter().map(Wanted::go_value).collect();
        return Err(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        ));
    }
    Ok(out)
}

/// The identity `wanted` makes, as kube builds it: the user or service account, the
/// groups given (else a service account's groups), and `system:authenticated` unless a
/// group says otherwise (`system:unauthenticated` for the anonymous user).
pub(crate) fn identity(wanted: &[Wanted]) -> Identity {
    let groups_given = wanted.iter().any(|w| w.kind == Kind::Group);
    let mut user = String::new();
    let mut groups: Vec<String> = Vec::new();
    for w in wanted {
        match w.kind {
            Kind::User => user = w.name.clone(),
            Kind::ServiceAccount => {
                user = format!("{SA_PREFIX}{}:{}", w.namespace, w.name);
                if !groups_given {
                    groups = vec![SA_GROUP.into(), format!("{SA_GROUP}:{}", w.namespace)];
                }
            }
            Kind::Group => groups.push(w.name.clone()),
            Kind::UserExtra | Kind::Uid => {}
        }
    }
    let has = |g: &str, groups: &[String]| groups.iter().any(|x| x == g);
    if user != ANONYMOUS {
        if !has(AUTHENTICATED, &groups) && !has(UNAUTHENTICATED, &groups) {
            groups.push(AUTHENTICATED.into());
        }
    } else if !has(UNAUTHENTICATED, &groups) {
        groups.push(UNAUTHENTICATED.into());
    }
    Identity { user, groups }
}

/// Whether `headers` carry any impersonation header (the common case is a quick no).
fn any_header(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// Why a request may not act as whom it asks to.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Groups, extras or a uid without a user: kube's 500 with this error.
    NoUser(String),
    /// The requestor may not impersonate one of them: the check's 403.
    Forbidden(ApiError),
}

impl Refusal {
    /// kube's answer to the request for `request_uri` (path and query).
    pub fn response(&self, request_uri: &str) -> Response<Body> {
        match self {
            Refusal::NoUser(why) => internal_error(request_uri, why),
            Refusal::Forbidden(e) => error_response(e),
        }
    }
}

/// The identity a request acts as: `requestor` itself without impersonation headers,
/// else the impersonated one once `allowed` (the `impersonate` check of the requestor on
/// one [`Wanted`]) passed for each. The headers are removed, as kube does, so nothing
/// downstream sees them.
pub(crate) fn impersonate(
    requestor: Identity,
    headers: &mut HeaderMap,
    mut allowed: impl FnMut(&Identity, &Wanted) -> Result<(), ApiError>,
) -> Result<Identity, Refusal> {
    if !any_header(headers) {
        return Ok(requestor);
    }
    let wanted = wanted(headers).map_err(|why| {
        tracing::debug!(%why, "impersonation refused");
        Refusal::NoUser(why)
    })?;
    if wanted.is_empty() {
        return Ok(requestor);
    }
    for w in &wanted {
        allowed(&requestor, w).map_err(Refusal::Forbidden)?;
    }
    let acting = identity(&wanted);
    tracing::debug!(user = %requestor.user, as_user = %acting.user, "impersonating");
    let names: Vec<_> = headers
        .keys()
        .filter(|k| {
            [USER, GROUP, UID].contains(&k.as_str()) || k.as_str().starts_with(EXTRA_PREFIX)
        })
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
    Ok(acting)
}

/// kube's `responsewriters.InternalError`: a 500 in plain text,
/// `Internal Server Error: "<uri>": <error>`, with `&`, `<` and `>` escaped.
fn internal_error(request_uri: &str, why: &str) -> Response<Body> {
    let text = format!("Internal Server Error: {request_uri:?}: {why}\n")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Response::builder()
        .status(500)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(crate::http::full(text))
        .unwrap_or_else(|_| Response::new(crate::http::full("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn users_and_service_accounts() {
        let w = wanted(&headers(&[("Impersonate-User", "bob")])).unwrap();
        assert_eq!(w, [Wanted::new(Kind::User, "bob")]);
        assert_eq!((w[0].group(), w[0].resource()), ("", "users"));
        assert_eq!(
            identity(&w),
            Identity {
                user: "bob".into(),
                groups: vec!["system:authenticated".into()]
            }
        );
        let w = wanted(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:default:reader",
        )]))
        .unwrap();
        assert_eq!(w[0].kind, Kind::ServiceAccount);
        assert_eq!(
            (w[0].namespace(), w[0].name.as_str(), w[0].resource()),
            (Some("default"), "reader", "serviceaccounts")
        );
        assert_eq!(
            identity(&w).groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]
        );
        // Not a valid service account name: an ordinary user.
        for odd in [
            "system:serviceaccount:Default:x",
            "system:serviceaccount:a:b:c",
            "system:serviceaccount::x",
        ] {
            let w = wanted(&headers(&[("Impersonate-User", odd)])).unwrap();
            assert_eq!(w[0].kind, Kind::User, "{odd}");
        }
    }

    #[test]
    fn groups_replace_service_account_groups() {
        let w = wanted(&headers(&[
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "ops"),
        ]))
        .unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(identity(&w).groups, ["devs", "ops", "system:authenticated"]);
        // A group saying who the user is is kept as given.
        let w = wanted(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:unauthenticated"),
        ]))
        .unwrap();
        assert_eq!(identity(&w).groups, ["system:unauthenticated"]);
        let w = wanted(&headers(&[("Impersonate-User", "system:anonymous")])).unwrap();
        assert_eq!(identity(&w).groups, ["system:unauthenticated"]);
    }

    #[test]
    fn extras_and_uids_are_authorized_in_authentication_group() {
        let w = wanted(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Extra-Example.org%2fScopes", "read"),
            ("Impersonate-Uid", "1234"),
        ]))
        .unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[1].kind, Kind::UserExtra);
        assert_eq!(w[1].subresource(), Some("example.org/scopes"));
        assert_eq!(
            (w[1].group(), w[1].resource(), w[1].name.as_str()),
            ("authentication.k8s.io", "userextras", "read")
        );
        assert_eq!((w[2].resource(), w[2].name.as_str()), ("uids", "1234"));
        assert_eq!(unescape("a%zz"), "a%zz");
    }

    #[test]
    fn groups_without_user_are_kube_error() {
        let e = wanted(&headers(&[("Impersonate-Group", "devs")])).unwrap_err();
        assert_eq!(
            e,
            "requested [{Group  devs    }] without impersonating a user"
        );
        let e = wanted(&headers(&[
            ("Impersonate-Uid", "u1"),
            ("Impersonate-Extra-k", "v"),
        ]))
        .unwrap_err();
        assert_eq!(
            e,
            "requested [{UserExtra  v  authentication.k8s.io/v1  k} {UID  u1  authentication.k8s.io/v1  }] without impersonating a user"
        );
        assert_eq!(wanted(&headers(&[("Impersonate-User", "")])).unwrap(), []);
    }

    #[test]
    fn impersonate_checks_each_and_strips_headers() {
        let alice = Identity {
            user: "alice".into(),
            groups: vec!["system:authenticated".into()],
        };
        let mut h = headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "devs"),
            ("Accept", "*/*"),
        ]);
        let mut asked = Vec::new();
        let got = impersonate(alice.clone(), &mut h, |who, w| {
            asked.push((who.user.clone(), w.resource(), w.name.clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.user, "bob");
        assert_eq!(got.groups, ["devs", "system:authenticated"]);
        assert_eq!(
            asked,
            [
                ("alice".to_string(), "users", "bob".to_string()),
                ("alice".to_string(), "groups", "devs".to_string())
            ]
        );
        assert_eq!(h.len(), 1, "{h:?}");
        // No headers: the requestor as it is, nothing asked.
        let got =
            impersonate(alice.clone(), &mut h, |_, _| Err(ApiError::forbidden("no"))).unwrap();
        assert_eq!(got, alice);
        let mut h = headers(&[("Impersonate-User", "bob")]);
        let r =
            impersonate(alice.clone(), &mut h, |_, _| Err(ApiError::forbidden("no"))).unwrap_err();
        assert_eq!(r.response("/api").status(), 403);
        let mut h = headers(&[("Impersonate-Group", "g")]);
        let r = impersonate(alice, &mut h, |_, _| Ok(())).unwrap_err();
        assert!(matches!(r, Refusal::NoUser(_)), "{r:?}");
        assert_eq!(r.response("/api/v1/pods?x=<y>").status(), 500);
    }
}
