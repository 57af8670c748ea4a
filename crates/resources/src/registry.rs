//! The registry: every resource the API server serves, with the facts discovery, routing
//! and storage need (group, version, kind, plural, scope, verbs, subresources).
//!
//! Two parts: the built-in kinds (a static table) and the resources of established
//! CustomResourceDefinitions, which the API server installs at run time with
//! [`set_dynamic`]. Every [`ResourceInfo`] is `&'static`: a custom resource's is
//! leaked once per distinct definition (interned, so re-installing the same CRD version
//! leaks nothing; the set is bounded by the CRD edits a process sees).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use serde_json::Value;

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
    /// What a CustomResourceDefinition says of this version (`None` for built-in kinds).
    pub custom: Option<&'static Custom>,
}

/// One served version of a CustomResourceDefinition: what validation, pruning,
/// defaulting, printing and the subresources need beyond the registry facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custom {
    /// `spec.versions[].schema.openAPIV3Schema` (structural; checked when the CRD was written).
    pub schema: Value,
    /// `additionalPrinterColumns` of the version (`name`, `type`, `jsonPath`, ...).
    pub columns: Vec<Value>,
    /// `subresources.scale`: `specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`.
    pub scale: Option<ScalePaths>,
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// `spec.names.listKind`.
    pub list_kind: String,
    /// The CRD is being deleted: its objects are still served (so their finalizers can
    /// be removed) but no new one may be created.
    pub terminating: bool,
    /// `selectableFields` of the version: the JSON paths (`spec.color`, without the leading
    /// dot) field selectors may name besides `metadata.name`/`metadata.namespace`.
    pub selectable: Vec<String>,
    /// The CRD's conversion webhook (`spec.conversion.strategy: Webhook`): objects read
    /// or written in another version than the stored one are converted through it.
    pub conversion: Option<ConversionWebhook>,
    /// `status.storedVersions` names a version besides the storage one: objects written
    /// before the storage version moved may still be stored in it, so every read converts
    /// (none splices the stored bytes).
    pub mixed_storage: bool,
}

/// A CRD's conversion webhook (`spec.conversion.webhook`, read by
/// `crd::conversion::webhook`): where it is and which review version it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionWebhook {
    /// `spec.conversion.webhook.clientConfig` (`url` or `service`, `caBundle`).
    pub client_config: Value,
    /// The first of `conversionReviewVersions` the server speaks.
    pub review_version: &'static str,
}

/// The JSON paths (`.spec.replicas`) of a custom resource's scale subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Where the desired replicas are (`.spec.replicas`).
    pub spec_replicas: String,
    /// Where the observed replicas are (`.status.replicas`).
    pub status_replicas: String,
    /// Where the serialized label selector is, if anywhere.
    pub label_selector: Option<String>,
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
/// Verbs of read-only resources that can be watched.
const READ_ONLY: &[&str] = &["get", "list", "watch"];
const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
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
        custom: None,
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
    // apiregistration
    r("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", false, NONE, API_EXTENSIONS, ALL_VERBS, &["status"], "v1"),
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
    // autoscaling: v2 stored, v1 converted (`convert::autoscaling`)
    r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], ALL, ALL_VERBS, &["status"], "v2"),
    r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], ALL, ALL_VERBS, &["status"], "v2"),
    // batch
    r("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL, ALL_VERBS, &["status"], "v1"),
    r("batch", "v1", "Job", "jobs", "job", true, NONE, ALL, ALL_VERBS, &["status"], "v1"),
    // certificates
    r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, &["csr"], NONE, ALL_VERBS, &["approval", "status"], "v1"),
    // coordination
    r("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    // discovery
    r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    // events.k8s.io is stored separately from core events (own storage version).
    r("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], NONE, ALL_VERBS, NONE, "v1"),
    // flowcontrol: read-only, kube-apiserver's mandatory configuration (no API priority
    // and fairness is applied)
    r("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", false, NONE, NONE, READ_ONLY, NONE, "v1"),
    r("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", "prioritylevelconfiguration", false, NONE, NONE, READ_ONLY, NONE, "v1"),
    // metrics: computed from the agents' statistics at each request, never stored, as
    // metrics-server serves it (its singular names are `node` and `pod`)
    r("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "node", false, NONE, NONE, GET_LIST, NONE, "v1beta1"),
    r("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "pod", true, NONE, NONE, GET_LIST, NONE, "v1beta1"),
    // networking
    r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, ALL_VERBS, &["status"], "v1"),
    r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, ALL_VERBS, NONE, "v1"),
    // node
    r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    // policy
    r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, ALL_VERBS, &["status"], "v1"),
    // scheduling
    r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], NONE, ALL_VERBS, NONE, "v1"),
    // storage
    r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", "csistoragecapacity", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, ALL_VERBS, NONE, "v1"),
    r("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", false, NONE, NONE, ALL_VERBS, &["status"], "v1"),
    // admissionregistration
    r("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", false, NONE, API_EXTENSIONS, ALL_VERBS, NONE, "v1"),
    r("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", false, NONE, API_EXTENSIONS, ALL_VERBS, NONE, "v1"),
    // apiextensions
    r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, &["crd", "crds"], API_EXTENSIONS, ALL_VERBS, &["status"], "v1"),
    // rbac
    r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
    r("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, ALL_VERBS, NONE, "v1"),
];

