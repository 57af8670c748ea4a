//! End-to-end: a real local cluster (`skiff up`), driven by the real kubectl, as a user
//! would. Needs root, kubectl, runc, iptables, the CNI plugins and busybox-static.
//!
//! One cluster serves every check below (bringing one up is the expensive part); each
//! check names what a user would see. The cluster is removed also when a check fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PAGE: &str = "<html><body><h1>It works!</h1></body></html>";

struct Cluster {
    name: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn up(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!("e2e{}", std::process::id());
        let kubeconfig = dir.path().join("kubeconfig");
        let cluster = Cluster {
            name,
            kubeconfig,
            _dir: dir,
        };
        let out = cluster.skiff(&["up", "--nodes", &nodes.to_string()]);
        assert!(out.status.success(), "skiff up failed: {}", text(&out));
        cluster
    }

    fn skiff(&self, args: &[&str]) -> Output {
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

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("running kubectl")
    }

    /// kubectl's stdout; fails the test on a non-zero exit or anything on stderr.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "kubectl {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn node_exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["node", "exec", node, "--"];
        args.extend_from_slice(cmd);
        self.skiff(&args)
    }

    fn dir(&self) -> PathBuf {
        Path::new("/var/lib/skiff/clusters").join(&self.name)
    }

    fn pid(&self, key: &str) -> Vec<u32> {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.dir().join("cluster.json")).expect("cluster.json"),
        )
        .expect("cluster.json parses");
        match key {
            "server" => vec![state["serverPid"].as_u64().unwrap_or(0) as u32],
            node => state["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["name"] == node)
                .map(|n| n["agentPid"].as_u64().unwrap_or(0) as u32)
                .collect(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.skiff(&["down"]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn seed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seed")
        .join(file)
}

fn tools_present() -> bool {
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let root = nix::unistd::geteuid().is_root();
    root && ["kubectl", "runc", "iptables-save", "curl"]
        .iter()
        .all(|c| have(c))
}

#[test]
fn local_cluster_end_to_end() {
    if !tools_present() {
        eprintln!("skipping: needs root, kubectl, runc, iptables and curl");
        return;
    }
    let c = Cluster::up(3);

    // kubectl apply keeps the last applied configuration (describe hides it; -o yaml shows it).
    assert_eq!(
        c.ok(&[
            "apply",
            "-f",
            seed("Httpd-Deployment.yaml").to_str().unwrap()
        ])
        .trim(),
        "deployment.apps/httpd created"
    );
    c.ok(&["apply", "-f", seed("Httpd-Service.yaml").to_str().unwrap()]);
    let yaml = c.ok(&["get", "svc", "httpd-svc", "-o", "yaml"]);
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );
    c.ok(&["rollout", "status", "deployment/httpd", "--timeout=90s"]);
    let cip = c.ok(&[
        "get",
        "svc",
        "httpd-svc",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    wait_for(
        "the Service to answer from k8s-m",
        Duration::from_secs(30),
        || {
            let out = c.node_exec("k8s-m", &["curl", "-s", "-m", "2", &format!("{cip}:8080")]);
            String::from_utf8_lossy(&out.stdout).trim_end() == PAGE
        },
    );

    // Logs and exec through the API server to the agent.
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "run=httpd",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let hostname = c.ok(&["exec", &pod, "--", "hostname"]);
    assert_eq!(hostname.trim(), pod);
    c.ok(&["logs", &pod]);

    // Pods reach each other across nodes and resolve Services by name.
    let out = c.kubectl(&[
        "run",
        "e2e-client",
        "-i",
        "--rm",
        "--image=busybox",
        "--restart=Never",
        "--",
        "wget",
        "-qO-",
        "httpd-svc:8080",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(PAGE),
        "{}",
        text(&out)
    );

    // Bad input gets Kubernetes' errors.
    let out = c.kubectl(&["get", "pod", "nope"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): pods \"nope\" not found"
    );

    // The server restarts without losing anything.
    let before = c.ok(&["get", "svc", "httpd-svc", "-o", "jsonpath={.metadata.uid}"]);
    for pid in c.pid("server") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // `skiff up` on a cluster whose processes stopped starts them again, with its state.
    let out = c.skiff(&["up"]);
    assert!(out.status.success(), "restarting: {}", text(&out));
    let after = c.ok(&["get", "svc", "httpd-svc", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(before, after, "the Service survived the server's restart");
    let out = c.skiff(&["up"]);
    assert!(
        !out.status.success(),
        "up of a running cluster must be refused"
    );

    // An agent that stops makes its node NotReady (checked with a short grace period by the
    // controllers' own tests); here: `skiff down` after kill -9 of everything cleans up.
    for node in ["k8s-m", "k8s-n1", "k8s-n2"] {
        for pid in c.pid(node) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let out = c.skiff(&["down"]);
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{}-", c.name)))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left after down: {left:?}");
    assert!(!c.dir().exists(), "cluster directory left after down");
}
