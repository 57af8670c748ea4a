//! Pods from images in registries, on a local cluster, through the real kubectl: two
//! CNCF distribution registries on the host (one open, one behind htpasswd), reached by
//! the nodes as mirrors given to `skiff up --registry-mirror` with their loopback URLs;
//! a pod by tag (a whiteout honoured), a second pod of the image pulling nothing, a pod
//! by digest on another node, a pod with an `imagePullSecret`, one with a bad password
//! and one with an unknown tag (`ErrImagePull` then `ImagePullBackOff` with the
//! registry's reason), and the Node's `status.images`. Nothing reaches a public
//! registry: `disable_default_endpoint` keeps the nodes off Docker Hub.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use sha2::{Digest, Sha256};

/// A registry process listening on every address (the nodes reach the host at their
/// LAN's gateway), killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 0.0.0.0:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some(password) = htpasswd {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    password,
                ])
                .output()
                .unwrap();
            let file = dir.path().join("htpasswd");
            let hash = String::from_utf8(out.stdout).unwrap();
            std::fs::write(&file, format!("user:{}\n", hash.trim())).unwrap();
            yml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/install-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn push(&self, layout: &Path, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo_tag}", self.port))
            .output()
            .expect("skopeo (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o755);
        let d = data.unwrap_or(&[]);
        h.set_size(d.len() as u64);
        h.set_entry_type(if data.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        b.append_data(&mut h, path, d).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout tagged `v1`: busybox with `/etc/kept` and `/etc/deleted`, then a layer
/// that deletes `/etc/deleted`. Returns the layout and the manifest's digest.
fn layout(dir: &Path) -> (PathBuf, String) {
    let root = dir.join("layout");
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |b: &[u8]| -> String {
        let hex = format!("{:x}", Sha256::digest(b));
        std::fs::write(root.join("blobs/sha256").join(&hex), b).unwrap();
        format!("sha256:{hex}")
    };
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layers = [
        tar_of(&[
            ("bin/", None),
            ("bin/busybox", Some(&busybox)),
            ("etc/", None),
            ("etc/kept", Some(b"kept\n")),
            ("etc/deleted", Some(b"gone\n")),
        ]),
        tar_of(&[("etc/", None), ("etc/.wh.deleted", Some(b""))]),
    ];
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        diff_ids.push(format!("sha256:{:x}", Sha256::digest(l)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, l).unwrap();
        let gz = gz.finish().unwrap();
        descs.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": blob(&gz), "size": gz.len()}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["sh", "-c", "cat /etc/kept; test -e /etc/deleted || echo whiteout-honoured; sleep 3600"],
                   "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let digest = blob(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (root, digest)
}

fn pod(name: &str, node: &str, image: &str, policy: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("\n  imagePullSecrets: [{{name: {s}}}]"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0{secrets}\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: {policy}\n---\n"
    )
}

fn events(c: &Cluster, pod: &str) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

fn waiting(c: &Cluster, pod: &str) -> String {
    c.ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}",
    ])
}

