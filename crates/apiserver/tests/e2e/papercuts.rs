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

    // One name: that object (read by its key) or none, combined with other terms, in a
    // list whose resourceVersion a watch can start from.
    for (uri, want) in [
        (
            "/api/v1/nodes?fieldSelector=metadata.name%3Dcordoned",
            vec!["cordoned"],
        ),
        (
            "/api/v1/nodes?fieldSelector=metadata.name%3Dmissing",
            vec![],
        ),
        (
            "/api/v1/nodes?fieldSelector=metadata.name%3Dcordoned,spec.unschedulable%3Dfalse",
            vec![],
        ),
        (
            "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dp",
            vec!["p"],
        ),
        (
            "/api/v1/namespaces/kube-system/pods?fieldSelector=metadata.name%3Dp",
            vec![],
        ),
        ("/api/v1/pods?fieldSelector=metadata.name%3Dp", vec!["p"]),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3D", vec!["p"]),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dready", vec![]),
    ] {
        let (code, text) = call(&c, "GET", uri, &[], None).await;
        assert_eq!(code, 200, "{uri}: {text}");
        assert_eq!(names(&text), want, "{uri}");
        let list: Value = serde_json::from_str(&text).expect("list");
        let rv: i64 = list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("resourceVersion");
        assert!(rv > 0, "{uri}");
    }

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

/// The `ephemeralcontainers` subresource: a strategic merge patch adds one (what
/// `kubectl debug` sends), checked by kube's rules for it rather than a pod update's:
/// additions only, no ports, a target that exists; kube-apiserver's 422 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_are_added_through_their_subresource() {
    let s = common::start().await;
    let c = s.client();
    create(
        &c,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let uri = "/api/v1/namespaces/default/pods/app/ephemeralcontainers";
    let smp = [("content-type", "application/strategic-merge-patch+json")];
    let add = |name: &str, extra: Value| {
        let mut ec = json!({"name": name, "image": "busybox", "targetContainerName": "c",
                            "stdin": true, "tty": true});
        if let (Some(m), Some(x)) = (ec.as_object_mut(), extra.as_object()) {
            m.extend(x.clone());
        }
        json!({"spec": {"ephemeralContainers": [ec]}})
    };
    let (code, text) = call(&c, "PATCH", uri, &smp, Some(add("dbg", json!({})))).await;
    assert_eq!(code, 200, "{text}");
    let pod: Value = serde_json::from_str(&text).expect("pod");
    assert_eq!(pod["kind"], "Pod");
    let ec = &pod["spec"]["ephemeralContainers"][0];
    assert_eq!(ec["targetContainerName"], "c");
    // Defaulted as a container is.
    assert_eq!(ec["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(ec["imagePullPolicy"], "Always");
    // GET of the subresource is the pod.
    let (code, text) = call(&c, "GET", uri, &[], None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"ephemeralContainers\""), "{text}");

    // A second one merges by name beside the first.
    let (code, text) = call(&c, "PATCH", uri, &smp, Some(add("dbg2", json!({})))).await;
    assert_eq!(code, 200, "{text}");
    let pod: Value = serde_json::from_str(&text).expect("pod");
    assert_eq!(
        pod["spec"]["ephemeralContainers"].as_array().map(Vec::len),
        Some(2)
    );

    // Bad ones: kube's messages.
    let (code, text) = call(
        &c,
        "PATCH",
        uri,
        &smp,
        Some(add(
            "web",
            json!({"ports": [{"containerPort": 80}], "targetContainerName": "nope"}),
        )),
    )
    .await;
    assert_eq!(code, 422, "{text}");
    let st: Value = serde_json::from_str(&text).expect("status");
    assert_eq!(
        st["message"],
        "Pod \"app\" is invalid: [spec.ephemeralContainers[2].targetContainerName: Not found: \"nope\", spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container]"
    );
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueNotFound");
    // Changing an existing one through the subresource.
    let (code, text) = call(
        &c,
        "PATCH",
        uri,
        &smp,
        Some(add("dbg", json!({"image": "alpine"}))),
    )
    .await;
    assert_eq!(code, 422, "{text}");
    assert!(
        text.contains("existing ephemeral containers \\\"dbg\\\" may not be changed"),
        "{text}"
    );
    // Removing one with a replacing PUT.
    let (_, text) = call(&c, "GET", uri, &[], None).await;
    let mut pod: Value = serde_json::from_str(&text).expect("pod");
    pod["spec"]["ephemeralContainers"] = json!([]);
    let (code, text) = call(
        &c,
        "PUT",
        uri,
        &[("content-type", "application/json")],
        Some(pod),
    )
    .await;
    assert_eq!(code, 422, "{text}");
    assert!(
        text.contains("existing ephemeral containers \\\"dbg\\\" may not be removed"),
        "{text}"
    );
    // Through the pod itself, the pod update's rule refuses any change.
    let (code, text) = call(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/pods/app",
        &smp,
        Some(add("dbg3", json!({}))),
    )
    .await;
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("pod updates may not change fields"), "{text}");
}

