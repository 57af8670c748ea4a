//! The agent against the real API server, in process (needs root): a test "node" netns,
//! the Node registered and Ready, a pod bound to it running with its own IP, the real
//! kubectl's logs/exec/run -i through the API server's proxy, a crash loop, and graceful
//! deletion that leaves nothing behind.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_agent::containers::netns;
use skiff_agent::AgentConfig;

struct Cleanup {
    prefix: String,
    data: std::path::PathBuf,
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
            for m in info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
            {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for ns in netns::list(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let hierarchies: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for sub in &hierarchies {
            let base = Path::new("/sys/fs/cgroup")
                .join(sub)
                .join("skiff")
                .join(&self.node);
            let _ = Command::new("find")
                .arg(&base)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .output();
            // The shared parent goes too when no other node uses it.
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(sub).join("skiff"));
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(pod: &Pod, t: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let (code, out) = kubectl_at("kubectl", kubeconfig, args, stdin).await;
    (code == Some(0), out)
}

/// Runs a given kubectl binary (60 s deadline); its exit code and stdout+stderr.
async fn kubectl_at(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String) {
    let out = skiff_testkit::kubectl::Kubectl::new(bin, kubeconfig)
        .deadline(Duration::from_secs(60))
        .run_async(args, stdin)
        .await;
    assert!(!out.timed_out, "kubectl {args:?} timed out");
    (out.code, out.combined())
}

/// Runs a shell command under `script`, so it has a terminal; `input` is typed into it.
async fn in_terminal(command: &str, input: &str) -> (bool, String) {
    let shell = format!(
        "printf '{input}' | script -qec \"{}\" /dev/null",
        command.replace('"', "\\\"")
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("sh")
            .args(["-c", &shell])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("script timed out")
    .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "needs root"]
fn agent_with_api_server() {
    harness("a", |data, prefix, node| {
        Box::pin(async move { scenario(&data, &prefix, &node).await })
    });
}

/// The same scenario with `--runtime runc`: the runc path stays tested.
#[test]
#[ignore = "needs root"]
fn agent_with_api_server_runc() {
    harness("c", |data, prefix, node| {
        Box::pin(async move {
            scenario_with(&data, &prefix, &node, skiff_agent::RuntimeKind::Runc).await
        })
    });
}

/// Pod startup latency (creation to Ready, seen through a watch) for 100 pods on one
/// node, and the test process's memory (API server and agent together). Run with
/// `cargo test -p skiff-agent --test cluster -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run explicitly"]
fn bench_pod_startup_100() {
    harness("b", |data, prefix, node| {
        Box::pin(async move { bench(&data, &prefix, &node, 100).await })
    });
}

/// Restarting the agent (a real process, killed with SIGKILL) leaves the running
/// containers alone: the new agent takes them back (same IP, same container, exec
/// works) and can still delete the pod cleanly.
#[test]
#[ignore = "needs root"]
fn agent_restart_keeps_pods() {
    // `cargo test -p skiff-agent` builds the examples; `--test cluster` alone does not.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/agent_dev");
    assert!(
        example.exists(),
        "{} is not built (cargo test -p skiff-agent builds it)",
        example.display()
    );
    harness("r", |data, prefix, node| {
        Box::pin(async move { restart(&data, &prefix, &node).await })
    });
}

type Scenario = fn(
    std::path::PathBuf,
    String,
    String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Runs a scenario in a fresh "node" netns, with everything removed afterwards.
fn harness(tag: &str, scenario: Scenario) {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root");
    let pid = std::process::id();
    let prefix = format!("skc-{pid}{tag}-");
    let node_ns = format!("{prefix}node");
    let node_name = format!("skc-{pid}{tag}");
    let data = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        data: data.path().to_path_buf(),
        node: node_name.clone(),
    };
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
        "ip addr add 10.251.0.2/24 dev eth0",
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
        let result = tokio::time::timeout(
            Duration::from_secs(240),
            scenario(data.path().to_path_buf(), prefix.clone(), node_name.clone()),
        )
        .await;
        assert!(result.is_ok(), "the scenario timed out");
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// A running API server and agent.
struct Env {
    _server: skiff_apiserver::ServerHandle,
    admin: Client,
    kubeconfig: std::path::PathBuf,
    agent: tokio::task::JoinHandle<()>,
}

async fn scenario(data: &Path, prefix: &str, node_name: &str) {
    scenario_with(data, prefix, node_name, bench_runtime()).await
}

async fn scenario_with(
    data: &Path,
    prefix: &str,
    node_name: &str,
    runtime: skiff_agent::RuntimeKind,
) {
    let Env {
        _server,
        admin,
        kubeconfig,
        agent,
    } = start(data, prefix, node_name, runtime).await;
    // kubelet's start events, found as `kubectl describe node` looks for them.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin.clone(), "default");
    let selector = format!(
        "involvedObject.kind=Node,involvedObject.name={node_name},involvedObject.uid={node_name}"
    );
    poll(
        "the node's start events",
        Duration::from_secs(20),
        async || {
            let list = events
                .list(&ListParams::default().fields(&selector))
                .await
                .ok()?;
            let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
            (reasons.iter().any(|r| r == "Starting") && reasons.iter().any(|r| r == "NodeReady"))
                .then_some(())
        },
    )
    .await;
    scenario_body(data, prefix, node_name, admin, &kubeconfig).await;
    agent.abort();
}

async fn start(
    data: &Path,
    prefix: &str,
    node_name: &str,
    runtime: skiff_agent::RuntimeKind,
) -> Env {
    let server_dir = data.join("server");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: server_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_address: Some("10.251.0.2".parse().unwrap()),
        ..Default::default()
    })
    .await
    .expect("API server");
    let url = format!("https://127.0.0.1:{}", server.port());
    let admin = Client::try_from(server.admin_client_config()).unwrap();
    let kubeconfig = data.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        skiff_apiserver::pki::admin_kubeconfig(&server_dir, &url, "skc").unwrap(),
    )
    .unwrap();

    let cfg = AgentConfig {
        server_url: url.clone(),
        token: skiff_apiserver::pki::join_token(&server_dir).unwrap(),
        ca_file: Some(server_dir.join("pki/ca.crt")),
        node_name: node_name.to_string(),
        node_ip: None,
        data_dir: data.join("agent"),
        netns_prefix: format!("{prefix}p-"),
        node_labels: Default::default(),
        register_with_taints: vec![],
        cluster_dns: "10.96.0.10".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        network: bench_network(),
        runtime,
        runtime_service: Some(env!("CARGO_BIN_EXE_skiff-runtime-service").into()),
        kubelet_port: 10250,
        skiff_binary: "/bin/busybox".into(),
        resolv_conf: None,
        registries: Default::default(),
        image_gc: Default::default(),
        credentials: None,
    };
    let agent = tokio::spawn(async move {
        if let Err(e) = skiff_agent::run(cfg).await {
            panic!("agent: {e:#}");
        }
    });

    // The Node registers Ready with its address; the test plays the IPAM controller.
    let nodes: Api<Node> = Api::all(admin.clone());
    let node = poll("the Node", Duration::from_secs(20), async || {
        let n = nodes.get_opt(node_name).await.ok().flatten()?;
        n.status.as_ref()?.conditions.as_ref()?;
        Some(n)
    })
    .await;
    let status = node.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    assert_eq!(status.addresses.unwrap()[0].address, "10.251.0.2");
    assert_eq!(
        status.node_info.unwrap().container_runtime_version,
        "skiff://0.1.0"
    );
    nodes
        .patch(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"podCIDR": "10.251.1.0/24", "podCIDRs": ["10.251.1.0/24"]}}),
            ),
        )
        .await
        .unwrap();

    Env {
        _server: server,
        admin,
        kubeconfig,
        agent,
    }
}

