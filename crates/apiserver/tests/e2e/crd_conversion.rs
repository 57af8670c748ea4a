//! CRD conversion webhooks through the real kubectl (1.27 and 1.33): a CRD stored in
//! `v1` and served in `v1` and `v2`, converted by a webhook server the test starts
//! (HTTPS with its own CA, given as `caBundle`). Objects written in `v2` are stored in
//! `v1` and read back in either version: GET, LIST (one ConversionReview per list),
//! WATCH, create/apply/patch bodies, the status and scale subresources. The CRD's
//! conversion settings are validated with kube's messages; a webhook that fails,
//! answers for another review, renames the object, returns too few objects or cannot be
//! reached fails the request with HTTP 500 and kube-apiserver's text.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

/// The reviews the webhook server received, newest last.
type Seen = Arc<Mutex<Vec<Value>>>;

const GROUP: &str = "conv-test.example.com";

/// One object converted as the test's webhook does: `v1` keeps `spec.color`, `v2`
/// keeps it as `spec.paint.color`; everything else is copied.
fn convert_one(obj: &Value, desired: &str) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!(desired);
    let spec = out
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut spec = spec;
    if desired.ends_with("/v2") {
        if let Some(c) = spec.remove("color") {
            spec.insert("paint".into(), json!({"color": c}));
        }
    } else if let Some(c) = spec
        .remove("paint")
        .and_then(|mut p| p.get_mut("color").map(Value::take))
    {
        spec.insert("color".into(), c);
    }
    out["spec"] = Value::Object(spec);
    out
}

/// What the test webhook answers, by path: `/convert` converts; `/fail` refuses;
/// `/wrong-uid` answers another review; `/rename` renames the objects; `/drop` returns
/// no objects.
fn answer(path: &str, review: &Value) -> Value {
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].as_str().unwrap_or("");
    let objects: Vec<Value> = req["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| convert_one(o, desired))
        .collect();
    let mut response = json!({"uid": req["uid"], "result": {"status": "Success"},
                              "convertedObjects": objects});
    match path {
        "/fail" => {
            response["result"] =
                json!({"status": "Failure", "message": "the convwidget cannot be converted"});
            response["convertedObjects"] = json!([]);
        }
        "/wrong-uid" => response["uid"] = json!("not-the-request"),
        "/rename" => {
            for o in response["convertedObjects"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                o["metadata"]["name"] = json!("renamed");
            }
        }
        "/drop" => response["convertedObjects"] = json!([]),
        _ => {}
    }
    json!({"apiVersion": review["apiVersion"], "kind": "ConversionReview", "response": response})
}

fn crd(url: &str, ca_pem: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let version = |name: &str, storage: bool, spec: &str| {
        format!(
            r#"  - name: {name}
    served: true
    storage: {storage}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {{type: integer}}
{spec}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              phase: {{type: string}}
"#
        )
    };
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: convwidgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: convwidgets, singular: convwidget, kind: ConvWidget}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v9, v1]
      clientConfig:
        url: {url}
        caBundle: {ca}
  versions:
{}{}"#,
        version("v1", true, "              color: {type: string}"),
        version(
            "v2",
            false,
            "              paint:\n                type: object\n                properties:\n                  color: {type: string}"
        ),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_conversion_webhook_with_real_kubectl() {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let seen = Seen::default();
        let noted = seen.clone();
        let (port, ca) = common::start_https_hook(move |path, review| {
            noted.lock().unwrap().push(review.clone());
            answer(path, review)
        })
        .await;
        let k = s.kubectl(bin);
        blocking(move || scenario(&k, port, &ca, &seen)).await;
    }
}

