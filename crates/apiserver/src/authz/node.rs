//! The Node authorizer (kube's `plugin/pkg/auth/authorizer/node`): what a kubelet may do.
//!
//! A node is the user `system:node:<name>` in the group `system:nodes`. It may do what
//! the `system:node` ClusterRole lists (kube's `NodeRules`), except that secrets,
//! configmaps, persistent volume claims and volumes, and service-account tokens are
//! reachable only through a pod bound to the node: a node can read the secret a pod on it
//! mounts, not its neighbours'. kube keeps a graph of pods, nodes and what they reference,
//! fed by informers; skiff asks the store for the namespace's pods when such a request
//! comes (kubelets read these objects once per pod start, so a scan is cheap enough and is
//! never stale). Which objects a node may write (its own Node, Lease, and its pods'
//! status) is NodeRestriction admission's job, as in kube.

use std::sync::Arc;

use serde_json::Value;
use skiff_api::k8s_openapi::api::rbac::v1::PolicyRule;
use skiff_api::names::NODES_GROUP;
use skiff_store::Store;

use super::rbac::rules::rule_allows;
use super::{Attributes, Authorizer, Decision, RulesReview, Target};

/// The user-name prefix of node identities.
pub(crate) const NODE_USER_PREFIX: &str = "system:node:";

/// The node name of a node identity (`system:node:<name>` in `system:nodes`), if it is
/// one.
pub(crate) fn node_name(user: &crate::authn::Identity) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.user
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// The Node authorizer.
pub(crate) struct NodeAuthorizer {
    store: Arc<dyn Store>,
    /// kube's `NodeRules`: the `system:node` ClusterRole's rules.
    rules: Vec<PolicyRule>,
}

impl NodeAuthorizer {
    /// An authorizer reading pods from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        NodeAuthorizer {
            store,
            rules: super::rbac::bootstrap::node_rules(),
        }
    }

    /// Whether a pod bound to `node` in `namespace` references the `kind` object `name`.
    fn related(&self, node: &str, namespace: &str, kind: Ref, name: &str) -> bool {
        let prefix = format!("/registry/core/pods/{namespace}/");
        let Ok((kvs, _)) = self.store.list(&prefix) else {
            return false;
        };
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|pod| pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .any(|pod| references(&pod, kind).iter().any(|n| n == name))
    }

    /// PersistentVolumes: reachable through a claim a pod on the node mounts.
    fn volume_related(&self, node: &str, name: &str) -> bool {
        let Ok((claims, _)) = self.store.list("/registry/core/persistentvolumeclaims/") else {
            return false;
        };
        claims
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|c| c.pointer("/spec/volumeName").and_then(Value::as_str) == Some(name))
            .any(|c| {
                let ns = c
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let claim = c
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                self.related(node, ns, Ref::Claim, claim)
            })
    }
}

/// What a pod may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ref {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// The names of the `kind` objects `pod` references (kube's graph edges: volumes,
/// projected sources, env and envFrom of every container, image pull secrets, the
/// service account, generic ephemeral volumes' claims).
pub(crate) fn references(pod: &Value, kind: Ref) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    if kind == Ref::ServiceAccount {
        push(&spec["serviceAccountName"]);
        return out;
    }
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        match kind {
            Ref::Secret => push(&vol["secret"]["secretName"]),
            Ref::ConfigMap => push(&vol["configMap"]["name"]),
            Ref::Claim => {
                push(&vol["persistentVolumeClaim"]["claimName"]);
                if vol.get("ephemeral").is_some() {
                    let v = vol["name"].as_str().unwrap_or("");
                    push(&Value::String(format!("{pod_name}-{v}")));
                }
            }
            Ref::ServiceAccount => {}
        }
        for src in vol["projected"]["sources"].as_array().into_iter().flatten() {
            match kind {
                Ref::Secret => push(&src["secret"]["name"]),
                Ref::ConfigMap => push(&src["configMap"]["name"]),
                _ => {}
            }
        }
    }
    if kind == Ref::Secret {
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            push(&s["name"]);
        }
    }
    if matches!(kind, Ref::Secret | Ref::ConfigMap) {
        let (key_ref, from_ref) = match kind {
            Ref::Secret => ("secretKeyRef", "secretRef"),
            _ => ("configMapKeyRef", "configMapRef"),
        };
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                for e in c["env"].as_array().into_iter().flatten() {
                    push(&e["valueFrom"][key_ref]["name"]);
                }
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    push(&e[from_ref]["name"]);
                }
            }
        }
    }
    out
}

