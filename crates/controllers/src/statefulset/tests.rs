//! Unit tests of the StatefulSet plan: ordering, scale down, partitions, claims and
//! their retention owners, revisions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::plan::*;
use super::{revision_data, revision_hash, revision_template};

const SET_UID: &str = "set-uid";

fn set(extra: Value) -> StatefulSet {
    let mut v = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": SET_UID, "generation": 3},
        "spec": {"replicas": 3, "serviceName": "web", "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app": "web"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "httpd"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "data"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    merge(&mut v, extra);
    serde_json::from_value(v).expect("set")
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn template(image: &str) -> PodTemplateSpec {
    serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": image}]}}))
    .expect("template")
}

/// A pod of the set at `ordinal`, of revision `rev`, in `phase`, Ready or not.
fn pod(ordinal: i32, rev: &str, phase: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{ordinal}"), "namespace": "ns",
            "uid": format!("uid-{ordinal}"),
            "labels": {"app": "web", REVISION_LABEL: rev, POD_NAME_LABEL: format!("web-{ordinal}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": SET_UID, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "httpd"}],
            "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": format!("www-web-{ordinal}")}}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready",
            "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
    .expect("pod")
}

fn claim(name: &str, owners: Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
        "ownerReferences": owners}, "spec": {}}))
    .expect("claim")
}

struct Case {
    set: StatefulSet,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
}

fn run(c: &Case) -> Plan {
    let (cur, upd) = (template("httpd"), template("httpd:2"));
    let pods: Vec<&Pod> = c.pods.iter().collect();
    let claims: BTreeMap<String, &PersistentVolumeClaim> =
        c.claims.iter().map(|x| (x.name_any(), x)).collect();
    plan(&Input {
        set: &c.set,
        current: Revision {
            name: "web-cur",
            template: &cur,
        },
        update: Revision {
            name: "web-upd",
            template: &upd,
        },
        collision_count: 0,
        pods: &pods,
        claims: &claims,
        now: "2026-01-01T01:00:00Z".parse().expect("now"),
    })
}

