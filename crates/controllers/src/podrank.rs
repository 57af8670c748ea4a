//! Which pods a ReplicaSet deletes first when it scales down: the least valuable ones,
//! in the order of Kubernetes' `controller.ActivePodsWithRanks`.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use crate::util::{pod_phase, pod_ready_since};

fn phase_rank(pod: &Pod) -> u8 {
    match pod_phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn created(pod: &Pod) -> i64 {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond() as i64)
        .unwrap_or(0)
}

/// Compares two pods: `Less` means `a` is less valuable and is deleted before `b`.
/// `rank_a`/`rank_b` count the pods of the same owner family on each pod's node (more
/// doubled-up pods are deleted first).
pub fn less_valuable(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    // 1. Unassigned before assigned.
    node(a)
        .cmp(&node(b))
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // 3. Not ready before ready.
        .then_with(|| {
            pod_ready_since(a)
                .is_some()
                .cmp(&pod_ready_since(b).is_some())
        })
        // 4. More pods on the same node first.
        .then_with(|| rank_b.cmp(&rank_a))
        // 5. Ready for less time first.
        .then_with(|| match (pod_ready_since(a), pod_ready_since(b)) {
            (Some(ta), Some(tb)) => tb.cmp(&ta),
            _ => Ordering::Equal,
        })
        // 6. More restarts first.
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // 7. Newer first.
        .then_with(|| created(b).cmp(&created(a)))
}

/// Picks `count` pods to delete out of `pods` (the active pods of one ReplicaSet);
/// `related` are the active pods of all ReplicaSets of the same Deployment, used to rank
/// pods by how many siblings share their node.
pub fn pods_to_delete<'a>(pods: &[&'a Pod], related: &[&Pod], count: usize) -> Vec<&'a Pod> {
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let rank = |p: &Pod| {
        let n = node_of(p);
        if n.is_empty() {
            0
        } else {
            related.iter().filter(|r| node_of(r) == n).count()
        }
    };
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (*p, rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| less_valuable(a, *ra, b, *rb));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
    ) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).expect("ts").to_string()},
            "spec": {"containers": []},
            "status": {"phase": phase},
        });
        if let Some(n) = node {
            v["spec"]["nodeName"] = n.into();
        }
        if let Some(t) = ready_at {
            v["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": "True",
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::from_second(t).expect("ts").to_string()}]);
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn order_of_deletion() {
        let pods = [
            pod("ready-old", Some("n1"), "Running", Some(100), 10),
            pod("ready-new", Some("n1"), "Running", Some(200), 20),
            pod("unscheduled", None, "Pending", None, 5),
            pod("pending", Some("n2"), "Pending", None, 6),
            pod("running-unready", Some("n2"), "Running", None, 7),
            pod("ready-alone", Some("n3"), "Running", Some(300), 30),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<String> = pods_to_delete(&refs, &refs, 6)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "running-unready",
                "ready-new",
                "ready-old",
                "ready-alone"
            ]
        );
        assert_eq!(pods_to_delete(&refs, &refs, 2).len(), 2);
    }
}
