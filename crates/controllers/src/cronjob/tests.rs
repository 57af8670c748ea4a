//! Unit tests of the CronJob controller: the pure decisions at fixed times, and the
//! reconciler against the recording fake API.

use super::plan::{self, Missed};
use super::*;
use k8s_openapi::jiff::tz::TimeZone;
use serde_json::{json, Value};
use skiff_testkit::fakeapi::{FakeApi, Reply};

use crate::testing::{collection, informer, writes_but_events};

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn cronjob(spec: Value, status: Value) -> Value {
    let mut s = json!({"schedule": "* * * * *", "concurrencyPolicy": "Allow",
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
        "jobTemplate": {"metadata": {"labels": {"app": "tick"},
                                     "annotations": {"note": "n"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}}});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                     "resourceVersion": "3", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": s, "status": status})
}

fn cj(spec: Value, status: Value) -> CronJob {
    serde_json::from_value(cronjob(spec, status)).expect("cronjob")
}

/// A Job of the CronJob, `cond` `Complete`, `Failed` or "" (running), started `start`.
fn job(name: &str, cond: &str, start: &str) -> Value {
    let mut status = json!({"startTime": start});
    if !cond.is_empty() {
        status["conditions"] = json!([{"type": cond, "status": "True"}]);
        if cond == "Complete" {
            status["completionTime"] = json!(start);
        }
    }
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                "name": "tick", "uid": "cj-uid", "controller": true,
                "blockOwnerDeletion": true}]},
        "spec": {"template": {}}, "status": status})
}

fn jobs(v: &[Value]) -> Vec<Job> {
    v.iter()
        .map(|j| serde_json::from_value(j.clone()).expect("job"))
        .collect()
}

fn plan_at(cj: &CronJob, jobs: &[Job], now: &str) -> plan::Plan {
    let refs: Vec<&Job> = jobs.iter().collect();
    plan::plan(&plan::Input {
        cj,
        jobs: &refs,
        missing: &HashSet::new(),
        now: at(now),
    })
}

#[test]
fn most_recent_start_counts_missed_times_from_the_last_schedule() {
    let s = cron::Schedule::parse("* * * * *").expect("schedule");
    let utc = TimeZone::UTC;
    let fresh = cj(json!({}), json!({}));
    // Created at 00:00:00: nothing due before 00:01.
    let (_, latest, missed) = plan::most_recent(&fresh, &s, &utc, at("2026-01-01T00:00:59Z"), true);
    assert_eq!((latest, missed), (None, Missed::None));
    let (_, latest, missed) = plan::most_recent(&fresh, &s, &utc, at("2026-01-01T00:01:05Z"), true);
    assert_eq!(
        (latest, missed),
        (Some(at("2026-01-01T00:01:00Z")), Missed::Few)
    );
    let (_, latest, missed) = plan::most_recent(&fresh, &s, &utc, at("2026-01-01T01:00:30Z"), true);
    assert_eq!(
        (latest, missed),
        (Some(at("2026-01-01T01:00:00Z")), Missed::Few)
    );
    // A day of minutes missed: too many, the latest still starts.
    let (_, latest, missed) = plan::most_recent(&fresh, &s, &utc, at("2026-01-02T00:00:30Z"), true);
    assert_eq!(
        (latest, missed),
        (Some(at("2026-01-02T00:00:00Z")), Missed::Many)
    );
    // From the last schedule time, not the creation.
    let ran = cj(
        json!({}),
        json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
    );
    let (_, latest, _) = plan::most_recent(&ran, &s, &utc, at("2026-01-01T00:05:59Z"), true);
    assert_eq!(latest, None);
    // A starting deadline moves the earliest time up: few missed again.
    let late = cj(json!({"startingDeadlineSeconds": 200}), json!({}));
    let (_, latest, missed) = plan::most_recent(&late, &s, &utc, at("2026-01-02T00:00:30Z"), true);
    assert_eq!(
        (latest, missed),
        (Some(at("2026-01-02T00:00:00Z")), Missed::Few)
    );
    // An irregular schedule: the walk finds the true latest.
    let irregular = cron::Schedule::parse("30 6-16/4 * * 1-5").expect("schedule");
    let (_, latest, _) =
        plan::most_recent(&fresh, &irregular, &utc, at("2026-01-09T12:00:00Z"), true);
    assert_eq!(latest, Some(at("2026-01-09T10:30:00Z")));
}

