//! The TTL-after-finished controller (kube's `pkg/controller/ttlafterfinished`):
//! deletes a finished Job `ttlSecondsAfterFinished` after its `Complete` or `Failed`
//! condition turned True, with propagation Background (the garbage collector takes
//! its pods).

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::informer::Informer;
use crate::job::plan::finished_at;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_deleting, is_not_found, split_key};
use crate::Informers;

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let jobs = inf.jobs.clone();
    Triggers::new(&queue, &inf.jobs).primary_if(|j, deleted| !deleted && needs_cleanup(j));
    run_workers("ttl-after-finished", queue, 2, move |key| {
        let client = client.clone();
        let jobs = jobs.clone();
        async move { sync(&client, &jobs, &key, Timestamp::now()).await }
    });
}

/// Whether the Job is a finished one with a TTL, not yet being deleted.
fn needs_cleanup(job: &Job) -> bool {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    ttl.is_some() && !is_deleting(job) && finished_at(job).is_some()
}

/// How long until the Job expires at `now` (zero: now), if it ever does.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_at(job)?;
    let expires = finished.as_second() + i64::from(ttl.max(0));
    Some(Duration::from_secs(
        (expires - now.as_second()).max(0) as u64
    ))
}

async fn sync(
    client: &Client,
    jobs: &Informer<Job>,
    key: &str,
    now: Timestamp,
) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(job) = jobs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    if !needs_cleanup(&job) {
        return Ok(None);
    }
    match time_left(&job, now) {
        Some(d) if !d.is_zero() => return Ok(Some(d)),
        None => return Ok(None),
        Some(_) => {}
    }
    // Check the live Job (its TTL may have changed since the cache saw it), then delete
    // exactly that one.
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let live = match api.get(name).await {
        Ok(j) => j,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("getting job {key}")),
    };
    if !needs_cleanup(&live) {
        return Ok(None);
    }
    if let Some(d) = time_left(&live, now).filter(|d| !d.is_zero()) {
        return Ok(Some(d));
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: live.uid(),
            resource_version: live.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("deleting finished job {key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{collection, informer};

    fn job(ttl: Option<i32>, finished: Option<&str>) -> Job {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default"},
            "spec": {"template": {}}});
        if let Some(ttl) = ttl {
            j["spec"]["ttlSecondsAfterFinished"] = json!(ttl);
        }
        if let Some(at) = finished {
            j["status"] = json!({"conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": at}]});
        }
        serde_json::from_value(j).expect("job")
    }

    #[test]
    fn expires_ttl_seconds_after_the_finish() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().expect("now");
        assert_eq!(
            time_left(&job(None, Some("2026-01-01T00:00:00Z")), now),
            None
        );
        assert_eq!(time_left(&job(Some(100), None), now), None);
        assert_eq!(
            time_left(&job(Some(100), Some("2026-01-01T00:00:00Z")), now),
            Some(Duration::from_secs(70))
        );
        assert_eq!(
            time_left(&job(Some(0), Some("2026-01-01T00:00:00Z")), now),
            Some(Duration::ZERO)
        );
        assert!(needs_cleanup(&job(Some(0), Some("2026-01-01T00:00:00Z"))));
        assert!(!needs_cleanup(&job(Some(0), None)));
    }

    #[tokio::test]
    async fn an_expired_job_is_deleted_in_the_background_exactly_as_seen() {
        let finished = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "uid": "job-uid",
                         "resourceVersion": "7"},
            "spec": {"ttlSecondsAfterFinished": 10, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let fake = FakeApi::new();
        let path = format!("{}/j", collection::<Job>("default"));
        fake.reply("GET", &path, Reply::ok(finished.clone()));
        fake.reply("DELETE", &path, Reply::ok(finished.clone()));
        let jobs = informer::<Job>(&fake, vec![finished]).await;
        fake.clear();

        let early: Timestamp = "2026-01-01T00:00:04Z".parse().expect("t");
        let again = sync(&fake.client(), &jobs, "default/j", early).await;
        assert_eq!(again.expect("sync"), Some(Duration::from_secs(6)));
        assert!(fake.writes().is_empty());

        let late: Timestamp = "2026-01-01T00:00:10Z".parse().expect("t");
        let again = sync(&fake.client(), &jobs, "default/j", late).await;
        assert_eq!(again.expect("sync"), None);
        let writes = fake.writes();
        assert_eq!(writes.len(), 1, "{writes:#?}");
        assert_eq!(writes[0].line(), format!("DELETE {path}"));
        assert_eq!(
            writes[0].body.as_ref().expect("delete options"),
            &json!({"propagationPolicy": "Background",
                    "preconditions": {"uid": "job-uid", "resourceVersion": "7"}})
        );
    }
}
