//! The default ClusterRoles and ClusterRoleBindings kube-apiserver creates at start
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`: `policy.go` and
//! `controller_policy.go`, as their 1.33 testdata lists them): the user-facing roles
//! (`cluster-admin`, `admin`, `edit`, `view` and the `system:aggregate-to-*` roles they
//! aggregate), the component roles, and the roles of the controllers skiff runs, each
//! bound as kube binds it. Also [`aggregate`], the pure half of kube's clusterrole
//! aggregation controller, which fills `admin`, `edit` and `view` from the roles their
//! `aggregationRule` selects.

use std::collections::BTreeMap;

use skiff_api::k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use skiff_api::names::{BOOTSTRAPPERS_GROUP, NODE_CREDENTIALS_PATH};

use super::rules::{rule, RuleBuilder};

/// The annotation that lets the server reconcile a default object at every start.
pub(crate) const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label every default object carries.
pub(crate) const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";
/// The RBAC API group.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The namespace of the controllers' service accounts.
const KUBE_SYSTEM: &str = "kube-system";
/// The prefix of the controllers' roles and bindings.
const CONTROLLER_PREFIX: &str = "system:controller:";

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// A rule on resources of `groups`, with every list sorted as kube's rule builder sorts.
fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    sorted(rule(verbs).groups(groups).resources(resources))
}

/// A rule on named objects.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    sorted(rule(verbs).groups(groups).resources(resources).names(names))
}

/// A rule on non-resource URLs.
fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    sorted(rule(verbs).urls(urls))
}

fn sorted(mut p: PolicyRule) -> PolicyRule {
    p.verbs.sort();
    for v in [
        &mut p.api_groups,
        &mut p.resources,
        &mut p.resource_names,
        &mut p.non_resource_urls,
    ]
    .into_iter()
    .flatten()
    {
        v.sort();
    }
    p
}

/// Creating and updating events in both event groups: every component's rule.
fn events() -> PolicyRule {
    r(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

/// Metadata of a default object, with extra labels.
fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l = BTreeMap::from([(BOOTSTRAPPING.to_string(), "rbac-defaults".to_string())]);
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(l),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE.to_string(),
            "true".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, &[]),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role labelled into aggregated roles.
fn labelled(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        ..role(name, rules)
    }
}

/// An aggregated role: its rules are those of the roles labelled `aggregate-to-<to>`.
fn aggregated(name: &str, labels: &[(&str, &str)]) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    format!("rbac.authorization.k8s.io/aggregate-to-{name}"),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }]),
        }),
    }
}

const TO_ADMIN: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
const TO_EDIT: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
const TO_VIEW: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-view", "true");

/// kube-apiserver's default ClusterRoles (aggregated ones still empty: see [`aggregate`]),
/// the controllers' included.
pub(crate) fn cluster_roles() -> Vec<ClusterRole> {
    let mut roles = vec![
        aggregated("admin", &[]),
        role(
            "cluster-admin",
            vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        aggregated("edit", &[TO_ADMIN]),
        aggregated("view", &[TO_EDIT]),
        labelled(
            "system:aggregate-to-admin",
            &[TO_ADMIN],
            vec![
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                r(READ_WRITE, &[RBAC_GROUP], &["roles", "rolebindings"]),
            ],
        ),
        labelled("system:aggregate-to-edit", &[TO_EDIT], aggregate_to_edit()),
        labelled("system:aggregate-to-view", &[TO_VIEW], aggregate_to_view()),
        role(
            "system:auth-delegator",
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        role(
            "system:basic-user",
            vec![
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                r(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![r(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![r(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
    ];
    for (role_name, signer) in [
        (
            "kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        (
            "kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        ("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        ("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
    ] {
        roles.push(role(
            &format!("system:certificates.k8s.io:{role_name}"),
            vec![named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &[signer],
            )],
        ));
    }
    roles.extend([
        role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            "system:kube-aggregator",
            vec![r(READ, &[""], &["endpoints", "services"])],
        ),
        role("system:kube-controller-manager", kube_controller_manager()),
        role(
            "system:kube-dns",
            vec![r(&["list", "watch"], &[""], &["endpoints", "services"])],
        ),
        role("system:kube-scheduler", kube_scheduler()),
        role(
            "system:kubelet-api-admin",
            vec![
                r(READ, &[""], &["nodes"]),
                r(&["proxy"], &[""], &["nodes"]),
                r(
                    &["*"],
                    &[""],
                    &["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"],
                ),
            ],
        ),
        role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        role("system:node", node_rules()),
        role(
            "system:node-bootstrapper",
            vec![r(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        role(
            "system:node-problem-detector",
            vec![
                r(&["get"], &[""], &["nodes"]),
                r(&["patch"], &[""], &["nodes/status"]),
                events(),
            ],
        ),
        role(
            "system:node-proxier",
            vec![
                r(&["list", "watch"], &[""], &["services", "endpoints"]),
                r(READ, &[""], &["nodes"]),
                events(),
                r(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
            )],
        ),
        role(
            "system:volume-scheduler",
            vec![
                r(
                    &["get", "list", "watch", "patch", "update"],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(
                    &["get", "list", "watch", "patch", "update"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
    ]);
    roles.extend(
        controller_roles()
            .into_iter()
            .map(|(name, rules)| role(&format!("{CONTROLLER_PREFIX}{name}"), rules)),
    );
    // skiff's own: agents holding the join token fetch their node credentials.
    roles.push(role(
        SKIFF_NODE_BOOTSTRAPPER,
        vec![urls(&["post"], &[NODE_CREDENTIALS_PATH])],
    ));
    roles
}

/// The role (and binding) that lets `system:bootstrappers` fetch node credentials.
const SKIFF_NODE_BOOTSTRAPPER: &str = "skiff:node-bootstrapper";

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        r(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
        r(&["impersonate"], &[""], &["serviceaccounts"]),
        r(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        r(&["create"], &[""], &["pods/eviction"]),
        r(
            WRITE,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        r(&["create"], &[""], &["serviceaccounts/token"]),
        r(
            WRITE,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        r(WRITE, &["batch"], &["jobs", "cronjobs"]),
        r(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        r(WRITE, &["policy"], &["poddisruptionbudgets"]),
        r(
            WRITE,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses"],
        ),
        r(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        r(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        r(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        // Reading namespaces in a namespace's scope reads that namespace only.
        r(READ, &[""], &["namespaces"]),
        r(READ, &["discovery.k8s.io"], &["endpointslices"]),
        r(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
        ),
        r(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        r(
            READ,
            &["batch"],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        r(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        r(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        r(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn kube_controller_manager() -> Vec<PolicyRule> {
    vec![
        events(),
        r(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-controller-manager"],
        ),
        r(&["create"], &[""], &["secrets", "serviceaccounts"]),
        r(&["delete"], &[""], &["secrets"]),
        r(
            &["get"],
            &[""],
            &["namespaces", "secrets", "serviceaccounts", "configmaps"],
        ),
        r(&["update"], &[""], &["secrets", "serviceaccounts"]),
        r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        r(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        // Its shared informers read everything.
        r(&["list", "watch"], &["*"], &["*"]),
        r(&["create"], &[""], &["serviceaccounts/token"]),
    ]
}

fn kube_scheduler() -> Vec<PolicyRule> {
    vec![
        events(),
        r(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        ),
        r(READ, &[""], &["nodes"]),
        r(&["get", "list", "watch", "delete"], &[""], &["pods"]),
        r(&["create"], &[""], &["pods/binding", "bindings"]),
        r(&["patch", "update"], &[""], &["pods/status"]),
        r(READ, &[""], &["replicationcontrollers", "services"]),
        r(READ, &["apps", "extensions"], &["replicasets"]),
        r(READ, &["apps"], &["statefulsets"]),
        r(READ, &["policy"], &["poddisruptionbudgets"]),
        r(
            READ,
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        r(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        r(READ, &["storage.k8s.io"], &["csinodes"]),
        r(READ, &[""], &["namespaces"]),
        r(READ, &["storage.k8s.io"], &["csidrivers"]),
        r(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
    ]
}

/// kube's `NodeRules`: the `system:node` ClusterRole's rules, which the Node authorizer grants
/// every node.
pub(crate) fn node_rules() -> Vec<PolicyRule> {
    vec![
        r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        r(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        r(READ, &[""], &["services"]),
        r(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        r(&["update", "patch"], &[""], &["nodes/status"]),
        r(&["update", "patch"], &[""], &["nodes"]),
        r(&["create", "update", "patch"], &[""], &["events"]),
        r(READ, &[""], &["pods"]),
        r(&["create", "delete"], &[""], &["pods"]),
        r(&["update", "patch"], &[""], &["pods/status"]),
        r(&["create"], &[""], &["pods/eviction"]),
        r(READ, &[""], &["secrets", "configmaps"]),
        r(
            &["get"],
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        r(&["get"], &[""], &["endpoints"]),
        r(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        r(
            &["delete", "get", "update", "create", "patch"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        r(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        r(&["create"], &[""], &["serviceaccounts/token"]),
        r(
            &["get", "update", "patch"],
            &[""],
            &["persistentvolumeclaims/status"],
        ),
        r(READ, &["storage.k8s.io"], &["csidrivers"]),
        r(
            &["create", "delete", "get", "patch", "update"],
            &["storage.k8s.io"],
            &["csinodes"],
        ),
        r(READ, &["node.k8s.io"], &["runtimeclasses"]),
    ]
}

/// The roles of the controllers skiff runs (names without `system:controller:`).
fn controller_roles() -> Vec<(&'static str, Vec<PolicyRule>)> {
    let workloads = &["apps", "extensions"];
    vec![
        (
            "clusterrole-aggregation-controller",
            vec![r(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &[RBAC_GROUP],
                &["clusterroles"],
            )],
        ),
        (
            "daemon-set-controller",
            vec![
                r(READ, workloads, &["daemonsets"]),
                // skiff's controller patches the status (kube's updates).
                r(&["update", "patch"], workloads, &["daemonsets/status"]),
                r(&["update"], workloads, &["daemonsets/finalizers"]),
                r(&["list", "watch"], &[""], &["nodes"]),
                r(
                    &["list", "watch", "create", "delete", "patch"],
                    &[""],
                    &["pods"],
                ),
                r(&["create"], &[""], &["pods/binding"]),
                r(
                    READ_WRITE[..7].as_ref(),
                    &["apps"],
                    &["controllerrevisions"],
                ),
                events(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                // skiff's controller also patches (kube's updates): the revision
                // annotation and the status.
                r(
                    &["get", "list", "watch", "update", "patch"],
                    workloads,
                    &["deployments"],
                ),
                r(&["update", "patch"], workloads, &["deployments/status"]),
                r(&["update"], workloads, &["deployments/finalizers"]),
                r(READ_WRITE[..7].as_ref(), workloads, &["replicasets"]),
                // Pods are read to see when old ones are gone and updated to relabel.
                r(&["get", "list", "watch", "update"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "disruption-controller",
            vec![
                r(READ, &["extensions", "apps"], &["deployments"]),
                r(READ, &["apps", "extensions"], &["replicasets"]),
                r(READ, &[""], &["replicationcontrollers"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(READ, &["apps"], &["statefulsets"]),
                r(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(&["get"], &["*"], &["*/scale"]),
                events(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                r(READ, &[""], &["services", "pods"]),
                r(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &[""],
                    &["endpoints"],
                ),
                r(&["create"], &[""], &["endpoints/restricted"]),
                events(),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                r(READ, &[""], &["services", "pods", "nodes"]),
                r(&["update"], &[""], &["services/finalizers"]),
                r(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                r(READ, &[""], &["services", "endpoints"]),
                r(&["update"], &[""], &["services/finalizers"]),
                r(&["update"], &[""], &["endpoints/finalizers"]),
                r(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        (
            "generic-garbage-collector",
            vec![
                r(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        (
            "cronjob-controller",
            vec![
                r(
                    &["get", "list", "watch", "update"],
                    &["batch"],
                    &["cronjobs"],
                ),
                r(
                    &[
                        "get", "list", "watch", "create", "update", "delete", "patch",
                    ],
                    &["batch"],
                    &["jobs"],
                ),
                r(&["update"], &["batch"], &["cronjobs/status"]),
                r(&["update"], &["batch"], &["cronjobs/finalizers"]),
                r(&["list", "delete"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "horizontal-pod-autoscaler",
            vec![
                r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
                r(
                    &["update"],
                    &["autoscaling"],
                    &["horizontalpodautoscalers/status"],
                ),
                r(&["get", "update"], &["*"], &["*/scale"]),
                r(&["list"], &[""], &["pods"]),
                r(&["list"], &["metrics.k8s.io"], &["pods"]),
                r(&["get", "list"], &["custom.metrics.k8s.io"], &["*"]),
                r(&["get", "list"], &["external.metrics.k8s.io"], &["*"]),
                events(),
            ],
        ),
        (
            "job-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["batch"],
                    &["jobs"],
                ),
                r(&["update"], &["batch"], &["jobs/status"]),
                r(&["update"], &["batch"], &["jobs/finalizers"]),
                r(
                    &["list", "watch", "create", "delete", "patch"],
                    &[""],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "namespace-controller",
            vec![
                r(&["get", "list", "watch", "delete"], &[""], &["namespaces"]),
                r(&["update"], &[""], &["namespaces/finalize"]),
                // skiff's controller patches the status conditions (kube's updates).
                r(&["update", "patch"], &[""], &["namespaces/status"]),
                r(
                    &["get", "list", "watch", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        (
            "node-controller",
            vec![
                r(
                    &["get", "list", "update", "delete", "patch", "watch"],
                    &[""],
                    &["nodes"],
                ),
                r(&["patch", "update"], &[""], &["nodes/status"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(&["list", "get", "delete", "watch"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                r(&["list", "watch", "delete"], &[""], &["pods"]),
                r(READ, &[""], &["nodes"]),
                r(&["patch"], &[""], &["pods/status"]),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                r(
                    &["get", "list", "watch", "update"],
                    workloads,
                    &["replicasets"],
                ),
                // skiff's controller patches the status (kube's updates it).
                r(&["update", "patch"], workloads, &["replicasets/status"]),
                r(&["update"], workloads, &["replicasets/finalizers"]),
                r(
                    &["list", "watch", "patch", "create", "delete"],
                    &[""],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                r(&["list", "watch"], &[""], &["pods"]),
                r(&["list", "watch"], &["apps"], &["statefulsets"]),
                // skiff's controller patches the status (kube's updates it).
                r(&["update", "patch"], &["apps"], &["statefulsets/status"]),
                r(&["update"], &["apps"], &["statefulsets/finalizers"]),
                r(
                    &["get", "create", "delete", "update", "patch"],
                    &[""],
                    &["pods"],
                ),
                r(
                    &[
                        "get", "create", "delete", "update", "patch", "list", "watch",
                    ],
                    &["apps"],
                    &["controllerrevisions"],
                ),
                r(&["get", "create"], &[""], &["persistentvolumeclaims"]),
                // The retention policy's ownerReferences (skiff patches them).
                r(
                    &["update", "delete", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                events(),
            ],
        ),
        (
            "root-ca-cert-publisher",
            vec![r(&["create", "update"], &[""], &["configmaps"]), events()],
        ),
        (
            "service-account-controller",
            vec![r(&["create"], &[""], &["serviceaccounts"]), events()],
        ),
        (
            "service-cidrs-controller",
            vec![
                r(
                    &["get", "list", "watch", "patch", "update"],
                    &["networking.k8s.io"],
                    &["servicecidrs"],
                ),
                r(
                    &["patch", "update"],
                    &["networking.k8s.io"],
                    &["servicecidrs/finalizers"],
                ),
                r(
                    &["patch", "update"],
                    &["networking.k8s.io"],
                    &["servicecidrs/status"],
                ),
                r(READ, &["networking.k8s.io"], &["ipaddresses"]),
                events(),
            ],
        ),
        (
            "service-controller",
            vec![
                r(READ, &[""], &["services"]),
                r(&["patch", "update"], &[""], &["services/status"]),
                r(&["list", "watch"], &[""], &["nodes"]),
                events(),
            ],
        ),
        (
            // skiff's own: the built-in local-path provisioner (kube has none).
            "local-path-provisioner",
            vec![
                r(READ, &[""], &["nodes"]),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(
                    &["get", "list", "watch", "create", "delete"],
                    &[""],
                    &["pods"],
                ),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                events(),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                // skiff's binder also patches (kube's updates).
                r(
                    &[
                        "get", "list", "watch", "update", "patch", "create", "delete",
                    ],
                    &[""],
                    &["persistentvolumes"],
                ),
                r(&["update", "patch"], &[""], &["persistentvolumes/status"]),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(
                    &["update", "patch"],
                    &[""],
                    &["persistentvolumeclaims/status"],
                ),
                r(
                    &["list", "watch", "get", "create", "delete"],
                    &[""],
                    &["pods"],
                ),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(
                    &["get", "create", "delete"],
                    &[""],
                    &["services", "endpoints"],
                ),
                r(&["get"], &[""], &["secrets"]),
                r(&["get", "list"], &[""], &["nodes"]),
                r(&["watch"], &[""], &["events"]),
                events(),
            ],
        ),
        (
            "pv-protection-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                events(),
            ],
        ),
        (
            "pvc-protection-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(&["list", "watch", "get"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![
                r(&["get", "list", "watch", "delete"], &["batch"], &["jobs"]),
                events(),
            ],
        ),
    ]
}

/// A subject of a default binding.
fn subject(kind: &str, name: &str) -> Subject {
    match kind {
        "ServiceAccount" => Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: Some(KUBE_SYSTEM.into()),
            api_group: None,
        },
        _ => Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: None,
            api_group: Some(RBAC_GROUP.into()),
        },
    }
}

/// A default binding of ClusterRole `name` (the binding has the role's name).
fn binding(name: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        // kube keeps system:node's binding without subjects: the Node authorizer
        // authorizes kubelets.
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

/// kube-apiserver's default ClusterRoleBindings, the controllers' included (each bound to
/// its service account in kube-system).
pub(crate) fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let group = |n: &str| subject("Group", n);
    let user = |n: &str| subject("User", n);
    let mut out = vec![
        binding("cluster-admin", vec![group("system:masters")]),
        binding("system:basic-user", vec![group("system:authenticated")]),
        binding("system:discovery", vec![group("system:authenticated")]),
        binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        binding(
            "system:kube-dns",
            vec![subject("ServiceAccount", "kube-dns")],
        ),
        binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        binding("system:monitoring", vec![group("system:monitoring")]),
        binding("system:node", vec![]),
        binding("system:node-proxier", vec![user("system:kube-proxy")]),
        binding(SKIFF_NODE_BOOTSTRAPPER, vec![group(BOOTSTRAPPERS_GROUP)]),
        binding(
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        binding(
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        binding(
            "system:volume-scheduler",
            vec![user("system:kube-scheduler")],
        ),
    ];
    out.extend(controller_roles().into_iter().map(|(name, _)| {
        binding(
            &format!("{CONTROLLER_PREFIX}{name}"),
            vec![subject("ServiceAccount", name)],
        )
    }));
    out
}

/// Whether `labels` satisfy `selector` (an empty selector matches everything).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// What kube's clusterrole aggregation controller does, as a pure function: each role
/// with an `aggregationRule` gets the rules of the roles its selectors pick (by name
/// order, each rule once), repeated until nothing changes so that roles aggregating
/// aggregated roles (`admin` ← `edit` ← `view`) are complete.
pub(crate) fn aggregate(roles: &mut [ClusterRole]) {
    // Each pass fills at least one more level of the aggregation tree; a cycle stops
    // changing too, and the bound keeps a pathological input from looping.
    for _ in 0..=roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(selectors) = roles[i]
                .aggregation_rule
                .as_ref()
                .and_then(|a| a.cluster_role_selectors.clone())
            else {
                continue;
            };
            let me = roles[i].metadata.name.clone();
            let mut rules: Vec<PolicyRule> = Vec::new();
            for sel in &selectors {
                let mut picked: Vec<&ClusterRole> = roles
                    .iter()
                    .filter(|r| r.metadata.name != me)
                    .filter(|r| {
                        selects(sel, r.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
                    })
                    .collect();
                picked.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                for r in picked {
                    for rule in r.rules.iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            if roles[i].rules.as_ref() != Some(&rules) {
                roles[i].rules = Some(rules);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The default ClusterRoles with the aggregated ones filled, as a running cluster has them.
pub(crate) fn aggregated_cluster_roles() -> Vec<ClusterRole> {
    let mut roles = cluster_roles();
    aggregate(&mut roles);
    roles
}

/// The names of `roles` (for tests).
#[cfg(test)]
pub(crate) fn names(roles: &[ClusterRole]) -> Vec<String> {
    super::rules::strings(
        &roles
            .iter()
            .map(|r| r.metadata.name.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
    )
}
