//! The StatefulSet controller (kube's `pkg/controller/statefulset`): pods with stable
//! names `<set>-<ordinal>`, hostnames and claims, created in ordinal order and each
//! Running and Ready before the next (`OrderedReady`) or all at once (`Parallel`),
//! removed from the highest ordinal down, replaced from the highest ordinal down on a
//! rolling update (above `partition`), or only when deleted (`OnDelete`).
//!
//! The template's versions are ControllerRevisions `<set>-<hash>`; a pod's
//! `controller-revision-hash` label is its revision's name, and
//! `status.currentRevision`/`updateRevision` name the two revisions a rollout goes
//! between (`kubectl rollout status/history/undo` read and apply them). The claims of
//! `volumeClaimTemplates` are created before their pod and outlive it; their
//! ownerReferences follow `persistentVolumeClaimRetentionPolicy`, so that the garbage
//! collector deletes them with the set or on scale down.
//!
//! The decisions are the pure [`plan::plan`]; [`sync`] reads the caches, keeps the
//! revisions, asks the plan and carries it out.

pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::hash::{normalize, safe_encode_string};
use crate::informer::Informer;
use crate::podcontrol::{Expectations, CREATES_IN_FLIGHT};
use crate::queue::{run_workers, WorkQueue};
use crate::replicaset::{adopt, release};
use crate::triggers::Triggers;
use crate::util::{
    controller_of, controller_ref, is_already_exists, is_deleting, is_not_found, pod_active,
    pod_owner_keys, selector_is_empty, selector_matches, split_key,
};
use crate::Informers;
use plan::{Action, Revision, HASH_LABEL, REVISION_LABEL};

struct Ctx {
    client: Client,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        sets: inf.statefulsets.clone(),
        pods: inf.pods.clone(),
        revisions: inf.controllerrevisions.clone(),
        claims: inf.pvcs.clone(),
        recorder: Recorder::new(client, "statefulset-controller"),
        expectations: Expectations::default(),
    });
    let sets = inf.statefulsets.clone();
    Triggers::new(&queue, &inf.statefulsets)
        .primary()
        .owns(&inf.controllerrevisions)
        .watches(&inf.pods, move |p, _| {
            pod_owner_keys(&sets.list(), p, |o| o.spec.as_ref().map(|s| &s.selector))
        })
        .every(Duration::from_secs(30));
    run_workers("statefulset", queue, 4, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

/// The ControllerRevision data of the set's template (kube's `getPatch`): a strategic
/// merge patch replacing `spec.template`, which `kubectl rollout undo` applies.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds (kube's `ApplyRevision` of its patch onto the set).
pub fn revision_template(rev: &ControllerRevision) -> PodTemplateSpec {
    let mut t = rev
        .data
        .as_ref()
        .and_then(|d| d.0.pointer("/spec/template"))
        .cloned()
        .unwrap_or(Value::Null);
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).unwrap_or_default()
}

/// The hash naming a revision (`history.HashControllerRevision`: FNV-1 32 over the
/// data, then the collision count in decimal, safe-encoded). skiff hashes the data's
/// canonical JSON, so the value differs from kube's for the same template.
pub fn revision_hash(data: &Value, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(&normalize(data.clone())).unwrap_or_default();
    bytes.extend_from_slice(collision_count.to_string().as_bytes());
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = h.wrapping_mul(0x0100_0193);
        h ^= b as u32;
    }
    safe_encode_string(&h.to_string())
}

fn same_data(rev: &ControllerRevision, data: &Value) -> bool {
    rev.data
        .as_ref()
        .is_some_and(|d| normalize(d.0.clone()) == normalize(data.clone()))
}

/// `history.SortControllerRevisions`: by revision, then age, then name.
fn sort_revisions(revs: &mut [Arc<ControllerRevision>]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(set) = ctx.sets.store().get(&ObjectRef::new(name).within(ns)) else {
        ctx.expectations.delete(key);
        return Ok(None);
    };
    let spec = set.spec.clone().unwrap_or_default();
    if selector_is_empty(&spec.selector) {
        return Ok(None);
    }
    if !ctx.expectations.satisfied(key, |pod| {
        ctx.pods.store().get(&ObjectRef::new(pod).within(ns))
    }) {
        // Its own creates and deletes are not in the cache yet: their events come back.
        return Ok(None);
    }
    let pods = claim_pods(ctx, &set).await?;
    let mut revisions: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .list()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns))
        .filter(|r| {
            controller_of(r.as_ref()).is_some_and(|c| Some(&c.uid) == set.metadata.uid.as_ref())
        })
        .collect();
    sort_revisions(&mut revisions);
    let (current, update, collisions) = set_revisions(ctx, &set, &revisions).await?;
    let (current_t, update_t) = (revision_template(&current), revision_template(&update));
    let claims: Vec<Arc<PersistentVolumeClaim>> = ctx
        .claims
        .list()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns))
        .collect();
    let claims: BTreeMap<String, &PersistentVolumeClaim> =
        claims.iter().map(|c| (c.name_any(), c.as_ref())).collect();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let (current_name, update_name) = (current.name_any(), update.name_any());
    let plan = plan::plan(&plan::Input {
        set: &set,
        current: Revision {
            name: &current_name,
            template: &current_t,
        },
        update: Revision {
            name: &update_name,
            template: &update_t,
        },
        collision_count: collisions,
        pods: &pod_refs,
        claims: &claims,
        now: Timestamp::now(),
    });

    let mut result = Ok(());
    for phase in &plan.phases {
        result = run_phase(ctx, key, &set, phase, plan.parallel).await;
        if result.is_err() {
            break;
        }
    }
    // The status, even after a failed action (kube writes it either way).
    write_status(ctx, &set, &plan.status).await?;
    result?;
    truncate_history(ctx, &set, &pods, &revisions, &current, &update).await?;
    Ok(plan.requeue)
}