/// Every built-in resource, in a stable order (core first, then by group).
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Every served resource: the built-in ones, then those of established CRDs.
pub fn all_resources() -> impl Iterator<Item = &'static ResourceInfo> {
    let dynamic = dynamic();
    RESOURCES
        .iter()
        .chain((0..dynamic.len()).map(move |i| dynamic[i]))
}

/// The resource served at `group/version/plural` (`""` group for core).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all_resources().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind` (e.g. `apps/v1`, `Deployment`).
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    all_resources().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The resources installed at run time, per owner (one API server), and their union.
#[derive(Default)]
struct Dynamic {
    by_owner: BTreeMap<u64, Vec<&'static ResourceInfo>>,
    all: Arc<Vec<&'static ResourceInfo>>,
}

fn dynamic_set() -> &'static RwLock<Dynamic> {
    static D: OnceLock<RwLock<Dynamic>> = OnceLock::new();
    D.get_or_init(Default::default)
}

/// The resources of established CRDs (all owners), in installation order.
fn dynamic() -> Arc<Vec<&'static ResourceInfo>> {
    dynamic_set()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .all
        .clone()
}

/// Replaces the custom resources `owner` (an API server of this process) serves. Several
/// servers in one process (tests) each install their own; lookups see the union, a
/// built-in resource always winning.
pub fn set_dynamic(owner: u64, infos: Vec<ResourceInfo>) {
    let interned: Vec<&'static ResourceInfo> = infos.into_iter().map(intern_info).collect();
    let mut d = dynamic_set()
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if interned.is_empty() {
        d.by_owner.remove(&owner);
    } else {
        d.by_owner.insert(owner, interned);
    }
    let mut all: Vec<&'static ResourceInfo> = Vec::new();
    for r in d.by_owner.values().flatten() {
        if !all.iter().any(|a| std::ptr::eq(*a, *r)) {
            all.push(r);
        }
    }
    d.all = Arc::new(all);
}

/// A `&'static str` equal to `s`, leaked once per distinct string.
pub fn intern_str(s: &str) -> &'static str {
    static STRS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = STRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A `&'static [&'static str]` equal to `v`, leaked once per distinct list.
pub fn intern_strs(v: &[&str]) -> &'static [&'static str] {
    static LISTS: OnceLock<Mutex<Vec<&'static [&'static str]>>> = OnceLock::new();
    let mut lists = LISTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = lists.iter().find(|l| **l == v) {
        return found;
    }
    let owned: Vec<&'static str> = v.iter().map(|s| intern_str(s)).collect();
    let leaked: &'static [&'static str] = Box::leak(owned.into_boxed_slice());
    lists.push(leaked);
    leaked
}

/// A `&'static Custom` equal to `c`, leaked once per distinct definition.
pub fn intern_custom(c: Custom) -> &'static Custom {
    static CUSTOM: OnceLock<Mutex<Vec<&'static Custom>>> = OnceLock::new();
    let mut all = CUSTOM
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = all.iter().find(|x| ***x == c) {
        return found;
    }
    let leaked: &'static Custom = Box::leak(Box::new(c));
    all.push(leaked);
    leaked
}

fn intern_info(r: ResourceInfo) -> &'static ResourceInfo {
    static INFOS: OnceLock<Mutex<Vec<&'static ResourceInfo>>> = OnceLock::new();
    let mut all = INFOS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = all.iter().find(|x| ***x == r) {
        return found;
    }
    let leaked: &'static ResourceInfo = Box::leak(Box::new(r));
    all.push(leaked);
    leaked
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
    "apiregistration.k8s.io",
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
        .filter(|g| all_resources().any(|r| r.group == *g))
        .collect();
    for r in all_resources() {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Versions served for a group, preferred first (stable before beta before alpha).
pub fn group_versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in all_resources().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out.sort_by_key(|v| version_priority(v));
    out
}

/// Sort key following Kubernetes' version priority: GA, then beta, then alpha, newer
/// major first.
pub fn version_priority(v: &str) -> (u8, i64, i64) {
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
    all_resources().filter(move |r| r.group == group && r.version == version)
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
        assert_eq!(groups()[..2], ["apiregistration.k8s.io", "apps"]);
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
