//! Image garbage collection on a real, small filesystem (needs root): the agent's data
//! directory is a 128 MiB tmpfs the test mounts, images are loaded into it, a pod uses
//! one, and a filler file pushes the disk past the high threshold. The collector removes
//! the unused images (and the layers only they had) but neither the one in use nor the
//! layer it shares; it cannot free enough, so it records kubelet's `FreeDiskSpaceFailed`
//! and, failing again, `ImageGCFailed`; the Node's `status.images` drops the removed
//! images. Then, with the pod gone and two new images loaded past the threshold, the
//! never-used ones go first and the recently used one stays.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff_agent::containers::crictl::Removed;
use skiff_agent::containers::netns;
use skiff_agent::kubelet::imagegc::Policy;
use skiff_agent::AgentConfig;

const MIB: usize = 1 << 20;

/// Undoes what the test made, also when it fails: containers, mounts (the tmpfs last),
/// network namespaces, cgroups.
struct Cleanup {
    prefix: String,
    data: PathBuf,
    node: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The in-process runtime's containers (its deletion clones nothing: no service),
        // on a thread of its own in case the drop happens inside a tokio runtime.
        let agent_data = self.data.join("agent");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let runtime = skiff_agent::containers::runtime::Runtime::new(
                skiff_agent::RuntimeKind::Youki,
                &agent_data,
                Default::default(),
            );
            for (kind, id) in rt.block_on(runtime.list()) {
                let _ = rt.block_on(runtime.delete(kind, &id));
            }
            std::io::Result::Ok(())
        })
        .join();
        let root = self.data.join("agent/runc");
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f", id])
                    .output();
            }
        }
        let prefix = self.data.to_string_lossy().into_owned();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            // Deepest first: the containers' overlays, then the tmpfs.
            let mut mounts: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for ns in netns::list(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        for sub in std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let base = sub.join("skiff").join(&self.node);
            let _ = Command::new("find")
                .arg(&base)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .output();
            let _ = std::fs::remove_dir(sub.join("skiff"));
        }
    }
}

async fn poll<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

