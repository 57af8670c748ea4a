//! Unit tests of the Job controller's decisions.

use super::*;
use serde_json::{json, Value};

const NOW: &str = "2026-01-01T00:01:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("now")
}

fn job(spec: Value) -> Job {
    let mut s = json!({"template": {"metadata": {"labels": {"job-name": "pi"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
        "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed"});
    for (k, v) in spec.as_object().expect("spec").iter() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": s}))
    .expect("job")
}

/// A pod of the Job: `phase`, tracked by the finalizer, at completion `index`.
fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
            "finalizers": [TRACKING_FINALIZER],
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                "uid": "job-uid", "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase}});
    if let Some(ix) = index {
        p["metadata"]["annotations"] = json!({INDEX_KEY: ix.to_string()});
    }
    serde_json::from_value(p).expect("pod")
}

fn run(job: &Job, status: &JobStatus, pods: &[Pod], record: &backoff::Record) -> Plan {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(&Input {
        job,
        status,
        pods: &refs,
        stripped: &HashSet::new(),
        backoff: record,
        may_manage: true,
        now: now(),
    })
}

fn cond_types(st: &JobStatus) -> Vec<(String, String)> {
    st.conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn a_new_job_creates_parallelism_pods_bounded_by_completions() {
    let j = job(json!({"completions": 3, "parallelism": 2}));
    let p = run(&j, &JobStatus::default(), &[], &Default::default());
    assert_eq!(p.create, vec![None, None]);
    assert!(p.record.is_none() && p.delete.is_empty() && p.strip.is_empty());
    assert_eq!(p.status.active, Some(2));
    assert_eq!(p.status.start_time, Some(Time(now())));
    // Two succeeded: one more to go, however large parallelism is.
    let st = JobStatus {
        succeeded: Some(2),
        ..Default::default()
    };
    let j = job(json!({"completions": 3, "parallelism": 5}));
    let p = run(&j, &st, &[], &Default::default());
    assert_eq!(p.create, vec![None]);
}

#[test]
fn finished_pods_are_recorded_then_stripped_then_counted() {
    let j = job(json!({"completions": 2, "parallelism": 2}));
    let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
    let p = run(&j, &JobStatus::default(), &pods, &Default::default());
    let rec = p.record.expect("a record of the new pod");
    assert_eq!(
        rec.uncounted_terminated_pods
            .and_then(|u| u.succeeded)
            .unwrap_or_default(),
        ["u-a"]
    );
    assert_eq!(p.strip, [("a".to_string(), "u-a".to_string())]);
    assert!(p.create.is_empty(), "one succeeded, one still runs");
    assert_eq!(p.status.succeeded, Some(1));
    assert_eq!(p.status.active, Some(1));
    assert_eq!(
        p.status.uncounted_terminated_pods,
        Some(UncountedTerminatedPods::default())
    );
    // A pod already recorded as uncounted is not recorded again, only flushed.
    let st = JobStatus {
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: Some(vec!["u-a".into()]),
            failed: None,
        }),
        ..Default::default()
    };
    let p = run(&j, &st, &pods, &Default::default());
    assert!(p.record.is_none());
    assert_eq!(p.status.succeeded, Some(1));
}

#[test]
fn the_last_success_meets_the_criteria_then_completes() {
    let j = job(json!({"completions": 1}));
    let p = run(
        &j,
        &JobStatus::default(),
        &[pod("a", "Succeeded", None)],
        &Default::default(),
    );
    assert_eq!(
        cond_types(&p.status),
        [
            (
                "SuccessCriteriaMet".to_string(),
                "CompletionsReached".to_string()
            ),
            ("Complete".to_string(), "CompletionsReached".to_string()),
        ]
    );
    assert_eq!(p.status.completion_time, Some(Time(now())));
    assert!(p.events.iter().any(|e| e.reason == "Completed"));
    // While a pod still runs, only SuccessCriteriaMet; the pod is deleted.
    let j = job(json!({"completions": 1, "parallelism": 2}));
    let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
    let p = run(&j, &JobStatus::default(), &pods, &Default::default());
    assert_eq!(cond_types(&p.status).len(), 1);
    assert_eq!(p.delete, [("b".to_string(), "u-b".to_string())]);
    assert_eq!(p.status.terminating, Some(1));
    assert!(p.status.completion_time.is_none());
}

#[test]
fn failures_back_off_and_past_the_limit_fail_the_job() {
    let j = job(json!({"backoffLimit": 2}));
    let p = run(
        &j,
        &JobStatus::default(),
        &[pod("a", "Failed", None)],
        &Default::default(),
    );
    assert_eq!(p.status.failed, Some(1));
    assert!(
        p.create.is_empty(),
        "the replacement waits for the back-off"
    );
    assert_eq!(p.requeue, Some(Duration::from_secs(10)));
    assert_eq!(p.backoff.failures_after_last_success, 1);
    // After the back-off, the replacement.
    let st = JobStatus {
        failed: Some(1),
        ..Default::default()
    };
    let later = backoff::Record {
        failures_after_last_success: 1,
        last_failure: Some(now() - k8s_openapi::jiff::SignedDuration::from_secs(11)),
    };
    assert_eq!(run(&j, &st, &[], &later).create, vec![None]);
    // The third failure is past backoffLimit 2.
    let st = JobStatus {
        failed: Some(2),
        ..Default::default()
    };
    let p = run(&j, &st, &[pod("c", "Failed", None)], &later);
    assert_eq!(
        cond_types(&p.status),
        [
            (
                "FailureTarget".to_string(),
                "BackoffLimitExceeded".to_string()
            ),
            ("Failed".to_string(), "BackoffLimitExceeded".to_string()),
        ]
    );
    let failed = p.status.conditions.as_ref().expect("conditions")[1].clone();
    assert_eq!(failed.message.as_deref(), Some(REASON_BACKOFF.1));
    assert!(p.create.is_empty());
}

#[test]
fn the_active_deadline_fails_the_job_and_deletes_its_pods() {
    let j = job(json!({"activeDeadlineSeconds": 30}));
    let st = JobStatus {
        start_time: Some(Time("2026-01-01T00:00:00Z".parse().expect("t"))),
        ..Default::default()
    };
    let p = run(&j, &st, &[pod("a", "Running", None)], &Default::default());
    assert_eq!(
        cond_types(&p.status),
        [("FailureTarget".to_string(), "DeadlineExceeded".to_string())]
    );
    assert_eq!(p.delete.len(), 1);
    // Not yet past: requeued for the deadline.
    let j = job(json!({"activeDeadlineSeconds": 100}));
    let p = run(&j, &st, &[pod("a", "Running", None)], &Default::default());
    assert!(p.status.conditions.is_none());
    assert_eq!(p.requeue, Some(Duration::from_secs(40)));
}

#[test]
fn indexed_jobs_create_the_missing_indexes_and_report_completed_ones() {
    let j = job(json!({"completionMode": "Indexed", "completions": 6, "parallelism": 3}));
    let st = JobStatus {
        completed_indexes: Some("0,2".into()),
        succeeded: Some(2),
        ..Default::default()
    };
    let pods = [
        pod("a", "Running", Some(1)),
        pod("b", "Running", Some(1)),
        pod("c", "Succeeded", Some(3)),
        pod("d", "Running", Some(9)),
    ];
    let p = run(&j, &st, &pods, &Default::default());
    // The duplicate of 1 and the out-of-range 9 go; 4 and 5 come.
    let mut deleted: Vec<String> = p.delete.iter().map(|(n, _)| n.clone()).collect();
    deleted.sort();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&"d".to_string()));
    assert_eq!(p.create, vec![Some(4), Some(5)]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0,2,3"));
    assert_eq!(p.status.succeeded, Some(3));
    assert_eq!(p.status.active, Some(3));
}

