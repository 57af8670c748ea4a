//! Tolerant list/watch against the real API server (in process), with objects of the
//! wrong types written straight into its datastore (as objects stored before the API
//! server checked types would be): informers and watchers start, serve the good
//! objects, name the bad ones, and keep following changes.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use skiff_runtime::informer::Informer;
use skiff_runtime::tolerant::{self, Decoded};
use skiff_store::{SqliteStore, Store};

use common::server;

/// Rewrites the stored object at `key` with `edit`, through a second connection to the
/// server's SQLite database (the API server would refuse these values).
fn corrupt(dir: &tempfile::TempDir, key: &str, edit: impl FnOnce(&mut Value)) {
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open state.db");
    let kv = store.get(key).expect("get").expect("stored object");
    let mut obj: Value = serde_json::from_slice(&kv.value).expect("stored JSON");
    edit(&mut obj);
    store
        .update(key, &serde_json::to_vec(&obj).expect("json"), None)
        .expect("update");
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": name}}
    }))
    .expect("service")
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_in_the_store_are_skipped_and_named() {
    let (client, _server, dir) = server().await;
    let ns = "tolerant";
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
    )
    .await
    .expect("namespace");
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    for name in ["good", "bad"] {
        svcs.create(&PostParams::default(), &service(name))
            .await
            .expect("create service");
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "1"}}))
            .expect("configmap"),
    )
    .await
    .expect("create configmap");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "d"},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                         "template": {"metadata": {"labels": {"app": "d"}},
                                      "spec": {"containers": [{"name": "c", "image": "httpd"}]}}}
            }))
            .expect("deployment"),
        )
        .await
        .expect("create deployment");

    corrupt(&dir, &format!("/registry/core/services/{ns}/bad"), |o| {
        o["spec"]["ports"][0]["name"] = json!(5)
    });
    corrupt(&dir, &format!("/registry/core/configmaps/{ns}/cm"), |o| {
        o["data"]["a"] = json!(1);
        o["metadata"]["annotations"] = json!({"a": 1});
    });
    corrupt(&dir, &format!("/registry/apps/deployments/{ns}/d"), |o| {
        o["spec"]["replicas"] = json!(1.5)
    });

    // Plain kube-rs fails the whole list: what took DNS and the proxy down.
    let err = svcs.list(&ListParams::default()).await;
    assert!(err.is_err(), "a typed list must fail on the bad Service");

    // Decoded one by one, the good objects pass and the bad ones are named.
    let listed = tolerant::api(&svcs)
        .list(&ListParams::default())
        .await
        .expect("tolerant list");
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for item in listed.items {
        match item {
            Decoded::Ok(s) => good.push(s.name_any()),
            Decoded::Bad(b) => bad.push((b.key(), b.error)),
        }
    }
    assert_eq!(good, ["good"]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, "tolerant/bad");
    assert!(
        bad[0]
            .1
            .starts_with("spec.ports[0].name: invalid type: integer `5`"),
        "{bad:?}"
    );

    // Informers (controllers, scheduler) become ready with the good objects.
    let services = Informer::spawn(Api::<Service>::all(client.clone()));
    let configmaps = Informer::spawn(cms.clone());
    let deployments = Informer::spawn(deploys.clone());
    for ready in [
        Box::pin(services.wait_ready())
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        Box::pin(configmaps.wait_ready()),
        Box::pin(deployments.wait_ready()),
    ] {
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("informer ready despite a bad object");
    }
    let names = |i: &Informer<Service>| {
        let mut n: Vec<String> = i.list().iter().map(|s| s.name_any()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&services), ["good", "kubernetes"]);
    assert!(configmaps.list().iter().all(|c| c.name_any() != "cm"));
    assert!(deployments.list().is_empty());

    // A watcher (DNS, proxy) lists, then keeps following changes past the bad objects.
    let mut stream = tolerant::watcher(svcs.clone(), watcher::Config::default()).boxed();
    let mut listed = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event")
            .expect("the stream goes on")
            .expect("no error");
        match ev {
            Event::InitApply(s) => listed.push(s.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(listed, ["good"]);
    svcs.create(&PostParams::default(), &service("later"))
        .await
        .expect("create");
    // (Through the tolerant API: the answer is the deleted object, which a typed
    // client cannot decode either.)
    tolerant::api(&svcs)
        .delete("bad", &DeleteParams::default())
        .await
        .expect("delete the bad service");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event")
            .expect("the stream goes on")
            .expect("no error");
        match ev {
            Event::Apply(s) => seen.push(format!("apply {}", s.name_any())),
            Event::Delete(s) => seen.push(format!("delete {}", s.name_any())),
            _ => {}
        }
    }
    assert_eq!(seen, ["apply later", "delete bad"]);
    eventually("the informer to see the new Service", || {
        names(&services) == ["good", "kubernetes", "later"]
    })
    .await;
}
