//! skiff-scheduler: kube-scheduler as a kube-rs client of the API. It watches pods and
//! nodes, takes pending pods without a node one at a time (as kube-scheduler's
//! scheduling cycle does), filters and scores the nodes ([`plugins`]), assumes the pod
//! on the chosen node in its own cache so the next decision already counts it, and binds
//! it through the `pods/binding` subresource in the background.

pub mod events;
pub mod informer;
pub mod plugins;
pub mod resources;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::{on_change, Change, Informer};
use crate::plugins::{filter, fit_error_message, pick, NodeInfo, Rejection};

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// How long an unschedulable pod waits at most before it is tried again without any
/// cluster change.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Queues {
    active: VecDeque<String>,
    queued: HashSet<String>,
    unschedulable: HashSet<String>,
}

struct Scheduler {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    recorder: Recorder,
    queues: Mutex<Queues>,
    notify: Notify,
    // uid -> (pod as bound, when)
    assumed: Mutex<HashMap<String, (Arc<Pod>, Instant)>>,
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Whether this scheduler should place `pod` now.
pub fn wants(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

impl Scheduler {
    fn lock_queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, key: String) {
        let mut q = self.lock_queues();
        q.unschedulable.remove(&key);
        if q.queued.insert(key.clone()) {
            q.active.push_back(key);
            drop(q);
            self.notify.notify_one();
        }
    }

    fn flush_unschedulable(&self) {
        let mut q = self.lock_queues();
        let keys: Vec<String> = q.unschedulable.drain().collect();
        let mut added = false;
        for k in keys {
            if q.queued.insert(k.clone()) {
                q.active.push_back(k);
                added = true;
            }
        }
        drop(q);
        if added {
            self.notify.notify_one();
        }
    }

    async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = self.lock_queues();
                if let Some(k) = q.active.pop_front() {
                    q.queued.remove(&k);
                    return k;
                }
            }
            notified.await;
        }
    }

    /// The cluster as the scheduler sees it: nodes with their bound and assumed pods.
    fn snapshot(&self) -> Vec<NodeInfo> {
        let mut infos: HashMap<String, NodeInfo> = self
            .nodes
            .list()
            .into_iter()
            .map(|n| (n.name_any(), NodeInfo::new(n)))
            .collect();
        let pods = self.pods.list();
        let mut bound: HashSet<String> = HashSet::new();
        let mut present: HashSet<String> = HashSet::new();
        for p in &pods {
            let uid = p.uid().unwrap_or_default();
            present.insert(uid.clone());
            let Some(node) = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            bound.insert(uid);
            if matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            ) {
                continue;
            }
            if let Some(ni) = infos.get_mut(node) {
                ni.add_pod(p.clone());
            }
        }
        let mut assumed = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        // An assumption ends when the cache shows the binding, the pod is gone, or the
        // binding never showed up within a minute.
        assumed.retain(|uid, (_, at)| {
            !bound.contains(uid) && present.contains(uid) && at.elapsed() < Duration::from_secs(60)
        });
        for (p, _) in assumed.values() {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if let Some(ni) = infos.get_mut(&node) {
                ni.add_pod(p.clone());
            }
        }
        let mut v: Vec<NodeInfo> = infos.into_values().collect();
        v.sort_by_key(|a| a.node.name_any());
        v
    }

    async fn schedule_one(self: &Arc<Self>, key: String) {
        let Some((ns, name)) = key.split_once('/') else {
            return;
        };
        let Some(pod) = self.pods.store().get(&ObjectRef::new(name).within(ns)) else {
            return;
        };
        if !wants(&pod) {
            return;
        }
        let uid = pod.uid().unwrap_or_default();
        if self
            .assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&uid)
        {
            return;
        }
        let nodes = self.snapshot();
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        for ni in &nodes {
            match filter(&pod, ni) {
                Ok(()) => feasible.push(ni),
                Err(r) => rejections.push(r),
            }
        }
        let Some(chosen) = pick(&pod, &feasible) else {
            let msg = fit_error_message(nodes.len(), &rejections);
            tracing::debug!(pod = %key, %msg, "unschedulable");
            self.recorder
                .publish(pod.as_ref(), WARNING, "FailedScheduling", msg.clone());
            self.lock_queues().unschedulable.insert(key.clone());
            let already = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled" && c.message.as_deref() == Some(msg.as_str())
                    })
                });
            if already {
                return;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                "lastTransitionTime": Time(k8s_openapi::jiff::Timestamp::now()), "lastProbeTime": null,
            }]}});
            let name = name.to_string();
            tokio::spawn(async move {
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(pod = %name, error = %e, "setting PodScheduled condition");
                }
            });
            return;
        };
        let node_name = chosen.node.name_any();
        let mut assumed_pod = (*pod).clone();
        if let Some(spec) = assumed_pod.spec.as_mut() {
            spec.node_name = Some(node_name.clone());
        }
        self.assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), (Arc::new(assumed_pod), Instant::now()));
        let this = self.clone();
        tokio::spawn(async move {
            match this.bind(&pod, &node_name).await {
                Ok(()) => {
                    this.recorder.publish(
                        pod.as_ref(),
                        NORMAL,
                        "Scheduled",
                        format!("Successfully assigned {key} to {node_name}"),
                    );
                }
                Err(e) => {
                    tracing::info!(pod = %key, node = %node_name, error = %format!("{e:#}"), "binding failed");
                    this.assumed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                    this.recorder.publish(
                        pod.as_ref(),
                        WARNING,
                        "FailedScheduling",
                        format!("Binding rejected: {e:#}"),
                    );
                    let this2 = this.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        this2.enqueue(key);
                    });
                }
            }
        });
    }

    async fn bind(&self, pod: &Pod, node: &str) -> anyhow::Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: pod.metadata.name.clone(),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let _: serde_json::Value = api
            .create_subresource("binding", &pod.name_any(), &PostParams::default(), &binding)
            .await
            .with_context(|| format!("binding pod {ns}/{} to {node}", pod.name_any()))?;
        Ok(())
    }
}

