//! Role-based access control, as kube-apiserver's RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac`): a request is allowed when a rule of a role bound
//! to the user allows it. ClusterRoleBindings grant everywhere; a namespace's
//! RoleBindings grant in that namespace only, whether they name a Role of the namespace
//! or a ClusterRole. Nothing denies: a request no rule allows gets no opinion, with an
//! `RBAC: ...` reason only when a bound role could not be found, as kube does.
//!
//! [`Policy`] is the index of roles and bindings (bindings indexed by namespace and by
//! subject, so a request looks at its user's and groups' bindings only); [`Rbac`] holds
//! the current one behind a lock and is the [`Authorizer`]. [`rules`] matches rules and
//! subjects, [`escalation`] is kube's no-escalation check of role and binding writes, and
//! [`bootstrap`] the default roles and bindings kube-apiserver creates.

pub(crate) mod bootstrap;
pub(crate) mod escalation;
pub(crate) mod reconcile;
pub(crate) mod rules;
pub(crate) mod sync;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use skiff_api::k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};

use crate::authn::Identity;
use crate::authz::{Attributes, Authorizer, Decision, RulesReview, Target};

use rules::{
    applies_to, describe_subject, list, rule_allows, service_account_user, subject_namespace,
};

/// The four RBAC kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RbacKind {
    /// A namespaced set of rules.
    Role,
    /// A cluster-wide set of rules.
    ClusterRole,
    /// Grants a Role or ClusterRole in one namespace.
    RoleBinding,
    /// Grants a ClusterRole everywhere.
    ClusterRoleBinding,
}

impl RbacKind {
    #[cfg(test)]
    /// The kind of a `kind` field, if it is an RBAC one.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "Role" => RbacKind::Role,
            "ClusterRole" => RbacKind::ClusterRole,
            "RoleBinding" => RbacKind::RoleBinding,
            "ClusterRoleBinding" => RbacKind::ClusterRoleBinding,
            _ => return None,
        })
    }
}

/// An RBAC object to index.
#[derive(Debug, Clone)]
pub(crate) enum RbacObject {
    /// A Role.
    Role(Role),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
}

impl RbacObject {
    /// Decodes a stored object of `kind`.
    pub fn from_json(kind: RbacKind, v: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            RbacKind::Role => RbacObject::Role(serde_json::from_value(v)?),
            RbacKind::ClusterRole => RbacObject::ClusterRole(serde_json::from_value(v)?),
            RbacKind::RoleBinding => RbacObject::RoleBinding(serde_json::from_value(v)?),
            RbacKind::ClusterRoleBinding => {
                RbacObject::ClusterRoleBinding(serde_json::from_value(v)?)
            }
        })
    }
}

/// A binding as the index keeps it.
#[derive(Debug)]
struct Bound {
    /// The binding's name.
    name: String,
    /// The RoleBinding's namespace; `""` for a ClusterRoleBinding.
    namespace: String,
    /// `Role` or `ClusterRole` (anything else resolves to an error, as in kube).
    role_kind: String,
    /// The bound role's name.
    role_name: String,
    /// Who is granted.
    subjects: Vec<Subject>,
}

impl Bound {
    /// The first subject that applies to `user` (kube reports and matches by it).
    fn subject_for(&self, user: &Identity) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| applies_to(user, s, &self.namespace))
    }

    /// The user and group names whose requests this binding may apply to.
    fn keys(&self) -> (Vec<String>, Vec<String>) {
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        for s in &self.subjects {
            match s.kind.as_str() {
                "User" => users.push(s.name.clone()),
                "Group" => groups.push(s.name.clone()),
                "ServiceAccount" => {
                    if let Some(ns) = subject_namespace(s, &self.namespace) {
                        users.push(service_account_user(ns, &s.name));
                    }
                }
                _ => {}
            }
        }
        for v in [&mut users, &mut groups] {
            v.sort();
            v.dedup();
        }
        (users, groups)
    }

    /// kube's binding describer, naming the binding that allowed a request.
    fn describe(&self, s: &Subject) -> String {
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                self.name,
                self.role_kind,
                self.role_name,
                describe_subject(s, "")
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", self.name, self.namespace),
                self.role_kind,
                self.role_name,
                describe_subject(s, &self.namespace)
            )
        }
    }
}

/// The rules of one role.
type Rules = Arc<Vec<PolicyRule>>;

/// The bindings of one scope (the cluster, or a namespace), indexed by subject, and the
/// roles of that scope (ClusterRoles for the cluster scope).
#[derive(Debug, Clone, Default)]
struct Scope {
    bindings: HashMap<String, Arc<Bound>>,
    by_user: HashMap<String, Vec<Arc<Bound>>>,
    by_group: HashMap<String, Vec<Arc<Bound>>>,
    roles: HashMap<String, Rules>,
}

