//! skiff-scheduler: kube-scheduler as a kube-rs client of the API. It watches pods and
//! nodes, takes pending pods without a node one at a time (as kube-scheduler's
//! scheduling cycle does), filters and scores the nodes ([`plugins`]), assumes the pod
//! on the chosen node in its own cache so the next decision already counts it, and binds
//! it through the `pods/binding` subresource in the background. A pod whose
//! WaitForFirstConsumer claims are not bound yet ([`volumes`]) first has them given the
//! node (PreBind: the `volume.kubernetes.io/selected-node` annotation) and waits, in the
//! background too, until the provisioner made and bound their volumes.

pub use skiff_runtime::events;
pub use skiff_runtime::informer;
pub mod plugins;
pub mod resources;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::{on_change, Change, Informer};
use crate::plugins::{
    filter_with, fit_error_message, pick_with, prefilter_error_message, NodeInfo, PodInfo,
    Rejection,
};
use crate::volumes::PodClaims;
use skiff_api::names::SELECTED_NODE_ANNOTATION;

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
/// How long PreBind waits for a pod's claims to be bound (kube-scheduler's
/// `bindTimeoutSeconds`, 600).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long PreBind waits for claims to be bound before scheduling starts over.
    pub bind_timeout: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            bind_timeout: BIND_TIMEOUT,
        }
    }
}

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
    claims: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    /// Claims given a node by a pod whose binding is in flight (`ns/name` → node): the
    /// assume cache of kube's volume binder, so that the next pod with the same claim
    /// goes to the same node before the annotation is seen.
    assumed_claims: Mutex<HashMap<String, String>>,
    /// Pods (uids) in PreBind: their assumption does not expire while they wait.
    prebinding: Mutex<HashSet<String>>,
    /// Bumped on every claim or volume change, for PreBind waiters.
    volume_changes: tokio::sync::watch::Sender<u64>,
    config: SchedulerConfig,
}

/// The informers' claims, volumes and classes, with the claims this scheduler gave a
/// node to and has not seen annotated yet.
struct InformerVolumes<'a> {
    sched: &'a Scheduler,
    assumed: &'a HashMap<String, String>,
}

