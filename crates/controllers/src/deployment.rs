//! The Deployment controller: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), rolled by the RollingUpdate or Recreate
//! strategy, with revisions, proportional scaling, pause/resume, history cleanup and
//! Kubernetes' status and conditions, so `kubectl rollout` works as usual.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use skiff_api::names::{LAST_APPLIED_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::hash::{compute_hash, equal_ignore_hash};
use crate::informer::Informer;
use crate::podendpoint;
use crate::queue::{run_workers, WorkQueue};
use crate::rollout::{
    cleanup_unhealthy, desired_annotation, is_rolling, max_scaled_down, max_surge, max_unavailable,
    new_rs_new_replicas, proportional_sizes, replica_count, replicas, rs_available, rs_replicas,
    scale_down_old_available, DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
};
use crate::triggers::Triggers;
use crate::util::{
    controller_of, controller_ref, is_already_exists, is_conflict, is_deleting, is_not_found,
    key_of, now, selector_is_empty, selector_matches, split_key,
};
use crate::Informers;

/// Workers, as kube-controller-manager's `--concurrent-deployment-syncs` default: a sync mostly waits
/// for API calls, so two workers left keys queued for seconds at a thousand nodes.
const WORKERS: usize = 5;

/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE: i32 = 600;

struct Ctx {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    rss: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    recorder: Recorder,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        deployments: inf.deployments.clone(),
        rss: inf.replicasets.clone(),
        pods: inf.pods.clone(),
        recorder: Recorder::new(client, "deployment-controller"),
    });
    let ds = inf.deployments.clone();
    let rss = inf.replicasets.clone();
    Triggers::new(&queue, &inf.deployments)
        .primary()
        .owns(&inf.replicasets)
        // An orphaned ReplicaSet may be adopted by the Deployments that select it.
        .watches(&inf.replicasets, move |rs, _| {
            if controller_of(rs).is_some() {
                return Vec::new();
            }
            let ns = rs.namespace().unwrap_or_default();
            ds.list()
                .iter()
                .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
                .filter(|d| {
                    d.spec.as_ref().is_some_and(|s| {
                        !selector_is_empty(&s.selector)
                            && selector_matches(&s.selector, rs.labels())
                    })
                })
                .map(|d| key_of(d.as_ref()))
                .collect()
        })
        // Recreate waits for old pods to be gone: a deleted pod may unblock it.
        .watches(&inf.pods, move |p, deleted| {
            let ns = p.namespace().unwrap_or_default();
            controller_of(p)
                .filter(|r| deleted && r.kind == "ReplicaSet")
                .and_then(|r| rss.store().get(&ObjectRef::new(&r.name).within(&ns)))
                .and_then(|rs| {
                    controller_of(rs.as_ref())
                        .filter(|r| r.kind == "Deployment")
                        .map(|dr| format!("{ns}/{}", dr.name))
                })
                .into_iter()
                .collect()
        });
    run_workers("deployment", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (i64, String) {
    (
        rs.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond() as i64)
            .unwrap_or(0),
        rs.name_any(),
    )
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// deploymentutil.SetDeploymentCondition: a condition with the same status and reason
/// is left as it is; the transition time survives a reason change with the same status.
fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|c| c.type_ == cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// Annotations not copied from a Deployment onto its ReplicaSets.
fn skip_copy(key: &str) -> bool {
    key == LAST_APPLIED_ANNOTATION
        || key == REVISION_ANNOTATION
        || key == REVISION_HISTORY_ANNOTATION
        || key == DESIRED_REPLICAS_ANNOTATION
        || key == MAX_REPLICAS_ANNOTATION
        || key == "deprecated.deployment.rollback.to"
}

struct State {
    d: Arc<Deployment>,
    new_rs: Option<ReplicaSet>,
    olds: Vec<ReplicaSet>,
}

impl State {
    fn all(&self) -> Vec<&ReplicaSet> {
        self.olds.iter().chain(self.new_rs.iter()).collect()
    }
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(d) = ctx
        .deployments
        .store()
        .get(&ObjectRef::new(name).within(ns))
    else {
        return Ok(None);
    };
    let spec = d.spec.clone().unwrap_or_default();
    if selector_is_empty(&spec.selector) {
        ctx.recorder.publish(
            d.as_ref(),
            WARNING,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(None);
    }
    let rss = claim_replicasets(ctx, &d).await?;
    let mut st = split_new_old(d.clone(), rss);

    if is_deleting(d.as_ref()) {
        update_status(ctx, &st, calculate_status(&st)).await?;
        return Ok(None);
    }
    // Paused / resumed conditions.
    let paused = spec.paused == Some(true);
    let status = d.status.clone().unwrap_or_default();
    let progressing_reason = condition(&status, "Progressing").and_then(|c| c.reason.clone());
    if paused && progressing_reason.as_deref() != Some("DeploymentPaused") {
        let mut s = status.clone();
        set_condition(
            &mut s,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
        );
        patch_status(ctx, &d, &s).await?;
        return Ok(None);
    }
    if !paused && progressing_reason.as_deref() == Some("DeploymentPaused") {
        let mut s = status.clone();
        set_condition(
            &mut s,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            ),
        );
        patch_status(ctx, &d, &s).await?;
        return Ok(None);
    }
    let scaling = st
        .all()
        .iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| desired_annotation(rs).is_some_and(|want| want != replicas(&d)));
    if paused || scaling {
        sync_revision(ctx, &mut st, false).await?;
        scale(ctx, &mut st).await?;
        if paused {
            cleanup(ctx, &st).await?;
        }
        let s = calculate_status(&st);
        update_status(ctx, &st, s).await?;
        return Ok(None);
    }
    if is_rolling(&d) {
        rollout_rolling(ctx, &mut st).await
    } else {
        rollout_recreate(ctx, &mut st).await
    }
}

