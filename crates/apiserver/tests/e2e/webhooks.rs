//! Admission webhooks through the real kubectl (1.27 and 1.33): a webhook server started
//! by the test (HTTPS with its own CA, given as `caBundle`) mutates ConfigMaps with a
//! JSONPatch and a warning, denies some, and sees each AdmissionReview; namespace
//! selectors limit it; a webhook with `reinvocationPolicy: IfNeeded` is called again
//! after a later one changed the object; `failurePolicy` Fail and Ignore on a webhook that cannot be
//! reached; dry runs; the configurations' validation and table.

use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};
use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

/// The reviews the webhook server received, newest last.
type Seen = Arc<Mutex<Vec<Value>>>;

/// What the test webhook answers: `/mutate` labels the object `mutated=yes` and warns;
/// `/validate` denies a ConfigMap with a `forbidden` key.
fn answer(path: &str, review: &Value) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let obj = &req["object"];
    let response = match path {
        "/observe" => json!({"uid": uid, "allowed": true}),
        "/mutate" => {
            let patch = if obj.pointer("/metadata/labels").is_some() {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch,
                   "warnings": ["mutated by the test webhook"]})
        }
        _ => {
            if obj.pointer("/data/forbidden").is_some() {
                json!({"uid": uid, "allowed": false,
                       "status": {"code": 403, "reason": "Forbidden",
                                  "message": "the key forbidden is not allowed"}})
            } else {
                json!({"uid": uid, "allowed": true})
            }
        }
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Starts the webhook server on loopback; its port and CA (PEM).
async fn start_webhook(seen: Seen) -> (u16, String) {
    common::start_https_hook(move |path, review| {
        let mut noted = review.clone();
        noted["path"] = json!(path);
        seen.lock().unwrap().push(noted);
        answer(path, review)
    })
    .await
}

fn configurations(port: u16, ca_pem: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: skiff-test-a-observe
webhooks:
- name: observe.skiff-test.example.com
  clientConfig:
    url: https://127.0.0.1:{port}/observe
    caBundle: {ca}
  rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
  reinvocationPolicy: IfNeeded
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: skiff-test-mutate
webhooks:
- name: mutate.skiff-test.example.com
  clientConfig:
    url: https://127.0.0.1:{port}/mutate
    caBundle: {ca}
  rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
  namespaceSelector:
    matchLabels: {{webhooks: "on"}}
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: skiff-test-validate
webhooks:
- name: validate.skiff-test.example.com
  clientConfig:
    url: https://127.0.0.1:{port}/validate
    caBundle: {ca}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [""]
    apiVersions: ["*"]
    resources: [configmaps]
    scope: Namespaced
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1beta1, v1]
"#
    )
}

/// A webhook nobody listens at (port 1 of loopback refuses connections).
fn unreachable(policy: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: skiff-test-down
webhooks:
- name: down.skiff-test.example.com
  clientConfig:
    url: https://127.0.0.1:1/validate
  failurePolicy: {policy}
  timeoutSeconds: 2
  rules:
  - operations: ["*"]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [secrets]
  objectSelector:
    matchLabels: {{down: "yes"}}
  sideEffects: None
  admissionReviewVersions: [v1]
"#
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_deny_and_fail_with_real_kubectl() {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let seen = Seen::default();
        let (port, ca) = start_webhook(seen.clone()).await;
        let k = s.kubectl(bin);
        blocking(move || scenario(&k, port, &ca, &seen)).await;
    }
}