impl volumes::Volumes for InformerVolumes<'_> {
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let pvc = self
            .sched
            .claims
            .store()
            .get(&ObjectRef::new(name).within(ns))?;
        match self.assumed.get(&format!("{ns}/{name}")) {
            Some(node) if pvc.annotations().get(SELECTED_NODE_ANNOTATION) != Some(node) => {
                let mut c = (*pvc).clone();
                c.annotations_mut()
                    .insert(SELECTED_NODE_ANNOTATION.into(), node.clone());
                Some(Arc::new(c))
            }
            _ => Some(pvc),
        }
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.sched.pvs.store().get(&ObjectRef::new(name))
    }
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.sched.classes.store().get(&ObjectRef::new(name))
    }
    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.sched.pvs.store().state()
    }
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

    fn lock_assumed_claims(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.assumed_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_prebinding(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.prebinding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops assumptions whose binding never showed up (not those waiting in PreBind).
    fn expire_assumed(&self) {
        let prebinding = self.lock_prebinding().clone();
        let mut cache = self.lock_cache();
        let stale: Vec<String> = cache
            .pods
            .iter()
            .filter(|(uid, _)| !prebinding.contains(*uid))
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
        if self.lock_cache().pods.contains_key(&uid) {
            // Assumed: its binding (or PreBind) is in flight.
            return;
        }
        let assumed_claims = self.lock_assumed_claims().clone();
        let vols = InformerVolumes {
            sched: self,
            assumed: &assumed_claims,
        };
        // VolumeBinding's PreFilter: refuses the pod for every node at once.
        let claims: Option<PodClaims> = match volumes::pre_filter(&pod, &vols) {
            Ok(c) => c,
            Err(msg) => {
                let n = self.lock_cache().nodes.len();
                self.unschedulable(&key, &pod, prefilter_error_message(n, &msg));
                return;
            }
        };
        let decision = {
            let mut cache = self.lock_cache();
            if cache.pods.contains_key(&uid) {
                return;
            }
            let info = PodInfo::new(&pod);
            let rwop_conflict = claims.is_some()
                && volumes::read_write_once_pod_conflict(
                    &pod,
                    &vols,
                    cache
                        .nodes
                        .values()
                        .flat_map(|ni| ni.pods.iter().map(|p| &**p)),
                );
            let mut rejections: Vec<Rejection> = Vec::new();
            let mut feasible: Vec<&NodeInfo> = Vec::new();
            for ni in cache.nodes.values() {
                // VolumeRestrictions, then VolumeBinding, after the node's own filters.
                let restricted = || {
                    if rwop_conflict {
                        Err(Rejection {
                            reasons: vec![volumes::RWOP_CONFLICT.to_string()],
                            resolvable: true,
                        })
                    } else {
                        Ok(())
                    }
                };
                let fits = filter_with(&pod, &info, ni)
                    .and_then(|()| restricted())
                    .and_then(|()| match &claims {
                        Some(c) => {
                            let reasons = volumes::filter(c, &vols, &ni.node);
                            if reasons.is_empty() {
                                Ok(())
                            } else {
                                Err(Rejection {
                                    reasons: reasons.into_iter().map(String::from).collect(),
                                    resolvable: false,
                                })
                            }
                        }
                        None => Ok(()),
                    });
                match fits {
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
        // Reserve: the claims to provision are given the node in our own view first.
        let ns = pod.namespace().unwrap_or_default();
        let provision: Vec<String> = claims
            .map(|c| c.delayed.iter().map(|p| p.name_any()).collect())
            .unwrap_or_default();
        if !provision.is_empty() {
            let mut assumed = self.lock_assumed_claims();
            for c in &provision {
                assumed.insert(format!("{ns}/{c}"), node_name.clone());
            }
            self.lock_prebinding().insert(uid.clone());
        }
        let this = self.clone();
        let bindings = self.bindings.clone();
        tokio::spawn(async move {
            if !provision.is_empty() {
                let prebound = this.prebind(&pod, &node_name, &provision).await;
                this.lock_prebinding().remove(&uid);
                {
                    let mut assumed = this.lock_assumed_claims();
                    for c in &provision {
                        assumed.remove(&format!("{ns}/{c}"));
                    }
                }
                if let Err(e) = prebound {
                    // Unreserve, and try again after a back-off.
                    let msg = format!("running PreBind plugin \"VolumeBinding\": {e}");
                    tracing::info!(pod = %key, node = %node_name, error = %msg, "PreBind failed");
                    this.lock_cache().remove(&uid);
                    this.scheduler_error(&pod, msg);
                    let this2 = this.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        this2.enqueue(key);
                    });
                    return;
                }
            }
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
        self.set_unscheduled(pod, "Unschedulable", msg);
    }

    /// VolumeBinding's PreBind: gives each claim the node (the selected-node
    /// annotation, which tells the provisioner where to make the volume), then waits
    /// until all are bound, woken by every claim or volume change. `Err` is kube's
    /// message: scheduling starts over.
    async fn prebind(&self, pod: &Pod, node: &str, claims: &[String]) -> Result<(), String> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let mut changes = self.volume_changes.subscribe();
        // Claims we annotated: the informer's copies without our annotation are older
        // than our write until it shows it once (kube compares resourceVersions).
        let mut unseen: HashSet<String> = HashSet::new();
        for c in claims {
            let current = self.claims.store().get(&ObjectRef::new(c).within(&ns));
            if current.as_ref().is_some_and(|p| {
                p.annotations()
                    .get(SELECTED_NODE_ANNOTATION)
                    .map(String::as_str)
                    == Some(node)
            }) {
                continue;
            }
            let patch =
                serde_json::json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
            let _: PersistentVolumeClaim = api
                .patch(c, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(ae) => ae.message,
                    e => e.to_string(),
                })?;
            unseen.insert(c.clone());
        }
        let Some(node_obj) = self.nodes.store().get(&ObjectRef::new(node)) else {
            return Err(format!(
                "binding volumes: failed to get node {node:?}: node {node:?} not found"
            ));
        };
        let deadline = tokio::time::Instant::now() + self.config.bind_timeout;
        loop {
            if self
                .pods
                .store()
                .get(&ObjectRef::new(&pod.name_any()).within(&ns))
                .is_none_or(|p| p.uid() != pod.uid())
            {
                return Err(format!(
                    "binding volumes: pod does not exist any more: pods {:?} not found",
                    pod.name_any()
                ));
            }
            let current: Vec<(String, Option<Arc<PersistentVolumeClaim>>)> = claims
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        self.claims.store().get(&ObjectRef::new(c).within(&ns)),
                    )
                })
                .collect();
            for (name, pvc) in &current {
                let ours = pvc.as_ref().is_some_and(|p| {
                    p.annotations()
                        .get(SELECTED_NODE_ANNOTATION)
                        .map(String::as_str)
                        == Some(node)
                });
                if ours {
                    unseen.remove(name);
                }
            }
            if unseen.is_empty() {
                let assumed = HashMap::new();
                let vols = InformerVolumes {
                    sched: self,
                    assumed: &assumed,
                };
                match volumes::check_provisioned(&current, &vols, &node_obj) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return Err(format!("binding volumes: {e}")),
                }
            }
            // Woken by a change, or every second as kube polls.
            let wait = tokio::time::timeout(Duration::from_secs(1), changes.changed());
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return Err("binding volumes: context deadline exceeded".into());
            }
        }
    }

    /// Records a failure of the scheduling framework itself (PreBind, not a filter):
    /// the FailedScheduling event and the PodScheduled condition with reason
    /// SchedulerError, as kube-scheduler's failure handler.
    fn scheduler_error(&self, pod: &Arc<Pod>, msg: String) {
        self.recorder
            .publish(pod.as_ref(), WARNING, "FailedScheduling", msg.clone());
        self.set_unscheduled(pod, "SchedulerError", msg);
    }

    /// Sets the pod's PodScheduled condition to False with `reason` and `msg`, in the
    /// background (a failed write is retried by the next scheduling attempt).
    fn set_unscheduled(&self, pod: &Pod, reason: &str, msg: String) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": msg,
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
    run_with(client, SchedulerConfig::default()).await
}