async fn claim_replicasets(ctx: &Ctx, d: &Deployment) -> anyhow::Result<Vec<ReplicaSet>> {
    let ns = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::new();
    // Those it controls and the orphans its selector may adopt, through the owner and
    // label index: scanning every ReplicaSet of the namespace on each sync was the
    // controller's largest cost at 3,000 Deployments.
    for rs in podendpoint::claim_candidates(&ctx.rss, &ns, &selector, &uid) {
        let matches = selector_matches(&selector, rs.labels());
        match controller_of(rs.as_ref()) {
            Some(r) if r.uid == uid => {
                if matches {
                    out.push((*rs).clone());
                } else if !is_deleting(d) {
                    let refs: Vec<_> = rs
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    let patch = serde_json::json!({"metadata": {"ownerReferences": refs}});
                    match api
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e).context("releasing replicaset"),
                    }
                }
            }
            Some(_) => {}
            None if matches && !is_deleting(d) && !is_deleting(rs.as_ref()) => {
                let mut refs = rs.owner_references().to_vec();
                refs.push(controller_ref(d));
                let patch = serde_json::json!({"metadata": {"ownerReferences": refs}});
                match api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => out.push(adopted),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e).context("adopting replicaset"),
                }
            }
            None => {}
        }
    }
    Ok(out)
}

fn split_new_old(d: Arc<Deployment>, mut rss: Vec<ReplicaSet>) -> State {
    rss.sort_by_key(created);
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let idx = rss.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template))
    });
    let new_rs = idx.map(|i| rss.remove(i));
    State {
        d,
        new_rs,
        olds: rss,
    }
}

