//! Unit tests of field management with golden FieldsV1 documents (as kube-apiserver
//! writes them for the same objects).

use serde_json::{json, Value};

use super::*;

fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
    crate::registry::lookup(group, version, plural).expect("registered")
}

fn op<'a>(manager: &'a str, api_version: &'a str) -> Operation<'a> {
    Operation {
        manager,
        api_version,
        subresource: None,
        time: "2026-01-01T00:00:00Z",
    }
}

/// A FieldsV1 document kube-apiserver wrote for the same object, compared as JSON. These
/// are references taken from kube-apiserver, not output of ours, so `UPDATE_GOLDEN` must
/// not rewrite them: they are read, never written (not `skiff_testkit::golden`).
fn kube_apiserver_wrote(name: &str) -> Value {
    let path = format!(
        "{}/src/managedfields/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("golden json")
}

/// The seed-like Deployment as the server stores it after defaulting.
fn defaulted_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
            "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "httpd", "image": "busybox",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {},
                        "imagePullPolicy": "Always",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"
                    }],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "schedulerName": "default-scheduler", "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        }
    })
}

#[test]
fn create_records_an_update_entry_like_kube_apiserver() {
    let mut d = defaulted_deployment();
    record_update(
        info("apps", "v1", "deployments"),
        None,
        &mut d,
        &op("kubectl-client-side-apply", "apps/v1"),
    );
    let mf = d.pointer("/metadata/managedFields").expect("managedFields");
    assert_eq!(mf, &kube_apiserver_wrote("deployment-create.json"));
}

#[test]
fn unchanged_update_keeps_managed_fields() {
    let i = info("apps", "v1", "deployments");
    let mut d = defaulted_deployment();
    record_update(i, None, &mut d, &op("kubectl-client-side-apply", "apps/v1"));
    let mut again = d.clone();
    again["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("managedFields");
    record_update(
        i,
        Some(&d),
        &mut again,
        &Operation {
            time: "2030-01-01T00:00:00Z",
            ..op("other", "apps/v1")
        },
    );
    assert_eq!(again, d);
}

#[test]
fn an_empty_list_resets_the_entries() {
    let i = info("apps", "v1", "deployments");
    let mut d = defaulted_deployment();
    record_update(i, None, &mut d, &op("kubectl-client-side-apply", "apps/v1"));
    let mut reset = d.clone();
    reset["metadata"]["managedFields"] = json!([]);
    record_update(i, Some(&d), &mut reset, &op("x", "apps/v1"));
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn update_takes_changed_fields_from_other_managers() {
    let i = info("apps", "v1", "deployments");
    let mut d = defaulted_deployment();
    record_update(i, None, &mut d, &op("kubectl-client-side-apply", "apps/v1"));
    let mut scaled = d.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(i, Some(&d), &mut scaled, &op("kubectl-scale", "apps/v1"));
    let entries = decode(&scaled).expect("entries");
    assert_eq!(entries.len(), 2);
    let replicas = Path::fields(&["spec", "replicas"]);
    let owner: Vec<&str> = entries
        .iter()
        .filter(|e| e.set.has(&replicas.0))
        .map(|e| e.manager.as_str())
        .collect();
    assert_eq!(owner, vec!["kubectl-scale"]);
}

#[test]
fn status_writes_are_a_separate_entry() {
    let i = info("apps", "v1", "deployments");
    let mut d = defaulted_deployment();
    record_update(i, None, &mut d, &op("kubectl-client-side-apply", "apps/v1"));
    let mut s = d.clone();
    s["status"] = json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
    record_update(
        i,
        Some(&d),
        &mut s,
        &Operation {
            subresource: Some("status"),
            ..op("kube-controller-manager", "apps/v1")
        },
    );
    let entries = decode(&s).expect("entries");
    let st = entries
        .iter()
        .find(|e| e.subresource == "status")
        .expect("status entry");
    assert_eq!(
        st.set.to_fields_v1(),
        json!({"f:status": {".": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
    );
}

fn apply_config(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "httpd", "image": "busybox", "ports": [{"containerPort": 80}]}]}}}
    })
}

#[test]
fn apply_of_a_new_object_owns_exactly_the_configuration() {
    let i = info("apps", "v1", "deployments");
    let out = apply(i, None, &apply_config(2), &op("kubectl", "apps/v1"), false).expect("apply");
    let mf = out
        .pointer("/metadata/managedFields")
        .expect("managedFields");
    assert_eq!(mf, &kube_apiserver_wrote("deployment-apply.json"));
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn apply_conflicts_with_a_client_side_apply_manager() {
    let i = info("apps", "v1", "deployments");
    let mut d = defaulted_deployment();
    record_update(i, None, &mut d, &op("kubectl-client-side-apply", "apps/v1"));
    let err = apply(
        i,
        Some(&d),
        &apply_config(3),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect_err("conflict");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        err.causes(),
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"}])
    );
    // Same values are shared, not conflicting.
    let shared = apply(
        i,
        Some(&d),
        &apply_config(2),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect("no conflict");
    let entries = decode(&shared).expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].operation, "Apply");
    // Forcing takes the field over.
    let forced = apply(
        i,
        Some(&d),
        &apply_config(3),
        &op("kubectl", "apps/v1"),
        true,
    )
    .expect("forced");
    assert_eq!(forced["spec"]["replicas"], 3);
    let entries = decode(&forced).expect("entries");
    let replicas = Path::fields(&["spec", "replicas"]);
    let owners: Vec<&str> = entries
        .iter()
        .filter(|e| e.set.has(&replicas.0))
        .map(|e| e.manager.as_str())
        .collect();
    assert_eq!(owners, vec!["kubectl"]);
}

