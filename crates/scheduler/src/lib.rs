//! skiff-scheduler: kube-scheduler as a kube-rs client of the API. It watches pods and
//! nodes, takes pending pods without a node one at a time (as kube-scheduler's
//! scheduling cycle does), filters and scores the nodes ([`plugins`]), assumes the pod
//! on the chosen node in its own cache so the next decision already counts it, and binds
//! it through the `pods/binding` subresource in the background.

pub use skiff_runtime::events;
pub use skiff_runtime::informer;
pub mod plugins;
pub mod resources;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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
use crate::plugins::{filter_with, fit_error_message, pick_with, NodeInfo, PodInfo, Rejection};

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// How long an unschedulable pod waits at most before it is tried again without any
/// cluster change.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(30);
/// Most bindings in flight at once. Decisions do not wait for bindings (the pod is
/// assumed in the cache), but each request in flight holds an HTTP/1 connection of the
/// client's pool: a thousand at once would mean a thousand TLS handshakes and a slower
/// API server. A few in flight keep the server busy (see the bench in skiff-controllers).
pub const MAX_BINDINGS_IN_FLIGHT: usize = 16;

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
    cache: Mutex<Cache>,
    bindings: Arc<tokio::sync::Semaphore>,
}

/// The scheduler's view of the cluster, kept current from pod and node events rather
/// than rebuilt per pod: each node with the pods bound (or assumed) to it.
#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    // uid -> (node, assumed at: Some while only assumed by us)
    pods: HashMap<String, (String, Option<Instant>)>,
}

impl Cache {
    fn add(&mut self, pod: Arc<Pod>, node: &str, assumed: Option<Instant>) {
        let uid = pod.uid().unwrap_or_default();
        if let Some((cur, at)) = self.pods.get_mut(&uid) {
            if cur == node {
                // Seen bound: the assumption is confirmed.
                if assumed.is_none() {
                    *at = None;
                }
                return;
            }
            let old = cur.clone();
            if let Some(ni) = self.nodes.get_mut(&old) {
                ni.remove_pod(&uid);
            }
        }
        self.pods.insert(uid, (node.to_string(), assumed));
        if let Some(ni) = self.nodes.get_mut(node) {
            ni.add_pod(pod);
        }
    }

    fn remove(&mut self, uid: &str) {
        if let Some((node, _)) = self.pods.remove(uid) {
            if let Some(ni) = self.nodes.get_mut(&node) {
                ni.remove_pod(uid);
            }
        }
    }