/// Revision bookkeeping and, when asked, creation of the new ReplicaSet
/// (getAllReplicaSetsAndSyncRevision).
async fn sync_revision(ctx: &Ctx, st: &mut State, create: bool) -> anyhow::Result<()> {
    let d = st.d.clone();
    let ns = d.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let max_old = st.olds.iter().map(revision).max().unwrap_or(0);
    let new_revision = (max_old + 1).to_string();
    let spec = d.spec.clone().unwrap_or_default();
    if let Some(rs) = st.new_rs.as_mut() {
        // Existing new ReplicaSet: bring its annotations and minReadySeconds up to date.
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let before = annotations.clone();
        for (k, v) in d.annotations() {
            if !skip_copy(k) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        let old_rev = revision(rs);
        if old_rev < max_old + 1 {
            if old_rev > 0 {
                let mut hist: Vec<String> = annotations
                    .get(REVISION_HISTORY_ANNOTATION)
                    .map(|h| h.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                hist.push(old_rev.to_string());
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), hist.join(","));
            }
            annotations.insert(REVISION_ANNOTATION.into(), new_revision.clone());
        }
        let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if annotations != before || min_ready != spec.min_ready_seconds {
            let patch = serde_json::json!({
                "metadata": {"annotations": annotations, "resourceVersion": rs.resource_version()},
                "spec": {"minReadySeconds": spec.min_ready_seconds},
            });
            *rs = api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("updating annotations of replicaset {}", rs.name_any()))?;
        }
        let rs_rev = rs
            .annotations()
            .get(REVISION_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        sync_deployment_revision(ctx, &d, &rs_rev).await?;
        let status = d.status.clone().unwrap_or_default();
        if condition(&status, "Progressing").is_none() {
            let mut s = status;
            set_condition(
                &mut s,
                new_condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{}\"", rs.name_any()),
                ),
            );
            patch_status(ctx, &d, &s).await?;
        }
        return Ok(());
    }
    if !create {
        return Ok(());
    }
    let status = d.status.clone().unwrap_or_default();
    let collision = status.collision_count;
    let mut template = spec.template.clone();
    let hash = compute_hash(&template, collision);
    let tmeta = template.metadata.get_or_insert_with(ObjectMeta::default);
    tmeta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut annotations: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !skip_copy(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION_ANNOTATION.into(), new_revision.clone());
    annotations.insert(DESIRED_REPLICAS_ANNOTATION.into(), replicas(&d).to_string());
    annotations.insert(
        MAX_REPLICAS_ANNOTATION.into(),
        (replicas(&d) + max_surge(&d)).to_string(),
    );
    let rs_name = format!("{}-{hash}", d.name_any());
    let mut new_rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name.clone()),
            namespace: Some(ns.clone()),
            labels: tmeta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d.as_ref())]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template.clone()),
        }),
        status: None,
    };
    let all: Vec<&ReplicaSet> = st.all();
    let size = new_rs_new_replicas(&d, &all, &new_rs);
    if let Some(s) = new_rs.spec.as_mut() {
        s.replicas = Some(size);
    }
    let created = match api.create(&PostParams::default(), &new_rs).await {
        Ok(rs) => {
            if size > 0 {
                ctx.recorder.publish(
                    d.as_ref(),
                    NORMAL,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {rs_name} from 0 to {size}"),
                );
            }
            let mut s = status.clone();
            set_condition(
                &mut s,
                new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{rs_name}\""),
                ),
            );
            patch_status(ctx, &d, &s).await?;
            rs
        }
        Err(e) if is_already_exists(&e) => {
            // Our cache may lag: the existing one is ours if its template matches.
            let existing = api
                .get(&rs_name)
                .await
                .context("reading existing replicaset")?;
            let ours =
                controller_of(&existing).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &spec.template));
            if ours && same {
                existing
            } else {
                // A hash collision: bump collisionCount so the next hash differs.
                let mut s = status.clone();
                s.collision_count = Some(collision.unwrap_or(0) + 1);
                patch_status(ctx, &d, &s).await?;
                anyhow::bail!("hash collision for replicaset {rs_name}");
            }
        }
        Err(e) => {
            ctx.recorder.publish(
                d.as_ref(),
                WARNING,
                "FailedCreate",
                format!("Failed to create new replica set \"{rs_name}\": {e}"),
            );
            return Err(e).context("creating new replicaset");
        }
    };
    sync_deployment_revision(ctx, &d, &new_revision).await?;
    st.new_rs = Some(created);
    Ok(())
}