/// Runs the scheduler forever with `config`.
pub async fn run_with(client: Client, config: SchedulerConfig) -> anyhow::Result<()> {
    let sched = Arc::new(Scheduler {
        client: client.clone(),
        pods: Informer::spawn(Api::all(client.clone())),
        nodes: Informer::spawn(Api::all(client.clone())),
        recorder: Recorder::new(client.clone(), DEFAULT_SCHEDULER),
        queues: Mutex::default(),
        notify: Notify::new(),
        cache: Mutex::default(),
        bindings: Arc::new(tokio::sync::Semaphore::new(MAX_BINDINGS_IN_FLIGHT)),
        claims: Informer::spawn(Api::all(client.clone())),
        pvs: Informer::spawn(Api::all(client.clone())),
        classes: Informer::spawn(Api::all(client.clone())),
        assumed_claims: Mutex::default(),
        prebinding: Mutex::default(),
        volume_changes: tokio::sync::watch::channel(0).0,
        config,
    });
    // Claims, volumes and classes: a change may make a parked pod schedulable (kube's
    // VolumeBinding EventsToRegister), and wakes the pods waiting in PreBind.
    {
        let s = sched.clone();
        on_change(&sched.claims, move |_| {
            s.volume_changes.send_modify(|v| *v += 1);
            s.flush_unschedulable();
        });
        let s = sched.clone();
        on_change(&sched.pvs, move |_| {
            s.volume_changes.send_modify(|v| *v += 1);
            s.flush_unschedulable();
        });
        let s = sched.clone();
        on_change(&sched.classes, move |_| s.flush_unschedulable());
    }
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
    sched.claims.wait_ready().await;
    sched.pvs.wait_ready().await;
    // An API server without storage.k8s.io does not hold the scheduler up: no class
    // is known, and claims bind at once (Immediate).
    let classes: Api<StorageClass> = Api::all(client.clone());
    match classes
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::warn!(
                "storage.k8s.io StorageClasses are not served: every claim binds at once"
            )
        }
        _ => sched.classes.wait_ready().await,
    }
    tracing::info!("scheduler started");
    loop {
        let key = sched.next().await;
        sched.schedule_one(key).await;
    }
}