async fn scenario_body(
    data: &Path,
    prefix: &str,
    node_name: &str,
    admin: Client,
    kubeconfig: &Path,
) {
    let kubeconfig = kubeconfig.to_path_buf();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let web: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"run": "httpd"}},
        "spec": {"nodeName": node_name, "containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]}
    }))
    .unwrap();
    let started = Instant::now();
    pods.create(&PostParams::default(), &web).await.unwrap();
    let web = poll("web Ready", Duration::from_secs(30), async || {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    eprintln!("web Ready after {:?}", started.elapsed());
    let st = web.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let ip = st.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.251.1."), "{ip}");
    assert_eq!(st.host_ip.as_deref(), Some("10.251.0.2"));
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs.container_id.as_deref().unwrap().starts_with("skiff://"));
    assert_eq!(cs.restart_count, 0);

    // Ready without a readiness probe means running; httpd listens a moment later.
    poll("httpd to answer", Duration::from_secs(10), async || {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-m", "5", &ip])
            .output()
            .await
            .ok()?;
        (out.stdout == b"<html><body><h1>It works!</h1></body></html>\n").then_some(())
    })
    .await;

    // exec, attach, run and port-forward with the oldest kubectl (SPDY/3.1) and the
    // newest (WebSocket; port-forward as SPDY tunnelled in WebSocket).
    for bin in [KUBECTL_OLDEST, KUBECTL_NEWEST] {
        streaming(bin, &kubeconfig, node_name).await;
    }
    // kube-rs port-forward: WebSocket channels (v4.channel.k8s.io).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut pf = pods.portforward("web", &[80]).await.unwrap();
        let mut s = pf.take_stream(80).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("It works!") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("kube-rs port-forward answer in time")
                .unwrap();
            assert!(
                n > 0,
                "kube-rs port-forward: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        drop(s);
        pf.abort();
    }

    let (ok, out) = kubectl(&kubeconfig, &["exec", "web", "--", "echo", "hi"], None).await;
    assert!(ok && out == "hi\n", "kubectl exec: {out}");
    let (ok, out) = kubectl(
        &kubeconfig,
        &["exec", "web", "--", "sh", "-c", "exit 3"],
        None,
    )
    .await;
    assert!(
        !ok && out.contains("command terminated with exit code 3"),
        "kubectl exec exit 3: {out}"
    );
    let (ok, out) = kubectl(
        &kubeconfig,
        &["exec", "web", "--", "cat", "/etc/resolv.conf"],
        None,
    )
    .await;
    assert!(
        ok && out.contains("nameserver 10.96.0.10")
            && out.contains("search default.svc.cluster.local"),
        "resolv.conf: {out}"
    );
    let (ok, out) = kubectl(&kubeconfig, &["exec", "web", "--", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace"], None).await;
    assert!(
        ok && out.contains("10.96.0.1\n") && out.contains("default"),
        "env and SA volume: {out}"
    );
    let (ok, out) = kubectl(&kubeconfig, &["logs", "web"], None).await;
    assert!(ok && out.contains("response:200"), "kubectl logs: {out}");

    // kubectl run -i with stdin, as the seed's busybox step (bound to our node by hand:
    // no scheduler here).
    let overrides = json!({"spec": {"nodeName": node_name}}).to_string();
    let (ok, out) = kubectl(
        &kubeconfig,
        &[
            "run",
            "bb",
            "-i",
            "--rm",
            "--image=busybox",
            "--restart=Never",
            &format!("--overrides={overrides}"),
            "--",
            "sh",
        ],
        Some(&format!("wget -qO- http://{ip}/\nexit\n")),
    )
    .await;
    assert!(
        ok && out.contains("It works!") && out.contains("pod \"bb\" deleted"),
        "kubectl run -i: {out}"
    );

    if let Ok(secs) = std::env::var("SKC_PAUSE") {
        eprintln!(
            "pausing: KUBECONFIG={} in netns {prefix}node",
            kubeconfig.display()
        );
        tokio::time::sleep(Duration::from_secs(secs.parse().unwrap_or(120))).await;
    }
    // Terminals: exec -t and run -it, with `script` giving kubectl a terminal.
    let kc = kubeconfig.display().to_string();
    let (ok, out) = in_terminal(
        &format!("KUBECONFIG={kc} kubectl exec -it web -- sh -c 'tty; stty size'"),
        "",
    )
    .await;
    assert!(ok && out.contains("/dev/pts/"), "exec -it: {out}");
    let (ok, out) = in_terminal(
        &format!("KUBECONFIG={kc} kubectl run tt -it --rm --image=busybox --restart=Never --overrides='{overrides}' -- sh"),
        "echo tty-$((6*7))\nexit\n",
    )
    .await;
    assert!(
        ok && out.contains("tty-42") && out.contains("pod \"tt\" deleted"),
        "run -it: {out}"
    );

    // A crash loop.
    let crash: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash"},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo bye; exit 2"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &crash).await.unwrap();
    poll("CrashLoopBackOff", Duration::from_secs(30), async || {
        let p = pods.get("crash").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let waiting = cs.state?.waiting?.reason?;
        let last = cs.last_state?.terminated?;
        (waiting == "CrashLoopBackOff"
            && cs.restart_count >= 1
            && last.exit_code == 2
            && last.reason.as_deref() == Some("Error"))
        .then_some(())
    })
    .await;
    let (ok, out) = kubectl(&kubeconfig, &["logs", "crash", "--previous"], None).await;
    assert!(ok && out == "bye\n", "logs --previous: {out}");

    // logs -f follows a running container to its end; the pod then Succeeded.
    let counter: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "counter"},
        "spec": {"nodeName": node_name, "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "sleep 1; for i in 1 2 3; do echo line-$i; sleep 0.3; done"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &counter).await.unwrap();
    poll("counter running", Duration::from_secs(20), async || {
        let p = pods.get("counter").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let (ok, out) = kubectl(&kubeconfig, &["logs", "-f", "counter"], None).await;
    assert!(ok && out == "line-1\nline-2\nline-3\n", "logs -f: {out}");
    let (ok, out) = kubectl(
        &kubeconfig,
        &["logs", "counter", "--tail=1", "--timestamps"],
        None,
    )
    .await;
    assert!(
        ok && out.ends_with("Z line-3\n") && out.lines().count() == 1,
        "logs --tail --timestamps: {out}"
    );
    poll("counter Succeeded", Duration::from_secs(20), async || {
        let p = pods.get("counter").await.ok()?;
        let st = p.status?;
        let term = st
            .container_statuses?
            .into_iter()
            .next()?
            .state?
            .terminated?;
        (st.phase.as_deref() == Some("Succeeded") && term.reason.as_deref() == Some("Completed"))
            .then_some(())
    })
    .await;
    // A finished pod gives its network back at once (its address returns to the node's
    // range, so finished Job pods do not exhaust it) and keeps its status and logs
    // until it is deleted.
    let counter = pods.get("counter").await.unwrap();
    let uid = counter.metadata.uid.clone().unwrap();
    let counter_ip = counter
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a finished pod keeps its IP in its status");
    let counter_ns = format!("{prefix}p-{}", &uid[..13]);
    poll(
        "the finished pod's network released",
        Duration::from_secs(10),
        async || {
            let ns_gone = !netns::list(&format!("{prefix}p-")).contains(&counter_ns);
            (ns_gone && !ip_reserved(data, &counter_ip)).then_some(())
        },
    )
    .await;
    let (ok, out) = kubectl(&kubeconfig, &["logs", "counter"], None).await;
    assert!(
        ok && out == "line-1\nline-2\nline-3\n",
        "logs of a finished pod: {out}"
    );

    // Readiness probes drive Ready: a failing httpGet keeps the pod unready, a passing
    // exec probe makes it ready.
    for (name, probe) in [
        (
            "unready",
            json!({"httpGet": {"path": "/missing", "port": 80}, "periodSeconds": 1}),
        ),
        (
            "ready",
            json!({"exec": {"command": ["cat", "/var/www/index.html"]}, "periodSeconds": 1}),
        ),
    ] {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "httpd", "image": "httpd", "readinessProbe": probe}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    poll("the ready pod Ready", Duration::from_secs(20), async || {
        let p = pods.get("ready").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
    let unready = poll(
        "the unready pod probed",
        Duration::from_secs(20),
        async || {
            let p = pods.get("unready").await.ok()?;
            let running = p.status.as_ref()?.container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .running
                .is_some();
            (running && condition(&p, "Ready").as_deref() == Some("False")).then_some(p)
        },
    )
    .await;
    let ready_cond = unready
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready_cond.reason.as_deref(), Some("ContainersNotReady"));

    post_start_hooks(&pods, &admin, &kubeconfig).await;

    // Graceful deletion: the agent stops the containers, tears the sandbox down and
    // finalizes the deletion quickly.
    let t = Instant::now();
    for name in [
        "web", "crash", "ready", "unready", "counter", "hooked", "badhook",
    ] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    poll("pods gone", Duration::from_secs(20), async || {
        let list = pods.list(&Default::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    eprintln!("deleted in {:?}", t.elapsed());
    poll("pod netns removed", Duration::from_secs(10), async || {
        netns::list(&format!("{prefix}p-")).is_empty().then_some(())
    })
    .await;
    assert!(std::fs::read_dir(data.join("agent/pods"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
}

/// postStart hooks as kubelet runs them: the container counts as running only once its
/// hook is done (so what the hook wrote is there as soon as the status says Running),
/// and a failing hook kills the container, with kubelet's `FailedPostStartHook` event.
async fn post_start_hooks(pods: &Api<Pod>, admin: &Client, kubeconfig: &Path) {
    let node_name = pods
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    for (name, hook) in [
        ("hooked", "sleep 1; echo done > /tmp/hook"),
        ("badhook", "echo nope; exit 3"),
    ] {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "nodeName": node_name, "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", hook]}}}}]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    poll("hooked running", Duration::from_secs(20), async || {
        let p = pods.get("hooked").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        cs.state?.running.map(|_| ())
    })
    .await;
    let (ok, out) = kubectl(
        kubeconfig,
        &["exec", "hooked", "--", "cat", "/tmp/hook"],
        None,
    )
    .await;
    assert!(ok && out == "done\n", "the hook's file once running: {out}");

    // The failed hook: the container is killed, and with restartPolicy Never the pod
    // fails.
    let bad = poll("badhook failed", Duration::from_secs(20), async || {
        let p = pods.get("badhook").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    let uid = bad.metadata.uid.unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin.clone(), "default");
    let want = format!(
        "Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container \"c\" in Pod \"badhook_default({uid})\" failed - error: "
    );
    poll(
        "FailedPostStartHook and Killing events",
        Duration::from_secs(10),
        async || {
            let list = events
                .list(&ListParams::default().fields("involvedObject.name=badhook"))
                .await
                .ok()?;
            let has = |reason: &str, msg: &dyn Fn(&str) -> bool| {
                list.items.iter().any(|e| {
                    e.reason.as_deref() == Some(reason) && msg(e.message.as_deref().unwrap_or(""))
                })
            };
            (has("FailedPostStartHook", &|m| m.starts_with(&want))
                && has("Killing", &|m| m == "FailedPostStartHook"))
            .then_some(())
        },
    )
    .await;
}

/// Whether host-local IPAM (under the agent's data dir) holds `ip` for a pod.
fn ip_reserved(data: &Path, ip: &str) -> bool {
    std::fs::read_dir(data.join("agent/cni/ipam"))
        .map(|nets| nets.flatten().any(|n| n.path().join(ip).exists()))
        .unwrap_or(false)
}

/// The API server in process and the agent as a process of its own (the `agent_dev`
/// example), so its memory can be told apart.
async fn start_agent_process(
    data: &Path,
    prefix: &str,
    node_name: &str,
) -> (skiff_apiserver::ServerHandle, Client, tokio::process::Child) {
    let server_dir = data.join("server");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: server_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_address: Some("10.251.0.2".parse().unwrap()),
        ..Default::default()
    })
    .await
    .expect("API server");
    let url = format!("https://127.0.0.1:{}", server.port());
    let admin = Client::try_from(server.admin_client_config()).unwrap();
    let agent = spawn_agent_process(
        data,
        prefix,
        node_name,
        &url,
        bench_network(),
        bench_runtime(),
    );
    let nodes: Api<Node> = Api::all(admin.clone());
    poll("the Node", Duration::from_secs(20), async || {
        let n = nodes.get_opt(node_name).await.ok().flatten()?;
        n.status.as_ref()?.conditions.as_ref()?;
        Some(n)
    })
    .await;
    nodes
        .patch(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"podCIDR": "10.251.1.0/24", "podCIDRs": ["10.251.1.0/24"]}}),
            ),
        )
        .await
        .unwrap();
    (server, admin, agent)
}

