//! Field management and server-side apply end to end: `metadata.managedFields` on every
//! write, `kubectl apply` (client-side: created/configured/unchanged without needless
//! writes; `--server-side`: serverside-applied, conflicts, `--force-conflicts`) with the
//! real kubectl 1.27 and 1.33, kube-rs `Patch::Apply`, and `resourceVersionMatch`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use skiff_testkit::kubectl;

use crate::common;

/// The seed's manifests as the product's walkthrough applies them.
fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../skiff/tests/seed")
}

/// The oldest and newest kubectl the product supports.
fn kubectls() -> Vec<PathBuf> {
    kubectl::versions(&[kubectl::OLDEST, kubectl::NEWEST])
}

/// The shared kubectl runner plus a directory for the manifests the test writes.
struct Kubectl {
    k: kubectl::Kubectl,
    dir: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.k.run(args).parts()
    }

    /// stdout of a command that must succeed without a warning.
    fn ok(&self, args: &[&str]) -> String {
        self.k.ok_quiet(args)
    }

    /// `kubectl apply [extra] -f <file with text>`; returns stdout's first line.
    fn apply_text(&self, name: &str, text: &str, extra: &[&str]) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write manifest");
        let p = path.display().to_string();
        let mut args = vec!["apply"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", &p]);
        self.ok(&args).trim_end().to_string()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&self.ok(&a)).expect("json")
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// (resourceVersion, generation) of an object.
fn rv_gen(v: &Value) -> (String, Value) {
    (
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["generation"].clone(),
    )
}

