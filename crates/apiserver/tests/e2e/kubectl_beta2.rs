//! apps/v1beta2 Deployments through the real kubectl 1.27 and 1.33: strict client-side
//! validation against the served OpenAPI v3, apply/get/explain, and the stored apps/v1
//! object seen through both versions.

use std::path::Path;

use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

const MANIFEST: &str = "apiVersion: apps/v1beta2
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
";

/// The same Deployment without a selector: v1beta2 (unlike v1beta1) requires one.
const NO_SELECTOR: &str = "apiVersion: apps/v1beta2
kind: Deployment
metadata:
  name: bare
spec:
  template:
    metadata:
      labels:
        app: bare
    spec:
      containers:
      - name: c
        image: nginx
";

/// A field v1beta2 does not have (`rollbackTo` was v1beta1's).
const UNKNOWN_FIELD: &str = "apiVersion: apps/v1beta2
kind: Deployment
metadata:
  name: odd
spec:
  rollbackTo:
    revision: 1
  selector:
    matchLabels:
      app: odd
  template:
    metadata:
      labels:
        app: odd
    spec:
      containers:
      - name: c
        image: nginx
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_v1beta2_deployments_with_real_kubectl() {
    let bins = kubectl::versions(&[kubectl::OLDEST, kubectl::NEWEST]);
    assert!(!bins.is_empty(), "kubectl 1.27/1.33 are missing");
    for bin in bins {
        let s = common::start().await;
        let dir = s.dir.path().to_path_buf();
        let k = s.kubectl(bin);
        tokio::task::spawn_blocking(move || beta2_steps(&k, &dir))
            .await
            .expect("kubectl steps");
    }
}

fn beta2_steps(k: &Kubectl, dir: &Path) {
    let who = k.bin.display().to_string();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write manifest");
        p.display().to_string()
    };
    let web = write("web.yaml", MANIFEST);

    let out = k.ok_quiet(&["apply", "--validate=strict", "-f", &web]);
    assert_eq!(out.trim_end(), "deployment.apps/web created", "{who}");
    let out = k.ok_quiet(&["apply", "--validate=strict", "-f", &web]);
    assert_eq!(out.trim_end(), "deployment.apps/web unchanged", "{who}");

    // Served in both versions; defaults are apps/v1's (history limit 10).
    let got = k.ok_quiet(&[
        "get",
        "deployments.v1beta2.apps",
        "web",
        "-o",
        "jsonpath={.apiVersion} {.spec.revisionHistoryLimit} {.spec.selector.matchLabels.app}",
    ]);
    assert_eq!(got, "apps/v1beta2 10 web", "{who}");
    let got = k.ok_quiet(&["get", "deploy", "web", "-o", "jsonpath={.apiVersion}"]);
    assert_eq!(got, "apps/v1", "{who}: apps/v1 stays preferred");

    let explain = k.ok_quiet(&["explain", "deployments", "--api-version=apps/v1beta2"]);
    assert!(
        explain.contains("KIND:") && explain.contains("Deployment"),
        "{who}: {explain}"
    );
    assert!(
        explain
            .lines()
            .any(|l| l.starts_with("VERSION:") && l.contains("v1beta2")),
        "{who}: {explain}"
    );
    let explain = k.ok_quiet(&[
        "explain",
        "deployments.spec.selector",
        "--api-version=apps/v1beta2",
    ]);
    assert!(explain.contains("matchLabels"), "{who}: {explain}");

    // Client-side strict validation knows v1beta2 has no rollbackTo.
    let odd = write("odd.yaml", UNKNOWN_FIELD);
    let (ok, _, err) = k.run(&["apply", "--validate=strict", "-f", &odd]).parts();
    assert!(!ok, "{who}: unknown field accepted");
    assert!(err.contains("rollbackTo"), "{who}: {err}");

    // No selector defaulting in v1beta2: kube-apiserver's validation message.
    let bare = write("bare.yaml", NO_SELECTOR);
    let (ok, _, err) = k.run(&["apply", "-f", &bare]).parts();
    assert!(
        !ok,
        "{who}: a v1beta2 Deployment without selector was accepted"
    );
    assert!(
        err.contains("spec.selector: Required value"),
        "{who}: {err}"
    );

    let out = k.ok_quiet(&["scale", "deployments.v1beta2.apps", "web", "--replicas=3"]);
    assert_eq!(out.trim_end(), "deployment.apps/web scaled", "{who}");
    let out = k.ok_quiet(&["delete", "deployments.v1beta2.apps", "web"]);
    assert_eq!(out.trim_end(), "deployment.apps \"web\" deleted", "{who}");
}
