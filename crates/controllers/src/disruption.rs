//! The disruption controller (kube's `pkg/controller/disruption`): keeps the status of
//! every PodDisruptionBudget (`policy/v1`) current, so that the eviction subresource can
//! decide from it alone whether a pod may go.
//!
//! For each budget: the pods its selector picks in its namespace; how many of them are
//! healthy (Ready, not terminating, not just evicted); how many should be (`minAvailable`
//! as a number, or `minAvailable`/`maxUnavailable` against the scale of the pods'
//! controllers, found up the owner chain); and so how many disruptions are allowed now.
//! Pods the eviction subresource recorded in `status.disruptedPods` are not counted as
//! healthy for two minutes, the time the API server gives their deletion to show.
//!
//! The arithmetic is pure ([`desired_healthy`], [`disrupted_pod_map`],
//! [`count_healthy`], [`next_status`]) and unit-tested; `sync` only gathers the inputs
//! and writes the status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{controller_of, is_conflict, is_not_found, key_of, pod_ready, split_key};
use crate::Informers;

/// How long a pod the eviction subresource recorded in `disruptedPods` is expected to
/// take to be deleted (kube's `DeletionTimeout`); past it, it counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The condition the controller keeps on every budget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// The condition's reason when disruptions are allowed.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// The condition's reason when no disruption is allowed.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// The condition's reason when the controller could not compute the status.
pub const SYNC_FAILED: &str = "SyncFailed";

struct Ctx {
    client: Client,
    pods: Arc<Informer<Pod>>,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    rss: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    recorder: Recorder,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: inf.pods.clone(),
        pdbs: inf.pdbs.clone(),
        rss: inf.replicasets.clone(),
        deployments: inf.deployments.clone(),
        recorder: Recorder::new(client, "disruption-controller"),
    });
    let pdbs = inf.pdbs.clone();
    Triggers::new(&queue, &inf.pdbs)
        .primary()
        .watches(&inf.pods, move |p, _| budgets_of_pod(&pdbs, p))
        // The scale of the pods' controllers is read, not watched (as kube's): a
        // periodic resync picks up a scale change that moved no pod.
        .every(Duration::from_secs(30));
    run_workers("disruption", queue, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

/// Keys of the budgets of the pod's namespace whose selector picks it.
fn budgets_of_pod(pdbs: &Informer<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
    let ns = pod.namespace().unwrap_or_default();
    pdbs.list()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
        .filter(|b| selects(b, pod.labels()))
        .map(|b| key_of(b.as_ref()))
        .collect()
}

/// Whether the budget's selector picks pods with `labels`: a missing selector picks
/// none, an empty one every pod (`policy/v1`'s rule).
pub fn selects(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| crate::util::selector_matches(sel, labels))
}

/// `intstr.GetScaledValueFromIntOrPercent`: a number as is, a percentage of `total`
/// rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let pct: i64 = num
                .parse()
                .map_err(|e| format!("invalid value {s:?}: {e}"))?;
            let scaled = pct as f64 * total as f64 / 100.0;
            Ok(if round_up {
                scaled.ceil()
            } else {
                scaled.floor()
            } as i32)
        }
    }
}

/// What the budget asks for: `(expectedPods, desiredHealthy)`. `pod_count` is the
/// number of selected pods; `scale` gives the summed scale of their controllers, asked
/// for only when the budget is relative to it (kube's `getExpectedPodCount`).
pub fn desired_healthy(
    pdb: &PodDisruptionBudget,
    pod_count: i32,
    scale: impl FnOnce() -> anyhow::Result<i32>,
) -> anyhow::Result<(i32, i32)> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = scale()?;
        let max = scaled_value(max_unavailable, expected, true).map_err(|e| anyhow!(e))?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pod_count, *n)),
        Some(min @ IntOrString::String(_)) => {
            let expected = scale()?;
            let min = scaled_value(min, expected, true).map_err(|e| anyhow!(e))?;
            Ok((expected, min))
        }
        None => Ok((0, 0)),
    }
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn plus(t: &Time, d: Duration) -> Timestamp {
    t.0.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The budget's `disruptedPods` still to be honoured (kube's `buildDisruptedPodMap`):
/// pods evicted less than [`DELETION_TIMEOUT`] ago, still there and not yet terminating.
/// Also when the first of them times out (to look again then), and the pods that timed
/// out (the caller records an event about them).
pub fn disrupted_pod_map(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<Arc<Pod>>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut timed_out = Vec::new();
    let Some(disrupted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck, timed_out);
    };
    for p in pods.iter().filter(|p| !is_terminating(p)) {
        let Some(at) = disrupted.get(&p.name_any()) else {
            continue;
        };
        let expected = plus(at, DELETION_TIMEOUT);
        if expected < now {
            timed_out.push(p.clone());
        } else {
            recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
            kept.insert(p.name_any(), at.clone());
        }
    }
    (kept, recheck, timed_out)
}

