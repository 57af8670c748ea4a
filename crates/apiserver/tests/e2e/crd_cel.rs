//! CEL validation rules (`x-kubernetes-validations`) and `selectableFields` of CRDs
//! through the real kubectl (1.27 and 1.33): kube-apiserver's 422 messages for failing
//! objects, transition rules on update only, `messageExpression`/`reason`/`fieldPath`,
//! CRDs refused for rules that do not compile or bad selectable fields, field selectors
//! on the selectable fields.

use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.cel-test.example.com
spec:
  group: cel-test.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    selectableFields:
    - jsonPath: .spec.color
    - jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-validations:
        - rule: "self.metadata.name.startsWith('g')"
          message: "name must start with g"
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= self.max"
              messageExpression: "'replicas (' + string(self.replicas) + ') must not exceed max (' + string(self.max) + ')'"
            - rule: "self.color == oldSelf.color"
              message: "color is immutable"
            - rule: "!has(self.tags) || self.tags.all(t, t.matches('^[a-z]+$'))"
              reason: FieldValueForbidden
              fieldPath: ".tags"
              message: "tags must be lowercase"
            properties:
              color: {type: string}
              replicas: {type: integer}
              max: {type: integer}
              tags:
                type: array
                items: {type: string}
                x-kubernetes-validations:
                - rule: "self.isSorted()"
                  message: "tags must be sorted"
"#;

fn kubectls() -> Vec<std::path::PathBuf> {
    kubectl::versions(&["1.27", "1.33"])
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_rules_and_selectable_fields_with_real_kubectl() {
    let bins = kubectls();
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let k = s.kubectl(bin);
        blocking(move || cel(&k)).await;
    }
}

fn apply(k: &Kubectl, yaml: &str) -> (bool, String, String) {
    k.run_with(&["apply", "-f", "-"], Some(yaml)).parts()
}

fn gadget(name: &str, spec: &str) -> String {
    format!("apiVersion: cel-test.example.com/v1\nkind: Gadget\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

fn cel(k: &Kubectl) {
    let who = k.who();
    let (ok, _, err) = apply(k, CRD);
    assert!(ok && err.is_empty(), "{who}: {err}");
    k.ok_quiet(&[
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        "crd/gadgets.cel-test.example.com",
    ]);

    // Valid objects are created; failing rules give kube-apiserver's 422.
    let (ok, _, err) = apply(
        k,
        &gadget("g1", "{color: red, replicas: 1, max: 3, tags: [a, b]}"),
    );
    assert!(ok && err.is_empty(), "{who}: {err}");
    let (ok, _, err) = apply(
        k,
        &gadget("x1", "{color: red, replicas: 5, max: 3, tags: [b, a, C]}"),
    );
    assert!(!ok, "{who}");
    for want in [
        "The Gadget \"x1\" is invalid: ",
        "<nil>: Invalid value: \"object\": name must start with g",
        "spec: Invalid value: \"object\": replicas (5) must not exceed max (3)",
        "spec.tags: Forbidden: tags must be lowercase",
        "spec.tags: Invalid value: \"array\": tags must be sorted",
    ] {
        assert!(err.contains(want), "{who}: missing {want:?} in {err}");
    }
    // The transition rule ran not on create, but runs on update.
    assert!(!err.contains("immutable"), "{who}: {err}");
    let (ok, _, err) = apply(k, &gadget("g1", "{color: blue, replicas: 1, max: 3}"));
    assert!(!ok, "{who}");
    assert!(
        err.contains(
            "The Gadget \"g1\" is invalid: spec: Invalid value: \"object\": color is immutable"
        ),
        "{who}: {err}"
    );
    let (ok, _, err) = apply(k, &gadget("g1", "{color: red, replicas: 2, max: 3}"));
    assert!(ok && err.is_empty(), "{who}: {err}");

    // Field selectors on the selectable fields; others refused as kube-apiserver does.
    let (ok, _, err) = apply(k, &gadget("g2", "{color: blue, replicas: 3, max: 3}"));
    assert!(ok && err.is_empty(), "{who}: {err}");
    for (sel, want) in [
        ("spec.color=blue", "gadget.cel-test.example.com/g2"),
        ("spec.color!=blue", "gadget.cel-test.example.com/g1"),
        ("spec.replicas=2", "gadget.cel-test.example.com/g1"),
        ("spec.color=blue,metadata.name=g1", ""),
    ] {
        let got = k.ok_quiet(&["get", "gadgets", "--field-selector", sel, "-o", "name"]);
        assert_eq!(got.trim(), want, "{who}: {sel}");
    }
    let (ok, _, err) = k
        .run(&["get", "gadgets", "--field-selector", "spec.max=3"])
        .parts();
    assert!(
        !ok && err.contains("field label not supported: spec.max"),
        "{who}: {err}"
    );

    // CRDs whose rules do not compile, or whose selectable fields are bad, are refused.
    let bad = CRD
        .replace("gadgets", "badgadgets")
        .replace("Gadget", "BadGadget")
        .replace("singular: gadget,", "singular: badgadget,")
        .replace("self.replicas <= self.max", "self.replicas <=")
        .replace("jsonPath: .spec.replicas", "jsonPath: .spec.tags");
    let (ok, _, err) = apply(k, &bad);
    assert!(!ok, "{who}");
    for want in [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value",
        "compilation failed: ERROR: <input>:1:",
        "spec.versions[0].selectableFields[1].jsonPath: Invalid value: \".spec.tags\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
    ] {
        assert!(err.contains(want), "{who}: missing {want:?} in {err}");
    }
}