/// Runs the scheduler forever.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let sched = Arc::new(Scheduler {
        client: client.clone(),
        pods: Informer::spawn(Api::all(client.clone())),
        nodes: Informer::spawn(Api::all(client.clone())),
        recorder: Recorder::new(client, DEFAULT_SCHEDULER),
        queues: Mutex::default(),
        notify: Notify::new(),
        assumed: Mutex::default(),
    });
    {
        let s = sched.clone();
        on_change(&sched.pods, move |c| match c {
            Change::Applied(p) => {
                // An unschedulable pod's own updates (e.g. its PodScheduled condition)
                // do not make it schedulable; cluster changes do.
                if wants(&p) && !s.lock_queues().unschedulable.contains(&key(&p)) {
                    s.enqueue(key(&p));
                } else if p
                    .status
                    .as_ref()
                    .and_then(|st| st.phase.as_deref())
                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
                {
                    s.flush_unschedulable();
                }
            }
            Change::Deleted(p) => {
                if p.spec
                    .as_ref()
                    .and_then(|sp| sp.node_name.as_ref())
                    .is_some()
                {
                    s.flush_unschedulable();
                }
            }
            Change::Resync => {
                for p in s.pods.list() {
                    if wants(&p) {
                        s.enqueue(key(&p));
                    }
                }
            }
        });
    }
    {
        let s = sched.clone();
        on_change(&sched.nodes, move |c| match c {
            Change::Applied(_) | Change::Deleted(_) | Change::Resync => s.flush_unschedulable(),
        });
    }
    {
        let s = sched.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSCHEDULABLE_RETRY);
            tick.tick().await;
            loop {
                tick.tick().await;
                s.flush_unschedulable();
            }
        });
    }
    sched.pods.wait_ready().await;
    sched.nodes.wait_ready().await;
    tracing::info!("scheduler started");
    loop {
        let key = sched.next().await;
        sched.schedule_one(key).await;
    }
}