/// A layer tar: `files` as (path, bytes).
fn layer(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// `n` MiB that differ from any other call's (so no two layers are the same).
fn filler(tag: &str, n: usize) -> Vec<u8> {
    let seed = Sha256::digest(tag.as_bytes());
    let mut x = u64::from_le_bytes(seed[..8].try_into().unwrap()) | 1;
    let mut out = Vec::with_capacity(n * MIB);
    while out.len() < n * MIB {
        // xorshift64: cheap even in a debug build.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// A docker archive of images `(reference, layers bottom first)`, written to `path`.
fn archive(path: &Path, images: &[(&str, Vec<&Vec<u8>>)]) {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, p: &str, d: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, p, d).unwrap();
    };
    let mut manifest = Vec::new();
    for (i, (reference, layers)) in images.iter().enumerate() {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/busybox", "sleep", "3600"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let mut paths = Vec::new();
        for l in layers {
            let p = format!("{}.tar", sha(l).trim_start_matches("sha256:"));
            add(&mut b, &p, l);
            paths.push(p);
        }
        let cfg = format!("config-{i}.json");
        add(&mut b, &cfg, &config);
        manifest.push(json!({"Config": cfg, "RepoTags": [reference], "Layers": paths}));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn has_ref(data: &Path, reference: &str) -> bool {
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("images/refs.json")).unwrap()).unwrap();
    refs.get(reference).is_some()
}

fn has_layer(data: &Path, diff_id: &str) -> bool {
    data.join("images/layers/sha256")
        .join(diff_id.trim_start_matches("sha256:"))
        .is_dir()
}

#[test]
#[ignore = "needs root"]
fn image_gc_frees_a_full_disk_least_recently_used_first() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root");
    let pid = std::process::id();
    let prefix = format!("skg-{pid}-");
    let node_ns = format!("{prefix}node");
    let node_name = format!("skg-{pid}");
    let tmp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        data: tmp.path().to_path_buf(),
        node: node_name.clone(),
    };
    let data = tmp.path().join("agent");
    std::fs::create_dir_all(&data).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &data,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=128m"),
    )
    .expect("mounting the tmpfs");
    assert!(Command::new("ip")
        .args(["netns", "add", &node_ns])
        .status()
        .unwrap()
        .success());
    let f = std::fs::File::open(netns::path(&node_ns)).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    for cmd in [
        "ip link set lo up",
        "ip link add eth0 type veth peer name eth0p",
        "ip link set eth0p up",
        "ip addr add 10.252.0.2/24 dev eth0",
        "ip link set eth0 up",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        assert!(
            Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap()
                .success(),
            "{cmd}"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(240),
            scenario(tmp.path(), &data, &prefix, &node_name),
        )
        .await
        .expect("the scenario timed out");
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

async fn scenario(tmp: &Path, data: &Path, prefix: &str, node_name: &str) {
    // Images: a base layer (busybox and 8 MiB) shared by `keep` (+4 MiB, a pod's) and
    // three unused ones (+12 MiB each).
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let base = layer(&[
        ("bin/busybox", busybox.clone()),
        ("data/base", filler("base", 8)),
    ]);
    let keep = layer(&[("data/keep", filler("keep", 4))]);
    let olds: Vec<Vec<u8>> = (0..3)
        .map(|i| layer(&[("data/old", filler(&format!("old{i}"), 12))]))
        .collect();
    let (base_id, keep_id) = (sha(&base), sha(&keep));
    let old_ids: Vec<String> = olds.iter().map(|l| sha(l)).collect();
    let first = tmp.join("first.tar");
    archive(
        &first,
        &[
            ("example.com/gc/keep:v1", vec![&base, &keep]),
            ("example.com/gc/old0:v1", vec![&base, &olds[0]]),
            ("example.com/gc/old1:v1", vec![&base, &olds[1]]),
            ("example.com/gc/old2:v1", vec![&base, &olds[2]]),
        ],
    );
    skiff_agent::images::load(&[data.to_path_buf()], &first).unwrap();

    let server_dir = tmp.join("server");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: server_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_address: Some("10.252.0.2".parse().unwrap()),
        ..Default::default()
    })
    .await
    .expect("API server");
    let url = format!("https://127.0.0.1:{}", server.port());
    let admin = Client::try_from(server.admin_client_config()).unwrap();
    let cfg = AgentConfig {
        server_url: url,
        token: skiff_apiserver::pki::join_token(&server_dir).unwrap(),
        ca_file: Some(server_dir.join("pki/ca.crt")),
        node_name: node_name.to_string(),
        node_ip: None,
        data_dir: data.to_path_buf(),
        netns_prefix: format!("{prefix}p-"),
        node_labels: Default::default(),
        register_with_taints: vec![],
        cluster_dns: "10.96.0.10".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        network: Default::default(),
        runtime: Default::default(),
        runtime_service: Some(env!("CARGO_BIN_EXE_skiff-runtime-service").into()),
        kubelet_port: 10250,
        skiff_binary: "/bin/busybox".into(),
        resolv_conf: None,
        registries: Default::default(),
        image_gc: Policy {
            high_threshold_percent: 60,
            low_threshold_percent: 30,
            min_age: Duration::ZERO,
            max_age: Duration::ZERO,
            period: Duration::from_secs(1),
        },
        credentials: None,
    };
    let agent = tokio::spawn(async move {
        if let Err(e) = skiff_agent::run(cfg).await {
            panic!("agent: {e:#}");
        }
    });
    let nodes: Api<Node> = Api::all(admin.clone());
    poll("the Node", Duration::from_secs(20), async || {
        nodes
            .get_opt(node_name)
            .await
            .ok()
            .flatten()?
            .status?
            .conditions
    })
    .await;
    nodes
        .patch(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"podCIDR": "10.252.1.0/24", "podCIDRs": ["10.252.1.0/24"]}}),
            ),
        )
        .await
        .unwrap();

    // Below the high threshold (about 42% used): nothing goes.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep"},
        "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "example.com/gc/keep:v1",
                                 "imagePullPolicy": "Never"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = poll(
        "the keep pod running",
        Duration::from_secs(60),
        async || {
            let p = pods.get("keep").await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p.metadata.uid?)
        },
    )
    .await;
    for i in 0..3 {
        assert!(has_ref(data, &format!("example.com/gc/old{i}:v1")));
    }

    // A filler pushes the disk to about 94%: even without every unused image it stays
    // above 60%.
    // One fallocate: the collector sees the disk before or after, never half-filled.
    let f = std::fs::File::create(data.join("filler")).unwrap();
    nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 66 * MIB as i64)
        .expect("fallocate on the tmpfs");
    drop(f);
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let selector = format!("involvedObject.kind=Node,involvedObject.name={node_name}");
    let (free_failed, gc_failed) = poll(
        "FreeDiskSpaceFailed and ImageGCFailed",
        Duration::from_secs(30),
        async || {
            let list = events
                .list(&ListParams::default().fields(&selector))
                .await
                .ok()?;
            let find = |reason: &str, with: &str| {
                list.items
                    .iter()
                    .find(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.message.as_deref().unwrap_or("").contains(with)
                    })
                    .cloned()
            };
            // The first pass freed the three unused images; the next ones found none.
            Some((
                find("FreeDiskSpaceFailed", "Attempted to free").filter(|e| {
                    !e.message
                        .as_deref()
                        .unwrap_or("")
                        .contains(" only found 0 ")
                })?,
                find(
                    "ImageGCFailed",
                    "Failed to garbage collect required amount of images",
                )?,
            ))
        },
    )
    .await;
    let message = free_failed.message.unwrap();
    assert_eq!(free_failed.type_.as_deref(), Some("Warning"));
    let found: u64 = message
        .split("only found ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        message
            .starts_with("Failed to garbage collect required amount of images. Attempted to free ")
            && message.ends_with(" bytes eligible to free."),
        "{message}"
    );
    // Three 12 MiB layers (and their directories' few bytes): the base layer stays.
    assert!(
        (36 * MIB as u64..36 * MIB as u64 + 65536).contains(&found),
        "{message}"
    );
    assert_eq!(gc_failed.type_.as_deref(), Some("Warning"));
    for (i, l) in old_ids.iter().enumerate() {
        assert!(!has_ref(data, &format!("example.com/gc/old{i}:v1")));
        assert!(!has_layer(data, l), "old{i}'s own layer is still there");
    }
    assert!(has_ref(data, "example.com/gc/keep:v1"));
    assert!(has_layer(data, &base_id) && has_layer(data, &keep_id));
    // `skiff image rm` refuses the image the pod uses, with the words crictl shows.
    let refused =
        skiff_agent::containers::crictl::remove(data, &["example.com/gc/keep:v1".to_string()])
            .unwrap();
    match &refused[..] {
        [Removed::Failed(m)] => assert!(
            m.starts_with("error of removing image \"example.com/gc/keep:v1\": image used by ")
                && m.ends_with(": image is in use by a container"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // The Node lists what is left (at its next status, within 10 s).
    poll(
        "status.images without the removed images",
        Duration::from_secs(30),
        async || {
            let n = nodes.get(node_name).await.ok()?;
            let names: Vec<String> = n
                .status?
                .images?
                .into_iter()
                .flat_map(|i| i.names.unwrap_or_default())
                .collect();
            (names.iter().any(|n| n == "example.com/gc/keep:v1")
                && !names.iter().any(|n| n.starts_with("example.com/gc/old")))
            .then_some(())
        },
    )
    .await;

    // The pod goes (and with it its container), the filler too; two new images, never
    // used, push the disk to about 67% again: they go, `keep` (used a moment ago) stays.
    std::fs::remove_file(data.join("filler")).unwrap();
    pods.delete("keep", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    poll(
        "the keep pod's directory removed",
        Duration::from_secs(60),
        async || (!data.join("pods").join(&uid).exists()).then_some(()),
    )
    .await;
    let news: Vec<Vec<u8>> = (0..2)
        .map(|i| layer(&[("data/new", filler(&format!("new{i}"), 34))]))
        .collect();
    let new_ids: Vec<String> = news.iter().map(|l| sha(l)).collect();
    let second = tmp.join("second.tar");
    archive(
        &second,
        &[
            ("example.com/gc/new0:v1", vec![&base, &news[0]]),
            ("example.com/gc/new1:v1", vec![&base, &news[1]]),
        ],
    );
    skiff_agent::images::load(&[data.to_path_buf()], &second).unwrap();
    poll(
        "the new images removed",
        Duration::from_secs(30),
        async || {
            (!has_ref(data, "example.com/gc/new0:v1") && !has_ref(data, "example.com/gc/new1:v1"))
                .then_some(())
        },
    )
    .await;
    assert!(!has_layer(data, &new_ids[0]) && !has_layer(data, &new_ids[1]));
    assert!(
        has_ref(data, "example.com/gc/keep:v1"),
        "keep went before unused images"
    );
    assert!(has_layer(data, &base_id) && has_layer(data, &keep_id));
    agent.abort();
}