/// The actions as short lines: `create web-1 [www-web-1]`, `delete web-2`...
fn lines(p: &Plan) -> Vec<String> {
    p.phases
        .iter()
        .flatten()
        .map(|a| match a {
            Action::CreatePod { pod, claims } => format!(
                "create {} [{}]",
                pod.name_any(),
                claims
                    .iter()
                    .map(|c| c.name_any())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Action::CreateClaims { pod, claims } => format!(
                "claims {pod} [{}]",
                claims
                    .iter()
                    .map(|c| c.name_any())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Action::DeletePod { name, .. } => format!("delete {name}"),
            Action::UpdatePod { pod } => format!("update {}", pod.name_any()),
            Action::SetClaimOwners { claim, owners } => format!(
                "owners {claim} [{}]",
                owners
                    .iter()
                    .map(|o| format!("{}/{}", o.kind, o.name))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect()
}

fn claims_of(n: i32) -> Vec<PersistentVolumeClaim> {
    (0..n)
        .map(|i| claim(&format!("www-web-{i}"), json!([])))
        .collect()
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_in_order() {
    let mut c = Case {
        set: set(json!({})),
        pods: vec![],
        claims: vec![],
    };
    assert_eq!(lines(&run(&c)), ["create web-0 [www-web-0]"]);
    // web-0 not yet Running and Ready: nothing more.
    c.pods = vec![pod(0, "web-upd", "Pending", false)];
    c.claims = claims_of(1);
    assert!(lines(&run(&c)).is_empty());
    c.pods = vec![pod(0, "web-upd", "Running", false)];
    assert!(lines(&run(&c)).is_empty());
    c.pods = vec![pod(0, "web-upd", "Running", true)];
    assert_eq!(lines(&run(&c)), ["create web-1 [www-web-1]"]);
    // A claim that exists is reused, not created.
    c.claims = claims_of(2);
    assert_eq!(lines(&run(&c)), ["create web-1 []"]);
    // Parallel: every missing pod at once, whatever the others' state.
    c.set = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
    c.pods = vec![pod(0, "web-upd", "Pending", false)];
    let p = run(&c);
    assert!(p.parallel);
    assert_eq!(lines(&p), ["create web-1 []", "create web-2 [www-web-2]"]);
}

#[test]
fn new_pods_carry_the_identity_and_the_claims() {
    let s = set(json!({"spec": {"ordinals": {"start": 5}}}));
    let t = template("httpd");
    let p = new_pod(
        &s,
        Revision {
            name: "web-abc",
            template: &t,
        },
        6,
    );
    let v = serde_json::to_value(&p).expect("json");
    assert_eq!(v["metadata"]["name"], "web-6");
    assert_eq!(v["metadata"]["generateName"], "web-");
    assert_eq!(
        v["metadata"]["labels"],
        json!({"app": "web", POD_NAME_LABEL: "web-6", POD_INDEX_LABEL: "6", REVISION_LABEL: "web-abc"})
    );
    assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], SET_UID);
    assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(v["spec"]["hostname"], "web-6");
    assert_eq!(v["spec"]["subdomain"], "web");
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-6", "readOnly": false}}])
    );
    // Claims: `<template>-<set>-<ordinal>`, the template's labels plus the selector's.
    let claims = claims_for(&s, 6);
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].1.name_any(), "www-web-6");
    assert_eq!(claim_name("www", "web", 6), "www-web-6");
    assert_eq!(
        serde_json::to_value(claims[0].1.labels()).expect("labels"),
        json!({"app": "web", "tier": "data"})
    );
    // spec.ordinals.start: the pods are web-5..web-7.
    let c = Case {
        set: s,
        pods: vec![pod(5, "web-upd", "Running", true)],
        claims: vec![],
    };
    assert_eq!(lines(&run(&c)), ["create web-6 [www-web-6]"]);
    assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
    assert_eq!(parent_and_ordinal("my-web-0"), Some(("my-web", 0)));
    assert_eq!(parent_and_ordinal("web-x"), None);
    assert_eq!(parent_and_ordinal("web"), None);
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
    let ready = |o| pod(o, "web-upd", "Running", true);
    let mut c = Case {
        set: set(json!({"spec": {"replicas": 1}})),
        pods: vec![ready(0), ready(1), ready(2)],
        claims: claims_of(3),
    };
    assert_eq!(lines(&run(&c)), ["delete web-2"]);
    // While web-2 terminates, web-1 waits.
    let mut dying = ready(2);
    dying.metadata.deletion_timestamp = Some(crate::util::now());
    c.pods = vec![ready(0), ready(1), dying.clone()];
    assert!(lines(&run(&c)).is_empty());
    // A replica that is not Ready stops the scale down.
    c.pods = vec![pod(0, "web-upd", "Running", false), ready(1)];
    assert!(lines(&run(&c)).is_empty());
    // Unhealthy condemned pods do not block: the highest goes first, Ready or not.
    c.pods = vec![ready(0), pod(1, "web-upd", "Running", false), ready(2)];
    assert_eq!(lines(&run(&c)), ["delete web-2"]);
    c.pods = vec![ready(0), ready(1), pod(2, "web-upd", "Running", false)];
    assert_eq!(lines(&run(&c)), ["delete web-2"]);
    // Parallel: all at once.
    c.set = set(json!({"spec": {"replicas": 1, "podManagementPolicy": "Parallel"}}));
    c.pods = vec![ready(0), ready(1), ready(2)];
    assert_eq!(lines(&run(&c)), ["delete web-2", "delete web-1"]);
}

#[test]
fn failed_pods_are_deleted_to_be_recreated() {
    let c = Case {
        set: set(json!({})),
        pods: vec![
            pod(0, "web-upd", "Running", true),
            pod(1, "web-upd", "Failed", false),
        ],
        claims: claims_of(2),
    };
    let p = run(&c);
    assert_eq!(lines(&p), ["delete web-1"]);
    match &p.phases[0][0] {
        Action::DeletePod { warning, uid, .. } => {
            assert_eq!(uid, "uid-1");
            assert_eq!(
                warning.clone(),
                Some((
                    "RecreatingFailedPod".to_string(),
                    "StatefulSet ns/web is recreating failed Pod web-1".to_string()
                ))
            );
        }
        a => panic!("{a:?}"),
    }
    // The status no longer counts it.
    assert_eq!(p.status.replicas, 1);
}

#[test]
fn rolling_update_replaces_from_the_top_down_to_the_partition() {
    let cur = |o| pod(o, "web-cur", "Running", true);
    let upd = |o| pod(o, "web-upd", "Running", true);
    let mut c = Case {
        set: set(json!({})),
        pods: vec![cur(0), cur(1), cur(2)],
        claims: claims_of(3),
    };
    let p = run(&c);
    assert_eq!(lines(&p), ["delete web-2"]);
    assert_eq!(p.status.current_replicas, Some(2));
    // The replacement of web-2 is made of the update revision.
    c.pods = vec![cur(0), cur(1)];
    let p = run(&c);
    match &p.phases[0][0] {
        Action::CreatePod { pod, .. } => {
            assert_eq!(pod.labels()[REVISION_LABEL], "web-upd");
            assert_eq!(
                pod.spec.as_ref().expect("spec").containers[0]
                    .image
                    .as_deref(),
                Some("httpd:2")
            );
        }
        a => panic!("{a:?}"),
    }
    // web-2 updated but not Ready: wait.
    c.pods = vec![cur(0), cur(1), pod(2, "web-upd", "Running", false)];
    assert!(lines(&run(&c)).is_empty());
    c.pods = vec![cur(0), cur(1), upd(2)];
    assert_eq!(lines(&run(&c)), ["delete web-1"]);
    // Partition 2: web-0 and web-1 stay at the current revision, also when recreated.
    c.set = set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}));
    assert!(lines(&run(&c)).is_empty());
    c.pods = vec![cur(0), upd(2)];
    let p = run(&c);
    match &p.phases[0][0] {
        Action::CreatePod { pod, .. } => assert_eq!(pod.labels()[REVISION_LABEL], "web-cur"),
        a => panic!("{a:?}"),
    }
    // OnDelete: nothing is replaced; a deleted pod comes back at the update revision.
    c.set = set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
    c.pods = vec![cur(0), cur(1), cur(2)];
    assert!(lines(&run(&c)).is_empty());
    c.pods = vec![cur(0), cur(2)];
    match &run(&c).phases[0][0] {
        Action::CreatePod { pod, .. } => assert_eq!(pod.labels()[REVISION_LABEL], "web-upd"),
        a => panic!("{a:?}"),
    }
}