async fn sync_deployment_revision(ctx: &Ctx, d: &Deployment, rev: &str) -> anyhow::Result<()> {
    if rev.is_empty() || d.annotations().get(REVISION_ANNOTATION).map(String::as_str) == Some(rev) {
        return Ok(());
    }
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {REVISION_ANNOTATION: rev}}});
    match api
        .patch(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).context("updating deployment revision"),
    }
}

/// Sets a ReplicaSet's size and replica annotations; records ScalingReplicaSet.
async fn scale_rs(
    ctx: &Ctx,
    d: &Deployment,
    rs: &mut ReplicaSet,
    size: i32,
) -> anyhow::Result<bool> {
    let current = rs_replicas(rs);
    let desired = replicas(d).to_string();
    let max = (replicas(d) + max_surge(d)).to_string();
    let ann = rs.annotations();
    let annotations_ok = ann.get(DESIRED_REPLICAS_ANNOTATION) == Some(&desired)
        && ann.get(MAX_REPLICAS_ANNOTATION) == Some(&max);
    if current == size && annotations_ok {
        return Ok(false);
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {"annotations": {DESIRED_REPLICAS_ANNOTATION: desired, MAX_REPLICAS_ANNOTATION: max},
                     "resourceVersion": rs.resource_version()},
        "spec": {"replicas": size},
    });
    *rs = api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| format!("scaling replicaset {}", rs.name_any()))?;
    if current != size {
        let op = if size > current { "up" } else { "down" };
        ctx.recorder.publish(
            d,
            NORMAL,
            "ScalingReplicaSet",
            format!(
                "Scaled {op} replica set {} from {current} to {size}",
                rs.name_any()
            ),
        );
    }
    Ok(current != size)
}

/// DeploymentController.scale: scaling events and paused deployments.
async fn scale(ctx: &Ctx, st: &mut State) -> anyhow::Result<()> {
    let d = st.d.clone();
    let want = replicas(&d);
    // One active (or only the latest) ReplicaSet: it takes the whole count.
    let active_count = st.all().iter().filter(|rs| rs_replicas(rs) > 0).count();
    if active_count <= 1 {
        let target: Option<&mut ReplicaSet> = if active_count == 1 {
            st.olds
                .iter_mut()
                .chain(st.new_rs.iter_mut())
                .find(|rs| rs_replicas(rs) > 0)
        } else if st.new_rs.is_some() {
            st.new_rs.as_mut()
        } else {
            st.olds.iter_mut().max_by_key(|rs| created(rs))
        };
        if let Some(rs) = target {
            scale_rs(ctx, &d, rs, want).await?;
        }
        return Ok(());
    }
    // The new ReplicaSet is saturated: old ones go to zero.
    if let Some(new) = &st.new_rs {
        if rs_replicas(new) == want && rs_available(new) == want {
            for rs in st.olds.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
                scale_rs(ctx, &d, rs, 0).await?;
            }
            return Ok(());
        }
    }
    if is_rolling(&d) {
        let sizes: BTreeMap<String, i32> = {
            let active: Vec<&ReplicaSet> = st
                .all()
                .into_iter()
                .filter(|rs| rs_replicas(rs) > 0)
                .collect();
            proportional_sizes(&d, &active)
                .into_iter()
                .map(|(rs, n)| (rs.name_any(), n))
                .collect()
        };
        for rs in st.olds.iter_mut().chain(st.new_rs.iter_mut()) {
            if let Some(n) = sizes.get(&rs.name_any()) {
                scale_rs(ctx, &d, rs, *n).await?;
            }
        }
    }
    Ok(())
}

