//! The container runtime (`skiff_agent::containers`) end to end, without an API server
//! (needs root): a "node" netns made by the test, the built-in images, a pod netns wired
//! by the real CNI plugins, containers under each runtime (youki's libcontainer in the
//! runtime service, and the real runc), logs, exec (with and without a terminal), stdin,
//! attach, exit codes, the OOM killer's `OOMKilled`, and cleanup of everything.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_agent::containers::cni::Cni;
use skiff_agent::containers::container::{self, Container, ContainerSpec};
use skiff_agent::containers::crilog;
use skiff_agent::containers::images::{ImageStore, HTTPD_PAGE};
use skiff_agent::containers::oci::ContainerConfig;
use skiff_agent::containers::runtime::{Runtime, RuntimeKind};
use skiff_agent::containers::{exec, netns};
use skiff_agent::streaming::server::{router, Streams};

/// The streaming endpoint's view for this test: one pod "ns/pod1" with container "web".
struct OnePod {
    web: Arc<Container>,
    runtime: Runtime,
}

impl Streams for OnePod {
    fn container(&self, _: &str, _: &str, c: &str) -> Option<Arc<Container>> {
        (c == "web").then(|| self.web.clone())
    }
    fn logs(&self, _: &str, _: &str, _: &str) -> Vec<PathBuf> {
        vec![self.web.log_path.clone()]
    }
    fn containers(&self, _: &str, pod: &str) -> Option<Vec<String>> {
        (pod == "pod1").then(|| vec!["web".to_string()])
    }
    fn pod_ip(&self, _: &str, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

/// Runs a command through the WebSocket exec handler; returns (stdout, status JSON,
/// close code).
async fn ws_exec(port: u16, query: &str, stdin: Option<&[u8]>) -> (Vec<u8>, String, Option<u16>) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = format!("ws://127.0.0.1:{port}/exec/ns/pod1/web?{query}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    req.headers_mut()
        .insert("Authorization", "Bearer secret".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    if let Some(data) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(data);
        ws.send(Message::Binary(frame.into())).await.unwrap();
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let (mut out, mut status, mut code) = (Vec::new(), String::new(), None);
    while let Some(msg) = ws.next().await {
        match msg.unwrap() {
            Message::Binary(b) if b.first() == Some(&1) => out.extend_from_slice(&b[1..]),
            Message::Binary(b) if b.first() == Some(&3) => {
                status.push_str(&String::from_utf8_lossy(&b[1..]))
            }
            Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (out, status, code)
}

/// Runs a command through the WebSocket exec handler as the Python `kubernetes` client
/// does: `v4.channel.k8s.io`, stdin in *text* frames (channel byte then the text);
/// returns stdout.
async fn ws_exec_text_stdin(port: u16, query: &str, stdin: &str) -> Vec<u8> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = format!("ws://127.0.0.1:{port}/exec/ns/pod1/web?{query}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    req.headers_mut()
        .insert("Authorization", "Bearer secret".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    ws.send(Message::Text(format!("\u{0}{stdin}").into()))
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Binary(b) if b.first() == Some(&1) => out.extend_from_slice(&b[1..]),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("exec with text-frame stdin ends");
    out
}

/// Removes everything the test made, also when it fails.
struct Cleanup {
    prefix: String,
    runtime: Runtime,
    ids: Vec<String>,
    bundles: Vec<PathBuf>,
    cgroup: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            for id in &self.ids {
                let _ = rt.block_on(self.runtime.delete(self.runtime.kind, id));
            }
        }
        for b in &self.bundles {
            let _ = container::unmount_rootfs(b);
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
                .join(self.cgroup.trim_start_matches('/'));
            // Children first: rmdir only removes empty cgroups.
            if let Ok(rd) = std::fs::read_dir(&base) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&base);
            if let Some(parent) = base.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .expect("run command");
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// Runs a command in the container to its end: its stdout and exit code.
async fn exec_output(runtime: &Runtime, ctr: &Container, args: &[&str]) -> (String, i32) {
    use tokio::io::AsyncReadExt;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut e = exec::spawn(runtime, ctr, &args, false).await.expect("exec");
    let mut out = Vec::new();
    e.stdout.read_to_end(&mut out).await.unwrap();
    let code = exec::wait_or_kill(e.pid).await;
    (String::from_utf8_lossy(&out).into_owned(), code)
}

/// This process's children that are zombies.
fn zombies() -> Vec<String> {
    let mut found = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            {
                found.push(stat);
            }
        }
    }
    found
}

fn config(args: &[&str], netns: &Path, cgroup: &str) -> ContainerConfig {
    ContainerConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        hostname: Some("pod1".into()),
        netns: Some(netns.to_path_buf()),
        cgroups_path: cgroup.into(),
        ..Default::default()
    }
}

#[test]
#[ignore = "needs root"]
fn runtime_end_to_end() {
    end_to_end(RuntimeKind::Youki);
}

#[test]
#[ignore = "needs root"]
fn runtime_end_to_end_runc() {
    end_to_end(RuntimeKind::Runc);
}

fn end_to_end(kind: RuntimeKind) {
    let pid = std::process::id();
    let prefix = format!("skt-{pid}-{kind}-");
    let data = tempfile::tempdir().expect("tempdir");
    let runc = Runtime::new(
        kind,
        data.path(),
        env!("CARGO_BIN_EXE_skiff-runtime-service").into(),
    );
    let cgroup_base = format!("/skiff/skt-{pid}-{kind}");
    let mut cleanup = Cleanup {
        prefix: prefix.clone(),
        runtime: runc.clone(),
        ids: vec![],
        bundles: vec![],
        cgroup: cgroup_base.clone(),
    };

    // The "node": this thread (and so every thread and process it starts) moves into a
    // netns of its own.
    let node = format!("{prefix}node");
    assert!(Command::new("ip")
        .args(["netns", "add", &node])
        .status()
        .unwrap()
        .success());
    let f = std::fs::File::open(netns::path(&node)).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    run(&["ip", "link", "set", "lo", "up"]);
    container::become_subreaper().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let store = ImageStore::new(data.path(), Path::new("/bin/busybox"));
            let httpd = store.resolve("httpd:2.4").unwrap().expect("built-in httpd");
            let busybox = store.resolve("busybox").unwrap().expect("built-in busybox");

            let cni = Cni {
                bin_dir: "/usr/lib/cni".into(),
                state_dir: data.path().join("cni"),
                pod_cidr: "10.250.7.0/24".into(),
                network: skiff_agent::Network::default(),
            };
            cni.write_config().unwrap();
            let pod_ns = netns::create(&format!("{prefix}pod1")).await.unwrap();
            let ip: Ipv4Addr = cni.add("pod1", &pod_ns, &[]).await.expect("CNI ADD");
            assert!(ip.to_string().starts_with("10.250.7."), "{ip}");

            // httpd answers from the node.
            let bundle = data.path().join("pods/pod1/web");
            cleanup.ids.push("skt-web".into());
            cleanup.bundles.push(bundle.clone());
            let log_path = data.path().join("pods/pod1/logs/web/0.log");
            let web = Container::start(
                &runc,
                ContainerSpec {
                    id: "skt-web".into(),
                    bundle: bundle.clone(),
                    lower: httpd.lowers.clone(),
                    image_id: String::new(),
                    config: config(
                        &httpd
                            .config
                            .cmd
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                        &pod_ns,
                        &format!("{cgroup_base}/pod1/web"),
                    ),
                    log_path: log_path.clone(),
                    stdin: false,
                    stdin_once: false,
                    tty: false,
                },
            )
            .await
            .expect("start httpd");
            let url = format!("http://{ip}/");
            let page = poll("httpd to answer", Duration::from_secs(10), async || {
                let out = tokio::process::Command::new("curl")
                    .args(["-s", "-m", "2", &url])
                    .output()
                    .await
                    .ok()?;
                (out.status.success() && !out.stdout.is_empty())
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .await;
            assert_eq!(page, HTTPD_PAGE);
            // The container's init is this process's child (not the runtime service's,
            // not runc's): its exit status is ours to collect.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", web.pid)).unwrap();
            let ppid: u32 = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(ppid, std::process::id(), "{stat}");
            if kind == RuntimeKind::Youki {
                // A runtime service that dies is replaced at the next request; the
                // containers do not notice.
                let services = runc.youki.pids();
                assert!(!services.is_empty());
                for pid in services {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                    .unwrap();
                }
                // SIGKILL is delivered asynchronously: a request sent before the
                // service has died would be lost with it. Wait until each is a zombie.
                for pid in runc.youki.pids() {
                    poll(
                        "the killed runtime service to die",
                        Duration::from_secs(10),
                        async || {
                            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                                .unwrap_or_default();
                            stat.rsplit_once(')')
                                .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
                                .then_some(())
                        },
                    )
                    .await;
                }
                let (out, code) = exec_output(&runc, &web, &["echo", "again"]).await;
                assert_eq!((out.as_str(), code), ("again\n", 0));
                assert!(web.exit().is_none());
            }
            // exec echo hi.
            let (out, code) = exec_output(&runc, &web, &["echo", "hi"]).await;
            assert_eq!((out.as_str(), code), ("hi\n", 0));
            let (_, code) = exec_output(&runc, &web, &["sh", "-c", "exit 4"]).await;
            assert_eq!(code, 4);
            // stdin and stderr of a plain exec.
            let mut e = exec::spawn(
                &runc,
                &web,
                &["sh".into(), "-c".into(), "cat >&2".into()],
                true,
            )
            .await
            .unwrap();
            {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut w = e.stdin.take().unwrap();
                w.write_all(b"to stderr").await.unwrap();
                drop(w);
                let mut err = Vec::new();
                e.stderr.read_to_end(&mut err).await.unwrap();
                assert_eq!(err, b"to stderr");
            }
            assert_eq!(exec::wait_or_kill(e.pid).await, 0);
            // exec with a terminal: the command sees a pty of the size asked for.
            let tty = exec::spawn_tty_sized(
                &runc,
                &web,
                &["sh".into(), "-c".into(), "tty; stty size".into()],
                Some((100, 30)),
            )
            .await
            .expect("exec -t");
            let exec::TtyExec { pid, master, .. } = tty;
            let reader = tokio::net::unix::pipe::Receiver::from_file_unchecked(master).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                reader.readable().await.unwrap();
                match reader.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
            }
            assert!(
                String::from_utf8_lossy(&got).contains("/dev/pts/")
                    && String::from_utf8_lossy(&got).contains("30 100"),
                "{}",
                String::from_utf8_lossy(&got)
            );
            assert_eq!(exec::TtyExec::wait(pid).await, 0);

            // The WebSocket exec handler (v5.channel.k8s.io), with and without a
            // terminal, with stdin, and its exit statuses.
            let app = router(
                Arc::new(OnePod {
                    web: web.clone(),
                    runtime: runc.clone(),
                }),
                "secret".into(),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let (out, status, code) = ws_exec(
                port,
                "command=echo&command=hi&stdout=true&stderr=true",
                None,
            )
            .await;
            assert_eq!(
                (out.as_slice(), status.as_str(), code),
                (
                    &b"hi\n"[..],
                    r#"{"metadata":{},"status":"Success"}"#,
                    Some(1000)
                )
            );
            let (out, status, _) =
                ws_exec(port, "command=cat&stdin=true&stdout=true", Some(b"piped")).await;
            assert_eq!(out, b"piped");
            assert!(status.contains("Success"));
            // Stdin in text frames (the Python client's), as kubelet accepts it.
            let out = ws_exec_text_stdin(
                port,
                "command=head&command=-n1&stdin=true&stdout=true",
                "from text frames\n",
            )
            .await;
            assert_eq!(String::from_utf8_lossy(&out), "from text frames\n");
            let (_, status, _) = ws_exec(
                port,
                "command=sh&command=-c&command=exit%205&stdout=true",
                None,
            )
            .await;
            assert!(
                status.contains("NonZeroExitCode") && status.contains(r#""message":"5""#),
                "{status}"
            );
            let (out, status, code) = ws_exec(port, "command=tty&stdout=true&tty=true", None).await;
            assert!(
                String::from_utf8_lossy(&out).contains("/dev/pts/"),
                "{}",
                String::from_utf8_lossy(&out)
            );
            assert!(status.contains("Success"), "{status}");
            assert_eq!(code, Some(1000));

            // A second container in the same pod netns reaches httpd over loopback; its
            // stdin is ours; its output is logged and attached; its exit code is seen.
            let sh_bundle = data.path().join("pods/pod1/sh");
            cleanup.ids.push("skt-sh".into());
            cleanup.bundles.push(sh_bundle.clone());
            let sh_log = data.path().join("pods/pod1/logs/sh/0.log");
            let sh = Container::start(
                &runc,
                ContainerSpec {
                    id: "skt-sh".into(),
                    bundle: sh_bundle,
                    lower: busybox.lowers.clone(),
                    image_id: String::new(),
                    config: config(&["sh"], &pod_ns, &format!("{cgroup_base}/pod1/sh")),
                    log_path: sh_log.clone(),
                    stdin: true,
                    stdin_once: true,
                    tty: false,
                },
            )
            .await
            .expect("start sh");
            let (_, mut live) = sh.attach(false);
            sh.write_stdin(b"wget -qO- http://127.0.0.1/; echo done >&2; exit 3\n")
                .await
                .unwrap();
            let exit = sh.wait().await;
            assert_eq!(exit.code, 3);
            assert_eq!(exit.reason(), "Error");
            let mut got = Vec::new();
            while let Ok((_, chunk)) = live.try_recv() {
                got.extend_from_slice(&chunk);
            }
            let got = String::from_utf8_lossy(&got);
            assert!(got.contains("It works!") && got.contains("done"), "{got}");
            let (rendered, _) =
                crilog::render(&std::fs::read(&sh_log).unwrap(), &Default::default());
            let rendered = String::from_utf8_lossy(&rendered);
            assert!(rendered.contains(HTTPD_PAGE.trim()), "{rendered}");
            assert!(!container::is_mountpoint(
                &data.path().join("pods/pod1/sh/rootfs")
            ));

            // The built-in skiff image holds a dynamically linked binary with its
            // libraries (this test binary stands in for skiff).
            let me = std::env::current_exe().unwrap();
            let skiff = ImageStore::new(data.path(), &me)
                .resolve("skiff")
                .unwrap()
                .expect("built-in skiff");
            let sk_bundle = data.path().join("pods/pod1/sk");
            cleanup.ids.push("skt-sk".into());
            cleanup.bundles.push(sk_bundle.clone());
            let sk = Container::start(
                &runc,
                ContainerSpec {
                    id: "skt-sk".into(),
                    bundle: sk_bundle,
                    lower: skiff.lowers.clone(),
                    image_id: String::new(),
                    config: config(
                        &["/usr/local/bin/skiff", "--list"],
                        &pod_ns,
                        &format!("{cgroup_base}/pod1/sk"),
                    ),
                    log_path: data.path().join("pods/pod1/logs/sk/0.log"),
                    stdin: false,
                    stdin_once: false,
                    tty: false,
                },
            )
            .await
            .expect("start the skiff image");
            let exit = sk.wait().await;
            let (out, _) =
                crilog::render(&std::fs::read(&sk.log_path).unwrap(), &Default::default());
            let out = String::from_utf8_lossy(&out);
            assert_eq!(exit.code, 0, "{out}");
            assert!(out.contains("runtime_end_to_end"), "{out}");

            // A container over its memory limit is killed by the OOM killer: OOMKilled.
            let oom_bundle = data.path().join("pods/pod1/oom");
            cleanup.ids.push("skt-oom".into());
            cleanup.bundles.push(oom_bundle.clone());
            let mut oom_config = config(
                &[
                    "sh",
                    "-c",
                    "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
                ],
                &pod_ns,
                &format!("{cgroup_base}/pod1/oom"),
            );
            oom_config.memory_limit = Some(16 << 20);
            let oom = Container::start(
                &runc,
                ContainerSpec {
                    id: "skt-oom".into(),
                    bundle: oom_bundle,
                    lower: busybox.lowers.clone(),
                    image_id: String::new(),
                    config: oom_config,
                    log_path: data.path().join("pods/pod1/logs/oom/0.log"),
                    stdin: false,
                    stdin_once: false,
                    tty: false,
                },
            )
            .await
            .expect("start the memory hog");
            let exit = oom.wait().await;
            assert_eq!(exit.reason(), "OOMKilled", "{exit:?}");
            assert_ne!(exit.code, 0);

            // A container with a terminal: its output comes through the pty, its stdin
            // is the terminal's.
            let tty_bundle = data.path().join("pods/pod1/tty");
            cleanup.ids.push("skt-tty".into());
            cleanup.bundles.push(tty_bundle.clone());
            let tty_ctr = Container::start(
                &runc,
                ContainerSpec {
                    id: "skt-tty".into(),
                    bundle: tty_bundle,
                    lower: busybox.lowers.clone(),
                    image_id: String::new(),
                    config: ContainerConfig {
                        terminal: true,
                        ..config(
                            &[
                                "sh",
                                "-c",
                                "read line; echo \"got $line on $(tty)\"; exit 7",
                            ],
                            &pod_ns,
                            &format!("{cgroup_base}/pod1/tty"),
                        )
                    },
                    log_path: data.path().join("pods/pod1/logs/tty/0.log"),
                    stdin: true,
                    stdin_once: false,
                    tty: true,
                },
            )
            .await
            .expect("start a container with a terminal");
            assert!(tty_ctr.tty);
            tty_ctr.write_stdin(b"hello\n").await.unwrap();
            let exit = tty_ctr.wait().await;
            assert_eq!(exit.code, 7);
            let (rendered, _) = crilog::render(
                &std::fs::read(&tty_ctr.log_path).unwrap(),
                &Default::default(),
            );
            let rendered = String::from_utf8_lossy(&rendered);
            assert!(rendered.contains("got hello on /dev/pts/"), "{rendered}");

            // SIGTERM ends httpd at once, as Apache's image does.
            runc.kill(web.runtime, "skt-web", "TERM").await.unwrap();
            assert_eq!(web.runtime, kind);
            let exit = web.wait().await;
            assert_eq!(exit.code, 0);
            assert_eq!(exit.reason(), "Completed");
            assert!(!container::is_mountpoint(&bundle.join("rootfs")));
            assert!(!runc.list().await.contains(&(kind, "skt-web".to_string())));
            // No zombie is left: libcontainer's intermediate processes were collected.
            assert!(zombies().is_empty(), "zombie children: {:?}", zombies());

            cni.del("pod1", &pod_ns).await.expect("CNI DEL");
            netns::delete(&format!("{prefix}pod1")).await.unwrap();
            assert!(!netns::path(&format!("{prefix}pod1")).exists());
        })
        .await
    });
    assert!(result.is_ok(), "the test timed out");
    drop(cleanup);
    assert!(netns::list(&prefix).is_empty());
}
