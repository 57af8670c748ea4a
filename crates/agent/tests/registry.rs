//! Image pulls against a real registry (the CNCF distribution registry, Debian's
//! `docker-registry`) on loopback, with images the test builds (an OCI layout of the
//! static busybox plus a layer that deletes a file, a zstd layer) and pushes with
//! `skopeo`: by tag and by digest, a second pull downloading nothing, an unknown tag,
//! htpasswd auth with good and bad credentials, a corrupted blob. Nothing leaves the
//! machine. Root: layers hold overlay whiteouts (mknod).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use skiff_agent::containers::images::ImageStore;
use skiff_agent::containers::registry::{Credential, Puller, RegistryConfig};

/// A registry process on `127.0.0.1:<port>`, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts a registry; with `htpasswd`, one user `user` with that password.
    fn start(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
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
            let hash = String::from_utf8(out.stdout).unwrap();
            let file = dir.path().join("htpasswd");
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
            .expect("docker-registry (apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            storage,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the OCI layout `layout` (its `tag`) as `repo:tag`.
    fn push(&self, layout: &Path, tag: &str, repo: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host()))
            .output()
            .expect("skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The path of a blob in the registry's storage.
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// An OCI image layout the test writes blob by blob.
struct Layout {
    dir: PathBuf,
    manifests: Vec<serde_json::Value>,
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    fn blob(&self, b: &[u8]) -> String {
        let d = sha(b);
        std::fs::write(
            self.dir
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            b,
        )
        .unwrap();
        d
    }

    /// Adds an image of `layers` (uncompressed tars, compressed by `zstd`: false → gzip)
    /// for `arch`; returns its manifest descriptor.
    fn image(&mut self, layers: &[(Vec<u8>, bool)], arch: &str, cmd: &[&str]) -> serde_json::Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, zstd) in layers {
            diff_ids.push(sha(tar));
            let (data, media) = if *zstd {
                (
                    zstd::encode_all(&tar[..], 3).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                )
            } else {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, tar).unwrap();
                (
                    gz.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            };
            descs.push(serde_json::json!({"mediaType": media, "digest": self.blob(&data), "size": data.len()}));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.blob(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.blob(&manifest), "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        })
    }

    /// Tags `desc` (a manifest, or an index of several) as `tag` in `index.json`.
    fn tag(&mut self, tag: &str, descs: Vec<serde_json::Value>) {
        let mut desc = if descs.len() == 1 {
            descs.into_iter().next().unwrap()
        } else {
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": descs,
            }))
            .unwrap();
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": self.blob(&index), "size": index.len(),
            })
        };
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(desc);
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(
                &serde_json::json!({"schemaVersion": 2, "manifests": self.manifests}),
            )
            .unwrap(),
        )
        .unwrap();
    }
}

