//! The node lifecycle controller: watches each node's heartbeats (its Lease in
//! `kube-node-lease` and its Ready condition); a node silent for longer than the grace
//! period gets its conditions set to Unknown, the `node.kubernetes.io/unreachable`
//! taints (NoSchedule and NoExecute) and its pods marked not ready; a node whose Ready
//! condition is False gets the `not-ready` taints. Pods on a node with NoExecute taints
//! are evicted once their tolerationSeconds run out (the taint manager); taints go away
//! when the node is Ready again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use skiff_api::names::{NOT_READY_TAINT, UNREACHABLE_TAINT};

use crate::events::{Recorder, NORMAL};
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_not_found, now, pod_active};
use crate::{ControllersConfig, Informers};

/// How often every node is looked at (`--node-monitor-period`).
pub const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The taints a node should carry for its Ready condition status.
pub fn condition_taints(ready: Option<&str>) -> Vec<(&'static str, &'static str)> {
    match ready {
        Some("True") | None => vec![],
        Some("False") => vec![
            (NOT_READY_TAINT, "NoSchedule"),
            (NOT_READY_TAINT, "NoExecute"),
        ],
        _ => vec![
            (UNREACHABLE_TAINT, "NoSchedule"),
            (UNREACHABLE_TAINT, "NoExecute"),
        ],
    }
}

pub use skiff_api::helpers::tolerates;

/// When a pod on a node with `taints` must be evicted: `Some(0)` now, `Some(s)` `s`
/// seconds after the newest NoExecute taint was added, `None` never. Pods without a
/// toleration for the not-ready/unreachable taints get `default_secs` (what the
/// DefaultTolerationSeconds admission plugin would have given them).
pub fn eviction_delay(pod: &Pod, taints: &[Taint], default_secs: i64) -> Option<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut min: Option<i64> = None;
    let mut any = false;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        any = true;
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let secs = if matching.is_empty() {
            if taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT {
                Some(default_secs)
            } else {
                return Some(0);
            }
        } else {
            // The shortest limited toleration wins; unlimited ones keep the pod forever.
            matching.iter().filter_map(|t| t.toleration_seconds).min()
        };
        if let Some(s) = secs {
            min = Some(min.map_or(s, |m: i64| m.min(s)));
        }
    }
    if !any {
        return None;
    }
    min.map(|s| s.max(0))
}

#[derive(Default)]
struct Health {
    seen: String,
    probe: Option<Instant>,
    /// The uid of the Node this controller has announced (`RegisteredNode`).
    registered: Option<String>,
}

struct Ctx {
    client: Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    recorder: Recorder,
    grace: Duration,
    default_toleration: i64,
    health: Mutex<HashMap<String, Health>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers, cfg: &ControllersConfig) {
    let queue = WorkQueue::new();
    Triggers::new(&queue, &inf.nodes)
        .primary_if(|_, deleted| !deleted)
        .every(NODE_MONITOR_PERIOD);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        nodes: inf.nodes.clone(),
        leases: inf.node_leases.clone(),
        pods: inf.pods.clone(),
        recorder: Recorder::new(client, "node-controller"),
        grace: cfg.node_monitor_grace_period,
        default_toleration: cfg.pod_eviction_timeout_default.as_secs() as i64,
        health: Mutex::default(),
    });
    run_workers("nodelifecycle", queue, 2, move |name| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &name).await }
    });
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

