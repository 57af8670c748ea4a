//! Unit tests of the binder's decisions.

use super::*;
use serde_json::{json, Value};

fn pvc(name: &str, spec: Value, anns: Value) -> PersistentVolumeClaim {
    let mut s = json!({"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}"), "annotations": anns},
        "spec": s, "status": {"phase": "Pending"}}))
    .unwrap()
}

fn pv(name: &str, size: &str, class: &str, phase: &str, extra: Value) -> PersistentVolume {
    let mut s = json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
        "capacity": {"storage": size}, "storageClassName": class, "hostPath": {"path": "/x"},
        "persistentVolumeReclaimPolicy": "Retain"});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name}, "spec": s, "status": {"phase": phase}}))
    .unwrap()
}

fn class(name: &str, mode: &str) -> StorageClass {
    serde_json::from_value(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": "rancher.io/local-path",
        "volumeBindingMode": mode}),
    )
    .unwrap()
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
    .unwrap()
}

fn pinned(node: &str) -> Value {
    json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}})
}

#[test]
fn the_smallest_fitting_available_volume_of_the_class_is_chosen() {
    let claim = pvc("c", json!({"storageClassName": "fast"}), json!({}));
    let vols = vec![
        pv("big", "10Gi", "fast", "Available", json!({})),
        pv("small", "512Mi", "fast", "Available", json!({})),
        pv("fit", "2Gi", "fast", "Available", json!({})),
        pv("other-class", "1Gi", "slow", "Available", json!({})),
        pv("released", "1Gi", "fast", "Released", json!({})),
        pv(
            "rwx-only",
            "1Gi",
            "fast",
            "Available",
            json!({"accessModes": ["ReadWriteMany"]}),
        ),
    ];
    let sc = class("fast", "Immediate");
    assert_eq!(
        plan_claim(&claim, &vols, Some(&sc), None),
        ClaimAction::Bind("fit".into())
    );
}

#[test]
fn a_selector_limits_the_volumes() {
    let claim = pvc(
        "c",
        json!({"storageClassName": "", "selector": {"matchLabels": {"tier": "db"}}}),
        json!({}),
    );
    let mut labelled = pv("labelled", "5Gi", "", "Available", json!({}));
    labelled.metadata.labels = Some([("tier".to_string(), "db".to_string())].into());
    let vols = vec![pv("plain", "1Gi", "", "Available", json!({})), labelled];
    assert_eq!(
        plan_claim(&claim, &vols, None, None),
        ClaimAction::Bind("labelled".into())
    );
    assert_eq!(
        plan_claim(&claim, &vols[..1], None, None),
        ClaimAction::Pending(
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into()
        )
    );
}

#[test]
fn wait_for_first_consumer_binds_only_on_the_selected_node() {
    let sc = class("standard", "WaitForFirstConsumer");
    let vols = vec![pv("on-a", "1Gi", "standard", "Available", pinned("a"))];
    let claim = pvc("c", json!({"storageClassName": "standard"}), json!({}));
    assert_eq!(
        plan_claim(&claim, &vols, Some(&sc), None),
        ClaimAction::WaitForFirstConsumer
    );
    let on_b = pvc(
        "c",
        json!({"storageClassName": "standard"}),
        json!({"volume.kubernetes.io/selected-node": "b"}),
    );
    assert_eq!(
        plan_claim(&on_b, &vols, Some(&sc), Some(&node("b"))),
        ClaimAction::Provision("rancher.io/local-path".into())
    );
    assert_eq!(
        plan_claim(&on_b, &vols, Some(&sc), Some(&node("a"))),
        ClaimAction::Bind("on-a".into())
    );
}

#[test]
fn a_volume_pre_bound_to_the_claim_wins() {
    let sc = class("standard", "WaitForFirstConsumer");
    let claim = pvc("c", json!({"storageClassName": "standard"}), json!({}));
    let made = pv(
        "pvc-uid-c",
        "1Gi",
        "standard",
        "Pending",
        json!({"claimRef": {"namespace": "d", "name": "c", "uid": "uid-c"}}),
    );
    assert_eq!(
        plan_claim(&claim, &[made], Some(&sc), None),
        ClaimAction::Bind("pvc-uid-c".into())
    );
}