#[test]
fn max_unavailable_replaces_several_at_once() {
    let cur = |o| pod(o, "web-cur", "Running", true);
    let upd = |o| pod(o, "web-upd", "Running", true);
    let mut c = Case {
        set: set(
            json!({"spec": {"replicas": 5, "podManagementPolicy": "Parallel",
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
        ),
        pods: (0..5).map(cur).collect(),
        claims: claims_of(5),
    };
    let p = run(&c);
    assert_eq!(lines(&p), ["delete web-4", "delete web-3"]);
    assert_eq!(p.status.current_replicas, Some(3));
    // One of the two back but not Ready: one more may go, not two.
    c.pods = vec![
        cur(0),
        cur(1),
        cur(2),
        upd(3),
        pod(4, "web-upd", "Running", false),
    ];
    assert_eq!(lines(&run(&c)), ["delete web-2"]);
    // Two unavailable (one not Ready, one missing): wait, but recreate the missing one.
    c.pods = vec![cur(0), cur(1), upd(3), pod(4, "web-upd", "Running", false)];
    assert_eq!(lines(&run(&c)), ["create web-2 []"]);
    // A percentage rounds up (40% of 5 = 2); the partition still holds.
    c.set = set(
        json!({"spec": {"replicas": 5, "podManagementPolicy": "Parallel",
        "updateStrategy": {"rollingUpdate": {"maxUnavailable": "40%", "partition": 3}}}}),
    );
    c.pods = (0..5).map(cur).collect();
    assert_eq!(lines(&run(&c)), ["delete web-4", "delete web-3"]);
    c.pods = vec![cur(0), cur(1), cur(2), upd(3), upd(4)];
    assert!(lines(&run(&c)).is_empty());
}

#[test]
fn status_counts_and_completes_the_rollout() {
    let mut c = Case {
        set: set(json!({})),
        pods: vec![
            pod(0, "web-cur", "Running", true),
            pod(1, "web-upd", "Running", true),
            pod(2, "web-upd", "Pending", false),
        ],
        claims: claims_of(3),
    };
    let s = run(&c).status;
    assert_eq!(
        (
            s.replicas,
            s.ready_replicas,
            s.available_replicas,
            s.current_replicas,
            s.updated_replicas
        ),
        (3, Some(2), Some(2), Some(1), Some(2))
    );
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.current_revision.as_deref(), Some("web-cur"));
    assert_eq!(s.update_revision.as_deref(), Some("web-upd"));
    // All updated and Ready: the update revision becomes the current one.
    c.pods = (0..3).map(|o| pod(o, "web-upd", "Running", true)).collect();
    let s = run(&c).status;
    assert_eq!(s.current_revision.as_deref(), Some("web-upd"));
    assert_eq!(s.current_replicas, Some(3));
    // minReadySeconds: Ready since midnight, available after two hours only.
    c.set = set(json!({"spec": {"minReadySeconds": 7200}}));
    let p = run(&c);
    assert_eq!(p.status.available_replicas, Some(0));
    assert_eq!(p.requeue, Some(std::time::Duration::from_secs(7200)));
    // OrderedReady waits for availability too.
    c.pods.truncate(1);
    assert!(lines(&run(&c)).is_empty());
}

#[test]
fn retention_policy_sets_claim_owners() {
    let policy = |d: &str, s: &str| {
        set(json!({"spec": {"replicas": 1,
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": d, "whenScaled": s}}}))
    };
    let in_range = pod(0, "web-upd", "Running", true);
    let condemned = pod(1, "web-upd", "Running", true);
    let bare = claim("www-web-0", json!([]));
    let kinds = |refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>| {
        refs.iter()
            .map(|r| {
                assert_eq!(r.controller, Some(true));
                assert_eq!(r.block_owner_deletion, Some(true));
                format!("{}/{}", r.kind, r.name)
            })
            .collect::<Vec<_>>()
    };
    let s = policy("Retain", "Retain");
    assert!(claim_owners_up_to_date(&bare, &s, &in_range));
    assert!(kinds(claim_owners(&bare, &s, &condemned)).is_empty());
    let s = policy("Delete", "Retain");
    assert!(!claim_owners_up_to_date(&bare, &s, &in_range));
    assert_eq!(
        kinds(claim_owners(&bare, &s, &in_range)),
        ["StatefulSet/web"]
    );
    assert_eq!(
        kinds(claim_owners(&bare, &s, &condemned)),
        ["StatefulSet/web"]
    );
    let s = policy("Retain", "Delete");
    assert!(claim_owners_up_to_date(&bare, &s, &in_range));
    assert_eq!(kinds(claim_owners(&bare, &s, &condemned)), ["Pod/web-1"]);
    let s = policy("Delete", "Delete");
    assert_eq!(
        kinds(claim_owners(&bare, &s, &in_range)),
        ["StatefulSet/web"]
    );
    assert_eq!(kinds(claim_owners(&bare, &s, &condemned)), ["Pod/web-1"]);
    // Set-owned while in range, moved to the pod once scaled down.
    let owned = claim(
        "www-web-1",
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": SET_UID,
            "controller": true, "blockOwnerDeletion": true}]),
    );
    assert!(!claim_owners_up_to_date(&owned, &s, &condemned));
    // Another controller's claim is left alone; a stale reference too.
    let foreign = claim(
        "www-web-0",
        json!([{"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "x", "controller": true}]),
    );
    assert!(claim_owners_up_to_date(&foreign, &s, &in_range));
    let stale = claim(
        "www-web-1",
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "old", "controller": true}]),
    );
    assert!(claim_owners_up_to_date(&stale, &s, &condemned));
    // The plan: new claims carry their owners; a condemned pod's claim moves to it
    // before the pod is deleted.
    let c = Case {
        set: s.clone(),
        pods: vec![],
        claims: vec![],
    };
    match &run(&c).phases[0][0] {
        Action::CreatePod { claims, .. } => {
            assert_eq!(claims[0].owner_references()[0].kind, "StatefulSet")
        }
        a => panic!("{a:?}"),
    }
    let c = Case {
        set: s,
        pods: vec![in_range.clone(), condemned.clone()],
        claims: vec![
            claim(
                "www-web-0",
                json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": SET_UID, "controller": true, "blockOwnerDeletion": true}]),
            ),
            owned,
        ],
    };
    assert_eq!(
        lines(&run(&c)),
        ["owners www-web-1 [Pod/web-1]", "delete web-1"]
    );
    // A claim still owned by an earlier web-0 (whenScaled: Delete): wait for its deletion.
    let c = Case {
        set: policy("Retain", "Delete"),
        pods: vec![],
        claims: vec![claim(
            "www-web-0",
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "gone", "controller": true}]),
        )],
    };
    assert!(lines(&run(&c)).is_empty());
}