fn managers(v: &Value) -> Vec<(String, String)> {
    v["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn client_side_round_trip(k: &Kubectl) {
    let who = k.k.bin.display().to_string();
    let seed = seed_dir();
    let dep = std::fs::read_to_string(seed.join("Httpd-Deployment.yaml")).expect("seed");
    let svc = std::fs::read_to_string(seed.join("Httpd-Service.yaml")).expect("seed");
    let np = std::fs::read_to_string(seed.join("Httpd-Service-NodePort.yaml")).expect("seed");

    assert_eq!(
        k.apply_text("dep.yaml", &dep, &[]),
        "deployment.apps/httpd created",
        "{who}"
    );
    let before = k.json(&["get", "deploy", "httpd"]);
    assert_eq!(
        managers(&before),
        vec![("kubectl-client-side-apply".into(), "Update".into())],
        "{who}"
    );
    assert_eq!(
        before["metadata"]["managedFields"][0]["apiVersion"], "apps/v1beta1",
        "{who}"
    );
    assert_eq!(
        k.apply_text("dep.yaml", &dep, &[]),
        "deployment.apps/httpd unchanged",
        "{who}"
    );
    let after = k.json(&["get", "deploy", "httpd"]);
    assert_eq!(
        rv_gen(&before),
        rv_gen(&after),
        "{who}: unchanged must not write"
    );

    let changed = dep.replace("replicas: 4", "replicas: 3");
    assert_eq!(
        k.apply_text("dep.yaml", &changed, &[]),
        "deployment.apps/httpd configured",
        "{who}"
    );
    let configured = k.json(&["get", "deploy", "httpd"]);
    assert_eq!(configured["spec"]["replicas"], 3, "{who}");
    assert_eq!(configured["metadata"]["generation"], 2, "{who}");
    assert_eq!(
        k.apply_text("dep.yaml", &changed, &[]),
        "deployment.apps/httpd unchanged",
        "{who}"
    );
    assert_eq!(
        rv_gen(&configured),
        rv_gen(&k.json(&["get", "deploy", "httpd"])),
        "{who}"
    );

    assert_eq!(
        k.apply_text("svc.yaml", &svc, &[]),
        "service/httpd-svc created",
        "{who}"
    );
    // As kube-apiserver records it: defaults included, allocations (cluster IP, IP
    // families) not.
    let created = k.json(&["get", "svc", "httpd-svc"]);
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"],
        json!({
            "f:internalTrafficPolicy": {},
            "f:ports": {".": {}, "k:{\"port\":8080,\"protocol\":\"TCP\"}": {
                ".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
            "f:selector": {},
            "f:sessionAffinity": {},
            "f:type": {}
        }),
        "{who}"
    );
    assert_eq!(
        k.apply_text("svc.yaml", &svc, &[]),
        "service/httpd-svc unchanged",
        "{who}"
    );
    assert_eq!(
        k.apply_text("np.yaml", &np, &[]),
        "service/httpd-svc configured",
        "{who}"
    );
    let s1 = k.json(&["get", "svc", "httpd-svc"]);
    assert_eq!(
        k.apply_text("np.yaml", &np, &[]),
        "service/httpd-svc unchanged",
        "{who}"
    );
    let s2 = k.json(&["get", "svc", "httpd-svc"]);
    assert_eq!(rv_gen(&s1), rv_gen(&s2), "{who}");
    // Ports are keyed by port and protocol in the client-side apply entry.
    let fields = &s2["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(
        fields["f:spec"]["f:ports"]
            .get("k:{\"port\":8080,\"protocol\":\"TCP\"}")
            .is_some(),
        "{who}: {fields}"
    );

    // Without --show-managed-fields kubectl hides them; the rest is unchanged.
    let yaml = k.ok(&["get", "deploy", "httpd", "-o", "yaml"]);
    assert!(!yaml.contains("managedFields"), "{who}: {yaml}");
    let shown = k.ok(&[
        "get",
        "deploy",
        "httpd",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(
        shown.contains("manager: kubectl-client-side-apply"),
        "{who}: {shown}"
    );
    assert!(shown.contains("fieldsType: FieldsV1"), "{who}");

    // Other kubectl writes add their own Update entries.
    k.ok(&["label", "deploy", "httpd", "tier=web"]);
    let labelled = k.json(&["get", "deploy", "httpd"]);
    assert!(
        managers(&labelled).contains(&("kubectl-label".into(), "Update".into())),
        "{who}: {:?}",
        managers(&labelled)
    );
    // No-op patches write nothing.
    let before = rv_gen(&labelled);
    let out = k.ok(&[
        "patch",
        "deploy",
        "httpd",
        "-p",
        "{\"spec\":{\"replicas\":3}}",
    ]);
    assert_eq!(
        out.trim_end(),
        "deployment.apps/httpd patched (no change)",
        "{who}"
    );
    assert_eq!(
        rv_gen(&k.json(&["get", "deploy", "httpd"])),
        before,
        "{who}"
    );
    // Scale writes are recorded with their subresource and take replicas over.
    k.ok(&["scale", "deploy", "httpd", "--replicas=1"]);
    let scaled = k.json(&["get", "deploy", "httpd"]);
    let entries = scaled["metadata"]["managedFields"]
        .as_array()
        .expect("entries");
    let owners: Vec<&str> = entries
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .map(|e| e["subresource"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(owners, vec!["scale"], "{who}: {entries:?}");
}

const WEB_V1: &str = "apiVersion: apps/v1
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
        image: busybox
        ports:
        - containerPort: 80
";

fn server_side(k: &Kubectl) {
    let who = k.k.bin.display().to_string();
    // A new object: created by the apply.
    let fresh = WEB_V1.replace("name: web\n", "name: fresh\n");
    assert_eq!(
        k.apply_text("fresh.yaml", &fresh, &["--server-side"]),
        "deployment.apps/fresh serverside-applied",
        "{who}"
    );
    let f = k.json(&["get", "deploy", "fresh"]);
    assert_eq!(
        managers(&f),
        vec![("kubectl".into(), "Apply".into())],
        "{who}"
    );
    // Applying the same configuration again writes nothing.
    assert_eq!(
        k.apply_text("fresh.yaml", &fresh, &["--server-side"]),
        "deployment.apps/fresh serverside-applied",
        "{who}"
    );
    assert_eq!(
        rv_gen(&f),
        rv_gen(&k.json(&["get", "deploy", "fresh"])),
        "{who}"
    );

    // Client-side apply owns replicas; a server-side apply changing it conflicts.
    assert_eq!(
        k.apply_text("web.yaml", WEB_V1, &[]),
        "deployment.apps/web created",
        "{who}"
    );
    let more = WEB_V1.replace("replicas: 2", "replicas: 5");
    let path = k.dir.join("web5.yaml");
    std::fs::write(&path, &more).expect("write");
    let p = path.display().to_string();
    let (ok, _, err) = k.run(&["apply", "--server-side", "-f", &p]);
    assert!(!ok, "{who}: conflict expected");
    assert!(
        err.starts_with(
            "error: Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas\nPlease review the fields above--they currently have other managers."
        ),
        "{who}: {err}"
    );
    // Same values co-own without conflict.
    assert_eq!(
        k.apply_text("web.yaml", WEB_V1, &["--server-side"]),
        "deployment.apps/web serverside-applied",
        "{who}"
    );
    assert_eq!(
        k.apply_text("web5.yaml", &more, &["--server-side", "--force-conflicts"]),
        "deployment.apps/web serverside-applied",
        "{who}"
    );
    let web = k.json(&["get", "deploy", "web"]);
    assert_eq!(web["spec"]["replicas"], 5, "{who}");
    // The forced apply owns replicas alone (kubectl also migrates the client-side
    // apply entry into its own after a successful server-side apply).
    let entries = web["metadata"]["managedFields"]
        .as_array()
        .expect("entries");
    let owners: Vec<&str> = entries
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .map(|e| e["manager"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(owners, vec!["kubectl"], "{who}: {entries:?}");

    // Dropping a label the apply owned removes it.
    let labelled = more.replace(
        "metadata:\n  name: web\n",
        "metadata:\n  name: web\n  labels:\n    team: a\n",
    );
    k.apply_text("web5.yaml", &labelled, &["--server-side"]);
    assert_eq!(
        k.json(&["get", "deploy", "web"])["metadata"]["labels"]["team"],
        "a",
        "{who}"
    );
    k.apply_text("web5.yaml", &more, &["--server-side"]);
    assert!(
        k.json(&["get", "deploy", "web"])["metadata"]
            .get("labels")
            .and_then(|l| l.get("team"))
            .is_none(),
        "{who}"
    );

    // apps/v1beta1 configuration applied to the same object converts.
    let beta = more
        .replace("apps/v1\n", "apps/v1beta1\n")
        .replace("replicas: 5", "replicas: 6");
    assert_eq!(
        k.apply_text("beta.yaml", &beta, &["--server-side", "--force-conflicts"]),
        "deployment.apps/web serverside-applied",
        "{who}"
    );
    assert_eq!(
        k.json(&["get", "deploy", "web"])["spec"]["replicas"],
        6,
        "{who}"
    );

    // Undeclared fields are refused as kube-apiserver refuses them.
    let typo = WEB_V1.replace("image: busybox", "image: busybox\n        imagee: x");
    let path = k.dir.join("typo.yaml");
    std::fs::write(&path, typo).expect("write");
    let p = path.display().to_string();
    let (ok, _, err) = k.run(&["apply", "--server-side", "-f", &p]);
    assert!(!ok, "{who}");
    assert_eq!(
        err.trim_end(),
        "Error from server: failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"web\"].imagee: field not declared in schema",
        "{who}"
    );

    // The seed's apps/v1beta1 manifest applied server-side creates the Deployment
    // (selector defaulted from the template, as v1beta1 does).
    let seed = std::fs::read_to_string(seed_dir().join("Httpd-Deployment.yaml")).expect("seed");
    let seed = seed.replace("name: httpd\n", "name: httpd-ssa\n");
    assert_eq!(
        k.apply_text("seed-ssa.yaml", &seed, &["--server-side"]),
        "deployment.apps/httpd-ssa serverside-applied",
        "{who}"
    );
    let d = k.json(&["get", "deploy", "httpd-ssa"]);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"run": "httpd"}}),
        "{who}"
    );
    assert_eq!(
        d["metadata"]["managedFields"][0]["apiVersion"], "apps/v1beta1",
        "{who}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_client_and_server_side() {
    let bins = kubectls();
    assert!(!bins.is_empty(), "kubectl 1.27/1.33 are missing");
    for bin in bins {
        let s = common::start().await;
        let k = Kubectl {
            k: s.kubectl(bin),
            dir: s.dir.path().to_path_buf(),
        };
        let k = blocking(move || {
            client_side_round_trip(&k);
            k
        })
        .await;
        blocking(move || server_side(&k)).await;
    }
}

/// The parts of an API error Status the tests compare.
struct ApiErr {
    code: u16,
    reason: String,
    message: String,
}

fn api_err(e: kube::Error) -> ApiErr {
    match e {
        kube::Error::Api(s) => ApiErr {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_patch_apply_and_conflicts() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
    let created = api
        .patch("cfg", &PatchParams::apply("alice"), &Patch::Apply(&cfg))
        .await
        .expect("apply creates");
    let mf = created
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields");
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        serde_json::to_value(&mf[0].fields_v1).unwrap(),
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    // Another manager changing a: conflict with kube-apiserver's Status.
    let bob = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg"}, "data": {"a": "9"}});
    let e = api_err(
        api.patch("cfg", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .expect_err("conflict"),
    );
    assert_eq!(e.code, 409);
    assert_eq!(e.reason, "Conflict");
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a"
    );
    let forced = api
        .patch(
            "cfg",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .expect("forced");
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");
    // alice stops applying b: b goes; a stays (bob owns it).
    let alice2 = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg"}, "data": {}});
    let after = api
        .patch("cfg", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .expect("apply");
    let data = after.data.unwrap_or_default();
    assert_eq!(data.get("a").map(String::as_str), Some("9"));
    assert!(!data.contains_key("b"), "{data:?}");

    // Apply needs a field manager; force is for apply only.
    let e = api_err(
        api.patch("cfg", &PatchParams::default(), &Patch::Apply(&bob))
            .await
            .expect_err("no manager"),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        )
    );

    // Updates record Update entries keyed by manager; a no-op update writes nothing.
    let mut cm = api.get("cfg").await.unwrap();
    let rv = cm.metadata.resource_version.clone();
    let same = api
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, rv);
    cm.data = Some([("z".to_string(), "1".to_string())].into());
    let pp = PostParams {
        field_manager: Some("carol".into()),
        ..Default::default()
    };
    let upd = api.replace("cfg", &pp, &cm).await.unwrap();
    let mf = upd.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|e| e.manager.as_deref() == Some("carol")
                && e.operation.as_deref() == Some("Update"))
    );

    // A Deployment applied through kube-rs.
    let deps: Api<Deployment> = Api::namespaced(s.client(), "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let out = deps
        .patch("d", &PatchParams::apply("ops"), &Patch::Apply(&d))
        .await
        .expect("apply deployment");
    assert_eq!(out.spec.unwrap().replicas, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_resource_version_match() {
    let s = common::start().await;
    let client = s.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}, "data": {"v": "1"}})).unwrap()
    };
    api.create(&PostParams::default(), &mk("one"))
        .await
        .unwrap();
    let at = api.list(&ListParams::default()).await.unwrap();
    let rv = at.metadata.resource_version.clone().unwrap();
    let mut two = api
        .create(&PostParams::default(), &mk("two"))
        .await
        .unwrap();
    let mut one = api.get("one").await.unwrap();
    one.data = Some([("v".to_string(), "2".to_string())].into());
    api.replace("one", &PostParams::default(), &one)
        .await
        .unwrap();
    two.metadata.resource_version = None;

    // Exact: the collection as it was.
    let get = |q: String| {
        let client = client.clone();
        async move {
            client
                .request::<Value>(
                    http::Request::get(format!("/api/v1/namespaces/default/configmaps?{q}"))
                        .body(Vec::new())
                        .unwrap(),
                )
                .await
        }
    };
    let old = get(format!("resourceVersion={rv}&resourceVersionMatch=Exact"))
        .await
        .expect("exact list");
    assert_eq!(old["metadata"]["resourceVersion"], rv);
    let items = old["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{old}");
    assert_eq!(items[0]["data"]["v"], "1");
    assert_eq!(
        items[0]["metadata"]["resourceVersion"],
        at.items[0].metadata.resource_version.clone().unwrap()
    );

    // NotOlderThan: the latest state.
    let new = get(format!(
        "resourceVersion={rv}&resourceVersionMatch=NotOlderThan"
    ))
    .await
    .expect("list");
    assert_eq!(new["items"].as_array().unwrap().len(), 2);

    let status = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("{other:?}"),
    };
    let e = status(get("resourceVersionMatch=Exact".into()).await.unwrap_err());
    assert_eq!(
        e,
        (
            422,
            "Invalid".into(),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into()
        )
    );
}