/// Polls `f` until it returns true or `deadline` passes.
#[track_caller]
fn eventually(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn apply(k: &Kubectl, yaml: &str) -> (bool, String, String) {
    k.run_with(&["apply", "-f", "-"], Some(yaml)).parts()
}

/// The `.spec` of `name` read in `version`, as JSON text.
fn spec_in(k: &Kubectl, version: &str, name: &str) -> String {
    k.ok_quiet(&[
        "get",
        &format!("convwidgets.{version}.{GROUP}"),
        name,
        "-o",
        "jsonpath={.apiVersion} {.spec}",
    ])
}

/// Points the CRD's conversion webhook at `url` and waits until reads see it (the
/// served definition follows the CRD through a watch).
fn point_webhook_at(k: &Kubectl, url: &str, expect_error: Option<&str>) {
    let patch = json!({"spec": {"conversion": {"webhook": {"clientConfig": {"url": url}}}}});
    k.ok_quiet(&[
        "patch",
        "crd",
        &format!("convwidgets.{GROUP}"),
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    eventually(
        &format!("reads through {url}"),
        Duration::from_secs(10),
        || {
            let (ok, _, err) = k
                .run(&[
                    "get",
                    &format!("convwidgets.v2.{GROUP}"),
                    "w1",
                    "-o",
                    "name",
                ])
                .parts();
            match expect_error {
                None => ok,
                Some(e) => !ok && err.contains(e),
            }
        },
    );
}

fn scenario(k: &Kubectl, port: u16, ca: &str, seen: &Seen) {
    let who = k.who();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");

    // The CRD's conversion settings are checked as kube-apiserver checks them.
    let bad = crd(&url("/convert"), ca)
        .replace("name: convwidgets.", "name: badconvwidgets.")
        .replace("plural: convwidgets", "plural: badconvwidgets")
        .replace("kind: ConvWidget}", "kind: BadConvWidget}")
        .replace("[v9, v1]", "[v9]")
        .replace(
            &format!("url: {}", url("/convert")),
            "url: http://127.0.0.1/convert",
        );
    let (ok, _, err) = apply(k, &bad);
    assert!(!ok, "{who}");
    assert!(
        err.contains("spec.conversion.webhookClientConfig.url: Invalid value: \"http://127.0.0.1/convert\": 'https' is the only allowed URL scheme"),
        "{who}: {err}"
    );
    assert!(
        err.contains("spec.conversion.conversionReviewVersions: Invalid value: []string{\"v9\"}: must include at least one of v1, v1beta1"),
        "{who}: {err}"
    );
    let (ok, _, err) = apply(
        k,
        &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: nohooks.{GROUP}\nspec:\n  group: {GROUP}\n  scope: Namespaced\n  names: {{plural: nohooks, kind: NoHook}}\n  conversion: {{strategy: Webhook}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {{openAPIV3Schema: {{type: object}}}}\n"
        ),
    );
    assert!(!ok, "{who}");
    assert!(
        err.contains("spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook"),
        "{who}: {err}"
    );

    let (ok, out, err) = apply(k, &crd(&url("/convert"), ca));
    assert!(ok, "{who}: {out} {err}");
    k.ok_quiet(&[
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        &format!("crd/convwidgets.{GROUP}"),
    ]);
    let got = k.ok_quiet(&[
        "get",
        "crd",
        &format!("convwidgets.{GROUP}"),
        "-o",
        "jsonpath={.spec.conversion.strategy}",
    ]);
    assert_eq!(got, "Webhook", "{who}");

    // Written in v2, stored in v1 (converted on the way in), read in both.
    let w = |name: &str, color: &str| {
        format!("apiVersion: {GROUP}/v2\nkind: ConvWidget\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  paint: {{color: {color}}}\n")
    };
    eventually("the v2 resource is served", Duration::from_secs(10), || {
        k.run(&["get", &format!("convwidgets.v2.{GROUP}")])
            .parts()
            .0
    });
    let (ok, out, err) = apply(k, &w("w1", "red"));
    assert!(ok && err.is_empty(), "{who}: {out} {err}");
    assert_eq!(
        spec_in(k, "v1", "w1"),
        format!(r#"{GROUP}/v1 {{"color":"red","replicas":1}}"#),
        "{who}"
    );
    assert_eq!(
        spec_in(k, "v2", "w1"),
        format!(r#"{GROUP}/v2 {{"paint":{{"color":"red"}},"replicas":1}}"#),
        "{who}"
    );
    {
        let seen = seen.lock().unwrap();
        let last = seen.last().expect("the webhook was called");
        // The first review version the server speaks.
        assert_eq!(last["apiVersion"], "apiextensions.k8s.io/v1", "{who}");
        assert_eq!(last["request"]["desiredAPIVersion"], format!("{GROUP}/v2"));
        assert_eq!(last["request"]["objects"][0]["spec"]["color"], "red");
    }
    // v1 reads need no conversion: the webhook is not called.
    let before = seen.lock().unwrap().len();
    spec_in(k, "v1", "w1");
    k.ok_quiet(&["get", &format!("convwidgets.v1.{GROUP}")]);
    assert_eq!(seen.lock().unwrap().len(), before, "{who}");

    // A LIST in v2 is converted in one review.
    apply(k, &w("w2", "blue"));
    apply(k, &w("w3", "green"));
    let before = seen.lock().unwrap().len();
    let colors = k.ok_quiet(&[
        "get",
        &format!("convwidgets.v2.{GROUP}"),
        "-o",
        "jsonpath={.items[*].spec.paint.color}",
    ]);
    assert_eq!(colors, "red blue green", "{who}");
    {
        let seen = seen.lock().unwrap();
        let reviews = &seen[before..];
        assert_eq!(reviews.len(), 1, "{who}: one review per list");
        assert_eq!(
            reviews[0]["request"]["objects"].as_array().map(Vec::len),
            Some(3),
            "{who}"
        );
    }
    let table = k.ok_quiet(&["get", &format!("convwidgets.v2.{GROUP}")]);
    assert!(table.contains("w3"), "{who}: {table}");

    // A merge patch in v2, server-side apply in v2.
    k.ok_quiet(&[
        "patch",
        &format!("convwidgets.v2.{GROUP}"),
        "w2",
        "--type=merge",
        "-p",
        r#"{"spec":{"paint":{"color":"black"}}}"#,
    ]);
    assert_eq!(
        spec_in(k, "v1", "w2"),
        format!(r#"{GROUP}/v1 {{"color":"black","replicas":1}}"#),
        "{who}"
    );
    let (ok, out, err) = k
        .run_with(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=conv-test",
                "-f",
                "-",
            ],
            Some(&w("w3", "white")),
        )
        .parts();
    assert!(ok, "{who}: {out} {err}");
    assert_eq!(
        spec_in(k, "v1", "w3"),
        format!(r#"{GROUP}/v1 {{"color":"white","replicas":1}}"#),
        "{who}"
    );

    // The status and scale subresources in v2.
    k.ok_quiet(&[
        "patch",
        &format!("convwidgets.v2.{GROUP}"),
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready","replicas":1}}"#,
    ]);
    k.ok_quiet(&[
        "scale",
        &format!("convwidgets.v2.{GROUP}"),
        "w1",
        "--replicas=4",
    ]);
    let got = k.ok_quiet(&[
        "get",
        &format!("convwidgets.v1.{GROUP}"),
        "w1",
        "-o",
        "jsonpath={.status.phase} {.spec.replicas} {.spec.color}",
    ]);
    assert_eq!(got, "Ready 4 red", "{who}");

    // A WATCH in v2 sees a change made in v1, converted.
    // (kubectl's own `List` of `get -o jsonpath` has no resourceVersion: ask the server.)
    let list: Value = serde_json::from_str(&k.ok_quiet(&[
        "get",
        "--raw",
        &format!("/apis/{GROUP}/v2/namespaces/default/convwidgets"),
    ]))
    .expect("a list");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("the list's resourceVersion")
        .to_string();
    let watcher = {
        let k = k.clone();
        let path = format!(
            "/apis/{GROUP}/v2/namespaces/default/convwidgets?watch=1&resourceVersion={rv}&timeoutSeconds=3"
        );
        std::thread::spawn(move || k.ok_quiet(&["get", "--raw", &path]))
    };
    k.ok_quiet(&[
        "patch",
        &format!("convwidgets.v1.{GROUP}"),
        "w3",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"purple"}}"#,
    ]);
    let events = watcher.join().expect("watch");
    let event: Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["object"]["metadata"]["name"] == "w3")
        .unwrap_or_else(|| panic!("{who}: no event for w3 in {events}"));
    assert_eq!(event["type"], "MODIFIED", "{who}");
    assert_eq!(
        event["object"]["apiVersion"],
        format!("{GROUP}/v2"),
        "{who}"
    );
    assert_eq!(event["object"]["spec"]["paint"]["color"], "purple", "{who}");

    // Webhooks that fail or misbehave: HTTP 500 with kube-apiserver's words; reads in
    // the stored version still work.
    let from = format!("conversion webhook for {GROUP}/v1, Kind=ConvWidget");
    let cases = [
        (
            "/fail",
            format!("{from} failed: the convwidget cannot be converted"),
        ),
        (
            "/wrong-uid",
            format!("{from} failed: expected response.uid="),
        ),
        (
            "/rename",
            format!("{from} returned invalid object: must have the same name: w1 != renamed"),
        ),
        ("/drop", format!("{from} returned 0 objects, expected 1")),
    ];
    for (path, want) in &cases {
        point_webhook_at(k, &url(path), Some(want));
        let (ok, out, err) = k
            .run(&["get", &format!("convwidgets.v2.{GROUP}"), "w1", "-v=6"])
            .parts();
        assert!(!ok, "{who}: {path}: {out}");
        // kubectl 1.27 logs `GET <url> 500 Internal Server Error`, 1.33 `status="500 ..."`.
        assert!(
            err.contains(" 500 Internal Server Error")
                || err.contains("\"500 Internal Server Error\""),
            "{who}: {path}: {err}"
        );
        assert!(err.contains("\"code\": 500"), "{who}: {path}: {err}");
        assert!(
            err.contains(&format!("Error from server: {want}")),
            "{who}: {path}: {err}"
        );
    }
    // A LIST names the list's kind; a write in v2 fails before anything is stored.
    let (ok, _, err) = k.run(&["get", &format!("convwidgets.v2.{GROUP}")]).parts();
    assert!(!ok, "{who}");
    assert!(
        err.contains(&format!(
            "conversion webhook for {GROUP}/v1, Kind=ConvWidgetList returned 0 objects, expected 3"
        )),
        "{who}: {err}"
    );
    let (ok, _, err) = apply(k, &w("w4", "grey"));
    assert!(!ok, "{who}");
    assert!(
        err.contains(&format!(
            "conversion webhook for {GROUP}/v2, Kind=ConvWidget returned 0 objects, expected 1"
        )),
        "{who}: {err}"
    );
    assert_eq!(
        spec_in(k, "v1", "w1"),
        format!(r#"{GROUP}/v1 {{"color":"red","replicas":4}}"#)
    );

    // A webhook nobody listens at (port 1 of loopback refuses connections).
    point_webhook_at(
        k,
        "https://127.0.0.1:1/convert",
        Some("connect: connection refused"),
    );
    let (_, _, err) = k
        .run(&["get", &format!("convwidgets.v2.{GROUP}"), "w1"])
        .parts();
    assert!(
        err.contains(&format!("Error from server: {from} failed: Post \"https://127.0.0.1:1/convert?timeout=30s\": dial tcp 127.0.0.1:1: connect: connection refused")),
        "{who}: {err}"
    );

    // Fixed again, everything reads.
    point_webhook_at(k, &url("/convert"), None);
    let colors = k.ok_quiet(&[
        "get",
        &format!("convwidgets.v2.{GROUP}"),
        "-o",
        "jsonpath={.items[*].spec.paint.color}",
    ]);
    assert_eq!(colors, "red black purple", "{who}");
    k.ok_quiet(&["delete", "crd", &format!("convwidgets.{GROUP}")]);
}

/// A CRD whose storage version moved from `v1` to `v2` (`conversion: None`): objects
/// written before stay stored in `v1` (`status.storedVersions` names both), and every
/// read — GET, LIST, WATCH, in either version — gives them in the requested version, as
/// kube-apiserver's None converter does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_stored_in_an_earlier_version_are_read_in_the_requested_one() {
    use futures::{StreamExt, TryStreamExt};
    let s = common::start().await;
    let client = s.client();
    let group = "mixed-test.example.com";
    let req = |method: &str, path: &str, body: Option<Value>| {
        let b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        b.body(body.map(|v| v.to_string().into_bytes()).unwrap_or_default())
            .expect("request")
    };
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object",
                   "x-kubernetes-preserve-unknown-fields": true}}})
    };
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "kind": "Gadget"},
                 "versions": [version("v1", true), version("v2", false)]}
    });
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    client
        .request::<Value>(req("POST", crds, Some(crd)))
        .await
        .expect("CRD created");
    let coll = |v: &str| format!("/apis/{group}/{v}/namespaces/default/gadgets");
    let gadget = |v: &str, name: &str| {
        json!({"apiVersion": format!("{group}/{v}"), "kind": "Gadget",
               "metadata": {"name": name}, "spec": {"size": 1}})
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .request::<Value>(req("POST", &coll("v1"), Some(gadget("v1", "old"))))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the CRD was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The storage version moves to v2. The apiextensions controllers may still be
    // writing the CRD's status (the resource is served before `Established` is
    // written), so the update is retried on a conflict, as client-go's
    // `RetryOnConflict` does.
    let path = format!("{crds}/gadgets.{group}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let crd: Value = loop {
        let mut crd: Value = client.request(req("GET", &path, None)).await.expect("CRD");
        crd["spec"]["versions"] = json!([version("v1", false), version("v2", true)]);
        match client.request(req("PUT", &path, Some(crd))).await {
            Ok(crd) => break crd,
            Err(kube::Error::Api(e)) if e.code == 409 && Instant::now() < deadline => {}
            Err(e) => panic!("storage version moved: {e:?}"),
        }
    };
    assert_eq!(crd["status"]["storedVersions"], json!(["v1", "v2"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let created = client
            .request::<Value>(req("POST", &coll("v2"), Some(gadget("v2", "new"))))
            .await;
        let new: Option<Value> = client
            .request(req("GET", &format!("{}/new", coll("v2")), None))
            .await
            .ok();
        if created.is_ok() || new.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "v2 objects never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for v in ["v1", "v2"] {
        let want = format!("{group}/{v}");
        let got: Value = client
            .request(req("GET", &format!("{}/old", coll(v)), None))
            .await
            .expect("GET");
        assert_eq!(got["apiVersion"], json!(want), "GET in {v}");
        // Until both are listed in `v`: the served registry follows the CRD's update.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list: Value = client
                .request(req("GET", &coll(v), None))
                .await
                .expect("LIST");
            let versions: Vec<&Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| &i["apiVersion"])
                .collect();
            if versions.len() == 2 && versions.iter().all(|a| **a == json!(want)) {
                break;
            }
            assert!(Instant::now() < deadline, "LIST in {v}: {list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events = client
            .request_events::<Value>(req("GET", &format!("{}?watch=1", coll(v)), None))
            .await
            .expect("WATCH");
        let first: Vec<kube::api::WatchEvent<Value>> = events
            .take(2)
            .try_collect()
            .await
            .expect("the two objects' ADDED events");
        for e in first {
            let kube::api::WatchEvent::Added(o) = e else {
                panic!("not an ADDED event: {e:?}");
            };
            assert_eq!(o["apiVersion"], json!(want), "WATCH in {v}: {o}");
        }
    }
}
