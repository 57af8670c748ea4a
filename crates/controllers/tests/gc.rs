//! Integration tests of the garbage collector against the real API server (in-process):
//! each deletion propagation policy, and dependents with several owners, as
//! kube-controller-manager's garbage collector treats them.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn start_gc() -> Cluster {
    start_these_controllers(Duration::from_secs(40), &["garbage-collector"]).await
}

/// A ConfigMap owned by each of `owners` (blocking their foreground deletion).
async fn config_map(api: &Api<ConfigMap>, name: &str, owners: &[&ConfigMap]) -> ConfigMap {
    let refs: Vec<serde_json::Value> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.name_any(),
                   "uid": o.uid().expect("uid"), "blockOwnerDeletion": true})
        })
        .collect();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": refs}}))
    .expect("config map");
    api.create(&PostParams::default(), &cm)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    eventually(30, &format!("{name} deleted"), || async {
        api.get_opt(name)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dependents_follow_each_propagation_policy() {
    let cl = start_gc().await;
    let api: Api<ConfigMap> = Api::namespaced(cl.client.clone(), "default");

    // Background (the default for most kinds): the owner goes at once, then its
    // dependents.
    let owner = config_map(&api, "bg-owner", &[]).await;
    config_map(&api, "bg-dep", &[&owner]).await;
    api.delete("bg-owner", &DeleteParams::background())
        .await
        .expect("delete");
    gone(&api, "bg-dep").await;

    // Orphan: the dependents stay, without the reference to their owner.
    let owner = config_map(&api, "or-owner", &[]).await;
    config_map(&api, "or-dep", &[&owner]).await;
    api.delete("or-owner", &DeleteParams::orphan())
        .await
        .expect("delete");
    gone(&api, "or-owner").await;
    let dep = api.get("or-dep").await.expect("the orphan stays");
    assert!(dep.owner_references().is_empty(), "{dep:?}");

    // Foreground: the dependents go first, then the owner.
    let owner = config_map(&api, "fg-owner", &[]).await;
    config_map(&api, "fg-dep", &[&owner]).await;
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .expect("delete");
    gone(&api, "fg-dep").await;
    gone(&api, "fg-owner").await;

    // Several owners: a dependent stays while one of them is left, losing the
    // reference to the one deleted.
    let first = config_map(&api, "first", &[]).await;
    let second = config_map(&api, "second", &[]).await;
    config_map(&api, "shared", &[&first, &second]).await;
    api.delete("first", &DeleteParams::background())
        .await
        .expect("delete");
    let shared = eventually(30, "the reference to the deleted owner removed", || async {
        let s = api.get("shared").await.expect("the shared dependent stays");
        (s.owner_references().len() == 1).then_some(s)
    })
    .await;
    assert_eq!(shared.owner_references()[0].name, "second");
    api.delete("second", &DeleteParams::background())
        .await
        .expect("delete");
    gone(&api, "shared").await;

    // Created naming an owner that never existed: collected too.
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dangling",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "nobody",
                             "uid": "5bd3ac3c-0000-4000-8000-000000000000"}]}}))
    .expect("config map");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    gone(&api, "dangling").await;
}
