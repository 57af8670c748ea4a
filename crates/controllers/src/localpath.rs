//! The built-in local-path provisioner (what kind and k3s run as
//! `rancher/local-path-provisioner`, provisioner name `rancher.io/local-path`): for a
//! claim of a class it provisions, once the binder asked for it (the
//! `volume.kubernetes.io/storage-provisioner` annotation) and a node is known (the
//! scheduler's `volume.kubernetes.io/selected-node` for WaitForFirstConsumer, else any
//! Ready node), it creates the hostPath PV `pvc-<uid>` under the node's local-path
//! directory (the Node annotation `storage.skiff.dev/local-path` its agent publishes),
//! pinned to the node and pre-bound to the claim; the binder then binds them. A
//! Released PV of its own with reclaim policy Delete is deleted the way
//! local-path-provisioner does it: a helper pod on the node removes the directory,
//! then the PV goes. The agent creates the directory when a pod first mounts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use skiff_api::names::{
    BIND_COMPLETED_ANNOTATION, HOSTNAME_LABEL, LOCAL_PATH_DIR_ANNOTATION, LOCAL_PATH_PROVISIONER,
    PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION, STORAGE_PROVISIONER_ANNOTATION,
};

use crate::events::Recorder;
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_already_exists, is_not_found, split_key};
use crate::Informers;

/// Where helper pods run.
const HELPER_NAMESPACE: &str = "kube-system";
/// Prefix of the helper pods that delete a volume's directory.
const HELPER_PREFIX: &str = "helper-pod-delete-";
/// First and longest wait before another helper pod after one failed.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// The caches the provisioner reads.
#[derive(Clone)]
struct Caches {
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
}

/// Failed deletions per volume: (failures, when the last one was seen).
type Failures = Arc<Mutex<HashMap<String, (u32, Instant)>>>;

/// Starts the provisioner: a queue of claims to provision, one of volumes to delete.
pub fn run(client: Client, inf: &Informers) {
    let caches = Caches {
        pvcs: inf.pvcs.clone(),
        pvs: inf.pvs.clone(),
        classes: inf.storageclasses.clone(),
        nodes: inf.nodes.clone(),
        pods: inf.pods.clone(),
    };
    let claims = WorkQueue::new();
    Triggers::new(&claims, &inf.pvcs)
        .primary_if(|c, deleted| !deleted && wants_volume(c))
        .every(Duration::from_secs(15));
    let volumes = WorkQueue::new();
    Triggers::new(&volumes, &inf.pvs)
        .primary_if(|pv, deleted| !deleted && is_ours(pv))
        .watches(&inf.pods, |pod, _| {
            let name = pod.name_any();
            match name.strip_prefix(HELPER_PREFIX) {
                Some(pv) if pod.namespace().as_deref() == Some(HELPER_NAMESPACE) => {
                    vec![pv.to_string()]
                }
                _ => Vec::new(),
            }
        })
        .every(Duration::from_secs(15));
    let recorder = Recorder::new(client.clone(), LOCAL_PATH_PROVISIONER);
    let (c, cc, r) = (client.clone(), caches.clone(), recorder.clone());
    run_workers("local-path-provision", claims, 2, move |key| {
        let (c, cc, r) = (c.clone(), cc.clone(), r.clone());
        async move { provision(&c, &cc, &r, &key).await.map(|_| None) }
    });
    let failures: Failures = Arc::default();
    run_workers("local-path-delete", volumes, 2, move |key| {
        let (c, cc, r, f) = (
            client.clone(),
            caches.clone(),
            recorder.clone(),
            failures.clone(),
        );
        async move { delete(&c, &cc, &r, &f, &key).await }
    });
}

/// Whether a claim is unbound, not being deleted, and asked of this provisioner.
fn wants_volume(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_none()
        && !claim.annotations().contains_key(BIND_COMPLETED_ANNOTATION)
        && claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
        && claim
            .annotations()
            .get(STORAGE_PROVISIONER_ANNOTATION)
            .map(String::as_str)
            == Some(LOCAL_PATH_PROVISIONER)
}