#[test]
fn requeues_at_the_next_start_time() {
    let s = cron::Schedule::parse("*/5 * * * *").expect("schedule");
    let fresh = cj(json!({}), json!({}));
    let d = plan::next_in(&fresh, &s, &TimeZone::UTC, at("2026-01-01T00:03:30Z"));
    assert_eq!(d, Some(Duration::from_millis(90_100)));
}

#[test]
fn a_due_start_creates_the_job_named_by_its_minute() {
    let c = cj(json!({}), json!({}));
    let p = plan_at(&c, &[], "2026-01-01T00:01:10Z");
    let (job, scheduled) = p.create.expect("a job");
    assert_eq!(scheduled, at("2026-01-01T00:01:00Z"));
    let minutes = at("2026-01-01T00:01:00Z").as_second() / 60;
    assert_eq!(job.name_any(), format!("tick-{minutes}"));
    assert_eq!(job.labels().get("app").map(String::as_str), Some("tick"));
    assert_eq!(job.annotations().get("note").map(String::as_str), Some("n"));
    assert_eq!(
        job.annotations()
            .get(plan::SCHEDULED_TIMESTAMP)
            .map(String::as_str),
        Some("2026-01-01T00:01:00Z")
    );
    let owner = controller_of(&job).expect("controller");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("CronJob", "cj-uid")
    );
    assert_eq!(p.requeue, Some(Duration::from_millis(50_100)));
    // Not yet due, suspended, or too late for the deadline: nothing.
    assert!(plan_at(&c, &[], "2026-01-01T00:00:50Z").create.is_none());
    let suspended = cj(json!({"suspend": true}), json!({}));
    let p = plan_at(&suspended, &[], "2026-01-01T00:01:10Z");
    assert!(p.create.is_none() && p.requeue.is_none());
    let strict = cj(json!({"startingDeadlineSeconds": 5}), json!({}));
    // The deadline moves the earliest time past 00:01: that start is simply missed.
    let p = plan_at(&strict, &[], "2026-01-01T00:01:10Z");
    assert!(p.create.is_none() && p.events.is_empty());
    assert!(plan_at(&strict, &[], "2026-01-01T00:01:04Z")
        .create
        .is_some());
}

#[test]
fn too_many_missed_starts_warn_and_start_the_latest() {
    let c = cj(json!({}), json!({}));
    let p = plan_at(&c, &[], "2026-01-03T00:00:10Z");
    assert_eq!(p.events[0].reason, "TooManyMissedTimes");
    assert!(p.events[0].warning);
    assert_eq!(p.create.expect("job").1, at("2026-01-03T00:00:00Z"));
}

#[test]
fn concurrency_policies_decide_about_running_jobs() {
    let running = jobs(&[job("tick-1", "", "2026-01-01T00:00:00Z")]);
    let active = json!({"active": [{"apiVersion": "batch/v1", "kind": "Job",
        "name": "tick-1", "namespace": "default", "uid": "u-tick-1"}]});
    let now = "2026-01-01T00:01:10Z";

    let allow = cj(json!({}), active.clone());
    let p = plan_at(&allow, &running, now);
    assert!(p.create.is_some() && p.delete.is_empty());

    let forbid = cj(json!({"concurrencyPolicy": "Forbid"}), active.clone());
    let p = plan_at(&forbid, &running, now);
    assert!(p.create.is_none());
    assert_eq!(p.events[0].reason, "JobAlreadyActive");

    let replace = cj(json!({"concurrencyPolicy": "Replace"}), active);
    let p = plan_at(&replace, &running, now);
    assert!(p.create.is_some());
    assert_eq!(
        p.delete,
        [plan::Delete {
            name: "tick-1".into(),
            uid: Some("u-tick-1".into())
        }]
    );
    assert_eq!(p.status.active, None);
}