impl Scope {
    fn insert_binding(&mut self, b: Bound) {
        self.remove_binding(&b.name);
        let b = Arc::new(b);
        let (users, groups) = b.keys();
        for u in users {
            self.by_user.entry(u).or_default().push(b.clone());
        }
        for g in groups {
            self.by_group.entry(g).or_default().push(b.clone());
        }
        self.bindings.insert(b.name.clone(), b);
    }

    fn remove_binding(&mut self, name: &str) {
        let Some(old) = self.bindings.remove(name) else {
            return;
        };
        let (users, groups) = old.keys();
        for (index, keys) in [(&mut self.by_user, users), (&mut self.by_group, groups)] {
            for k in keys {
                if let Some(v) = index.get_mut(&k) {
                    v.retain(|b| !Arc::ptr_eq(b, &old));
                    if v.is_empty() {
                        index.remove(&k);
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.roles.is_empty()
    }

    /// Each binding of this scope that applies to `user`, once, with the subject that
    /// matched; `f` returns false to stop. Returns false when stopped.
    fn visit_bindings(&self, user: &Identity, f: &mut dyn FnMut(&Bound, &Subject) -> bool) -> bool {
        // A binding is found under every key of its subjects; it is visited under the key
        // of its first applicable subject only, so at most once, allocation-free.
        if let Some(bs) = self.by_user.get(user.user.as_str()) {
            for b in bs {
                if let Some(s) = b.subject_for(user) {
                    if s.kind != "Group" && !f(b, s) {
                        return false;
                    }
                }
            }
        }
        for g in &user.groups {
            let Some(bs) = self.by_group.get(g.as_str()) else {
                continue;
            };
            for b in bs {
                if let Some(s) = b.subject_for(user) {
                    if s.kind == "Group" && s.name == *g && !f(b, s) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Where a rule came from, for the visitor.
struct Source<'a> {
    binding: &'a Bound,
    subject: &'a Subject,
}

/// What [`Policy::visit_rules`] calls with each granted rule and its source, or with a
/// role that could not be resolved; returns false to stop.
type RuleVisitor<'f> = dyn FnMut(Result<(&Source<'_>, &PolicyRule), String>) -> bool + 'f;

/// An index of roles, cluster roles and bindings: the state the authorizer decides on.
/// Pure: built with [`Policy::apply`] and [`Policy::remove`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    /// ClusterRoleBindings and ClusterRoles.
    cluster: Arc<Scope>,
    /// RoleBindings and Roles by namespace.
    namespaces: HashMap<String, Arc<Scope>>,
}

impl Policy {
    /// An empty policy (nobody may do anything).
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy of `objects`.
    pub fn from_objects(objects: impl IntoIterator<Item = RbacObject>) -> Self {
        let mut p = Policy::new();
        for o in objects {
            p.apply(o);
        }
        p
    }

    fn scope_mut(&mut self, ns: &str) -> &mut Scope {
        Arc::make_mut(self.namespaces.entry(ns.to_string()).or_default())
    }

    /// Adds or replaces an object.
    pub fn apply(&mut self, o: RbacObject) {
        match o {
            RbacObject::ClusterRole(r) => {
                let name = r.metadata.name.unwrap_or_default();
                let rules = Arc::new(r.rules.unwrap_or_default());
                Arc::make_mut(&mut self.cluster).roles.insert(name, rules);
            }
            RbacObject::Role(r) => {
                let ns = r.metadata.namespace.unwrap_or_default();
                let name = r.metadata.name.unwrap_or_default();
                let rules = Arc::new(r.rules.unwrap_or_default());
                self.scope_mut(&ns).roles.insert(name, rules);
            }
            RbacObject::ClusterRoleBinding(b) => {
                let bound = Bound {
                    name: b.metadata.name.unwrap_or_default(),
                    namespace: String::new(),
                    role_kind: b.role_ref.kind,
                    role_name: b.role_ref.name,
                    subjects: b.subjects.unwrap_or_default(),
                };
                Arc::make_mut(&mut self.cluster).insert_binding(bound);
            }
            RbacObject::RoleBinding(b) => {
                let ns = b.metadata.namespace.unwrap_or_default();
                let bound = Bound {
                    name: b.metadata.name.unwrap_or_default(),
                    namespace: ns.clone(),
                    role_kind: b.role_ref.kind,
                    role_name: b.role_ref.name,
                    subjects: b.subjects.unwrap_or_default(),
                };
                self.scope_mut(&ns).insert_binding(bound);
            }
        }
    }

    /// Removes an object (`namespace` is ignored for the cluster-scoped kinds).
    pub fn remove(&mut self, kind: RbacKind, namespace: Option<&str>, name: &str) {
        match kind {
            RbacKind::ClusterRole => {
                Arc::make_mut(&mut self.cluster).roles.remove(name);
            }
            RbacKind::ClusterRoleBinding => Arc::make_mut(&mut self.cluster).remove_binding(name),
            RbacKind::Role | RbacKind::RoleBinding => {
                let ns = namespace.unwrap_or_default();
                let Some(scope) = self.namespaces.get_mut(ns) else {
                    return;
                };
                let scope = Arc::make_mut(scope);
                if kind == RbacKind::Role {
                    scope.roles.remove(name);
                } else {
                    scope.remove_binding(name);
                }
                if scope.is_empty() {
                    self.namespaces.remove(ns);
                }
            }
        }
    }

    /// The rules a binding grants, or kube's error when its role does not exist.
    fn role_rules(&self, b: &Bound) -> Result<&[PolicyRule], String> {
        match b.role_kind.as_str() {
            "ClusterRole" => self
                .cluster
                .roles
                .get(&b.role_name)
                .map(|r| r.as_slice())
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {:?} not found",
                        b.role_name
                    )
                }),
            "Role" => self
                .namespaces
                .get(&b.namespace)
                .and_then(|s| s.roles.get(&b.role_name))
                .map(|r| r.as_slice())
                .ok_or_else(|| {
                    format!("role.rbac.authorization.k8s.io {:?} not found", b.role_name)
                }),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// kube's `VisitRulesFor`: every rule granted to `user` by the ClusterRoleBindings,
    /// then by the RoleBindings of `namespace` (if any), and each role that could not be
    /// resolved; `f` returns false to stop.
    fn visit_rules(&self, user: &Identity, namespace: &str, f: &mut RuleVisitor<'_>) {
        let local = match namespace {
            "" => None,
            ns => self.namespaces.get(ns).map(|s| &**s),
        };
        for scope in [Some(&*self.cluster), local].into_iter().flatten() {
            let go_on = scope.visit_bindings(user, &mut |binding, subject| match self
                .role_rules(binding)
            {
                Err(e) => f(Err(e)),
                Ok(rules) => {
                    let src = Source { binding, subject };
                    rules.iter().all(|r| f(Ok((&src, r))))
                }
            });
            if !go_on {
                return;
            }
        }
    }

    /// Whether `a` is allowed, with kube's reason: `RBAC: allowed by ...` when allowed,
    /// else `RBAC: <errors>` when roles could not be resolved, else empty. What a
    /// SubjectAccessReview reports.
    pub fn explain(&self, a: &Attributes<'_>) -> (bool, String) {
        let mut allowed_by = None;
        let errors = self.decide(a, &mut |src| {
            allowed_by = Some(src.binding.describe(src.subject));
        });
        match allowed_by {
            Some(by) => (true, format!("RBAC: allowed by {by}")),
            None => (false, denial_reason(errors)),
        }
    }

    #[cfg(test)]
    /// Whether `a` is allowed.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        let mut allowed = false;
        self.decide(a, &mut |_| allowed = true);
        allowed
    }

    /// Visits the user's rules until one allows `a` (then calls `on_allow` with its source)
    /// and returns the resolution errors met. The hot path: nothing is allocated unless a
    /// role is missing.
    fn decide(&self, a: &Attributes<'_>, on_allow: &mut dyn FnMut(&Source<'_>)) -> Vec<String> {
        let namespace = match &a.target {
            Target::Resource { namespace, .. } => namespace.unwrap_or(""),
            Target::Path(_) => "",
        };
        let mut errors = Vec::new();
        self.visit_rules(a.user, namespace, &mut |r| match r {
            Ok((src, rule)) => {
                if rule_allows(a, rule) {
                    on_allow(src);
                    return false;
                }
                true
            }
            Err(e) => {
                errors.push(e);
                true
            }
        });
        errors
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide grants included), as kube's
    /// `RulesFor`: what SelfSubjectRulesReview lists and escalation checks compare with.
    pub fn rules_for(&self, user: &Identity, namespace: &str) -> RuleSet {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, &mut |r| {
            match r {
                Ok((_, rule)) => set.rules.push(rule.clone()),
                Err(e) => errors.push(e),
            }
            true
        });
        if !errors.is_empty() {
            set.error = Some(aggregate(errors));
        }
        set
    }
}

/// The reason of a request no rule allows: `RBAC: <errors>`, or empty without errors.
fn denial_reason(errors: Vec<String>) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("RBAC: {}", aggregate(errors))
    }
}