/// Whether the volume is one this provisioner made.
fn is_ours(pv: &PersistentVolume) -> bool {
    pv.annotations()
        .get(PROVISIONED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(LOCAL_PATH_PROVISIONER)
}

/// Whether the node's Ready condition is True.
fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node a claim's volume goes to: the scheduler's choice for WaitForFirstConsumer
/// (none yet: wait), else the first Ready node (by name) that publishes a local-path
/// directory.
pub fn pick_node<'a>(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    nodes: &'a [Arc<Node>],
) -> Option<&'a Node> {
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        let want = claim.annotations().get(SELECTED_NODE_ANNOTATION)?;
        return nodes.iter().map(|n| &**n).find(|n| &n.name_any() == want);
    }
    let mut ready: Vec<&Node> = nodes
        .iter()
        .map(|n| &**n)
        .filter(|n| node_ready(n) && n.annotations().contains_key(LOCAL_PATH_DIR_ANNOTATION))
        .collect();
    ready.sort_by_key(|n| n.name_any());
    ready.first().copied()
}

/// The PV local-path-provisioner makes for `claim` on `node`, whose local-path
/// directory is `dir`: `pvc-<uid>` at `<dir>/pvc-<uid>_<namespace>_<claim>`, pinned to
/// the node, pre-bound to the claim.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    dir: &str,
) -> anyhow::Result<PersistentVolume> {
    let uid = claim.uid().context("the claim has no uid")?;
    let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .context("the claim requests no storage")?;
    let pv_name = format!("pvc-{uid}");
    let path = format!("{}/{pv_name}_{ns}_{name}", dir.trim_end_matches('/'));
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name,
            "annotations": {PROVISIONED_BY_ANNOTATION: LOCAL_PATH_PROVISIONER,
                            "local.path.provisioner/selected-node": node}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.unwrap_or_default(),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class.metadata.name,
            "volumeMode": spec.volume_mode.as_deref().unwrap_or("Filesystem"),
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": claim.resource_version()},
        },
    });
    Ok(serde_json::from_value(pv)?)
}

async fn provision(client: &Client, c: &Caches, rec: &Recorder, key: &str) -> anyhow::Result<()> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(claim) = c.pvcs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(());
    };
    if !wants_volume(&claim) {
        return Ok(());
    }
    let class_name = skiff_api::volumes::claim_class(&claim);
    let Some(class) = c.classes.store().get(&ObjectRef::new(&class_name)) else {
        return Ok(());
    };
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        return Ok(());
    }
    let pv_name = format!("pvc-{}", claim.uid().unwrap_or_default());
    if c.pvs.store().get(&ObjectRef::new(&pv_name)).is_some() {
        return Ok(());
    }
    let nodes = c.nodes.list();
    let Some(node) = pick_node(&claim, &class, &nodes) else {
        return Ok(());
    };
    let node_name = node.name_any();
    let Some(dir) = node.annotations().get(LOCAL_PATH_DIR_ANNOTATION) else {
        rec.publish(
            &*claim,
            "Warning",
            "ProvisioningFailed",
            format!(
                "failed to provision volume with StorageClass {class_name:?}: node {node_name:?} has no local-path directory (annotation {LOCAL_PATH_DIR_ANNOTATION})"
            ),
        );
        anyhow::bail!("node {node_name} publishes no local-path directory");
    };
    rec.publish(
        &*claim,
        "Normal",
        "Provisioning",
        format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
    );
    let pv = volume_for(&claim, &class, &node_name, dir)?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(e) if is_already_exists(&e) => return Ok(()),
        Err(e) => {
            rec.publish(
                &*claim,
                "Warning",
                "ProvisioningFailed",
                format!("failed to provision volume with StorageClass {class_name:?}: {e}"),
            );
            return Err(e).with_context(|| format!("creating volume {pv_name} for claim {key}"));
        }
    }
    rec.publish(
        &*claim,
        "Normal",
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {pv_name}"),
    );
    Ok(())
}

/// The node a volume is pinned to (its `kubernetes.io/hostname In [node]` affinity).
fn pinned_node(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first().cloned())
}

