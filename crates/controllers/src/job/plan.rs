//! What the Job controller does with one Job, as a pure function of the Job, its pods,
//! its back-off record and the time (kube's `syncJob`, `manageJob` and
//! `trackJobStatusAndRemoveFinalizers`): which finished pods to record, which pods
//! lose the tracking finalizer, which pods to delete and create, and the status after.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::backoff;
use super::indexes;
use crate::util::{controller_ref, pod_active, pod_phase, pod_ready};

/// The finalizer that keeps a Job's finished pods until the controller counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with the completion index of an Indexed Job's pod.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable with the completion index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Annotation with the failures of an index before its pod (Jobs with
/// `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation with the failures of an index the pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The `spec.managedBy` of Jobs this controller runs (kube's `JobControllerName`).
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// Most pods created or deleted in one sync (kube's `MaxPodCreateDeletePerSync`).
pub const MAX_PER_SYNC: usize = 500;

/// Reason and message of a finished Job's condition.
pub const REASON_COMPLETIONS: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);
/// Reason and message of a Job past its backoff limit.
pub const REASON_BACKOFF: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
/// Reason and message of a Job past its active deadline.
pub const REASON_DEADLINE: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);

/// Reason and message of an Indexed Job with more failed indexes than `maxFailedIndexes`.
pub const REASON_MAX_FAILED_INDEXES: (&str, &str) = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
);
/// Reason and message of an Indexed Job whose every index finished, some failed.
pub const REASON_FAILED_INDEXES: (&str, &str) = ("FailedIndexes", "Job has failed indexes");
/// Reason of a Job that met a rule of its `successPolicy`.
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";

/// What [`plan`] decides from.
pub struct Input<'a> {
    /// The Job.
    pub job: &'a Job,
    /// Its status (the newest the controller knows: its cache, or what it last wrote).
    pub status: &'a JobStatus,
    /// The pods the Job controls.
    pub pods: &'a [&'a Pod],
    /// Uids of pods whose finalizer the controller removed (the cache may lag).
    pub stripped: &'a HashSet<String>,
    /// The Job's back-off record.
    pub backoff: &'a backoff::Record,
    /// Whether pods created and deleted earlier are all in the cache (expectations).
    pub may_manage: bool,
    /// Now.
    pub now: Timestamp,
}

/// An Event to record on the Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// What to do, in this order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The status recording newly finished pods in `uncountedTerminatedPods`, to write
    /// before their finalizers go (so that a restart counts each once).
    pub record: Option<JobStatus>,
    /// Pods (name, uid) whose tracking finalizer goes.
    pub strip: Vec<(String, String)>,
    /// Pods (name, uid) to delete.
    pub delete: Vec<(String, String)>,
    /// Pods to create: one entry each, the completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// For Jobs with `backoffLimitPerIndex`: the failures (counted, ignored) of the
    /// indexes to create that failed before (others start at none).
    pub index_failures: BTreeMap<i32, (i32, i32)>,
    /// The status once all that is done.
    pub status: JobStatus,
    /// The back-off record after the newly finished pods.
    pub backoff: backoff::Record,
    /// When to look at the Job again (back-off, deadline).
    pub requeue: Option<Duration>,
    /// Events to record.
    pub events: Vec<Event>,
}

/// Whether the Job has finished: `Complete` or `Failed` is True.
pub fn is_finished(status: Option<&JobStatus>) -> bool {
    condition(status, "Complete").is_some() || condition(status, "Failed").is_some()
}

/// The condition `type_` of `status` if it is True.
pub fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// When the Job finished (its `Complete` or `Failed` condition turned True).
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let st = job.status.as_ref();
    condition(st, "Complete")
        .or_else(|| condition(st, "Failed"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        })
}

