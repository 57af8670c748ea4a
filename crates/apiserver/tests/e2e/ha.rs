//! Two servers on one etcd datastore (Debian's `etcd`, started by the test): they share
//! the cluster's credentials, and cluster IPs and node ports stay unique when both
//! allocate at once.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_apiserver::{Server, ServerConfig, ServerHandle};
use skiff_testkit::etcd::EtcdCluster;

fn have_etcd() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn server(dir: &std::path::Path, datastore: &str, advertise: Ipv4Addr) -> ServerHandle {
    Server::start(ServerConfig {
        data_dir: dir.to_path_buf(),
        bind: (Ipv4Addr::LOCALHOST, 0).into(),
        advertise_address: Some(advertise),
        datastore: Some(datastore.to_string()),
        ..Default::default()
    })
    .await
    .expect("server starts")
}

fn svc(name: &str, node_port: Option<u16>) -> Service {
    let mut port = json!({"port": 80});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_credentials_and_allocate_uniquely() {
    assert!(
        have_etcd(),
        "etcd is missing (scripts/install-deps.sh installs it)"
    );
    let etcd = EtcdCluster::start(1).expect("etcd");
    let url = etcd.url("/ha-test");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = server(da.path(), &url, Ipv4Addr::new(127, 0, 0, 1)).await;
    let b = server(db.path(), &url, Ipv4Addr::new(127, 0, 0, 2)).await;

    // B took A's CA and admin identity from the datastore: A's credentials work on B.
    let mut on_b = a.admin_client_config();
    on_b.cluster_url = format!("https://127.0.0.1:{}", b.port()).parse().unwrap();
    let cb = Client::try_from(on_b).unwrap();
    let ca = Client::try_from(a.admin_client_config()).unwrap();
    cb.apiserver_version()
        .await
        .expect("A's admin certificate on B");

    // Both servers allocate at once.
    let (sa, sb): (Api<Service>, Api<Service>) = (
        Api::namespaced(ca.clone(), "default"),
        Api::namespaced(cb.clone(), "default"),
    );
    let mut tasks = Vec::new();
    for i in 0..30 {
        for (side, api) in [("a", sa.clone()), ("b", sb.clone())] {
            tasks.push(tokio::spawn(async move {
                api.create(&PostParams::default(), &svc(&format!("{side}-{i}"), None))
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().expect("create");
    }
    let all = sa.list(&ListParams::default()).await.unwrap().items;
    let mine: Vec<&Service> = all
        .iter()
        .filter(|s| s.metadata.name.as_deref() != Some("kubernetes"))
        .collect();
    assert_eq!(mine.len(), 60);
    let ips: HashSet<_> = mine
        .iter()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    let ports: HashSet<_> = mine
        .iter()
        .map(|s| {
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
                .node_port
                .unwrap()
        })
        .collect();
    assert_eq!(ips.len(), 60, "a cluster IP was handed out twice");
    assert_eq!(ports.len(), 60, "a node port was handed out twice");

    // The same port asked of both at once: exactly one gets it.
    let pp = PostParams::default();
    let (want_a, want_b) = (svc("want-a", Some(30050)), svc("want-b", Some(30050)));
    let (ra, rb) = tokio::join!(sa.create(&pp, &want_a), sb.create(&pp, &want_b));
    let (winner, loser) = match (ra, rb) {
        (Ok(_), Err(e)) => ("want-a", e),
        (Err(e), Ok(_)) => ("want-b", e),
        other => panic!("expected exactly one success: {other:?}"),
    };
    match loser {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("provided port is already allocated"),
                "{}",
                s.message
            );
        }
        e => panic!("unexpected error {e}"),
    }
    // Deleting the winner frees the port at once, also for the other server.
    sa.delete(winner, &DeleteParams::default()).await.unwrap();
    let other = if winner == "want-a" { &sb } else { &sa };
    other
        .create(&PostParams::default(), &svc("want-again", Some(30050)))
        .await
        .expect("the port is free again");
    drop(etcd);
}