/// The set's pods (`getPodsForStatefulSet`): owned ones named `<set>-<ordinal>` whose
/// labels match, matching orphans adopted, owned ones that no longer match released.
async fn claim_pods(ctx: &Ctx, set: &Arc<StatefulSet>) -> anyhow::Result<Vec<Arc<Pod>>> {
    let ns = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let selector = set
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned = Vec::new();
    for p in ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
    {
        let member = plan::parent_and_ordinal(&p.name_any())
            .is_some_and(|(parent, _)| parent == set.name_any());
        let matches = member && selector_matches(&selector, p.labels());
        match controller_of(p.as_ref()) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(p);
                } else if !is_deleting(set.as_ref()) {
                    release(&api, &p, &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches
                    && !is_deleting(set.as_ref())
                    && pod_active(&p)
                    && adopt(&api, &p, set.as_ref()).await?
                {
                    owned.push(p);
                }
            }
        }
    }
    Ok(owned)
}

/// The set's current and update revisions and the collision count
/// (`getStatefulSetRevisions`): the update revision is the one holding the set's
/// template, reused (and renumbered to the newest when it is an older one: a rollback)
/// or created; the current one is `status.currentRevision`, else the update one.
async fn set_revisions(
    ctx: &Ctx,
    set: &StatefulSet,
    revisions: &[Arc<ControllerRevision>],
) -> anyhow::Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32)> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = revision_data(&template);
    let mut collisions = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let next = revisions.last().map_or(0, |r| r.revision) + 1;
    let equal = revisions.iter().rev().find(|r| same_data(r, &data));
    let update = match equal {
        Some(eq)
            if revisions
                .last()
                .is_some_and(|l| l.name_any() == eq.name_any()) =>
        {
            eq.clone()
        }
        Some(eq) => {
            let patch = json!({"revision": next});
            Arc::new(
                api.patch(
                    &eq.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("renumbering revision {}", eq.name_any()))?,
            )
        }
        None => loop {
            let hash = revision_hash(&data, collisions);
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", set.name_any())),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: set.metadata.annotations.clone(),
                    owner_references: Some(vec![controller_ref(set)]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: next,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(r) => break Arc::new(r),
                Err(e) if is_already_exists(&e) => {
                    let existing = api
                        .get(&rev.name_any())
                        .await
                        .context("reading a revision")?;
                    if same_data(&existing, &data)
                        && controller_of(&existing).map(|c| &c.uid) == set.metadata.uid.as_ref()
                    {
                        break Arc::new(existing);
                    }
                    // Another template holds this name: the next count gives another.
                    collisions += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating revision {}", rev.name_any()))
                }
            }
        },
    };
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = revisions
        .iter()
        .find(|r| Some(r.name_any()) == current_name)
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collisions))
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` that neither the set's
/// two revisions nor any pod uses (kube's `truncateHistory`).
async fn truncate_history(
    ctx: &Ctx,
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    revisions: &[Arc<ControllerRevision>],
    current: &ControllerRevision,
    update: &ControllerRevision,
) -> anyhow::Result<()> {
    let mut live: std::collections::HashSet<String> = [current.name_any(), update.name_any()]
        .into_iter()
        .collect();
    live.extend(
        pods.iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL).cloned()),
    );
    let history: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    if history.len() <= limit {
        return Ok(());
    }
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for r in &history[..history.len() - limit] {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).context("deleting an old revision"),
        }
    }
    Ok(())
}

/// Writes the status when it differs from the cached one (`inconsistentStatus`).
async fn write_status(ctx: &Ctx, set: &StatefulSet, new: &StatefulSetStatus) -> anyhow::Result<()> {
    let old = set.status.clone().unwrap_or_default();
    let zero = |v: Option<i32>| v.unwrap_or(0);
    let same = old.observed_generation == new.observed_generation
        && old.replicas == new.replicas
        && zero(old.ready_replicas) == zero(new.ready_replicas)
        && zero(old.current_replicas) == zero(new.current_replicas)
        && zero(old.updated_replicas) == zero(new.updated_replicas)
        && zero(old.available_replicas) == zero(new.available_replicas)
        && old.current_revision == new.current_revision
        && old.update_revision == new.update_revision
        && zero(old.collision_count) == zero(new.collision_count);
    if same {
        return Ok(());
    }
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let patch = json!({"status": {
        "observedGeneration": new.observed_generation,
        "replicas": new.replicas,
        "readyReplicas": zero(new.ready_replicas),
        "currentReplicas": zero(new.current_replicas),
        "updatedReplicas": zero(new.updated_replicas),
        "availableReplicas": zero(new.available_replicas),
        "currentRevision": new.current_revision,
        "updateRevision": new.update_revision,
        "collisionCount": zero(new.collision_count),
    }});
    match api
        .patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("updating status of statefulset {}", set.name_any()))
        }
    }
}

/// Runs one phase of the plan: in order, or (Parallel) at once; the first error ends it.
async fn run_phase(
    ctx: &Ctx,
    key: &str,
    set: &StatefulSet,
    actions: &[Action],
    parallel: bool,
) -> anyhow::Result<()> {
    if !parallel {
        for a in actions {
            act(ctx, key, set, a).await?;
        }
        return Ok(());
    }
    let mut futs = Vec::with_capacity(actions.len());
    for a in actions {
        futs.push(act(ctx, key, set, a));
    }
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(futs)
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn act(ctx: &Ctx, key: &str, set: &StatefulSet, action: &Action) -> anyhow::Result<()> {
    let ns = set.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let set_name = set.name_any();
    match action {
        Action::CreatePod { pod, claims } => {
            let name = pod.name_any();
            if let Err(e) = create_claims(ctx, set, &name, claims).await {
                ctx.recorder.publish(
                    set,
                    WARNING,
                    "FailedCreate",
                    format!("create Pod {name} in StatefulSet {set_name} failed error: {e:#}"),
                );
                return Err(e);
            }
            match pods.create(&PostParams::default(), pod).await {
                Ok(_) => {
                    ctx.expectations.expect(key, vec![name.clone()], vec![]);
                    ctx.recorder.publish(
                        set,
                        NORMAL,
                        "SuccessfulCreate",
                        format!("create Pod {name} in StatefulSet {set_name} successful"),
                    );
                    Ok(())
                }
                // The pod is there (the cache lags, or it is still terminating): its
                // events bring the set back.
                Err(e) if is_already_exists(&e) => Ok(()),
                Err(e) => {
                    ctx.recorder.publish(
                        set,
                        WARNING,
                        "FailedCreate",
                        format!("create Pod {name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    Err(e).with_context(|| format!("creating pod {ns}/{name}"))
                }
            }
        }
        Action::CreateClaims { pod, claims } => create_claims(ctx, set, pod, claims).await,
        Action::DeletePod { name, uid, warning } => {
            if let Some((reason, message)) = warning {
                ctx.recorder.publish(set, WARNING, reason, message.clone());
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(name, &dp).await {
                Ok(_) => {
                    ctx.expectations
                        .expect(key, vec![], vec![(name.clone(), uid.clone())]);
                    ctx.recorder.publish(
                        set,
                        NORMAL,
                        "SuccessfulDelete",
                        format!("delete Pod {name} in StatefulSet {set_name} successful"),
                    );
                    Ok(())
                }
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => {
                    ctx.recorder.publish(
                        set,
                        WARNING,
                        "FailedDelete",
                        format!("delete Pod {name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    Err(e).with_context(|| format!("deleting pod {ns}/{name}"))
                }
            }
        }
        Action::UpdatePod { pod } => {
            let name = pod.name_any();
            match pods.replace(&name, &PostParams::default(), pod).await {
                Ok(_) => {
                    ctx.recorder.publish(
                        set,
                        NORMAL,
                        "SuccessfulUpdate",
                        format!("update Pod {name} in StatefulSet {set_name} successful"),
                    );
                    Ok(())
                }
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => {
                    ctx.recorder.publish(
                        set,
                        WARNING,
                        "FailedUpdate",
                        format!("update Pod {name} in StatefulSet {set_name} failed error: {e}"),
                    );
                    Err(e).with_context(|| format!("updating pod {ns}/{name}"))
                }
            }
        }
        Action::SetClaimOwners { claim, owners } => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"ownerReferences": owners}});
            match api
                .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e).with_context(|| {
                    format!("could not update claim {claim} for delete policy ownerRefs")
                }),
            }
        }
    }
}

/// Creates the pod's missing claims (`createPersistentVolumeClaims`); one that exists
/// already (the cache lagged) is used as it is.
async fn create_claims(
    ctx: &Ctx,
    set: &StatefulSet,
    pod: &str,
    claims: &[PersistentVolumeClaim],
) -> anyhow::Result<()> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_name = set.name_any();
    for claim in claims {
        let name = claim.name_any();
        match api.create(&PostParams::default(), claim).await {
            Ok(_) => ctx.recorder.publish(
                set,
                NORMAL,
                "SuccessfulCreate",
                format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
            ),
            Err(e) if is_already_exists(&e) => {}
            Err(e) => {
                ctx.recorder.publish(
                    set,
                    WARNING,
                    "FailedCreate",
                    format!(
                        "create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                    ),
                );
                return Err(e).with_context(|| format!("failed to create PVC {name}"));
            }
        }
    }
    Ok(())
}
