//! The scheduler's volume binding against an in-process API server, with the scheduler
//! as `system:kube-scheduler` (its default RBAC roles): the test plays the local-path
//! provisioner and the PersistentVolume binder (it makes and binds the volume once the
//! claim has the selected-node annotation), and the fake nodes' kubelets (none run).
//! Needs `storage.k8s.io` StorageClasses served by the API server; the test's classes
//! have names of their own, beside the server's default one.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const SELECTED: &str = "volume.kubernetes.io/selected-node";

struct Cluster {
    client: Client,
    _server: skiff_apiserver::ServerHandle,
    _dir: tempfile::TempDir,
}

/// The API server and the scheduler (PreBind gives up after `bind_timeout`).
async fn start(bind_timeout: Duration) -> Cluster {
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
    let sched = Client::try_from(
        server
            .client_config_as("system:kube-scheduler", &[])
            .expect("scheduler identity"),
    )
    .expect("scheduler client");
    tokio::spawn(async move {
        let cfg = skiff_scheduler::SchedulerConfig { bind_timeout };
        if let Err(e) = skiff_scheduler::run_with(sched, cfg).await {
            panic!("scheduler: {e:#}");
        }
    });
    Cluster {
        client,
        _server: server,
        _dir: dir,
    }
}

/// Polls `f` until it returns Some, or panics after `secs` with `what`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
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

async fn add_node(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).expect("node"),
        )
        .await
        .expect("create node");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

async fn add_class(client: &Client, name: &str, mode: &str) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let c = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
                   "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": mode});
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(c).expect("class"),
        )
        .await
        .expect("create the StorageClass (is storage.k8s.io served?)");
}

async fn add_claim(client: &Client, ns: &str, name: &str, class: &str) -> PersistentVolumeClaim {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(c).expect("claim"),
        )
        .await
        .expect("create claim")
}

async fn add_pod(client: &Client, ns: &str, name: &str, claim: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(p).expect("pod"),
    )
    .await
    .expect("create pod");
}

/// Plays the provisioner and binder for one claim: a hostPath volume on `node`, the
/// claim bound to it.
async fn provision(client: &Client, ns: &str, claim: &str, node: &str) -> String {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let c = claims.get(claim).await.expect("claim");
    let pv_name = format!("pvc-{}", c.uid().unwrap_or_default());
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "on-first-use",
                 "persistentVolumeReclaimPolicy": "Delete",
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": c.uid()},
                 "hostPath": {"path": format!("/tmp/{pv_name}"), "type": "DirectoryOrCreate"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}});
    Api::<PersistentVolume>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(pv).expect("pv"),
        )
        .await
        .expect("create pv");
    let bind = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                      "spec": {"volumeName": pv_name}});
    claims
        .patch(claim, &PatchParams::default(), &Patch::Merge(&bind))
        .await
        .expect("bind claim");
    claims
        .patch_status(
            claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .expect("claim status");
    pv_name
}

async fn node_of(client: &Client, ns: &str, pod: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.get(pod)
        .await
        .ok()?
        .spec?
        .node_name
        .filter(|n| !n.is_empty())
}

async fn scheduled_condition(client: &Client, ns: &str, pod: &str) -> Option<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p = pods.get(pod).await.ok()?;
    let c = p
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some((c.reason?, c.message?))
}

async fn selected_node(client: &Client, ns: &str, claim: &str) -> Option<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    claims
        .get(claim)
        .await
        .ok()?
        .annotations()
        .get(SELECTED)
        .cloned()
}

async fn has_event(client: &Client, ns: &str, pod: &str, reason: &str, message: &str) -> bool {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message))
}

#[tokio::test]
async fn wait_for_first_consumer_claims_are_given_the_node_then_the_pod_is_bound() {
    let cl = start(Duration::from_secs(600)).await;
    let c = &cl.client;
    add_node(c, "n1").await;
    add_node(c, "n2").await;
    add_class(c, "on-first-use", "WaitForFirstConsumer").await;
    add_class(c, "instant", "Immediate").await;
    let ns = "default";

    // PreFilter: a missing claim, an unbound Immediate claim.
    add_pod(c, ns, "no-claim", "nope").await;
    let (reason, msg) = eventually(20, "the missing claim's condition", || {
        scheduled_condition(c, ns, "no-claim")
    })
    .await;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(
        msg,
        "0/2 nodes are available: persistentvolumeclaim \"nope\" not found. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    add_claim(c, ns, "now", "instant").await;
    add_pod(c, ns, "immediate", "now").await;
    let (_, msg) = eventually(20, "the immediate claim's condition", || {
        scheduled_condition(c, ns, "immediate")
    })
    .await;
    assert_eq!(
        msg,
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // Creating the missing claim makes the first pod schedulable.
    add_claim(c, ns, "nope", "on-first-use").await;

    // PreBind: the claim gets the node; the pod waits for the binding.
    add_claim(c, ns, "data", "on-first-use").await;
    add_pod(c, ns, "writer", "data").await;
    let node = eventually(20, "the selected-node annotation", || {
        selected_node(c, ns, "data")
    })
    .await;
    assert!(node == "n1" || node == "n2", "{node}");
    assert_eq!(
        node_of(c, ns, "writer").await,
        None,
        "bound before its claim"
    );
    provision(c, ns, "data", &node).await;
    let bound = eventually(20, "the pod's binding", || node_of(c, ns, "writer")).await;
    assert_eq!(bound, node);

    // A bound claim: its volume's node affinity places the next pod.
    add_pod(c, ns, "reader", "data").await;
    let bound = eventually(20, "the reader's binding", || node_of(c, ns, "reader")).await;
    assert_eq!(bound, node);
    // The claim being deleted (the protection finalizer keeps it) stops new pods.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), ns);
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["kubernetes.io/pvc-protection"]}})),
        )
        .await
        .expect("finalizer");
    claims
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete claim");
    add_pod(c, ns, "late", "data").await;
    let (_, msg) = eventually(20, "the deleted claim's condition", || {
        scheduled_condition(c, ns, "late")
    })
    .await;
    assert!(
        msg.starts_with(
            "0/2 nodes are available: persistentvolumeclaim \"data\" is being deleted."
        ),
        "{msg}"
    );
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop finalizer");
}

#[tokio::test]
async fn prebind_gives_up_after_the_bind_timeout_and_tries_again() {
    let cl = start(Duration::from_secs(2)).await;
    let c = &cl.client;
    add_node(c, "n1").await;
    add_class(c, "on-first-use", "WaitForFirstConsumer").await;
    let ns = "default";
    add_claim(c, ns, "slow", "on-first-use").await;
    add_pod(c, ns, "patient", "slow").await;
    let node = eventually(20, "the selected-node annotation", || {
        selected_node(c, ns, "slow")
    })
    .await;
    assert_eq!(node, "n1");
    let (reason, msg) = eventually(20, "the PreBind timeout", || {
        scheduled_condition(c, ns, "patient")
    })
    .await;
    assert_eq!(reason, "SchedulerError");
    assert_eq!(
        msg,
        "running PreBind plugin \"VolumeBinding\": binding volumes: context deadline exceeded"
    );
    assert!(
        has_event(c, ns, "patient", "FailedScheduling", &msg).await,
        "no FailedScheduling event"
    );
    // The provisioner gets to it at last: the next attempt binds the pod.
    provision(c, ns, "slow", "n1").await;
    let bound = eventually(30, "the pod's binding", || node_of(c, ns, "patient")).await;
    assert_eq!(bound, "n1");
}
