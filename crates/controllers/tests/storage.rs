//! Integration tests of the storage controllers (PV binder, local-path provisioner,
//! pvc/pv protection) and the storage admission plugins against the real API server
//! (in-process). No scheduler or kubelet runs: the tests set the scheduler's
//! `volume.kubernetes.io/selected-node` annotation and the pods' phases themselves.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

async fn start_storage() -> Cluster {
    start_these_controllers(
        Duration::from_secs(40),
        &[
            "persistentvolume-binder",
            "pvc-protection",
            "pv-protection",
            "local-path-provisioner",
        ],
    )
    .await
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

async fn create_pvc(client: &Client, name: &str, spec: Value) -> PersistentVolumeClaim {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let mut s = json!({"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    api.create(
        &PostParams::default(),
        &from(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name}, "spec": s})),
    )
    .await
    .expect("create claim")
}

async fn claim(client: &Client, name: &str) -> Option<PersistentVolumeClaim> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    api.get_opt(name).await.expect("get claim")
}

fn phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Waits for an event of `reason` about the claim; returns its message.
async fn event_about(client: &Client, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(20, &format!("event {reason} about {name}"), || async {
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .and_then(|e| e.message)
    })
    .await
}

/// Plays the kubelet: the pod reached `phase`.
async fn set_pod_phase(client: &Client, ns: &str, name: &str, phase: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": phase}})),
    )
    .await
    .expect("pod status");
}

