//! Pod Security admission through the real kubectl (1.27 and 1.33): the namespace
//! labels, enforce's refusal, warn's `Warning:` lines, workload templates, and the
//! warnings about existing pods when a namespace's enforce level tightens.

use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

/// A pod with one container `c` and no security settings: baseline, not restricted.
fn plain_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
    )
}

/// A pod that meets the restricted level.
const COMPLIANT_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: ok
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: c
    image: nginx
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
";

/// A privileged pod on the host network: not even baseline.
const PRIVILEGED_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: root
spec:
  hostNetwork: true
  containers:
  - name: c
    image: nginx
    securityContext:
      privileged: true
";

/// A Deployment whose pod template is not restricted.
const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx
";

/// The restricted violations of a plain container `c`.
const RESTRICTED_PLAIN: &str = concat!(
    r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);

/// `kubectl apply -f -` of `manifest` in namespace `ns`: (success, stdout, stderr).
fn apply(k: &Kubectl, ns: &str, manifest: &str) -> (bool, String, String) {
    k.run_with(&["apply", "-n", ns, "-f", "-"], Some(manifest))
        .parts()
}

fn scenario(k: &Kubectl) {
    let who = k.who();
    k.ok(&["create", "namespace", "psa"]);
    // Before any label: anything goes.
    let (ok, out, err) = apply(k, "psa", &plain_pod("early"));
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "pod/early created", "{who}");
    assert_eq!(err, "", "{who}");

    // Enforcing restricted warns about the pod already there.
    let (ok, out, err) = k
        .run(&[
            "label",
            "namespace",
            "psa",
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .parts();
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "namespace/psa labeled", "{who}");
    assert_eq!(
        err,
        concat!(
            "Warning: existing pods in namespace \"psa\" violate the new PodSecurity enforce level \"restricted:latest\"\n",
            "Warning: early: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile\n"
        ),
        "{who}"
    );

    // A violating pod is refused with kube's message.
    let (ok, out, err) = apply(k, "psa", &plain_pod("x"));
    assert!(!ok, "{who}: {out}");
    assert_eq!(
        err.trim_end(),
        format!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "x" is forbidden: violates PodSecurity "restricted:latest": {RESTRICTED_PLAIN}"#
        ),
        "{who}"
    );
    let (ok, _, err) = k.run(&["get", "pod", "x", "-n", "psa"]).parts();
    assert!(!ok, "{who}: the refused pod exists");
    assert!(err.contains("NotFound"), "{who}: {err}");

    // A compliant pod is created, silently.
    let (ok, out, err) = apply(k, "psa", COMPLIANT_POD);
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "pod/ok created", "{who}");
    assert_eq!(err, "", "{who}");

    // Workloads are never refused; with only enforce set they are not warned about
    // either (kube warns on templates at the warn level only).
    let (ok, out, err) = apply(k, "psa", DEPLOYMENT);
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "deployment.apps/web created", "{who}");
    assert_eq!(err, "", "{who}");

    // With warn=restricted too, the template's violations come back as a warning, on
    // create and on every later apply.
    k.ok(&[
        "label",
        "namespace",
        "psa",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let warning =
        format!("Warning: would violate PodSecurity \"restricted:latest\": {RESTRICTED_PLAIN}\n");
    let (ok, out, err) = apply(k, "psa", &DEPLOYMENT.replace("name: web", "name: web2"));
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "deployment.apps/web2 created", "{who}");
    assert_eq!(err, warning, "{who}");
    let (ok, _, err) = apply(
        k,
        "psa",
        &DEPLOYMENT
            .replace("name: web", "name: web2")
            .replace("image: nginx", "image: nginx:2"),
    );
    assert!(ok, "{who}: {err}");
    assert_eq!(err, warning, "{who}");

    // warn=baseline without enforce: a privileged pod is created with a warning.
    k.ok(&["create", "namespace", "psa-warn"]);
    k.ok(&[
        "label",
        "namespace",
        "psa-warn",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let (ok, out, err) = apply(k, "psa-warn", PRIVILEGED_POD);
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "pod/root created", "{who}");
    assert_eq!(
        err,
        concat!(
            r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true), "#,
            r#"privileged (container "c" must not set securityContext.privileged=true)"#,
            "\n"
        ),
        "{who}"
    );
    // A plain pod is baseline: no warning.
    let (ok, _, err) = apply(k, "psa-warn", &plain_pod("fine"));
    assert!(ok && err.is_empty(), "{who}: {err}");

    // Invalid labels are refused.
    let (ok, _, err) = k
        .run(&[
            "label",
            "namespace",
            "psa-warn",
            "pod-security.kubernetes.io/enforce=strict",
        ])
        .parts();
    assert!(!ok, "{who}");
    assert_eq!(
        err.trim_end(),
        r#"The Namespace "psa-warn" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
        "{who}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_with_real_kubectl() {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let k = s.kubectl(bin);
        tokio::task::spawn_blocking(move || scenario(&k))
            .await
            .expect("scenario");
    }
}
