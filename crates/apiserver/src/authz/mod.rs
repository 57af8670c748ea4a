//! The authorization layer of the request chain: may this identity do this verb on this
//! resource (or path)? As kube-apiserver's `authorizer.Authorizer`, an authorizer sees
//! [`Attributes`] (user, verb, group, resource, subresource, namespace, name, or a
//! non-resource path) and allows, denies or has no opinion; a chain asks each in turn
//! and the first that decides wins, and a request nobody allows is refused with
//! kube-apiserver's 403.
//!
//! The server asks, in order (as kube-apiserver with `--authorization-mode=Node,RBAC`):
//! [`PrivilegedGroups`] (`system:masters` may do everything whatever the roles say),
//! [`node`] (what a kubelet may do, for the pods bound to its node) and [`rbac`].
//! [`AlwaysAllow`] is for tests.

pub(crate) mod node;
pub(crate) mod rbac;

use std::sync::Arc;

use serde_json::json;
use skiff_api::k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authn::impersonation::Wanted;
use crate::authn::Identity;
use crate::request::RequestInfo;
use crate::status::{qualified, ApiError};

/// What an authorizer decides on: kube's `authorizer.Attributes`.
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    /// Who asks.
    pub user: &'a Identity,
    /// The Kubernetes verb (`get`, `list`, `create`...).
    pub verb: &'a str,
    /// What is asked for.
    pub target: Target<'a>,
}

/// The object of a request: a resource or a non-resource path.
#[derive(Debug, Clone)]
pub(crate) enum Target<'a> {
    /// A resource request (below `/api/v1` or `/apis/<group>/<version>`).
    Resource {
        /// API group (`""` for core).
        group: &'a str,
        /// Plural resource name (`pods`).
        resource: &'a str,
        /// Subresource (`status`, `log`...), if any.
        subresource: Option<&'a str>,
        /// Namespace, if the request is namespaced.
        namespace: Option<&'a str>,
        /// Object name, if the path names one.
        name: Option<&'a str>,
    },
    /// Anything else (`/api`, `/apis/apps`, `/openapi/v3`, `/metrics`).
    Path(&'a str),
}

impl<'a> Attributes<'a> {
    /// The attributes of a resource request.
    pub fn resource(user: &'a Identity, r: &'a RequestInfo) -> Self {
        Attributes {
            user,
            verb: r.verb,
            target: Target::Resource {
                group: r.info.group,
                resource: r.info.plural,
                subresource: r.sub.as_deref(),
                namespace: r.namespace.as_deref(),
                name: r.name.as_deref(),
            },
        }
    }

    /// The attributes of the check that `user` may act as `w` (kube's impersonation
    /// filter: verb `impersonate` on users, groups, serviceaccounts, uids or
    /// userextras/<key>, named by the impersonated value).
    pub fn impersonate(user: &'a Identity, w: &'a Wanted) -> Self {
        Attributes {
            user,
            verb: "impersonate",
            target: Target::Resource {
                group: w.group(),
                resource: w.resource(),
                subresource: w.subresource(),
                namespace: w.namespace(),
                name: Some(&w.name),
            },
        }
    }

    /// The attributes of a non-resource request (`verb` from the method: `get`...).
    pub fn path(user: &'a Identity, verb: &'a str, path: &'a str) -> Self {
        Attributes {
            user,
            verb,
            target: Target::Path(path),
        }
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
// Nothing built in denies (kube's built-in authorizers do not either); webhooks may.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Decision {
    /// The request may go on.
    Allow,
    /// The request is refused; the reason is appended to the 403 message (may be empty).
    Deny(String),
    /// This authorizer does not decide; the next one is asked. The reason (may be empty)
    /// is shown in the 403 when nobody decides, as RBAC's `RBAC: role ... not found`.
    NoOpinion(String),
}

/// Decides whether a request may go on.
pub(crate) trait Authorizer: Send + Sync {
    /// The decision on `a`.
    fn authorize(&self, a: &Attributes<'_>) -> Decision;

    /// The decision on `a` and, when it allows, why (RBAC's `RBAC: allowed by ...`): what
    /// a SubjectAccessReview reports. kube's authorizers return a reason with every
    /// decision; skiff builds the allowing one only for reviews, off the hot path. Those
    /// that give none (kube's PrivilegedGroups and Node authorizers) keep this default.
    fn review(&self, a: &Attributes<'_>) -> (Decision, String) {
        (self.authorize(a), String::new())
    }

    /// kube's `RuleResolver`: the rules this authorizer grants `user` in `namespace`, for
    /// SelfSubjectRulesReview. Authorizers kube does not ask (PrivilegedGroups) list
    /// nothing.
    fn rules_for(&self, _user: &Identity, _namespace: &str) -> RulesReview {
        RulesReview::default()
    }
}

impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        (**self).authorize(a)
    }