/// kube's `utilerrors.NewAggregate(...).Error()`: one message alone, several deduplicated
/// in brackets. Sorted, since kube's order is its informer's and so arbitrary.
fn aggregate(mut errors: Vec<String>) -> String {
    if errors.len() == 1 {
        return errors.swap_remove(0);
    }
    errors.sort();
    errors.dedup();
    if errors.len() == 1 {
        return errors.swap_remove(0);
    }
    format!("[{}]", errors.join(", "))
}

/// The rules a user holds in a namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RuleSet {
    /// Every granted rule, in evaluation order.
    pub rules: Vec<PolicyRule>,
    /// Roles that could not be resolved (kube's aggregate error): the set is incomplete.
    pub error: Option<String>,
}

impl RuleSet {
    /// The resource rules, as SelfSubjectRulesReview's `resourceRules` (verbs, groups,
    /// resources, names).
    pub fn resource_rules(&self) -> Vec<PolicyRule> {
        self.rules
            .iter()
            .filter(|r| !list(&r.resources).is_empty())
            .map(|r| PolicyRule {
                non_resource_urls: None,
                ..r.clone()
            })
            .collect()
    }

    /// The non-resource rules, as SelfSubjectRulesReview's `nonResourceRules` (verbs, URLs).
    pub fn non_resource_rules(&self) -> Vec<PolicyRule> {
        self.rules
            .iter()
            .filter(|r| !list(&r.non_resource_urls).is_empty())
            .map(|r| PolicyRule {
                verbs: r.verbs.clone(),
                non_resource_urls: r.non_resource_urls.clone(),
                ..PolicyRule::default()
            })
            .collect()
    }