/// The runtime of the agents the tests start: `SKIFF_BENCH_RUNTIME` (`youki`, the
/// default: libcontainer in the runtime service; or `runc`), so the benchmark measures
/// either.
fn bench_runtime() -> skiff_agent::RuntimeKind {
    std::env::var("SKIFF_BENCH_RUNTIME")
        .ok()
        .map(|v| v.parse().expect("SKIFF_BENCH_RUNTIME: youki or runc"))
        .unwrap_or_default()
}

/// The pod network of the agents the tests start: `SKIFF_BENCH_NETWORK` (`builtin`, the
/// default, or `cni`), so the benchmark measures either path.
fn bench_network() -> skiff_agent::Network {
    std::env::var("SKIFF_BENCH_NETWORK")
        .ok()
        .map(|v| v.parse().expect("SKIFF_BENCH_NETWORK: builtin or cni"))
        .unwrap_or_default()
}

/// `SKIFF_BENCH_AGENT=process` runs the agent as a process (needs `cargo build
/// [--release] -p skiff-agent --example agent_dev`) and reports its memory; otherwise it
/// runs in the test process, which then reports the agent's per-step timings.
/// The creation rates the benchmark runs, in pods per second (`0` for all at once):
/// `SKIFF_BENCH_RATE`, else 5 (clusterloader2's `node-throughput` test, which measures
/// Kubernetes' pod startup SLO on one node with 100 pods created at 5 per second) and
/// then all at once (the node's throughput).
fn bench_rates() -> Vec<f64> {
    match std::env::var("SKIFF_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        Some(r) => vec![r],
        None => vec![5.0, 0.0],
    }
}

