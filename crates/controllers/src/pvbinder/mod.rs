//! The PersistentVolume binder (kube's `persistentvolume-binder`,
//! `pkg/controller/volume/persistentvolume`): binds claims to volumes (a matching
//! Available one, or the one a provisioner made for the claim), keeps both phases
//! (PV Pending/Available/Bound/Released/Failed, PVC Pending/Bound/Lost), asks the
//! claim's provisioner through the `volume.kubernetes.io/storage-provisioner`
//! annotations, and releases volumes whose claim is gone. The decisions are
//! [`plan`]'s; this module reads the caches and writes.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use skiff_api::names::{
    BETA_STORAGE_PROVISIONER_ANNOTATION, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION,
    SELECTED_NODE_ANNOTATION, STORAGE_PROVISIONER_ANNOTATION,
};

use crate::events::Recorder;
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_not_found, split_key};
use crate::Informers;
use plan::{plan_claim, plan_volume, ClaimAction, Reclaim, VolumeAction};

/// kube's `--pvclaimbinder-sync-period`.
const RESYNC: Duration = Duration::from_secs(15);

/// The caches the binder reads.
#[derive(Clone)]
struct Caches {
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
}

/// Starts the binder: one queue of claims, one of volumes.
pub fn run(client: Client, inf: &Informers) {
    let caches = Caches {
        pvcs: inf.pvcs.clone(),
        pvs: inf.pvs.clone(),
        classes: inf.storageclasses.clone(),
        nodes: inf.nodes.clone(),
    };
    let claims = WorkQueue::new();
    Triggers::new(&claims, &inf.pvcs)
        .primary()
        .watches(&inf.pvs, |pv, _| claim_key(pv).into_iter().collect())
        .every(RESYNC);
    let volumes = WorkQueue::new();
    let pvs = inf.pvs.clone();
    Triggers::new(&volumes, &inf.pvs)
        .primary()
        .watches(&inf.pvcs, move |claim, _| {
            // The volume the claim names, and any whose reference names the claim.
            let mut keys: Vec<String> = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty())
                .into_iter()
                .collect();
            keys.extend(
                pvs.list()
                    .iter()
                    .filter(|pv| claim_key(pv).as_deref() == Some(&crate::util::key_of(claim)))
                    .map(|pv| pv.name_any()),
            );
            keys
        })
        .every(RESYNC);
    let recorder = Recorder::new(client.clone(), "persistentvolume-controller");
    // One worker each: bindings of one kind never race each other in this process
    // (writes carry resourceVersions against other writers).
    let (c, cc, r) = (client.clone(), caches.clone(), recorder.clone());
    run_workers("persistentvolume-binder-claims", claims, 1, move |key| {
        let (c, cc, r) = (c.clone(), cc.clone(), r.clone());
        async move { sync_claim(&c, &cc, &r, &key).await.map(|_| None) }
    });
    run_workers("persistentvolume-binder-volumes", volumes, 1, move |key| {
        let (c, cc, r) = (client.clone(), caches.clone(), recorder.clone());
        async move { sync_volume(&c, &cc, &r, &key).await.map(|_| None) }
    });
}

/// The `namespace/name` key of the claim a volume's reference names.
fn claim_key(pv: &PersistentVolume) -> Option<String> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{}/{}",
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref()?
    ))
}

fn owned(list: Vec<Arc<PersistentVolume>>) -> Vec<PersistentVolume> {
    list.into_iter().map(|pv| (*pv).clone()).collect()
}

async fn sync_claim(client: &Client, c: &Caches, rec: &Recorder, key: &str) -> anyhow::Result<()> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(claim) = c.pvcs.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(());
    };
    let volumes = owned(c.pvs.list());
    let class_name = skiff_api::volumes::claim_class(&claim);
    let class = (!class_name.is_empty())
        .then(|| c.classes.store().get(&ObjectRef::new(&class_name)))
        .flatten();
    let selected = claim
        .annotations()
        .get(SELECTED_NODE_ANNOTATION)
        .and_then(|n| c.nodes.store().get(&ObjectRef::new(n)));
    let action = plan_claim(&claim, &volumes, class.as_deref(), selected.as_deref());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    match action {
        ClaimAction::Nothing => Ok(()),
        ClaimAction::Bind(v) | ClaimAction::FinishBind(v) => {
            let Some(pv) = volumes.iter().find(|p| p.name_any() == v) else {
                return Ok(());
            };
            bind(client, &claim, pv).await
        }
        ClaimAction::WaitForFirstConsumer => {
            rec.publish(
                &*claim,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
            Ok(())
        }
        ClaimAction::Provision(provisioner) => {
            let anns = claim.annotations();
            if anns.get(STORAGE_PROVISIONER_ANNOTATION) != Some(&provisioner)
                || anns.get(BETA_STORAGE_PROVISIONER_ANNOTATION) != Some(&provisioner)
            {
                let patch = json!({"metadata": {"annotations": {
                    STORAGE_PROVISIONER_ANNOTATION: provisioner,
                    BETA_STORAGE_PROVISIONER_ANNOTATION: provisioner}}});
                claims
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("annotating claim {key} for its provisioner"))?;
            }
            rec.publish(
                &*claim,
                "Normal",
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            );
            Ok(())
        }
        ClaimAction::Pending(type_, reason, message) => {
            rec.publish(&*claim, type_, reason, message);
            Ok(())
        }
        ClaimAction::Lost(reason, message) => {
            if plan::claim_phase(&claim) != "Lost" {
                let patch = json!({"status": {"phase": "Lost"}});
                claims
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("marking claim {key} Lost"))?;
                rec.publish(&*claim, "Warning", reason, message.into());
            }
            Ok(())
        }
    }
}

