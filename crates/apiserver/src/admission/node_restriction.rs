//! The `NodeRestriction` plugin (kube's `plugin/pkg/admission/noderestriction`): what a
//! node (`system:node:<name>` in `system:nodes`) may write. The Node authorizer lets a
//! kubelet write nodes, leases, pod status and so on; this plugin narrows that to its
//! own objects:
//!
//! - pods: create mirror pods bound to itself only (skiff runs no static pods, so a
//!   kubelet of its own never does), update the status of, evict and delete only pods
//!   bound to itself;
//! - its own Node only, without setting `node-restriction.kubernetes.io/` labels or
//!   `kubernetes.io`/`k8s.io` labels other than the kubelet's own, and without changing
//!   its taints;
//! - its own Lease in `kube-node-lease` only;
//! - PersistentVolumeClaims: their status, and in it only capacity and conditions;
//! - service-account tokens only bound to a pod bound to itself.
//!
//! Other writers, the join token's `system:node` included (it names no node), are not
//! this plugin's concern.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation, Plugin};
use crate::authz::node::{node_name, references, Ref};
use crate::status::{qualified, ApiError, ApiResult};
use crate::storage::{decode, key};

/// The annotation marking a mirror pod (kube's `MirrorPodAnnotationKey`).
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The namespace of node leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The label namespace only administrators set (kube's `LabelNamespaceNodeRestriction`).
const NODE_RESTRICTION_LABELS: &str = "node-restriction.kubernetes.io";

/// The `kubernetes.io` and `k8s.io` labels a kubelet may set on its Node (kube's
/// `KubeletLabels`).
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// The label namespaces a kubelet may set (kube's `KubeletLabelNamespaces`), subdomains
/// included.
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Restricts nodes' writes to their own objects.
pub(crate) struct NodeRestriction {
    /// Where pods and nodes are read (kube's listers).
    store: Arc<dyn Store>,
}

impl NodeRestriction {
    /// The plugin, reading pods and nodes from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        NodeRestriction { store }
    }

    /// The stored core object `plural`/`name`, 404 when missing.
    fn get(&self, plural: &str, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let info = skiff_resources::lookup("", "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))?;
        let kv = self
            .store
            .get(&key(info, ns, name))?
            .ok_or_else(|| ApiError::not_found("", plural, name))?;
        decode(&kv)
    }

    fn admit_pod(
        &self,
        a: &Attributes<'_>,
        node: &str,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let bound_here = |pod: &Value| str_at(pod, "/spec/nodeName") == node;
        match (a.subresource, a.operation) {
            (None, Operation::Create) => self.admit_pod_create(a, node, obj),
            (None, Operation::Delete) if bound_here(obj) => Ok(()),
            (None, Operation::Delete) => Err(forbidden(
                a,
                &format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
            )),
            (None, op) => Err(forbidden(
                a,
                &format!(
                    "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                    op.as_str()
                ),
            )),
            (Some("status"), Operation::Update) => {
                let old = old.unwrap_or(obj);
                if !bound_here(old) {
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself"),
                    ));
                }
                if !same_map(obj.pointer("/metadata/labels"), old.pointer("/metadata/labels")) {
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} cannot update labels through pod status"),
                    ));
                }
                if !same_list(
                    obj.pointer("/status/resourceClaimStatuses"),
                    old.pointer("/status/resourceClaimStatuses"),
                ) {
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} cannot update resource claim statues"),
                    ));
                }
                Ok(())
            }
            (Some("status"), op) => Err(forbidden(
                a,
                &format!("unexpected operation {:?}", op.as_str()),
            )),
            // An eviction deletes the pod it names.
            (Some("eviction"), _) if bound_here(obj) => Ok(()),
            (Some("eviction"), _) => Err(forbidden(
                a,
                &format!("node {node} can only evict pods with spec.nodeName set to itself"),
            )),
            (Some(sub), _) => Err(forbidden(
                a,
                &format!("unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"),
            )),
        }
    }

    /// kube's `admitPodCreate`: mirror pods of this node, referencing nothing.
    fn admit_pod_create(&self, a: &Attributes<'_>, node: &str, pod: &Value) -> ApiResult<()> {
        let deny = |why: String| Err(forbidden(a, &why));
        let annotations = pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        if !annotations.is_some_and(|m| m.contains_key(MIRROR_POD_ANNOTATION)) {
            return deny(format!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            ));
        }
        if str_at(pod, "/spec/nodeName") != node {
            return deny(format!(
                "node {node:?} can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let owner = match owners {
            [one] => one,
            [] => {
                return deny(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ))
            }
            _ => {
                return deny(format!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                ))
            }
        };
        if str_at(owner, "/apiVersion") != "v1"
            || str_at(owner, "/kind") != "Node"
            || str_at(owner, "/name") != node
        {
            return deny(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        if owner.get("controller").and_then(Value::as_bool) != Some(true) {
            return deny(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            ));
        }
        if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
            return deny(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            ));
        }
        let node_uid = self.get("nodes", None, node)?;
        let (want, got) = (str_at(owner, "/uid"), str_at(&node_uid, "/metadata/uid"));
        if want != got {
            return deny(format!(
                "node {node} UID mismatch: expected {want} got {got}"
            ));
        }
        if !references(pod, Ref::ServiceAccount).is_empty() {
            return deny(format!(
                "node {node:?} can not create pods that reference a service account"
            ));
        }
        for (kind, what) in [(Ref::Secret, "secrets"), (Ref::ConfigMap, "configmaps")] {
            if !references(pod, kind).is_empty() {
                return deny(format!(
                    "node {node:?} can not create pods that reference {what}"
                ));
            }
        }
        let volumes = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let trust_bundle = volumes.iter().any(|v| {
            v.pointer("/projected/sources")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|s| s.get("clusterTrustBundle").is_some()))
        });
        if trust_bundle {
            return deny(format!(
                "node {node:?} can not create pods that reference clustertrustbundles"
            ));
        }
        if volumes
            .iter()
            .any(|v| v.get("persistentVolumeClaim").is_some())
        {
            return deny(format!(
                "node {node:?} can not create pods that reference persistentvolumeclaims"
            ));
        }
        Ok(())
    }

    /// kube's `admitNode`: its own Node, labels and taints within bounds.
    fn admit_node(
        &self,
        a: &Attributes<'_>,
        node: &str,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.name != node {
            return Err(forbidden(
                a,
                &format!("node {node:?} is not allowed to modify node {:?}", a.name),
            ));
        }
        let config_source = |n: &Value| {
            n.pointer("/spec/configSource")
                .filter(|v| !v.is_null())
                .cloned()
        };
        match a.operation {
            Operation::Create => {
                if config_source(obj).is_some() {
                    // (sic: kube's message says pods.)
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} is not allowed to create pods with a non-nil configSource"),
                    ));
                }
                let forbidden_labels = forbidden_labels(&labels(obj), &Default::default());
                if !forbidden_labels.is_empty() {
                    return Err(forbidden(
                        a,
                        &format!(
                            "node {node:?} is not allowed to set the following labels: {}",
                            forbidden_labels.into_iter().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            Operation::Update => {
                let old = old.unwrap_or(obj);
                if config_source(obj).is_some() && config_source(obj) != config_source(old) {
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} is not allowed to update configSource to a new non-nil configSource"),
                    ));
                }
                if !same_list(obj.pointer("/spec/taints"), old.pointer("/spec/taints")) {
                    return Err(forbidden(
                        a,
                        &format!("node {node:?} is not allowed to modify taints"),
                    ));
                }
                let forbidden_labels = forbidden_labels(&labels(obj), &labels(old));
                if !forbidden_labels.is_empty() {
                    // (sic: kube's message names no node here.)
                    return Err(forbidden(
                        a,
                        &format!(
                            "is not allowed to modify labels: {}",
                            forbidden_labels.into_iter().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            Operation::Delete => {}
        }
        Ok(())
    }

    /// kube's `admitPVCStatus`: status only, and in it capacity and conditions only.
    fn admit_pvc(
        &self,
        a: &Attributes<'_>,
        node: &str,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if a.subresource != Some("status") {
            return Err(forbidden(a, "may only update PVC status"));
        }
        if a.operation != Operation::Update {
            return Err(forbidden(
                a,
                &format!("unexpected operation {:?}", a.operation.as_str()),
            ));
        }
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
                m.remove("managedFields");
            }
            if let Some(s) = v.get_mut("status").and_then(Value::as_object_mut) {
                for f in [
                    "capacity",
                    "conditions",
                    "allocatedResourceStatuses",
                    "allocatedResources",
                ] {
                    s.remove(f);
                }
            }
            v
        };
        if strip(obj) != strip(old.unwrap_or(obj)) {
            // kube appends a Go diff of the two objects, which skiff does not reproduce.
            return Err(forbidden(
                a,
                &format!("node {node:?} is not allowed to update fields other than status.capacity and status.conditions"),
            ));
        }
        Ok(())
    }

    /// kube's `admitServiceAccount`: tokens only for pods bound to this node.
    fn admit_token(&self, a: &Attributes<'_>, node: &str, request: &Value) -> ApiResult<()> {
        if a.operation != Operation::Create || a.subresource != Some("token") {
            return Ok(());
        }
        let r = request
            .pointer("/spec/boundObjectRef")
            .filter(|r| !r.is_null())
            .unwrap_or(&Value::Null);
        if str_at(r, "/apiVersion") != "v1"
            || str_at(r, "/kind") != "Pod"
            || str_at(r, "/name").is_empty()
        {
            return Err(forbidden(a, "node requested token not bound to a pod"));
        }
        let uid = str_at(r, "/uid");
        if uid.is_empty() {
            return Err(forbidden(
                a,
                "node requested token with a pod binding without a uid",
            ));
        }
        let pod = self.get("pods", a.namespace, str_at(r, "/name"))?;
        if uid != str_at(&pod, "/metadata/uid") {
            return Err(forbidden(
                a,
                &format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
        if str_at(&pod, "/spec/nodeName") != node {
            return Err(forbidden(
                a,
                "node requested token bound to a pod scheduled on a different node",
            ));
        }
        Ok(())
    }
}

impl Plugin for NodeRestriction {
    fn handles(&self, info: &ResourceInfo) -> bool {
        matches!(
            (info.group, info.plural),
            (
                "",
                "pods" | "nodes" | "persistentvolumeclaims" | "serviceaccounts"
            ) | ("coordination.k8s.io", "leases")
        )
    }

    // kube's plugin is a mutating one that mutates nothing: it refuses before the
    // strategy validates.
    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        self.check(a, obj, old)
    }

    // Deletes only reach the validating stage.
    fn validate(&self, a: &Attributes<'_>, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        if a.operation == Operation::Delete {
            return self.check(a, obj, old);
        }
        Ok(())
    }
}

impl NodeRestriction {
    /// The plugin's decision on a write by a node; nothing for other writers.
    fn check(&self, a: &Attributes<'_>, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        let Some(node) = a.user.and_then(node_name) else {
            return Ok(());
        };
        match (a.info.group, a.info.plural) {
            ("", "pods") => self.admit_pod(a, node, obj, old),
            ("", "nodes") => self.admit_node(a, node, obj, old),
            ("", "persistentvolumeclaims") => self.admit_pvc(a, node, obj, old),
            ("", "serviceaccounts") => self.admit_token(a, node, obj),
            ("coordination.k8s.io", "leases") => {
                if a.namespace != Some(NODE_LEASE_NAMESPACE) {
                    return Err(forbidden(
                        a,
                        &format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"),
                    ));
                }
                if a.name != node {
                    return Err(forbidden(
                        a,
                        "can only access node lease with the same name as the requesting node",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The string at `ptr`, `""` when absent.
fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// A node's labels.
fn labels(node: &Value) -> serde_json::Map<String, Value> {
    node.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Two maps equal, a missing one as an empty one (kube's `labels.Equals`).
fn same_map(a: Option<&Value>, b: Option<&Value>) -> bool {
    let empty = serde_json::Map::new();
    let m = |v: Option<&Value>| {
        v.and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    m(a) == m(b)
}

/// Two lists equal, a missing one as an empty one (kube's semantic equality).
fn same_list(a: Option<&Value>, b: Option<&Value>) -> bool {
    let l = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    l(a) == l(b)
}

/// The part of a label key before `/` (`""` without one).
fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// Whether `ns` is `domain` or a subdomain of it.
fn in_domain(ns: &str, domain: &str) -> bool {
    ns == domain || ns.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// kube's `IsKubeletLabel`.
fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|d| in_domain(label_namespace(key), d))
}

/// kube's `getForbiddenLabels` of the labels that differ between `new` and `old`: the
/// `node-restriction.kubernetes.io` ones, and `kubernetes.io`/`k8s.io` ones that are not
/// the kubelet's; sorted.
fn forbidden_labels(
    new: &serde_json::Map<String, Value>,
    old: &serde_json::Map<String, Value>,
) -> BTreeSet<String> {
    let modified = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .chain(old.iter().filter(|(k, v)| new.get(*k) != Some(v)))
        .map(|(k, _)| k);
    modified
        .filter(|k| {
            let ns = label_namespace(k);
            let kubernetes = in_domain(ns, "kubernetes.io") || in_domain(ns, "k8s.io");
            in_domain(ns, NODE_RESTRICTION_LABELS) || (kubernetes && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

/// kube's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>` on the
/// resource written (without its subresource).
fn forbidden(a: &Attributes<'_>, why: &str) -> ApiError {
    let (group, plural) = (a.info.group, a.info.plural);
    let q = qualified(group, plural);
    let message = if a.name.is_empty() {
        format!("{q} is forbidden: {why}")
    } else {
        format!("{q} {:?} is forbidden: {why}", a.name)
    };
    ApiError::forbidden(message)
        .with_details(json!({"name": a.name, "group": group, "kind": plural}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;

    fn node(name: &str) -> Identity {
        Identity {
            user: format!("system:node:{name}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        }
    }

    fn plugin() -> NodeRestriction {
        let store: Arc<dyn Store> = Arc::new(skiff_store::SqliteStore::in_memory().unwrap());
        NodeRestriction::new(store)
    }

    fn attrs<'a>(
        plural: &str,
        op: Operation,
        ns: Option<&'a str>,
        name: &'a str,
        sub: Option<&'a str>,
        user: &'a Identity,
    ) -> Attributes<'a> {
        let group = if plural == "leases" {
            "coordination.k8s.io"
        } else {
            ""
        };
        let info = skiff_resources::lookup(group, "v1", plural).unwrap();
        Attributes {
            info,
            requested: info,
            operation: op,
            namespace: ns,
            name,
            subresource: sub,
            user: Some(user),
        }
    }

    /// Runs the plugin's stage for `op` and returns the 403's message, if any.
    fn run(
        p: &NodeRestriction,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Option<String> {
        let r = match a.operation {
            Operation::Delete => p.validate(a, obj, old),
            _ => p.admit(a, &mut obj.clone(), old),
        };
        r.err().map(|e| {
            assert_eq!(e.code, 403, "{}", e.message);
            e.message
        })
    }

    #[test]
    fn pods_bound_elsewhere_are_out_of_reach() {
        let (p, n1) = (plugin(), node("n1"));
        let here =
            json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"nodeName": "n1"}});
        let there = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n2"}});
        let status = attrs(
            "pods",
            Operation::Update,
            Some("d"),
            "web",
            Some("status"),
            &n1,
        );
        assert_eq!(run(&p, &status, &here, Some(&here)), None);
        assert_eq!(
            run(&p, &status, &there, Some(&there)).as_deref(),
            Some("pods \"web\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself")
        );
        let mut relabelled = here.clone();
        relabelled["metadata"]["labels"]["a"] = json!("c");
        assert_eq!(
            run(&p, &status, &relabelled, Some(&here)).as_deref(),
            Some("pods \"web\" is forbidden: node \"n1\" cannot update labels through pod status")
        );
        let delete = attrs("pods", Operation::Delete, Some("d"), "web", None, &n1);
        assert_eq!(run(&p, &delete, &here, Some(&here)), None);
        assert_eq!(
            run(&p, &delete, &there, Some(&there)).as_deref(),
            Some("pods \"web\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself")
        );
        let evict = attrs(
            "pods",
            Operation::Delete,
            Some("d"),
            "web",
            Some("eviction"),
            &n1,
        );
        assert_eq!(
            run(&p, &evict, &there, Some(&there)).as_deref(),
            Some("pods \"web\" is forbidden: node n1 can only evict pods with spec.nodeName set to itself")
        );
        let update = attrs("pods", Operation::Update, Some("d"), "web", None, &n1);
        assert_eq!(
            run(&p, &update, &here, Some(&here)).as_deref(),
            Some("pods \"web\" is forbidden: unexpected operation \"UPDATE\", node \"n1\" can only create and delete mirror pods")
        );
        let ephemeral = attrs(
            "pods",
            Operation::Update,
            Some("d"),
            "web",
            Some("ephemeralcontainers"),
            &n1,
        );
        assert_eq!(
            run(&p, &ephemeral, &here, Some(&here)).as_deref(),
            Some("pods \"web\" is forbidden: unexpected pod subresource \"ephemeralcontainers\", only 'status' and 'eviction' are allowed")
        );
        let create = attrs("pods", Operation::Create, Some("d"), "web", None, &n1);
        assert_eq!(
            run(&p, &create, &here, None).as_deref(),
            Some("pods \"web\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods")
        );
        let mut mirror = here.clone();
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "x"});
        assert_eq!(
            run(&p, &create, &mirror, None).as_deref(),
            Some("pods \"web\" is forbidden: node \"n1\" can only create pods with an owner reference set to itself")
        );
        // Other users are not restricted.
        let bob = Identity {
            user: "bob".into(),
            groups: vec![],
        };
        let mut a = attrs("pods", Operation::Update, Some("d"), "web", None, &bob);
        assert_eq!(run(&p, &a, &there, Some(&there)), None);
        a.user = None;
        assert_eq!(run(&p, &a, &there, Some(&there)), None);
    }

    #[test]
    fn nodes_write_their_own_node_within_bounds() {
        let (p, n1) = (plugin(), node("n1"));
        let n = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "node.kubernetes.io/x": "y", "mine": "1"}}});
        let create = attrs("nodes", Operation::Create, None, "n1", None, &n1);
        assert_eq!(run(&p, &create, &n, None), None);
        let other = attrs("nodes", Operation::Update, None, "n2", None, &n1);
        assert_eq!(
            run(&p, &other, &n, Some(&n)).as_deref(),
            Some("nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"")
        );
        let mut bad = n.clone();
        bad["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        bad["metadata"]["labels"]["node-restriction.kubernetes.io/pool"] = json!("a");
        bad["metadata"]["labels"]["example.com/ok"] = json!("a");
        assert_eq!(
            run(&p, &create, &bad, None).as_deref(),
            Some("nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane")
        );
        let update = attrs("nodes", Operation::Update, None, "n1", Some("status"), &n1);
        assert_eq!(
            run(&p, &update, &bad, Some(&n)).as_deref(),
            Some("nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane")
        );
        // Removing one counts as modifying it.
        assert!(run(&p, &update, &n, Some(&bad)).is_some());
        let mut tainted = n.clone();
        tainted["spec"] = json!({"taints": [{"key": "k", "effect": "NoSchedule"}]});
        assert_eq!(
            run(&p, &update, &n, Some(&tainted)).as_deref(),
            Some("nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints")
        );
        // No taints and an empty list are the same.
        let mut empty = n.clone();
        empty["spec"] = json!({"taints": []});
        assert_eq!(run(&p, &update, &empty, Some(&n)), None);
        let delete = attrs("nodes", Operation::Delete, None, "n2", None, &n1);
        assert!(run(&p, &delete, &n, Some(&n)).is_some());
    }

    #[test]
    fn leases_only_its_own_in_kube_node_lease() {
        let (p, n1) = (plugin(), node("n1"));
        let l = json!({"metadata": {"name": "n1"}});
        let own = attrs(
            "leases",
            Operation::Update,
            Some("kube-node-lease"),
            "n1",
            None,
            &n1,
        );
        assert_eq!(run(&p, &own, &l, Some(&l)), None);
        let other = attrs(
            "leases",
            Operation::Create,
            Some("kube-node-lease"),
            "n2",
            None,
            &n1,
        );
        assert_eq!(
            run(&p, &other, &l, None).as_deref(),
            Some("leases.coordination.k8s.io \"n2\" is forbidden: can only access node lease with the same name as the requesting node")
        );
        let elsewhere = attrs(
            "leases",
            Operation::Update,
            Some("default"),
            "n1",
            None,
            &n1,
        );
        assert_eq!(
            run(&p, &elsewhere, &l, Some(&l)).as_deref(),
            Some("leases.coordination.k8s.io \"n1\" is forbidden: can only access leases in the \"kube-node-lease\" system namespace")
        );
    }

    #[test]
    fn tokens_only_for_pods_bound_here() {
        let (p, n1) = (plugin(), node("n1"));
        let info = skiff_resources::lookup("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "web", "namespace": "d", "uid": "u1"}, "spec": {"nodeName": "n2"}});
        p.store
            .create(&key(info, Some("d"), "web"), &crate::storage::encode(&pod))
            .unwrap();
        let a = attrs(
            "serviceaccounts",
            Operation::Create,
            Some("d"),
            "default",
            Some("token"),
            &n1,
        );
        let unbound = json!({"spec": {}});
        assert_eq!(
            run(&p, &a, &unbound, None).as_deref(),
            Some(
                "serviceaccounts \"default\" is forbidden: node requested token not bound to a pod"
            )
        );
        let no_uid =
            json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web"}}});
        assert!(run(&p, &a, &no_uid, None)
            .unwrap()
            .ends_with("node requested token with a pod binding without a uid"));
        let bound = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1"}}});
        assert!(run(&p, &a, &bound, None)
            .unwrap()
            .ends_with("node requested token bound to a pod scheduled on a different node"));
        let gone = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": "u1"}}});
        let e = p.admit(&a, &mut gone.clone(), None).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "pods \"gone\" not found")
        );
    }

    #[test]
    fn pvcs_only_status_capacity_and_conditions() {
        let (p, n1) = (plugin(), node("n1"));
        let old = json!({"metadata": {"name": "c"}, "spec": {"volumeName": "v"}, "status": {"phase": "Bound"}});
        let main = attrs(
            "persistentvolumeclaims",
            Operation::Update,
            Some("d"),
            "c",
            None,
            &n1,
        );
        assert_eq!(
            run(&p, &main, &old, Some(&old)).as_deref(),
            Some("persistentvolumeclaims \"c\" is forbidden: may only update PVC status")
        );
        let status = attrs(
            "persistentvolumeclaims",
            Operation::Update,
            Some("d"),
            "c",
            Some("status"),
            &n1,
        );
        let mut grown = old.clone();
        grown["status"]["capacity"] = json!({"storage": "2Gi"});
        assert_eq!(run(&p, &status, &grown, Some(&old)), None);
        let mut phase = old.clone();
        phase["status"]["phase"] = json!("Lost");
        assert!(run(&p, &status, &phase, Some(&old)).is_some());
    }

    #[test]
    fn kubelet_labels_follow_kube() {
        for (k, ok) in [
            ("kubernetes.io/hostname", true),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers",
                true,
            ),
            ("a.kubelet.kubernetes.io/x", true),
            ("kubernetes.io/role", false),
            ("node-role.kubernetes.io/worker", false),
            ("k8s.io/x", false),
        ] {
            assert_eq!(is_kubelet_label(k), ok, "{k}");
        }
        assert!(!in_domain("evilkubernetes.io", "kubernetes.io"));
    }
}
