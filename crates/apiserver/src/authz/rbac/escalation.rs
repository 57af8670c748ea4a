//! kube's privilege-escalation check of RBAC writes (`pkg/registry/rbac/validation`): a
//! user may create or update a role, or bind one, only if they already hold every
//! permission it grants. [`covers`] breaks the requested rules into single
//! (group, resource, verb, name) rules and looks for an owned rule covering each;
//! [`confirm_no_escalation`] turns what is missing into kube's message.

use std::collections::BTreeSet;

use skiff_api::k8s_openapi::api::rbac::v1::PolicyRule;

use super::rules::{compact_string, go_quoted, list, ALL};
use super::RuleSet;
use crate::authn::Identity;

/// kube's `BreakdownRule`: `rule` as rules with at most one group, resource, verb and
/// name each (and URL rules with one URL and one verb).
pub(crate) fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    for g in list(&rule.api_groups) {
        for r in list(&rule.resources) {
            for v in &rule.verbs {
                let base = PolicyRule {
                    api_groups: one(g),
                    resources: one(r),
                    verbs: vec![v.clone()],
                    ..PolicyRule::default()
                };
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(names.iter().map(|n| PolicyRule {
                        resource_names: one(n),
                        ..base.clone()
                    }));
                }
            }
        }
    }
    for u in list(&rule.non_resource_urls) {
        for v in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(u),
                verbs: vec![v.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

/// Whether owned resources cover the wanted ones (`*`, exact, or `*/<subresource>`).
fn resources_cover(owned: &[String], wanted: &[String]) -> bool {
    if has(owned, ALL) || has_all(owned, wanted) {
        return true;
    }
    wanted.iter().all(|w| {
        has(owned, w)
            || w.split_once('/')
                .is_some_and(|(_, sub)| has(owned, &format!("*/{sub}")))
    })
}

/// Whether owned URLs cover every wanted one (exact, or an owned prefix ending in `*`).
fn urls_cover(owned: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        owned
            .iter()
            .any(|o| o == w || (o.ends_with('*') && w.starts_with(o.trim_end_matches('*'))))
    })
}

/// kube's `ruleCovers`: whether `owner` covers `sub`, a rule out of [`breakdown`].
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(list(&owner.api_groups), ALL)
        || has_all(list(&owner.api_groups), list(&sub.api_groups));
    let resources = resources_cover(list(&owner.resources), list(&sub.resources));
    let urls = urls_cover(list(&owner.non_resource_urls), list(&sub.non_resource_urls));
    let owner_names = list(&owner.resource_names);
    let sub_names = list(&sub.resource_names);
    // A grant on every name needs an owned rule on every name.
    let names =
        owner_names.is_empty() || (!sub_names.is_empty() && has_all(owner_names, sub_names));
    verbs && groups && resources && urls && names
}

/// kube's `Covers`: whether `owner` covers every rule of `requested`, and the broken-down
/// rules it does not cover.
pub(crate) fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let missing: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// kube's `CompactRules`: rules of one group and one resource with nothing but verbs are
/// merged into one rule per (group, resource), verbs in order of appearance.
pub(crate) fn compact(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let groups = list(&r.api_groups);
        let resources = list(&r.resources);
        let is_simple = list(&r.resource_names).is_empty()
            && list(&r.non_resource_urls).is_empty()
            && groups.len() == 1
            && resources.len() == 1;
        if !is_simple {
            out.push(r.clone());
            continue;
        }
        match simple
            .iter_mut()
            .find(|s| list(&s.api_groups) == groups && list(&s.resources) == resources)
        {
            Some(s) => s.verbs.extend(r.verbs.iter().cloned()),
            None => simple.push(r.clone()),
        }
    }
    out.extend(simple);
    out
}

/// kube's `ConfirmNoEscalation`: `Err` with kube's message when the rules `held` by
/// `user` (with their resolution error, if any) do not cover `requested`.
pub(crate) fn confirm_no_escalation(
    user: &Identity,
    held: &RuleSet,
    requested: &[PolicyRule],
) -> Result<(), String> {
    let (ok, missing) = covers(&held.rules, requested);
    if ok {
        return Ok(());
    }
    // kube prints the compacted missing rules as a sorted set.
    let lines: BTreeSet<String> = compact(&missing).iter().map(compact_string).collect();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.user,
        go_quoted(&user.groups),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    );
    if let Some(e) = &held.error {
        msg.push_str(&format!("; resolution errors: [{e}]"));
    }
    Err(msg)
}

/// kube's `EscalationAllowed`: `system:masters` may grant anything.
pub(crate) fn escalation_allowed(user: &Identity) -> bool {
    has(&user.groups, crate::authz::PrivilegedGroups::MASTERS)
}