#[test]
fn indexed_pods_carry_their_index() {
    let j = job(json!({"completionMode": "Indexed", "completions": 3}));
    let pod = pod_for(&j, Some(2));
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
    assert_eq!(pod.labels().get(INDEX_KEY).map(String::as_str), Some("2"));
    assert_eq!(
        pod.annotations().get(INDEX_KEY).map(String::as_str),
        Some("2")
    );
    assert_eq!(pod.labels().get("job-name").map(String::as_str), Some("pi"));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert_eq!(env[0].name, INDEX_ENV);
    assert_eq!(
        pod.metadata.finalizers,
        Some(vec![TRACKING_FINALIZER.to_string()])
    );
    let owner = &pod.metadata.owner_references.expect("owner")[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Job", Some(true), Some(true))
    );
    let plain = pod_for(&job(json!({})), None);
    assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
    assert!(plain.spec.expect("spec").hostname.is_none());
}

#[test]
fn a_suspended_job_deletes_its_pods_and_a_resumed_one_restarts_the_clock() {
    let j = job(json!({"suspend": true, "parallelism": 2, "completions": 4}));
    let pods = [pod("a", "Running", None)];
    let p = run(&j, &JobStatus::default(), &pods, &Default::default());
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    assert!(p.status.start_time.is_none());
    assert_eq!(
        cond_types(&p.status),
        [("Suspended".to_string(), "JobSuspended".to_string())]
    );
    let resumed = job(json!({"parallelism": 2, "completions": 4}));
    let p2 = run(&resumed, &p.status, &[], &Default::default());
    assert_eq!(p2.create.len(), 2);
    assert_eq!(p2.status.start_time, Some(Time(now())));
    let c = &p2.status.conditions.expect("conditions")[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
}

#[test]
fn pod_failure_policy_fails_the_job_or_ignores_the_failure() {
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]});
    let j = job(json!({"podFailurePolicy": policy, "backoffLimit": 0}));
    let mut failed = pod("a", "Failed", None);
    failed.status = Some(
        serde_json::from_value(
            json!({"phase": "Failed", "containerStatuses": [{"name": "c",
            "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 42}}}]}),
        )
        .expect("status"),
    );
    let p = run(&j, &JobStatus::default(), &[failed], &Default::default());
    let c = &p.status.conditions.clone().expect("conditions")[0];
    assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        c.message.as_deref(),
        Some("Container c for pod default/a failed with exit code 42 matching FailJob rule at index 1")
    );
    let mut disrupted = pod("b", "Failed", None);
    disrupted.status = Some(
        serde_json::from_value(json!({"phase": "Failed", "conditions": [
            {"type": "DisruptionTarget", "status": "True"}]}))
        .expect("status"),
    );
    let p = run(&j, &JobStatus::default(), &[disrupted], &Default::default());
    assert!(p.record.is_none(), "an ignored failure is not counted");
    assert_eq!(p.strip.len(), 1);
    assert_eq!(p.status.failed, None);
    assert_eq!(p.create, vec![None], "and does not back off");
}

#[test]
fn a_finished_job_only_lets_its_pods_go() {
    let j = job(json!({}));
    let st = JobStatus {
        conditions: Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let p = run(&j, &st, &[pod("a", "Running", None)], &Default::default());
    assert_eq!(p.strip.len(), 1);
    assert!(p.create.is_empty() && p.delete.is_empty() && p.record.is_none());
    assert_eq!(p.status, st);
}

fn indexed(extra: Value) -> Job {
    let mut spec = json!({"completionMode": "Indexed", "completions": 4, "parallelism": 4});
    for (k, v) in extra.as_object().expect("extra").iter() {
        spec[k] = v.clone();
    }
    job(spec)
}

fn with_annotation(mut p: Pod, key: &str, value: &str) -> Pod {
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
    p
}

#[test]
fn a_success_policy_rule_completes_the_job_early() {
    let rules = json!({"rules": [{"succeededIndexes": "0,1"}, {"succeededCount": 3}]});
    let j = indexed(json!({"successPolicy": rules}));
    // Index 0 done, 1 succeeds now: rule 0 is met; the pods left go, then Complete.
    let st = JobStatus {
        completed_indexes: Some("0".into()),
        succeeded: Some(1),
        ..Default::default()
    };
    let pods = [
        pod("b", "Succeeded", Some(1)),
        pod("c", "Running", Some(2)),
        pod("d", "Running", Some(3)),
    ];
    let p = run(&j, &st, &pods, &Default::default());
    let met = &p.status.conditions.clone().expect("conditions")[0];
    assert_eq!(met.type_, "SuccessCriteriaMet");
    assert_eq!(met.reason.as_deref(), Some(REASON_SUCCESS_POLICY));
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 0"));
    assert_eq!(p.delete.len(), 2);
    assert!(p.create.is_empty());
    assert!(
        condition(Some(&p.status), "Complete").is_none(),
        "pods still terminate"
    );
    // Once they are gone: Complete, with the rule's words.
    let p = run(&j, &p.status, &[], &Default::default());
    let done = condition(Some(&p.status), "Complete").expect("complete");
    assert_eq!(done.reason.as_deref(), Some(REASON_SUCCESS_POLICY));
    assert_eq!(done.message.as_deref(), Some("Matched rules at index 0"));
    assert!(p.status.completion_time.is_some());
    // A count alone: three indexes, whichever.
    let set = |s: &[i32]| s.iter().copied().collect::<BTreeSet<i32>>();
    let pol: k8s_openapi::api::batch::v1::SuccessPolicy =
        serde_json::from_value(rules).expect("policy");
    assert_eq!(match_success_policy(&pol, 4, &set(&[0])), None);
    assert_eq!(
        match_success_policy(&pol, 4, &set(&[1, 2, 3])),
        Some("Matched rules at index 1".into())
    );
    let counted: k8s_openapi::api::batch::v1::SuccessPolicy = serde_json::from_value(
        json!({"rules": [{"succeededIndexes": "0-3", "succeededCount": 2}]}),
    )
    .expect("policy");
    assert!(match_success_policy(&counted, 4, &set(&[3])).is_none());
    assert!(match_success_policy(&counted, 4, &set(&[1, 3])).is_some());
}

#[test]
fn an_index_past_its_backoff_limit_fails_alone() {
    let j = indexed(json!({"backoffLimitPerIndex": 1, "parallelism": 2, "completions": 3}));
    // Index 0's first failure: its pod keeps the finalizer until the replacement
    // (which backs off 10 s) exists, and the replacement counts one failure.
    let first = pod("a0", "Failed", Some(0));
    let ok = pod("b1", "Running", Some(1));
    let p = run(
        &j,
        &JobStatus::default(),
        &[first.clone(), ok.clone()],
        &Default::default(),
    );
    assert!(
        p.strip.is_empty(),
        "the failed pod waits for its replacement"
    );
    assert!(p.create.is_empty(), "the index backs off");
    assert_eq!(p.requeue, Some(Duration::from_secs(10)));
    assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
    // 11 s later the replacement comes, with the count.
    let mut late = first.clone();
    late.status = Some(
        serde_json::from_value(
            json!({"phase": "Failed", "containerStatuses": [{"name": "c",
            "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:49Z"}}}]}),
        )
        .expect("status"),
    );
    let p = run(
        &j,
        &JobStatus::default(),
        &[late.clone(), ok.clone()],
        &Default::default(),
    );
    assert_eq!(p.create, vec![Some(0)]);
    assert_eq!(p.index_failures.get(&0), Some(&(1, 0)));
    let made = pod_with_counts(&j, Some(0), &p.index_failures);
    assert_eq!(
        made.annotations()
            .get(INDEX_FAILURE_COUNT)
            .map(String::as_str),
        Some("1")
    );
    // Once the replacement runs, the first failure is counted and let go.
    let second = with_annotation(pod("a0-2", "Running", Some(0)), INDEX_FAILURE_COUNT, "1");
    let p = run(
        &j,
        &JobStatus::default(),
        &[late, ok.clone(), second],
        &Default::default(),
    );
    assert_eq!(p.strip.len(), 1);
    assert_eq!(p.status.failed, Some(1));
    // The replacement fails too: past the limit, the index fails, the others go on.
    let second = with_annotation(pod("a0-2", "Failed", Some(0)), INDEX_FAILURE_COUNT, "1");
    let st = JobStatus {
        failed: Some(1),
        ..Default::default()
    };
    let p = run(&j, &st, &[second, ok], &Default::default());
    assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.failed, Some(2));
    assert_eq!(
        p.create,
        vec![Some(2)],
        "index 2 starts, index 0 is not retried"
    );
    assert!(condition(Some(&p.status), "FailureTarget").is_none());
    // When every index finished, some failed: FailedIndexes.
    let st = JobStatus {
        failed_indexes: Some("0".into()),
        completed_indexes: Some("1,2".into()),
        succeeded: Some(2),
        failed: Some(2),
        ..Default::default()
    };
    let p = run(&j, &st, &[], &Default::default());
    let f = condition(Some(&p.status), "Failed").expect("failed");
    assert_eq!(f.reason.as_deref(), Some(REASON_FAILED_INDEXES.0));
    assert_eq!(f.message.as_deref(), Some(REASON_FAILED_INDEXES.1));
}