/// HorizontalPodAutoscalers in `autoscaling/v1` beside v2: listed by `kubectl
/// api-versions`, converted both ways (v2-only fields in kube's annotations), defaulted
/// by the API server as kube's v2 defaults; `kubectl autoscale` and `kubectl get hpa` of
/// the oldest and newest kubectl print no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_v1_is_served_beside_v2() {
    let s = common::start().await;
    let c = s.client();
    create(
        &c,
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}}),
    )
    .await;
    // v1 create; v2 read, defaulted.
    create(
        &c,
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "one"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}}),
    )
    .await;
    let (_, text) = call(
        &c,
        "GET",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/one",
        &[],
        None,
    )
    .await;
    let v2: Value = serde_json::from_str(&text).expect("hpa");
    assert_eq!(v2["spec"]["minReplicas"], 1, "{text}");
    assert_eq!(
        v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 60}}}])
    );
    // v2 create with what v1 cannot say; v1 read carries it in annotations.
    create(
        &c,
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "two"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "maxReplicas": 4,
                        "metrics": [{"type": "Resource", "resource": {"name": "memory",
                            "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}),
    )
    .await;
    let (_, text) = call(
        &c,
        "GET",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/two",
        &[],
        None,
    )
    .await;
    let v1: Value = serde_json::from_str(&text).expect("hpa");
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert!(
        v1["spec"].get("targetCPUUtilizationPercentage").is_none(),
        "{text}"
    );
    let ann = &v1["metadata"]["annotations"];
    assert_eq!(
        ann["autoscaling.alpha.kubernetes.io/metrics"],
        r#"[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"100Mi"}}]"#
    );
    let behavior: Value = serde_json::from_str(
        ann["autoscaling.alpha.kubernetes.io/behavior"]
            .as_str()
            .expect("behavior annotation"),
    )
    .expect("JSON");
    assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 30);
    assert_eq!(behavior["scaleUp"]["selectPolicy"], "Max");
    // A v1 update of that object keeps the memory metric (the annotation comes back).
    let (code, text) = call(
        &c,
        "PUT",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/two",
        &[("content-type", "application/json")],
        Some({
            let mut o = v1.clone();
            o["spec"]["maxReplicas"] = json!(6);
            o
        }),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let (_, text) = call(
        &c,
        "GET",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/two",
        &[],
        None,
    )
    .await;
    let v2: Value = serde_json::from_str(&text).expect("hpa");
    assert_eq!(v2["spec"]["maxReplicas"], 6);
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["name"], "memory",
        "{text}"
    );
    assert!(v2["metadata"].get("annotations").is_none(), "{text}");

    for version in [kubectl::OLDEST, kubectl::NEWEST] {
        let bin = kubectl::version(version).expect("kubectl");
        let k = s.kubectl(bin);
        let name = format!("auto{}", version.replace('.', ""));
        let outs = tokio::task::spawn_blocking(move || {
            vec![
                k.run(&["api-versions"]),
                k.run(&[
                    "autoscale",
                    "deployment/web",
                    &format!("--name={name}"),
                    "--max=5",
                    "--cpu-percent=50",
                ]),
                k.run(&["get", "hpa"]),
                // The full name: kubectl 1.33's shortcut expander drops the version of a
                // short name (`hpa.v1.autoscaling` reads v2, from kube-apiserver too).
                k.run(&[
                    "get",
                    "horizontalpodautoscalers.v1.autoscaling",
                    &name,
                    "-o",
                    "jsonpath={.spec.targetCPUUtilizationPercentage}",
                ]),
            ]
        })
        .await
        .expect("kubectl");
        for out in &outs {
            assert!(out.success, "{version}: {}", out.describe());
            assert!(out.stderr.is_empty(), "{version}: {}", out.describe());
        }
        assert!(
            outs[0].stdout.lines().any(|l| l == "autoscaling/v1"),
            "{}",
            outs[0].stdout
        );
        assert!(outs[0].stdout.lines().any(|l| l == "autoscaling/v2"));
        let header: Vec<&str> = outs[2]
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE"
            ]
        );
        assert_eq!(outs[3].stdout, "50", "{version}");
    }
}
