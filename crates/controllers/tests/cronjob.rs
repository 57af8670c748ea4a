//! Integration tests of the CronJob controller against the real API server (in-process).
//! The Job controller does not run: the test sets the Jobs' statuses through the status
//! subresource, as the Job controller would.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn start_cronjobs() -> Cluster {
    start_these_controllers(Duration::from_secs(40), &["cronjob", "garbage-collector"]).await
}

fn cronjob(name: &str, spec: serde_json::Value) -> CronJob {
    let mut s = json!({"schedule": "* * * * *",
        "jobTemplate": {"metadata": {"labels": {"app": name}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name}, "spec": s}))
    .expect("cronjob")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_every_minute_cronjob_starts_a_job_named_by_its_minute() {
    let cl = start_cronjobs().await;
    let cjs: Api<CronJob> = Api::namespaced(cl.client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(cl.client.clone(), "default");
    let cj = cjs
        .create(&PostParams::default(), &cronjob("tick", json!({})))
        .await
        .expect("create cronjob");
    let created = cj.metadata.creation_timestamp.clone().expect("created").0;
    // The first start time: the next whole minute after the creation.
    let first = (created.as_second() / 60 + 1) * 60;
    let name = format!("tick-{}", first / 60);

    let job = eventually(70, &format!("job {name}"), || async {
        jobs.get_opt(&name).await.expect("get job")
    })
    .await;
    let started_by = Timestamp::now().as_second();
    assert!(started_by < first + 60, "job {name} came after its minute");
    assert_eq!(job.labels().get("app").map(String::as_str), Some("tick"));
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    assert_eq!(owner.uid, cj.uid().expect("uid"));
    let scheduled = job
        .annotations()
        .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        .cloned()
        .expect("scheduled timestamp");
    assert_eq!(
        scheduled.parse::<Timestamp>().expect("rfc3339").as_second(),
        first
    );

    let st = eventually(10, "the cronjob's status", || async {
        let cj = cjs.get("tick").await.expect("cronjob");
        let st = cj.status?;
        let listed = st
            .active
            .as_ref()?
            .iter()
            .any(|r| r.name.as_deref() == Some(&name));
        listed.then_some(st)
    })
    .await;
    assert_eq!(st.last_schedule_time.map(|t| t.0.as_second()), Some(first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let cl = start_cronjobs().await;
    let cjs: Api<CronJob> = Api::namespaced(cl.client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(cl.client.clone(), "default");
    // Suspended: only the history is the controller's business here.
    let cj = cjs
        .create(
            &PostParams::default(),
            &cronjob(
                "hist",
                json!({"suspend": true, "successfulJobsHistoryLimit": 1,
                       "failedJobsHistoryLimit": 1}),
            ),
        )
        .await
        .expect("create cronjob");
    let uid = cj.uid().expect("uid");
    let finished = [
        ("hist-1", "Complete", "2026-01-01T00:01:00Z"),
        ("hist-2", "Failed", "2026-01-01T00:02:00Z"),
        ("hist-3", "Complete", "2026-01-01T00:03:00Z"),
        ("hist-4", "Failed", "2026-01-01T00:04:00Z"),
        ("hist-5", "Complete", "2026-01-01T00:05:00Z"),
    ];
    for (name, cond, start) in finished {
        let job: Job = serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "batch/v1",
                "kind": "CronJob", "name": "hist", "uid": uid, "controller": true,
                "blockOwnerDeletion": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}}))
        .expect("job");
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create job");
        let mut status = json!({"startTime": start, "conditions": [{"type": cond,
            "status": "True", "lastTransitionTime": start}]});
        if cond == "Complete" {
            status["completionTime"] = json!(start);
        }
        jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .expect("job status");
    }

    eventually(30, "the history cut to its limits", || async {
        let mut left: Vec<String> = jobs
            .list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.name_any())
            .collect();
        left.sort();
        (left == ["hist-4", "hist-5"]).then_some(())
    })
    .await;
    // The status follows the deletes (and may take a retry after a conflict).
    eventually(10, "the last successful time", || async {
        let st = cjs.get("hist").await.expect("cronjob").status?;
        let t = st.last_successful_time?.0.to_string();
        (t == "2026-01-01T00:05:00Z").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cronjob_in_a_named_time_zone_fires_at_that_zones_minute() {
    let cl = start_cronjobs().await;
    let cjs: Api<CronJob> = Api::namespaced(cl.client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(cl.client.clone(), "default");
    // The next minute as Kathmandu's clocks show it (UTC+05:45): in UTC that hour and
    // minute come at another time, so only an honoured zone fires within the minute.
    let zone = skiff_api::tz::zone("Asia/Kathmandu").expect("zone");
    let next = (Timestamp::now().as_second() / 60 + 1) * 60;
    let local = Timestamp::from_second(next).expect("ts").to_zoned(zone);
    let schedule = format!("{} {} * * *", local.minute(), local.hour());
    cjs.create(
        &PostParams::default(),
        &cronjob(
            "kathmandu",
            json!({"schedule": schedule, "timeZone": "Asia/Kathmandu"}),
        ),
    )
    .await
    .expect("create cronjob");
    let name = format!("kathmandu-{}", next / 60);
    eventually(75, &format!("job {name}"), || async {
        jobs.get_opt(&name).await.expect("get job")
    })
    .await;
    // The controller writes the status after it made the Job.
    let last = eventually(10, "lastScheduleTime", || async {
        cjs.get("kathmandu")
            .await
            .expect("cronjob")
            .status
            .and_then(|s| s.last_schedule_time)
    })
    .await;
    assert_eq!(last.0.as_second(), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_cronjobs_are_refused_with_kubes_words() {
    let cl = start_cronjobs().await;
    let cjs: Api<CronJob> = Api::namespaced(cl.client.clone(), "default");
    let refused = |cj: CronJob| {
        let cjs = cjs.clone();
        async move {
            match cjs.create(&PostParams::default(), &cj).await {
                Err(kube::Error::Api(s)) => (s.code, s.message),
                other => panic!("not refused: {other:?}"),
            }
        }
    };
    assert_eq!(
        refused(cronjob("tz", json!({"schedule": "TZ=Europe/Berlin 0 9 * * *"}))).await,
        (
            422,
            "CronJob.batch \"tz\" is invalid: spec.schedule: Invalid value: \"TZ=Europe/Berlin 0 9 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string()
        )
    );
    assert_eq!(
        refused(cronjob("mars", json!({"timeZone": "Mars/Olympus"}))).await,
        (
            422,
            "CronJob.batch \"mars\" is invalid: spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus".to_string()
        )
    );
    let long = "x".repeat(53);
    let (code, msg) = refused(cronjob(&long, json!({}))).await;
    assert_eq!(code, 422);
    assert!(msg.ends_with("metadata.name: Invalid value: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\": must be no more than 52 characters"), "{msg}");
}
