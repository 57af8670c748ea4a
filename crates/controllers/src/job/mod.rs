//! The Job controller (kube's `pkg/controller/job`): runs a Job's pods to
//! `completions` successes with at most `parallelism` at once, or fails the Job past
//! `backoffLimit` failures (re-creating pods after an exponential back-off), past
//! `activeDeadlineSeconds`, or on a `podFailurePolicy` FailJob rule; `Indexed` Jobs
//! give each pod its completion index; `suspend` stops the pods. Finished pods are
//! counted once through the `batch.kubernetes.io/job-tracking` finalizer and
//! `status.uncountedTerminatedPods`, as kube does.
//!
//! The decisions are the pure [`plan::plan`]; [`sync`] reads the caches, asks it, and
//! carries the plan out.

pub mod backoff;
pub mod indexes;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Informer;
use crate::podcontrol::{create_pods, delete_pods, Expectations, Owner, CREATES_IN_FLIGHT};
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{controller_of, is_not_found, split_key};
use crate::Informers;

/// The time, as the controller reads it (tests give a fake one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

struct Ctx {
    client: Client,
    pods: Arc<Informer<Pod>>,
    jobs: Arc<Informer<Job>>,
    recorder: Recorder,
    expectations: Expectations,
    /// Back-off records by Job key (kube keeps them in memory too).
    backoffs: Mutex<HashMap<String, backoff::Record>>,
    /// Uids of pods whose finalizer was removed, by Job key, until the cache shows it.
    stripped: Mutex<HashMap<String, HashSet<String>>>,
    /// The status last written, with its resourceVersion, by Job key: newer than the
    /// cache until the watch catches up.
    written: Mutex<HashMap<String, (u64, JobStatus)>>,
    clock: Clock,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a worker panicked; the maps are still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    run_with_clock(client, inf, Arc::new(Timestamp::now));
}

