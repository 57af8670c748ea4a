//! The matching of one RBAC rule against a request, and of a binding's subjects against
//! an identity: kube's `rbac.RuleAllows` with the `VerbMatches`, `APIGroupMatches`,
//! `ResourceMatches`, `ResourceNameMatches` and `NonResourceURLMatches` helpers of
//! `pkg/apis/rbac/v1`, and `appliesToUser` of `pkg/registry/rbac/validation`. Pure
//! functions over k8s-openapi's `rbac/v1` types.

use skiff_api::k8s_openapi::api::rbac::v1::{PolicyRule, Subject};

use crate::authn::Identity;
use crate::authz::{Attributes, Target};

/// The wildcard of verbs, API groups, resources and non-resource URLs.
pub(crate) const ALL: &str = "*";

/// The user-name prefix of service accounts (`system:serviceaccount:<ns>:<name>`).
pub(crate) const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The strings of an optional list (`None` is empty).
pub(crate) fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

/// Whether the rule names `verb` (or `*`).
pub(crate) fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// Whether the rule names API group `group` (or `*`).
pub(crate) fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// Whether the rule names the resource: `*`, the exact `resource[/subresource]`, or
/// `*/<subresource>` when the request has a subresource. `pods/*` is not a wildcard in
/// kube: it only matches a subresource literally named `*`.
pub(crate) fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        r == ALL
            || (subresource.is_empty() && r == resource)
            || (!subresource.is_empty()
                && (is_combined(r, resource, subresource)
                    || (r.len() == subresource.len() + 2
                        && r.starts_with("*/")
                        && r.ends_with(subresource))))
    })
}

/// Whether `r` is `resource/subresource`, compared without building that string.
fn is_combined(r: &str, resource: &str, subresource: &str) -> bool {
    r.len() == resource.len() + 1 + subresource.len()
        && r.starts_with(resource)
        && r.as_bytes()[resource.len()] == b'/'
        && r.ends_with(subresource)
}

/// Whether the rule allows the object `name`: every name when the rule lists none, else
/// only a listed one (so a request without a name, as `create` and `list` are, matches no
/// rule that lists names).
pub(crate) fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Whether the rule names the path: `*`, the exact path, or a prefix ending in `*`.
pub(crate) fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    list(&rule.non_resource_urls).iter().any(|u| {
        u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// Whether the rule allows the request (kube's `RuleAllows`).
pub(crate) fn rule_allows(a: &Attributes<'_>, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, a.verb) {
        return false;
    }
    match &a.target {
        Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            api_group_matches(rule, group)
                && resource_matches(rule, resource, subresource.unwrap_or(""))
                && resource_name_matches(rule, name.unwrap_or(""))
        }
        Target::Path(p) => non_resource_url_matches(rule, p),
    }
}

/// The user name of service account `name` in `namespace`.
pub(crate) fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// Whether `user` is service account `name` in `namespace`, without allocating (kube's
/// `serviceaccount.MatchesUsername`).
pub(crate) fn is_service_account(user: &str, namespace: &str, name: &str) -> bool {
    let Some(rest) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(namespace) else {
        return false;
    };
    rest.strip_prefix(':') == Some(name)
}

/// The namespace a ServiceAccount subject names: its own, else (in a RoleBinding) the
/// binding's; `None` when neither is set, and such a subject matches nobody.
pub(crate) fn subject_namespace<'a>(s: &'a Subject, binding_ns: &'a str) -> Option<&'a str> {
    let ns = s
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(binding_ns);
    (!ns.is_empty()).then_some(ns)
}

/// Whether binding subject `s` applies to `user` (kube's `appliesToUser`); `binding_ns`
/// is the RoleBinding's namespace, `""` for a ClusterRoleBinding.
pub(crate) fn applies_to(user: &Identity, s: &Subject, binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => user.user == s.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => subject_namespace(s, binding_ns)
            .is_some_and(|ns| is_service_account(&user.user, ns, &s.name)),
        _ => false,
    }
}

/// kube's `describeSubject`: `User "bob"`, `ServiceAccount "name/namespace"`.
pub(crate) fn describe_subject(s: &Subject, binding_ns: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            format!("{} {:?}", s.kind, format!("{}/{}", s.name, ns))
        }
        _ => format!("{} {:?}", s.kind, s.name),
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(crate) fn go_quoted(v: &[String]) -> String {
    let parts: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", parts.join(" "))
}