#[test]
fn a_missing_class_and_a_named_volume() {
    let claim = pvc("c", json!({"storageClassName": "gone"}), json!({}));
    assert_eq!(
        plan_claim(&claim, &[], None, None),
        ClaimAction::Pending(
            "Warning",
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"gone\" not found".into()
        )
    );
    let named = pvc(
        "c",
        json!({"storageClassName": "", "volumeName": "v"}),
        json!({}),
    );
    assert_eq!(plan_claim(&named, &[], None, None), ClaimAction::Nothing);
    let tiny = pv("v", "1Mi", "", "Available", json!({}));
    assert_eq!(
        plan_claim(&named, &[tiny], None, None),
        ClaimAction::Pending(
            "Warning",
            "VolumeMismatch",
            "Cannot bind to requested volume \"v\": requested PV is too small".into()
        )
    );
    let taken = pv(
        "v",
        "1Gi",
        "",
        "Bound",
        json!({"claimRef": {"namespace": "d", "name": "other", "uid": "x"}}),
    );
    assert_eq!(
        plan_claim(&named, &[taken], None, None),
        ClaimAction::Pending(
            "Warning",
            "FailedBinding",
            "volume \"v\" already bound to a different claim.".into()
        )
    );
}

#[test]
fn bound_claims_finish_or_are_lost() {
    let bound = pvc(
        "c",
        json!({"volumeName": "v"}),
        json!({"pv.kubernetes.io/bind-completed": "yes"}),
    );
    let mine = pv(
        "v",
        "1Gi",
        "",
        "Bound",
        json!({"claimRef": {"namespace": "d", "name": "c", "uid": "uid-c"}}),
    );
    assert_eq!(
        plan_claim(&bound, &[mine], None, None),
        ClaimAction::FinishBind("v".into())
    );
    assert_eq!(
        plan_claim(&bound, &[], None, None),
        ClaimAction::Lost(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
        )
    );
    let other = pv(
        "v",
        "1Gi",
        "",
        "Bound",
        json!({"claimRef": {"namespace": "d", "name": "c2", "uid": "x"}}),
    );
    assert!(matches!(
        plan_claim(&bound, &[other], None, None),
        ClaimAction::Lost("ClaimMisbound", _)
    ));
}

#[test]
fn volume_phases_follow_their_claims() {
    let free = pv("v", "1Gi", "", "Pending", json!({}));
    assert_eq!(plan_volume(&free, None), VolumeAction::Phase("Available"));
    let claimed = json!({"claimRef": {"namespace": "d", "name": "c", "uid": "uid-c"}});
    let bound_pv = pv("v", "1Gi", "", "Available", claimed.clone());
    let claim = pvc("c", json!({"volumeName": "v"}), json!({}));
    assert_eq!(
        plan_volume(&bound_pv, Some(&claim)),
        VolumeAction::Phase("Bound")
    );
    // The claim is gone: Released, reclaimed by policy.
    assert_eq!(
        plan_volume(&bound_pv, None),
        VolumeAction::Release(Reclaim::Retain)
    );
    let mut deleting = pv("v", "1Gi", "", "Bound", claimed.clone());
    deleting
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_reclaim_policy = Some("Delete".into());
    assert!(matches!(
        plan_volume(&deleting, None),
        VolumeAction::Release(Reclaim::Fail(m)) if m.contains("no deletable volume plugin matched")
    ));
    deleting.metadata.annotations = Some(
        [(
            PROVISIONED_BY.to_string(),
            "rancher.io/local-path".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        plan_volume(&deleting, None),
        VolumeAction::Release(Reclaim::External)
    );
    let released = pv("v", "1Gi", "", "Released", claimed);
    assert_eq!(plan_volume(&released, None), VolumeAction::Nothing);
    // A claim of the same name but another uid is another claim.
    let mut newer = pvc("c", json!({}), json!({}));
    newer.metadata.uid = Some("new".into());
    assert_eq!(
        plan_volume(&bound_pv, Some(&newer)),
        VolumeAction::Release(Reclaim::Retain)
    );
}