/// kube's `bind`: the volume's claim reference, its phase, the claim's volume name and
/// annotations, its status; each step only when not done yet, so a retry finishes a
/// binding a failure interrupted.
async fn bind(
    client: &Client,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> anyhow::Result<()> {
    let (ns, name, pv_name) = (
        claim.namespace().unwrap_or_default(),
        claim.name_any(),
        pv.name_any(),
    );
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams::default();
    let ref_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    if ref_uid.is_empty() || !skiff_api::volumes::bound_to(pv, claim) {
        let mut patch = json!({
            "metadata": {"resourceVersion": pv.resource_version()},
            "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": ns, "name": name, "uid": claim.uid(),
                "resourceVersion": claim.resource_version()}}});
        // The controller made this binding unless the user pre-bound the volume.
        if !skiff_api::volumes::bound_to(pv, claim) {
            patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
        }
        pvs.patch(&pv_name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("binding volume {pv_name} to claim {ns}/{name}"))?;
    }
    if skiff_api::volumes::volume_phase(pv) != "Bound" {
        pvs.patch_status(
            &pv_name,
            &pp,
            &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
        )
        .await
        .with_context(|| format!("marking volume {pv_name} Bound"))?;
    }
    let anns = claim.annotations();
    let named =
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str());
    if !named || !anns.contains_key(BIND_COMPLETED_ANNOTATION) {
        let mut a = json!({BIND_COMPLETED_ANNOTATION: "yes"});
        if !named {
            a[BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
        }
        let patch = json!({"metadata": {"annotations": a, "resourceVersion": claim.resource_version()},
            "spec": {"volumeName": pv_name}});
        claims
            .patch(&name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("binding claim {ns}/{name} to volume {pv_name}"))?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != spec.capacity
        || status.access_modes != spec.access_modes
    {
        let patch = json!({"status": {"phase": "Bound", "capacity": spec.capacity,
            "accessModes": spec.access_modes}});
        claims
            .patch_status(&name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("marking claim {ns}/{name} Bound"))?;
    }
    Ok(())
}

async fn sync_volume(client: &Client, c: &Caches, rec: &Recorder, key: &str) -> anyhow::Result<()> {
    let Some(pv) = c.pvs.store().get(&ObjectRef::new(key)) else {
        return Ok(());
    };
    let claim = match claim_key(&pv) {
        None => None,
        Some(k) => {
            let (ns, name) = split_key(&k);
            let ns = ns.unwrap_or("default");
            match c.pvcs.store().get(&ObjectRef::new(name).within(ns)) {
                Some(cl) => Some((*cl).clone()),
                // The cache may not have a new claim yet: ask the API server before
                // releasing a volume (as kube does).
                None => {
                    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
                    match api.get(name).await {
                        Ok(cl) => Some(cl),
                        Err(e) if is_not_found(&e) => None,
                        Err(e) => return Err(e).with_context(|| format!("getting claim {k}")),
                    }
                }
            }
        }
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pp = PatchParams::default();
    let phase =
        |p: &str, message: Option<&str>| json!({"status": {"phase": p, "message": message}});
    match plan_volume(&pv, claim.as_ref()) {
        VolumeAction::Nothing => Ok(()),
        VolumeAction::Phase(p) => {
            pvs.patch_status(key, &pp, &Patch::Merge(&phase(p, None)))
                .await
                .with_context(|| format!("setting volume {key} {p}"))?;
            Ok(())
        }
        VolumeAction::Unbind { by_controller } => {
            let patch = if by_controller {
                json!({"metadata": {"resourceVersion": pv.resource_version(),
                    "annotations": {BOUND_BY_CONTROLLER_ANNOTATION: null}},
                    "spec": {"claimRef": null}})
            } else {
                json!({"metadata": {"resourceVersion": pv.resource_version()},
                    "spec": {"claimRef": {"uid": null, "resourceVersion": null}}})
            };
            pvs.patch(key, &pp, &Patch::Merge(&patch))
                .await
                .with_context(|| format!("unbinding volume {key}"))?;
            pvs.patch_status(key, &pp, &Patch::Merge(&phase("Available", None)))
                .await
                .with_context(|| format!("setting volume {key} Available"))?;
            Ok(())
        }
        VolumeAction::Release(how) => {
            let (p, event) = match how {
                Reclaim::Retain | Reclaim::External => ("Released", None),
                Reclaim::Fail(msg) => ("Failed", Some(("VolumeFailedDelete", msg))),
                Reclaim::NoRecycler => (
                    "Failed",
                    Some((
                        "VolumeFailedRecycle",
                        "No recycler plugin found for the volume!".to_string(),
                    )),
                ),
            };
            let message = event.as_ref().map(|(_, m)| m.as_str());
            pvs.patch_status(key, &pp, &Patch::Merge(&phase(p, message)))
                .await
                .with_context(|| format!("releasing volume {key}"))?;
            if let Some((reason, msg)) = event {
                rec.publish(&*pv, "Warning", reason, msg);
            }
            Ok(())
        }
    }
}