    /// Applies one pod as the API shows it.
    fn apply_pod(&mut self, pod: &Arc<Pod>) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        match node {
            Some(n) if !terminal => self.add(pod.clone(), &n, None),
            Some(_) => self.remove(&pod.uid().unwrap_or_default()),
            None => {}
        }
    }

    /// Rebuilds everything from the informers' caches, keeping live assumptions.
    fn rebuild(&mut self, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) {
        let assumed: Vec<(String, String, Instant)> = self
            .pods
            .iter()
            .filter_map(|(uid, (n, at))| at.map(|at| (uid.clone(), n.clone(), at)))
            .collect();
        let old_nodes = std::mem::take(&mut self.nodes);
        self.pods.clear();
        self.nodes = nodes
            .iter()
            .map(|n| (n.name_any(), NodeInfo::new(n.clone())))
            .collect();
        for p in pods {
            self.apply_pod(p);
        }
        for (uid, node, at) in assumed {
            if self.pods.contains_key(&uid) {
                continue;
            }
            let pod = old_nodes.get(&node).and_then(|ni| {
                ni.pods
                    .iter()
                    .find(|p| p.uid().as_deref() == Some(uid.as_str()))
                    .cloned()
            });
            if let Some(p) = pod {
                self.add(p, &node, Some(at));
            }
        }
    }
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

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops assumptions whose binding never showed up.
    fn expire_assumed(&self) {
        let mut cache = self.lock_cache();
        let stale: Vec<String> = cache
            .pods
            .iter()
            .filter(|(_, (_, at))| at.is_some_and(|at| at.elapsed() > Duration::from_secs(60)))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            cache.remove(&uid);
        }
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
        let decision = {
            let mut cache = self.lock_cache();
            if cache.pods.contains_key(&uid) {
                return;
            }
            let info = PodInfo::new(&pod);
            let mut rejections: Vec<Rejection> = Vec::new();
            let mut feasible: Vec<&NodeInfo> = Vec::new();
            for ni in cache.nodes.values() {
                match filter_with(&pod, &info, ni) {
                    Ok(()) => feasible.push(ni),
                    Err(r) => rejections.push(r),
                }
            }
            match pick_with(&pod, &info, &feasible).map(|ni| ni.node.name_any()) {
                Some(node_name) => {
                    // Assume the pod on the node so that the next decision counts it.
                    let mut assumed_pod = (*pod).clone();
                    if let Some(spec) = assumed_pod.spec.as_mut() {
                        spec.node_name = Some(node_name.clone());
                    }
                    cache.add(Arc::new(assumed_pod), &node_name, Some(Instant::now()));
                    Ok(node_name)
                }
                None => Err(fit_error_message(cache.nodes.len(), &rejections)),
            }
        };
        let node_name = match decision {
            Ok(n) => n,
            Err(msg) => {
                self.unschedulable(&key, &pod, msg);
                return;
            }
        };
        let this = self.clone();
        let bindings = self.bindings.clone();
        tokio::spawn(async move {
            let permit = bindings.acquire_owned().await;
            let bound = this.bind(&pod, &node_name).await;
            drop(permit);
            match bound {
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
                    this.lock_cache().remove(&uid);
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

    /// Records why a pod cannot be placed (event and PodScheduled condition) and parks
    /// it until the cluster changes.
    fn unschedulable(&self, key: &str, pod: &Arc<Pod>, msg: String) {
        tracing::debug!(pod = %key, %msg, "unschedulable");
        self.recorder
            .publish(pod.as_ref(), WARNING, "FailedScheduling", msg.clone());
        self.lock_queues().unschedulable.insert(key.to_string());
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
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
            "lastTransitionTime": Time(k8s_openapi::jiff::Timestamp::now()), "lastProbeTime": null,
        }]}});
        let name = pod.name_any();
        tokio::spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "setting PodScheduled condition");
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
        cache: Mutex::default(),
        bindings: Arc::new(tokio::sync::Semaphore::new(MAX_BINDINGS_IN_FLIGHT)),
    });
    {
        let s = sched.clone();
        on_change(&sched.pods, move |c| match c {
            Change::Applied(p) => {
                s.lock_cache().apply_pod(&p);
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
                s.lock_cache().remove(&p.uid().unwrap_or_default());
                if p.spec
                    .as_ref()
                    .and_then(|sp| sp.node_name.as_ref())
                    .is_some()
                {
                    s.flush_unschedulable();
                }
            }
            Change::Resync => {
                s.lock_cache().rebuild(&s.nodes.list(), &s.pods.list());
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
        on_change(&sched.nodes, move |c| {
            match &c {
                Change::Applied(n) => {
                    let mut cache = s.lock_cache();
                    let name = n.name_any();
                    let ni = match cache.nodes.get(&name) {
                        Some(old) => old.with_node(n.clone()),
                        None => {
                            // A new node: pods may already name it.
                            let mut ni = NodeInfo::new(n.clone());
                            let uids: Vec<String> = cache
                                .pods
                                .iter()
                                .filter(|(_, (node, _))| *node == name)
                                .map(|(uid, _)| uid.clone())
                                .collect();
                            for p in s.pods.list() {
                                if uids.iter().any(|u| p.uid().as_deref() == Some(u.as_str())) {
                                    ni.add_pod(p);
                                }
                            }
                            ni
                        }
                    };
                    cache.nodes.insert(name, ni);
                }
                Change::Deleted(n) => {
                    s.lock_cache().nodes.remove(&n.name_any());
                }
                Change::Resync => s.lock_cache().rebuild(&s.nodes.list(), &s.pods.list()),
            }
            s.flush_unschedulable();
        });
    }
    {
        let s = sched.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSCHEDULABLE_RETRY);
            tick.tick().await;
            loop {
                tick.tick().await;
                s.expire_assumed();
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