#[test]
fn revision_selection() {
    // The revision a new pod gets without a rollingUpdate block follows currentReplicas.
    let s = set(json!({"spec": {"updateStrategy": {"rollingUpdate": null}},
        "status": {"replicas": 3, "currentReplicas": 2}}));
    let (a, b) = (template("a"), template("b"));
    let cur = Revision {
        name: "cur",
        template: &a,
    };
    let upd = Revision {
        name: "upd",
        template: &b,
    };
    assert_eq!(revision_for(&s, cur, upd, 1).name, "cur");
    assert_eq!(revision_for(&s, cur, upd, 2).name, "upd");
    // Revision data round-trips the template and hashes stably.
    let data = revision_data(&a);
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    let rev: k8s_openapi::api::apps::v1::ControllerRevision = serde_json::from_value(json!({
        "metadata": {"name": "web-x"}, "revision": 1, "data": data.clone()}))
    .expect("rev");
    assert_eq!(revision_template(&rev), a);
    let h = revision_hash(&data, 0);
    assert_eq!(h, revision_hash(&data, 0));
    assert_ne!(h, revision_hash(&data, 1));
    assert_ne!(h, revision_hash(&revision_data(&b), 0));
    assert!(h.bytes().all(|c| crate::hash::SAFE_ALPHANUMS.contains(&c)));
}
