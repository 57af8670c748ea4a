//! Integration tests of the Job and TTL-after-finished controllers against the real API
//! server (in-process). No kubelet runs: the test sets the pods' phases through the
//! status subresource, as a kubelet would.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

async fn start_jobs() -> Cluster {
    start_these_controllers(
        Duration::from_secs(40),
        &["job", "ttl-after-finished", "garbage-collector"],
    )
    .await
}

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut s = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name}, "spec": s}))
    .expect("job")
}

/// The Job's pods that still run (no phase set by the test, not being deleted).
async fn running(client: &Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|ph| ph == "Pending")
        })
        .collect()
}

/// Waits for `n` running pods of the Job.
async fn wait_running(client: &Client, job: &str, n: usize) -> Vec<Pod> {
    eventually(20, &format!("{n} running pods of {job}"), || async {
        let pods = running(client, job).await;
        (pods.len() == n).then_some(pods)
    })
    .await
}

/// Plays the kubelet: the pod finished in `phase`.
async fn finish(client: &Client, pod: &Pod, phase: &str, exit_code: i32) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let patch = json!({"status": {"phase": phase, "containerStatuses": [{"name": "c",
        "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code,
            "reason": if exit_code == 0 { "Completed" } else { "Error" }}}}]}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .expect("pod status");
}

/// Waits for the Job's condition `type_` to be True; the Job then.
async fn wait_condition(client: &Client, name: &str, type_: &str, secs: u64) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    eventually(
        secs,
        &format!("condition {type_} of job {name}"),
        || async {
            let j = jobs.get(name).await.ok()?;
            let has = j
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True");
            has.then_some(j)
        },
    )
    .await
}