/// Sets condition `type_` (kube's `ensureJobConditionStatus`): a new one only when
/// True, a change of status moves its transition time, a change of words alone only
/// its probe time.
fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    (reason, message): (&str, &str),
    now: Timestamp,
) {
    let t = Some(Time(now));
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.status = status.to_string();
            c.last_transition_time = t.clone();
            c.last_probe_time = t;
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
        } else if c.reason.as_deref() != Some(reason) || c.message.as_deref() != Some(message) {
            c.last_probe_time = t;
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
        }
        return;
    }
    if status == "True" {
        conds.push(JobCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_probe_time: t.clone(),
            last_transition_time: t,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
        });
    }
}

/// The completion index of a pod (its annotation), if it has a valid one.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(INDEX_KEY)
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// When a pod finished: its last container's end, else now.
fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let st = pod.status.as_ref();
    st.into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
        .unwrap_or(now)
}

/// The action of the first rule of `policy` a failed pod matches, with the message
/// kube gives a FailJob match (kube's `matchPodFailurePolicy`).
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<(String, String)> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let st = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            let statuses = st.into_iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            for c in statuses {
                if req.container_name.as_ref().is_some_and(|n| *n != c.name) {
                    continue;
                }
                let Some(code) = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                    .filter(|c| *c != 0)
                else {
                    continue;
                };
                let hit = match req.operator.as_str() {
                    "In" => req.values.contains(&code),
                    "NotIn" => !req.values.contains(&code),
                    _ => false,
                };
                if hit {
                    let msg = format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        c.name, rule.action
                    );
                    return Some((rule.action.clone(), msg));
                }
            }
        }
        for pat in rule.on_pod_conditions.iter().flatten() {
            let hit = st
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == pat.type_ && c.status == pat.status);
            if hit {
                let msg = format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                    pat.type_, rule.action
                );
                return Some((rule.action.clone(), msg));
            }
        }
    }
    None
}

