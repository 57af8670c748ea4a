//! Integration: what a pod sees. The server runs on port 53 inside a network namespace
//! this test creates, whose resolv.conf has the cluster search path (`ip netns exec`
//! bind-mounts /etc/netns/<name>/resolv.conf), and busybox `nslookup` and glibc
//! (`getent hosts`) resolve short names through it.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_dns::{Change, DnsConfig, DnsServer, Records};

/// Deletes the namespace and its /etc/netns directory, also when the test fails.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

fn run_in(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn service(ns: &str, name: &str, ip: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn busybox_and_glibc_resolve_short_names_in_a_namespace() {
    let ns = format!("skt-{}-dns", std::process::id());
    let created = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .expect("ip");
    assert!(created.success(), "ip netns add {ns}");
    let _guard = NetnsGuard(ns.clone());
    std::fs::create_dir_all(format!("/etc/netns/{ns}")).expect("mkdir");
    std::fs::write(
        format!("/etc/netns/{ns}/resolv.conf"),
        "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .expect("resolv.conf");
    run_in(&ns, &["ip", "link", "set", "lo", "up"]);

    // The server's sockets are created by a thread that entered the namespace.
    let records = Arc::new(Records::new("cluster.local"));
    records.apply(Change::ServicesReplaced(vec![
        service("default", "httpd-svc", "10.110.212.171"),
        service("other", "db", "10.96.7.7"),
    ]));
    let ns_path = format!("/var/run/netns/{ns}");
    let feed = records.clone();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns_path).expect("netns file");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let cfg = DnsConfig {
                listen: "127.0.0.1:53".parse().expect("addr"),
                upstreams: vec!["127.0.0.1:9".parse().expect("addr")],
                ..DnsConfig::default()
            };
            let server = DnsServer::bind(&cfg, feed).await.expect("bind in netns");
            let _ = server.serve().await;
        });
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run_in(&ns, &["getent", "hosts", "httpd-svc"]);
        if out.contains("10.110.212.171") {
            break;
        }
        assert!(Instant::now() < deadline, "server never answered in {ns}");
        std::thread::yield_now();
    }
    // libc: a name with a namespace, through the search path (ndots:5).
    let out = run_in(&ns, &["getent", "hosts", "db.other"]);
    assert!(
        out.contains("10.96.7.7 ") && out.contains("db.other.svc.cluster.local"),
        "{out}"
    );
    // busybox nslookup, as the acceptance walkthrough runs it.
    let out = run_in(&ns, &["/bin/busybox", "nslookup", "httpd-svc"]);
    assert!(
        out.contains("Name:\thttpd-svc.default.svc.cluster.local")
            && out.contains("Address: 10.110.212.171"),
        "{out}"
    );
}
