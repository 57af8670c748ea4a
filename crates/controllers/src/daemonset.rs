//! The DaemonSet controller (kube's `pkg/controller/daemon`): one pod per eligible node.
//!
//! A node is eligible when the template's nodeSelector and required node affinity match
//! it and its NoSchedule/NoExecute taints are tolerated (with the tolerations every
//! DaemonSet pod gets, [`add_daemon_tolerations`]); a pod already on a node may stay
//! while only its NoSchedule taints are untolerated. Pods are not bound by the
//! controller: each asks for its node through required node affinity on
//! `metadata.name` (kube ≥ 1.12), and the scheduler binds it.
//!
//! The template's versions are ControllerRevisions `<ds>-<hash>` whose hash is the pods'
//! `controller-revision-hash` label; RollingUpdate replaces old pods within
//! `maxUnavailable` (or surges within `maxSurge`), OnDelete only replaces pods that
//! were deleted. The status counts what `kubectl get ds` and `kubectl rollout status`
//! show.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use skiff_api::helpers::{node_affinity_matches, tolerates};

use crate::events::{Recorder, WARNING};
use crate::hash::{compute_hash, normalize};
use crate::informer::Informer;
use crate::podcontrol::{create_pods, delete_pods, Expectations, Owner};
use crate::queue::{run_workers, WorkQueue};
use crate::replicaset::{adopt, release};
use crate::rollout::scaled_value;
use crate::triggers::Triggers;
use crate::util::{
    controller_of, controller_ref, is_already_exists, is_deleting, is_not_found, key_of,
    pod_active, pod_available, pod_owner_keys, pod_phase, pod_ready, selector_is_empty,
    selector_matches, split_key,
};
use crate::Informers;

/// The label naming the ControllerRevision a pod was made from
/// (`apps.DefaultDaemonSetUniqueLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The label with the DaemonSet's generation when the pod was made (deprecated in kube,
/// still set and still honoured when deciding whether a pod is up to date).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Most pods created or deleted in one sync (kube's `BurstReplicas`).
pub const BURST_PODS: usize = 250;

/// Adds the tolerations kube gives every DaemonSet pod
/// (`util.AddOrUpdateDaemonPodTolerations`): its pods stay on not-ready or unreachable
/// nodes, run despite node pressure and cordoning, and, with host networking, before
/// the node's network is up. A toleration equal to one of them is replaced, not doubled.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        (skiff_api::names::NOT_READY_TAINT, "NoExecute"),
        (skiff_api::names::UNREACHABLE_TAINT, "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        (skiff_api::names::UNSCHEDULABLE_TAINT, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some(effect.to_string()),
            ..Default::default()
        };
        // toleration.MatchToleration: same key, operator, value and effect.
        match tolerations.iter_mut().find(|o| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
                && o.value.as_deref().unwrap_or("").is_empty()
                && o.effect == t.effect
        }) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// The template of the DaemonSet's new pods (`util.CreatePodTemplate`): its labels
/// plus the revision hash and generation, its tolerations plus the daemon ones.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = t.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    }
    add_daemon_tolerations(t.spec.get_or_insert_with(PodSpec::default));
    t
}

/// Whether a DaemonSet pod should run on `node`, and whether one already there may keep
/// running (`nodeShouldRunDaemonPod`); `spec` is the pod spec with the daemon
/// tolerations. Only the node's own taints count, as in kube: the scheduler, not this,
/// waits for a not-ready node.
pub fn node_should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.name_any();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    let pod = Pod {
        spec: Some(spec.clone()),
        ..Default::default()
    };
    if !node_affinity_matches(&pod, node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    (!no_execute && !no_schedule, !no_execute)
}

/// `affinity` with its required node affinity replaced by one term selecting `node` by
/// name (`util.ReplaceDaemonSetPodNodeNameNodeAffinity`): the controller has already
/// checked the rest of the affinity, and the scheduler binds the pod there.
pub fn with_node_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    });
    a
}

/// The node a DaemonSet pod is for (`util.GetTargetNodeName`): its `nodeName`, or the
/// single node its required node affinity names by `metadata.name`.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or(&[]);
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// Whether the pod is of the DaemonSet's current template (`util.IsPodUpdated`): its
/// revision hash, or its template generation, is the current one.
pub fn pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.labels();
    let by_hash =
        !hash.is_empty() && labels.get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash);
    let by_generation = generation.is_some_and(|g| {
        labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str) == Some(g.to_string().as_str())
    });
    by_hash || by_generation
}

/// Orders a node's pods as kube's `podByCreationTimestampAndPhase`: scheduled before
/// unscheduled, Ready before not, then oldest first (name breaks ties).
fn sort_pods(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        scheduled(b)
            .cmp(&scheduled(a))
            .then(pod_ready(b).cmp(&pod_ready(a)))
            .then(
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
            .then(a.name_any().cmp(&b.name_any()))
    });
}