async fn sync(ctx: &Ctx, name: &str) -> anyhow::Result<Option<Duration>> {
    let Some(node) = ctx.nodes.store().get(&ObjectRef::new(name)) else {
        ctx.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        return Ok(None);
    };
    ctx.leases.wait_ready().await;
    let lease = ctx
        .leases
        .store()
        .get(&ObjectRef::new(name).within("kube-node-lease"));
    // What the kubelet last posted; any change is a heartbeat, timed by our own clock.
    let seen = format!(
        "{:?}|{:?}",
        lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.clone()),
        ready_condition(&node).map(|c| (c.last_heartbeat_time.clone(), c.status.clone()))
    );
    let (silent_for, new_node) = {
        let mut health = ctx.health.lock().unwrap_or_else(|e| e.into_inner());
        let h = health.entry(name.to_string()).or_default();
        let uid = node.uid();
        let new_node = h.registered != uid;
        h.registered = uid;
        if h.probe.is_none() || h.seen != seen {
            h.seen = seen;
            h.probe = Some(Instant::now());
        }
        (h.probe.map(|p| p.elapsed()).unwrap_or_default(), new_node)
    };
    if new_node {
        // As kube's node lifecycle controller announces every node it starts to watch.
        ctx.recorder.publish(
            node.as_ref(),
            NORMAL,
            "RegisteredNode",
            format!("Node {name} event: Registered Node {name} in Controller"),
        );
    }
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let ready_status = ready_condition(&node).map(|c| c.status.clone());
    if silent_for > ctx.grace && ready_status.as_deref() != Some("Unknown") {
        mark_unknown(ctx, &nodes_api, &node).await?;
        return Ok(Some(Duration::from_millis(100)));
    }
    // Taints for the Ready condition.
    let want = condition_taints(ready_status.as_deref());
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let is_condition_taint = |t: &Taint| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT;
    let mut new_taints: Vec<Taint> = taints
        .iter()
        .filter(|t| !is_condition_taint(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in &want {
        if !new_taints
            .iter()
            .any(|t| t.key == *key && t.effect == *effect)
        {
            new_taints.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: (*effect == "NoExecute").then(now),
                value: None,
            });
        }
    }
    if new_taints != taints {
        tracing::info!(node = name, taints = ?new_taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating node taints");
        let patch = serde_json::json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": new_taints}});
        nodes_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("updating taints of node {name}"))?;
        return Ok(None);
    }
    // The taint manager: evict pods whose toleration ran out.
    let no_execute: Vec<Taint> = taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect();
    if no_execute.is_empty() {
        return Ok(None);
    }
    let added = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0.as_second()))
        .max()
        .unwrap_or_else(|| Timestamp::now().as_second());
    let now_s = Timestamp::now().as_second();
    let mut next: Option<i64> = None;
    for pod in ctx.pods.list().iter().filter(|p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name) && pod_active(p)
    }) {
        let Some(delay) = eviction_delay(pod, &no_execute, ctx.default_toleration) else {
            continue;
        };
        let due = added + delay;
        if due <= now_s {
            let ns = pod.namespace().unwrap_or_default();
            tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), node = name, "evicting pod from tainted node");
            ctx.recorder.publish(
                pod.as_ref(),
                NORMAL,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
            );
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("evicting pod {ns}/{}", pod.name_any()))
                }
            }
        } else {
            next = Some(next.map_or(due, |n: i64| n.min(due)));
        }
    }
    Ok(next.map(|due| Duration::from_secs((due - now_s).max(1) as u64)))
}

async fn mark_unknown(ctx: &Ctx, api: &Api<Node>, node: &Node) -> anyhow::Result<()> {
    let name = node.name_any();
    let t = now();
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: None,
            last_transition_time: Some(t.clone()),
        });
    }
    for c in conditions.iter_mut() {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(t.clone());
        }
    }
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("marking node {name} unknown"))?;
    ctx.recorder.publish(
        node,
        NORMAL,
        "NodeNotReady",
        format!("Node {name} status is now: NodeNotReady"),
    );
    tracing::info!(node = %name, "node stopped posting status: marked Unknown");
    // Its pods are not ready any more (MarkPodsNotReady).
    for pod in ctx
        .pods
        .list()
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
    {
        let mut conds = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut changed = false;
        for c in conds
            .iter_mut()
            .filter(|c| c.type_ == "Ready" && c.status == "True")
        {
            c.status = "False".into();
            c.last_transition_time = Some(t.clone());
            changed = true;
        }
        if !changed {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let papi: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"status": {"conditions": conds}});
        match papi
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::info!(pod = %pod.name_any(), error = %e, "marking pod not ready"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tolerations}
        }))
        .expect("pod")
    }

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        assert!(condition_taints(Some("True")).is_empty());
        assert_eq!(
            condition_taints(Some("Unknown"))[1],
            (UNREACHABLE_TAINT, "NoExecute")
        );
        assert_eq!(
            condition_taints(Some("False"))[0],
            (NOT_READY_TAINT, "NoSchedule")
        );
    }

    #[test]
    fn eviction_delays() {
        let unreachable = [taint(UNREACHABLE_TAINT)];
        let admitted = pod(serde_json::json!([
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]));
        assert_eq!(eviction_delay(&admitted, &unreachable, 60), Some(300));
        assert_eq!(
            eviction_delay(&pod(serde_json::json!([])), &unreachable, 60),
            Some(60)
        );
        let forever = pod(serde_json::json!([{"operator": "Exists"}]));
        assert_eq!(eviction_delay(&forever, &unreachable, 60), None);
        assert_eq!(
            eviction_delay(&pod(serde_json::json!([])), &[taint("custom")], 60),
            Some(0)
        );
        assert_eq!(eviction_delay(&admitted, &[], 60), None);
    }
}