/// Pods that count as healthy (kube's `countHealthyPods`): Ready, not terminating, and
/// not just disrupted.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| !is_terminating(p))
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|at| plus(at, DELETION_TIMEOUT) <= now)
        })
        .filter(|p| pod_ready(p))
        .count() as i32
}

/// Sets `cond` among `conds` as apimachinery's `meta.SetStatusCondition`: the transition
/// time moves only when the status changes.
fn set_condition(conds: &mut Vec<Condition>, mut cond: Condition) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == cond.type_) {
        if c.status != cond.status {
            c.status = cond.status;
            c.last_transition_time = cond.last_transition_time;
        }
        c.reason = cond.reason;
        c.message = cond.message;
        c.observed_generation = cond.observed_generation;
    } else {
        if cond.last_transition_time.0 == Timestamp::UNIX_EPOCH {
            cond.last_transition_time = crate::util::now();
        }
        conds.push(cond);
    }
}

fn condition(status: &str, reason: &str, message: String, generation: Option<i64>) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: crate::util::now(),
    }
}

/// The `DisruptionAllowed` condition that `disruptionsAllowed` calls for (kube's
/// `UpdateDisruptionAllowedCondition`).
pub fn update_disruption_allowed_condition(status: &mut PodDisruptionBudgetStatus) {
    let generation = status.observed_generation;
    let cond = if status.disruptions_allowed > 0 {
        condition("True", SUFFICIENT_PODS, String::new(), generation)
    } else {
        condition("False", INSUFFICIENT_PODS, String::new(), generation)
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond);
}

/// Whether the condition says what the status does (kube's `ConditionsAreUpToDate`).
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// The status the budget should have, or `None` when it has it already (kube's
/// `updatePdbStatus`). No disruption is allowed while no pod is expected, so that a
/// budget whose first pods appear is safe before the controller has seen them.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == current_healthy
        && old.desired_healthy == desired_healthy
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: Some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    update_disruption_allowed_condition(&mut status);
    Some(status)
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(pdb) = ctx.pdbs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    match try_sync(ctx, &pdb).await {
        Ok(recheck) => Ok(recheck),
        // A stale cache: the next event (or the retry) brings the newer budget.
        Err(SyncError::Conflict(e)) => Err(e.into()),
        Err(SyncError::Other(e)) => {
            fail_safe(ctx, &pdb, &e).await?;
            Err(e)
        }
    }
}

enum SyncError {
    Conflict(kube::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SyncError {
    fn from(e: anyhow::Error) -> Self {
        SyncError::Other(e)
    }
}

async fn try_sync(ctx: &Ctx, pdb: &PodDisruptionBudget) -> Result<Option<Duration>, SyncError> {
    let ns = pdb.namespace().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selects(pdb, p.labels()))
        .collect();
    if pods.is_empty() {
        ctx.recorder
            .publish(pdb, NORMAL, "NoPods", "No matching pods found".to_string());
    }
    let mut unmanaged = Vec::new();
    let mut scale_error = None;
    let mut scale_asked = false;
    // The scale is looked up only when the budget is relative to it.
    let scale = if needs_scale(pdb) {
        scale_asked = true;
        match expected_scale(ctx, &pods, &mut unmanaged).await {
            Ok(s) => Some(s),
            Err(e) => {
                scale_error = Some(e);
                None
            }
        }
    } else {
        None
    };
    let counts = desired_healthy(pdb, pods.len() as i32, || {
        match (scale, scale_error.take()) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => Err(anyhow!("the scale of the pods' controllers is unknown")),
        }
    });
    let (expected, desired) = match counts {
        Ok(c) => c,
        Err(e) => {
            ctx.recorder.publish(
                pdb,
                WARNING,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            return Err(e.into());
        }
    };
    if scale_asked && !unmanaged.is_empty() {
        ctx.recorder.publish(
            pdb,
            WARNING,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                selector_text(pdb)
            ),
        );
    }
    let now = Timestamp::now();
    let (disrupted, recheck, timed_out) = disrupted_pod_map(pdb, &pods, now);
    for p in timed_out {
        ctx.recorder.publish(
            p.as_ref(),
            WARNING,
            "NotDeleted",
            format!(
                "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
                pdb.name_any()
            ),
        );
    }
    let healthy = count_healthy(&pods, &disrupted, now);
    if let Some(status) = next_status(pdb, healthy, desired, expected, disrupted) {
        write_status(ctx, pdb, status).await?;
    }
    // Look again when the first recorded disruption times out.
    Ok(recheck.map(|at| {
        Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_secs(1)
    }))
}

fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.clone().unwrap_or_default();
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// The selector as Go's `%v` of a `*LabelSelector` would be hard to match; this is its
/// JSON, which says the same.
fn selector_text(pdb: &PodDisruptionBudget) -> String {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| serde_json::to_string(s).ok())
        .unwrap_or_else(|| "nil".to_string())
}