fn condition_words(job: &Job, type_: &str) -> (String, String) {
    let c = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .expect("condition");
    (
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// Waits until no pod of the Job keeps the tracking finalizer.
async fn wait_released(client: &Client, job: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(20, "finalizers removed", || async {
        let l = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .ok()?;
        l.items
            .iter()
            .all(|p| !p.finalizers().iter().any(|f| f == TRACKING))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_three_completions_two_at_a_time_completes() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(
            &PostParams::default(),
            &job("pi", json!({"completions": 3, "parallelism": 2})),
        )
        .await
        .expect("create job");
    // The API server selects the Job's own pods by its uid.
    let uid = created.uid().expect("uid");
    let selector = created.spec.as_ref().and_then(|s| s.selector.clone());
    assert_eq!(
        selector.and_then(|s| s.match_labels),
        Some(
            [(
                "batch.kubernetes.io/controller-uid".to_string(),
                uid.clone()
            )]
            .into()
        )
    );

    let first = wait_running(&client, "pi", 2).await;
    for p in &first {
        assert!(p.name_any().starts_with("pi-") && p.name_any().len() == "pi-".len() + 5);
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid.as_str()),
            ("controller-uid", uid.as_str()),
            ("batch.kubernetes.io/job-name", "pi"),
            ("job-name", "pi"),
        ] {
            assert_eq!(p.labels().get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(p.finalizers().iter().any(|f| f == TRACKING));
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.uid, uid);
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    for p in &first {
        finish(&client, p, "Succeeded", 0).await;
    }
    // One more, and no more than that.
    let third = wait_running(&client, "pi", 1).await;
    finish(&client, &third[0], "Succeeded", 0).await;

    let done = wait_condition(&client, "pi", "Complete", 20).await;
    let st = done.status.clone().expect("status");
    assert_eq!(st.succeeded, Some(3));
    // Zero counts are left out, as kube leaves them.
    assert_eq!((st.failed, st.active, st.ready), (None, None, Some(0)));
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let words = (
        "CompletionsReached".to_string(),
        "Reached expected number of succeeded pods".to_string(),
    );
    assert_eq!(condition_words(&done, "SuccessCriteriaMet"), words);
    assert_eq!(condition_words(&done, "Complete"), words);
    wait_released(&client, "pi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_pods_fail_exceeds_its_backoff_limit() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "fails",
            json!({"completions": 2, "parallelism": 2, "backoffLimit": 1}),
        ),
    )
    .await
    .expect("create job");
    for p in wait_running(&client, "fails", 2).await {
        finish(&client, &p, "Failed", 1).await;
    }
    let failed = wait_condition(&client, "fails", "Failed", 20).await;
    let words = (
        "BackoffLimitExceeded".to_string(),
        "Job has reached the specified backoff limit".to_string(),
    );
    assert_eq!(condition_words(&failed, "FailureTarget"), words);
    assert_eq!(condition_words(&failed, "Failed"), words);
    assert_eq!(failed.status.as_ref().and_then(|s| s.failed), Some(2));
    assert!(running(&client, "fails").await.is_empty());
    wait_released(&client, "fails").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_indexed_job_gives_its_pods_indexes_and_ttl_deletes_it_when_done() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                   "ttlSecondsAfterFinished": 2}),
        ),
    )
    .await
    .expect("create job");
    let pods = wait_running(&client, "idx", 3).await;
    let mut seen = BTreeSet::new();
    for p in &pods {
        let ix = p
            .annotations()
            .get("batch.kubernetes.io/job-completion-index")
            .cloned()
            .expect("index annotation");
        assert_eq!(
            p.labels().get("batch.kubernetes.io/job-completion-index"),
            Some(&ix)
        );
        assert!(
            p.name_any().starts_with(&format!("idx-{ix}-")),
            "{}",
            p.name_any()
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{ix}").as_str()));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        seen.insert(ix);
    }
    assert_eq!(seen, ["0", "1", "2"].map(String::from).into());
    for p in &pods {
        finish(&client, p, "Succeeded", 0).await;
    }
    let done = wait_condition(&client, "idx", "Complete", 20).await;
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref()),
        Some("0-2")
    );
    // ttlSecondsAfterFinished 2: the Job goes two seconds after it finished.
    eventually(20, "the finished Job deleted", || async {
        jobs.get_opt("idx").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_past_its_active_deadline_fails_and_its_pods_go() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "slow",
            json!({"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 2}),
        ),
    )
    .await
    .expect("create job");
    wait_running(&client, "slow", 2).await;
    let failed = wait_condition(&client, "slow", "Failed", 20).await;
    let words = (
        "DeadlineExceeded".to_string(),
        "Job was active longer than specified deadline".to_string(),
    );
    assert_eq!(condition_words(&failed, "FailureTarget"), words);
    assert_eq!(condition_words(&failed, "Failed"), words);
    // Failed only once its pods are gone (deleted, their finalizers removed), and they
    // do not count as failures.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let left = pods
        .list(&ListParams::default().labels("job-name=slow"))
        .await
        .expect("pods");
    assert!(left.items.is_empty(), "{:?}", left.items);
    let st = failed.status.expect("status");
    assert_eq!(
        (st.active, st.failed, st.terminating),
        (None, None, Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_job_runs_no_pods_until_resumed() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("later", json!({"suspend": true})),
    )
    .await
    .expect("create job");
    let suspended = wait_condition(&client, "later", "Suspended", 20).await;
    assert!(suspended.status.and_then(|s| s.start_time).is_none());
    assert!(running(&client, "later").await.is_empty());
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let pod = wait_running(&client, "later", 1).await;
    finish(&client, &pod[0], "Succeeded", 0).await;
    let done = wait_condition(&client, "later", "Complete", 20).await;
    let resumed = done
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Suspended")
        .expect("Suspended condition");
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
}

fn index(p: &Pod) -> String {
    p.annotations()
        .get("batch.kubernetes.io/job-completion-index")
        .cloned()
        .expect("index annotation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_success_policy_completes_an_indexed_job_when_its_leader_succeeds() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "leader",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                   "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    )
    .await
    .expect("create job");
    let pods = wait_running(&client, "leader", 3).await;
    let leader = pods.iter().find(|p| index(p) == "0").expect("index 0");
    finish(&client, leader, "Succeeded", 0).await;
    // The workers are terminated; the Job completes with the policy's words.
    let done = wait_condition(&client, "leader", "Complete", 30).await;
    let words = (
        "SuccessPolicy".to_string(),
        "Matched rules at index 0".to_string(),
    );
    assert_eq!(condition_words(&done, "SuccessCriteriaMet"), words);
    assert_eq!(condition_words(&done, "Complete"), words);
    let st = done.status.clone().expect("status");
    assert_eq!(st.completed_indexes.as_deref(), Some("0"));
    assert_eq!(st.succeeded, Some(1));
    assert!(st.completion_time.is_some());
    wait_released(&client, "leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_past_its_backoff_limit_per_index_fails_the_job_with_failed_indexes() {
    let cl = start_jobs().await;
    let client = cl.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let policy = json!({"rules": [{"action": "FailIndex",
        "onExitCodes": {"operator": "In", "values": [42]}}]});
    jobs.create(
        &PostParams::default(),
        &job(
            "perindex",
            json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                   "backoffLimitPerIndex": 1, "podFailurePolicy": policy}),
        ),
    )
    .await
    .expect("create job");
    let created = jobs.get("perindex").await.expect("job");
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.backoff_limit, Some(i32::MAX), "no Job-wide limit");
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    let pods = wait_running(&client, "perindex", 2).await;
    for p in &pods {
        assert_eq!(
            p.annotations()
                .get("batch.kubernetes.io/job-index-failure-count")
                .map(String::as_str),
            Some("0")
        );
    }
    // Index 0 exits 42: FailIndex fails it at once; index 1 succeeds.
    let zero = pods.iter().find(|p| index(p) == "0").expect("index 0");
    let one = pods.iter().find(|p| index(p) == "1").expect("index 1");
    finish(&client, zero, "Failed", 42).await;
    finish(&client, one, "Succeeded", 0).await;
    let failed = wait_condition(&client, "perindex", "Failed", 30).await;
    let words = (
        "FailedIndexes".to_string(),
        "Job has failed indexes".to_string(),
    );
    assert_eq!(condition_words(&failed, "FailureTarget"), words);
    assert_eq!(condition_words(&failed, "Failed"), words);
    let st = failed.status.clone().expect("status");
    assert_eq!(st.failed_indexes.as_deref(), Some("0"));
    assert_eq!(st.completed_indexes.as_deref(), Some("1"));
    assert_eq!(st.failed, Some(1));
    assert!(running(&client, "perindex").await.is_empty(), "no retry");
    wait_released(&client, "perindex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_jobs_are_refused_with_kubes_words() {
    let cl = start_jobs().await;
    let jobs: Api<Job> = Api::namespaced(cl.client.clone(), "default");
    let err = jobs
        .create(
            &PostParams::default(),
            &job(
                "bad",
                json!({"backoffLimitPerIndex": 1, "managedBy": "nobody"}),
            ),
        )
        .await
        .expect_err("refused");
    let kube::Error::Api(status) = err else {
        panic!("not a Status: {err}")
    };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Job.batch \"bad\" is invalid: [spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode, spec.managedBy: Invalid value: \"nobody\": must be a domain-prefixed path (such as \"acme.io/foo\")]"
    );
}