#[cfg(test)]
mod tests {
    use super::super::rules::{rule, RuleBuilder};
    use super::*;

    #[test]
    fn breakdown_is_per_group_resource_verb_and_name() {
        let r = rule(&["get", "list"])
            .groups(&["", "apps"])
            .resources(&["pods"])
            .names(&["a", "b"]);
        let parts = breakdown(&r);
        assert_eq!(parts.len(), 8);
        assert_eq!(
            compact_string(&parts[0]),
            r#"{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get"]}"#
        );
        let u = breakdown(&rule(&["get", "post"]).urls(&["/a", "/b"]));
        assert_eq!(u.len(), 4);
    }

    #[test]
    fn covers_follows_wildcards_subresources_names_and_urls() {
        let owner = vec![
            rule(&["get", "list"])
                .groups(&[""])
                .resources(&["pods", "*/scale"]),
            rule(&["*"]).groups(&["apps"]).resources(&["deployments"]),
            rule(&["get"])
                .groups(&[""])
                .resources(&["secrets"])
                .names(&["mine"]),
            rule(&["get"]).urls(&["/healthz/*"]),
        ];
        let ok = |r: PolicyRule| covers(&owner, &[r]).0;
        assert!(ok(rule(&["get"]).groups(&[""]).resources(&["pods"])));
        assert!(ok(rule(&["get"])
            .groups(&[""])
            .resources(&["replicationcontrollers/scale"])));
        assert!(ok(rule(&["delete", "patch"])
            .groups(&["apps"])
            .resources(&["deployments"])));
        assert!(!ok(rule(&["delete"]).groups(&[""]).resources(&["pods"])));
        assert!(!ok(rule(&["get"])
            .groups(&["apps"])
            .resources(&["deployments/status"])));
        assert!(ok(rule(&["get"])
            .groups(&[""])
            .resources(&["secrets"])
            .names(&["mine"])));
        assert!(!ok(rule(&["get"])
            .groups(&[""])
            .resources(&["secrets"])
            .names(&["yours"])));
        // A named grant does not cover every name.
        assert!(!ok(rule(&["get"]).groups(&[""]).resources(&["secrets"])));
        assert!(ok(rule(&["get"]).urls(&["/healthz/etcd"])));
        assert!(!ok(rule(&["get"]).urls(&["/metrics"])));
        let all = vec![
            rule(&["*"]).groups(&["*"]).resources(&["*"]),
            rule(&["*"]).urls(&["*"]),
        ];
        assert!(covers(&all, &owner).0);
        let (ok, missing) = covers(
            &owner,
            &[rule(&["get", "delete", "watch"])
                .groups(&[""])
                .resources(&["pods"])],
        );
        assert!(!ok);
        assert_eq!(missing.len(), 2);
    }

    #[test]
    fn compaction_merges_simple_rules_by_group_and_resource() {
        let missing = vec![
            rule(&["delete"]).groups(&[""]).resources(&["pods"]),
            rule(&["get"])
                .groups(&[""])
                .resources(&["secrets"])
                .names(&["x"]),
            rule(&["watch"]).groups(&[""]).resources(&["pods"]),
        ];
        let c: Vec<String> = compact(&missing).iter().map(compact_string).collect();
        assert_eq!(
            c,
            [
                r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["x"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}"#,
            ]
        );
    }

    #[test]
    fn escalation_message_is_kubes() {
        let user = Identity {
            user: "x".into(),
            groups: vec!["system:authenticated".into(), "devs".into()],
        };
        let held = RuleSet {
            rules: vec![rule(&["get", "list"]).groups(&[""]).resources(&["pods"])],
            error: None,
        };
        assert!(confirm_no_escalation(
            &user,
            &held,
            &[rule(&["get"]).groups(&[""]).resources(&["pods"])]
        )
        .is_ok());
        let e = confirm_no_escalation(
            &user,
            &held,
            &[
                rule(&["get", "delete"]).groups(&[""]).resources(&["pods"]),
                rule(&["get"]).urls(&["/metrics"]),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "user \"x\" (groups=[\"system:authenticated\" \"devs\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
             {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
        let held = RuleSet {
            rules: vec![],
            error: Some(r#"clusterrole.rbac.authorization.k8s.io "gone" not found"#.into()),
        };
        let e = confirm_no_escalation(
            &user,
            &held,
            &[rule(&["get"]).groups(&[""]).resources(&["pods"])],
        )
        .unwrap_err();
        assert!(
            e.ends_with(r#"Verbs:["get"]}; resolution errors: [clusterrole.rbac.authorization.k8s.io "gone" not found]"#),
            "{e}"
        );
        assert!(!escalation_allowed(&user));
        let root = Identity {
            user: "root".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(escalation_allowed(&root));
    }
}