async fn write_status(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), SyncError> {
    let ns = pdb.namespace().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let mut new = pdb.clone();
    new.status = Some(status);
    // The whole object with its resourceVersion: a budget the eviction subresource
    // changed since the cache saw it is a conflict, not overwritten.
    match api
        .replace_status(&pdb.name_any(), &PostParams::default(), &new)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Err(SyncError::Conflict(e)),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(SyncError::Other(e.into())),
    }
}

/// kube's `failSafe`: when the status cannot be computed, no disruption is allowed.
async fn fail_safe(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    err: &anyhow::Error,
) -> anyhow::Result<()> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        condition("False", SYNC_FAILED, format!("{err:#}"), generation),
    );
    match write_status(ctx, pdb, status).await {
        Ok(()) => Ok(()),
        Err(SyncError::Conflict(e)) => Err(e.into()),
        Err(SyncError::Other(e)) => Err(e),
    }
}

/// The summed scale of the controllers of `pods` (kube's `getExpectedScale`): each
/// pod's controller counted once. Pods without a controller are listed in `unmanaged`;
/// a pod whose controller cannot be found is an error.
async fn expected_scale(
    ctx: &Ctx,
    pods: &[Arc<Pod>],
    unmanaged: &mut Vec<String>,
) -> anyhow::Result<i32> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    for p in pods {
        let Some(owner) = controller_of(p.as_ref()) else {
            unmanaged.push(p.name_any());
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let ns = p.namespace().unwrap_or_default();
        match controller_scale(ctx, owner, &ns).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => return Err(anyhow!("found no controllers for pod {:?}", p.name_any())),
        }
    }
    Ok(scales.values().sum())
}

/// The uid and scale of the controller `owner` names, up the chain to a Deployment for
/// the pods of its ReplicaSets (kube's finders); `None` when it is gone or another
/// object of that name now stands there.
async fn controller_scale(
    ctx: &Ctx,
    owner: &OwnerReference,
    ns: &str,
) -> anyhow::Result<Option<(String, i32)>> {
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let Some(rs) = ctx.rss.store().get(&ObjectRef::new(&owner.name).within(ns)) else {
                return Ok(None);
            };
            if rs.uid().as_deref() != Some(owner.uid.as_str()) {
                return Ok(None);
            }
            if let Some(dep_ref) = controller_of(rs.as_ref()).filter(|r| r.kind == "Deployment") {
                let dep = ctx
                    .deployments
                    .store()
                    .get(&ObjectRef::new(&dep_ref.name).within(ns));
                return Ok(dep
                    .filter(|d| d.uid().as_deref() == Some(dep_ref.uid.as_str()))
                    .map(|d| {
                        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        (dep_ref.uid.clone(), replicas)
                    }));
            }
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            Ok(Some((owner.uid.clone(), replicas)))
        }
        ("apps", "StatefulSet") => {
            let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
            scale_of(api.get_scale(&owner.name).await, owner)
        }
        ("", "ReplicationController") => {
            let api: Api<ReplicationController> = Api::namespaced(ctx.client.clone(), ns);
            scale_of(api.get_scale(&owner.name).await, owner)
        }
        _ => generic_scale(ctx, owner, ns).await,
    }
}

fn scale_of(
    got: kube::Result<k8s_openapi::api::autoscaling::v1::Scale>,
    owner: &OwnerReference,
) -> anyhow::Result<Option<(String, i32)>> {
    match got {
        Ok(s) if s.metadata.uid.as_deref() == Some(owner.uid.as_str()) => Ok(Some((
            owner.uid.clone(),
            s.spec.and_then(|s| s.replicas).unwrap_or(0),
        ))),
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Any other kind with a scale subresource (custom resources), found through discovery
/// (kube's `getScaleController`).
async fn generic_scale(
    ctx: &Ctx,
    owner: &OwnerReference,
    ns: &str,
) -> anyhow::Result<Option<(String, i32)>> {
    let (group, version) = owner
        .api_version
        .split_once('/')
        .unwrap_or(("", owner.api_version.as_str()));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &owner.kind);
    let (ar, caps) = kube::discovery::pinned_kind(&ctx.client, &gvk).await?;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    match api.get_scale(&owner.name).await {
        Err(e) if is_not_found(&e) => {
            let has_scale = caps.subresources.iter().any(|(r, _)| r.plural == "scale");
            if has_scale {
                Ok(None)
            } else {
                let resource = if group.is_empty() {
                    ar.plural.clone()
                } else {
                    format!("{}.{group}", ar.plural)
                };
                Err(anyhow!(
                    "{resource} does not implement the scale subresource"
                ))
            }
        }
        got => scale_of(got, owner),
    }
}

#[cfg(test)]
mod tests;