fn scenario(k: &Kubectl, port: u16, ca: &str, seen: &Seen) {
    let who = k.who();
    let (ok, out, err) = k
        .run_with(&["apply", "-f", "-"], Some(&configurations(port, ca)))
        .parts();
    assert!(ok && err.is_empty(), "{who}: {out} {err}");
    assert!(
        out.contains(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/skiff-test-mutate created"
        ),
        "{who}: {out}"
    );
    let table = k.ok_quiet(&["get", "mutatingwebhookconfigurations"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "WEBHOOKS", "AGE"], "{who}: {table}");
    assert_eq!(lines[2][..2], ["skiff-test-mutate", "1"], "{who}: {table}");
    // Defaults as kube-apiserver sets them.
    let got = k.ok_quiet(&[
        "get",
        "validatingwebhookconfiguration",
        "skiff-test-validate",
        "-o",
        "jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].matchPolicy} {.webhooks[0].timeoutSeconds}",
    ]);
    assert_eq!(got, "Fail Equivalent 10", "{who}");

    k.ok_quiet(&["create", "namespace", "wh-on"]);
    k.ok_quiet(&["label", "namespace", "wh-on", "webhooks=on"]);
    k.ok_quiet(&["create", "namespace", "wh-off"]);

    // Mutated, with the webhook's warning on kubectl's stderr.
    let (ok, out, err) = k
        .run(&[
            "create",
            "configmap",
            "c1",
            "-n",
            "wh-on",
            "--from-literal=a=b",
        ])
        .parts();
    assert!(ok, "{who}: {out} {err}");
    assert_eq!(err.trim(), "Warning: mutated by the test webhook", "{who}");
    let labels = k.ok_quiet(&[
        "get",
        "configmap",
        "c1",
        "-n",
        "wh-on",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, r#"{"mutated":"yes"}"#, "{who}");
    {
        let seen = seen.lock().unwrap();
        let mutate = seen
            .iter()
            .find(|r| r["request"]["name"] == "c1")
            .expect("the webhook saw c1");
        let req = &mutate["request"];
        assert_eq!(req["operation"], "CREATE", "{who}");
        assert_eq!(req["namespace"], "wh-on", "{who}");
        assert_eq!(
            req["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(req["resource"]["resource"], "configmaps");
        assert_eq!(req["object"]["data"], json!({"a": "b"}));
        assert_eq!(req["dryRun"], false);
        assert!(req["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()));
    }
    // The observer ran first (configurations by name) and, the object having changed
    // after it, once more with the mutated object (reinvocationPolicy: IfNeeded).
    {
        let seen = seen.lock().unwrap();
        let observed: Vec<&Value> = seen
            .iter()
            .filter(|r| r["path"] == "/observe" && r["request"]["name"] == "c1")
            .collect();
        assert_eq!(observed.len(), 2, "{who}");
        assert!(
            observed[0]["request"]["object"]["metadata"]["labels"].is_null(),
            "{who}"
        );
        assert_eq!(
            observed[1]["request"]["object"]["metadata"]["labels"]["mutated"], "yes",
            "{who}"
        );
    }
    // The namespace selector leaves other namespaces alone.
    k.ok_quiet(&[
        "create",
        "configmap",
        "c2",
        "-n",
        "wh-off",
        "--from-literal=a=b",
    ]);
    let labels = k.ok_quiet(&[
        "get",
        "configmap",
        "c2",
        "-n",
        "wh-off",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, "", "{who}");

    // Denied, with kube-apiserver's words, also on update and in a dry run.
    let denied = "admission webhook \"validate.skiff-test.example.com\" denied the request: the key forbidden is not allowed";
    let (ok, _, err) = k
        .run(&[
            "create",
            "configmap",
            "bad",
            "-n",
            "wh-off",
            "--from-literal=forbidden=x",
        ])
        .parts();
    assert!(!ok, "{who}");
    assert_eq!(
        err.trim(),
        format!("error: failed to create configmap: {denied}"),
        "{who}"
    );
    let (ok, _, err) = k
        .run(&[
            "create",
            "configmap",
            "bad",
            "-n",
            "wh-off",
            "--from-literal=forbidden=x",
            "--dry-run=server",
        ])
        .parts();
    assert!(!ok && err.contains(denied), "{who}: {err}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r["request"]["dryRun"] == true),
        "{who}: the dry run reached the webhook"
    );
    let (ok, _, err) = k
        .run(&[
            "patch",
            "configmap",
            "c2",
            "-n",
            "wh-off",
            "-p",
            r#"{"data":{"forbidden":"y"}}"#,
        ])
        .parts();
    assert!(!ok, "{who}");
    assert_eq!(
        err.trim(),
        format!("Error from server (Forbidden): {denied}"),
        "{who}"
    );

    // failurePolicy: Fail refuses what the webhook cannot judge; Ignore lets it through.
    let (ok, _, err) = k
        .run_with(&["apply", "-f", "-"], Some(&unreachable("Fail")))
        .parts();
    assert!(ok, "{who}: {err}");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: wh-off\n  labels: {down: \"yes\"}\nstringData: {a: b}\n";
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some(secret)).parts();
    assert!(!ok, "{who}");
    assert!(
        err.contains("Internal error occurred: failed calling webhook \"down.skiff-test.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/validate?timeout=2s\": dial tcp 127.0.0.1:1: connect: connection refused"),
        "{who}: {err}"
    );
    // The object selector: a secret without the label is not sent.
    k.ok_quiet(&[
        "create",
        "secret",
        "generic",
        "s0",
        "-n",
        "wh-off",
        "--from-literal=a=b",
    ]);
    let (ok, _, err) = k
        .run_with(&["apply", "-f", "-"], Some(&unreachable("Ignore")))
        .parts();
    assert!(ok, "{who}: {err}");
    let (ok, out, err) = k.run_with(&["create", "-f", "-"], Some(secret)).parts();
    assert!(ok && err.is_empty(), "{who}: {out} {err}");

    // The configurations are validated as kube-apiserver validates them.
    let bad = unreachable("Sometimes").replace("timeoutSeconds: 2", "timeoutSeconds: 31");
    let (ok, _, err) = k.run_with(&["apply", "-f", "-"], Some(&bad)).parts();
    assert!(!ok, "{who}");
    assert!(err.contains("webhooks[0].failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\""), "{who}: {err}");
    assert!(err.contains("webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"), "{who}: {err}");

    // Deleting the configurations stops the calls.
    k.ok_quiet(&[
        "delete",
        "validatingwebhookconfiguration",
        "skiff-test-validate",
    ]);
    k.ok_quiet(&[
        "create",
        "configmap",
        "fine-now",
        "-n",
        "wh-off",
        "--from-literal=forbidden=x",
    ]);
}
