//! The CronJob controller's decisions, pure (kube's `syncCronJob`, `mostRecentScheduleTime`
//! and `cleanupFinishedJobs`): given the CronJob, its Jobs and the time, what to create,
//! delete, record and when to look again.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::cron::Schedule;
use crate::util::controller_ref;

/// The annotation with the time a Job was scheduled for (RFC 3339, in the CronJob's
/// time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed start times than this: a warning, and only the latest starts.
const MANY_MISSED: i64 = 100;

/// How many start times were missed since the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// None: the next is still ahead.
    None,
    /// Some (at most [`MANY_MISSED`]).
    Few,
    /// More than [`MANY_MISSED`].
    Many,
}

/// kube's `mostRecentScheduleTime`: the earliest time to look from (last schedule time
/// or creation, or `now - startingDeadlineSeconds` if later and `with_deadline`), the
/// latest start time not after `now` since then, and how many were missed.
pub fn most_recent(
    cj: &CronJob,
    sched: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
    with_deadline: bool,
) -> (Timestamp, Option<Timestamp>, Missed) {
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(created);
    if with_deadline {
        if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let deadline = now - SignedDuration::from_secs(sds);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let Some(t1) = sched.next(earliest, tz).filter(|t| *t <= now) else {
        return (earliest, None, Missed::None);
    };
    let Some(t2) = sched.next(t1, tz).filter(|t| *t <= now) else {
        return (earliest, Some(t1), Missed::Few);
    };
    // As kube: estimate the count from the first interval, jump near the end and walk
    // the last stretch, so that decades of missed minutes cost nothing.
    let between = (t2.as_second() - t1.as_second()).max(1);
    let missed = (now.as_second() - t1.as_second()) / between + 1;
    let mut t = t1 + SignedDuration::from_secs((missed - 2).max(0) * between);
    let mut latest = t1;
    while let Some(n) = sched.next(t, tz).filter(|n| *n <= now) {
        latest = n;
        t = n;
    }
    let kind = if missed > MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    (earliest, Some(latest), kind)
}

/// How long until the next start time after the latest one (or after the earliest if
/// none is due), plus kube's 100 ms of slack; none if the schedule never fires again.
pub fn next_in(cj: &CronJob, sched: &Schedule, tz: &TimeZone, now: Timestamp) -> Option<Duration> {
    let (earliest, latest, _) = most_recent(cj, sched, tz, now, false);
    let next = sched.next(latest.unwrap_or(earliest), tz)?;
    let ms = (next.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100;
    Some(Duration::from_millis(ms))
}

/// kube's `getJobName`: the CronJob's name and the start time in minutes since the
/// epoch.
pub fn job_name(cj_name: &str, scheduled: Timestamp) -> String {
    format!("{cj_name}-{}", scheduled.as_second().div_euclid(60))
}

/// kube's `getJobFromTemplate2`: the Job for the start time `scheduled`.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template: JobTemplateSpec = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.to_string(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// `Complete` or `Failed`, if the Job finished (kube's `getFinishedStatus`).
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// A reference to a Job, as `status.active` holds them.
pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_string()),
        kind: Some("Job".to_string()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// An event to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Whether it is a warning (else normal).
    pub warning: bool,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> Event {
    Event {
        warning: false,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Event {
    Event {
        warning: true,
        reason,
        message,
    }
}

/// What the controller sees.
pub struct Input<'a> {
    /// The CronJob.
    pub cj: &'a CronJob,
    /// The Jobs it controls.
    pub jobs: &'a [&'a Job],
    /// Names of Jobs in `status.active` the API server says are gone.
    pub missing: &'a HashSet<String>,
    /// The time.
    pub now: Timestamp,
}

/// A Job to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Its name.
    pub name: String,
    /// Its uid (a precondition of the delete).
    pub uid: Option<String>,
}

/// What the controller is to do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status after.
    pub status: CronJobStatus,
    /// Jobs to delete first (history beyond the limits, active ones being replaced).
    pub delete: Vec<Delete>,
    /// The Job to create, with its start time.
    pub create: Option<(Job, Timestamp)>,
    /// Events to record.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

/// kube's `syncCronJob` and `cleanupFinishedJobs`, decided.
pub fn plan(input: &Input) -> Plan {
    let cj = input.cj;
    let mut p = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let spec = cj.spec.clone().unwrap_or_default();
    reconcile_active(input, &mut p);
    cleanup_history(input, &spec, &mut p);

    if cj.metadata.deletion_timestamp.is_some() {
        return p;
    }
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        // Named zones come from the tz database compiled in (`skiff_api::tz`).
        Some(name) => match skiff_api::tz::zone(name) {
            Ok(tz) => tz,
            Err(e) => {
                p.events.push(warning(
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                ));
                return p;
            }
        },
    };
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            p.events.push(warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return p;
        }
    };
    if spec.suspend == Some(true) {
        return p;
    }
    let now = input.now;
    p.requeue = next_in(cj, &sched, &tz, now);
    let (_, latest, missed) = most_recent(cj, &sched, &tz, now, true);
    let Some(scheduled) = latest else {
        return p;
    };
    if missed == Missed::Many {
        p.events.push(warning(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or \
             check clock skew"
                .to_string(),
        ));
    }
    if let Some(sds) = spec.starting_deadline_seconds {
        if scheduled + SignedDuration::from_secs(sds) < now {
            p.events.push(warning(
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            ));
            return p;
        }
    }
    let name = job_name(&cj.name_any(), scheduled);
    let active = p.status.active.clone().unwrap_or_default();
    // Already started (the status write after the create may have been lost).
    if active.iter().any(|r| r.name.as_deref() == Some(&name))
        || input.jobs.iter().any(|j| j.name_any() == name)
    {
        p.status.last_schedule_time = Some(Time(scheduled));
        return p;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            p.events.push(normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency \
                 policy is Forbid"
                    .to_string(),
            ));
            return p;
        }
        Some("Replace") => {
            for r in &active {
                if let Some(n) = &r.name {
                    p.delete.push(Delete {
                        name: n.clone(),
                        uid: r.uid.clone(),
                    });
                    p.events
                        .push(normal("SuccessfulDelete", format!("Deleted job {n}")));
                }
            }
            p.status.active = None;
        }
        _ => {}
    }
    p.create = Some((job_for(cj, scheduled, &tz), scheduled));
    p
}

