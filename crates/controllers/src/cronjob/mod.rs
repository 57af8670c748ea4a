//! The CronJob controller (kube's `pkg/controller/cronjob`, `cronjob_controllerv2.go`):
//! creates a Job named `<cronjob>-<minutes since the epoch>` at each start time of a
//! CronJob's `schedule` (in `timeZone`, UTC by default, from the IANA database compiled
//! into the binary; a zone it does not know is reported `UnknownTimeZone`), honouring `suspend`,
//! `startingDeadlineSeconds` and `concurrencyPolicy`, keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, and deletes the oldest finished Jobs
//! beyond `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`.
//!
//! The decisions are the pure [`plan::plan`] (the time is its parameter); [`sync`]
//! reads the caches, asks it, carries the plan out and requeues the CronJob at its
//! next start time.

pub use skiff_api::cron;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{controller_of, is_already_exists, is_not_found, split_key};
use crate::Informers;

/// The time, as the controller reads it (tests give a fixed one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

struct Ctx {
    client: Client,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    recorder: Recorder,
    clock: Clock,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client,
        cronjobs: inf.cronjobs.clone(),
        jobs: inf.jobs.clone(),
        clock: Arc::new(Timestamp::now),
    });
    // The next start time is the requeue of each sync; the resync only guards against a
    // lost one.
    Triggers::new(&queue, &inf.cronjobs)
        .primary()
        .owns(&inf.jobs)
        .every(Duration::from_secs(60));
    run_workers("cronjob", queue, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(cj) = ctx.cronjobs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = ctx
        .jobs
        .list()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns))
        .filter(|j| controller_of(j.as_ref()).is_some_and(|r| r.uid == uid))
        .collect();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);

    // Active Jobs the cache lacks may be new rather than gone: ask the API server, as
    // kube does, before dropping them.
    let mut missing = HashSet::new();
    let active = cj.status.as_ref().and_then(|s| s.active.clone());
    for r in active.unwrap_or_default() {
        let Some(n) = r.name else { continue };
        if jobs.iter().any(|j| j.name_any() == n) {
            continue;
        }
        match jobs_api.get(&n).await {
            Err(e) if is_not_found(&e) => {
                missing.insert(n);
            }
            Err(e) => return Err(e).with_context(|| format!("getting job {ns}/{n}")),
            Ok(j) if j.uid() != r.uid => {
                missing.insert(n);
            }
            Ok(_) => {}
        }
    }

    let job_refs: Vec<&Job> = jobs.iter().map(|j| j.as_ref()).collect();
    let mut p = plan::plan(&plan::Input {
        cj: cj.as_ref(),
        jobs: &job_refs,
        missing: &missing,
        now: (ctx.clock)(),
    });

    for d in &p.delete {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: d.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match jobs_api.delete(&d.name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting job {ns}/{}", d.name)),
        }
    }
    if let Some((job, scheduled)) = p.create.take() {
        let job_name = job.name_any();
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                p.events.push(plan::Event {
                    warning: false,
                    reason: "SuccessfulCreate",
                    message: format!("Created job {job_name}"),
                });
                j
            }
            // Created before (a lost status write): take it if it is ours.
            Err(e) if is_already_exists(&e) => {
                let j = jobs_api
                    .get(&job_name)
                    .await
                    .with_context(|| format!("getting job {ns}/{job_name}"))?;
                if controller_of(&j).is_none_or(|r| r.uid != uid) {
                    return Err(e).with_context(|| format!("job {ns}/{job_name} exists"));
                }
                j
            }
            Err(e) => {
                ctx.recorder.publish(
                    cj.as_ref(),
                    WARNING,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Err(e).with_context(|| format!("creating job {ns}/{job_name}"));
            }
        };
        if plan::finished(&created).is_none() {
            p.status
                .active
                .get_or_insert_with(Vec::new)
                .push(plan::reference(&created));
        }
        p.status.last_schedule_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            scheduled,
        ));
    }

    if cj.status.clone().unwrap_or_default() != p.status {
        let mut updated = (*cj).clone();
        updated.status = Some(p.status.clone());
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), ns);
        updated.metadata.managed_fields = None;
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("updating status of {key}")),
        }
    }
    for e in &p.events {
        let type_ = if e.warning { WARNING } else { NORMAL };
        ctx.recorder
            .publish(cj.as_ref(), type_, e.reason, e.message.clone());
    }
    Ok(p.requeue)
}
