//! The scheduling framework's filters and scores as pure functions over a snapshot of
//! the cluster: which nodes can run a pod (with kube-scheduler's reasons when they
//! cannot) and which of them is best.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{nonzero_requests, pod_requests, resource_list, Resources};

pub use skiff_api::helpers::{node_affinity_matches, tolerates};
pub use skiff_api::names::{NOT_READY_TAINT, UNREACHABLE_TAINT};

/// What the scheduler knows of one node: the node and the pods bound (or assumed) to it.
#[derive(Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: Arc<Node>,
    /// Active pods on it.
    pub pods: Vec<Arc<Pod>>,
    /// Sum of those pods' requests.
    pub requested: Resources,
    /// Sum of their requests with defaults for unset cpu/memory (for scoring).
    pub nonzero_requested: (i64, i64),
    /// Host ports in use: (host IP, protocol, port).
    pub used_ports: BTreeSet<(String, String, i32)>,
    /// Pods per controller uid (for spreading).
    pub owner_counts: HashMap<String, usize>,
    /// The node's allocatable resources.
    pub allocatable: Resources,
}

impl NodeInfo {
    /// A node without pods.
    pub fn new(node: Arc<Node>) -> Self {
        let allocatable = resource_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        NodeInfo {
            node,
            pods: Vec::new(),
            requested: Resources::new(),
            nonzero_requested: (0, 0),
            used_ports: BTreeSet::new(),
            owner_counts: HashMap::new(),
            allocatable,
        }
    }

    /// The same pods on an updated node object.
    pub fn with_node(&self, node: Arc<Node>) -> Self {
        let mut ni = NodeInfo::new(node);
        for p in &self.pods {
            ni.add_pod(p.clone());
        }
        ni
    }

    /// Forgets a pod (by uid); returns whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let before = self.pods.len();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .iter()
            .filter(|p| p.metadata.uid.as_deref() != Some(uid))
            .cloned()
            .collect();
        if pods.len() == before {
            return false;
        }
        let mut ni = NodeInfo::new(self.node.clone());
        for p in pods {
            ni.add_pod(p);
        }
        *self = ni;
        true
    }

    /// Accounts for one more pod on the node.
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        for (k, v) in pod_requests(&pod) {
            *self.requested.entry(k).or_insert(0) += v;
        }
        let (c, m) = nonzero_requests(&pod);
        self.nonzero_requested.0 += c;
        self.nonzero_requested.1 += m;
        self.used_ports.extend(host_ports(&pod));
        if let Some(uid) = controller_uid(&pod) {
            *self.owner_counts.entry(uid.to_string()).or_insert(0) += 1;
        }
        self.pods.push(pod);
    }

    fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|hp| *hp > 0)?;
            Some((
                p.host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                hp,
            ))
        })
        .collect()
}

/// The node's taints, plus the not-ready/unreachable taint the node lifecycle
/// controller puts on a node whose Ready condition is not True (if not already there).
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY_TAINT),
        _ => Some(UNREACHABLE_TAINT),
    };
    if let Some(key) = implied {
        if !taints
            .iter()
            .any(|t| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT)
        {
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    taints
}

/// Why a node cannot run a pod, in kube-scheduler's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reasons, as they appear in the FailedScheduling histogram.
    pub reasons: Vec<String>,
    /// Whether preemption could help (resources), unlike taints or affinity.
    pub resolvable: bool,
}

/// What the filters and scores need of a pod, computed once per scheduling attempt.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Effective requests.
    pub requests: Resources,
    /// Requests with defaults for scoring.
    pub nonzero: (i64, i64),
    /// Host ports asked for.
    pub ports: Vec<(String, String, i32)>,
}

impl PodInfo {
    /// Computes the pod's requests and ports.
    pub fn new(pod: &Pod) -> Self {
        PodInfo {
            requests: pod_requests(pod),
            nonzero: nonzero_requests(pod),
            ports: host_ports(pod),
        }
    }
}

/// Runs every filter (see [`filter_with`]).
pub fn filter(pod: &Pod, ni: &NodeInfo) -> Result<(), Rejection> {
    filter_with(pod, &PodInfo::new(pod), ni)
}

