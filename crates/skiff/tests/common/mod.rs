//! The local cluster the root tests bring up (`skiff up`) and drive with the real
//! kubectl, as a user would; shared by `cluster.rs`, `restarts.rs` and `bad_objects.rs`.
//!
//! Each cluster is named `<prefix><pid>` (a prefix per test, so tests running in
//! parallel bring up clusters side by side, as users may have them) and is removed with
//! `skiff down` when its [`Cluster`] is dropped, also when the test fails.

#![allow(dead_code)] // Each test binary uses a part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_testkit::kubectl::{self, Kubectl};

/// The page the seed's httpd serves.
pub const PAGE: &str = "<html><body><h1>It works!</h1></body></html>";

/// Where `skiff up` keeps its clusters.
const CLUSTERS: &str = "/var/lib/skiff/clusters";

/// A running local cluster, brought down on drop.
pub struct Cluster {
    /// The cluster's name (`--cluster`), also the prefix of its network namespaces.
    pub name: String,
    /// The kubeconfig `skiff up` wrote for it.
    pub kubeconfig: PathBuf,
    /// The test's own files (the kubeconfig, manifests).
    scratch: tempfile::TempDir,
    kubectl: Kubectl,
}

impl Cluster {
    /// Brings up cluster `<prefix><pid>` with `nodes` nodes and `extra` arguments of
    /// `skiff up`.
    pub fn up(prefix: &str, nodes: usize, extra: &[&str]) -> Cluster {
        let scratch = tempfile::tempdir().expect("temp dir");
        let kubeconfig = scratch.path().join("kubeconfig");
        let cluster = Cluster {
            name: format!("{prefix}{}", std::process::id()),
            kubectl: Kubectl::new(kubectl::default(), &kubeconfig),
            kubeconfig,
            scratch,
        };
        let nodes = nodes.to_string();
        let mut args = vec!["up", "--nodes", &nodes];
        args.extend_from_slice(extra);
        let out = cluster.skiff(&args);
        assert!(out.status.success(), "skiff up failed: {}", text(&out));
        cluster
    }

    /// Runs `skiff <args>` on this cluster (`--cluster` after the sub-command, after
    /// `node <verb>` for the node sub-commands).
    pub fn skiff(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        let (first, rest) = args.split_first().expect("a sub-command");
        cmd.arg(first);
        if *first == "node" {
            cmd.arg(rest[0])
                .args(["--cluster", &self.name])
                .args(&rest[1..]);
        } else {
            cmd.args(["--cluster", &self.name]).args(rest);
        }
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("running skiff")
    }

    /// Runs kubectl against the cluster.
    pub fn kubectl(&self, args: &[&str]) -> kubectl::Output {
        self.kubectl.run(args)
    }