/// kube's `failedPodsBackoff` (client-go's `flowcontrol.Backoff`): per DaemonSet and
/// node, a failed pod is deleted at once the first time, then only after 1 s, 2 s,
/// 4 s... up to 15 minutes since the last deletion, so that a pod the kubelet keeps
/// rejecting is not deleted and recreated in a hot loop. Pure: the time is a parameter.
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    /// Key -> (current delay, when it was last used).
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl FailedPodBackoff {
    /// The first delay.
    pub const INITIAL: Duration = Duration::from_secs(1);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(15 * 60);

    /// The key of a DaemonSet's node (kube's `failedPodsBackoffKey`).
    pub fn key(ds: &DaemonSet, node: &str) -> String {
        let generation = ds.status.as_ref().and_then(|s| s.observed_generation);
        format!(
            "{}/{}/{node}",
            ds.uid().unwrap_or_default(),
            generation.unwrap_or(0)
        )
    }

    /// How long deleting a failed pod under `key` still waits at `now`; None: it may go.
    pub fn wait(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let (delay, last) = self.entries.get(key)?;
        let elapsed = Duration::try_from(now.duration_since(*last)).unwrap_or_default();
        (elapsed < *delay).then(|| *delay - elapsed)
    }

    /// Records a deletion under `key` at `now`: the next one waits twice as long (the
    /// first delay again after twice the longest without one).
    pub fn next(&mut self, key: &str, now: Timestamp) {
        let e = self
            .entries
            .entry(key.to_string())
            .or_insert((Duration::ZERO, now));
        let quiet = Duration::try_from(now.duration_since(e.1)).unwrap_or_default();
        e.0 = if e.0.is_zero() || quiet > 2 * Self::MAX {
            Self::INITIAL
        } else {
            (e.0 * 2).min(Self::MAX)
        };
        e.1 = now;
    }

    /// Forgets the entries unused for twice the longest delay (kube's `GC`).
    pub fn gc(&mut self, now: Timestamp) {
        self.entries.retain(|_, (_, last)| {
            Duration::try_from(now.duration_since(*last)).unwrap_or_default() <= 2 * Self::MAX
        });
    }
}

/// What one node needs (`podsShouldBeOnNode`): whether to create a pod there and which
/// of its pods (names) to delete. `pods` are the DaemonSet's pods for the node, but
/// terminated pods being deleted; `surge` whether the strategy allows two pods;
/// `delete_failed` says whether a failed pod may be deleted now (the back-off), one
/// that may not stays, and keeps its replacement away.
#[allow(clippy::too_many_arguments)]
pub fn plan_node(
    should_run: bool,
    should_continue: bool,
    pods: &[&Pod],
    hash: &str,
    surge: bool,
    min_ready: i64,
    now: Timestamp,
    delete_failed: &mut dyn FnMut(&Pod) -> bool,
) -> (bool, Vec<String>) {
    let mut delete = Vec::new();
    if should_run && pods.is_empty() {
        return (true, delete);
    }
    if !should_continue {
        delete.extend(
            pods.iter()
                .filter(|p| !is_deleting(**p))
                .map(|p| p.name_any()),
        );
        return (false, delete);
    }
    let mut running: Vec<&Pod> = Vec::new();
    for p in pods.iter().filter(|p| !is_deleting(**p)) {
        match pod_phase(p) {
            // Its replacement is made by the sync after the deletion.
            "Failed" => {
                if delete_failed(p) {
                    delete.push(p.name_any());
                }
            }
            "Succeeded" => delete.push(p.name_any()),
            _ => running.push(p),
        }
    }
    sort_pods(&mut running);
    if !surge {
        // Keep the oldest (scheduled, Ready first) of several.
        delete.extend(running.iter().skip(1).map(|p| p.name_any()));
    } else {
        // At most the oldest old pod and the oldest new one; the old one only while it
        // is Ready and the new one not yet available.
        let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
        for p in &running {
            let slot = if p.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(p);
            } else {
                delete.push(p.name_any());
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            if !pod_ready(old) || pod_available(new, min_ready, now) {
                delete.push(old.name_any());
            }
        }
    }
    (false, delete)
}

/// `maxSurge` and `maxUnavailable` of a RollingUpdate DaemonSet resolved against the
/// number of nodes that should run it (percentages rounded up; both zero means one
/// unavailable, as kube's `updatedDesiredNodeCounts`).
pub fn rolling_limits(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .map(|v| scaled_value(v, desired, true))
        .unwrap_or(0);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| scaled_value(v, desired, true))
        .unwrap_or_else(|| scaled_value(&IntOrString::Int(1), desired, true));
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge.max(0), unavailable.max(0))
}

