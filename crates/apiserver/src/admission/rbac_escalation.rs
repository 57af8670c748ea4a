//! RBAC's privilege-escalation prevention on writes of roles and bindings, as kube's
//! policy-based registries (`pkg/registry/rbac/{role,clusterrole,rolebinding,
//! clusterrolebinding}/policybased`, `pkg/registry/rbac/escalation_check.go`): nobody
//! grants, through a role or a binding, a permission they do not hold themselves.
//!
//! - A Role or ClusterRole may be written by whoever holds every rule it lists (in its
//!   namespace for a Role, cluster-wide for a ClusterRole), or may `escalate` it. A
//!   ClusterRole with an `aggregationRule` (before or after an update) can gather any
//!   permission, so it takes full authority (`*` on everything) unless `escalate` is
//!   granted.
//! - A RoleBinding or ClusterRoleBinding may be written by whoever may `bind` the role it
//!   references (in the binding's namespace for a RoleBinding), or holds every rule of
//!   that role.
//!
//! `system:masters` and the server itself skip the check, and an update that only
//! touches what the garbage collector changes (owner references, finalizers) is not
//! checked. kube runs these checks in the registry before the strategy validates; here the
//! plugin runs them in the mutating stage, after the mutating plugins, which is the same
//! place in the write path.

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::k8s_openapi::api::rbac::v1::PolicyRule;
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation, Plugin};
use crate::authn::Identity;
use crate::authz::rbac::escalation::escalation_allowed;
use crate::authz::rbac::rules::ALL;
use crate::authz::rbac::Rbac;
use crate::authz::{self, Decision, Target};
use crate::status::{qualified, ApiError, ApiResult};
use crate::storage::{decode, key};

/// The RBAC API group.
const GROUP: &str = "rbac.authorization.k8s.io";

/// The escalation check of RBAC writes.
pub(crate) struct RbacEscalation {
    /// Who holds which rules.
    rbac: Arc<Rbac>,
    /// The server's authorizer chain, asked whether the writer may `escalate` or `bind`.
    authz: Arc<authz::Chain>,
    /// Where referenced roles are read (kube's registry getter: a missing role is a 404).
    store: Arc<dyn Store>,
}

impl RbacEscalation {
    /// The check, with the server's RBAC rules, authorizer and store.
    pub fn new(rbac: Arc<Rbac>, authz: Arc<authz::Chain>, store: Arc<dyn Store>) -> Self {
        RbacEscalation { rbac, authz, store }
    }

    /// Whether the authorizer allows `user` the `verb` on `resource` `name` of the RBAC
    /// group in `namespace` (kube's `RoleEscalationAuthorized` / `BindingAuthorized`).
    fn authorized(
        &self,
        user: &Identity,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let a = authz::Attributes {
            user,
            verb,
            target: Target::Resource {
                group: GROUP,
                resource,
                subresource: None,
                namespace,
                name,
            },
        };
        self.authz.decide(&a) == Decision::Allow
    }