/// The pod to create for `job` (with completion `index` for Indexed Jobs): the
/// template, the tracking finalizer, controlled by the Job, named `<job>-` (or
/// `<job>-<index>-`) plus the API server's random suffix.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let t = spec.template;
    let tmeta = t.metadata.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.to_string());
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut pod_spec = t.spec.unwrap_or_default();
    let name = job.name_any();
    let generate_name = match index {
        Some(ix) => {
            labels.insert(INDEX_KEY.to_string(), ix.to_string());
            annotations.insert(INDEX_KEY.to_string(), ix.to_string());
            if pod_spec.hostname.as_deref().unwrap_or("").is_empty() {
                pod_spec.hostname = Some(format!("{name}-{ix}"));
            }
            let env = EnvVar {
                name: INDEX_ENV.to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in pod_spec
                .containers
                .iter_mut()
                .chain(pod_spec.init_containers.iter_mut().flatten())
            {
                let envs = c.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == INDEX_ENV) {
                    envs.push(env.clone());
                }
            }
            format!("{name}-{ix}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// [`pod_for`], and for a Job with `backoffLimitPerIndex` the index's failures so far
/// in the pod's annotations (kube's `addIndexFailureCountAnnotation`).
pub fn pod_with_counts(job: &Job, index: Option<i32>, failures: &BTreeMap<i32, (i32, i32)>) -> Pod {
    let mut pod = pod_for(job, index);
    let per_index = job
        .spec
        .as_ref()
        .is_some_and(|s| s.backoff_limit_per_index.is_some());
    if let (true, Some(ix)) = (per_index, index) {
        let (counted, ignored) = failures.get(&ix).copied().unwrap_or((0, 0));
        let ann = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        ann.insert(INDEX_FAILURE_COUNT.to_string(), counted.to_string());
        if ignored > 0 {
            ann.insert(INDEX_IGNORED_FAILURE_COUNT.to_string(), ignored.to_string());
        }
    }
    pod
}

/// A pod annotation as a count: 0 when missing or not a count (kube's `parseInt32`).
fn count_annotation(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// The rule of `policy` the succeeded indexes `done` meet, as kube's message names
/// it (kube's `matchSuccessPolicy`): a rule with `succeededIndexes` is met when all
/// those indexes succeeded or, with `succeededCount`, that many of them; a rule with
/// only `succeededCount` when that many indexes succeeded.
pub fn match_success_policy(
    policy: &k8s_openapi::api::batch::v1::SuccessPolicy,
    completions: i32,
    done: &BTreeSet<i32>,
) -> Option<String> {
    if done.is_empty() {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let hit = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(ixs), count) => {
                let want = indexes::parse(ixs, completions);
                if want.is_empty() {
                    continue;
                }
                let have = want.intersection(done).count();
                have == want.len() || count.is_some_and(|c| have as i32 >= c)
            }
            (None, Some(c)) => done.len() as i32 >= c,
            (None, None) => false,
        };
        if hit {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

/// Whether container restarts of the active pods of an `OnFailure` Job are past its
/// backoff limit (kube's `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(spec: &JobSpec, active: &[&Pod], limit: i32) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = active
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Deletion order of active pods: unscheduled, then not running, then not ready, and
/// the newest first among equals (kube's `ActivePods` ordering).
fn deletion_rank(p: &Pod) -> (bool, bool, bool, Reverse<Option<Timestamp>>) {
    let scheduled = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    (
        scheduled,
        pod_phase(p) == "Running",
        pod_ready(p),
        Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

/// A pod being deleted that has not finished (kube's `FilterTerminatingPods`).
fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some() && !matches!(pod_phase(p), "Succeeded" | "Failed")
}

fn name_uid(p: &Pod) -> (String, String) {
    (p.name_any(), p.uid().unwrap_or_default())
}

/// Decides what to do with the Job (see the module documentation).
pub fn plan(inp: &Input) -> Plan {
    let job = inp.job;
    let now = inp.now;
    let spec = job.spec.clone().unwrap_or_default();
    let old = inp.status.clone();
    let mut out = Plan {
        backoff: inp.backoff.clone(),
        status: old.clone(),
        ..Default::default()
    };
    let tracked =
        |p: &&&Pod| has_finalizer(p) && !inp.stripped.contains(&p.uid().unwrap_or_default());

    // A Job another controller manages is left alone, its pods too (kube's
    // `isJobManagedByKubernetes`).
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != JOB_CONTROLLER_NAME)
    {
        return out;
    }

    // A finished Job, or one being deleted, only lets its pods go.
    if is_finished(Some(&old)) || job.metadata.deletion_timestamp.is_some() {
        out.strip = inp
            .pods
            .iter()
            .filter(tracked)
            .map(|p| name_uid(p))
            .collect();
        return out;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    // With a limit per index the Job-wide limit defaults to no limit.
    let backoff_limit = spec
        .backoff_limit
        .unwrap_or(if per_index_limit.is_some() {
            i32::MAX
        } else {
            6
        })
        .max(0);
    let suspended = spec.suspend == Some(true);
    // `podReplacementPolicy: Failed` (the default with a pod failure policy): a pod
    // being deleted is neither a failure nor replaced until it has failed.
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let completions = spec.completions;
    let c = completions.unwrap_or(0);
    let pod_failed = |p: &Pod| {
        let phase = pod_phase(p);
        phase == "Failed"
            || (!only_failed && p.metadata.deletion_timestamp.is_some() && phase != "Succeeded")
    };
    let mut conds = old.conditions.clone().unwrap_or_default();
    // The finish this Job is on its way to, if decided earlier.
    let mut finishing: Option<(&str, String, String)> = None;
    for (target, final_) in [
        ("FailureTarget", "Failed"),
        ("SuccessCriteriaMet", "Complete"),
    ] {
        if let Some(c) = condition(Some(&old), target) {
            finishing.get_or_insert((
                final_,
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ));
        }
    }

    // Newly finished pods, and the pods whose finalizer goes.
    let unc = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let unc_s: BTreeSet<String> = unc.succeeded.unwrap_or_default().into_iter().collect();
    let unc_f: BTreeSet<String> = unc.failed.unwrap_or_default().into_iter().collect();
    let action_of = |p: &Pod| {
        spec.pod_failure_policy
            .as_ref()
            .and_then(|pol| match_failure_policy(pol, p))
    };
    let valid_index = |p: &Pod| index_of(p).filter(|ix| *ix < c);
    // Indexes past their limit (kube's `calculateFailedIndexes`), and per index the
    // failed pod whose finalizer stays until its replacement exists, so that the
    // replacement can carry the index's failure count (kube's
    // `getPodsWithDelayedDeletionPerIndex`).
    let prev_done = if indexed {
        indexes::parse(old.completed_indexes.as_deref().unwrap_or(""), c)
    } else {
        BTreeSet::new()
    };
    let mut failed_ix: BTreeSet<i32> = BTreeSet::new();
    let mut delayed: BTreeMap<i32, &Pod> = BTreeMap::new();
    if let Some(limit) = per_index_limit {
        failed_ix = indexes::parse(old.failed_indexes.as_deref().unwrap_or(""), c);
        for p in inp.pods.iter().copied().filter(|p| has_finalizer(p)) {
            let Some(ix) = valid_index(p).filter(|_| pod_failed(p)) else {
                continue;
            };
            let action = action_of(p).map(|(a, _)| a);
            if action.as_deref() == Some("FailIndex")
                || (action.as_deref() != Some("Ignore")
                    && count_annotation(p, INDEX_FAILURE_COUNT) >= limit)
            {
                failed_ix.insert(ix);
            }
        }
        let done_now: BTreeSet<i32> = prev_done
            .iter()
            .copied()
            .chain(
                inp.pods
                    .iter()
                    .filter(|p| has_finalizer(p) && pod_phase(p) == "Succeeded")
                    .filter_map(|p| valid_index(p)),
            )
            .collect();
        let active_ix: BTreeSet<i32> = inp
            .pods
            .iter()
            .filter(|p| pod_active(p))
            .filter_map(|p| index_of(p))
            .collect();
        for p in inp
            .pods
            .iter()
            .filter(tracked)
            .copied()
            .filter(|p| pod_failed(p))
        {
            let Some(ix) = valid_index(p) else { continue };
            if done_now.contains(&ix) || failed_ix.contains(&ix) || active_ix.contains(&ix) {
                continue;
            }
            let absolute = |q: &Pod| {
                count_annotation(q, INDEX_FAILURE_COUNT)
                    + count_annotation(q, INDEX_IGNORED_FAILURE_COUNT)
            };
            let newer = delayed.get(&ix).is_none_or(|q| {
                absolute(q) <= absolute(p) && finish_time(p, now) >= finish_time(q, now)
            });
            if newer {
                delayed.insert(ix, p);
            }
        }
    }

    let mut new_s: Vec<&Pod> = Vec::new();
    let mut new_f: Vec<&Pod> = Vec::new();
    let mut fail_job: Option<String> = None;
    for p in inp.pods.iter().filter(tracked) {
        let uid = p.uid().unwrap_or_default();
        let phase = pod_phase(p);
        let counted = unc_s.contains(&uid) || unc_f.contains(&uid);
        let is_delayed = finishing.is_none()
            && valid_index(p)
                .is_some_and(|ix| delayed.get(&ix).is_some_and(|d| d.uid() == p.uid()));
        let strip = if counted {
            true
        } else if phase == "Succeeded" {
            new_s.push(p);
            true
        } else if is_delayed {
            false
        } else if phase == "Failed" {
            match action_of(p) {
                Some((a, _)) if a == "Ignore" => {}
                Some((a, msg)) if a == "FailJob" => {
                    fail_job.get_or_insert(msg);
                    new_f.push(p);
                }
                _ => new_f.push(p),
            }
            true
        } else if p.metadata.deletion_timestamp.is_some() {
            // A deleted pod that never finished counts as a failure (it may never get
            // the chance to), unless the controller deleted it to suspend or finish;
            // with `podReplacementPolicy: Failed` it counts once it has failed.
            if only_failed && finishing.is_none() && !suspended {
                false
            } else {
                if finishing.is_none() && !suspended {
                    new_f.push(p);
                }
                true
            }
        } else {
            false
        };
        if strip {
            out.strip.push(name_uid(p));
        }
    }

    // Counts, as they will be once the new pods are recorded and flushed.
    let mut done = BTreeSet::new();
    let succeeded = if indexed {
        done = prev_done.clone();
        done.extend(
            new_s
                .iter()
                .filter_map(|p| index_of(p))
                .filter(|ix| *ix < c),
        );
        done.len() as i32
    } else {
        old.succeeded.unwrap_or(0) + (unc_s.len() + new_s.len()) as i32
    };
    let failed = old.failed.unwrap_or(0) + (unc_f.len() + new_f.len()) as i32;
    if !new_s.is_empty() || !new_f.is_empty() {
        let mut rec = old.clone();
        let mut u = UncountedTerminatedPods::default();
        let s: Vec<String> = unc_s
            .iter()
            .cloned()
            .chain(new_s.iter().map(|p| p.uid().unwrap_or_default()))
            .collect();
        let f: Vec<String> = unc_f
            .iter()
            .cloned()
            .chain(new_f.iter().map(|p| p.uid().unwrap_or_default()))
            .collect();
        u.succeeded = (!s.is_empty()).then_some(s);
        u.failed = (!f.is_empty()).then_some(f);
        rec.uncounted_terminated_pods = Some(u);
        if indexed {
            rec.completed_indexes = Some(indexes::format(&done));
            rec.succeeded = Some(succeeded);
        }
        if per_index_limit.is_some() {
            rec.failed_indexes = Some(indexes::format(&failed_ix));
        }
        out.record = Some(rec);
    }
    out.backoff = inp.backoff.update(
        &new_s
            .iter()
            .map(|p| finish_time(p, now))
            .collect::<Vec<_>>(),
        &new_f
            .iter()
            .map(|p| finish_time(p, now))
            .collect::<Vec<_>>(),
    );

    let active: Vec<&Pod> = inp.pods.iter().copied().filter(|p| pod_active(p)).collect();
    let mut terminating = inp.pods.iter().filter(|p| is_terminating(p)).count() as i32;

    // Start, suspension and resumption.
    let mut start_time = old.start_time.clone();
    if suspended {
        set_condition(
            &mut conds,
            "Suspended",
            "True",
            ("JobSuspended", "Job suspended"),
            now,
        );
        if condition(Some(&old), "Suspended").is_none() {
            out.events
                .push(event("Normal", "Suspended", "Job suspended"));
        }
    } else {
        if condition(Some(&old), "Suspended").is_some() {
            set_condition(
                &mut conds,
                "Suspended",
                "False",
                ("JobResumed", "Job resumed"),
                now,
            );
            out.events.push(event("Normal", "Resumed", "Job resumed"));
            // The active deadline counts from the resumption.
            start_time = Some(Time(now));
        }
        start_time.get_or_insert(Time(now));
    }

    // Whether the Job fails or succeeds now.
    if finishing.is_none() {
        let deadline = spec.active_deadline_seconds.filter(|_| !suspended);
        let past_deadline = match (deadline, &start_time) {
            (Some(ads), Some(st)) => now.as_second() - st.0.as_second() >= ads,
            _ => false,
        };
        let failure = if let Some(msg) = fail_job {
            Some(("PodFailurePolicy".to_string(), msg))
        } else if failed > backoff_limit
            || past_backoff_limit_on_failure(&spec, &active, backoff_limit)
        {
            Some((REASON_BACKOFF.0.to_string(), REASON_BACKOFF.1.to_string()))
        } else if past_deadline {
            Some((REASON_DEADLINE.0.to_string(), REASON_DEADLINE.1.to_string()))
        } else if per_index_limit.is_some()
            && spec
                .max_failed_indexes
                .is_some_and(|m| failed_ix.len() as i32 > m)
        {
            Some((
                REASON_MAX_FAILED_INDEXES.0.to_string(),
                REASON_MAX_FAILED_INDEXES.1.to_string(),
            ))
        } else if !failed_ix.is_empty() && (failed_ix.len() + done.len()) as i32 >= c {
            Some((
                REASON_FAILED_INDEXES.0.to_string(),
                REASON_FAILED_INDEXES.1.to_string(),
            ))
        } else {
            None
        };
        let by_policy = spec
            .success_policy
            .as_ref()
            .filter(|_| indexed)
            .and_then(|pol| match_success_policy(pol, c, &done));
        let complete = match (indexed, completions) {
            (true, c) => succeeded >= c.unwrap_or(0),
            (false, Some(c)) => succeeded >= c,
            // A work queue: done once one succeeded and the others have stopped.
            (false, None) => succeeded > 0 && active.is_empty(),
        };
        if let Some((reason, msg)) = failure {
            set_condition(&mut conds, "FailureTarget", "True", (&reason, &msg), now);
            finishing = Some(("Failed", reason, msg));
        } else if let Some(msg) = by_policy {
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                (REASON_SUCCESS_POLICY, &msg),
                now,
            );
            finishing = Some(("Complete", REASON_SUCCESS_POLICY.to_string(), msg));
        } else if complete {
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                REASON_COMPLETIONS,
                now,
            );
            finishing = Some((
                "Complete",
                REASON_COMPLETIONS.0.to_string(),
                REASON_COMPLETIONS.1.to_string(),
            ));
        }
    }

    // Pods to delete and create.
    let mut kept = active.len() as i32;
    if finishing.is_some() || suspended {
        out.delete = active.iter().map(|p| name_uid(p)).collect();
        kept = 0;
    } else if inp.may_manage {
        let mut victims: Vec<&Pod> = Vec::new();
        let mut missing: Vec<Option<i32>>;
        if indexed {
            let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
            for p in &active {
                // A failed index's pod goes too (kube terminates it at once).
                match index_of(p)
                    .filter(|ix| *ix < c && !done.contains(ix) && !failed_ix.contains(ix))
                {
                    Some(ix) => by_index.entry(ix).or_default().push(p),
                    None => victims.push(p),
                }
            }
            // One pod per index: keep the best of duplicates.
            for pods in by_index.values_mut() {
                pods.sort_by_key(|p| Reverse(deletion_rank(p)));
                victims.extend(pods.drain(1..));
            }
            let want = parallelism
                .min(c - done.len() as i32 - failed_ix.len() as i32)
                .max(0);
            let mut have: Vec<i32> = by_index.keys().copied().collect();
            while have.len() as i32 > want {
                if let Some(ix) = have.pop() {
                    victims.extend(by_index.remove(&ix).unwrap_or_default());
                }
            }
            // With `podReplacementPolicy: Failed` an index whose pod is terminating
            // waits for it (kube's `firstPendingIndexes`).
            let terminating_ix: BTreeSet<i32> = inp
                .pods
                .iter()
                .filter(|p| only_failed && is_terminating(p))
                .filter_map(|p| index_of(p))
                .collect();
            let in_flight = have.len() + terminating_ix.len();
            let free = (0..c).filter(|ix| {
                !done.contains(ix)
                    && !failed_ix.contains(ix)
                    && !by_index.contains_key(ix)
                    && !terminating_ix.contains(ix)
            });
            missing = free
                .take((want - in_flight as i32).max(0) as usize)
                .map(Some)
                .collect();
        } else {
            let want = match completions {
                Some(c) => parallelism.min(c - succeeded).max(0),
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
            };
            let mut ranked = active.clone();
            ranked.sort_by_key(|p| deletion_rank(p));
            let extra = (active.len() as i32 - want).max(0) as usize;
            victims.extend(ranked.into_iter().take(extra));
            // With `podReplacementPolicy: Failed` terminating pods still hold their place.
            let held = if only_failed { terminating } else { 0 };
            missing = vec![None; (want - active.len() as i32 - held).max(0) as usize];
        }
        victims.truncate(MAX_PER_SYNC);
        out.delete = victims.iter().map(|p| name_uid(p)).collect();
        kept -= out.delete.len() as i32;
        if per_index_limit.is_some() {
            // Each index backs off on its own failures (kube's
            // `getPodCreationInfoForIndependentIndexes`).
            let mut wait: Option<Duration> = None;
            missing.retain(|ix| {
                let Some(prev) = ix.and_then(|ix| delayed.get(&ix)) else {
                    return true;
                };
                let (counted, ignored) = (
                    count_annotation(prev, INDEX_FAILURE_COUNT),
                    count_annotation(prev, INDEX_IGNORED_FAILURE_COUNT),
                );
                let record = backoff::Record {
                    failures_after_last_success: (counted + ignored + 1) as u32,
                    last_failure: Some(finish_time(prev, now)),
                };
                let left = record.remaining(now);
                if !left.is_zero() {
                    wait = Some(wait.map_or(left, |w| w.min(left)));
                    return false;
                }
                let ignored_now = action_of(prev).is_some_and(|(a, _)| a == "Ignore");
                let counts = if ignored_now {
                    (counted, ignored + 1)
                } else {
                    (counted + 1, ignored)
                };
                out.index_failures.insert(ix.unwrap_or_default(), counts);
                true
            });
            missing.truncate(MAX_PER_SYNC);
            out.create = missing;
            out.requeue = wait;
        } else if !missing.is_empty() {
            let wait = out.backoff.remaining(now);
            if wait.is_zero() {
                missing.truncate(MAX_PER_SYNC);
                out.create = missing;
            } else {
                out.requeue = Some(wait);
            }
        }
    }
    terminating += out.delete.len() as i32;
    let active_after = kept + out.create.len() as i32;

    // The terminal condition, once no pod of the Job runs any more.
    let mut completion_time = old.completion_time.clone();
    if let Some((final_, reason, msg)) = &finishing {
        if active_after == 0 && terminating == 0 {
            set_condition(&mut conds, final_, "True", (reason, msg), now);
            if *final_ == "Complete" {
                completion_time = Some(Time(now));
                out.events
                    .push(event("Normal", "Completed", "Job completed"));
            } else {
                out.events.push(event("Warning", reason, msg));
            }
        }
    } else if !suspended {
        if let (Some(ads), Some(st)) = (spec.active_deadline_seconds, &start_time) {
            let left = (st.0.as_second() + ads - now.as_second()).max(1) as u64;
            let left = Duration::from_secs(left);
            out.requeue = Some(out.requeue.map_or(left, |r| r.min(left)));
        }
    }

    let ready = active
        .iter()
        .filter(|p| pod_ready(p))
        .filter(|p| !out.delete.iter().any(|(n, _)| *n == p.name_any()))
        .count() as i32;
    // Zero counts are left out, as kube's `omitempty` fields are (ready and terminating
    // are pointers there, so they show 0).
    let nonzero = |n: i32| (n != 0).then_some(n);
    out.status = JobStatus {
        active: nonzero(active_after),
        ready: Some(ready),
        terminating: Some(terminating),
        succeeded: nonzero(succeeded),
        failed: nonzero(failed),
        completed_indexes: Some(indexes::format(&done)).filter(|s| indexed && !s.is_empty()),
        failed_indexes: if per_index_limit.is_some() {
            Some(indexes::format(&failed_ix))
        } else {
            old.failed_indexes.clone()
        },
        uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        start_time,
        completion_time,
        conditions: (!conds.is_empty()).then_some(conds),
    };
    out
}

fn event(type_: &'static str, reason: &str, message: &str) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests;