impl Authorizer for NodeAuthorizer {
    /// kube's Node `RulesFor`: a node's permissions depend on its pods and cannot be
    /// listed, so a node's list is incomplete; anyone else gets nothing from here.
    fn rules_for(&self, user: &crate::authn::Identity, _namespace: &str) -> RulesReview {
        // kube's NodeIdentity: the prefix and the group make a node, even with no name.
        let is_node =
            user.user.starts_with(NODE_USER_PREFIX) && user.groups.iter().any(|g| g == NODES_GROUP);
        if !is_node {
            return RulesReview::default();
        }
        RulesReview {
            incomplete: true,
            errors: vec!["node authorizer does not support user rule resolution".into()],
            ..RulesReview::default()
        }
    }

    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        let Some(node) = node_name(a.user) else {
            return Decision::NoOpinion(String::new());
        };
        let Target::Resource {
            group: "",
            resource,
            subresource,
            namespace,
            name,
        } = a.target
        else {
            return self.by_rules(a);
        };
        let kind = match (resource, subresource) {
            ("secrets", None) => Ref::Secret,
            ("configmaps", None) => Ref::ConfigMap,
            ("persistentvolumeclaims", None) => Ref::Claim,
            ("serviceaccounts", Some("token")) => Ref::ServiceAccount,
            ("persistentvolumes", None) => {
                return match (a.verb, name) {
                    ("get", Some(n)) if self.volume_related(node, n) => Decision::Allow,
                    ("get", Some(_)) => no_relationship(node),
                    _ => only_get(),
                };
            }
            _ => return self.by_rules(a),
        };
        let wanted = if kind == Ref::ServiceAccount {
            "create"
        } else {
            "get"
        };
        match (a.verb == wanted, namespace, name) {
            (true, Some(ns), Some(n)) if self.related(node, ns, kind, n) => Decision::Allow,
            (true, Some(_), Some(_)) => no_relationship(node),
            _ if kind == Ref::ServiceAccount => {
                Decision::NoOpinion("can only create tokens for individual service accounts".into())
            }
            _ => only_get(),
        }
    }
}

impl NodeAuthorizer {
    fn by_rules(&self, a: &Attributes<'_>) -> Decision {
        if self.rules.iter().any(|r| rule_allows(a, r)) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

fn only_get() -> Decision {
    Decision::NoOpinion("can only get individual resources of this type".into())
}

fn no_relationship(node: &str) -> Decision {
    Decision::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;
    use serde_json::json;

    fn node(name: &str) -> Identity {
        Identity {
            user: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        }
    }

    fn authorizer(pods: &[Value]) -> NodeAuthorizer {
        let store: Arc<dyn Store> = Arc::new(skiff_store::SqliteStore::in_memory().unwrap());
        for p in pods {
            let key = format!(
                "/registry/core/pods/{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            );
            store.create(&key, p.to_string().as_bytes()).unwrap();
        }
        NodeAuthorizer::new(store)
    }

    fn get(resource: &str, ns: &str, name: &str) -> (String, String, String) {
        (resource.into(), ns.into(), name.into())
    }

    fn decide(
        z: &NodeAuthorizer,
        user: &Identity,
        verb: &str,
        r: (String, String, String),
    ) -> Decision {
        let (resource, ns, name) = r;
        z.authorize(&Attributes {
            user,
            verb,
            target: Target::Resource {
                group: "",
                resource: &resource,
                subresource: None,
                namespace: Some(&ns),
                name: Some(&name),
            },
        })
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "web",
                "volumes": [
                    {"name": "s", "secret": {"secretName": "mounted"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "e", "ephemeral": {}},
                ],
                "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "env"}}],
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "x"}}}]}],
                "imagePullSecrets": [{"name": "pull"}],
            }
        })
    }

    #[test]
    fn references_cover_every_edge() {
        let p = pod();
        assert_eq!(references(&p, Ref::Secret), ["mounted", "pull", "env"]);
        assert_eq!(references(&p, Ref::ConfigMap), ["kube-root-ca.crt", "cfg"]);
        assert_eq!(references(&p, Ref::Claim), ["data", "web-e"]);
        assert_eq!(references(&p, Ref::ServiceAccount), ["web"]);
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let z = authorizer(&[pod()]);
        let n1 = node("n1");
        assert_eq!(
            decide(&z, &n1, "get", get("secrets", "default", "mounted")),
            Decision::Allow
        );
        assert_eq!(
            decide(&z, &n1, "get", get("configmaps", "default", "cfg")),
            Decision::Allow
        );
        assert_eq!(
            decide(&z, &n1, "get", get("secrets", "default", "other")),
            Decision::NoOpinion("no relationship found between node 'n1' and this object".into())
        );
        assert_eq!(
            decide(&z, &node("n2"), "get", get("secrets", "default", "mounted")),
            Decision::NoOpinion("no relationship found between node 'n2' and this object".into())
        );
        assert_eq!(
            decide(&z, &n1, "list", get("secrets", "default", "mounted")),
            Decision::NoOpinion("can only get individual resources of this type".into())
        );
    }

    #[test]
    fn other_requests_follow_the_node_rules() {
        let z = authorizer(&[]);
        let n1 = node("n1");
        assert_eq!(
            decide(&z, &n1, "watch", get("pods", "default", "x")),
            Decision::Allow
        );
        assert_eq!(
            decide(&z, &n1, "get", get("services", "default", "x")),
            Decision::Allow
        );
        assert_eq!(
            decide(&z, &n1, "delete", get("services", "default", "x")),
            Decision::NoOpinion(String::new())
        );
        // Not a node: no opinion at all.
        let bob = Identity {
            user: "bob".into(),
            groups: vec!["system:authenticated".into()],
        };
        assert_eq!(
            decide(&z, &bob, "get", get("pods", "default", "x")),
            Decision::NoOpinion(String::new())
        );
        // `system:node:<name>` outside `system:nodes` is not a node either.
        let fake = Identity {
            user: "system:node:n1".into(),
            groups: vec![],
        };
        assert_eq!(
            decide(&z, &fake, "get", get("pods", "default", "x")),
            Decision::NoOpinion(String::new())
        );
    }
}