    /// The rules of the role `kind`/`name` a binding in `namespace` references, read from
    /// the store (kube's `GetRoleReferenceRules`); `None` for a kind that is neither Role
    /// nor ClusterRole (validation refuses it next).
    fn role_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> ApiResult<Option<Vec<PolicyRule>>> {
        let (plural, ns) = match kind {
            "Role" => ("roles", namespace),
            "ClusterRole" => ("clusterroles", None),
            _ => return Ok(None),
        };
        let info = skiff_resources::lookup(GROUP, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))?;
        let kv = self
            .store
            .get(&key(info, ns, name))?
            .ok_or_else(|| ApiError::not_found(GROUP, plural, name))?;
        Ok(Some(rules_of(&decode(&kv)?)))
    }

    /// Roles: the writer holds the rules, or may escalate.
    fn check_role(
        &self,
        a: &Attributes<'_>,
        user: &Identity,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        // kube asks with the request's name, which a create (POST to the collection) has not.
        let url_name = (a.operation == Operation::Update).then_some(a.name);
        if self.authorized(user, "escalate", a.info.plural, a.namespace, url_name) {
            return Ok(());
        }
        let namespace = a.namespace.unwrap_or("");
        self.rbac
            .confirm_no_escalation(user, namespace, &rules_of(obj))
            .map_err(|why| forbidden(a, &why))?;
        let aggregates = |o: &Value| {
            o.pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty())
        };
        if a.info.kind == "ClusterRole" && (aggregates(obj) || old.is_some_and(aggregates)) {
            // An aggregated role can gather anything, and changing its rule can keep it
            // from being tightened: full authority only.
            self.rbac
                .confirm_no_escalation(user, "", &full_authority())
                .map_err(|_| {
                    forbidden(
                        a,
                        "must have cluster-admin privileges to use the aggregationRule",
                    )
                })?;
        }
        Ok(())
    }

    /// Bindings: the writer may bind the role, or holds its rules.
    fn check_binding(&self, a: &Attributes<'_>, user: &Identity, obj: &Value) -> ApiResult<()> {
        let field = |f: &str| {
            obj.pointer(&format!("/roleRef/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (kind, name) = (field("kind"), field("name"));
        let resource = match kind {
            "Role" => "roles",
            "ClusterRole" => "clusterroles",
            // Validation refuses any other kind.
            _ => return Ok(()),
        };
        if field("apiGroup") == GROUP
            && self.authorized(user, "bind", resource, a.namespace, Some(name))
        {
            return Ok(());
        }
        let Some(rules) = self.role_rules(kind, name, a.namespace)? else {
            return Ok(());
        };
        self.rbac
            .confirm_no_escalation(user, a.namespace.unwrap_or(""), &rules)
            .map_err(|why| forbidden(a, &why))
    }
}

impl Plugin for RbacEscalation {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.group == GROUP
    }

    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        let Some(user) = a.user else {
            // The server's own writes (bootstrap policy).
            return Ok(());
        };
        if a.operation == Operation::Delete || escalation_allowed(user) {
            return Ok(());
        }
        if old.is_some_and(|old| only_gc_fields_change(obj, old)) {
            return Ok(());
        }
        match a.info.kind {
            "Role" | "ClusterRole" => self.check_role(a, user, obj, old),
            "RoleBinding" | "ClusterRoleBinding" => self.check_binding(a, user, obj),
            _ => Ok(()),
        }
    }
}

/// The rules of a role object (none when it has no valid `rules`: validation says why).
fn rules_of(role: &Value) -> Vec<PolicyRule> {
    role.get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

/// kube's `fullAuthority`: every verb on every resource and every URL.
fn full_authority() -> Vec<PolicyRule> {
    let all = || vec![ALL.to_string()];
    vec![
        PolicyRule {
            api_groups: Some(all()),
            resources: Some(all()),
            verbs: all(),
            ..PolicyRule::default()
        },
        PolicyRule {
            non_resource_urls: Some(all()),
            verbs: all(),
            ..PolicyRule::default()
        },
    ]
}

/// kube's `IsOnlyMutatingGCFields`: `obj` differs from `old` in nothing but what the
/// garbage collector writes (owner references and finalizers) and what the server
/// maintains on every write (resourceVersion, managedFields).
fn only_gc_fields_change(obj: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "ownerReferences",
                "finalizers",
                "selfLink",
                "resourceVersion",
                "managedFields",
            ] {
                m.remove(f);
            }
        }
        v
    };
    strip(obj) == strip(old)
}

/// kube's `NewForbidden` on the written object: `<resource>.<group> "<name>" is forbidden:
/// <why>`.
fn forbidden(a: &Attributes<'_>, why: &str) -> ApiError {
    let plural = a.info.plural;
    ApiError::forbidden(format!(
        "{} {:?} is forbidden: {why}",
        qualified(GROUP, plural),
        a.name
    ))
    .with_details(json!({"name": a.name, "group": GROUP, "kind": plural}))
}