/// The node's one new and one old pod (`findUpdatedPodsOnNode`), or None when it has
/// more than one of either (the per-node pass cleans that up first).
fn updated_and_old<'a>(
    pods: &[&'a Pod],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().filter(|p| !is_deleting(**p)) {
        let slot = if pod_updated(p, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// One step of a rolling update (kube's `rollingUpdate`): the old pods to delete and
/// the nodes to surge a new pod onto. `node_pods` are the DaemonSet's pods by node.
pub fn rolling_update(
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    generation: Option<i64>,
    (max_surge, max_unavailable): (i32, i32),
    min_ready: i64,
    now: Timestamp,
) -> (Vec<String>, Vec<String>) {
    let available = |p: &Pod| pod_available(p, min_ready, now);
    if max_surge == 0 {
        let mut unavailable = 0i32;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            let Some((new, old)) = updated_and_old(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                // Nothing there, or both: the per-node pass handles it meanwhile.
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += i32::from(!available(new)),
                (None, Some(old)) if !available(old) => {
                    // Unavailable anyway: replacing it costs nothing.
                    unavailable += 1;
                    replace.push(old.name_any());
                }
                (None, Some(old)) => candidates.push(old.name_any()),
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        replace.extend(candidates.into_iter().take(room));
        return (replace, vec![]);
    }
    let mut surging = 0i32;
    let mut delete = Vec::new();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in node_pods {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            // An unavailable old pod may be surged past at once.
            (None, Some(old)) if !available(old) => allowed.push(node.clone()),
            (None, Some(_)) => candidates.push(node.clone()),
            (Some(new), Some(_)) if !available(new) => surging += 1,
            // The new pod is available: the old one goes.
            (Some(_), Some(old)) => delete.push(old.name_any()),
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

/// The DaemonSet's status counts over the nodes: for each node whether it should run
/// the pod and the DaemonSet's pods there (`updateDaemonSetStatus`).
pub fn status_counts(
    nodes: &[(bool, Vec<&Pod>)],
    hash: &str,
    generation: Option<i64>,
    min_ready: i64,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut s = DaemonSetStatus::default();
    for (should_run, pods) in nodes {
        let mut pods: Vec<&Pod> = pods.iter().filter(|p| !is_deleting(**p)).copied().collect();
        if !should_run {
            s.number_misscheduled += i32::from(!pods.is_empty());
            continue;
        }
        s.desired_number_scheduled += 1;
        if pods.is_empty() {
            continue;
        }
        s.current_number_scheduled += 1;
        sort_pods(&mut pods);
        let p = pods[0];
        if pod_ready(p) {
            s.number_ready += 1;
            if pod_available(p, min_ready, now) {
                *s.number_available.get_or_insert(0) += 1;
            }
        }
        if pod_updated(p, hash, generation) {
            *s.updated_number_scheduled.get_or_insert(0) += 1;
        }
    }
    s.number_unavailable =
        Some(s.desired_number_scheduled - s.number_available.unwrap_or(0)).filter(|n| *n > 0);
    s
}

/// The ControllerRevision data of the DaemonSet's template (kube's `getPatch`): a
/// strategic merge patch replacing `spec.template`, which `kubectl rollout undo` applies.
pub fn revision_data(ds: &DaemonSet) -> Value {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// Whether the revision holds the DaemonSet's current template (kube's `Match`; here
/// semantically, since the bytes differ between Go and serde).
pub fn revision_matches(ds: &DaemonSet, rev: &ControllerRevision) -> bool {
    rev.data
        .as_ref()
        .is_some_and(|d| normalize(d.0.clone()) == normalize(revision_data(ds)))
}

struct Ctx {
    client: Client,
    dss: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    recorder: Recorder,
    expectations: Expectations,
    failed_backoff: std::sync::Mutex<FailedPodBackoff>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        dss: inf.daemonsets.clone(),
        pods: inf.pods.clone(),
        nodes: inf.nodes.clone(),
        revisions: inf.controllerrevisions.clone(),
        recorder: Recorder::new(client, "daemonset-controller"),
        expectations: Expectations::default(),
        failed_backoff: Default::default(),
    });
    let dss = inf.daemonsets.clone();
    let all = inf.daemonsets.clone();
    // What of a node decides where daemons run; heartbeats (status) change none of it
    // (kube's `shouldIgnoreNodeUpdate` ignores them too).
    let mut seen: HashMap<String, Value> = HashMap::new();
    Triggers::new(&queue, &inf.daemonsets)
        .primary()
        .owns(&inf.controllerrevisions)
        .watches(&inf.pods, move |p, _| {
            pod_owner_keys(&dss.list(), p, |o| o.spec.as_ref().map(|s| &s.selector))
        })
        .watches(&inf.nodes, move |n, deleted| {
            let name = n.name_any();
            let print = json!([n.metadata.labels, n.spec]);
            let changed = if deleted {
                seen.remove(&name).is_some()
            } else {
                seen.insert(name, print.clone()).as_ref() != Some(&print)
            };
            if !changed {
                return vec![];
            }
            all.list().iter().map(|d| key_of(d.as_ref())).collect()
        })
        .every(Duration::from_secs(30));
    run_workers("daemonset", queue, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(ds) = ctx.dss.store().get(&ObjectRef::new(name).within(ns)) else {
        ctx.expectations.delete(key);
        return Ok(None);
    };
    let spec = ds.spec.clone().unwrap_or_default();
    if selector_is_empty(&spec.selector) {
        ctx.recorder.publish(
            ds.as_ref(),
            WARNING,
            "SelectingAll",
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(None);
    }
    let ds_uid = ds.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);

    // Claim pods: owned matching ones, matching orphans adopted, the rest released.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for p in ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
    {
        let matches = selector_matches(&spec.selector, p.labels());
        match controller_of(p.as_ref()) {
            Some(r) if r.uid == ds_uid => {
                if matches {
                    owned.push(p);
                } else if !is_deleting(ds.as_ref()) {
                    release(&pods_api, &p, &ds_uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches
                    && !is_deleting(ds.as_ref())
                    && pod_active(&p)
                    && adopt(&pods_api, &p, ds.as_ref()).await?
                {
                    owned.push(p);
                }
            }
        }
    }
    // Terminated pods already being deleted are gone as far as the node is concerned.
    owned.retain(|p| !(is_deleting(p.as_ref()) && matches!(pod_phase(p), "Succeeded" | "Failed")));

    let (hash, old_revisions) = if is_deleting(ds.as_ref()) {
        (
            compute_hash(
                &spec.template,
                ds.status.as_ref().and_then(|s| s.collision_count),
            ),
            vec![],
        )
    } else {
        current_revision(ctx, &ds).await?
    };

    // Pods by the node they are for (a pod for no node is not one of the daemons:
    // kube skips it too).
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &owned {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.as_ref());
        }
    }
    let template = pod_template(&ds, &hash);
    let tspec = template.spec.clone().unwrap_or_default();
    let nodes = ctx.nodes.list();
    let decisions: Vec<(Arc<Node>, bool, bool)> = nodes
        .iter()
        .map(|n| {
            let (run, cont) = node_should_run(&tspec, n);
            (n.clone(), run, cont)
        })
        .collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0) as i64;
    let now = Timestamp::now();
    let generation = ds.metadata.generation;
    let strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.clone())
        .unwrap_or_else(|| "RollingUpdate".into());
    let desired = decisions.iter().filter(|d| d.1).count() as i32;
    let limits = rolling_limits(&ds, desired);
    let surge = strategy == "RollingUpdate" && limits.0 > 0;

    let satisfied = ctx.expectations.satisfied(key, |pod| {
        ctx.pods.store().get(&ObjectRef::new(pod).within(ns))
    });
    let mut retry: Option<Duration> = None;
    if satisfied && !is_deleting(ds.as_ref()) {
        // The back-off's lock is held only while planning (no await inside).
        let (mut create, mut delete) = {
            let mut create = Vec::new();
            let mut delete = Vec::new();
            let mut backoff = ctx.failed_backoff.lock().unwrap_or_else(|e| e.into_inner());
            backoff.gc(now);
            for (node, run, cont) in &decisions {
                let pods = by_node.get(&node.name_any()).cloned().unwrap_or_default();
                let bkey = FailedPodBackoff::key(&ds, &node.name_any());
                let mut delete_failed = |p: &Pod| {
                    if let Some(wait) = backoff.wait(&bkey, now) {
                        retry = Some(retry.map_or(wait, |r| r.min(wait)));
                        return false;
                    }
                    backoff.next(&bkey, now);
                    ctx.recorder.publish(
                        ds.as_ref(),
                        WARNING,
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {ns}/{} on node {}, will try to kill it",
                            p.name_any(),
                            node.name_any()
                        ),
                    );
                    true
                };
                let (c, d) = plan_node(
                    *run,
                    *cont,
                    &pods,
                    &hash,
                    surge,
                    min_ready,
                    now,
                    &mut delete_failed,
                );
                if c {
                    create.push(node.name_any());
                }
                delete.extend(d);
            }
            (create, delete)
        };
        // Pods for nodes that no longer exist, never scheduled: nothing will run them.
        let exists = |n: &str| nodes.iter().any(|x| x.name_any() == n);
        for (n, pods) in &by_node {
            if !exists(n) {
                delete.extend(
                    pods.iter()
                        .filter(|p| !is_deleting(**p))
                        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
                        .map(|p| p.name_any()),
                );
            }
        }
        if create.is_empty() && delete.is_empty() && strategy == "RollingUpdate" {
            (delete, create) = rolling_update(&by_node, &hash, generation, limits, min_ready, now);
        }
        sync_nodes(ctx, key, &ds, &template, create, delete).await?;
        cleanup_history(ctx, &ds, old_revisions, &owned).await?;
    }

    // Status.
    let per_node: Vec<(bool, Vec<&Pod>)> = decisions
        .iter()
        .map(|(n, run, _)| {
            let pods = by_node.get(&n.name_any()).cloned().unwrap_or_default();
            (*run, pods)
        })
        .collect();
    let new = status_counts(&per_node, &hash, generation, min_ready, now);
    let old = ds.status.clone().unwrap_or_default();
    let differs = old.desired_number_scheduled != new.desired_number_scheduled
        || old.current_number_scheduled != new.current_number_scheduled
        || old.number_misscheduled != new.number_misscheduled
        || old.number_ready != new.number_ready
        || old.number_available.unwrap_or(0) != new.number_available.unwrap_or(0)
        || old.number_unavailable.unwrap_or(0) != new.number_unavailable.unwrap_or(0)
        || old.updated_number_scheduled.unwrap_or(0) != new.updated_number_scheduled.unwrap_or(0)
        || old.observed_generation != generation;
    if differs {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), ns);
        let patch = json!({"status": {
            "desiredNumberScheduled": new.desired_number_scheduled,
            "currentNumberScheduled": new.current_number_scheduled,
            "numberMisscheduled": new.number_misscheduled,
            "numberReady": new.number_ready,
            "numberAvailable": new.number_available.unwrap_or(0),
            "numberUnavailable": new.number_unavailable.unwrap_or(0),
            "updatedNumberScheduled": new.updated_number_scheduled.unwrap_or(0),
            "observedGeneration": generation,
        }});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("updating status of daemonset {key}")),
        }
    }
    // Pods Ready but not yet available become so after minReadySeconds.
    if min_ready > 0 && new.number_ready > new.number_available.unwrap_or(0) {
        let ready = Duration::from_secs(min_ready as u64);
        retry = Some(retry.map_or(ready, |r| r.min(ready)));
    }
    Ok(retry)
}

