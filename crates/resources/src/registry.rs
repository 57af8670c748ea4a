//! The registry: every resource the API server serves, with the facts discovery, routing
//! and storage need (group, version, kind, plural, scope, verbs, subresources).

/// What the API server knows about one resource at one group/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` for the core (legacy) group.
    pub group: &'static str,
    /// API version within the group, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Lower-case plural resource name used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    /// Lower-case singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Verbs allowed on the resource itself.
    pub verbs: &'static [&'static str],
    /// Subresources served: `status`, `scale`, `log`, `exec`, `attach`, `portforward`,
    /// `binding`, `eviction`, `token`, `proxy`, `finalize`.
    pub subresources: &'static [&'static str],
    /// Version objects are stored in (and converted to before storing).
    pub storage_version: &'static str,
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group (an object's `apiVersion`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `group/storage_version` (or `storage_version` for core): the `apiVersion` objects
    /// are stored with.
    pub fn storage_api_version(&self) -> String {
        if self.group.is_empty() {
            self.storage_version.to_string()
        } else {
            format!("{}/{}", self.group, self.storage_version)
        }
    }

    /// Whether the resource serves the given subresource.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether the resource allows the verb on itself.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

/// Every verb of an ordinary stored resource, sorted as kube-apiserver lists them.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of namespaces (no `deletecollection`).
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of virtual review resources.
const CREATE_ONLY: &[&str] = &["create"];
/// Verbs of read-only resources.
const GET_LIST: &[&str] = &["get", "list"];
const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Shorthand for building the table below.
#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    subresources: &'static [&'static str],
    storage_version: &'static str,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        verbs,
        subresources,
        storage_version,
    }
}

#[rustfmt::skip]
static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    r("", "v1", "Binding", "bindings", "binding", true, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", false, &["cs"], NONE, GET_LIST, NONE, "v1"),
    r("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "Event", "events", "event", true, &["ev"], NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], NONE, NAMESPACE_VERBS, &["finalize", "status"], "v1"),
    r("", "v1", "Node", "nodes", "node", false, &["no"], NONE, ALL_VERBS, &["proxy", "status"], "v1"),
    r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"], NONE, ALL_VERBS, &["status"], "v1"),
    r("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], NONE, ALL_VERBS, &["status"], "v1"),
    r("", "v1", "Pod", "pods", "pod", true, &["po"], ALL, ALL_VERBS,
      &["attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "proxy", "status"], "v1"),
    r("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    r("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], NONE, ALL_VERBS, &["status"], "v1"),
    r("", "v1", "Secret", "secrets", "secret", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], NONE, ALL_VERBS, &["token"], "v1"),
    r("", "v1", "Service", "services", "service", true, &["svc"], ALL, ALL_VERBS, &["proxy", "status"], "v1"),
    // apps
    r("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], ALL, ALL_VERBS, &["status"], "v1"),
    r("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    r("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    r("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    // apps/v1beta1 and apps/v1beta2 Deployments: the seed's manifests use them; stored as
    // apps/v1 (kube-apiserver stopped serving both in 1.16; apps/v1 stays preferred).
    r("apps", "v1beta1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    r("apps", "v1beta2", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, ALL_VERBS, &["scale", "status"], "v1"),
    // authentication / authorization (virtual)
    r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", true, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, NONE, NONE, CREATE_ONLY, NONE, "v1"),
    // batch
    r("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL, ALL_VERBS, &["status"], "v1"),
    r("batch", "v1", "Job", "jobs", "job", true, NONE, ALL, ALL_VERBS, &["status"], "v1"),
    // coordination
    r("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    // discovery
    r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    // events.k8s.io is stored separately from core events (own storage version).
    r("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], NONE, ALL_VERBS, NONE, "v1"),
    // networking
    r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, ALL_VERBS, &["status"], "v1"),
    r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, ALL_VERBS, NONE, "v1"),
    // policy
    r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, ALL_VERBS, &["status"], "v1"),
    // storage
    r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", "csistoragecapacity", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", false, NONE, NONE, ALL_VERBS, &["status"], "v1"),
    // rbac
    r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
];

/// Every registered resource, in a stable order (core first, then by group).
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource served at `group/version/plural` (`""` group for core).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind` (e.g. `apps/v1`, `Deployment`).
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Groups in the order kube-apiserver lists them at `/apis` (by priority), then any others.
pub(crate) const GROUP_ORDER: &[&str] = &[
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

/// Named groups that have at least one resource, in `/apis` order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = GROUP_ORDER
        .iter()
        .copied()
        .filter(|g| RESOURCES.iter().any(|r| r.group == *g))
        .collect();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Versions served for a group, preferred first (stable before beta before alpha).
pub fn group_versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out.sort_by_key(|v| version_priority(v));
    out
}

/// Sort key following Kubernetes' version priority: GA, then beta, then alpha, newer
/// major first.
fn version_priority(v: &str) -> (u8, i64, i64) {
    let rest = v.trim_start_matches('v');
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: i64 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (class, minor) = if tail.is_empty() {
        (0, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (2, n.parse().unwrap_or(0))
    } else {
        (3, 0)
    };
    (class, -major, -minor)
}

/// Resources of one group/version, in registry order.
pub fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_core_and_named_groups() {
        assert_eq!(lookup("", "v1", "pods").map(|r| r.kind), Some("Pod"));
        let d = lookup("apps", "v1beta1", "deployments").expect("v1beta1 deployments");
        assert_eq!(d.storage_version, "v1");
        assert_eq!(d.storage_api_version(), "apps/v1");
        assert!(lookup("apps", "v1", "pods").is_none());
        assert_eq!(
            lookup_kind("v1", "Service").map(|r| r.plural),
            Some("services")
        );
    }

    #[test]
    fn versions_are_preferred_first() {
        assert_eq!(group_versions("apps"), vec!["v1", "v1beta2", "v1beta1"]);
        let d = lookup("apps", "v1beta2", "deployments").expect("v1beta2 deployments");
        assert_eq!(d.storage_api_version(), "apps/v1");
        assert_eq!(groups()[0], "apps");
    }

    #[test]
    fn plurals_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "duplicate {}/{}/{}",
                    a.group,
                    a.version,
                    a.plural
                );
            }
        }
    }
}
