//! Helpers shared by the integration tests: an in-process API server with the
//! controllers and the scheduler, fake kubelets and polling with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// A running control plane.
pub struct Cluster {
    /// Admin client.
    pub client: Client,
    _server: skiff_apiserver::ServerHandle,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Cluster {
    start_with(Duration::from_secs(4)).await
}

/// Starts a control plane whose node monitor grace period is `grace`.
pub async fn start_with(grace: Duration) -> Cluster {
    let cl = start_controllers(grace).await;
    start_scheduler(&cl.client);
    cl
}

/// Runs the scheduler in the background (for tests that start it late).
pub fn start_scheduler(client: &Client) {
    let c = client.clone();
    tokio::spawn(async move {
        if let Err(e) = skiff_scheduler::run(c).await {
            panic!("scheduler: {e:#}");
        }
    });
}

/// Starts the API server and the controllers, without the scheduler.
pub async fn start_controllers(grace: Duration) -> Cluster {
    start_these_controllers(grace, &["*"]).await
}

/// Starts the API server and the controllers `which` names (kube-controller-manager's
/// `--controllers`), without the scheduler.
pub async fn start_these_controllers(grace: Duration, which: &[&str]) -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = skiff_apiserver::Server::start(skiff_apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        advertise_address: Some(Ipv4Addr::LOCALHOST),
        ..Default::default()
    })
    .await
    .expect("API server");
    let client = Client::try_from(server.admin_client_config()).expect("client");
    let cfg = skiff_controllers::ControllersConfig {
        node_monitor_grace_period: grace,
        pod_eviction_timeout_default: Duration::from_secs(2),
        controllers: which.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    let c = client.clone();
    tokio::spawn(async move {
        if let Err(e) = skiff_controllers::run(c, cfg).await {
            panic!("controllers: {e:#}");
        }
    });
    Cluster {
        client,
        _server: server,
        _dir: dir,
    }
}

/// Polls `f` until it returns Some, or panics after `secs` with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn add_node(client: &Client, name: &str, ip: &str, control_plane: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {}
    });
    if control_plane {
        node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = "".into();
        node["spec"]["taints"] =
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    }
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).expect("node"),
        )
        .await
        .expect("create node");
    set_node_ready(client, name, ip).await;
}

pub async fn set_node_ready(client: &Client, name: &str, ip: &str) {
    try_set_node_ready(client, name, ip)
        .await
        .expect("node status");
}

/// Posts Ready status for `name`; fails (rather than panics) when the node does not exist
/// yet, so heartbeats can name nodes a test adds later.
pub async fn try_set_node_ready(client: &Client, name: &str, ip: &str) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(drop)
}

/// Posts Ready status for `nodes` every second, as their kubelets would.
pub fn heartbeats(client: Client, nodes: &[(&str, &str)]) -> tokio::task::JoinHandle<()> {
    heartbeats_every(client, nodes, Duration::from_secs(1))
}

/// Posts Ready status for `nodes` every `period`.
pub fn heartbeats_every(
    client: Client,
    nodes: &[(&str, &str)],
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    let nodes: Vec<(String, String)> = nodes
        .iter()
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect();
    tokio::spawn(async move {
        loop {
            futures::future::join_all(
                nodes
                    .iter()
                    .map(|(name, ip)| try_set_node_ready(&client, name, ip)),
            )
            .await;
            tokio::time::sleep(period).await;
        }
    })
}

/// Plays the kubelet of every node whose name is in `nodes`: gives bound pods an IP from
/// the node's podCIDR and makes them Running and Ready, and finishes graceful deletions.
pub fn fake_kubelets(client: Client, nodes: &[&str]) -> tokio::task::JoinHandle<()> {
    let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let node_api: Api<Node> = Api::all(client.clone());
        let mut next_ip: BTreeMap<String, u8> = BTreeMap::new();
        let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !nodes.contains(&node) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            if pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some()
            {
                continue;
            }
            let Ok(n) = node_api.get(&node).await else {
                continue;
            };
            let Some(cidr) = n.spec.and_then(|s| s.pod_cidr) else {
                continue;
            };
            let base = cidr.trim_end_matches(".0/24");
            let i = next_ip.entry(node.clone()).or_insert(100);
            *i += 1;
            let ip = format!("{base}.{i}");
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {
                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}
                ]
            }});
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
    })
}

pub fn httpd_deployment(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "httpd", "namespace": "default"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"run": "httpd"}},
            "template": {
                "metadata": {"labels": {"run": "httpd"}},
                "spec": {"containers": [{"name": "httpd", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    }))
    .expect("deployment")
}

pub async fn rollout_done(deps: &Api<Deployment>, name: &str, want: i32) -> Option<Deployment> {
    let d = deps.get(name).await.ok()?;
    let s = d.status.clone()?;
    let done = s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want);
    done.then_some(d)
}

pub async fn active_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels("run=httpd"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}
