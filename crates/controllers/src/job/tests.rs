//! Unit tests of the Job reconciler against the recording fake API.

use super::*;
use serde_json::{json, Value};
use skiff_testkit::fakeapi::{FakeApi, Reply};

use crate::testing::{collection, informer, writes_but_events};

fn job(status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid",
                     "resourceVersion": "10"},
        "spec": {"completions": 2, "parallelism": 2, "backoffLimit": 6,
                 "completionMode": "NonIndexed",
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                 "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid",
                                                      "job-name": "pi"}},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": status})
}

fn pod(name: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
            "resourceVersion": "5", "finalizers": [plan::TRACKING_FINALIZER],
            "labels": {"job-name": "pi"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                "uid": "job-uid", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase}})
}

async fn ctx(fake: &FakeApi, job: Value, pods: Vec<Value>) -> Ctx {
    let fixed: Timestamp = "2026-01-01T00:00:00Z".parse().expect("now");
    new_ctx(
        fake.client(),
        informer(fake, pods).await,
        informer(fake, vec![job]).await,
        Arc::new(move || fixed),
    )
}

/// A status write that answers with the body and the next resourceVersion.
fn echo_status(fake: &FakeApi, path: &str) {
    let n = Arc::new(std::sync::atomic::AtomicU64::new(10));
    fake.on("PUT", path, move |r| {
        let mut body = r.body.clone().unwrap_or_default();
        let rv = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        body["metadata"]["resourceVersion"] = json!(rv.to_string());
        Reply::ok(body)
    });
}

#[tokio::test]
async fn sync_creates_tracked_pods_and_reports_them_active() {
    let fake = FakeApi::new();
    let pods = collection::<Pod>("default");
    fake.echo_creates(&pods);
    let status = format!("{}/pi/status", collection::<Job>("default"));
    echo_status(&fake, &status);
    let ctx = ctx(&fake, job(json!({})), vec![]).await;
    fake.clear();

    sync(&ctx, "default/pi").await.expect("sync");

    let writes = writes_but_events(&fake);
    let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            format!("POST {pods}"),
            format!("POST {pods}"),
            format!("PUT {status}")
        ],
        "{writes:#?}"
    );
    let p = writes[0].body.as_ref().expect("pod");
    assert_eq!(p["metadata"]["generateName"], "pi-");
    assert_eq!(
        p["metadata"]["finalizers"],
        json!([plan::TRACKING_FINALIZER])
    );
    assert_eq!(
        p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    let st = &writes[2].body.as_ref().expect("status")["status"];
    assert_eq!(st["active"], 2);
    assert_eq!(st["startTime"], "2026-01-01T00:00:00Z");
    // The update is guarded by the Job's resourceVersion.
    assert_eq!(
        writes[2].body.as_ref().expect("job")["metadata"]["resourceVersion"],
        "10"
    );
}

#[tokio::test]
async fn sync_records_a_finished_pod_before_its_finalizer_goes() {
    let fake = FakeApi::new();
    let pods = collection::<Pod>("default");
    fake.reply(
        "PATCH",
        &format!("{pods}/a"),
        Reply::ok(pod("a", "Succeeded")),
    );
    fake.echo_creates(&pods);
    let status = format!("{}/pi/status", collection::<Job>("default"));
    echo_status(&fake, &status);
    let ctx = ctx(
        &fake,
        job(json!({"active": 2, "startTime": "2026-01-01T00:00:00Z"})),
        vec![pod("a", "Succeeded"), pod("b", "Running")],
    )
    .await;
    fake.clear();

    sync(&ctx, "default/pi").await.expect("sync");

    let writes = writes_but_events(&fake);
    let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            format!("PUT {status}"),
            format!("PATCH {pods}/a"),
            format!("PUT {status}"),
        ],
        "{writes:#?}"
    );
    let first = &writes[0].body.as_ref().expect("status")["status"];
    assert_eq!(
        first["uncountedTerminatedPods"]["succeeded"],
        json!(["u-a"])
    );
    assert_eq!(
        writes[1].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        writes[1].body.as_ref().expect("patch"),
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [plan::TRACKING_FINALIZER]}})
    );
    let last = writes[2].body.as_ref().expect("status");
    assert_eq!(last["status"]["succeeded"], 1);
    assert_eq!(last["status"]["active"], 1);
    assert_eq!(last["status"]["uncountedTerminatedPods"], json!({}));
    // The second write builds on the first one's resourceVersion.
    assert_eq!(last["metadata"]["resourceVersion"], "11");

    // The cache still shows the finalizer: the pod is not counted twice, and the
    // status written last is the one the next sync starts from.
    fake.clear();
    sync(&ctx, "default/pi").await.expect("second sync");
    assert!(writes_but_events(&fake).is_empty(), "{:#?}", fake.writes());
}