/// The helper pod that removes a volume's directory on its node, as
/// local-path-provisioner's teardown runs: the parent directory mounted at the same
/// path, `rm -rf` of the volume's directory, every taint tolerated.
pub fn helper_pod(pv: &PersistentVolume) -> anyhow::Result<Pod> {
    let node = pinned_node(pv).context("the volume is pinned to no node")?;
    let path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.clone())
        .context("the volume has no hostPath")?;
    let parent = std::path::Path::new(&path)
        .parent()
        .and_then(|p| p.to_str())
        .filter(|p| !p.is_empty() && *p != "/")
        .context("the volume's directory has no parent to mount")?
        .to_string();
    let bytes = skiff_api::volumes::capacity(pv) as u64;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{HELPER_PREFIX}{}", pv.name_any()), "namespace": HELPER_NAMESPACE},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "helper-pod", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", "rm -rf \"$VOL_DIR\""],
                "env": [{"name": "VOL_DIR", "value": path},
                        {"name": "VOL_MODE", "value": "Filesystem"},
                        {"name": "VOL_SIZE_BYTES", "value": bytes.to_string()}],
                "volumeMounts": [{"name": "data", "mountPath": parent}],
            }],
            "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
        },
    });
    Ok(serde_json::from_value(pod)?)
}

/// How long to wait after `failures` failed helper pods (doubling, capped).
pub fn backoff(failures: u32) -> Duration {
    let d = BACKOFF
        .0
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)));
    d.min(BACKOFF.1)
}

async fn delete(
    client: &Client,
    c: &Caches,
    rec: &Recorder,
    failures: &Failures,
    key: &str,
) -> anyhow::Result<Option<Duration>> {
    let Some(pv) = c.pvs.store().get(&ObjectRef::new(key)) else {
        failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        return Ok(None);
    };
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if !is_ours(&pv)
        || policy != Some("Delete")
        || skiff_api::volumes::volume_phase(&pv) != "Released"
    {
        return Ok(None);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), HELPER_NAMESPACE);
    let pod_name = format!("{HELPER_PREFIX}{key}");
    let helper = c
        .pods
        .store()
        .get(&ObjectRef::new(&pod_name).within(HELPER_NAMESPACE));
    let phase = helper
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if helper
        .as_ref()
        .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    {
        return Ok(None);
    }
    match (helper, phase.as_str()) {
        (None, _) => {
            let wait = failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .map(|(n, at)| backoff(*n).saturating_sub(at.elapsed()))
                .filter(|d| !d.is_zero());
            if let Some(d) = wait {
                return Ok(Some(d));
            }
            // The cache may not show yet that the volume is going (its helper just
            // finished): look at the live volume before starting another helper.
            let pvs: Api<PersistentVolume> = Api::all(client.clone());
            let live = match pvs.get_opt(key).await {
                Ok(Some(live)) => live,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e).with_context(|| format!("getting volume {key}")),
            };
            if live.metadata.deletion_timestamp.is_some()
                || skiff_api::volumes::volume_phase(&live) != "Released"
            {
                return Ok(None);
            }
            let pod = helper_pod(&live)?;
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => Ok(None),
                Err(e) if is_already_exists(&e) => Ok(None),
                Err(e) => Err(e).with_context(|| format!("creating {pod_name}")),
            }
        }
        (Some(p), "Succeeded") => {
            let pvs: Api<PersistentVolume> = Api::all(client.clone());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pv.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pvs.delete(key, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e).with_context(|| format!("deleting volume {key}")),
            }
            // The volume first, so that the helper's deletion finds it going.
            delete_pod(&pods, &p).await?;
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            Ok(None)
        }
        (Some(p), "Failed") => {
            let n = {
                let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                let e = f.entry(key.to_string()).or_insert((0, Instant::now()));
                e.0 += 1;
                e.1 = Instant::now();
                e.0
            };
            rec.publish(
                &*pv,
                "Warning",
                "VolumeFailedDelete",
                format!("failed to delete volume {key}: helper pod {pod_name} failed"),
            );
            delete_pod(&pods, &p).await?;
            Ok(Some(backoff(n)))
        }
        // Pending or running: its next status change brings the volume back.
        _ => Ok(None),
    }
}

async fn delete_pod(pods: &Api<Pod>, p: &Pod) -> anyhow::Result<()> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: p.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&p.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting helper pod {}", p.name_any())),
    }
}
