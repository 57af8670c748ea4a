//! Bodies that do not decode into their kind: the corpus of wrongly-typed bodies for
//! every kind skiff serves, each answered with kube-apiserver's Status and none stored;
//! what is accepted decodes in typed clients; media types and hostile bodies.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::common;

/// One raw request's answer: status code, body and `Warning` headers.
struct Answer {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

async fn call(c: &kube::Client, method: &str, path: &str, ct: &str, body: &[u8]) -> Answer {
    let mut req = http::Request::builder().method(method).uri(path);
    if !ct.is_empty() {
        req = req.header("content-type", ct);
    }
    let req = req
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");
    let resp = c.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        code,
        body,
        warnings,
    }
}

fn collection(group: &str, version: &str, plural: &str, namespaced: bool) -> String {
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if namespaced {
        format!("{base}/namespaces/default/{plural}")
    } else {
        format!("{base}/{plural}")
    }
}

/// A Status as the tests compare it: code, reason, message.
type Status = (u16, String, String);

/// One corpus entry: collection path, what it is, body, expected Status.
type Case = (&'static str, &'static str, Value, Status);

fn status(a: &Answer) -> Status {
    (
        a.code,
        a.body["reason"].as_str().unwrap_or("").to_string(),
        a.body["message"].as_str().unwrap_or("").to_string(),
    )
}

fn bad(kind: &str, version: &str, why: &str) -> Status {
    (
        400,
        "BadRequest".into(),
        format!("{kind} in version \"{version}\" cannot be handled as a {kind}: {why}"),
    )
}