/// Runs every filter; `Err` holds the first failing plugin's reasons, as kube-scheduler
/// reports them.
pub fn filter_with(pod: &Pod, info: &PodInfo, ni: &NodeInfo) -> Result<(), Rejection> {
    let unresolvable = |r: &str| Rejection {
        reasons: vec![r.to_string()],
        resolvable: false,
    };
    let default_spec = Default::default();
    let spec: &k8s_openapi::api::core::v1::PodSpec = pod.spec.as_ref().unwrap_or(&default_spec);
    // NodeUnschedulable
    if ni.node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let tolerated = spec.tolerations.iter().flatten().any(|t| {
            tolerates(
                t,
                &Taint {
                    key: skiff_api::names::UNSCHEDULABLE_TAINT.into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                },
            )
        });
        if !tolerated {
            return Err(unresolvable("node(s) were unschedulable"));
        }
    }
    // NodeName
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != ni.name() {
            return Err(unresolvable("node(s) didn't match the requested node name"));
        }
    }
    // TaintToleration
    for taint in effective_taints(&ni.node) {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !spec
            .tolerations
            .iter()
            .flatten()
            .any(|t| tolerates(t, &taint))
        {
            return Err(unresolvable(&format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )));
        }
    }
    // NodeAffinity
    if !node_affinity_matches(pod, &ni.node) {
        return Err(unresolvable(
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    // NodePorts
    for (ip, proto, port) in info.ports.iter().cloned() {
        let conflict = ni.used_ports.iter().any(|(uip, uproto, uport)| {
            *uport == port
                && *uproto == proto
                && (ip == "0.0.0.0" || uip == "0.0.0.0" || *uip == ip)
        });
        if conflict {
            return Err(Rejection {
                reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
                resolvable: true,
            });
        }
    }
    // NodeResourcesFit
    let alloc = &ni.allocatable;
    let mut reasons = Vec::new();
    let max_pods = alloc.get("pods").copied().unwrap_or(110);
    if ni.pods.len() as i64 + 1 > max_pods {
        reasons.push("Too many pods".to_string());
    }
    for (name, want) in info.requests.iter().map(|(k, v)| (k.clone(), *v)) {
        if want <= 0 || name == "pods" {
            continue;
        }
        let Some(cap) = alloc.get(&name) else {
            if name == "cpu" || name == "memory" || name == "ephemeral-storage" {
                // A node that reports no allocatable for core resources is not limited.
                continue;
            }
            reasons.push(format!("Insufficient {name}"));
            continue;
        };
        if ni.requested.get(&name).copied().unwrap_or(0) + want > *cap {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if !reasons.is_empty() {
        return Err(Rejection {
            reasons,
            resolvable: true,
        });
    }
    Ok(())
}

/// The uid of the pod's controller (Deployment pods: their ReplicaSet).
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A node's score for a pod: higher is better. Pods of one controller spread over nodes
/// first (kube's default PodTopologySpread / SelectorSpread), then least allocated.
pub fn score(pod: &Pod, info: &PodInfo, ni: &NodeInfo) -> (i64, i64, i64) {
    let same_owner = controller_uid(pod)
        .and_then(|uid| ni.owner_counts.get(uid))
        .copied()
        .unwrap_or(0) as i64;
    let alloc = &ni.allocatable;
    let (pc, pm) = info.nonzero;
    let frac = |used: i64, cap: Option<&i64>| -> i64 {
        match cap {
            Some(c) if *c > 0 => ((c - used).max(0) * 100 / c).min(100),
            _ => 100,
        }
    };
    let least_allocated = (frac(ni.nonzero_requested.0 + pc, alloc.get("cpu"))
        + frac(ni.nonzero_requested.1 + pm, alloc.get("memory")))
        / 2;
    (-same_owner, least_allocated, -(ni.pods.len() as i64))
}

/// Picks the best of the feasible nodes (ties go to the first in name order).
pub fn pick<'a>(pod: &Pod, feasible: &[&'a NodeInfo]) -> Option<&'a NodeInfo> {
    pick_with(pod, &PodInfo::new(pod), feasible)
}

/// [`pick`] with the pod's precomputed [`PodInfo`].
pub fn pick_with<'a>(pod: &Pod, info: &PodInfo, feasible: &[&'a NodeInfo]) -> Option<&'a NodeInfo> {
    let mut best: Option<(&NodeInfo, (i64, i64, i64))> = None;
    for ni in feasible {
        let s = score(pod, info, ni);
        if best.as_ref().is_none_or(|(_, bs)| s > *bs) {
            best = Some((ni, s));
        }
    }
    best.map(|(n, _)| n)
}

/// kube-scheduler's FitError message when a PreFilter plugin refused the pod for every
/// node: `0/3 nodes are available: <its message>. preemption: 0/3 nodes are available:
/// 3 Preemption is not helpful for scheduling.`
pub fn prefilter_error_message(num_nodes: usize, msg: &str) -> String {
    let all = vec![
        Rejection {
            reasons: vec![],
            resolvable: false,
        };
        num_nodes
    ];
    let rest = fit_error_message(num_nodes, &all);
    let head = format!("0/{num_nodes} nodes are available:");
    format!("{head} {msg}.{}", rest.strip_prefix(&head).unwrap_or(&rest))
}