async fn rollout_rolling(ctx: &Ctx, st: &mut State) -> anyhow::Result<Option<Duration>> {
    sync_revision(ctx, st, true).await?;
    let d = st.d.clone();
    // Scale up the new ReplicaSet.
    if let Some(mut new) = st.new_rs.take() {
        let want = replicas(&d);
        let size = if rs_replicas(&new) > want {
            want
        } else {
            let all: Vec<&ReplicaSet> = st.olds.iter().chain(std::iter::once(&new)).collect();
            new_rs_new_replicas(&d, &all, &new)
        };
        let scaled = scale_rs(ctx, &d, &mut new, size).await?;
        st.new_rs = Some(new);
        if scaled {
            return sync_rollout_status(ctx, st).await;
        }
    }
    // Scale down old ones.
    if reconcile_old(ctx, st).await? {
        return sync_rollout_status(ctx, st).await;
    }
    if complete(&d, &calculate_status(st)) {
        cleanup(ctx, st).await?;
    }
    sync_rollout_status(ctx, st).await
}

async fn reconcile_old(ctx: &Ctx, st: &mut State) -> anyhow::Result<bool> {
    let d = st.d.clone();
    if replica_count(&st.olds.iter().collect::<Vec<_>>()) == 0 {
        return Ok(false);
    }
    let max_down = max_scaled_down(&d, &st.all(), st.new_rs.as_ref());
    if max_down <= 0 {
        return Ok(false);
    }
    st.olds.sort_by_key(created);
    let mut total = 0;
    let sizes = cleanup_unhealthy(&st.olds.iter().collect::<Vec<_>>(), max_down);
    for (rs, size) in st.olds.iter_mut().zip(sizes) {
        let before = rs_replicas(rs);
        if size != before {
            total += before - size;
            scale_rs(ctx, &d, rs, size).await?;
        }
    }
    // Unhealthy replicas scaled down are not available: recount from status.
    let available: i32 = st
        .all()
        .iter()
        .map(|rs| rs_available(rs).min(rs_replicas(rs)))
        .sum();
    let sizes = scale_down_old_available(&d, &st.olds.iter().collect::<Vec<_>>(), available);
    for (rs, size) in st.olds.iter_mut().zip(sizes) {
        let before = rs_replicas(rs);
        if size != before {
            total += before - size;
            scale_rs(ctx, &d, rs, size).await?;
        }
    }
    Ok(total > 0)
}

async fn rollout_recreate(ctx: &Ctx, st: &mut State) -> anyhow::Result<Option<Duration>> {
    sync_revision(ctx, st, false).await?;
    let d = st.d.clone();
    let mut scaled_down = false;
    for rs in st.olds.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
        scaled_down |= scale_rs(ctx, &d, rs, 0).await?;
    }
    if scaled_down {
        return sync_rollout_status(ctx, st).await;
    }
    // Wait until no pod of an old ReplicaSet runs any more.
    let old_uids: Vec<String> = st.olds.iter().filter_map(|rs| rs.uid()).collect();
    let old_running = ctx.pods.list().iter().any(|p| {
        controller_of(p.as_ref()).is_some_and(|r| old_uids.contains(&r.uid))
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
    });
    if old_running {
        return sync_rollout_status(ctx, st).await;
    }
    if st.new_rs.is_none() {
        sync_revision(ctx, st, true).await?;
    }
    if let Some(mut new) = st.new_rs.take() {
        let scaled = scale_rs(ctx, &d, &mut new, replicas(&d)).await?;
        st.new_rs = Some(new);
        if scaled {
            return sync_rollout_status(ctx, st).await;
        }
    }
    if complete(&d, &calculate_status(st)) {
        cleanup(ctx, st).await?;
    }
    sync_rollout_status(ctx, st).await
}

/// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, lowest revision first.
async fn cleanup(ctx: &Ctx, st: &State) -> anyhow::Result<()> {
    let limit =
        st.d.spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
    let mut olds: Vec<&ReplicaSet> = st.olds.iter().filter(|rs| !is_deleting(*rs)).collect();
    if olds.len() <= limit {
        return Ok(());
    }
    let diff = olds.len() - limit;
    olds.sort_by_key(|rs| (revision(rs), created(rs)));
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &st.d.namespace().unwrap_or_default());
    for rs in olds.into_iter().take(diff) {
        let idle = rs_replicas(rs) == 0 && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0;
        if !idle {
            continue;
        }
        match api.delete(&rs.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("deleting old replicaset {}", rs.name_any()))
            }
        }
    }
    Ok(())
}

