//! Webhooks served by a pod of a local cluster, as operators install them: the test
//! makes an image of its own binary (an OCI layout with the binary and its shared
//! libraries, loaded onto the nodes with `skiff image load`), whose `serve_webhook`
//! entry point is an HTTPS webhook server ([`server`]) with a certificate for
//! `hook.hooks.svc` from a Secret. Behind a Service, it mutates and denies ConfigMaps
//! (MutatingWebhookConfiguration and ValidatingWebhookConfiguration reaching it by
//! Service reference, through its cluster IP) and converts a CRD's objects between
//! `v1` and `v2`; with its pod stopped, `failurePolicy: Fail` refuses writes and
//! `failurePolicy: Ignore` lets them through.

mod common;
#[path = "webhook_pod/server.rs"]
mod server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::{assert_tools, wait_for, Cluster};
use sha2::{Digest, Sha256};

/// The image the test makes of itself.
const IMAGE: &str = "docker.io/skiff-test/webhook:v1";
/// Set in the pod: `serve_webhook` serves instead of returning.
const SERVE_ENV: &str = "SKIFF_TEST_WEBHOOK_SERVER";

/// Not a test: the webhook server's entry point in the pod (the image runs this test
/// binary with `serve_webhook --exact --include-ignored`); without `SERVE_ENV` it
/// returns at once.
#[test]
#[ignore = "the webhook server of webhook_pod's image"]
fn serve_webhook() {
    if std::env::var_os(SERVE_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(server::serve()) {
        eprintln!("webhook server: {e}");
        std::process::exit(1);
    }
}

/// The shared libraries `bin` loads (`ldd`), the dynamic loader included.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A tar of `files` (path in the image, bytes), with their parent directories.
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |ty: tar::EntryType, size: usize| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size as u64);
        h
    };
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in files {
        let mut at = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            at.push_str(part);
            at.push('/');
            if !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
    }
    for d in &dirs {
        b.append_data(
            &mut header(tar::EntryType::Directory, 0),
            d,
            std::io::empty(),
        )
        .unwrap();
    }
    for (path, data) in files {
        b.append_data(
            &mut header(tar::EntryType::Regular, data.len()),
            path,
            data.as_slice(),
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout of one image, [`IMAGE`]: this test binary as `/webhook` and the
/// libraries it needs, running `serve_webhook`.
fn image_layout(dir: &Path) -> PathBuf {
    let root = dir.join("layout");
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |b: &[u8]| -> String {
        let hex = format!("{:x}", Sha256::digest(b));
        std::fs::write(root.join("blobs/sha256").join(&hex), b).unwrap();
        format!("sha256:{hex}")
    };
    let me = std::env::current_exe().expect("the test binary");
    let mut files = vec![("webhook".to_string(), std::fs::read(&me).unwrap())];
    for lib in shared_libraries(&me) {
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.push((rel, std::fs::read(&lib).unwrap()));
    }
    let layer = tar_of(&files);
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/webhook", "serve_webhook", "--exact", "--include-ignored", "--nocapture"],
                   "Env": [format!("{SERVE_ENV}=1")]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(&gz), "size": gz.len()}],
    }))
    .unwrap();
    let digest = blob(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    root
}

/// The webhook's Deployment, Service and TLS Secret (`cert`/`key` PEM) in `hooks`.
fn server_manifest() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: hook, namespace: hooks}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: hook}}}}
  template:
    metadata: {{labels: {{app: hook}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: hook
        image: {IMAGE}
        imagePullPolicy: Never
        ports: [{{containerPort: {port}}}]
        volumeMounts: [{{name: tls, mountPath: /tls, readOnly: true}}]
      volumes: [{{name: tls, secret: {{secretName: hook-tls}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: hook, namespace: hooks}}
spec:
  selector: {{app: hook}}
  ports: [{{port: 443, targetPort: {port}}}]
"#,
        port = server::PORT
    )
}

/// The webhook configurations, both with `policy`, reaching the Service by reference.
fn configurations(ca: &str, policy: &str) -> String {
    let hook = |kind: &str, name: &str, path: &str, ops: &str| {
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: skiff-pod-{name}}}
webhooks:
- name: {name}.skiff-test.example.com
  clientConfig:
    service: {{namespace: hooks, name: hook, path: {path}}}
    caBundle: {ca}
  rules:
  - operations: [{ops}]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
  namespaceSelector:
    matchLabels: {{webhooks: "on"}}
  failurePolicy: {policy}
  timeoutSeconds: 5
  sideEffects: None
  admissionReviewVersions: [v1]
---
"#
        )
    };
    hook(
        "MutatingWebhookConfiguration",
        "mutate",
        "/mutate",
        "CREATE",
    ) + &hook(
        "ValidatingWebhookConfiguration",
        "validate",
        "/validate",
        "CREATE, UPDATE",
    )
}

/// A CRD stored in `v1`, served in `v1` and `v2`, converted by the pod.
fn crd(ca: &str) -> String {
    let version = |name: &str, storage: bool, props: &str| {
        format!(
            "  - name: {name}\n    served: true\n    storage: {storage}\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n{props}\n"
        )
    };
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: paints.pod-test.example.com\nspec:\n  group: pod-test.example.com\n  scope: Namespaced\n  names: {{plural: paints, kind: Paint}}\n  conversion:\n    strategy: Webhook\n    webhook:\n      conversionReviewVersions: [v1]\n      clientConfig:\n        service: {{namespace: hooks, name: hook, path: /convert}}\n        caBundle: {ca}\n  versions:\n{}{}",
        version("v1", true, "              color: {type: string}"),
        version(
            "v2",
            false,
            "              paint:\n                type: object\n                properties:\n                  color: {type: string}"
        ),
    )
}