#[test]
fn apply_removes_fields_the_manager_stopped_applying() {
    let i = info("apps", "v1", "deployments");
    let mut cfg = apply_config(2);
    cfg["metadata"]["labels"]["tier"] = json!("front");
    cfg["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "side", "image": "busybox"}));
    let first = apply(i, None, &cfg, &op("kubectl", "apps/v1"), false).expect("first");
    assert_eq!(first["metadata"]["labels"]["tier"], "front");
    let second = apply(
        i,
        Some(&first),
        &apply_config(2),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect("2nd");
    assert!(second["metadata"]["labels"].get("tier").is_none());
    // A list emptied by the pruning goes with it.
    let mut no_ports = apply_config(2);
    no_ports["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("ports");
    let third = apply(
        i,
        Some(&second),
        &no_ports,
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect("3");
    assert!(third["spec"]["template"]["spec"]["containers"][0]
        .get("ports")
        .is_none());
    let containers = second["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    // A field another manager also owns stays.
    let mut labelled = first.clone();
    labelled["metadata"]["labels"]["extra"] = json!("x");
    record_update(
        i,
        Some(&first),
        &mut labelled,
        &op("kubectl-label", "apps/v1"),
    );
    let mut cfg2 = apply_config(2);
    cfg2["metadata"]["labels"]["extra"] = json!("x");
    let shared = apply(i, Some(&labelled), &cfg2, &op("kubectl", "apps/v1"), false).expect("3");
    let after = apply(
        i,
        Some(&shared),
        &apply_config(2),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect("4");
    assert_eq!(after["metadata"]["labels"]["extra"], "x");
}

#[test]
fn service_ports_are_keyed_by_port_and_protocol() {
    let i = info("", "v1", "services");
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "type": "ClusterIP", "sessionAffinity": "None"}
    });
    record_update(i, None, &mut svc, &op("kubectl-create", "v1"));
    let mf = &svc["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(
        mf,
        &json!({"f:spec": {
            "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
            "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}})
    );
}

#[test]
fn old_update_managers_are_merged_into_ancient_changes() {
    let i = info("", "v1", "configmaps");
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"}, "data": {}});
    for n in 0..12 {
        let mut next = cm.clone();
        next["data"][format!("k{n}")] = json!("v");
        let manager = format!("m{n:02}");
        let time = format!("2026-01-01T00:00:{n:02}Z");
        record_update(
            i,
            Some(&cm),
            &mut next,
            &Operation {
                time: &time,
                ..op(&manager, "v1")
            },
        );
        cm = next;
    }
    let entries = decode(&cm).expect("entries");
    assert_eq!(entries.len(), 10);
    let ancient = entries
        .iter()
        .find(|e| e.manager == "ancient-changes")
        .expect("bucket");
    assert_eq!(ancient.set.paths().len(), 3);
    assert_eq!(ancient.time.as_deref(), Some("2026-01-01T00:00:02Z"));
}

#[test]
fn undeclared_fields_use_list_keys_in_their_paths() {
    let mut cfg = apply_config(1);
    cfg["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
    cfg["spec"]["bogus"] = json!(1);
    cfg["metadata"]["labels"]["free"] = json!("form");
    let ty = Ty::of_kind("apps", "v1", "Deployment");
    let paths: Vec<String> = walk::undeclared_fields(&ty, &cfg)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        paths,
        vec![
            ".spec.template.spec.containers[name=\"httpd\"].imagee",
            ".spec.bogus"
        ]
    );
}

#[test]
fn objects_without_entries_belong_to_before_first_apply() {
    let i = info("apps", "v1", "deployments");
    let d = defaulted_deployment();
    let err = apply(
        i,
        Some(&d),
        &apply_config(3),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect_err("conflict");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let ok = apply(
        i,
        Some(&d),
        &apply_config(2),
        &op("kubectl", "apps/v1"),
        false,
    )
    .expect("ok");
    let managers: Vec<String> = decode(&ok)
        .expect("entries")
        .into_iter()
        .map(|e| e.manager)
        .collect();
    assert_eq!(managers, vec!["kubectl", "before-first-apply"]);
}

#[test]
fn multiple_conflicts_are_grouped_by_manager() {
    let msg = conflict_message(&[
        Conflict {
            manager: "\"b\" using v1".into(),
            path: Path::fields(&["spec", "x"]),
        },
        Conflict {
            manager: "\"a\"".into(),
            path: Path::fields(&["spec", "y"]),
        },
    ]);
    assert_eq!(
        msg,
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.y\nconflicts with \"b\" using v1:\n- .spec.x"
    );
}

/// Cost of recording a create (run with `--ignored --nocapture`; figures in the report).
#[test]
#[ignore = "benchmark: run explicitly"]
fn bench_record_update_cost() {
    let i = info("", "v1", "pods");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x", "pod-template-hash": "abc"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority", "priority": 0}});
    let _ = Ty::of_kind("", "v1", "Pod");
    let n = 2000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let mut p = pod.clone();
        record_update(i, None, &mut p, &op("kube-controller-manager", "v1"));
    }
    let create = start.elapsed() / n;
    let mut base = pod.clone();
    record_update(i, None, &mut base, &op("kube-controller-manager", "v1"));
    let start = std::time::Instant::now();
    for _ in 0..n {
        let mut p = base.clone();
        p["status"] = json!({"phase": "Running", "podIP": "10.0.0.1"});
        record_update(
            i,
            Some(&base),
            &mut p,
            &Operation {
                subresource: Some("status"),
                ..op("kubelet", "v1")
            },
        );
    }
    let status = start.elapsed() / n;
    eprintln!("record_update per pod: create {create:?}, status update {status:?}");
}