/// calculateStatus: counts from the ReplicaSets and the Available condition.
fn calculate_status(st: &State) -> DeploymentStatus {
    let d = &st.d;
    let all = st.all();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(&rs_available);
    let total = replica_count(&all);
    let mut s = d.status.clone().unwrap_or_default();
    s.observed_generation = d.metadata.generation;
    s.replicas = Some(sum(&|rs| {
        rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
    }));
    s.updated_replicas = Some(
        st.new_rs
            .as_ref()
            .and_then(|rs| rs.status.as_ref())
            .map(|s| s.replicas)
            .unwrap_or(0),
    );
    s.ready_replicas = Some(sum(&|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }));
    s.available_replicas = Some(available);
    s.unavailable_replicas = Some((total - available).max(0));
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    s
}

fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}

fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let g = |v: Option<i32>| v.unwrap_or(0);
    g(new.updated_replicas) > g(old.updated_replicas)
        || g(new.replicas) - g(new.updated_replicas) < g(old.replicas) - g(old.updated_replicas)
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

async fn sync_rollout_status(ctx: &Ctx, st: &State) -> anyhow::Result<Option<Duration>> {
    let d = &st.d;
    let old = d.status.clone().unwrap_or_default();
    let mut s = calculate_status(st);
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    let has_deadline = deadline != i32::MAX;
    let cur = condition(&s, "Progressing").cloned();
    let already_complete = s.replicas == s.updated_replicas
        && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    let rs_name = st.new_rs.as_ref().map(|rs| rs.name_any());
    let mut requeue = None;
    if has_deadline && !already_complete {
        let subject = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\""),
            None => format!("Deployment \"{}\"", d.name_any()),
        };
        if complete(d, &s) {
            set_condition(
                &mut s,
                new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("{subject} has successfully progressed."),
                ),
            );
        } else if progressing(&old, &s) {
            let mut c = new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("{subject} is progressing."),
            );
            if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            if let Some(conds) = s.conditions.as_mut() {
                conds.retain(|c| c.type_ != "Progressing");
            }
            set_condition(&mut s, c);
            requeue = Some(Duration::from_secs(deadline.max(1) as u64));
        } else if let Some(c) = cur.as_ref() {
            let reason = c.reason.as_deref().unwrap_or("");
            let timed_out = reason == "ProgressDeadlineExceeded"
                || (reason != "NewReplicaSetAvailable"
                    && c.last_update_time.as_ref().is_some_and(|t| {
                        t.0.as_second() + deadline as i64 <= Timestamp::now().as_second()
                    }));
            if timed_out {
                set_condition(
                    &mut s,
                    new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("{subject} has timed out progressing."),
                    ),
                );
            } else if reason != "NewReplicaSetAvailable" {
                let since = c
                    .last_update_time
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or(0);
                let left = since + deadline as i64 - Timestamp::now().as_second();
                requeue = Some(Duration::from_secs(left.max(1) as u64));
            }
        }
    }
    update_status(ctx, st, s).await?;
    Ok(requeue)
}

async fn update_status(ctx: &Ctx, st: &State, s: DeploymentStatus) -> anyhow::Result<()> {
    if st.d.status.as_ref() == Some(&s) {
        return Ok(());
    }
    patch_status(ctx, &st.d, &s).await
}

async fn patch_status(ctx: &Ctx, d: &Deployment, s: &DeploymentStatus) -> anyhow::Result<()> {
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": s});
    match api
        .patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) if is_conflict(&e) => Err(e).context("deployment status conflict"),
        Err(e) => Err(e).with_context(|| format!("updating status of deployment {}", d.name_any())),
    }
}