    /// kubectl's stdout; fails the test on a non-zero exit.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.kubectl.ok(args)
    }

    /// kubectl's stdout; fails the test on a non-zero exit or anything on stderr.
    #[track_caller]
    pub fn ok_quiet(&self, args: &[&str]) -> String {
        self.kubectl.ok_quiet(args)
    }

    /// `kubectl apply -f` of `manifest` (written to a file of the test's).
    pub fn apply(&self, manifest: &str) {
        let file = self.scratch().join("manifest.yaml");
        std::fs::write(&file, manifest).expect("writing the manifest");
        self.ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    }

    /// Runs `cmd` in `node`'s network namespace (`skiff node exec`).
    pub fn node_exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["node", "exec", node, "--"];
        args.extend_from_slice(cmd);
        self.skiff(&args)
    }

    /// A busybox pod fetches `addr` (a Service by name: cluster DNS, then the proxy)
    /// within 60 s; whether it got the seed's page. A failed attempt's pod is removed
    /// (`-i --rm` deletes it only when kubectl exits normally).
    pub fn pod_fetches(&self, pod: &str, addr: &str) -> bool {
        // The runner's deadline bounds the attempt: busybox's own `wget -T` crashes in
        // the built-in image.
        let out = self
            .kubectl
            .clone()
            .deadline(Duration::from_secs(60))
            .run(&[
                "run",
                pod,
                "-i",
                "--rm",
                "--image=busybox",
                "--restart=Never",
                "--",
                "wget",
                "-qO-",
                addr,
            ]);
        let ok = out.stdout.contains(PAGE);
        if !ok {
            eprintln!("{pod} fetching {addr}: {}", out.describe());
            let _ = self.kubectl(&["delete", "pod", pod, "--wait=true", "--ignore-not-found"]);
        }
        ok
    }

    /// Runs a busybox pod that fetches `httpd-svc:8080` by name (cluster DNS, then the
    /// Service) and asserts it got the seed's page.
    pub fn pod_fetches_the_seed_page(&self, pod: &str) {
        let out = self.kubectl(&[
            "run",
            pod,
            "-i",
            "--rm",
            "--image=busybox",
            "--restart=Never",
            "--",
            "wget",
            "-qO-",
            "httpd-svc:8080",
        ]);
        assert!(out.stdout.contains(PAGE), "{}", out.describe());
    }

    /// `name=value` for every pod on `node`, by a jsonpath over its fields.
    pub fn pods_on(&self, node: &str, fields: &str) -> Vec<String> {
        let selector = format!("spec.nodeName={node}");
        let template = format!(
            "{{range .items[*]}}{{.metadata.namespace}}/{{.metadata.name}}={fields}{{\"\\n\"}}{{end}}"
        );
        self.ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &selector,
            "-o",
            &format!("jsonpath={template}"),
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The test's own directory (kubeconfig, manifests), removed with the cluster.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The cluster's directory under `/var/lib/skiff/clusters`.
    pub fn dir(&self) -> PathBuf {
        Path::new(CLUSTERS).join(&self.name)
    }

    /// The cluster's `cluster.json`.
    pub fn state(&self) -> Value {
        let path = self.dir().join("cluster.json");
        serde_json::from_slice(&std::fs::read(path).expect("cluster.json"))
            .expect("cluster.json parses")
    }

    /// The server's process (none if it is not recorded).
    pub fn server_pids(&self) -> Vec<i32> {
        let pid = self.state()["serverPid"].as_i64().unwrap_or(0) as i32;
        [pid].into_iter().filter(|p| *p > 0).collect()
    }

    /// The agent process of `node`.
    pub fn agent_pids(&self, node: &str) -> Vec<i32> {
        self.state()["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["name"] == node)
            .filter_map(|n| n["agentPid"].as_i64())
            .map(|p| p as i32)
            .filter(|p| *p > 0)
            .collect()
    }

    /// Every process of the cluster: the server and each node's agent.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = self.server_pids();
        for n in self.state()["nodes"].as_array().into_iter().flatten() {
            pids.extend(self.agent_pids(n["name"].as_str().unwrap_or_default()));
        }
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.skiff(&["down"]);
    }
}

/// Exit code, stdout and stderr of a process, for a failure message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` every 100 ms until it holds; fails after `timeout`. Returns how long it
/// took.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A manifest of the seed walkthrough (`tests/seed`).
pub fn seed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seed")
        .join(file)
}

/// Whether process `pid` is gone (or a zombie).
pub fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// SIGKILL to `pid`, as a crash.
pub fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// [`kill`], then waits (10 s at most) until the process is gone.
pub fn kill_and_reap(pid: i32) {
    kill(pid);
    wait_for(
        "the killed process to be gone",
        Duration::from_secs(10),
        || gone(pid),
    );
}

/// Fails (rather than passing silently) when a tool the cluster needs is missing.
pub fn assert_tools() {
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    for c in ["kubectl", "runc", "iptables-save", "curl"] {
        assert!(
            have(c),
            "{c} is missing (scripts/install-deps.sh installs it)"
        );
    }
}