/// A tar of `(path, content)` files (mode 0755), `None` content: a directory.
fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o755);
        match data {
            Some(d) => {
                h.set_size(d.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The test image: busybox and two files, then a zstd layer that deletes one of them
/// and adds another.
fn busybox_layers() -> Vec<(Vec<u8>, bool)> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let base = tar_of(&[
        ("bin/", None),
        ("bin/busybox", Some(&busybox)),
        ("etc/", None),
        ("etc/deleted", Some(b"gone\n")),
        ("etc/kept", Some(b"kept\n")),
    ]);
    let top = tar_of(&[
        ("etc/", None),
        ("etc/.wh.deleted", Some(b"")),
        ("etc/added", Some(b"new\n")),
    ]);
    vec![(base, false), (top, true)]
}

fn puller(cfg: &str) -> Puller {
    Puller::new(serde_yaml_ng::from_str::<RegistryConfig>(cfg).unwrap())
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::new(dir, Path::new("/bin/busybox"))
}

/// Nothing half-written under the layer store: only complete layers, no temp files.
fn assert_no_partial_layers(data: &Path) {
    let tmp = data.join("images/layers/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
}

#[tokio::test]
#[ignore = "needs root"]
async fn pulls_by_tag_and_digest_with_whiteouts_once() {
    let registry = Registry::start(None);
    let scratch = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&scratch.path().join("layout"));
    let amd = layout.image(&busybox_layers(), "amd64", &["sh"]);
    let arm = layout.image(
        &[(tar_of(&[("arm", Some(b"arm"))]), false)],
        "arm64",
        &["arm"],
    );
    layout.tag("v1", vec![amd.clone()]);
    layout.tag("multi", vec![arm, amd.clone()]);
    registry.push(&layout.dir, "v1", "test/bb", None);
    registry.push(&layout.dir, "multi", "test/bb", None);

    let data = scratch.path().join("node");
    let images = store(&data);
    let puller = puller("{}");
    let image = format!("{}/test/bb:v1", registry.host());
    let pulled = puller.pull(&images, &image, &[]).await.unwrap();
    assert_eq!(pulled.downloaded_layers, 2);
    assert!(pulled.size > 500_000, "size {}", pulled.size);
    let img = pulled.image;
    assert!(img.pulled);
    assert_eq!(img.config.cmd, vec!["sh"]);
    assert_eq!(img.lowers.len(), 2);
    assert_eq!(img.read_file("etc/kept").unwrap(), b"kept\n");
    assert_eq!(img.read_file("etc/added").unwrap(), b"new\n");
    assert!(
        img.read_file("etc/deleted").is_none(),
        "the whiteout hides it"
    );
    assert!(img.read_file("bin/busybox").is_some());
    // The store now has it under its reference.
    let found = images.resolve(&image).unwrap().unwrap();
    assert_eq!(found.id, img.id);

    // Again (imagePullPolicy Always): the manifest is asked, no layer downloaded.
    let again = puller.pull(&images, &image, &[]).await.unwrap();
    assert_eq!(again.downloaded_layers, 0);
    assert_eq!(again.image.id, img.id);

    // By digest, and an index resolved to this node's platform: nothing to download.
    let digest = amd["digest"].as_str().unwrap();
    let by_digest = format!("{}/test/bb@{digest}", registry.host());
    let pulled = puller.pull(&images, &by_digest, &[]).await.unwrap();
    assert_eq!(pulled.image.id, img.id);
    assert_eq!(pulled.downloaded_layers, 0);
    let multi = format!("{}/test/bb:multi", registry.host());
    let pulled = puller.pull(&images, &multi, &[]).await.unwrap();
    if skiff_agent::containers::registry::node_arch() == "amd64" {
        assert_eq!(pulled.image.id, img.id);
    }

    // Concurrent pulls of one image into a fresh store download each layer once.
    let data2 = scratch.path().join("node2");
    let images2 = store(&data2);
    let (a, b) = tokio::join!(
        puller.pull(&images2, &image, &[]),
        puller.pull(&images2, &image, &[])
    );
    assert_eq!(
        a.unwrap().downloaded_layers + b.unwrap().downloaded_layers,
        2
    );

    // An unknown tag: the registry's reason.
    let err = puller
        .pull(&images, &format!("{}/test/bb:nope", registry.host()), &[])
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!(
            "failed to resolve reference \"{0}/test/bb:nope\": {0}/test/bb:nope: not found",
            registry.host()
        )),
        "{text}"
    );
    assert_no_partial_layers(&data);
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_corrupted_blob_is_refused_and_leaves_nothing() {
    let registry = Registry::start(None);
    let scratch = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&scratch.path().join("layout"));
    let layers = vec![(tar_of(&[("f", Some(&[7u8; 100_000][..]))]), false)];
    let desc = layout.image(&layers, "amd64", &["sh"]);
    layout.tag("v1", vec![desc.clone()]);
    registry.push(&layout.dir, "v1", "test/bad", None);
    // Flip a byte of the layer blob in the registry's storage.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(registry.blob(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = registry.blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let data = scratch.path().join("node");
    let images = store(&data);
    let image = format!("{}/test/bad:v1", registry.host());
    let err = puller("{}").pull(&images, &image, &[]).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("failed to pull and unpack image"), "{text}");
    assert!(text.to_lowercase().contains("digest"), "{text}");
    assert!(images.resolve(&image).unwrap().is_none());
    let layer_dirs = data.join("images/layers/sha256");
    assert!(
        std::fs::read_dir(&layer_dirs)
            .map(|rd| rd.count())
            .unwrap_or(0)
            == 0,
        "no layer stored"
    );
    assert_no_partial_layers(&data);
}