/// Brings `status.active` in line with the Jobs: running ones the list lacks join it,
/// finished and missing ones leave it, the latest success is recorded.
fn reconcile_active(input: &Input, p: &mut Plan) {
    let mut active = p.status.active.take().unwrap_or_default();
    for job in input.jobs {
        let uid = job.uid();
        let listed = active.iter().position(|r| r.uid == uid);
        match (finished(job), listed) {
            (None, None) if job.metadata.deletion_timestamp.is_none() => {
                active.push(reference(job));
            }
            (Some(cond), Some(i)) => {
                active.remove(i);
                p.events.push(normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {}, condition: {cond}", job.name_any()),
                ));
            }
            _ => {}
        }
        if finished(job) == Some("Complete") {
            let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
            if let Some(done) = done {
                let later = p
                    .status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| t.0 < done.0);
                if later {
                    p.status.last_successful_time = Some(done);
                }
            }
        }
    }
    active.retain(|r| {
        let name = r.name.clone().unwrap_or_default();
        let gone = input.missing.contains(&name);
        if gone {
            p.events.push(normal(
                "MissingJob",
                format!("Active job went missing: {name}"),
            ));
        }
        !gone
    });
    p.status.active = (!active.is_empty()).then_some(active);
}

/// Deletes the oldest finished Jobs beyond the history limits.
fn cleanup_history(input: &Input, spec: &k8s_openapi::api::batch::v1::CronJobSpec, p: &mut Plan) {
    let limits = [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ];
    for (cond, limit) in limits {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = input
            .jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(cond) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        // kube's byJobStartTime: by start time, those without one last, then by name.
        done.sort_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone());
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x.0 != y.0 => x.0.cmp(&y.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.name_any().cmp(&b.name_any()),
            }
        });
        for j in &done[..excess] {
            p.delete.push(Delete {
                name: j.name_any(),
                uid: j.uid(),
            });
            p.events.push(normal(
                "SuccessfulDelete",
                format!("Deleted job {}", j.name_any()),
            ));
        }
    }
}
