//! Behaviours real clients tripped over (issue 20's smaller differences), each as
//! kube-apiserver 1.33 has it: PATCH in the PartialObjectMetadata representation,
//! field selectors per kind and kube's error for the others, `componentstatuses`,
//! `kind` before `apiVersion` on the wire, and the groups `kubectl api-resources` lists.

use http::Request;
use serde_json::{json, Value};
use skiff_testkit::kubectl;

use crate::common;

const PARTIAL: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// One request; the status code and the body's text.
async fn call(
    c: &kube::Client,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = req.body(body).expect("request");
    let resp = c
        .send(req.map(kube::client::Body::from))
        .await
        .expect("sent");
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

async fn create(c: &kube::Client, uri: &str, obj: Value) {
    let (code, text) = call(
        c,
        "POST",
        uri,
        &[("content-type", "application/json")],
        Some(obj),
    )
    .await;
    assert_eq!(code, 201, "{text}");
}

fn names(list: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(list).expect("JSON");
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_answers_in_the_partial_metadata_representation() {
    let s = common::start().await;
    let c = s.client();
    create(
        &c,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "meta"}, "data": {"a": "b"}}),
    )
    .await;
    let (code, text) = call(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/meta",
        &[
            ("content-type", "application/merge-patch+json"),
            ("accept", PARTIAL),
        ],
        Some(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["kind"], "PartialObjectMetadata", "{text}");
    assert_eq!(v["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(v["metadata"]["labels"]["x"], "y");
    assert!(v.get("data").is_none(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_are_kube_apiservers_per_kind() {
    let s = common::start().await;
    let c = s.client();
    for (name, unschedulable) in [("ready", None), ("cordoned", Some(true))] {
        let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        if let Some(u) = unschedulable {
            node["spec"] = json!({"unschedulable": u});
        }
        create(&c, "/api/v1/nodes", node).await;
    }
    let (code, text) = call(
        &c,
        "GET",
        "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse",
        &[],
        None,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(names(&text), ["ready"]);

    create(
        &c,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let (_, text) = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods?fieldSelector=spec.restartPolicy%3DNever,status.podIP%3D",
        &[],
        None,
    )
    .await;
    assert_eq!(names(&text), ["p"]);

    // Unsupported fields: 400 with kube-apiserver's messages.
    for (uri, message) in [
        (
            "/api/v1/namespaces/default/pods?fieldSelector=status.hostIP%3D1.2.3.4",
            "field label not supported: status.hostIP",
        ),
        (
            "/api/v1/namespaces/default/configmaps?fieldSelector=data.a%3Db",
            r#""data.a" is not a known field selector: only "metadata.name", "metadata.namespace""#,
        ),
        (
            "/api/v1/namespaces/default/pods?watch=true&fieldSelector=spec.foo%3Dx",
            "field label not supported: spec.foo",
        ),
    ] {
        let (code, text) = call(&c, "GET", uri, &[], None).await;
        let st: Value = serde_json::from_str(&text).expect("Status");
        assert_eq!(
            (code, st["reason"].as_str(), st["message"].as_str()),
            (400, Some("BadRequest"), Some(message)),
            "{uri}"
        );
    }

    // And so kubectl says it.
    let bin = kubectl::version("1.33").expect("kubectl 1.33");
    let k = s.kubectl(bin);
    let out = tokio::task::spawn_blocking(move || {
        let ready = k.ok(&[
            "get",
            "nodes",
            "--field-selector",
            "spec.unschedulable=false",
            "-o",
            "name",
        ]);
        let bad = k.run(&["get", "pods", "--field-selector", "status.hostIP=1.2.3.4"]);
        (ready, bad)
    })
    .await
    .expect("kubectl");
    assert_eq!(out.0.trim(), "node/ready");
    assert!(!out.1.success);
    // kubectl wraps the server's message in its own words, as against kube-apiserver.
    assert_eq!(
        out.1.combined().trim(),
        r#"Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match label selector "", field selector "status.hostIP=1.2.3.4": field label not supported: status.hostIP"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_statuses_are_listed_as_kube_apiserver_lists_them() {
    let s = common::start().await;
    let c = s.client();
    let (code, text) = call(&c, "GET", "/api/v1/componentstatuses", &[], None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(names(&text), ["scheduler", "controller-manager", "etcd-0"]);
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["kind"], "ComponentStatusList");
    // The datastore answers; no scheduler or controller-manager leads this bare server.
    assert_eq!(v["items"][2]["conditions"][0]["status"], "True");
    assert_eq!(v["items"][2]["conditions"][0]["message"], "ok");
    assert_eq!(v["items"][0]["conditions"][0]["status"], "False");

    // A leading scheduler (its Lease renewed) is healthy.
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    create(
        &c,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "kube-scheduler"},
               "spec": {"holderIdentity": "s1", "leaseDurationSeconds": 15, "renewTime": now}}),
    )
    .await;
    let (_, text) = call(&c, "GET", "/api/v1/componentstatuses/scheduler", &[], None).await;
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["conditions"][0]["status"], "True", "{text}");

    let bin = kubectl::version("1.33").expect("kubectl 1.33");
    let k = s.kubectl(bin);
    let out = tokio::task::spawn_blocking(move || k.run(&["get", "cs"]))
        .await
        .expect("kubectl");
    let (ok, stdout, stderr) = out.parts();
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "Warning: v1 ComponentStatus is deprecated in v1.19+"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "MESSAGE", "ERROR"]);
    assert_eq!(&rows[1][..3], ["scheduler", "Healthy", "ok"]);
    assert_eq!(rows[3], ["etcd-0", "Healthy", "ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_written_kind_first_as_go_writes_type_meta() {
    let s = common::start().await;
    let c = s.client();
    create(
        &c,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "order"}}),
    )
    .await;
    for uri in [
        "/api/v1/namespaces/default/configmaps/order",
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dorder",
    ] {
        let (_, text) = call(&c, "GET", uri, &[], None).await;
        assert!(text.starts_with(r#"{"kind":""#), "{uri}: {text}");
        if let Some(i) = text.find(r#""items":[{"#) {
            assert!(
                text[i..]
                    .starts_with(r#""items":[{"kind":"ConfigMap","apiVersion":"v1","metadata""#),
                "{uri}: {text}"
            );
        }
    }
    let (_, text) = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        &[],
        None,
    )
    .await;
    assert!(
        text.starts_with(r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_list_what_kubeadm_clusters_list() {
    let s = common::start().await;
    let bin = kubectl::version("1.33").expect("kubectl 1.33");
    let k = s.kubectl(bin);
    let (versions, resources, classes) = tokio::task::spawn_blocking(move || {
        (
            k.run(&["api-versions"]),
            k.run(&["api-resources"]),
            k.run(&["get", "priorityclasses"]),
        )
    })
    .await
    .expect("kubectl");
    for out in [&versions, &resources, &classes] {
        assert!(out.success, "{}", out.describe());
        assert!(!out.combined().contains("Warning"), "{}", out.describe());
    }
    let versions = versions.combined();
    for gv in [
        "autoscaling/v2",
        "flowcontrol.apiserver.k8s.io/v1",
        "node.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1",
        "policy/v1",
        "apps/v1beta1",
        "apps/v1beta2",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing: {versions}"
        );
    }
    let resources = resources.combined();
    for r in [
        "priorityclasses",
        "runtimeclasses",
        "horizontalpodautoscalers",
        "flowschemas",
        "prioritylevelconfigurations",
    ] {
        assert!(
            resources.lines().any(|l| l.starts_with(&format!("{r} "))),
            "{r} missing: {resources}"
        );
    }
    let classes = classes.combined();
    let rows: Vec<Vec<&str>> = classes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    assert_eq!(
        &rows[1][..3],
        ["system-cluster-critical", "2000000000", "false"]
    );
    assert_eq!(
        &rows[2][..3],
        ["system-node-critical", "2000001000", "false"]
    );

    // Flow control is read-only.
    let c = s.client();
    let (code, _) = call(
        &c,
        "POST",
        "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
        &[("content-type", "application/json")],
        Some(json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                    "metadata": {"name": "x"}, "spec": {"priorityLevelConfiguration": {"name": "exempt"}}})),
    )
    .await;
    assert_eq!(code, 405);
}

/// `kubectl debug --copy-to` creates the copy in protobuf: its embedded structs
/// (`volumeSource`, `localObjectReference`) must come out as the JSON fields they are,
/// with no warning and nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_copy_to_keeps_every_field() {
    let s = common::start().await;
    let c = s.client();
    create(
        &c,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orig"},
               "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "settings"}}],
                        "containers": [{"name": "app", "image": "busybox",
                            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}}],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}]}}),
    )
    .await;
    let bin = kubectl::version("1.33").expect("kubectl 1.33");
    let k = s.kubectl(bin);
    let out = tokio::task::spawn_blocking(move || {
        k.run(&[
            "debug",
            "orig",
            "--copy-to=copy",
            "--image=busybox",
            "--container=debugger",
        ])
    })
    .await
    .expect("kubectl");
    assert!(out.success, "{}", out.describe());
    assert!(!out.combined().contains("Warning"), "{}", out.describe());
    let (_, text) = call(&c, "GET", "/api/v1/namespaces/default/pods/copy", &[], None).await;
    let copy: Value = serde_json::from_str(&text).expect("pod");
    assert_eq!(
        copy.pointer("/spec/volumes/0/configMap/name"),
        Some(&json!("settings")),
        "{text}"
    );
    assert_eq!(
        copy.pointer("/spec/containers/0/env/0/valueFrom/configMapKeyRef/name"),
        Some(&json!("settings")),
        "{text}"
    );
    assert!(
        copy.pointer("/spec/volumes/0/volumeSource").is_none(),
        "{text}"
    );
}