async fn bench(data: &Path, prefix: &str, node_name: &str, n: usize) {
    let as_process = std::env::var("SKIFF_BENCH_AGENT").as_deref() == Ok("process");
    let (_server, admin, agent, mut child) = if as_process {
        let (server, admin, child) = start_agent_process(data, prefix, node_name).await;
        (server, admin, None, Some(child))
    } else {
        let Env {
            _server,
            admin,
            agent,
            ..
        } = start(data, prefix, node_name, bench_runtime()).await;
        (_server, admin, Some(agent), None)
    };
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for rate in bench_rates() {
        bench_round(
            &pods,
            node_name,
            n,
            rate,
            child.as_ref().and_then(|c| c.id()),
        )
        .await;
    }
    if let Some(agent) = agent {
        agent.abort();
    }
    if let Some(child) = child.as_mut() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// One round of the benchmark: `n` pods created at `rate` per second (all at once for
/// 0), their latencies and the CPU spent, then every pod deleted.
async fn bench_round(
    pods: &Api<Pod>,
    node_name: &str,
    n: usize,
    rate: f64,
    agent_pid: Option<u32>,
) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let created = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let ready_at = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let watch = {
        let (pods, ready_at) = (pods.clone(), ready_at.clone());
        tokio::spawn(async move {
            let mut s = watcher::watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = s.next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev {
                    if condition(&p, "Ready").as_deref() == Some("True") {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        ready_at
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    for i in 0..n {
        if rate > 0.0 {
            // The load generator's pace, as clusterloader2's qps tuning set keeps it.
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let name = format!("b{i}");
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "httpd", "image": "httpd"}]}
        }))
        .unwrap();
        created.lock().unwrap().insert(name, Instant::now());
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let creating = start.elapsed();
    poll("all pods Ready", Duration::from_secs(200), async || {
        (ready_at.lock().unwrap().len() >= n).then_some(())
    })
    .await;
    let total = start.elapsed();
    let cpu_after = cpu_seconds();
    let mut lat: Vec<Duration> = {
        let c = created.lock().unwrap();
        ready_at
            .lock()
            .unwrap()
            .iter()
            .map(|(k, t)| t.duration_since(c[k]))
            .collect()
    };
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mem: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .collect();
    let pace = if rate > 0.0 {
        format!("created at {rate} per second")
    } else {
        "created at once".to_string()
    };
    eprintln!(
        "{n} pods {pace}: creation to Ready p50 {:?}, p99 {:?}, max {:?}; all Ready after {total:?} (created in {creating:?}); test process (API server + agent) {}",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        mem.join(", ")
    );
    let own = cpu_after.0 - cpu_before.0;
    let reaped = cpu_after.1 - cpu_before.1;
    let live = cpu_after.2 - cpu_before.2;
    eprintln!(
        "CPU until all Ready: test process (API server + agent) {own:.2} s, its reaped children (runc, CNI plugins, libcontainer's intermediates) {reaped:.2} s, live children (runtime services, containers) {live:+.2} s; all {:.2} s = {:.1} ms per pod ({} runtime, {} network)",
        own + reaped + live,
        (own + reaped + live) * 1000.0 / n as f64,
        bench_runtime(),
        bench_network(),
    );
    if let Some(pid) = agent_pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .collect();
        eprintln!("agent process with {n} pods: {}", rss.join(", "));
    } else {
        eprintln!("agent steps:\n{}", skiff_agent::kubelet::timing::summary());
        skiff_agent::kubelet::timing::reset();
    }
    watch.abort();
    let t = Instant::now();
    pods.delete_collection(&DeleteParams::default(), &Default::default())
        .await
        .unwrap();
    poll("pods gone", Duration::from_secs(200), async || {
        pods.list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    eprintln!("{n} pods deleted in {:?}\n", t.elapsed());
}

/// CPU seconds (user + system) of this process, of its reaped children, and of its
/// live children (the runtime services, the containers' inits with what they did
/// before their exec, and what those reaped).
fn cpu_seconds() -> (f64, f64, f64) {
    let f = stat_fields("self").unwrap();
    let tick = 100.0;
    // utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 here.
    let mut live = 0.0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            if let Some(c) = stat_fields(pid) {
                live += (c[11] + c[12] + c[13] + c[14]) / tick;
            }
        }
    }
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick, live)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces),
/// from the state on.
fn stat_fields(pid: &str) -> Option<Vec<f64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect(),
    )
}