#[tokio::test]
#[ignore = "needs root"]
async fn htpasswd_auth_with_pull_secrets_and_node_config() {
    let registry = Registry::start(Some("s3cret"));
    let scratch = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&scratch.path().join("layout"));
    let desc = layout.image(
        &[(tar_of(&[("hello", Some(b"hi"))]), false)],
        "amd64",
        &["x"],
    );
    layout.tag("v1", vec![desc]);
    registry.push(&layout.dir, "v1", "private/app", Some("user:s3cret"));
    let image = format!("{}/private/app:v1", registry.host());
    let data = scratch.path().join("node");
    let images = store(&data);
    let puller_anon = puller("{}");

    let err = format!(
        "{:#}",
        puller_anon.pull(&images, &image, &[]).await.unwrap_err()
    );
    assert!(err.contains("failed to authorize"), "{err}");
    let bad = Credential {
        registry: registry.host(),
        username: "user".into(),
        password: "wrong".into(),
    };
    let err = format!(
        "{:#}",
        puller_anon.pull(&images, &image, &[bad]).await.unwrap_err()
    );
    assert!(err.contains("failed to authorize"), "{err}");
    assert!(images.resolve(&image).unwrap().is_none());

    // A pod's pull secret (`.dockerconfigjson`).
    let secret =
        serde_json::json!({"auths": {registry.host(): {"username": "user", "password": "s3cret"}}});
    let creds = skiff_agent::containers::registry::parse_docker_config(
        &serde_json::to_vec(&secret).unwrap(),
    )
    .unwrap();
    let pulled = puller_anon.pull(&images, &image, &creds).await.unwrap();
    assert_eq!(pulled.image.read_file("hello").unwrap(), b"hi");

    // The node's registry config.
    let data2 = scratch.path().join("node2");
    let node_cfg = puller(&format!(
        "configs:\n  \"{}\":\n    auth: {{username: user, password: s3cret}}\n",
        registry.host()
    ));
    node_cfg.pull(&store(&data2), &image, &[]).await.unwrap();
    assert_no_partial_layers(&data);
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_mirror_serves_docker_hub_references() {
    let registry = Registry::start(None);
    let scratch = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&scratch.path().join("layout"));
    let desc = layout.image(
        &[(tar_of(&[("m", Some(b"mirror"))]), false)],
        "amd64",
        &["x"],
    );
    layout.tag("1.27", vec![desc]);
    registry.push(&layout.dir, "1.27", "library/nginx", None);
    let data = scratch.path().join("node");
    let images = store(&data);
    let puller = puller(&format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\ndisable_default_endpoint: true\n",
        registry.host()
    ));
    let pulled = puller.pull(&images, "nginx:1.27", &[]).await.unwrap();
    // Not in the mirror: an error, and Docker Hub is never asked.
    let err = format!(
        "{:#}",
        puller.pull(&images, "nginx:nope", &[]).await.unwrap_err()
    );
    assert!(err.contains("not found"), "{err}");
    assert_eq!(pulled.image.read_file("m").unwrap(), b"mirror");
    assert!(images
        .resolve("docker.io/library/nginx:1.27")
        .unwrap()
        .is_some());
}
