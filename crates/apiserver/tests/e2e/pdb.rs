//! The eviction subresource and PodDisruptionBudgets, through kube-rs and the real
//! kubectl's `drain`. Only the API server runs: the test plays the disruption
//! controller (it writes the budget's status) and the kubelet (it sets pods Ready).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skiff_testkit::kubectl;

use crate::common::{self, TestServer};

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

/// An admin client that shows 429s at once (kube-rs retries them for minutes).
fn client(s: &TestServer) -> kube::Client {
    let mut cfg = s.handle.admin_client_config();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

/// Pods `names` of `app=web` bound to `n1`, Running and Ready.
async fn ready_pods(pods: &Api<Pod>, names: &[&str]) {
    for name in names {
        let p: Pod = obj(json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "httpd"}]}}));
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}]}})),
        )
        .await
        .expect("pod Ready");
    }
}

/// Sets the budget's status as the disruption controller would.
async fn budget_status(pdbs: &Api<PodDisruptionBudget>, name: &str, healthy: i32, allowed: i32) {
    pdbs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"observedGeneration": 1, "currentHealthy": healthy,
            "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": allowed}}),
        ),
    )
    .await
    .expect("budget status");
}

fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_honour_disruption_budgets() {
    let s = common::start().await;
    let c = client(&s);
    let nodes: Api<Node> = Api::all(c.clone());
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
    nodes
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "n1"}})),
        )
        .await
        .expect("node");
    ready_pods(&pods, &["web-1", "web-2", "web-3"]).await;
    pdbs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})),
    )
    .await
    .expect("pdb");

    // Its status not yet computed (observedGeneration 0 < generation 1): 429, "still
    // being processed".
    let st = api_err(pods.evict("web-1", &EvictParams::default()).await);
    assert_eq!((st.code, st.message.as_str()), (429, VIOLATION));
    let causes = st.details.expect("details").causes;
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(
        causes[0].message,
        "The disruption budget web is still being processed by the server."
    );

    // No disruption allowed: 429 with kube's cause, and the pod stays.
    budget_status(&pdbs, "web", 2, 0).await;
    let st = api_err(pods.evict("web-1", &EvictParams::default()).await);
    assert_eq!((st.code, st.message.as_str()), (429, VIOLATION));
    assert_eq!(
        st.details.expect("details").causes[0].message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    assert!(pods
        .get("web-1")
        .await
        .expect("web-1")
        .metadata
        .deletion_timestamp
        .is_none());

    // kubectl drain is blocked the same way, and says so as kubectl does (`--force`:
    // these pods have no controller).
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert_eq!(bins.len(), 2, "kubectl 1.27 and 1.33 are missing");
    for bin in bins {
        let k = s.kubectl(bin).deadline(Duration::from_secs(60));
        let out = k.run(&[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--force",
            "--timeout=7s",
        ]);
        assert!(!out.success, "{}", out.describe());
        assert!(
            out.combined().contains(&format!(
                "error when evicting pods/\"web-1\" -n \"default\" (will retry after 5s): {VIOLATION}"
            )),
            "{}",
            out.describe()
        );
        k.ok(&["uncordon", "n1"]);
    }

    // One disruption allowed: the eviction takes it, records the pod, and deletes it
    // (gracefully: it is bound to a node) with the DisruptionTarget condition.
    budget_status(&pdbs, "web", 3, 1).await;
    let done = pods
        .evict("web-1", &EvictParams::default())
        .await
        .expect("evict web-1");
    // kube-apiserver's create handler gives the Status the answer's code.
    assert_eq!(
        (done.status, done.code),
        (Some(kube::core::response::StatusSummary::Success), 201)
    );
    let b = pdbs.get("web").await.expect("pdb");
    let status = b.status.expect("status");
    assert_eq!(status.disruptions_allowed, 0);
    assert!(status
        .disrupted_pods
        .is_some_and(|d| d.contains_key("web-1")));
    let cond = status
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );
    let gone = pods.get_opt("web-1").await.expect("get web-1");
    if let Some(p) = gone {
        assert!(p.metadata.deletion_timestamp.is_some());
        assert!(p
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "DisruptionTarget"
                && c.reason.as_deref() == Some("EvictionByEvictionAPI")));
    }
    // The budget is spent.
    let st = api_err(pods.evict("web-2", &EvictParams::default()).await);
    assert_eq!(st.code, 429);

    // A pod that is not Ready goes when the application is healthy enough.
    pods.patch_status(
        "web-3",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    )
    .await
    .expect("web-3 unready");
    budget_status(&pdbs, "web", 2, 0).await;
    pods.evict("web-3", &EvictParams::default())
        .await
        .expect("evict unready web-3");

    // Two budgets over one pod: kube's 500.
    pdbs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "web-too"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})),
    )
    .await
    .expect("second pdb");
    let st = api_err(pods.evict("web-2", &EvictParams::default()).await);
    assert_eq!(st.code, 500);
    assert_eq!(
        st.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    // A terminal pod is evicted whatever the budgets say.
    pods.patch_status(
        "web-2",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .expect("web-2 done");
    pods.evict("web-2", &EvictParams::default())
        .await
        .expect("evict terminal web-2");
}