fn run_with_clock(client: Client, inf: &Informers, clock: Clock) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(new_ctx(client, inf.pods.clone(), inf.jobs.clone(), clock));
    Triggers::new(&queue, &inf.jobs)
        .primary()
        .owns(&inf.pods)
        .every(Duration::from_secs(30));
    run_workers("job", queue, 4, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

fn new_ctx(
    client: Client,
    pods: Arc<Informer<Pod>>,
    jobs: Arc<Informer<Job>>,
    clock: Clock,
) -> Ctx {
    Ctx {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        pods,
        jobs,
        expectations: Expectations::default(),
        backoffs: Mutex::default(),
        stripped: Mutex::default(),
        written: Mutex::default(),
        clock,
    }
}

fn rv_of(s: Option<&str>) -> u64 {
    s.and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Some(job) = ctx.jobs.store().get(&ObjectRef::new(name).within(ns)) else {
        forget(ctx, key);
        return release_orphans(ctx, ns, name).await.map(|_| None);
    };
    let uid = job.uid().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
        .filter(|p| controller_of(p.as_ref()).is_some_and(|r| r.uid == uid))
        .collect();

    // The newest status known: the cache's, or the one last written if the cache lags.
    let cached_rv = rv_of(job.metadata.resource_version.as_deref());
    let (rv, status) = match lock(&ctx.written).get(key) {
        Some((rv, st)) if *rv > cached_rv => (*rv, st.clone()),
        _ => (cached_rv, job.status.clone().unwrap_or_default()),
    };
    let stripped: HashSet<String> = {
        let mut m = lock(&ctx.stripped);
        let set = m.entry(key.to_string()).or_default();
        // Forget the pods the cache shows without the finalizer (or not at all).
        set.retain(|u| {
            pods.iter().any(|p| {
                p.uid().as_deref() == Some(u.as_str())
                    && p.finalizers().iter().any(|f| f == plan::TRACKING_FINALIZER)
            })
        });
        set.clone()
    };
    let may_manage = ctx.expectations.satisfied(key, |pod| {
        ctx.pods.store().get(&ObjectRef::new(pod).within(ns))
    });
    let record = lock(&ctx.backoffs).get(key).cloned().unwrap_or_default();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let plan = plan::plan(&plan::Input {
        job: job.as_ref(),
        status: &status,
        pods: &pod_refs,
        stripped: &stripped,
        backoff: &record,
        may_manage,
        now: (ctx.clock)(),
    });

    // 1. Record the newly finished pods before their finalizers go.
    let mut rv = rv;
    let mut current = status.clone();
    if let Some(rec) = &plan.record {
        match write_status(ctx, &job, key, rv, rec).await? {
            Some(new_rv) => {
                rv = new_rv;
                current = rec.clone();
            }
            None => return Ok(None),
        }
    }
    lock(&ctx.backoffs).insert(key.to_string(), plan.backoff.clone());

    // 2. Let the counted pods go.
    strip_finalizers(ctx, key, &pods_api, &plan.strip).await?;

    // 3. Delete and create pods.
    let owner = Owner {
        obj: job.as_ref(),
        key,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
    };
    delete_pods(&owner, &pods_api, &plan.delete, &DeleteParams::background()).await?;
    let new_pods: Vec<Pod> = plan
        .create
        .iter()
        .map(|ix| plan::pod_with_counts(&job, *ix, &plan.index_failures))
        .collect();
    create_pods(&owner, &pods_api, new_pods, |_| {
        format!("pods for job {key}")
    })
    .await?;

    // 4. The status after.
    if plan.status != current
        && write_status(ctx, &job, key, rv, &plan.status)
            .await?
            .is_none()
    {
        return Ok(None);
    }
    for e in &plan.events {
        let type_ = if e.type_ == "Warning" {
            WARNING
        } else {
            NORMAL
        };
        ctx.recorder
            .publish(job.as_ref(), type_, &e.reason, e.message.clone());
    }
    Ok(plan.requeue)
}

/// Forgets what the controller kept about a Job that is gone.
fn forget(ctx: &Ctx, key: &str) {
    ctx.expectations.delete(key);
    lock(&ctx.backoffs).remove(key);
    lock(&ctx.stripped).remove(key);
    lock(&ctx.written).remove(key);
}

/// Writes `status` (an update guarded by `rv`, as kube's controller updates, so that a
/// stale view cannot overwrite a newer count). The new resourceVersion, or None if the
/// Job is gone.
async fn write_status(
    ctx: &Ctx,
    job: &Job,
    key: &str,
    rv: u64,
    status: &JobStatus,
) -> anyhow::Result<Option<u64>> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let mut j = job.clone();
    j.metadata.resource_version = Some(rv.to_string());
    j.metadata.managed_fields = None;
    j.status = Some(status.clone());
    match api
        .replace_status(&job.name_any(), &PostParams::default(), &j)
        .await
    {
        Ok(new) => {
            let new_rv = rv_of(new.metadata.resource_version.as_deref());
            lock(&ctx.written).insert(key.to_string(), (new_rv, status.clone()));
            Ok(Some(new_rv))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => {
            // A conflict means the view was stale: start over from the cache.
            lock(&ctx.written).remove(key);
            Err(e).with_context(|| format!("updating status of job {key}"))
        }
    }
}

/// The strategic merge patch that removes the tracking finalizer and only it.
fn strip_patch() -> serde_json::Value {
    serde_json::json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [plan::TRACKING_FINALIZER]}})
}

async fn strip_finalizers(
    ctx: &Ctx,
    key: &str,
    api: &Api<Pod>,
    pods: &[(String, String)],
) -> anyhow::Result<()> {
    let futs: Vec<_> = pods
        .iter()
        .cloned()
        .map(|(name, uid)| {
            let api = api.clone();
            async move {
                let r = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Strategic(strip_patch()),
                    )
                    .await;
                (name, uid, r)
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(futs)
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await;
    let mut err = None;
    for (name, uid, r) in results {
        match r {
            Ok(_) => {
                lock(&ctx.stripped)
                    .entry(key.to_string())
                    .or_default()
                    .insert(uid);
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                err = Some(
                    anyhow::Error::new(e).context(format!("removing the finalizer of pod {name}")),
                )
            }
        }
    }
    err.map_or(Ok(()), Err)
}

/// Lets go the pods of a Job that is gone (kube's orphan pod cleanup): their tracking
/// finalizer would otherwise keep them forever. The Job is looked up live first, since
/// the cache may not have it yet.
async fn release_orphans(ctx: &Ctx, ns: &str, name: &str) -> anyhow::Result<()> {
    let orphans: Vec<Arc<Pod>> = ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
        .filter(|p| controller_of(p.as_ref()).is_some_and(|r| r.kind == "Job" && r.name == name))
        .filter(|p| p.finalizers().iter().any(|f| f == plan::TRACKING_FINALIZER))
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let live_uid = match jobs.get(name).await {
        Ok(j) => j.uid(),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e).with_context(|| format!("getting job {ns}/{name}")),
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let patch = strip_patch();
    for p in orphans {
        let owner = controller_of(p.as_ref()).map(|r| r.uid.clone());
        if live_uid.is_some() && owner == live_uid {
            continue;
        }
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("removing the finalizer of pod {}", p.name_any()))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