/// Hand-picked bodies, each as a user or a broken client sent it, with
/// kube-apiserver's answer.
fn corpus() -> Vec<Case> {
    let svc = "/api/v1/namespaces/default/services";
    let cm = "/api/v1/namespaces/default/configmaps";
    let deploy = "/apis/apps/v1/namespaces/default/deployments";
    let pods = "/api/v1/namespaces/default/pods";
    let tmpl = |replicas: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    };
    let pod = |resources: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
    };
    vec![
        (svc, "port name 5", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "name": 5}]}}),
            bad("Service", "v1", "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.name of type string")),
        (svc, "selector value 1", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"a": 1}, "ports": [{"port": 80}]}}),
            bad("Service", "v1", "json: cannot unmarshal number into Go struct field ServiceSpec.spec.selector of type string")),
        (svc, "publishNotReadyAddresses yes", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"publishNotReadyAddresses": "yes", "ports": [{"port": 80}]}}),
            bad("Service", "v1", "json: cannot unmarshal string into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool")),
        (cm, "data value 1", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}}),
            bad("ConfigMap", "v1", "json: cannot unmarshal number into Go struct field ConfigMap.data of type string")),
        (cm, "annotation value 1", json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"a": 1}}}),
            bad("ConfigMap", "v1", "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string")),
        (cm, "a Secret", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}}),
            (400, "BadRequest".into(), "Secret in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion".into())),
        (cm, "apiVersion v9", json!({"apiVersion": "v9", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            bad("ConfigMap", "v9", "no kind \"ConfigMap\" is registered for version \"v9\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"")),
        (deploy, "replicas 1.5", tmpl(json!(1.5)),
            bad("Deployment", "v1", "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32")),
        (deploy, "replicas two", tmpl(json!("two")),
            bad("Deployment", "v1", "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32")),
        (deploy, "replicas 99999999999", tmpl(json!(99999999999_i64)),
            bad("Deployment", "v1", "json: cannot unmarshal number 99999999999 into Go struct field DeploymentSpec.spec.replicas of type int32")),
        (pods, "memory lots", pod(json!({"limits": {"memory": "lots"}})),
            bad("Pod", "v1", "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
        (pods, "cpu -1", pod(json!({"requests": {"cpu": "-1"}})),
            (422, "Invalid".into(), "Pod \"p\" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0".into())),
        (pods, "request above limit", pod(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})),
            (422, "Invalid".into(), "Pod \"p\" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1".into())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_typed_bodies_get_kube_apiservers_status_and_nothing_is_stored() {
    let s = common::start().await;
    let c = s.client();
    for (path, what, body, want) in corpus() {
        let a = call(
            &c,
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status(&a), want, "{what}");
    }
    // Every kind skiff creates, with a label value and a metadata of the wrong type.
    let mut kinds = 0;
    for r in skiff_resources::resources() {
        if !r.has_verb("create")
            || skiff_resources::schema::typed_check(r.group, r.version, r.kind).is_none()
        {
            continue;
        }
        kinds += 1;
        let path = collection(r.group, r.version, r.plural, r.namespaced);
        let av = r.api_version();
        let labels = json!({"apiVersion": av, "kind": r.kind, "metadata": {"name": "bad", "labels": {"a": 1}}});
        let a = call(
            &c,
            "POST",
            &path,
            "application/json",
            labels.to_string().as_bytes(),
        )
        .await;
        assert_eq!(
            status(&a),
            bad(r.kind, r.version, "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
            "{path}"
        );
        let meta = json!({"apiVersion": av, "kind": r.kind, "metadata": 5});
        let a = call(
            &c,
            "POST",
            &path,
            "application/json",
            meta.to_string().as_bytes(),
        )
        .await;
        assert_eq!(
            status(&a),
            bad(r.kind, r.version, &format!("json: cannot unmarshal number into Go struct field {}.metadata of type v1.ObjectMeta", r.kind)),
            "{path}"
        );
    }
    assert!(kinds > 25, "{kinds} kinds");
    // None of it was stored: every list still decodes with its typed form, and holds
    // no object named by the corpus.
    for r in skiff_resources::resources() {
        if !r.has_verb("list") {
            continue;
        }
        let path = collection(r.group, r.version, r.plural, false);
        let a = call(&c, "GET", &path, "", b"").await;
        assert_eq!(a.code, 200, "{path}");
        for item in a.body["items"].as_array().cloned().unwrap_or_default() {
            let name = item["metadata"]["name"].as_str().unwrap_or("");
            assert!(
                !matches!(name, "bad" | "s" | "c" | "d" | "p"),
                "{path}: {name} stored"
            );
            let mut item = item.clone();
            item["apiVersion"] = json!(r.api_version());
            item["kind"] = json!(r.kind);
            skiff_resources::decode::check_typed(r.group, r.version, r.kind, &item)
                .unwrap_or_else(|e| panic!("{path} {name}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_clients_read_back_what_was_written() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
    let s = common::start().await;
    let c = s.client();
    // Undeclared fields are dropped, with a warning each (fieldValidation=Warn).
    let a = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "colour": "red"},
               "spec": {"ports": [{"port": 80, "weight": 5}], "selector": {"app": "web"}}})
        .to_string()
        .as_bytes(),
    )
    .await;
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(
        a.warnings,
        vec![
            "299 - \"unknown field \\\"metadata.colour\\\"\"",
            "299 - \"unknown field \\\"spec.ports[0].weight\\\"\""
        ]
    );
    let svc: Service = kube::Api::namespaced(c.clone(), "default")
        .get("web")
        .await
        .expect("typed get");
    let raw = serde_json::to_value(&svc).expect("json");
    assert!(raw.pointer("/metadata/colour").is_none());
    assert!(raw.pointer("/spec/ports/0/weight").is_none());
    // Strict refuses them.
    let a = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","colour":1}}"#,
    )
    .await;
    assert_eq!(
        status(&a),
        bad(
            "ConfigMap",
            "v1",
            "strict decoding error: unknown field \"metadata.colour\""
        )
    );

    // stringData is folded into data.
    let a = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/secrets",
        "application/yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {user: YWRtaW4=}\nstringData: {password: hunter2}\n",
    )
    .await;
    assert_eq!(a.code, 201, "{}", a.body);
    let secret: Secret = kube::Api::namespaced(c.clone(), "default")
        .get("creds")
        .await
        .expect("typed get");
    let data = secret.data.expect("data");
    assert_eq!(data["password"].0, b"hunter2");
    assert_eq!(data["user"].0, b"admin");
    assert!(secret.string_data.is_none());

    // A patch whose result does not decode: 422 on `patch`, the object unchanged.
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(c.clone(), "default");
    cms.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}}))
            .expect("cm"),
    )
    .await
    .expect("create");
    for (ct, patch) in [
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/data", "value": [1, 2]}]),
        ),
        ("application/merge-patch+json", json!({"data": {"a": 5}})),
        (
            "application/strategic-merge-patch+json",
            json!({"data": {"a": true}}),
        ),
    ] {
        let a = call(
            &c,
            "PATCH",
            "/api/v1/namespaces/default/configmaps/cfg",
            ct,
            patch.to_string().as_bytes(),
        )
        .await;
        assert_eq!(a.code, 422, "{ct}: {}", a.body);
        assert_eq!(a.body["reason"], "Invalid", "{ct}");
        let msg = a.body["message"].as_str().unwrap_or("");
        assert!(msg.contains("json: cannot unmarshal"), "{ct}: {msg}");
    }
    let cm = cms.get("cfg").await.expect("typed get");
    assert_eq!(cm.data.expect("data")["a"], "1");

    // PUT with a wrong type: 400, unchanged.
    let a = call(
        &c,
        "PUT",
        "/api/v1/namespaces/default/configmaps/cfg",
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":[]}}"#,
    )
    .await;
    assert_eq!(
        status(&a),
        bad(
            "ConfigMap",
            "v1",
            "json: cannot unmarshal array into Go struct field ConfigMap.data of type string"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_and_hostile_bodies() {
    let s = common::start().await;
    let c = s.client();
    let cms = "/api/v1/namespaces/default/configmaps";
    let a = call(&c, "POST", cms, "text/plain", b"{}").await;
    assert_eq!(a.code, 415, "{}", a.body);
    assert_eq!(a.body["reason"], "UnsupportedMediaType");

    let a = call(
        &c,
        "POST",
        cms,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a: b\n",
    )
    .await;
    assert_eq!(a.code, 400);
    let msg = a.body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("error converting YAML to JSON: yaml: line 4: mapping values are not allowed"),
        "{msg}"
    );

    // Deep nesting and alias expansion are refused at once, and the server stays
    // responsive meanwhile (generous bounds: this is not a benchmark).
    let mut laughs = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", "[".repeat(100_000).into_bytes()),
        ("application/yaml", "[".repeat(100_000).into_bytes()),
        ("application/yaml", "- ".repeat(100_000).into_bytes()),
        ("application/yaml", laughs.into_bytes()),
    ];
    for (ct, body) in hostile {
        let t = Instant::now();
        let a = call(&c, "POST", cms, ct, &body).await;
        assert_eq!(a.code, 400, "{ct}: {}", a.body);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{ct}: {:?}",
            t.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_decode_error() {
    let kubectl = skiff_testkit::kubectl::version(skiff_testkit::kubectl::NEWEST)
        .expect("kubectl 1.33 is missing");
    let s = common::start().await;
    let k = s.kubectl(kubectl);
    let file = s.dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: two\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    )
    .expect("write");
    let file = file.display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        k.run(&["create", "--validate=false", "-f", &file]).parts()
    })
    .await
    .expect("kubectl");
    assert!(!ok);
    assert!(
        err.contains("Error from server (BadRequest): error when creating")
            && err.contains("Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
        "{err}"
    );
}