#[tokio::test]
async fn a_default_class_claim_is_provisioned_on_the_selected_node_and_deleted_with_its_directory()
{
    let cl = start_storage().await;
    let client = cl.client.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().to_str().expect("utf-8").to_string();
    add_node(&client, "n1", "10.0.0.1", false).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {
                "storage.skiff.dev/local-path": dir_s}}})),
        )
        .await
        .expect("annotate node");

    // The server installs the default class; admission gives it to the claim.
    let classes: Api<StorageClass> = Api::all(client.clone());
    let standard = classes.get("standard").await.expect("standard class");
    assert_eq!(standard.provisioner, "rancher.io/local-path");
    assert_eq!(
        standard.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    let created = create_pvc(&client, "data", json!({})).await;
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(phase(&created), "Pending");
    assert_eq!(created.finalizers(), ["kubernetes.io/pvc-protection"]);
    let msg = event_about(&client, "data", "WaitForFirstConsumer").await;
    assert_eq!(
        msg,
        "waiting for first consumer to be created before binding"
    );

    // The scheduler picks n1 for the claim's first pod.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.patch(
        "data",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {
            "volume.kubernetes.io/selected-node": "n1"}}})),
    )
    .await
    .expect("select node");
    let uid = created.uid().expect("uid");
    let pv_name = format!("pvc-{uid}");
    let bound = eventually(20, "the claim Bound", || async {
        claim(&client, "data").await.filter(|c| phase(c) == "Bound")
    })
    .await;
    let spec = bound.spec.clone().expect("spec");
    assert_eq!(spec.volume_name.as_deref(), Some(pv_name.as_str()));
    let status = bound.status.clone().expect("status");
    assert_eq!(status.capacity.expect("capacity")["storage"].0, "1Gi");
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let anns = bound.annotations();
    assert_eq!(anns["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(
        anns["volume.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    assert_eq!(
        anns["volume.beta.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );

    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = eventually(20, "the volume Bound", || async {
        pvs.get_opt(&pv_name)
            .await
            .ok()
            .flatten()
            .filter(|pv| pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    })
    .await;
    let v = serde_json::to_value(&pv).expect("json");
    assert_eq!(
        v["spec"]["hostPath"],
        json!({"path": format!("{dir_s}/{pv_name}_default_data"), "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]})
    );
    assert_eq!(v["spec"]["claimRef"]["uid"], uid);
    assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(v["spec"]["storageClassName"], "standard");
    assert_eq!(
        v["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert_eq!(
        v["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );
    assert_eq!(
        event_about(&client, "data", "ProvisioningSucceeded").await,
        format!("Successfully provisioned volume {pv_name}")
    );
    assert!(event_about(&client, "data", "ExternalProvisioning")
        .await
        .starts_with("Waiting for a volume to be created either by the external provisioner 'rancher.io/local-path'"));

    // Deleting the claim releases the volume; a helper pod on n1 removes the directory.
    pvcs.delete("data", &DeleteParams::default())
        .await
        .expect("delete claim");
    eventually(20, "the claim gone", || async {
        claim(&client, "data").await.is_none().then_some(())
    })
    .await;
    let helper = format!("helper-pod-delete-{pv_name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let pod = eventually(20, "the helper pod", || async {
        pods.get_opt(&helper).await.ok().flatten()
    })
    .await;
    let p = serde_json::to_value(&pod).expect("json");
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["spec"]["restartPolicy"], "Never");
    assert_eq!(p["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(p["spec"]["volumes"][0]["hostPath"]["path"], dir_s);
    assert_eq!(
        p["spec"]["containers"][0]["env"][0],
        json!({"name": "VOL_DIR", "value": format!("{dir_s}/{pv_name}_default_data")})
    );
    // A failed helper is retried after a back-off, with an event.
    set_pod_phase(&client, "kube-system", &helper, "Failed").await;
    let events: Api<Event> = Api::all(client.clone());
    eventually(20, "VolumeFailedDelete", || async {
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={pv_name}")))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("VolumeFailedDelete"))
    })
    .await;
    let again = eventually(20, "a second helper pod", || async {
        pods.get_opt(&helper)
            .await
            .ok()
            .flatten()
            .filter(|p| p.uid() != pod.uid())
    })
    .await;
    assert_ne!(again.uid(), pod.uid());
    set_pod_phase(&client, "kube-system", &helper, "Succeeded").await;
    eventually(20, "the volume and helper pod gone", || async {
        let pv_gone = pvs.get_opt(&pv_name).await.ok()?.is_none();
        let pod_gone = pods.get_opt(&helper).await.ok()?.is_none();
        (pv_gone && pod_gone).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_immediate_class_binds_a_premade_volume_and_retains_it() {
    let cl = start_storage().await;
    let client = cl.client.clone();
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &from(
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "manual"}, "provisioner": "kubernetes.io/no-provisioner",
                "reclaimPolicy": "Retain"}),
            ),
        )
        .await
        .expect("class");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for (name, size) in [("manual-big", "5Gi"), ("manual-fit", "2Gi")] {
        let pv = pvs
            .create(
                &PostParams::default(),
                &from(json!({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": name},
                    "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "manual", "hostPath": {"path": "/srv/x"}}})),
            )
            .await
            .expect("volume");
        assert_eq!(
            pv.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Pending")
        );
        assert_eq!(
            pv.spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref()),
            Some("Retain")
        );
    }
    eventually(20, "both volumes Available", || async {
        let l = pvs.list(&ListParams::default()).await.ok()?;
        l.items
            .iter()
            .all(|pv| pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available"))
            .then_some(())
    })
    .await;
    create_pvc(&client, "db", json!({"storageClassName": "manual"})).await;
    let bound = eventually(20, "the claim Bound", || async {
        claim(&client, "db").await.filter(|c| phase(c) == "Bound")
    })
    .await;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("manual-fit")
    );
    assert_eq!(
        bound.status.clone().unwrap().capacity.unwrap()["storage"].0,
        "2Gi"
    );
    assert_eq!(
        bound.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    let pv = eventually(20, "the volume Bound", || async {
        pvs.get("manual-fit")
            .await
            .ok()
            .filter(|pv| pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    })
    .await;
    assert_eq!(
        pv.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );

    // Retain: the claim goes, the volume stays Released.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.delete("db", &DeleteParams::default())
        .await
        .expect("delete claim");
    eventually(20, "the volume Released", || async {
        pvs.get("manual-fit")
            .await
            .ok()
            .filter(|pv| pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released"))
    })
    .await;
}

#[tokio::test]
async fn protection_keeps_a_claim_while_a_pod_uses_it() {
    let cl = start_storage().await;
    let client = cl.client.clone();
    create_pvc(&client, "used", json!({"storageClassName": ""})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &from(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "used"}}]}}),
        ),
    )
    .await
    .expect("pod");
    set_pod_phase(&client, "default", "user", "Running").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.delete("used", &DeleteParams::default())
        .await
        .expect("delete claim");
    let deleting = claim(&client, "used").await.expect("claim kept");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    // A change of the pod makes the controller look again: the claim stays.
    pods.patch(
        "user",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"poke": "1"}}})),
    )
    .await
    .expect("label pod");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    // The binder's event about the claim shows the controllers are running.
    eventually(20, "the binder's event", || async {
        events
            .list(&ListParams::default().fields("involvedObject.name=used"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedBinding"))
    })
    .await;
    assert!(
        claim(&client, "used").await.is_some(),
        "a used claim was deleted"
    );
    // The pod finishes: the claim goes.
    set_pod_phase(&client, "default", "user", "Succeeded").await;
    eventually(20, "the claim gone", || async {
        claim(&client, "used").await.is_none().then_some(())
    })
    .await;
}
