//! The DaemonSet controller against the real API server (in-process) with the
//! scheduler: Node objects made by the test, no kubelet (the test's fake kubelets make
//! bound pods Running and Ready through the status subresource).

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

fn daemonset(name: &str, image: &str, node_selector: Option<serde_json::Value>) -> DaemonSet {
    let mut ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"ds": name}},
            "template": {
                "metadata": {"labels": {"ds": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    });
    if let Some(sel) = node_selector {
        ds["spec"]["template"]["spec"]["nodeSelector"] = sel;
    }
    serde_json::from_value(ds).expect("daemonset")
}

/// Node name -> (pod name, image) of the DaemonSet's live pods, if every one of them is
/// bound.
async fn placement(client: &Client, ds: &str) -> Option<BTreeMap<String, (String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels(&format!("ds={ds}")))
        .await
        .ok()?;
    let mut m = BTreeMap::new();
    for p in list.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let spec = p.spec.clone()?;
        let node = spec.node_name.clone()?;
        let image = spec.containers[0].image.clone().unwrap_or_default();
        if m.insert(node, (p.name_any(), image)).is_some() {
            return None;
        }
    }
    Some(m)
}

/// The DaemonSet's status as (desired, current, ready, up-to-date, available), once
/// observed for its generation.
async fn counts(dss: &Api<DaemonSet>, name: &str) -> Option<(i32, i32, i32, i32, i32)> {
    let ds = dss.get(name).await.ok()?;
    let s = ds.status?;
    (s.observed_generation >= ds.metadata.generation).then_some((
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_ready,
        s.updated_number_scheduled.unwrap_or(0),
        s.number_available.unwrap_or(0),
    ))
}

