//! Integration tests of the StatefulSet controller against the real API server
//! (in-process), with the garbage collector and the pvc-protection controller. No
//! kubelet runs: the test makes pods Running and Ready (or Failed) through the status
//! subresource, as a kubelet would.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

async fn start_sts() -> Cluster {
    start_these_controllers(
        Duration::from_secs(40),
        // pvc-protection: the claims carry its finalizer (admission adds it).
        &["statefulset", "garbage-collector", "pvc-protection"],
    )
    .await
}

async fn namespace(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
    )
    .await
    .expect("namespace");
}

fn web(spec: Value) -> StatefulSet {
    let mut s = json!({"replicas": 3, "serviceName": "web",
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "httpd"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "www"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}]});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"}, "spec": s}))
    .expect("sts")
}

/// The set's pods not being deleted, by name.
async fn live_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut v: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    v.sort_by_key(|p| p.name_any());
    v
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

async fn wait_names(client: &Client, ns: &str, want: &[&str]) -> Vec<Pod> {
    eventually(20, &format!("pods {want:?}"), || async {
        let pods = live_pods(client, ns).await;
        (names(&pods) == want).then_some(pods)
    })
    .await
}

/// Plays the kubelet: the pod is Running and Ready (or in `phase`).
async fn set_phase(client: &Client, ns: &str, pod: &str, phase: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"phase": phase, "conditions": [{"type": "Ready",
        "status": if ready {"True"} else {"False"}, "lastTransitionTime": now}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pod status");
}

/// Makes every pod of the namespace that is not yet Ready Running and Ready, all along.
fn auto_ready(client: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let ns = ns.to_string();
    tokio::spawn(async move {
        loop {
            for p in live_pods(&client, &ns).await {
                if !skiff_api::helpers::pod_ready(&p) {
                    set_phase(&client, &ns, &p.name_any(), "Running", true).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn status(sets: &Api<StatefulSet>) -> Value {
    serde_json::to_value(sets.get("web").await.expect("sts").status).expect("status")
}

async fn event_messages(client: &Client, ns: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn ordered_ready_sets_create_in_order_scale_down_from_the_top_and_roll_updates() {
    let cl = start_sts().await;
    let ns = "sts-ordered";
    namespace(&cl.client, ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(cl.client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cl.client.clone(), ns);
    let spec = json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}});
    sets.create(&PostParams::default(), &web(spec))
        .await
        .expect("create");

    // One at a time, each waiting for its predecessor to be Running and Ready.
    let pods = wait_names(&cl.client, ns, &["web-0"]).await;
    let p = serde_json::to_value(&pods[0]).expect("pod");
    assert_eq!(p["spec"]["hostname"], "web-0");
    assert_eq!(p["spec"]["subdomain"], "web");
    assert_eq!(
        p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(
        p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-0"
    );
    let pvc = claims.get("www-web-0").await.expect("claim of web-0");
    assert_eq!(pvc.labels().get("app").map(String::as_str), Some("web"));
    assert!(
        pvc.owner_references().is_empty(),
        "in range, whenDeleted Retain"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(names(&live_pods(&cl.client, ns).await), ["web-0"]);
    set_phase(&cl.client, ns, "web-0", "Running", true).await;
    wait_names(&cl.client, ns, &["web-0", "web-1"]).await;
    set_phase(&cl.client, ns, "web-1", "Running", true).await;
    wait_names(&cl.client, ns, &["web-0", "web-1", "web-2"]).await;
    set_phase(&cl.client, ns, "web-2", "Running", true).await;
    let st = eventually(20, "3 ready replicas", || async {
        let st = status(&sets).await;
        (st["readyReplicas"] == 3 && st["availableReplicas"] == 3).then_some(st)
    })
    .await;
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["currentRevision"], st["updateRevision"]);
    let rev1 = st["updateRevision"].as_str().expect("revision").to_string();
    let revs: Api<ControllerRevision> = Api::namespaced(cl.client.clone(), ns);
    let r = revs.get(&rev1).await.expect("controller revision");
    assert_eq!(r.revision, 1);
    assert!(r.labels().contains_key("controller.kubernetes.io/hash"));
    for p in live_pods(&cl.client, ns).await {
        assert_eq!(p.labels()["controller-revision-hash"], rev1);
    }
    let events = eventually(20, "events", || async {
        let ev = event_messages(&cl.client, ns).await;
        ev.iter()
            .any(|e| e == "SuccessfulCreate create Pod web-2 in StatefulSet web successful")
            .then_some(ev)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| e
                == "SuccessfulCreate create Claim www-web-0 Pod web-0 in StatefulSet web success"),
        "{events:?}"
    );

    // Scale down: web-2 first; its claim goes with it (whenScaled: Delete).
    let patch = json!({"spec": {"replicas": 1}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale");
    wait_names(&cl.client, ns, &["web-0"]).await;
    eventually(20, "the claims of web-1 and web-2 deleted", || async {
        let left: Vec<String> = claims
            .list(&ListParams::default())
            .await
            .expect("claims")
            .items
            .iter()
            .map(|c| c.name_any())
            .collect();
        (left == ["www-web-0"]).then_some(())
    })
    .await;
    let ev = event_messages(&cl.client, ns).await;
    assert!(
        ev.iter()
            .any(|e| e == "SuccessfulDelete delete Pod web-2 in StatefulSet web successful"),
        "{ev:?}"
    );

    // A deleted pod comes back with its name and its claim.
    let pods: Api<Pod> = Api::namespaced(cl.client.clone(), ns);
    let old_uid = pods.get("web-0").await.expect("web-0").uid();
    let claim_uid = claims.get("www-web-0").await.expect("claim").uid();
    pods.delete("web-0", &Default::default())
        .await
        .expect("delete web-0");
    eventually(20, "web-0 recreated", || async {
        let p = pods.get_opt("web-0").await.expect("get")?;
        (p.uid() != old_uid).then_some(())
    })
    .await;
    assert_eq!(
        claims.get("www-web-0").await.expect("claim").uid(),
        claim_uid
    );

    // A template change rolls from the highest ordinal down.
    let kubelet = auto_ready(cl.client.clone(), ns);
    let patch = json!({"spec": {"replicas": 3}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale up");
    eventually(30, "3 ready replicas again", || async {
        (status(&sets).await["readyReplicas"] == 3).then_some(())
    })
    .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "httpd:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("update template");
    let st = eventually(30, "the rollout", || async {
        let st = status(&sets).await;
        (st["updatedReplicas"] == 3
            && st["readyReplicas"] == 3
            && st["currentRevision"] == st["updateRevision"]
            && st["updateRevision"] != rev1.as_str())
        .then_some(st)
    })
    .await;
    assert_eq!(st["observedGeneration"], 4);
    for p in live_pods(&cl.client, ns).await {
        assert_eq!(p.labels()["controller-revision-hash"], st["updateRevision"]);
        assert_eq!(
            p.spec.as_ref().expect("spec").containers[0]
                .image
                .as_deref(),
            Some("httpd:2")
        );
    }
    let r2 = revs
        .get(st["updateRevision"].as_str().expect("rev"))
        .await
        .expect("revision 2");
    assert_eq!(r2.revision, 2);
    kubelet.abort();
}

#[tokio::test]
async fn max_unavailable_replaces_several_pods_at_once() {
    let cl = start_sts().await;
    let ns = "sts-max-unavailable";
    namespace(&cl.client, ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(cl.client.clone(), ns);
    let spec = json!({"replicas": 4, "podManagementPolicy": "Parallel",
        "volumeClaimTemplates": null,
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}});
    sets.create(&PostParams::default(), &web(spec))
        .await
        .expect("create");
    let all = ["web-0", "web-1", "web-2", "web-3"];
    wait_names(&cl.client, ns, &all).await;
    for pod in all {
        set_phase(&cl.client, ns, pod, "Running", true).await;
    }
    let rev1 = eventually(20, "4 ready replicas", || async {
        let st = status(&sets).await;
        (st["readyReplicas"] == 4).then(|| st["updateRevision"].as_str().map(String::from))?
    })
    .await;

    // With no replaced pod Ready yet, the two highest ordinals go at once, and no more.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "httpd:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("update template");
    let pods = eventually(20, "web-2 and web-3 replaced", || async {
        let pods = live_pods(&cl.client, ns).await;
        let replaced: Vec<String> = pods
            .iter()
            .filter(|p| p.labels().get("controller-revision-hash") != Some(&rev1))
            .map(|p| p.name_any())
            .collect();
        (replaced == ["web-2", "web-3"]).then_some(pods)
    })
    .await;
    assert_eq!(names(&pods), all, "every ordinal is there");
    let st = status(&sets).await;
    assert_eq!(st["currentRevision"], rev1.as_str(), "{st}");

    // Once they are Ready, the rest follow.
    let kubelet = auto_ready(cl.client.clone(), ns);
    eventually(30, "the rollout", || async {
        let st = status(&sets).await;
        (st["updatedReplicas"] == 4
            && st["readyReplicas"] == 4
            && st["currentRevision"] == st["updateRevision"])
            .then_some(())
    })
    .await;
    kubelet.abort();
}

#[tokio::test]
async fn parallel_sets_create_at_once_and_recreate_failed_pods() {
    let cl = start_sts().await;
    let ns = "sts-parallel";
    namespace(&cl.client, ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(cl.client.clone(), ns);
    sets.create(
        &PostParams::default(),
        &web(
            json!({"podManagementPolicy": "Parallel", "volumeClaimTemplates": null,
            "ordinals": {"start": 1}}),
        ),
    )
    .await
    .expect("create");
    wait_names(&cl.client, ns, &["web-1", "web-2", "web-3"]).await;
    let pods: Api<Pod> = Api::namespaced(cl.client.clone(), ns);
    let uid = pods.get("web-2").await.expect("web-2").uid();
    set_phase(&cl.client, ns, "web-2", "Failed", false).await;
    eventually(20, "web-2 recreated", || async {
        let p = pods.get_opt("web-2").await.expect("get")?;
        (p.uid() != uid).then_some(())
    })
    .await;
    let ev = event_messages(&cl.client, ns).await;
    assert!(
        ev.iter().any(|e| e
            == &format!("RecreatingFailedPod StatefulSet {ns}/web is recreating failed Pod web-2")),
        "{ev:?}"
    );
}

#[tokio::test]
async fn the_api_server_validates_statefulsets_as_kube() {
    let cl = start_sts().await;
    let ns = "sts-validation";
    namespace(&cl.client, ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(cl.client.clone(), ns);
    let err = sets
        .create(
            &PostParams::default(),
            &web(json!({"podManagementPolicy": "Sometimes"})),
        )
        .await
        .expect_err("bad policy");
    let msg = format!("{err}");
    assert!(
        msg.contains("spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'"),
        "{msg}"
    );
    let created = sets
        .create(&PostParams::default(), &web(json!({"replicas": 0})))
        .await
        .expect("create");
    let spec = serde_json::to_value(&created.spec).expect("spec");
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(created.metadata.generation, Some(1));
    let patch = json!({"spec": {"serviceName": "other"}});
    let err = sets
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("immutable");
    assert!(format!("{err}").contains(
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    ), "{err}");
    // Status writes do not bump the generation; spec changes do.
    let patch = json!({"spec": {"replicas": 2}});
    let scaled = sets
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale");
    assert_eq!(scaled.metadata.generation, Some(2));
    let scale = sets.get_scale("web").await.expect("scale subresource");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
}
