//! Which PersistentVolume may serve which claim, as kube's
//! `pkg/controller/volume/persistentvolume/util` and `component-helpers/storage/volume`
//! decide it: classes, sizes, access and volume modes, selectors, claim references and
//! node affinity. Shared by the PersistentVolume binder (which binds) and the scheduler
//! (which looks for a volume a WaitForFirstConsumer claim could use on a node).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The beta annotation that named a claim's or volume's class before
/// `storageClassName`.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn beta_class(meta: &ObjectMeta) -> Option<String> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .cloned()
}

/// The class a claim asks for: the beta annotation first, then `storageClassName`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    beta_class(&claim.metadata)
        .or_else(|| {
            claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
        })
        .unwrap_or_default()
}

/// The class of a volume, as [`claim_class`].
pub fn volume_class(pv: &PersistentVolume) -> String {
    beta_class(&pv.metadata)
        .or_else(|| pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// The storage a claim requests, in bytes.
pub fn requested(claim: &PersistentVolumeClaim) -> f64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| crate::quantity::parse(&q.0))
        .unwrap_or(0.0)
}

/// A volume's storage capacity, in bytes.
pub fn capacity(pv: &PersistentVolume) -> f64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| crate::quantity::parse(&q.0))
        .unwrap_or(0.0)
}

/// A volume's phase (`""` before the API server set one).
pub fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// A volume mode, `Filesystem` when unset.
fn volume_mode_of(m: Option<&String>) -> &str {
    m.map(String::as_str).unwrap_or("Filesystem")
}

/// `IsVolumeBoundToClaim`: the volume's claim reference names this claim (and its uid,
/// once set).
pub fn bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// `CheckAccessModes`: the volume offers every mode the claim asks for.
pub fn access_modes_fit(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .is_none_or(|want| want.iter().all(|m| offered.contains(m)))
}

/// The claim and the volume have the same volume mode (`Filesystem` or `Block`).
pub fn volume_mode_fits(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    volume_mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
        == volume_mode_of(pv.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
}

/// Whether the volume may be used on `node` (its required node affinity).
pub fn volume_fits_node(pv: &PersistentVolume, node: &Node) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|sel| crate::helpers::node_selector_matches(sel, node))
}

/// `FindMatchingVolume`: a volume pre-bound to the claim, else the smallest Available
/// unclaimed volume of its class, modes, size and selector. With delayed binding
/// (WaitForFirstConsumer), only once a node is chosen, and only volumes that node can
/// use.
pub fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delayed: bool,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let want = requested(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let empty = BTreeMap::new();
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some()
            || capacity(pv) < want
            || !volume_mode_fits(claim, pv)
        {
            continue;
        }
        let node_ok = node.is_none_or(|n| volume_fits_node(pv, n));
        if bound_to(pv, claim) {
            return node_ok.then_some(pv);
        }
        if (node.is_none() && delayed) || !node_ok {
            continue;
        }
        let spec = pv.spec.as_ref();
        if volume_phase(pv) != "Available"
            || spec.and_then(|s| s.claim_ref.as_ref()).is_some()
            || volume_class(pv) != class
            || !access_modes_fit(claim, pv)
            || selector.is_some_and(|s| {
                !crate::helpers::selector_matches(s, pv.metadata.labels.as_ref().unwrap_or(&empty))
            })
        {
            continue;
        }
        if best.is_none_or(|b| capacity(b) > capacity(pv)) {
            best = Some(pv);
        }
    }
    best
}