fn spawn_agent_process(
    data: &Path,
    prefix: &str,
    node_name: &str,
    url: &str,
    network: skiff_agent::Network,
    runtime: skiff_agent::RuntimeKind,
) -> tokio::process::Child {
    let server_dir = data.join("server");
    // The example binary sits next to this test's directory of binaries.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/agent_dev");
    tokio::process::Command::new(bin)
        .env("SKIFF_AGENT_SERVER", url)
        .env(
            "SKIFF_AGENT_TOKEN",
            skiff_apiserver::pki::join_token(&server_dir).unwrap(),
        )
        .env("SKIFF_AGENT_CA", server_dir.join("pki/ca.crt"))
        .env("SKIFF_AGENT_NODE", node_name)
        .env("SKIFF_AGENT_DATA", data.join("agent"))
        .env("SKIFF_AGENT_NETNS_PREFIX", format!("{prefix}p-"))
        .env("SKIFF_AGENT_NETWORK", network.to_string())
        .env("SKIFF_AGENT_RUNTIME", runtime.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("the agent_dev example (built by cargo test)")
}

async fn restart(data: &Path, prefix: &str, node_name: &str) {
    let server_dir = data.join("server");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: server_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_address: Some("10.251.0.2".parse().unwrap()),
        ..Default::default()
    })
    .await
    .expect("API server");
    let url = format!("https://127.0.0.1:{}", server.port());
    let admin = Client::try_from(server.admin_client_config()).unwrap();
    let kubeconfig = data.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        skiff_apiserver::pki::admin_kubeconfig(&server_dir, &url, "skc").unwrap(),
    )
    .unwrap();
    // The first agent wires pods with the CNI plugins and runs them with runc, the next
    // in process with youki, the last with the plugins and runc again: a running node
    // switches paths and runtimes, and each takes back (exec) and tears down pods the
    // other set up.
    let mut agent = spawn_agent_process(
        data,
        prefix,
        node_name,
        &url,
        skiff_agent::Network::Plugins,
        skiff_agent::RuntimeKind::Runc,
    );
    let nodes: Api<Node> = Api::all(admin.clone());
    poll("the Node", Duration::from_secs(20), async || {
        nodes.get_opt(node_name).await.ok().flatten()
    })
    .await;
    nodes
        .patch(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"podCIDR": "10.251.1.0/24"}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let web: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": node_name, "containers": [{"name": "httpd", "image": "httpd"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &web).await.unwrap();
    let before = poll("web Ready", Duration::from_secs(30), async || {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let st = before.status.unwrap();
    let ip = st.pod_ip.clone().unwrap();
    let id = st.container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap();

    if let Some(pid) = agent.id() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .collect();
        eprintln!("agent process with one pod: {}", rss.join(", "));
    }
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    let mut agent = spawn_agent_process(
        data,
        prefix,
        node_name,
        &url,
        skiff_agent::Network::Builtin,
        skiff_agent::RuntimeKind::Youki,
    );
    // The new agent serves exec for the container it took back.
    let out = poll(
        "exec through the new agent",
        Duration::from_secs(30),
        async || {
            let (ok, out) = kubectl(
                &kubeconfig,
                &["exec", "web", "--", "echo", "still-here"],
                None,
            )
            .await;
            ok.then_some(out)
        },
    )
    .await;
    assert_eq!(out, "still-here\n");
    let page = tokio::process::Command::new("curl")
        .args(["-s", "-m", "5", &ip])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "<html><body><h1>It works!</h1></body></html>\n"
    );
    let after = pods.get("web").await.unwrap().status.unwrap();
    assert_eq!(after.pod_ip.as_deref(), Some(ip.as_str()));
    let cs = &after.container_statuses.unwrap()[0];
    assert_eq!(
        (cs.container_id.as_deref(), cs.restart_count),
        (Some(id.as_str()), 0)
    );
    assert_eq!(
        condition(&pods.get("web").await.unwrap(), "Ready").as_deref(),
        Some("True")
    );

    // A pod the in-process path sets up next to the plugins' gets another address of
    // host-local's store, and answers through the bridge (pod to pod across the paths:
    // tests/network.rs).
    let mut web2 = web.clone();
    web2.metadata.name = Some("web2".into());
    pods.create(&PostParams::default(), &web2).await.unwrap();
    let ip2 = poll("web2 Ready", Duration::from_secs(30), async || {
        let p = pods.get("web2").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p.status?.pod_ip?)
    })
    .await;
    assert_ne!(ip2, ip);
    assert!(ip_reserved(data, &ip) && ip_reserved(data, &ip2));
    let page = tokio::process::Command::new("curl")
        .args(["-s", "-m", "5", &ip2])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("It works!"),
        "web2: {page:?}"
    );

    // The in-process path tears down the plugins' pod.
    delete_pod(&pods, "web").await;
    assert!(!ip_reserved(data, &ip), "{ip} is still reserved");

    // And the plugins tear down the in-process path's.
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    let mut agent = spawn_agent_process(
        data,
        prefix,
        node_name,
        &url,
        skiff_agent::Network::Plugins,
        skiff_agent::RuntimeKind::Runc,
    );
    poll("web2 taken back", Duration::from_secs(30), async || {
        let (ok, out) = kubectl(&kubeconfig, &["exec", "web2", "--", "true"], None).await;
        (ok && out.is_empty()).then_some(())
    })
    .await;
    delete_pod(&pods, "web2").await;
    assert!(!ip_reserved(data, &ip2), "{ip2} is still reserved");
    poll("pod netns removed", Duration::from_secs(10), async || {
        netns::list(&format!("{prefix}p-")).is_empty().then_some(())
    })
    .await;
    let ports = Command::new("ip")
        .args(["-o", "link", "show", "master", "cni0"])
        .output()
        .unwrap();
    assert!(
        ports.stdout.is_empty(),
        "veths left on the bridge: {}",
        String::from_utf8_lossy(&ports.stdout)
    );
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
}

