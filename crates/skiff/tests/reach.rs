//! A cluster the host reaches and whose pods reach out (issue 18), end to end: node IPs,
//! node ports and LoadBalancer IPs from the host, `--port` on the host's loopback (also
//! over nodes added later), a pod resolving a name and fetching a page from "the
//! outside", two clusters side by side on different LANs, `down` leaving the host's
//! network as it found it, an `--isolated` cluster adding nothing to it, and a real
//! browser (headless Chromium) opening the seed's node port. Needs root, and chromium
//! for the last.
//!
//! Nothing leaves the machine: "the outside" is a network namespace the test makes and
//! the host routes to, at TEST-NET-2 addresses (198.51.100.0/24), holding an HTTP server
//! and `dnsmasq` as the upstream DNS server (the cluster is told to use it with `skiff up
//! --resolv-conf`, as a user points k3s at another resolver).
//!
//! The tests here change the host's network, and one compares it before and after: they
//! run one at a time ([`HOST`]).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{assert_tools, text, wait_for, Cluster, PAGE};
use skiff_testkit::hostnet;

/// Held by each test: they add links, routes and rules to the host.
static HOST: Mutex<()> = Mutex::new(());

/// The outside's address, where its HTTP and DNS servers listen.
const OUTSIDE_IP: &str = "198.51.100.2";
/// The host's address on the outside's link.
const OUTSIDE_GW: &str = "198.51.100.1";
/// The name the outside's DNS server answers with [`OUTSIDE_IP`].
const OUTSIDE_NAME: &str = "web.outside.test";
/// What the outside's HTTP server serves.
const OUTSIDE_PAGE: &str = "hello from the outside";

/// Runs a command; its output.
fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Runs a command that must succeed; its stdout.
#[track_caller]
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test's "outside world": a namespace linked to the host at 198.51.100.0/24 with an
/// HTTP server and dnsmasq, removed on drop.
struct Outside {
    ns: String,
    link: String,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Outside {
    fn start() -> Outside {
        let id = std::process::id();
        let ns = format!("reach-out-{id}");
        let link = format!("rch{}", id % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let mut outside = Outside {
            ns: ns.clone(),
            link: link.clone(),
            servers: Vec::new(),
            dir,
        };
        ok("ip", &["netns", "add", &ns]);
        ok(
            "ip",
            &[
                "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        ok(
            "ip",
            &["addr", "add", &format!("{OUTSIDE_GW}/24"), "dev", &link],
        );
        ok("ip", &["link", "set", &link, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns];
            all.extend_from_slice(args);
            ok("ip", &all)
        };
        exec(&[
            "ip",
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            "eth0",
        ]);
        exec(&["ip", "link", "set", "eth0", "up"]);
        exec(&["ip", "link", "set", "lo", "up"]);

        let www = outside.dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("index.html"), OUTSIDE_PAGE).unwrap();
        let spawn = |args: &[&str]| {
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting a server of the outside")
        };
        let www = www.to_str().unwrap().to_string();
        outside.servers.push(spawn(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            &format!("{OUTSIDE_IP}:80"),
            "-h",
            &www,
        ]));
        outside.servers.push(spawn(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={OUTSIDE_IP}"),
            &format!("--address=/{OUTSIDE_NAME}/{OUTSIDE_IP}"),
            // Authoritative for the test's domain: no REFUSED for AAAA queries.
            "--local=/outside.test/",
            "--pid-file=",
            "--user=root",
        ]));
        wait_for("the outside's servers", Duration::from_secs(10), || {
            let dns = run(
                "dig",
                &[
                    "+short",
                    "+time=1",
                    "+tries=1",
                    &format!("@{OUTSIDE_IP}"),
                    OUTSIDE_NAME,
                ],
            );
            let web = run("curl", &["-s", "-m", "2", &format!("http://{OUTSIDE_IP}/")]);
            String::from_utf8_lossy(&dns.stdout).trim() == OUTSIDE_IP
                && String::from_utf8_lossy(&web.stdout) == OUTSIDE_PAGE
        });
        outside
    }

