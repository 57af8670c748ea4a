//! The storage-object-in-use protection controllers (kube's `pvc-protection` and
//! `pv-protection`, `pkg/controller/volume/pvcprotection` and `.../pvprotection`):
//! a deleted claim keeps its `kubernetes.io/pvc-protection` finalizer while a pod that
//! has not finished uses it; a deleted volume keeps `kubernetes.io/pv-protection` while
//! it is Bound. The admission plugin `StorageObjectInUseProtection` adds them.

use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::names::{PVC_PROTECTION_FINALIZER, PV_PROTECTION_FINALIZER};

use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_not_found, pod_phase, split_key};
use crate::Informers;

/// The claims a pod mounts (its `persistentVolumeClaim` volumes and the claims of its
/// generic ephemeral volumes, `<pod>-<volume>`).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let pod_name = pod.name_any();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

/// Whether the pod still holds its claims: it has not finished (kube's pods in
/// Succeeded or Failed release them).
pub fn pod_holds_claims(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Whether any of `pods` (of the claim's namespace) uses the claim `name`.
pub fn claim_in_use<'a>(name: &str, pods: impl IntoIterator<Item = &'a Pod>) -> bool {
    pods.into_iter()
        .any(|p| pod_holds_claims(p) && claims_of(p).iter().any(|c| c == name))
}

/// Whether a volume may lose its protection: it is not Bound.
pub fn volume_in_use(pv: &PersistentVolume) -> bool {
    skiff_api::volumes::volume_phase(pv) == "Bound"
}

/// Starts both controllers.
pub fn run_pvc_protection(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    Triggers::new(&queue, &inf.pvcs)
        .primary_if(|c, deleted| !deleted && deleting_with(c, PVC_PROTECTION_FINALIZER))
        .watches(&inf.pods, |pod, _| {
            let ns = pod.namespace().unwrap_or_default();
            claims_of(pod)
                .into_iter()
                .map(|c| format!("{ns}/{c}"))
                .collect()
        });
    let (pvcs, pods) = (inf.pvcs.clone(), inf.pods.clone());
    run_workers("pvc-protection", queue, 1, move |key| {
        let (client, pvcs, pods) = (client.clone(), pvcs.clone(), pods.clone());
        async move { sync_claim(&client, &pvcs, &pods, &key).await.map(|_| None) }
    });
}

/// Starts the pv-protection controller.
pub fn run_pv_protection(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    Triggers::new(&queue, &inf.pvs)
        .primary_if(|pv, deleted| !deleted && deleting_with(pv, PV_PROTECTION_FINALIZER));
    let pvs = inf.pvs.clone();
    run_workers("pv-protection", queue, 1, move |key| {
        let (client, pvs) = (client.clone(), pvs.clone());
        async move {
            let Some(pv) = pvs.store().get(&ObjectRef::new(&key)) else {
                return Ok(None);
            };
            if deleting_with(&*pv, PV_PROTECTION_FINALIZER) && !volume_in_use(&pv) {
                let api: Api<PersistentVolume> = Api::all(client);
                remove_finalizer(&api, &*pv, PV_PROTECTION_FINALIZER).await?;
            }
            Ok(None)
        }
    });
}

fn deleting_with<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta().deletion_timestamp.is_some()
        && obj
            .meta()
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

async fn sync_claim(
    client: &Client,
    pvcs: &Informer<PersistentVolumeClaim>,
    pods: &Arc<Informer<Pod>>,
    key: &str,
) -> anyhow::Result<()> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(claim) = pvcs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(());
    };
    if !deleting_with(&*claim, PVC_PROTECTION_FINALIZER) {
        return Ok(());
    }
    let cached = pods.list();
    if claim_in_use(
        name,
        cached
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .map(|p| &**p),
    ) {
        return Ok(());
    }
    // The cache may lag behind a new pod: ask the API server before letting go (kube's
    // `askAPIServer`).
    let live: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = live
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing pods of {ns}"))?;
    if claim_in_use(name, listed.items.iter()) {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    remove_finalizer(&api, &*claim, PVC_PROTECTION_FINALIZER).await
}

/// Removes `finalizer` from the object as cached (a stale one conflicts and retries).
async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let left: Vec<&String> = obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let patch = json!({"metadata": {"finalizers": left,
        "resourceVersion": obj.meta().resource_version}});
    let name = obj.meta().name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {finalizer} from {name}")),
    }
}