#[test]
fn finished_jobs_leave_active_and_history_beyond_the_limits_goes() {
    let js = jobs(&[
        job("tick-1", "Complete", "2026-01-01T00:01:00Z"),
        job("tick-2", "Complete", "2026-01-01T00:02:00Z"),
        job("tick-3", "Failed", "2026-01-01T00:03:00Z"),
        job("tick-4", "Complete", "2026-01-01T00:04:00Z"),
        job("tick-5", "Failed", "2026-01-01T00:05:00Z"),
        job("tick-6", "Complete", "2026-01-01T00:06:00Z"),
    ]);
    let c = cj(
        json!({"suspend": true}),
        json!({"active": [{"name": "tick-6", "uid": "u-tick-6"}]}),
    );
    let p = plan_at(&c, &js, "2026-01-01T00:06:30Z");
    let deleted: Vec<&str> = p.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, ["tick-1", "tick-3"]);
    assert_eq!(p.status.active, None);
    assert_eq!(
        p.status.last_successful_time.map(|t| t.0),
        Some(at("2026-01-01T00:06:00Z"))
    );
    assert!(p.events.iter().any(|e| e.reason == "SawCompletedJob"));
}

#[test]
fn an_unparseable_schedule_is_a_warning_and_no_requeue() {
    let c = cj(json!({"schedule": "x"}), json!({}));
    let p = plan_at(&c, &[], "2026-01-01T00:01:10Z");
    assert!(p.create.is_none() && p.requeue.is_none());
    assert_eq!(p.events[0].reason, "UnparseableSchedule");
}

#[tokio::test]
async fn sync_creates_the_due_job_and_records_it_active() {
    let fake = FakeApi::new();
    let jobs_path = collection::<Job>("default");
    fake.echo_creates(&jobs_path);
    let status = format!("{}/tick/status", collection::<CronJob>("default"));
    fake.on("PUT", &status, |r| {
        Reply::ok(r.body.clone().unwrap_or_default())
    });
    let ctx = Ctx {
        recorder: Recorder::new(fake.client(), "cronjob-controller"),
        client: fake.client(),
        cronjobs: informer(&fake, vec![cronjob(json!({}), json!({}))]).await,
        jobs: informer(&fake, vec![]).await,
        clock: Arc::new(|| at("2026-01-01T00:01:10Z")),
    };
    fake.clear();

    let again = sync(&ctx, "default/tick").await.expect("sync");
    assert_eq!(again, Some(Duration::from_millis(50_100)));
    let writes = writes_but_events(&fake);
    let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [format!("POST {jobs_path}"), format!("PUT {status}")],
        "{writes:#?}"
    );
    let name = format!("tick-{}", at("2026-01-01T00:01:00Z").as_second() / 60);
    let created = writes[0].body.as_ref().expect("job");
    assert_eq!(created["metadata"]["name"], json!(name));
    let st = &writes[1].body.as_ref().expect("status")["status"];
    assert_eq!(st["lastScheduleTime"], json!("2026-01-01T00:01:00Z"));
    assert_eq!(st["active"][0]["name"], json!(name));
}

#[test]
fn utc_is_a_known_time_zone() {
    let c = cj(json!({"timeZone": "Etc/UTC"}), json!({}));
    assert!(plan_at(&c, &[], "2026-01-01T00:01:10Z").create.is_some());
}

#[test]
fn a_named_time_zone_moves_the_start() {
    // 09:00 in Berlin is 08:00 UTC in winter (CET).
    let c = cj(
        json!({"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}),
        json!({}),
    );
    assert!(plan_at(&c, &[], "2026-01-01T07:59:59Z").create.is_none());
    let (job, scheduled) = plan_at(&c, &[], "2026-01-01T08:00:10Z")
        .create
        .expect("a job at 09:00 Berlin");
    assert_eq!(scheduled, at("2026-01-01T08:00:00Z"));
    let minutes = at("2026-01-01T08:00:00Z").as_second() / 60;
    assert_eq!(job.metadata.name, Some(format!("tick-{minutes}")));
    let unknown = cj(json!({"timeZone": "Mars/Olympus"}), json!({}));
    let p = plan_at(&unknown, &[], "2026-01-01T08:00:10Z");
    assert!(p.create.is_none());
    assert_eq!(p.events[0].reason, "UnknownTimeZone");
    assert_eq!(
        p.events[0].message,
        "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus"
    );
}
