//! Pod routes over rtnetlink against the real API server (needs root): in a network
//! namespace the test creates, Nodes with pod CIDRs and InternalIPs give routes via
//! those IPs; a changed address moves the route, a deleted Node takes it away, and a
//! route of anybody else's is left alone.

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_agent::podroutes;

/// Deletes the test's namespace (and with it every link and route in it).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn poll(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node(name: &str, cidr: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    }))
    .unwrap()
}

async fn set_ip(nodes: &Api<Node>, name: &str, addr: &str) {
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": addr},
                {"type": "Hostname", "address": name},
            ]}})),
        )
        .await
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn routes_follow_the_nodes() {
    let ns = format!("skr-{}", std::process::id());
    let _guard = NetnsGuard(ns.clone());
    ip(&format!("netns add {ns}"));
    // Only this test's thread (and the runtime threads it starts) move into the
    // namespace; `ip` commands it runs inherit it.
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    ip("link set lo up");
    // A veth pair (this kernel has no dummy links); routes need eth0 up.
    ip("link add eth0 type veth peer name eth0p");
    ip("link set eth0p up");
    ip("addr add 10.252.0.2/24 dev eth0");
    ip("link set eth0 up");
    // Somebody else's route in the same range of addresses.
    ip("route add 10.252.9.0/24 via 10.252.0.9");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
            data_dir: data.path().join("server"),
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise_address: Some("10.252.0.2".parse().unwrap()),
            ..Default::default()
        })
        .await
        .expect("API server");
        let admin = Client::try_from(server.admin_client_config()).unwrap();
        let nodes: Api<Node> = Api::all(admin.clone());
        for (name, cidr, addr) in [
            ("own", "10.252.1.0/24", "10.252.0.2"),
            ("n1", "10.252.2.0/24", "10.252.0.3"),
            ("n2", "10.252.3.0/24", "10.252.0.4"),
        ] {
            nodes
                .create(&PostParams::default(), &node(name, cidr))
                .await
                .unwrap();
            set_ip(&nodes, name, addr).await;
        }
        let routes = tokio::spawn(podroutes::run(admin.clone(), "own".into()));
        // skiff's routes, one "DST via GW dev IF" line each.
        let show = || {
            ip("-4 route show proto 83")
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        };

        poll("routes to n1 and n2", || {
            show()
                == [
                    "10.252.2.0/24 via 10.252.0.3 dev eth0",
                    "10.252.3.0/24 via 10.252.0.4 dev eth0",
                ]
        })
        .await;

        set_ip(&nodes, "n1", "10.252.0.13").await;
        poll("the route to n1 via its new address", || {
            show().contains(&"10.252.2.0/24 via 10.252.0.13 dev eth0".to_string())
        })
        .await;

        nodes.delete("n2", &DeleteParams::default()).await.unwrap();
        poll("the route to n2 gone", || {
            show() == ["10.252.2.0/24 via 10.252.0.13 dev eth0"]
        })
        .await;
        assert!(
            ip("-4 route show 10.252.9.0/24").contains("via 10.252.0.9"),
            "somebody else's route was touched"
        );

        // A restarted agent takes its routes back and drops those of Nodes deleted
        // meanwhile.
        routes.abort();
        let _ = routes.await;
        nodes.delete("n1", &DeleteParams::default()).await.unwrap();
        let routes = tokio::spawn(podroutes::run(admin.clone(), "own".into()));
        poll("the route to n1 gone after a restart", || show().is_empty()).await;
        routes.abort();
        drop(server);
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}