fn nodes_of(m: &BTreeMap<String, (String, String)>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_follows_nodes_and_rolls_its_template() {
    let cl = start().await;
    let client = cl.client.clone();
    // k8s-m is tainted NoSchedule (control plane): no daemon there.
    let nodes = [
        ("k8s-m", "192.0.2.10", true),
        ("k8s-w1", "192.0.2.11", false),
        ("k8s-w2", "192.0.2.12", false),
    ];
    for (name, ip, cp) in nodes {
        add_node(&client, name, ip, cp).await;
    }
    let _heartbeats = heartbeats(
        client.clone(),
        &[
            ("k8s-m", "192.0.2.10"),
            ("k8s-w1", "192.0.2.11"),
            ("k8s-w2", "192.0.2.12"),
            ("k8s-w3", "192.0.2.13"),
        ],
    );
    let _kubelets = fake_kubelets(client.clone(), &["k8s-m", "k8s-w1", "k8s-w2", "k8s-w3"]);
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    dss.create(&PostParams::default(), &daemonset("agent", "agent:1", None))
        .await
        .expect("create daemonset");

    let first = eventually(30, "a Ready pod on each untainted node", || async {
        let m = placement(&client, "agent").await?;
        (nodes_of(&m) == ["k8s-w1", "k8s-w2"] && counts(&dss, "agent").await? == (2, 2, 2, 2, 2))
            .then_some(m)
    })
    .await;
    for (pod, _) in first.values() {
        assert!(
            pod.starts_with("agent-") && pod.len() == "agent-".len() + 5,
            "{pod}"
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods.get(&first["k8s-w1"].0).await.expect("pod");
    let owner = &p.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("DaemonSet", Some(true))
    );
    let hash1 = p.labels()["controller-revision-hash"].clone();
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let rev = revs.get(&format!("agent-{hash1}")).await.expect("revision");
    assert_eq!(rev.revision, 1);

    // A new node gets its pod.
    add_node(&client, "k8s-w3", "192.0.2.13", false).await;
    eventually(30, "a pod on the new node", || async {
        let m = placement(&client, "agent").await?;
        (nodes_of(&m) == ["k8s-w1", "k8s-w2", "k8s-w3"]
            && counts(&dss, "agent").await? == (3, 3, 3, 3, 3))
            .then_some(())
    })
    .await;

    // A template change rolls every pod (maxUnavailable 1, the default).
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    dss.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("patch template");
    let rolled = eventually(60, "the rollout", || async {
        let m = placement(&client, "agent").await?;
        (m.len() == 3
            && m.values().all(|(_, image)| image == "agent:2")
            && counts(&dss, "agent").await? == (3, 3, 3, 3, 3))
            .then_some(m)
    })
    .await;
    for (node, (pod, _)) in &rolled {
        assert_ne!(
            Some(pod),
            first.get(node).map(|(p, _)| p),
            "replaced on {node}"
        );
    }
    let list = revs.list(&ListParams::default()).await.expect("revisions");
    let mut numbers: Vec<i64> = list.items.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_node_selector_follows_labels() {
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-w1", "192.0.2.11", false).await;
    add_node(&client, "k8s-w2", "192.0.2.12", false).await;
    let _heartbeats = heartbeats(
        client.clone(),
        &[("k8s-w1", "192.0.2.11"), ("k8s-w2", "192.0.2.12")],
    );
    let _kubelets = fake_kubelets(client.clone(), &["k8s-w1", "k8s-w2"]);
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    dss.create(
        &PostParams::default(),
        &daemonset("ssd", "agent:1", Some(json!({"disk": "ssd"}))),
    )
    .await
    .expect("create daemonset");
    eventually(30, "no node selected", || async {
        (counts(&dss, "ssd").await? == (0, 0, 0, 0, 0)).then_some(())
    })
    .await;

    let nodes: Api<Node> = Api::all(client.clone());
    let label = |v: serde_json::Value| json!({"metadata": {"labels": {"disk": v}}});
    nodes
        .patch(
            "k8s-w2",
            &PatchParams::default(),
            &Patch::Merge(&label(json!("ssd"))),
        )
        .await
        .expect("label node");
    eventually(30, "a pod on the labelled node", || async {
        let m = placement(&client, "ssd").await?;
        (nodes_of(&m) == ["k8s-w2"] && counts(&dss, "ssd").await? == (1, 1, 1, 1, 1)).then_some(())
    })
    .await;

    // The label goes: so does the pod.
    nodes
        .patch(
            "k8s-w2",
            &PatchParams::default(),
            &Patch::Merge(&label(serde_json::Value::Null)),
        )
        .await
        .expect("unlabel node");
    eventually(30, "the pod deleted from the unlabelled node", || async {
        let m = placement(&client, "ssd").await?;
        (m.is_empty() && counts(&dss, "ssd").await? == (0, 0, 0, 0, 0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_daemon_pod_is_killed_and_replaced() {
    use k8s_openapi::api::core::v1::Event;
    let cl = start().await;
    let client = cl.client.clone();
    add_node(&client, "k8s-w1", "192.0.2.11", false).await;
    let _heartbeats = heartbeats(client.clone(), &[("k8s-w1", "192.0.2.11")]);
    let _kubelets = fake_kubelets(client.clone(), &["k8s-w1"]);
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    dss.create(&PostParams::default(), &daemonset("flaky", "agent:1", None))
        .await
        .expect("create daemonset");
    let first = eventually(30, "a Ready pod", || async {
        let m = placement(&client, "flaky").await?;
        (counts(&dss, "flaky").await? == (1, 1, 1, 1, 1)).then(|| m["k8s-w1"].0.clone())
    })
    .await;

    // The kubelet reports it Failed: the controller kills it, says so, and makes another.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.patch_status(
        &first,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await
    .expect("fail the pod");
    eventually(30, "a replacement", || async {
        let m = placement(&client, "flaky").await?;
        m.get("k8s-w1").filter(|(p, _)| *p != first).map(|_| ())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let said = eventually(30, "the FailedDaemonPod event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedDaemonPod"))
    })
    .await;
    assert_eq!(said.type_.as_deref(), Some("Warning"));
    assert_eq!(
        said.message.as_deref(),
        Some(
            format!("Found failed daemon pod default/{first} on node k8s-w1, will try to kill it")
                .as_str()
        )
    );
    assert_eq!(said.involved_object.name.as_deref(), Some("flaky"));
}