    /// A resolv.conf naming the outside's DNS server.
    fn resolv_conf(&self) -> PathBuf {
        let path = self.dir.path().join("resolv.conf");
        std::fs::write(&path, format!("nameserver {OUTSIDE_IP}\n")).unwrap();
        path
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = run("ip", &["link", "del", &self.link]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

/// A free port on the host's loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster's node IPs, from its state.
fn node_ips(c: &Cluster) -> Vec<String> {
    c.state()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ip"].as_str().unwrap().to_string())
        .collect()
}

/// Applies the seed's Deployment and NodePort Service (the project's `examples/`).
fn apply_seed(c: &Cluster) {
    for f in ["Httpd-Deployment.yaml", "Httpd-Service-NodePort.yaml"] {
        c.ok(&["apply", "-f", example(f).to_str().unwrap()]);
    }
}

/// A manifest of the project's `examples/seed`.
fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(file)
}

/// What `curl` gets from `url` (empty on failure).
fn curl(url: &str) -> String {
    String::from_utf8_lossy(&run("curl", &["-s", "-m", "3", url]).stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn the_host_reaches_the_cluster_and_pods_reach_the_outside() {
    let _host = HOST.lock().unwrap_or_else(|e| e.into_inner());
    assert_tools();
    let outside = Outside::start();
    let before = hostnet::snapshot();

    let port = free_port();
    let resolv = outside.resolv_conf();
    let port_arg = format!("{port}:31688");
    {
        let a = Cluster::up(
            "reach",
            3,
            &[
                "--resolv-conf",
                resolv.to_str().unwrap(),
                "--port",
                &port_arg,
            ],
        );
        // `up` kept its phases, with their durations, in the cluster's log.
        let up_log = std::fs::read_to_string(a.dir().join("up.log")).expect("up.log");
        assert!(up_log.contains(" ✓ Starting the nodes ("), "{up_log}");
        // A second cluster at the same time, its rules in an nft table of its own.
        let b = Cluster::up("reachb", 1, &["--host-firewall", "nftables"]);
        let (lan_a, lan_b) = (a.state()["lan"].clone(), b.state()["lan"].clone());
        assert_ne!(lan_a, lan_b, "two clusters share a LAN");
        for c in [&a, &b] {
            let ls = ok(env!("CARGO_BIN_EXE_skiff"), &["ls"]);
            let line = ls
                .lines()
                .find(|l| l.starts_with(&c.name))
                .unwrap_or_default();
            assert!(line.contains(" running "), "skiff ls: {ls}");
            assert!(line.contains(c.state()["lan"].as_str().unwrap()), "{ls}");
        }
        // Node IPs answer from the host: the API server on b's only node.
        let b_ip = &node_ips(&b)[0];
        let api = run(
            "curl",
            &["-sk", "-m", "3", &format!("https://{b_ip}:6443/livez")],
        );
        assert_eq!(String::from_utf8_lossy(&api.stdout), "ok", "{}", text(&api));
        drop(b);

        apply_seed(&a);
        // Every node's port 31688, from the host, and the host's loopback port.
        for ip in node_ips(&a) {
            let url = format!("http://{ip}:31688/");
            wait_for(
                &format!("{url} from the host"),
                Duration::from_secs(90),
                || curl(&url).trim() == PAGE,
            );
        }
        let url = format!("http://127.0.0.1:{port}/");
        wait_for(&format!("{url} (--port)"), Duration::from_secs(10), || {
            curl(&url).trim() == PAGE
        });

        // A LoadBalancer Service: its ingress IPs answer on its port from the host.
        a.ok(&[
            "expose",
            "deployment",
            "httpd",
            "--name",
            "httpd-lb",
            "--type",
            "LoadBalancer",
            "--port",
            "8081",
            "--target-port",
            "80",
        ]);
        let mut ingress = Vec::new();
        wait_for("httpd-lb's ingress", Duration::from_secs(30), || {
            let ips = a.ok_quiet(&[
                "get",
                "svc",
                "httpd-lb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ]);
            ingress = ips.split_whitespace().map(String::from).collect();
            !ingress.is_empty()
        });
        for ip in &ingress {
            let url = format!("http://{ip}:8081/");
            wait_for(
                &format!("{url} from the host"),
                Duration::from_secs(30),
                || curl(&url).trim() == PAGE,
            );
        }

        // A node added later joins the `--port` forwarder's targets.
        let out = a.skiff(&["up", "--nodes", "4"]);
        assert!(out.status.success(), "growing: {}", text(&out));
        let fourth = node_ips(&a)[3].clone();
        let forwarder = a.state()["extra"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["role"] == "port")
            .cloned()
            .expect("the --port forwarder");
        let args = forwarder["args"].to_string();
        assert!(args.contains(&format!("{fourth}:31688")), "{args}");
        wait_for(
            &format!("{url} (--port, after growing)"),
            Duration::from_secs(10),
            || curl(&url).trim() == PAGE,
        );

        // A pod resolves the outside's name (cluster DNS forwards to the outside's
        // dnsmasq through the node's and the host's NAT) and fetches its page.
        let script = format!(
            "nslookup {OUTSIDE_NAME}; wget -qO- http://{OUTSIDE_NAME}/; echo; wget -qO- http://{OUTSIDE_IP}/"
        );
        let mut last = String::new();
        let fetched = (0..3).any(|i| {
            let pod = format!("outbound{i}");
            let out = a.kubectl(&[
                "run",
                &pod,
                "-i",
                "--rm",
                "--image=busybox",
                "--restart=Never",
                "--",
                "sh",
                "-c",
                &script,
            ]);
            last = out.describe();
            let _ = a.kubectl(&["delete", "pod", &pod, "--ignore-not-found"]);
            out.stdout.contains(OUTSIDE_IP) && out.stdout.matches(OUTSIDE_PAGE).count() == 2
        });
        assert!(fetched, "a pod cannot reach the outside: {last}");
    }
    // Both clusters are down: the host is as it was.
    let after = hostnet::snapshot();
    hostnet::assert_unchanged(&before, &after, "up and down");
    drop(outside);
}

#[test]
#[ignore = "needs root"]
fn bad_host_options_are_refused_and_leave_nothing() {
    let _host = HOST.lock().unwrap_or_else(|e| e.into_inner());
    assert_tools();
    let before = hostnet::snapshot();
    let bin = env!("CARGO_BIN_EXE_skiff");
    let name = format!("reachbad{}", std::process::id());
    let refuse = |args: &[&str], want: &str| {
        let out = Command::new(bin)
            .args(["up", "--cluster", &name])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    // The host's own LAN (the default route's) is taken.
    let host_route = ok("ip", &["-4", "route", "show", "scope", "link"]);
    if let Some(net) = host_route
        .split_whitespace()
        .next()
        .filter(|n| n.contains('/'))
    {
        refuse(
            &["--subnet", net],
            "which the host routes or holds an address in",
        );
    }
    refuse(&["--subnet", "10.9.0.5/24"], "did you mean 10.9.0.0/24");
    refuse(&["--subnet", "10.9.0.0/30", "--nodes", "3"], "too small");
    refuse(&["--port", "8080:80"], "outside the node port range");
    refuse(&["--port", "8080"], "is not HOST:NODEPORT");
    assert!(!Path::new("/var/lib/skiff/clusters").join(&name).exists());
    hostnet::assert_unchanged(&before, &hostnet::snapshot(), "refused options");
}

#[test]
#[ignore = "needs root"]
fn a_browser_on_the_host_opens_the_node_port() {
    let _host = HOST.lock().unwrap_or_else(|e| e.into_inner());
    assert_tools();
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            run("sh", &["-c", &format!("command -v {c}")])
                .status
                .success()
        })
        .expect("chromium is missing (scripts/install-deps.sh installs it)");
    let c = Cluster::up("browse", 2, &[]);
    apply_seed(&c);
    let ip = node_ips(&c)[1].clone();
    let url = format!("http://{ip}:31688/");
    wait_for(&url, Duration::from_secs(90), || curl(&url).trim() == PAGE);

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("browser-node-port.png");
    let _ = std::fs::remove_file(&shot);
    let browse = |extra: &str| {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=800,600",
                &format!("--user-data-dir={}", profile.path().display()),
                extra,
                &url,
            ])
            .output()
            .expect("running chromium");
        assert!(out.status.success(), "chromium {extra}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browse("--dump-dom");
    assert!(
        dom.contains("<h1>It works!</h1>"),
        "the page chromium rendered from {url}: {dom}"
    );
    browse(&format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", shot.display());
}

#[test]
#[ignore = "needs root"]
fn an_isolated_cluster_adds_nothing_to_the_host() {
    let _host = HOST.lock().unwrap_or_else(|e| e.into_inner());
    assert_tools();
    let before = hostnet::snapshot();
    let port = free_port();
    let port_arg = format!("{port}:31688");
    {
        let c = Cluster::up("iso", 2, &["--isolated", "--port", &port_arg]);
        // Up and running, the host's network is as it was: no link, route, address,
        // rule or forwarding setting.
        hostnet::assert_unchanged(&before, &hostnet::snapshot(), "an --isolated cluster");
        assert!(c.state()["host"].is_null(), "{}", c.state());
        let ls = ok(env!("CARGO_BIN_EXE_skiff"), &["ls"]);
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(c.name.as_str()))
            .unwrap_or_else(|| panic!("{} not in `skiff ls`: {ls}", c.name));
        assert!(row.ends_with("<isolated>"), "{ls}");

        // Inside, the cluster works as any other: a node reaches the node port on the
        // other node's IP, and the API and `--port` are reached over the host's loopback
        // only.
        apply_seed(&c);
        let ips = node_ips(&c);
        let url = format!("http://{}:31688/", ips[1]);
        wait_for(&url, Duration::from_secs(90), || {
            let out = c.node_exec("k8s-m", &["curl", "-s", "-m", "3", &url]);
            String::from_utf8_lossy(&out.stdout).trim() == PAGE
        });
        let local = format!("http://127.0.0.1:{port}/");
        wait_for(&local, Duration::from_secs(30), || {
            curl(&local).trim() == PAGE
        });
    }
    hostnet::assert_unchanged(
        &before,
        &hostnet::snapshot(),
        "an --isolated cluster's down",
    );
}