/// Deletes a pod and waits until it is gone from the API (the agent has torn it down).
async fn delete_pod(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default()).await.unwrap();
    poll(
        &format!("{name} gone"),
        Duration::from_secs(30),
        async || {
            pods.get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// kubectl 1.27: SPDY/3.1 for exec, attach and port-forward.
const KUBECTL_OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
/// kubectl 1.33: WebSocket v5 for exec and attach, SPDY over WebSocket for port-forward.
const KUBECTL_NEWEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// exec (exit codes, stdin, terminal), run -i, attach and port-forward through the API
/// server with one kubectl binary; the `web` pod (httpd) is running.
async fn streaming(bin: &str, kubeconfig: &Path, node_name: &str) {
    let v = bin.rsplit('.').next().unwrap_or("x");
    let t = Instant::now();
    let (code, out) = kubectl_at(bin, kubeconfig, &["exec", "web", "--", "echo", "hi"], None).await;
    assert!(code == Some(0) && out == "hi\n", "{bin} exec: {out}");
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    )
    .await;
    assert!(
        code == Some(3)
            && out.contains("out\n")
            && out.contains("err\n")
            && out.contains("command terminated with exit code 3"),
        "{bin} exec exit 3 ({code:?}): {out}"
    );
    // stdin, ended by EOF; more than a window's worth of output comes back whole.
    let input = format!("{}\nend\n", "x".repeat(100 * 1024));
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"],
        Some(&input),
    )
    .await;
    assert!(
        code == Some(0) && out == format!("{input}done\n"),
        "{bin} exec -i: {} bytes: {}",
        out.len(),
        out.get(out.len().saturating_sub(200)..).unwrap_or("")
    );
    // A terminal: tty and its size (script's own terminal gets a size for kubectl to
    // pass on).
    let kc = kubeconfig.display().to_string();
    let (ok, out) = in_terminal(
        &format!(
            "stty cols 100 rows 30; KUBECONFIG={kc} {bin} exec -it web -- sh -c 'tty; stty size'"
        ),
        "",
    )
    .await;
    assert!(
        ok && out.contains("/dev/pts/") && out.contains("30 100"),
        "{bin} exec -it: {out}"
    );

    // run -i --rm (attach to a stdinOnce container, then delete it).
    let overrides = json!({"spec": {"nodeName": node_name}}).to_string();
    let name = format!("run{v}");
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &[
            "run",
            &name,
            "-i",
            "--rm",
            "--image=busybox",
            "--restart=Never",
            &format!("--overrides={overrides}"),
            "--",
            "sh",
        ],
        Some("echo run-$((6*7))\nexit\n"),
    )
    .await;
    assert!(
        code == Some(0)
            && out.contains("run-42")
            && out.contains(&format!("pod \"{name}\" deleted")),
        "{bin} run -i --rm: {out}"
    );

    // attach -i to a running container that reads its stdin.
    let name = format!("att{v}");
    let spec = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node_name, "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "busybox", "stdin": true, "stdinOnce": true,
            "command": ["sh", "-c", "while read l; do echo got-$l; done; echo bye"]}]}
    });
    let file = std::env::temp_dir().join(format!("{name}-{}.json", std::process::id()));
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &["create", "-f", &file.display().to_string()],
        None,
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(0), "{bin} create: {out}");
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=30s",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{bin} wait: {out}");
    let (code, out) = kubectl_at(bin, kubeconfig, &["attach", "-i", &name], Some("a\nb\n")).await;
    assert!(
        code == Some(0) && out.contains("got-a\ngot-b\nbye\n"),
        "{bin} attach -i ({code:?}): {out}"
    );
    let _ = kubectl_at(
        bin,
        kubeconfig,
        &["delete", "pod", &name, "--wait=false"],
        None,
    )
    .await;

    // attach -it to a container with a terminal.
    let name = format!("tty{v}");
    let spec = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node_name, "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "busybox", "stdin": true, "tty": true, "command": ["sh"]}]}
    });
    let file = std::env::temp_dir().join(format!("{name}-{}.json", std::process::id()));
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &["create", "-f", &file.display().to_string()],
        None,
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(0), "{bin} create: {out}");
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=30s",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{bin} wait: {out}");
    let (ok, out) = in_terminal(
        &format!("stty cols 90 rows 20; KUBECONFIG={kc} {bin} attach -it {name}"),
        "echo hello-$((2*3))\\nexit\\n",
    )
    .await;
    assert!(ok && out.contains("hello-6"), "{bin} attach -it: {out}");
    let _ = kubectl_at(
        bin,
        kubeconfig,
        &["delete", "pod", &name, "--wait=false"],
        None,
    )
    .await;

    // port-forward to a random local port, two connections through it.
    let mut pf = tokio::process::Command::new(bin)
        .env("KUBECONFIG", kubeconfig)
        .args(["port-forward", "pod/web", ":80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    let stdout = pf.stdout.take().unwrap();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            // "Forwarding from 127.0.0.1:PORT -> 80"
            if let Some(rest) = l.strip_prefix("Forwarding from 127.0.0.1:") {
                let port = rest.split(' ').next().unwrap_or("").to_string();
                assert!(l.ends_with("-> 80"), "{l}");
                // Keep draining so kubectl never blocks on its output.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return port;
            }
        }
        panic!("{bin} port-forward printed no Forwarding line");
    })
    .await
    .unwrap_or_else(|_| panic!("{bin} port-forward: no Forwarding line in time"));
    for _ in 0..2 {
        let page = tokio::process::Command::new("curl")
            .args(["-s", "-m", "10", &format!("http://127.0.0.1:{port}/")])
            .output()
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&page.stdout),
            "<html><body><h1>It works!</h1></body></html>\n",
            "{bin} port-forward: curl through 127.0.0.1:{port}"
        );
    }
    // Figures: a 32 MiB download through the forwarded port (many windows' worth), and
    // the latency of a trivial exec.
    let (code, out) = kubectl_at(
        bin,
        kubeconfig,
        &[
            "exec",
            "web",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/var/www/big",
            "bs=1048576",
            "count=32",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{bin} exec dd: {out}");
    let dl = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{speed_download}",
            &format!("http://127.0.0.1:{port}/big"),
        ])
        .output()
        .await
        .unwrap();
    let dl = String::from_utf8_lossy(&dl.stdout).to_string();
    let mut parts = dl.split(' ');
    let size: u64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let speed: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    assert_eq!(size, 32 << 20, "{bin} port-forward download: {dl}");
    pf.start_kill().unwrap();
    let _ = pf.wait().await;
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (code, _) = kubectl_at(bin, kubeconfig, &["exec", "web", "--", "true"], None).await;
        assert_eq!(code, Some(0));
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "{bin}: port-forward download {:.1} MiB/s; kubectl exec web -- true: median {:?} (min {:?}, max {:?}); all checks {:?}",
        speed / f64::from(1 << 20),
        lat[2],
        lat[0],
        lat[4],
        t.elapsed()
    );
}