    fn review(&self, a: &Attributes<'_>) -> (Decision, String) {
        (**self).review(a)
    }

    fn rules_for(&self, user: &Identity, namespace: &str) -> RulesReview {
        (**self).rules_for(user, namespace)
    }
}

/// What a rule resolver answers (kube's `RulesFor`): resource and non-resource rules,
/// whether the list is known to be incomplete, and the errors met.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RulesReview {
    /// Rules on resources (verbs, API groups, resources, resource names).
    pub resource_rules: Vec<PolicyRule>,
    /// Rules on non-resource URLs (verbs, URLs).
    pub non_resource_rules: Vec<PolicyRule>,
    /// Some permissions could not be listed.
    pub incomplete: bool,
    /// Errors met while listing (kube's aggregate, flattened).
    pub errors: Vec<String>,
}

impl RulesReview {
    /// kube's `utilerrors.NewAggregate(errors).Error()`: empty without errors, one message
    /// alone, several deduplicated in brackets.
    pub fn evaluation_error(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for e in &self.errors {
            if !seen.contains(&e.as_str()) {
                seen.push(e);
            }
        }
        match seen.as_slice() {
            [] => String::new(),
            [one] => one.to_string(),
            many => format!("[{}]", many.join(", ")),
        }
    }
}

/// Allows every request (tests that are not about authorization).
#[derive(Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes<'_>) -> Decision {
        Decision::Allow
    }
}

/// Allows every member of the given groups (kube's `authorizerfactory.NewPrivilegedGroups`,
/// asked first with `system:masters`), and has no opinion on everyone else.
#[derive(Debug)]
pub(crate) struct PrivilegedGroups(Vec<String>);

impl PrivilegedGroups {
    /// kube's superuser group.
    pub const MASTERS: &'static str = "system:masters";

    /// Allows the members of `groups`.
    pub fn new(groups: &[&str]) -> Self {
        PrivilegedGroups(groups.iter().map(|g| g.to_string()).collect())
    }
}

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.user.groups.iter().any(|g| self.0.contains(g)) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// Authorizers asked in order (kube's union authorizer): the first that allows or denies
/// decides; when none does, the request is denied without a reason.
#[derive(Default)]
pub(crate) struct Chain(Vec<Box<dyn Authorizer>>);

impl Chain {
    /// A chain of `authorizers`, asked in this order.
    pub fn new(authorizers: Vec<Box<dyn Authorizer>>) -> Self {
        Chain(authorizers)
    }

    /// `Ok` when some authorizer allows `a`, else kube-apiserver's 403: with the denying
    /// authorizer's reason, or (kube's union authorizer) the abstaining ones' reasons
    /// joined by newlines.
    pub fn check(&self, a: &Attributes<'_>) -> Result<(), ApiError> {
        match self.decide(a) {
            Decision::Allow => Ok(()),
            Decision::Deny(why) | Decision::NoOpinion(why) => Err(forbidden(a, &why)),
        }
    }

    /// The chain's decision on `a` and its reason, as kube's union authorizer returns
    /// them to a SubjectAccessReview: the first authorizer that allows or denies decides
    /// with its reason; when none does, the abstaining ones' reasons joined by newlines.
    pub fn review(&self, a: &Attributes<'_>) -> (Decision, String) {
        let mut reasons = Vec::new();
        for z in &self.0 {
            match z.review(a) {
                (Decision::NoOpinion(why), _) => {
                    if !why.is_empty() {
                        reasons.push(why);
                    }
                }
                (Decision::Allow, why) => return (Decision::Allow, why),
                (Decision::Deny(why), _) => return (Decision::Deny(why.clone()), why),
            }
        }
        let why = reasons.join("\n");
        (Decision::NoOpinion(why.clone()), why)
    }