/// The DaemonSet's revisions (kube's `constructHistory`): the one of its current
/// template, created (or renumbered to the newest) as needed, and the old ones. Returns
/// the current revision's hash.
async fn current_revision(
    ctx: &Ctx,
    ds: &DaemonSet,
) -> anyhow::Result<(String, Vec<Arc<ControllerRevision>>)> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let (mut current, old): (Vec<_>, Vec<_>) = ctx
        .revisions
        .list()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| controller_of(r.as_ref()).is_some_and(|c| c.uid == uid))
        .partition(|r| revision_matches(ds, r));
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let label = |r: &ControllerRevision| r.labels().get(REVISION_HASH_LABEL).cloned();
    if let Some(cur) = current.first() {
        // Duplicates of the current template: keep the newest.
        for dup in current.iter().skip(1) {
            match api.delete(&dup.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e).context("deleting a duplicate revision"),
            }
        }
        if cur.revision < next {
            let patch = json!({"revision": next});
            api.patch(
                &cur.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("renumbering revision {}", cur.name_any()))?;
        }
        let hash = label(cur).unwrap_or_else(|| {
            let n = cur.name_any();
            n.rsplit('-').next().unwrap_or(&n).to_string()
        });
        return Ok((hash, old));
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(&spec.template, collisions);
    let mut labels = spec
        .template
        .metadata
        .clone()
        .unwrap_or_default()
        .labels
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.clone());
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", ds.name_any())),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision: next,
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(_) => Ok((hash, old)),
        Err(e) if is_already_exists(&e) => {
            let existing = api
                .get(&rev.name_any())
                .await
                .context("reading a revision")?;
            if revision_matches(ds, &existing)
                && controller_of(&existing).is_some_and(|c| c.uid == uid)
            {
                return Ok((hash, old));
            }
            // Another template (or owner) has this name: bump collisionCount, which
            // changes the hash, and try again.
            let dss: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
            dss.patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("bumping collisionCount")?;
            anyhow::bail!("hash collision on revision {}", rev.name_any())
        }
        Err(e) => Err(e).with_context(|| format!("creating revision {}", rev.name_any())),
    }
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod still uses
/// (kube's `cleanupHistory`).
async fn cleanup_history(
    ctx: &Ctx,
    ds: &DaemonSet,
    mut old: Vec<Arc<ControllerRevision>>,
    pods: &[Arc<Pod>],
) -> anyhow::Result<()> {
    let keep = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let Some(mut excess) = old.len().checked_sub(keep).filter(|n| *n > 0) else {
        return Ok(());
    };
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).map(String::as_str))
        .collect();
    old.sort_by_key(|r| r.revision);
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    for r in old {
        if excess == 0 {
            break;
        }
        if r.labels()
            .get(REVISION_HASH_LABEL)
            .is_some_and(|h| live.contains(h.as_str()))
        {
            continue;
        }
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).context("deleting an old revision"),
        }
        excess -= 1;
    }
    Ok(())
}