/// kube's `CompactString` of a rule, as escalation errors print it:
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub(crate) fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, v) in [
        ("APIGroups", list(&r.api_groups)),
        ("Resources", list(&r.resources)),
        ("NonResourceURLs", list(&r.non_resource_urls)),
        ("ResourceNames", list(&r.resource_names)),
        ("Verbs", r.verbs.as_slice()),
    ] {
        if !v.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// A rule builder for tables and tests: `rule(&["get"]).groups(&[""]).resources(&["pods"])`.
pub(crate) fn rule(verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// Owned strings.
pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Builder methods on [`PolicyRule`] (kube's `rbacv1helpers.NewRule(...).Groups(...)`).
pub(crate) trait RuleBuilder {
    /// Sets the API groups.
    fn groups(self, g: &[&str]) -> Self;
    /// Sets the resources.
    fn resources(self, r: &[&str]) -> Self;
    /// Sets the resource names.
    fn names(self, n: &[&str]) -> Self;
    /// Sets the non-resource URLs.
    fn urls(self, u: &[&str]) -> Self;
}

impl RuleBuilder for PolicyRule {
    fn groups(mut self, g: &[&str]) -> Self {
        self.api_groups = Some(strings(g));
        self
    }
    fn resources(mut self, r: &[&str]) -> Self {
        self.resources = Some(strings(r));
        self
    }
    fn names(mut self, n: &[&str]) -> Self {
        self.resource_names = Some(strings(n));
        self
    }
    fn urls(mut self, u: &[&str]) -> Self {
        self.non_resource_urls = Some(strings(u));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: strings(groups),
        }
    }

    fn res<'a>(
        user: &'a Identity,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            user,
            verb,
            target: Target::Resource {
                group,
                resource,
                subresource: sub,
                namespace: Some("default"),
                name,
            },
        }
    }

    #[test]
    fn verbs_groups_and_resources_match_with_wildcards() {
        let u = who("bob", &[]);
        let r = rule(&["get", "list"])
            .groups(&["", "apps"])
            .resources(&["pods", "deployments"]);
        assert!(rule_allows(&res(&u, "get", "", "pods", None, None), &r));
        assert!(rule_allows(
            &res(&u, "list", "apps", "deployments", None, None),
            &r
        ));
        assert!(!rule_allows(&res(&u, "delete", "", "pods", None, None), &r));
        assert!(!rule_allows(
            &res(&u, "get", "batch", "pods", None, None),
            &r
        ));
        assert!(!rule_allows(&res(&u, "get", "", "secrets", None, None), &r));
        // A rule on a resource does not reach its subresources.
        assert!(!rule_allows(
            &res(&u, "get", "", "pods", Some("log"), None),
            &r
        ));
        let all = rule(&["*"]).groups(&["*"]).resources(&["*"]);
        assert!(rule_allows(
            &res(&u, "escalate", "x.io", "things", Some("status"), Some("n")),
            &all
        ));
        // No groups listed: no resource request matches.
        assert!(!rule_allows(
            &res(&u, "get", "", "pods", None, None),
            &rule(&["*"]).resources(&["*"])
        ));
    }

    #[test]
    fn subresources_match_exactly_or_by_star_slash() {
        let u = who("bob", &[]);
        let logs = rule(&["get"]).groups(&[""]).resources(&["pods/log"]);
        assert!(rule_allows(
            &res(&u, "get", "", "pods", Some("log"), Some("p")),
            &logs
        ));
        assert!(!rule_allows(
            &res(&u, "get", "", "pods", None, Some("p")),
            &logs
        ));
        assert!(!rule_allows(
            &res(&u, "get", "", "pods", Some("exec"), Some("p")),
            &logs
        ));
        let scale = rule(&["get"]).groups(&["*"]).resources(&["*/scale"]);
        assert!(rule_allows(
            &res(&u, "get", "apps", "deployments", Some("scale"), None),
            &scale
        ));
        assert!(!rule_allows(
            &res(&u, "get", "apps", "deployments", Some("status"), None),
            &scale
        ));
        assert!(!rule_allows(
            &res(&u, "get", "apps", "deployments", None, None),
            &scale
        ));
        // `pods/*` is literal in kube: it is no wildcard over pods' subresources.
        let star = rule(&["get"]).groups(&[""]).resources(&["pods/*"]);
        assert!(!rule_allows(
            &res(&u, "get", "", "pods", Some("log"), None),
            &star
        ));
    }

    #[test]
    fn resource_names_limit_named_requests_only() {
        let u = who("bob", &[]);
        let r = rule(&["get", "list", "create"])
            .groups(&[""])
            .resources(&["configmaps"])
            .names(&["a", "b"]);
        assert!(rule_allows(
            &res(&u, "get", "", "configmaps", None, Some("a")),
            &r
        ));
        assert!(!rule_allows(
            &res(&u, "get", "", "configmaps", None, Some("c")),
            &r
        ));
        // create and list carry no name: a rule with names does not match them.
        assert!(!rule_allows(
            &res(&u, "list", "", "configmaps", None, None),
            &r
        ));
        assert!(!rule_allows(
            &res(&u, "create", "", "configmaps", None, None),
            &r
        ));
        let empty = rule(&["get"])
            .groups(&[""])
            .resources(&["configmaps"])
            .names(&[]);
        assert!(rule_allows(
            &res(&u, "get", "", "configmaps", None, Some("any")),
            &empty
        ));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let u = who("bob", &[]);
        let r = rule(&["get"]).urls(&["/healthz", "/apis/*", "/version/"]);
        let p = |path| Attributes::path(&u, "get", path);
        assert!(rule_allows(&p("/healthz"), &r));
        assert!(!rule_allows(&p("/healthz/etcd"), &r));
        assert!(rule_allows(&p("/apis/apps/v1"), &r));
        assert!(rule_allows(&p("/apis/"), &r));
        assert!(!rule_allows(&p("/apis"), &r));
        assert!(!rule_allows(&p("/version"), &r));
        assert!(!rule_allows(&Attributes::path(&u, "post", "/healthz"), &r));
        assert!(rule_allows(&p("/anything"), &rule(&["get"]).urls(&["*"])));
        // Resource rules never match paths, nor URL rules resources.
        assert!(!rule_allows(
            &p("/api"),
            &rule(&["*"]).groups(&["*"]).resources(&["*"])
        ));
        assert!(!rule_allows(&res(&u, "get", "", "pods", None, None), &r));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let sa = who(
            "system:serviceaccount:default:reader",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated",
            ],
        );
        let subject = |kind: &str, name: &str, ns: Option<&str>| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            ..Subject::default()
        };
        assert!(applies_to(
            &sa,
            &subject("User", "system:serviceaccount:default:reader", None),
            ""
        ));
        assert!(applies_to(
            &sa,
            &subject("Group", "system:serviceaccounts:default", None),
            ""
        ));
        assert!(!applies_to(
            &sa,
            &subject("Group", "system:serviceaccounts:kube-system", None),
            ""
        ));
        assert!(applies_to(
            &sa,
            &subject("ServiceAccount", "reader", Some("default")),
            ""
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "reader", Some("other")),
            ""
        ));
        // The namespace defaults to the RoleBinding's; a ClusterRoleBinding has none.
        assert!(applies_to(
            &sa,
            &subject("ServiceAccount", "reader", None),
            "default"
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "reader", None),
            "other"
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "reader", None),
            ""
        ));
        assert!(!applies_to(
            &sa,
            &subject("ServiceAccount", "read", Some("default")),
            ""
        ));
        assert!(!applies_to(
            &sa,
            &subject("Robot", "reader", Some("default")),
            ""
        ));
        assert!(!is_service_account(
            "system:serviceaccount:default",
            "default",
            ""
        ));
        assert!(!is_service_account(
            "system:serviceaccount:defaultx:reader",
            "default",
            "reader"
        ));
        assert_eq!(
            service_account_user("ns", "sa"),
            "system:serviceaccount:ns:sa"
        );
        assert_eq!(
            describe_subject(&subject("ServiceAccount", "reader", None), "default"),
            r#"ServiceAccount "reader/default""#
        );
        assert_eq!(
            describe_subject(&subject("Group", "g", None), "x"),
            r#"Group "g""#
        );
    }

    #[test]
    fn compact_strings_are_kubes() {
        let r = rule(&["get", "list"]).groups(&[""]).resources(&["pods"]);
        assert_eq!(
            compact_string(&r),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#
        );
        let r = rule(&["get"]).urls(&["/healthz"]);
        assert_eq!(
            compact_string(&r),
            r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#
        );
        let r = rule(&["get"])
            .groups(&["apps"])
            .resources(&["deployments"])
            .names(&["web"]);
        assert_eq!(
            compact_string(&r),
            r#"{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["get"]}"#
        );
    }
}
