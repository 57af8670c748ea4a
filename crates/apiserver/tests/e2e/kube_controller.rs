//! A kube-rs app against skiff: a `#[derive(CustomResource)]` type registers its CRD
//! (schema from schemars), and a `kube::runtime::Controller` watches its objects and
//! writes their status, as an operator does on a real cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common;

/// The spec of a `Counter`: the controller writes `count * 2` into its status.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "ctl-test.example.com",
    version = "v1",
    kind = "Counter",
    namespaced,
    status = "CounterStatus",
    printcolumn = r#"{"name":"Doubled", "type":"integer", "jsonPath":".status.doubled"}"#
)]
pub struct CounterSpec {
    count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

/// What the controller observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct CounterStatus {
    doubled: i64,
}

/// The reconciler's error: the API call that failed.
#[derive(Debug)]
struct Error(kube::Error);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

struct Ctx {
    client: kube::Client,
}

async fn reconcile(c: Arc<Counter>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let api: Api<Counter> = Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
    let status = json!({"status": {"doubled": c.spec.count * 2}});
    api.patch_status(
        &c.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .map_err(Error)?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Counter>, _: &Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_controller_writes_status_of_its_custom_resources() {
    let s = common::start().await;
    let client = s.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Counter::crd())
        .await
        .expect("CRD created");
    eventually("the CRD to be established", || {
        let crds = crds.clone();
        async move {
            crds.get("counters.ctl-test.example.com")
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|st| st.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        }
    })
    .await;

    let counters: Api<Counter> = Api::namespaced(client.clone(), "default");
    let controller = tokio::spawn(
        Controller::new(counters.clone(), watcher::Config::default())
            .run(
                reconcile,
                error_policy,
                Arc::new(Ctx {
                    client: client.clone(),
                }),
            )
            .for_each(|_| async {}),
    );

    let c1 = Counter::new(
        "c1",
        CounterSpec {
            count: 21,
            label: None,
        },
    );
    counters
        .create(&PostParams::default(), &c1)
        .await
        .expect("Counter created");
    let doubled = |want: i64| {
        let counters = counters.clone();
        move || {
            let counters = counters.clone();
            async move {
                counters
                    .get_status("c1")
                    .await
                    .ok()
                    .and_then(|c| c.status)
                    .is_some_and(|st| st.doubled == want)
            }
        }
    };
    eventually("status.doubled = 42", doubled(42)).await;

    // A change of the spec is seen through the watch and reconciled again. The create
    // made the fields its manager's (an update): applying other values takes them over,
    // as with kube-apiserver, only by force.
    let five = json!({
        "apiVersion": "ctl-test.example.com/v1", "kind": "Counter",
        "metadata": {"name": "c1"},
        "spec": {"count": 5, "label": "five"}
    });
    let err = counters
        .patch(
            "c1",
            &PatchParams::apply("counter-test"),
            &Patch::Apply(&five),
        )
        .await
        .expect_err("a conflict with the creator's fields");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.message.contains(".spec.count")),
        "{err}"
    );
    counters
        .patch(
            "c1",
            &PatchParams::apply("counter-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "ctl-test.example.com/v1", "kind": "Counter",
                "metadata": {"name": "c1"},
                "spec": {"count": 5, "label": "five"}
            })),
        )
        .await
        .expect("apply");
    eventually("status.doubled = 10", doubled(10)).await;
    let got = counters.get("c1").await.expect("get");
    assert_eq!(got.spec.label.as_deref(), Some("five"));
    assert_eq!(got.status.map(|s| s.doubled), Some(10));
    controller.abort();
}