#[test]
fn too_many_failed_indexes_or_fail_index_fail_the_job() {
    let policy = json!({"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]});
    let j = indexed(
        json!({"backoffLimitPerIndex": 5, "maxFailedIndexes": 0, "podFailurePolicy": policy}),
    );
    let mut failed = pod("a", "Failed", Some(2));
    failed.status = Some(
        serde_json::from_value(
            json!({"phase": "Failed", "containerStatuses": [{"name": "c",
            "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 3}}}]}),
        )
        .expect("status"),
    );
    let p = run(
        &j,
        &JobStatus::default(),
        &[failed, pod("b", "Running", Some(0))],
        &Default::default(),
    );
    assert_eq!(p.status.failed_indexes.as_deref(), Some("2"));
    let t = condition(Some(&p.status), "FailureTarget").expect("failure target");
    assert_eq!(t.reason.as_deref(), Some(REASON_MAX_FAILED_INDEXES.0));
    assert_eq!(t.message.as_deref(), Some(REASON_MAX_FAILED_INDEXES.1));
    assert_eq!(p.delete.len(), 1, "the running pod goes");
    assert!(
        condition(Some(&p.status), "Failed").is_none(),
        "not before it is gone"
    );
}

#[test]
fn replacement_policy_failed_waits_for_terminating_pods() {
    let mut going = pod("a", "Running", None);
    going.metadata.deletion_timestamp = Some(Time(now()));
    // TerminatingOrFailed (the default): the deleted pod is a failure, replaced at once.
    let j = job(json!({"podReplacementPolicy": "TerminatingOrFailed", "backoffLimit": 6}));
    let p = run(
        &j,
        &JobStatus::default(),
        &[going.clone()],
        &Default::default(),
    );
    assert_eq!(p.status.failed, Some(1));
    assert_eq!(p.status.terminating, Some(1));
    // Failed: it is neither counted nor replaced while it terminates...
    let j = job(json!({"podReplacementPolicy": "Failed"}));
    let p = run(
        &j,
        &JobStatus::default(),
        &[going.clone()],
        &Default::default(),
    );
    assert_eq!(p.status.failed, None);
    assert!(p.strip.is_empty() && p.create.is_empty());
    assert_eq!(p.status.terminating, Some(1));
    // ...and once it failed it is, after the back-off.
    let mut gone = going;
    gone.status = Some(serde_json::from_value(json!({"phase": "Failed"})).expect("status"));
    let p = run(&j, &JobStatus::default(), &[gone], &Default::default());
    assert_eq!(p.status.failed, Some(1));
    assert_eq!(p.status.terminating, Some(0));
}

#[test]
fn a_job_managed_elsewhere_is_left_alone() {
    let j = job(json!({"managedBy": "example.com/batch-controller"}));
    let p = run(
        &j,
        &JobStatus::default(),
        &[pod("a", "Succeeded", None)],
        &Default::default(),
    );
    assert!(p.create.is_empty() && p.strip.is_empty() && p.record.is_none());
    assert_eq!(p.status, JobStatus::default());
    let ours = job(json!({"managedBy": JOB_CONTROLLER_NAME}));
    assert_eq!(
        run(&ours, &JobStatus::default(), &[], &Default::default()).create,
        vec![None]
    );
}