    #[cfg(test)]
    /// SelfSubjectRulesReview's `incomplete`: some role could not be resolved.
    pub fn incomplete(&self) -> bool {
        self.error.is_some()
    }
}

/// The RBAC authorizer: the current [`Policy`], replaced or updated under a lock that
/// requests hold only long enough to clone an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct Rbac {
    policy: RwLock<Arc<Policy>>,
}

impl Rbac {
    /// An authorizer with an empty policy.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(test)]
    /// An authorizer deciding on `policy`.
    pub fn with_policy(policy: Policy) -> Self {
        Rbac {
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    /// The current policy (a consistent snapshot).
    pub fn snapshot(&self) -> Arc<Policy> {
        // A panic while holding the lock cannot leave the Arc half-written: go on.
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the whole policy (a relist).
    pub fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Adds or replaces an object (an informer's add or update). Requests in flight keep
    /// the snapshot they took; the policy is copied only if one is in flight.
    pub fn apply(&self, o: RbacObject) {
        let mut p = self.policy.write().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(&mut p).apply(o);
    }

    /// Removes an object (an informer's delete).
    pub fn remove(&self, kind: RbacKind, namespace: Option<&str>, name: &str) {
        let mut p = self.policy.write().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(&mut p).remove(kind, namespace, name);
    }

    /// Whether `a` is allowed and why ([`Policy::explain`]): for SubjectAccessReview.
    pub fn explain(&self, a: &Attributes<'_>) -> (bool, String) {
        self.snapshot().explain(a)
    }

    /// The rules `user` holds in `namespace`: for SelfSubjectRulesReview.
    pub fn rules_for(&self, user: &Identity, namespace: &str) -> RuleSet {
        self.snapshot().rules_for(user, namespace)
    }

    /// kube's `ConfirmNoEscalation`: `Err` with kube's message unless `user` already
    /// holds every one of `rules` in `namespace` (`""` for a ClusterRole).
    pub fn confirm_no_escalation(
        &self,
        user: &Identity,
        namespace: &str,
        rules: &[PolicyRule],
    ) -> Result<(), String> {
        let held = self.rules_for(user, namespace);
        escalation::confirm_no_escalation(user, &held, rules)
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        let mut allowed = false;
        let errors = self.snapshot().decide(a, &mut |_| allowed = true);
        // RBAC never denies: a later authorizer may still allow.
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion(denial_reason(errors))
        }
    }

    fn review(&self, a: &Attributes<'_>) -> (Decision, String) {
        match self.explain(a) {
            (true, why) => (Decision::Allow, why),
            (false, why) => (Decision::NoOpinion(why.clone()), why),
        }
    }

    /// kube's RBAC `RulesFor`: the rules split by kind (a rule naming both resources and
    /// URLs is listed as both); never incomplete, even when a role is missing (the error
    /// says so).
    fn rules_for(&self, user: &Identity, namespace: &str) -> RulesReview {
        let set = Rbac::rules_for(self, user, namespace);
        RulesReview {
            resource_rules: set.resource_rules(),
            non_resource_rules: set.non_resource_rules(),
            incomplete: false,
            errors: set.error.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
