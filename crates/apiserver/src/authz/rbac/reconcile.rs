//! kube's `reconciliation` package as pure functions: how the server brings an existing
//! default ClusterRole or ClusterRoleBinding up to date at start without undoing what an
//! administrator added. An object annotated `rbac.authorization.kubernetes.io/autoupdate:
//! "false"` is left alone; otherwise missing labels, annotations, rules (those the existing
//! rules do not cover), aggregation selectors and subjects are added, and nothing is
//! removed.

use std::collections::BTreeMap;

use skiff_api::k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::bootstrap::AUTOUPDATE;
use super::escalation::covers;

/// Whether the administrator turned reconciling off for this object.
fn frozen(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(AUTOUPDATE))
        .is_some_and(|v| v == "false")
}

/// `existing` with the keys of `expected` it lacks (kube: existing values win).
fn merged(
    expected: &Option<BTreeMap<String, String>>,
    existing: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let mut out = expected.clone().unwrap_or_default();
    out.extend(existing.clone().unwrap_or_default());
    (!out.is_empty()).then_some(out)
}

/// The reconciled role, or `None` when `existing` needs no change.
pub(crate) fn cluster_role(expected: &ClusterRole, existing: &ClusterRole) -> Option<ClusterRole> {
    if frozen(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    out.metadata.labels = merged(&expected.metadata.labels, &existing.metadata.labels);
    out.metadata.annotations = merged(
        &expected.metadata.annotations,
        &existing.metadata.annotations,
    );
    match (&expected.aggregation_rule, &existing.aggregation_rule) {
        (Some(want), Some(have)) => {
            let mut selectors = have.cluster_role_selectors.clone().unwrap_or_default();
            for s in want.cluster_role_selectors.iter().flatten() {
                if !selectors.contains(s) {
                    selectors.push(s.clone());
                }
            }
            let mut rule = have.clone();
            rule.cluster_role_selectors = Some(selectors);
            out.aggregation_rule = Some(rule);
        }
        (Some(want), None) => out.aggregation_rule = Some(want.clone()),
        _ => {}
    }
    let have = existing.rules.clone().unwrap_or_default();
    let mut rules = have.clone();
    for r in expected.rules.iter().flatten() {
        if !covers(&have, std::slice::from_ref(r)).0 {
            rules.push(r.clone());
        }
    }
    if !rules.is_empty() || existing.rules.is_some() {
        out.rules = Some(rules);
    }
    (out != *existing).then_some(out)
}

/// The reconciled binding, or `None` when `existing` needs no change. A binding whose
/// role reference differs cannot be updated (roleRef is immutable): the caller replaces
/// it, as kube does, and this answers the replacement.
pub(crate) fn cluster_role_binding(
    expected: &ClusterRoleBinding,
    existing: &ClusterRoleBinding,
) -> Option<ClusterRoleBinding> {
    if frozen(&existing.metadata) {
        return None;
    }
    let mut out = existing.clone();
    out.metadata.labels = merged(&expected.metadata.labels, &existing.metadata.labels);
    out.metadata.annotations = merged(
        &expected.metadata.annotations,
        &existing.metadata.annotations,
    );
    if out.role_ref != expected.role_ref {
        out.role_ref = expected.role_ref.clone();
        out.subjects = expected.subjects.clone();
    }
    let mut subjects = out.subjects.clone().unwrap_or_default();
    for s in expected.subjects.iter().flatten() {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    out.subjects = (!subjects.is_empty()).then_some(subjects);
    (out != *existing).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::bootstrap::{aggregated_cluster_roles, cluster_role_bindings};
    use super::super::rules::{rule, RuleBuilder};
    use super::*;
    use skiff_api::k8s_openapi::api::rbac::v1::Subject;

    fn role(name: &str) -> ClusterRole {
        aggregated_cluster_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap()
    }

    #[test]
    fn an_up_to_date_role_is_left_alone() {
        let r = role("view");
        assert_eq!(cluster_role(&r, &r), None);
    }

    #[test]
    fn missing_rules_are_added_and_extra_ones_kept() {
        let expected = role("system:node-proxier");
        let mut existing = expected.clone();
        let extra = rule(&["get"])
            .groups(&["example.com"])
            .resources(&["widgets"]);
        existing.rules = Some(vec![extra.clone()]);
        existing.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
        let out = cluster_role(&expected, &existing).unwrap();
        let rules = out.rules.unwrap();
        assert_eq!(rules[0], extra);
        assert_eq!(rules.len(), 1 + expected.rules.unwrap().len());
        let labels = out.metadata.labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels["kubernetes.io/bootstrapping"], "rbac-defaults");
    }

    #[test]
    fn autoupdate_false_freezes_an_object() {
        let expected = role("edit");
        let mut existing = expected.clone();
        existing.rules = Some(vec![]);
        existing
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(AUTOUPDATE.into(), "false".into());
        assert_eq!(cluster_role(&expected, &existing), None);
    }

    #[test]
    fn bindings_gain_missing_subjects() {
        let expected = cluster_role_bindings()
            .into_iter()
            .find(|b| b.metadata.name.as_deref() == Some("system:discovery"))
            .unwrap();
        let mut existing = expected.clone();
        let alice = Subject {
            kind: "User".into(),
            name: "alice".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        };
        existing.subjects = Some(vec![alice.clone()]);
        let out = cluster_role_binding(&expected, &existing).unwrap();
        let subjects = out.subjects.unwrap();
        assert_eq!(subjects[0], alice);
        assert_eq!(subjects.len(), 2);
        assert_eq!(cluster_role_binding(&expected, &expected), None);
    }
}