/// Creates a pod for each node of `create` and deletes the pods `delete` names
/// (kube's `syncNodes`), at most [`BURST_PODS`] of each, creates in batches of 1, 2,
/// 4... so that a failing create fails fast.
async fn sync_nodes(
    ctx: &Ctx,
    key: &str,
    ds: &Arc<DaemonSet>,
    template: &PodTemplateSpec,
    mut create: Vec<String>,
    mut delete: Vec<String>,
) -> anyhow::Result<()> {
    create.truncate(BURST_PODS);
    delete.sort();
    delete.dedup();
    delete.truncate(BURST_PODS);
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let meta = template.metadata.clone().unwrap_or_default();
    let pods: Vec<Pod> = create
        .iter()
        .map(|node| {
            let mut spec = template.spec.clone().unwrap_or_default();
            spec.affinity = Some(with_node_affinity(spec.affinity.take(), node));
            Pod {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{}-", ds.name_any())),
                    namespace: Some(ns.clone()),
                    labels: meta.labels.clone(),
                    annotations: meta.annotations.clone(),
                    finalizers: meta.finalizers.clone(),
                    owner_references: Some(vec![controller_ref(ds.as_ref())]),
                    ..Default::default()
                },
                spec: Some(spec),
                status: None,
            }
        })
        .collect();
    let owner = Owner {
        obj: ds.as_ref(),
        key,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
    };
    create_pods(&owner, &api, pods, |i| {
        format!("the pod of {key} on {}", create[i])
    })
    .await?;
    let victims: Vec<(String, String)> = delete
        .iter()
        .filter_map(|n| {
            let p = ctx.pods.store().get(&ObjectRef::new(n).within(&ns))?;
            Some((n.clone(), p.uid()?))
        })
        .collect();
    delete_pods(&owner, &api, &victims, &DeleteParams::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{collection, informer, writes_but_events};

    fn node(name: &str, extra: Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("node")
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn spec(extra: Value) -> PodSpec {
        let mut v = json!({"containers": [{"name": "c", "image": "agent"}]});
        merge(&mut v, extra);
        let mut s: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut s);
        s
    }

    fn taint(key: &str, effect: &str) -> Value {
        json!({"spec": {"taints": [{"key": key, "effect": effect}]}})
    }

    #[test]
    fn which_nodes_run_a_daemon() {
        let plain = spec(json!({}));
        assert_eq!(node_should_run(&plain, &node("a", json!({}))), (true, true));
        // NoSchedule: no new pod, but one there may stay; NoExecute: neither.
        assert_eq!(
            node_should_run(&plain, &node("a", taint("dedicated", "NoSchedule"))),
            (false, true)
        );
        assert_eq!(
            node_should_run(&plain, &node("a", taint("dedicated", "NoExecute"))),
            (false, false)
        );
        // PreferNoSchedule is no obstacle.
        assert_eq!(
            node_should_run(&plain, &node("a", taint("dedicated", "PreferNoSchedule"))),
            (true, true)
        );
        // The daemon tolerations: cordoned, pressured, not-ready and unreachable nodes.
        for (key, effect) in [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
        ] {
            assert_eq!(
                node_should_run(&plain, &node("a", taint(key, effect))),
                (true, true),
                "{key}"
            );
        }
        // ...but not the not-ready NoSchedule taint, nor network-unavailable without
        // host networking.
        assert_eq!(
            node_should_run(
                &plain,
                &node("a", taint("node.kubernetes.io/not-ready", "NoSchedule"))
            ),
            (false, true)
        );
        let unavailable = node(
            "a",
            taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
        );
        assert_eq!(node_should_run(&plain, &unavailable), (false, true));
        assert_eq!(
            node_should_run(&spec(json!({"hostNetwork": true})), &unavailable),
            (true, true)
        );
        // A toleration of the template.
        let tolerant = spec(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(
            node_should_run(&tolerant, &node("a", taint("dedicated", "NoExecute"))),
            (true, true)
        );
        // nodeSelector, required node affinity and nodeName.
        let selective = spec(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            node_should_run(&selective, &node("a", json!({}))),
            (false, false)
        );
        assert_eq!(
            node_should_run(
                &selective,
                &node("a", json!({"metadata": {"labels": {"disk": "ssd"}}}))
            ),
            (true, true)
        );
        let affine = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["b"]}]}]}}}}),
        );
        assert_eq!(
            node_should_run(&affine, &node("a", json!({}))),
            (true, true)
        );
        assert_eq!(
            node_should_run(&affine, &node("b", json!({}))),
            (false, false)
        );
        let named = spec(json!({"nodeName": "b"}));
        assert_eq!(
            node_should_run(&named, &node("a", json!({}))),
            (false, false)
        );
    }

    #[test]
    fn daemon_tolerations_are_added_once() {
        let mut s = spec(json!({"hostNetwork": true}));
        let n = s.tolerations.as_ref().map(Vec::len);
        assert_eq!(n, Some(7));
        add_daemon_tolerations(&mut s);
        assert_eq!(s.tolerations.as_ref().map(Vec::len), n);
        assert_eq!(spec(json!({})).tolerations.map(|t| t.len()), Some(6));
    }

    #[test]
    fn pods_ask_for_their_node_by_name() {
        let a = with_node_affinity(None, "n1");
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [],
            "affinity": serde_json::to_value(&a).expect("affinity")}}))
        .expect("pod");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            serde_json::to_value(&a).expect("affinity")["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]})
        );
        assert!(node_affinity_matches(&pod, &node("n1", json!({}))));
        assert!(!node_affinity_matches(&pod, &node("n2", json!({}))));
        let bound: Pod =
            serde_json::from_value(json!({"spec": {"containers": [], "nodeName": "n2"}}))
                .expect("pod");
        assert_eq!(target_node(&bound).as_deref(), Some("n2"));
        assert_eq!(target_node(&Pod::default()), None);
    }

    /// A daemon pod of revision `hash`, created at second `age_rank`, Ready or not.
    fn dpod(name: &str, hash: &str, created: u32, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "agent", REVISION_HASH_LABEL: hash},
                         "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
            "spec": {"containers": [], "nodeName": "n"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready {"True"} else {"False"},
                "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}))
        .expect("pod")
    }

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().expect("time")
    }

    #[test]
    fn what_each_node_needs() {
        let t = now();
        assert_eq!(
            plan_node(true, true, &[], "h", false, 0, t, &mut |_| true),
            (true, vec![])
        );
        assert_eq!(
            plan_node(false, false, &[], "h", false, 0, t, &mut |_| true),
            (false, vec![])
        );
        let (a, b, c) = (
            dpod("a", "h", 3, true),
            dpod("b", "h", 1, false),
            dpod("c", "h", 2, true),
        );
        // Several: the Ready ones first, then the oldest, is kept.
        assert_eq!(
            plan_node(true, true, &[&a, &b, &c], "h", false, 0, t, &mut |_| true),
            (false, vec!["a".to_string(), "b".to_string()])
        );
        // Not to run any more: all go.
        assert_eq!(
            plan_node(false, false, &[&a], "h", false, 0, t, &mut |_| true),
            (false, vec!["a".to_string()])
        );
        // A failed pod is deleted (its replacement comes with the next sync).
        let mut failed = dpod("f", "h", 1, false);
        failed.status.as_mut().expect("status").phase = Some("Failed".into());
        assert_eq!(
            plan_node(true, true, &[&failed], "h", false, 0, t, &mut |_| true),
            (false, vec!["f".to_string()])
        );
        // In its back-off it stays, and no other pod comes beside it.
        assert_eq!(
            plan_node(true, true, &[&failed], "h", false, 0, t, &mut |_| false),
            (false, vec![])
        );
        // Surge: an old Ready pod stays beside a new one until the new one is available.
        let (old, new_unready, new_ready) = (
            dpod("old", "h0", 1, true),
            dpod("new", "h", 2, false),
            dpod("new", "h", 2, true),
        );
        assert_eq!(
            plan_node(
                true,
                true,
                &[&old, &new_unready],
                "h",
                true,
                0,
                t,
                &mut |_| true
            ),
            (false, vec![])
        );
        assert_eq!(
            plan_node(
                true,
                true,
                &[&old, &new_ready],
                "h",
                true,
                0,
                t,
                &mut |_| true
            ),
            (false, vec!["old".to_string()])
        );
        // Without surge the two are one too many.
        assert_eq!(
            plan_node(
                true,
                true,
                &[&old, &new_unready],
                "h",
                false,
                0,
                t,
                &mut |_| true
            ),
            (false, vec!["new".to_string()])
        );
    }

    #[test]
    fn failed_pods_are_deleted_with_a_doubling_back_off() {
        let mut b = FailedPodBackoff::default();
        let t0 = now();
        let at = |s: i64| t0 + k8s_openapi::jiff::SignedDuration::from_secs(s);
        assert_eq!(b.wait("k", t0), None, "the first failure goes at once");
        b.next("k", t0);
        assert_eq!(b.wait("k", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.wait("k", at(1)), None);
        b.next("k", at(1));
        assert_eq!(b.wait("k", at(2)), Some(Duration::from_secs(1)));
        b.next("k", at(3));
        assert_eq!(b.wait("k", at(3)), Some(Duration::from_secs(4)));
        assert_eq!(b.wait("other", at(3)), None, "per DaemonSet and node");
        for i in 0..20 {
            b.next("k", at(10 + i));
        }
        assert_eq!(b.wait("k", at(29)), Some(FailedPodBackoff::MAX));
        // After a long quiet, from the start again.
        let quiet = at(29 + 2 * 15 * 60 + 1);
        b.next("k", quiet);
        assert_eq!(b.wait("k", quiet), Some(FailedPodBackoff::INITIAL));
        b.gc(at(29 + 2 * 15 * 60 + 1 + 2 * 15 * 60 + 1));
        assert_eq!(b.entries.len(), 0);
    }

    fn by_node<'a>(pods: &[(&str, &'a Pod)]) -> BTreeMap<String, Vec<&'a Pod>> {
        let mut m: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for (n, p) in pods {
            m.entry(n.to_string()).or_default().push(p);
        }
        m
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_max_surge() {
        let t = now();
        let (o1, o2, o3) = (
            dpod("o1", "h0", 1, true),
            dpod("o2", "h0", 1, true),
            dpod("o3", "h0", 1, true),
        );
        let all_old = by_node(&[("n1", &o1), ("n2", &o2), ("n3", &o3)]);
        assert_eq!(
            rolling_update(&all_old, "h", None, (0, 1), 0, t),
            (vec!["o1".to_string()], vec![])
        );
        assert_eq!(rolling_update(&all_old, "h", None, (0, 2), 0, t).0.len(), 2);
        // A new pod not yet available uses up the budget.
        let n1 = dpod("n1", "h", 5, false);
        let mid = by_node(&[("n1", &n1), ("n2", &o2), ("n3", &o3)]);
        assert_eq!(
            rolling_update(&mid, "h", None, (0, 1), 0, t),
            (vec![], vec![])
        );
        // An unavailable old pod is replaced regardless.
        let o2_down = dpod("o2", "h0", 1, false);
        let down = by_node(&[("n1", &n1), ("n2", &o2_down), ("n3", &o3)]);
        assert_eq!(
            rolling_update(&down, "h", None, (0, 1), 0, t),
            (vec!["o2".to_string()], vec![])
        );
        // Up to date by generation counts as new too.
        let mut by_gen = dpod("g", "h0", 1, true);
        by_gen
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(TEMPLATE_GENERATION_LABEL.into(), "4".into());
        assert!(pod_updated(&by_gen, "h", Some(4)));
        assert!(!pod_updated(&by_gen, "h", Some(5)));
        // Surge: new pods on up to maxSurge nodes; an old pod goes once its new one is
        // available.
        assert_eq!(
            rolling_update(&all_old, "h", None, (1, 0), 0, t),
            (vec![], vec!["n1".to_string()])
        );
        let n1_ready = dpod("n1", "h", 5, true);
        let surged = by_node(&[("n1", &o1), ("n1", &n1_ready), ("n2", &o2), ("n3", &o3)]);
        assert_eq!(
            rolling_update(&surged, "h", None, (1, 0), 0, t),
            (vec!["o1".to_string()], vec!["n2".to_string()])
        );
        let surging = by_node(&[("n1", &o1), ("n1", &n1), ("n2", &o2), ("n3", &o3)]);
        assert_eq!(
            rolling_update(&surging, "h", None, (1, 0), 0, t),
            (vec![], vec![])
        );
    }

    #[test]
    fn rolling_limits_scale_percentages_up() {
        let ds = |ru: Value| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
                "selector": {}, "template": {},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}}))
            .expect("ds")
        };
        assert_eq!(
            rolling_limits(&ds(json!({"maxUnavailable": "10%"})), 15),
            (0, 2)
        );
        assert_eq!(
            rolling_limits(&ds(json!({"maxUnavailable": 0, "maxSurge": "50%"})), 3),
            (2, 0)
        );
        assert_eq!(
            rolling_limits(&ds(json!({"maxUnavailable": 0, "maxSurge": 0})), 3),
            (0, 1)
        );
        assert_eq!(rolling_limits(&ds(json!({})), 3), (0, 1));
    }

    #[test]
    fn status_counts_nodes() {
        let t = now();
        let (a, b) = (dpod("a", "h", 1, true), dpod("b", "h0", 1, false));
        let s = status_counts(
            &[
                (true, vec![&a]),
                (true, vec![&b]),
                (true, vec![]),
                (false, vec![&a]),
                (false, vec![]),
            ],
            "h",
            None,
            0,
            t,
        );
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.number_available,
                s.updated_number_scheduled,
                s.number_misscheduled,
                s.number_unavailable
            ),
            (3, 2, 1, Some(1), Some(1), 1, Some(2))
        );
        // minReadySeconds: Ready a minute, not yet available for two.
        let s = status_counts(
            &[(true, vec![&a])],
            "h",
            None,
            3600,
            "2026-01-01T00:02:00Z".parse().expect("t"),
        );
        assert_eq!((s.number_ready, s.number_available), (1, None));
    }

    const DS_UID: &str = "ds-uid";

    fn daemonset(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": DS_UID, "generation": 2,
                         "resourceVersion": "5"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "revisionHistoryLimit": 10,
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn nodes() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"},
                   "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}}),
        ]
    }

    async fn ctx(fake: &FakeApi, ds: Value, pods: Vec<Value>, revisions: Vec<Value>) -> Ctx {
        let client = fake.client();
        Ctx {
            dss: informer(fake, vec![ds]).await,
            pods: informer(fake, pods).await,
            nodes: informer(fake, nodes()).await,
            revisions: informer(fake, revisions).await,
            recorder: Recorder::new(client.clone(), "daemonset-controller"),
            client,
            expectations: Expectations::default(),
            failed_backoff: Default::default(),
        }
    }

    #[tokio::test]
    async fn sync_records_a_revision_and_creates_a_pod_per_eligible_node() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        let revs = collection::<ControllerRevision>("default");
        fake.echo_creates(&pods);
        fake.echo_creates(&revs);
        let status = format!("{}/agent/status", collection::<DaemonSet>("default"));
        fake.reply("PATCH", &status, Reply::ok(daemonset("agent:1")));
        let ctx = ctx(&fake, daemonset("agent:1"), vec![], vec![]).await;
        fake.clear();

        sync(&ctx, "default/agent").await.expect("sync");

        let writes = writes_but_events(&fake);
        let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
        assert_eq!(
            lines,
            [
                format!("POST {revs}"),
                format!("POST {pods}"),
                format!("POST {pods}"),
                format!("PATCH {status}")
            ],
            "{writes:#?}"
        );
        let rev = writes[0].body.as_ref().expect("revision");
        let hash = rev["metadata"]["labels"][REVISION_HASH_LABEL]
            .as_str()
            .expect("hash")
            .to_string();
        assert_eq!(rev["metadata"]["name"], format!("agent-{hash}"));
        assert_eq!(rev["revision"], 1);
        assert_eq!(rev["metadata"]["ownerReferences"][0]["uid"], DS_UID);
        assert_eq!(rev["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            rev["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "agent:1"
        );
        let mut targets = Vec::new();
        for w in &writes[1..3] {
            let pod = w.body.as_ref().expect("pod");
            assert_eq!(pod["metadata"]["generateName"], "agent-");
            assert_eq!(
                pod["metadata"]["labels"][REVISION_HASH_LABEL],
                hash.as_str()
            );
            assert_eq!(pod["metadata"]["labels"][TEMPLATE_GENERATION_LABEL], "2");
            assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
            assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(6));
            assert!(
                pod["spec"].get("nodeName").is_none(),
                "the scheduler binds it"
            );
            let p: Pod = serde_json::from_value(pod.clone()).expect("pod");
            targets.push(target_node(&p).expect("target"));
        }
        targets.sort();
        assert_eq!(targets, ["n1", "n2"], "n3's taint is not tolerated");
        assert_eq!(
            writes[3].body.as_ref().expect("status")["status"],
            json!({"desiredNumberScheduled": 2, "currentNumberScheduled": 0, "numberMisscheduled": 0,
                   "numberReady": 0, "numberAvailable": 0, "numberUnavailable": 2,
                   "updatedNumberScheduled": 0, "observedGeneration": 2})
        );
    }

    /// A pod of the DaemonSet on `node`, of revision `hash`, Ready.
    fn owned_pod(name: &str, node: &str, hash: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"app": "agent", REVISION_HASH_LABEL: hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "name": "agent", "uid": DS_UID, "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "agent:1"}], "nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:10Z"}]}})
    }

    #[tokio::test]
    async fn sync_rolls_one_node_at_a_time() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        let revs = collection::<ControllerRevision>("default");
        let v2 = daemonset("agent:2");
        let ds: DaemonSet = serde_json::from_value(v2.clone()).expect("ds");
        let old_rev = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "agent-old", "namespace": "default", "labels": {REVISION_HASH_LABEL: "old"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "name": "agent", "uid": DS_UID, "controller": true}]},
            "data": revision_data(&serde_json::from_value(daemonset("agent:1")).expect("ds")), "revision": 1});
        let cur_rev = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "agent-new", "namespace": "default", "labels": {REVISION_HASH_LABEL: "new"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "name": "agent", "uid": DS_UID, "controller": true}]},
            "data": revision_data(&ds), "revision": 2});
        for name in ["p1", "p2"] {
            fake.reply(
                "DELETE",
                &format!("{pods}/{name}"),
                Reply::ok(owned_pod(name, "n1", "old")),
            );
        }
        let status = format!("{}/agent/status", collection::<DaemonSet>("default"));
        fake.reply("PATCH", &status, Reply::ok(v2.clone()));
        let ctx = ctx(
            &fake,
            v2,
            vec![owned_pod("p1", "n1", "old"), owned_pod("p2", "n2", "old")],
            vec![old_rev, cur_rev],
        )
        .await;
        fake.clear();

        sync(&ctx, "default/agent").await.expect("sync");
        let writes = writes_but_events(&fake);
        let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
        // Both nodes run an available old pod: maxUnavailable 1 replaces one of them.
        assert_eq!(
            lines,
            [format!("DELETE {pods}/p1"), format!("PATCH {status}")],
            "{writes:#?}"
        );
        assert!(
            !writes.iter().any(|w| w.path == revs),
            "the revision exists"
        );
        assert_eq!(
            writes[1].body.as_ref().expect("status")["status"]["updatedNumberScheduled"],
            0
        );
    }
}