#[test]
#[ignore = "needs root"]
fn webhooks_served_by_a_pod() {
    assert_tools();
    let c = Cluster::up("whp", 2, &[]);
    let layout = image_layout(c.scratch());
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "load", "--cluster", &c.name])
        .arg(&layout)
        .output()
        .expect("running skiff image load");
    assert!(
        out.status.success(),
        "skiff image load: {}",
        common::text(&out)
    );

    // The server's certificate, for the name kube-apiserver uses: <service>.<ns>.svc.
    let key = rcgen::generate_simple_self_signed(vec!["hook.hooks.svc".to_string()]).unwrap();
    let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
    let ca = base64::engine::general_purpose::STANDARD.encode(&cert_pem);
    let cert_file = c.scratch().join("tls.crt");
    let key_file = c.scratch().join("tls.key");
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, &key_pem).unwrap();
    c.ok(&["create", "namespace", "hooks"]);
    c.ok(&[
        "create",
        "secret",
        "tls",
        "hook-tls",
        "-n",
        "hooks",
        &format!("--cert={}", cert_file.display()),
        &format!("--key={}", key_file.display()),
    ]);
    c.apply(&server_manifest());
    c.ok(&[
        "rollout",
        "status",
        "deployment/hook",
        "-n",
        "hooks",
        "--timeout=120s",
    ]);
    c.ok(&["create", "namespace", "wh-on"]);
    c.ok(&["label", "namespace", "wh-on", "webhooks=on"]);
    c.apply(&configurations(&ca, "Fail"));

    // Mutated by the pod (once the proxy of the server's node routes the cluster IP).
    let mut attempt = 0;
    wait_for(
        "a ConfigMap mutated by the pod",
        Duration::from_secs(60),
        || {
            attempt += 1;
            let name = format!("c{attempt}");
            let out = c.kubectl(&[
                "create",
                "configmap",
                &name,
                "-n",
                "wh-on",
                "--from-literal=a=b",
            ]);
            if !out.success {
                eprintln!("{}", out.describe());
                return false;
            }
            assert_eq!(
                out.stderr.trim(),
                "Warning: mutated by the webhook pod",
                "{}",
                out.describe()
            );
            let labels = c.ok(&[
                "get",
                "configmap",
                &name,
                "-n",
                "wh-on",
                "-o",
                "jsonpath={.metadata.labels}",
            ]);
            assert_eq!(labels, r#"{"mutated":"yes"}"#);
            true
        },
    );
    // Denied by the pod.
    let out = c.kubectl(&[
        "create",
        "configmap",
        "denied",
        "-n",
        "wh-on",
        "--from-literal=forbidden=x",
    ]);
    assert!(!out.success, "{}", out.describe());
    assert!(
        out.stderr.contains("admission webhook \"validate.skiff-test.example.com\" denied the request: the key forbidden is not allowed"),
        "{}",
        out.describe()
    );

    // Custom resources converted by the pod: written in v2, stored in v1.
    c.apply(&crd(&ca));
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/paints.pod-test.example.com",
    ]);
    let paint = "apiVersion: pod-test.example.com/v2\nkind: Paint\nmetadata: {name: p1}\nspec:\n  paint: {color: teal}\n";
    wait_for("a Paint written in v2", Duration::from_secs(30), || {
        let file = c.scratch().join("paint.yaml");
        std::fs::write(&file, paint).unwrap();
        let out = c.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        if !out.success {
            eprintln!("{}", out.describe());
        }
        out.success
    });
    let got = c.ok(&[
        "get",
        "paints.v1.pod-test.example.com",
        "p1",
        "-o",
        "jsonpath={.apiVersion} {.spec.color}",
    ]);
    assert_eq!(got, "pod-test.example.com/v1 teal");
    let got = c.ok(&[
        "get",
        "paints.v2.pod-test.example.com",
        "-o",
        "jsonpath={.items[*].spec.paint.color}",
    ]);
    assert_eq!(got, "teal");

    // The pod stopped: Fail refuses, Ignore lets writes through unmutated.
    c.ok(&["scale", "deployment/hook", "-n", "hooks", "--replicas=0"]);
    wait_for("the webhook pod gone", Duration::from_secs(60), || {
        c.ok(&["get", "pods", "-n", "hooks", "-o", "name"])
            .trim()
            .is_empty()
    });
    wait_for(
        "writes refused by failurePolicy Fail",
        Duration::from_secs(30),
        || {
            let out = c.kubectl(&[
                "create",
                "configmap",
                "refused",
                "-n",
                "wh-on",
                "--from-literal=a=b",
            ]);
            !out.success
                && out
                    .stderr
                    .contains("failed calling webhook \"mutate.skiff-test.example.com\"")
        },
    );
    let out = c.kubectl(&["get", "paints.v2.pod-test.example.com", "p1"]);
    assert!(!out.success, "{}", out.describe());
    assert!(
        out.stderr
            .contains("conversion webhook for pod-test.example.com/v1, Kind=Paint failed: Post \"https://hook.hooks.svc:443/convert?timeout=30s\""),
        "{}",
        out.describe()
    );
    c.apply(&configurations(&ca, "Ignore"));
    wait_for(
        "writes let through by failurePolicy Ignore",
        Duration::from_secs(30),
        || {
            c.kubectl(&[
                "create",
                "configmap",
                "ignored",
                "-n",
                "wh-on",
                "--from-literal=forbidden=x",
            ])
            .success
        },
    );
    let labels = c.ok(&[
        "get",
        "configmap",
        "ignored",
        "-n",
        "wh-on",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, "");
}