    /// kube's union rule resolver: every authorizer's rules for `user` in `namespace`
    /// appended in order, incomplete when any is, with all their errors.
    pub fn rules_for(&self, user: &Identity, namespace: &str) -> RulesReview {
        let mut all = RulesReview::default();
        for z in &self.0 {
            let r = z.rules_for(user, namespace);
            all.resource_rules.extend(r.resource_rules);
            all.non_resource_rules.extend(r.non_resource_rules);
            all.incomplete |= r.incomplete;
            all.errors.extend(r.errors);
        }
        all
    }

    /// The chain's decision on `a`: the first authorizer's that allows or denies, else
    /// no opinion with the abstaining ones' reasons joined by newlines. (Reviews ask
    /// [`Chain::review`], which also gives the allowing authorizer's reason.)
    pub fn decide(&self, a: &Attributes<'_>) -> Decision {
        let mut reasons = Vec::new();
        for z in &self.0 {
            match z.authorize(a) {
                Decision::NoOpinion(why) => {
                    if !why.is_empty() {
                        reasons.push(why);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }
}

/// kube-apiserver's 403 for a refused request (`responsewriters.Forbidden`): e.g.
/// `pods "web" is forbidden: User "bob" cannot get resource "pods" in API group "" in the
/// namespace "default"`, with `: <reason>` when the authorizer gave one.
pub(crate) fn forbidden(a: &Attributes<'_>, reason: &str) -> ApiError {
    let user = &a.user.user;
    let verb = a.verb;
    let mut why = match &a.target {
        Target::Path(p) => format!("User {user:?} cannot {verb} path {p:?}"),
        Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let res = match subresource {
                Some(s) => format!("{resource}/{s}"),
                None => resource.to_string(),
            };
            match namespace {
                Some(ns) => format!(
                    "User {user:?} cannot {verb} resource {res:?} in API group {group:?} in the namespace {ns:?}"
                ),
                None => format!(
                    "User {user:?} cannot {verb} resource {res:?} in API group {group:?} at the cluster scope"
                ),
            }
        }
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    match &a.target {
        Target::Path(_) => ApiError::forbidden(format!("forbidden: {why}")),
        Target::Resource {
            group,
            resource,
            name,
            ..
        } => {
            let q = qualified(group, resource);
            let message = match name {
                Some(n) => format!("{q} {n:?} is forbidden: {why}"),
                None => format!("{q} is forbidden: {why}"),
            };
            let mut details = json!({"group": group, "kind": resource});
            if let Some(n) = name {
                details["name"] = json!(n);
            }
            ApiError::forbidden(message).with_details(details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Identity {
        Identity {
            user: "bob".into(),
            groups: vec!["system:authenticated".into()],
        }
    }

    fn pod_get<'a>(
        user: &'a Identity,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            user,
            verb: "get",
            target: Target::Resource {
                group: "",
                resource: "pods",
                subresource: None,
                namespace: ns,
                name,
            },
        }
    }

    struct Deny;
    impl Authorizer for Deny {
        fn authorize(&self, _: &Attributes<'_>) -> Decision {
            Decision::Deny("no".into())
        }
    }
    struct Abstain(&'static str);
    impl Authorizer for Abstain {
        fn authorize(&self, _: &Attributes<'_>) -> Decision {
            Decision::NoOpinion(self.0.into())
        }
    }

    #[test]
    fn messages_match_kube_apiserver() {
        let u = bob();
        let e = forbidden(&pod_get(&u, Some("default"), Some("web")), "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods "web" is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "default""#
        );
        let mut a = pod_get(&u, None, None);
        a.verb = "list";
        if let Target::Resource {
            group, resource, ..
        } = &mut a.target
        {
            *group = "apps";
            *resource = "deployments";
        }
        assert_eq!(
            forbidden(&a, "").message,
            r#"deployments.apps is forbidden: User "bob" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
        let p = Attributes::path(&u, "get", "/apis");
        assert_eq!(
            forbidden(&p, "").message,
            r#"forbidden: User "bob" cannot get path "/apis""#
        );
        let mut s = pod_get(&u, Some("ns"), Some("web"));
        if let Target::Resource { subresource, .. } = &mut s.target {
            *subresource = Some("log");
        }
        assert!(forbidden(&s, "RBAC: nope").message.ends_with(
            r#"cannot get resource "pods/log" in API group "" in the namespace "ns": RBAC: nope"#
        ));
    }

    #[test]
    fn chain_asks_in_order_and_denies_when_nobody_decides() {
        let u = bob();
        let a = pod_get(&u, Some("d"), Some("x"));
        assert!(Chain::new(vec![Box::new(AlwaysAllow)]).check(&a).is_ok());
        assert!(
            Chain::new(vec![Box::new(Abstain("")), Box::new(AlwaysAllow)])
                .check(&a)
                .is_ok()
        );
        let e = Chain::new(vec![Box::new(Deny), Box::new(AlwaysAllow)])
            .check(&a)
            .unwrap_err();
        assert!(e.message.ends_with(": no"), "{}", e.message);
        let e = Chain::new(vec![Box::new(Abstain(""))])
            .check(&a)
            .unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message.ends_with(r#"in the namespace "d""#),
            "{}",
            e.message
        );
        // kube's union authorizer: abstainers' reasons joined by newlines; a denial's alone.
        let e = Chain::new(vec![
            Box::new(Abstain("a")),
            Box::new(Abstain("")),
            Box::new(Abstain("b")),
        ])
        .check(&a)
        .unwrap_err();
        assert!(e.message.ends_with("\"d\": a\nb"), "{}", e.message);
        let e = Chain::new(vec![Box::new(Abstain("a")), Box::new(Deny)])
            .check(&a)
            .unwrap_err();
        assert!(e.message.ends_with(r#""d": no"#), "{}", e.message);
    }

    /// Allows with a reason, and lists one rule with an error.
    struct Explains;
    impl Authorizer for Explains {
        fn authorize(&self, _: &Attributes<'_>) -> Decision {
            Decision::Allow
        }
        fn review(&self, _: &Attributes<'_>) -> (Decision, String) {
            (Decision::Allow, "because".into())
        }
        fn rules_for(&self, _: &Identity, _: &str) -> RulesReview {
            RulesReview {
                resource_rules: vec![PolicyRule {
                    verbs: vec!["get".into()],
                    ..PolicyRule::default()
                }],
                errors: vec!["oops".into()],
                ..RulesReview::default()
            }
        }
    }

    #[test]
    fn reviews_report_the_deciding_authorizers_reason() {
        let u = bob();
        let a = pod_get(&u, Some("d"), None);
        let chain = Chain::new(vec![Box::new(Abstain("a")), Box::new(Explains)]);
        assert_eq!(chain.review(&a), (Decision::Allow, "because".into()));
        // kube's PrivilegedGroups allows without a reason.
        let chain = Chain::new(vec![Box::new(AlwaysAllow), Box::new(Explains)]);
        assert_eq!(chain.review(&a), (Decision::Allow, String::new()));
        let chain = Chain::new(vec![Box::new(Abstain("a")), Box::new(Deny)]);
        assert_eq!(chain.review(&a), (Decision::Deny("no".into()), "no".into()));
        let chain = Chain::new(vec![Box::new(Abstain("a")), Box::new(Abstain("b"))]);
        assert_eq!(
            chain.review(&a),
            (Decision::NoOpinion("a\nb".into()), "a\nb".into())
        );
    }

    #[test]
    fn rules_are_the_union_of_the_resolvers() {
        let chain = Chain::new(vec![
            Box::new(PrivilegedGroups::new(&[PrivilegedGroups::MASTERS])),
            Box::new(Explains),
            Box::new(Explains),
        ]);
        let r = chain.rules_for(&bob(), "d");
        assert_eq!(r.resource_rules.len(), 2);
        assert!(!r.incomplete);
        assert_eq!(r.evaluation_error(), "oops");
        let mut two = r.clone();
        two.errors.push("other".into());
        assert_eq!(two.evaluation_error(), "[oops, other]");
        assert_eq!(RulesReview::default().evaluation_error(), "");
    }

    #[test]
    fn privileged_groups_allow_their_members_only() {
        let z = PrivilegedGroups::new(&[PrivilegedGroups::MASTERS]);
        let u = bob();
        assert_eq!(
            z.authorize(&pod_get(&u, None, None)),
            Decision::NoOpinion(String::new())
        );
        let admin = Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        };
        assert_eq!(
            z.authorize(&Attributes::path(&admin, "delete", "/x")),
            Decision::Allow
        );
    }
}
