//! CustomResourceDefinitions through the real kubectl (1.27 and 1.33): a CRD's lifecycle
//! from `apply` to deletion, its custom resources served at once, the schema's
//! validation, pruning and defaulting, printer columns, the status and scale
//! subresources.

use std::time::{Duration, Instant};

use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.skiff-test.example.com
spec:
  group: skiff-test.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: string
                enum: [S, M, L]
              replicas:
                type: integer
                minimum: 0
                maximum: 10
                default: 1
              name:
                type: string
                pattern: '^[a-z]+$'
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

const CLUSTER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.skiff-test.example.com
spec:
  group: skiff-test.example.com
  scope: Cluster
  names:
    plural: gizmos
    kind: Gizmo
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn kubectls() -> Vec<std::path::PathBuf> {
    kubectl::versions(&["1.27", "1.33"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_lifecycle_with_real_kubectl() {
    let bins = kubectls();
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let k = s.kubectl(bin);
        blocking(move || lifecycle(&k)).await;
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

fn lifecycle(k: &Kubectl) {
    let who = k.who();
    let (ok, out, err) = apply(k, CRD);
    assert!(ok, "{who}: {err}");
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.skiff-test.example.com created",
        "{who}"
    );
    assert_eq!(err, "", "{who}");
    let out = k.ok_quiet(&[
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        "crd/widgets.skiff-test.example.com",
    ]);
    assert!(out.contains("condition met"), "{who}: {out}");
    let names = k.ok_quiet(&["get", "crd", "widgets.skiff-test.example.com", "-o", "jsonpath={.status.acceptedNames.kind} {.status.conditions[?(@.type==\"NamesAccepted\")].status}"]);
    assert_eq!(names, "Widget True", "{who}");

    // Served at once: create, get by every name, list with columns.
    let (ok, out, err) = apply(k, "apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  labels: {tier: a}\nspec:\n  size: M\n");
    assert!(ok && err.is_empty(), "{who}: {out} {err}");
    assert_eq!(
        out.trim(),
        "widget.skiff-test.example.com/w1 created",
        "{who}"
    );
    for name in [
        "widgets",
        "widget",
        "wdg",
        "widgets.skiff-test.example.com",
        "Widget",
    ] {
        let got = k.ok_quiet(&[
            "get",
            name,
            "w1",
            "-o",
            "jsonpath={.metadata.name} {.spec.replicas}",
        ]);
        assert_eq!(got, "w1 1", "{who}: {name} (replicas defaulted)");
    }
    let table = k.ok_quiet(&["get", "widgets"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "SIZE", "REPLICAS"], "{who}: {table}");
    assert_eq!(lines[1], ["w1", "M", "1"], "{who}: {table}");
    let all = k.ok_quiet(&["get", "all"]);
    assert!(
        all.contains("widget.skiff-test.example.com/w1"),
        "{who}: {all}"
    );

    // Selectors.
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some("apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: w2\n  labels: {tier: b}\nspec:\n  size: S\n  replicas: 2\n")).parts();
    assert!(ok && err.is_empty(), "{who}: {err}");
    assert_eq!(
        k.ok_quiet(&["get", "widgets", "-l", "tier=b", "-o", "name"])
            .trim(),
        "widget.skiff-test.example.com/w2",
        "{who}"
    );
    assert_eq!(
        k.ok_quiet(&[
            "get",
            "widgets",
            "--field-selector",
            "metadata.name=w1",
            "-o",
            "name"
        ])
        .trim(),
        "widget.skiff-test.example.com/w1",
        "{who}"
    );

    // Bad objects: kube's 422 messages.
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some("apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: XL\n  replicas: 11\n  name: ABC\n")).parts();
    assert!(!ok, "{who}");
    for want in [
        "The Widget \"bad\" is invalid:",
        "spec.size: Unsupported value: \"XL\": supported values: \"S\", \"M\", \"L\"",
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
    ] {
        assert!(err.contains(want), "{who}: missing {want:?} in {err}");
    }
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some("apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  replicas: 1\n")).parts();
    assert!(
        !ok && err.contains("spec.size: Required value"),
        "{who}: {err}"
    );

    // Unknown fields: refused with kubectl's default (Strict), warned with Warn, pruned.
    let unknown = "apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: w4\nspec:\n  size: S\n  bogus: 1\n";
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some(unknown)).parts();
    assert!(
        !ok && err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{who}: {err}"
    );
    let (ok, _, err) = k
        .run_with(&["create", "--validate=warn", "-f", "-"], Some(unknown))
        .parts();
    assert!(
        ok && err.contains("unknown field \"spec.bogus\""),
        "{who}: {err}"
    );
    assert_eq!(
        k.ok_quiet(&["get", "widget", "w4", "-o", "jsonpath={.spec}"]),
        r#"{"replicas":1,"size":"S"}"#,
        "{who}"
    );

    // A CRD that breaks the structural-schema rules: kube-apiserver's message.
    let bad_crd = CRD
        .replace("widgets", "badwidgets")
        .replace("Widget", "BadWidget")
        .replace("wdg", "bwdg")
        .replace(
            "                type: integer\n                minimum: 0",
            "                minimum: 0",
        );
    let (ok, _, err) = apply(k, &bad_crd);
    assert!(!ok && err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].type: Required value: must not be empty for specified object fields"), "{who}: {err}");

    // Patches: merge and JSON; strategic merge is refused as kube-apiserver refuses it.
    k.ok_quiet(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"L"}}"#,
    ]);
    k.ok_quiet(&[
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    assert_eq!(
        k.ok_quiet(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.size}{.spec.replicas}"
        ]),
        "L3",
        "{who}"
    );
    let (ok, _, err) = k
        .run(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":"S"}}"#])
        .parts();
    assert!(
        !ok && err.contains("application/merge-patch+json"),
        "{who}: {err}"
    );

    // Scale and status subresources.
    k.ok_quiet(&["scale", "widget", "w1", "--replicas=5"]);
    assert_eq!(
        k.ok_quiet(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]),
        "5",
        "{who}"
    );
    k.ok_quiet(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":5}}"#,
    ]);
    assert_eq!(
        k.ok_quiet(&["get", "widget", "w1", "-o", "jsonpath={.status.replicas}"]),
        "5",
        "{who}"
    );

    // Server-side apply.
    let (ok, out, err) = k.run_with(&["apply", "--server-side", "-f", "-"], Some("apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  size: S\n")).parts();
    assert!(ok && err.is_empty(), "{who}: {out} {err}");
    assert_eq!(
        out.trim(),
        "widget.skiff-test.example.com/w3 serverside-applied",
        "{who}"
    );
    // The schema's list types: two managers each own an item of a `map` list.
    let ports = |manager: &str, name: &str, port: u16| {
        let yaml = format!("apiVersion: skiff-test.example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  size: S\n  ports:\n  - name: {name}\n    port: {port}\n");
        let (ok, out, err) = k
            .run_with(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager",
                    manager,
                    "-f",
                    "-",
                ],
                Some(&yaml),
            )
            .parts();
        assert!(ok && err.is_empty(), "{who}: {manager}: {out} {err}");
    };
    ports("alice", "http", 80);
    ports("bob", "metrics", 9090);
    assert_eq!(
        k.ok_quiet(&[
            "get",
            "widget",
            "w3",
            "-o",
            "jsonpath={.spec.ports[*].name}"
        ]),
        "http metrics",
        "{who}"
    );

    // Cluster scope.
    let (ok, _, err) = apply(k, CLUSTER_CRD);
    assert!(ok && err.is_empty(), "{who}: {err}");
    k.ok_quiet(&[
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        "crd/gizmos.skiff-test.example.com",
    ]);
    let (ok, _, err) = apply(k, "apiVersion: skiff-test.example.com/v1\nkind: Gizmo\nmetadata:\n  name: g1\nanything:\n  goes: true\n");
    assert!(ok && err.is_empty(), "{who}: {err}");
    assert_eq!(
        k.ok_quiet(&["get", "gizmo", "g1", "-o", "jsonpath={.anything.goes}"]),
        "true",
        "{who}"
    );

    // An object's own finalizer holds its CRD's deletion: the CRD is Terminating, the
    // object marked for deletion, new objects refused, until the finalizer goes.
    let (ok, _, err) = apply(k, "apiVersion: skiff-test.example.com/v1\nkind: Gizmo\nmetadata:\n  name: held\n  finalizers: [skiff-test.example.com/hold]\n");
    assert!(ok && err.is_empty(), "{who}: {err}");
    k.ok_quiet(&[
        "delete",
        "crd",
        "gizmos.skiff-test.example.com",
        "--wait=false",
    ]);
    k.ok_quiet(&[
        "wait",
        "--for=condition=Terminating",
        "--timeout=20s",
        "crd/gizmos.skiff-test.example.com",
    ]);
    eventually(
        "the held gizmo marked for deletion",
        Duration::from_secs(20),
        || {
            !k.ok_quiet(&[
                "get",
                "gizmo",
                "held",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ])
            .is_empty()
        },
    );
    let (ok, _, err) = apply(
        k,
        "apiVersion: skiff-test.example.com/v1\nkind: Gizmo\nmetadata:\n  name: late\n",
    );
    assert!(
        !ok && err.contains("create not allowed while custom resource definition is terminating"),
        "{who}: {err}"
    );
    assert!(
        k.run(&["get", "crd", "gizmos.skiff-test.example.com"])
            .success,
        "{who}"
    );
    k.ok_quiet(&[
        "patch",
        "gizmo",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the gizmos CRD to go", Duration::from_secs(20), || {
        !k.run(&["get", "crd", "gizmos.skiff-test.example.com"])
            .success
    });

    // Deleting the CRD deletes its objects, and the resource leaves discovery.
    k.ok_quiet(&[
        "delete",
        "crd",
        "widgets.skiff-test.example.com",
        "--timeout=30s",
    ]);
    eventually("the CRD to go", Duration::from_secs(20), || {
        !k.run(&["get", "crd", "widgets.skiff-test.example.com"])
            .success
    });
    let (ok, _, err) = k.run(&["get", "widgets"]).parts();
    assert!(
        // kubectl's discovery cache may still name the resource: the server's 404 then.
        !ok && (err.contains("the server doesn't have a resource type \"widgets\"")
            || err.contains("the server could not find the requested resource")),
        "{who}: {err}"
    );
    let (ok, out, err) = apply(k, CRD);
    assert!(ok, "{who}: {out} {err}");
    k.ok_quiet(&[
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        "crd/widgets.skiff-test.example.com",
    ]);
    let mut listed = None;
    eventually(
        "the re-created CRD's resource to be served",
        Duration::from_secs(10),
        || {
            let o = k.run(&["get", "widgets", "-o", "name"]);
            if o.success {
                listed = Some(o.stdout);
            }
            o.success
        },
    );
    let out = listed.unwrap_or_default();
    assert_eq!(
        out.trim(),
        "",
        "{who}: objects of the deleted CRD came back: {out}"
    );
}