#[cfg(test)]
mod tests {
    use skiff_api::k8s_openapi::api::rbac::v1::{
        ClusterRole, ClusterRoleBinding, RoleRef, Subject,
    };

    use super::*;
    use crate::authz::rbac::{Policy, RbacObject};

    fn bob() -> Identity {
        Identity {
            user: "bob".into(),
            groups: vec!["system:authenticated".into()],
        }
    }

    fn cluster_role(name: &str, rules: Value) -> ClusterRole {
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap()
    }

    fn bound_to_bob(binding: &str, role: &str) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: serde_json::from_value(json!({"name": binding})).unwrap(),
            role_ref: RoleRef {
                api_group: GROUP.into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "bob".into(),
                api_group: Some(GROUP.into()),
                ..Subject::default()
            }]),
        }
    }

    /// A plugin where bob holds `rules` cluster-wide (and `escalate`/`bind` when they
    /// say so), with an empty store.
    fn plugin(rules: Value) -> RbacEscalation {
        let policy = Policy::from_objects([
            RbacObject::ClusterRole(cluster_role("bobs", rules)),
            RbacObject::ClusterRoleBinding(bound_to_bob("bobs", "bobs")),
        ]);
        let rbac = Arc::new(Rbac::with_policy(policy));
        let chain = Arc::new(authz::Chain::new(vec![
            Box::new(authz::PrivilegedGroups::new(&[
                authz::PrivilegedGroups::MASTERS,
            ])),
            Box::new(rbac.clone()),
        ]));
        let store: Arc<dyn Store> = Arc::new(skiff_store::SqliteStore::in_memory().unwrap());
        // A stored ClusterRole "deleter" for bindings to reference.
        let info = skiff_resources::lookup(GROUP, "v1", "clusterroles").unwrap();
        let deleter =
            role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]));
        store
            .create(
                &key(info, None, "deleter"),
                &crate::storage::encode(&deleter),
            )
            .unwrap();
        RbacEscalation::new(rbac, chain, store)
    }

    fn attrs<'a>(plural: &str, op: Operation, user: &'a Identity) -> Attributes<'a> {
        let info = skiff_resources::lookup(GROUP, "v1", plural).unwrap();
        Attributes {
            info,
            requested: info,
            operation: op,
            namespace: info.namespaced.then_some("d"),
            name: "x",
            subresource: None,
            user: Some(user),
        }
    }

    fn role(rules: Value) -> Value {
        json!({"metadata": {"name": "x"}, "rules": rules})
    }

    #[test]
    fn roles_need_held_rules_or_escalate() {
        let u = bob();
        let p =
            plugin(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]));
        let a = attrs("clusterroles", Operation::Create, &u);
        let mut ok = role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
        p.admit(&a, &mut ok, None).unwrap();
        let mut more =
            role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]));
        let e = p.admit(&a, &mut more, None).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        // A Role is checked in its namespace: the cluster-wide grant covers it too.
        let a = attrs("roles", Operation::Create, &u);
        let e = p.admit(&a, &mut more, None).unwrap_err();
        assert!(
            e.message
                .starts_with("roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"bob\""),
            "{}",
            e.message
        );
        // The server and system:masters skip the check.
        let none = Attributes { user: None, ..a };
        p.admit(&none, &mut more, None).unwrap();
        let root = Identity {
            user: "root".into(),
            groups: vec!["system:masters".into()],
        };
        p.admit(&attrs("roles", Operation::Create, &root), &mut more, None)
            .unwrap();
        // escalate on roles: anything goes.
        let p = plugin(
            json!([{"apiGroups": [GROUP], "resources": ["roles", "clusterroles"], "verbs": ["escalate"]}]),
        );
        p.admit(
            &attrs("clusterroles", Operation::Create, &u),
            &mut more,
            None,
        )
        .unwrap();
        p.admit(&attrs("roles", Operation::Update, &u), &mut more, Some(&ok))
            .unwrap();
    }

    #[test]
    fn escalate_on_a_name_does_not_cover_creates() {
        let u = bob();
        let p = plugin(
            json!([{"apiGroups": [GROUP], "resources": ["clusterroles"], "verbs": ["escalate"], "resourceNames": ["x"]}]),
        );
        let mut more =
            role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]));
        assert!(p
            .admit(
                &attrs("clusterroles", Operation::Create, &u),
                &mut more,
                None
            )
            .is_err());
        let old = role(json!([]));
        p.admit(
            &attrs("clusterroles", Operation::Update, &u),
            &mut more,
            Some(&old),
        )
        .unwrap();
    }

    #[test]
    fn aggregation_takes_full_authority() {
        let u = bob();
        // Everything on core resources (`*` on every group would grant `escalate` too).
        let p = plugin(json!([{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}]));
        let mut agg = json!({"metadata": {"name": "x"}, "rules": [], "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let e = p
            .admit(
                &attrs("clusterroles", Operation::Create, &u),
                &mut agg,
                None,
            )
            .unwrap_err();
        assert_eq!(
            e.message,
            "clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        );
        // Dropping the aggregation rule of a role is checked too.
        let mut plain = role(json!([]));
        assert!(p
            .admit(
                &attrs("clusterroles", Operation::Update, &u),
                &mut plain,
                Some(&agg)
            )
            .is_err());
        let p = plugin(json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]));
        p.admit(
            &attrs("clusterroles", Operation::Create, &u),
            &mut agg,
            None,
        )
        .unwrap();
    }

    #[test]
    fn gc_only_updates_are_not_checked() {
        let u = bob();
        let p = plugin(json!([]));
        let old = role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]));
        let mut gc = old.clone();
        gc["metadata"]["finalizers"] = json!(["f"]);
        gc["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "1"}]);
        p.admit(
            &attrs("clusterroles", Operation::Update, &u),
            &mut gc,
            Some(&old),
        )
        .unwrap();
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(p
            .admit(
                &attrs("clusterroles", Operation::Update, &u),
                &mut labelled,
                Some(&old)
            )
            .is_err());
    }

    #[test]
    fn bindings_need_bind_or_the_roles_rules() {
        let u = bob();
        let binding = |kind: &str, name: &str| json!({"metadata": {"name": "x"}, "roleRef": {"apiGroup": GROUP, "kind": kind, "name": name}, "subjects": []});
        // Missing role: kube's 404 from the role getter.
        let p = plugin(json!([]));
        let e = p
            .admit(
                &attrs("rolebindings", Operation::Create, &u),
                &mut binding("Role", "r"),
                None,
            )
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "roles.rbac.authorization.k8s.io \"r\" not found")
        );
        // A stored role whose rules bob does not hold: kube's escalation message.
        let e = p
            .admit(
                &attrs("clusterrolebindings", Operation::Create, &u),
                &mut binding("ClusterRole", "deleter"),
                None,
            )
            .unwrap_err();
        assert_eq!(
            e.message,
            "clusterrolebindings.rbac.authorization.k8s.io \"x\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        // Holding the rules is enough.
        let p = plugin(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]));
        p.admit(
            &attrs("rolebindings", Operation::Create, &u),
            &mut binding("ClusterRole", "deleter"),
            None,
        )
        .unwrap();
        // bind on that role name: allowed without holding it.
        let p = plugin(
            json!([{"apiGroups": [GROUP], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["admin"]}]),
        );
        p.admit(
            &attrs("rolebindings", Operation::Create, &u),
            &mut binding("ClusterRole", "admin"),
            None,
        )
        .unwrap();
        let e = p
            .admit(
                &attrs("rolebindings", Operation::Create, &u),
                &mut binding("ClusterRole", "edit"),
                None,
            )
            .unwrap_err();
        assert_eq!(e.code, 404, "{}", e.message);
    }
}