#[test]
#[ignore = "needs root"]
fn pods_run_images_from_registries() {
    common::assert_tools();
    let open = Registry::start(None);
    let private = Registry::start(Some("s3cret"));
    let scratch = tempfile::tempdir().unwrap();
    let (layout, digest) = layout(scratch.path());
    open.push(&layout, "test/bb:v1", None);
    private.push(&layout, "team/app:v1", Some("user:s3cret"));
    let registries = scratch.path().join("registries.yaml");
    std::fs::write(&registries, "disable_default_endpoint: true\n").unwrap();
    let open_mirror = format!("docker.io=http://127.0.0.1:{}", open.port);
    let private_mirror = format!("private.test=http://127.0.0.1:{}", private.port);
    let c = Cluster::up(
        "reg",
        2,
        &[
            "--registry-config",
            registries.to_str().unwrap(),
            "--registry-mirror",
            &open_mirror,
            "--registry-mirror",
            &private_mirror,
        ],
    );
    let node = "k8s-m".to_string();
    let worker = "k8s-n1".to_string();
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server=private.test",
        "--docker-username=user",
        "--docker-password=s3cret",
    ]);
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "badpull",
        "--docker-server=private.test",
        "--docker-username=user",
        "--docker-password=wrong",
    ]);
    let mut manifest = pod("by-tag", &node, "test/bb:v1", "IfNotPresent", None);
    manifest += &pod(
        "by-digest",
        &worker,
        &format!("test/bb@{digest}"),
        "IfNotPresent",
        None,
    );
    manifest += &pod(
        "private",
        &worker,
        "private.test/team/app:v1",
        "IfNotPresent",
        Some("pull"),
    );
    manifest += &pod(
        "bad-password",
        &node,
        "private.test/team/app:v1",
        "Always",
        Some("badpull"),
    );
    manifest += &pod("unknown-tag", &node, "test/bb:nope", "IfNotPresent", None);
    c.apply(&manifest);
    for p in ["by-tag", "by-digest", "private"] {
        wait_for(&format!("{p} running"), Duration::from_secs(90), || {
            c.ok(&["get", "pod", p, "-o", "jsonpath={.status.phase}"]) == "Running"
        });
    }
    wait_for("by-tag's output", Duration::from_secs(30), || {
        c.kubectl(&["logs", "by-tag"]).stdout == "kept\nwhiteout-honoured\n"
    });
    let ev = events(&c, "by-tag");
    assert!(ev.contains("Pulling: Pulling image \"test/bb:v1\""), "{ev}");
    assert!(
        ev.lines().any(
            |l| l.starts_with("Pulled: Successfully pulled image \"test/bb:v1\" in ")
                && l.contains(" including waiting). Image size: ")
                && l.ends_with(" bytes.")
        ),
        "{ev}"
    );

    // A second pod of the image on the node pulls nothing.
    c.apply(&pod("again", &node, "test/bb:v1", "IfNotPresent", None));
    wait_for("again running", Duration::from_secs(60), || {
        c.ok(&["get", "pod", "again", "-o", "jsonpath={.status.phase}"]) == "Running"
    });
    let ev = events(&c, "again");
    assert!(
        ev.contains("Pulled: Container image \"test/bb:v1\" already present on machine"),
        "{ev}"
    );
    assert!(!ev.contains("Pulling"), "{ev}");

    // Failures: the registry's reason, then the back-off.
    wait_for("unknown-tag backing off", Duration::from_secs(60), || {
        waiting(&c, "unknown-tag")
            .starts_with("ImagePullBackOff: Back-off pulling image \"test/bb:nope\"")
    });
    let ev = events(&c, "unknown-tag");
    assert!(
        ev.contains(
            "Failed: Failed to pull image \"test/bb:nope\": failed to pull and unpack image \"docker.io/test/bb:nope\": failed to resolve reference \"docker.io/test/bb:nope\": docker.io/test/bb:nope: not found"
        ),
        "{ev}"
    );
    assert!(ev.contains("Failed: Error: ErrImagePull"), "{ev}");
    assert!(
        ev.contains("BackOff: Back-off pulling image \"test/bb:nope\""),
        "{ev}"
    );
    wait_for("bad-password backing off", Duration::from_secs(60), || {
        waiting(&c, "bad-password").starts_with("ImagePullBackOff")
    });
    let ev = events(&c, "bad-password");
    assert!(ev.contains("failed to authorize"), "{ev}");

    // The Node lists what it pulled (at its next status update).
    let images = || {
        c.ok(&[
            "get",
            "node",
            &worker,
            "-o",
            "jsonpath={range .status.images[*]}{.names}{\"\\n\"}{end}",
        ])
    };
    wait_for(
        "the worker's status.images",
        Duration::from_secs(30),
        || {
            let i = images();
            i.contains("docker.io/test/bb@sha256:") && i.contains("private.test/team/app:v1")
        },
    );
}