/// kube-scheduler's FitError message: `0/3 nodes are available: <histogram>. preemption:
/// <per-node preemption outcome>.`
pub fn fit_error_message(num_nodes: usize, rejections: &[Rejection]) -> String {
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    for r in rejections {
        for reason in &r.reasons {
            *hist.entry(reason.clone()).or_insert(0) += 1;
        }
    }
    let mut msg = format!("0/{num_nodes} nodes are available:");
    let mut parts: Vec<String> = hist.iter().map(|(k, v)| format!("{v} {k}")).collect();
    parts.sort();
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    let not_helpful = rejections.iter().filter(|r| !r.resolvable).count();
    let no_victims = rejections.len() - not_helpful;
    let mut pre: Vec<String> = Vec::new();
    if no_victims > 0 {
        pre.push(format!(
            "{no_victims} No preemption victims found for incoming pod"
        ));
    }
    if not_helpful > 0 {
        pre.push(format!(
            "{not_helpful} Preemption is not helpful for scheduling"
        ));
    }
    pre.sort();
    if pre.is_empty() {
        msg.push_str(&format!(" preemption: 0/{num_nodes} nodes are available."));
    } else {
        msg.push_str(&format!(
            " preemption: 0/{num_nodes} nodes are available: {}.",
            pre.join(", ")
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    fn pod(name: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "httpd-x", "uid": "rs1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "httpd"}]}
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn cluster() -> Vec<NodeInfo> {
        vec![
            NodeInfo::new(node(
                "k8s-m",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
                       "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
            )),
            NodeInfo::new(node("k8s-n1", json!({}))),
            NodeInfo::new(node("k8s-n2", json!({}))),
        ]
    }

    #[test]
    fn four_replicas_spread_two_and_two_over_the_workers() {
        let mut nodes = cluster();
        for i in 0..4 {
            let p = pod(&format!("httpd-{i}"), json!({}));
            let feasible: Vec<&NodeInfo> = nodes.iter().filter(|n| filter(&p, n).is_ok()).collect();
            assert_eq!(feasible.len(), 2);
            let name = pick(&p, &feasible).expect("a node").name().to_string();
            let ni = nodes.iter_mut().find(|n| n.name() == name).expect("node");
            ni.add_pod(p);
        }
        let counts: Vec<usize> = nodes.iter().map(|n| n.pods.len()).collect();
        assert_eq!(counts, [0, 2, 2]);
    }

    #[test]
    fn tolerations_selectors_ports_and_resources() {
        let nodes = cluster();
        let tolerant = pod(
            "t",
            json!({"spec": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&tolerant, &nodes[0]).is_ok());
        let everything = pod(
            "e",
            json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        );
        assert!(filter(&everything, &nodes[0]).is_ok());
        let sel = pod(
            "s",
            json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "k8s-n2"}}}),
        );
        assert!(filter(&sel, &nodes[1]).is_err());
        assert!(filter(&sel, &nodes[2]).is_ok());
        let aff = pod(
            "a",
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["k8s-n1"]}]}]}}}}}),
        );
        assert!(filter(&aff, &nodes[1]).is_err());
        assert!(filter(&aff, &nodes[2]).is_ok());
        let hp = pod(
            "h",
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        );
        let mut n1 = nodes[1].clone();
        assert!(filter(&hp, &n1).is_ok());
        n1.add_pod(hp.clone());
        assert_eq!(
            filter(&hp, &n1).map_err(|r| r.reasons),
            Err(vec![
                "node(s) didn't have free ports for the requested pod ports".to_string()
            ])
        );
        let big = pod(
            "b",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(
            filter(&big, &nodes[1]).map_err(|r| r.reasons),
            Err(vec!["Insufficient cpu".to_string()])
        );
    }

    #[test]
    fn not_ready_and_unschedulable_nodes() {
        let nr = NodeInfo::new(node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ));
        let p = pod("p", json!({}));
        assert_eq!(
            filter(&p, &nr).map_err(|r| r.reasons),
            Err(vec![
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string()
            ])
        );
        let cordoned = NodeInfo::new(node("c", json!({"spec": {"unschedulable": true}})));
        assert_eq!(
            filter(&p, &cordoned).map_err(|r| r.reasons),
            Err(vec!["node(s) were unschedulable".to_string()])
        );
    }

    #[test]
    fn prefilter_message() {
        assert_eq!(
            prefilter_error_message(3, "persistentvolumeclaim \"data\" not found"),
            "0/3 nodes are available: persistentvolumeclaim \"data\" not found. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn failed_scheduling_message() {
        let nodes = cluster();
        let big = pod(
            "b",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}}),
        );
        let rejections: Vec<Rejection> =
            nodes.iter().filter_map(|n| filter(&big, n).err()).collect();
        assert_eq!(
            fit_error_message(3, &rejections),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod."
        );
    }
}
