//! The binder's decisions, pure: what to do with a claim ([`plan_claim`]) and with a
//! volume ([`plan_volume`]), as `syncClaim` / `syncVolume` of kube's
//! `pkg/controller/volume/persistentvolume/pv_controller.go` decide them.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use skiff_api::names::{BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION};

use skiff_api::volumes::{
    access_modes_fit, bound_to, capacity, claim_class, find_match, requested, volume_class,
    volume_mode_fits, volume_phase,
};

/// The annotation a dynamically provisioned volume carries with its provisioner.
pub const PROVISIONED_BY: &str = skiff_api::names::PROVISIONED_BY_ANNOTATION;

/// What to do with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAction {
    /// Nothing to change.
    Nothing,
    /// Bind the claim to the volume (both sides, then both statuses).
    Bind(String),
    /// The claim is bound to the volume: make its status say so.
    FinishBind(String),
    /// A WaitForFirstConsumer claim whose first pod is not scheduled yet (event
    /// `WaitForFirstConsumer`).
    WaitForFirstConsumer,
    /// Ask the provisioner for a volume: the storage-provisioner annotations and the
    /// event `ExternalProvisioning`.
    Provision(String),
    /// An event and the claim stays Pending: (type, reason, message).
    Pending(&'static str, &'static str, String),
    /// The claim lost its volume: phase Lost and a Warning (reason, message).
    Lost(&'static str, &'static str),
}

/// What to do with a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// Nothing to change.
    Nothing,
    /// Set the phase (and enqueue its claim, if any).
    Phase(&'static str),
    /// Forget a claim bound elsewhere: drop the claim reference (bound by the
    /// controller) or only its uid (bound by the user), then Available.
    Unbind {
        /// Whether the controller made the binding (the whole reference goes).
        by_controller: bool,
    },
    /// The claim is gone: Released, then reclaimed by `reclaim`.
    Release(Reclaim),
}

/// How a released volume is reclaimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// `Retain`: it stays Released until an administrator acts.
    Retain,
    /// `Delete` by its provisioner (which deletes it, skiff's local-path one or
    /// another).
    External,
    /// `Delete` with nobody able to: phase Failed and a `VolumeFailedDelete` Warning.
    Fail(String),
    /// `Recycle`: not supported (deprecated in kube; no recycler pod here).
    NoRecycler,
}

/// A claim's phase.
pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

/// `checkVolumeSatisfyClaim`: why a volume the claim names cannot serve it.
pub fn unsatisfied_because(
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Option<&'static str> {
    if capacity(pv) < requested(claim) {
        Some("requested PV is too small")
    } else if volume_class(pv) != claim_class(claim) {
        Some("storageClassName does not match")
    } else if !volume_mode_fits(claim, pv) {
        Some("incompatible volumeMode")
    } else if !access_modes_fit(claim, pv) {
        Some("incompatible accessMode")
    } else {
        None
    }
}

/// The binder's decision for a claim. `class` is the claim's StorageClass when it
/// exists, `selected` the node the scheduler chose for its first pod (when annotated
/// and known).
pub fn plan_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[PersistentVolume],
    class: Option<&StorageClass>,
    selected: Option<&Node>,
) -> ClaimAction {
    let vname = volume_name(claim);
    let find = |name: &str| volumes.iter().find(|v| v.name_any() == name);
    if claim.annotations().contains_key(BIND_COMPLETED_ANNOTATION) {
        let Some(pv) = (!vname.is_empty()).then(|| find(vname)).flatten() else {
            return ClaimAction::Lost(
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
        };
        return match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            None => ClaimAction::Bind(vname.into()),
            Some(_) if bound_to(pv, claim) => ClaimAction::FinishBind(vname.into()),
            Some(_) => ClaimAction::Lost(
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            ),
        };
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Nothing;
    }
    if !vname.is_empty() {
        // The user named the volume.
        let Some(pv) = find(vname) else {
            return ClaimAction::Nothing;
        };
        if pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none()
            || bound_to(pv, claim)
        {
            return match unsatisfied_because(claim, pv) {
                Some(why) => ClaimAction::Pending(
                    "Warning",
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {vname:?}: {why}"),
                ),
                None => ClaimAction::Bind(vname.into()),
            };
        }
        return ClaimAction::Pending(
            "Warning",
            "FailedBinding",
            format!("volume {vname:?} already bound to a different claim."),
        );
    }
    let class_name = claim_class(claim);
    let delayed = class
        .and_then(|c| c.volume_binding_mode.as_deref())
        .is_some_and(|m| m == "WaitForFirstConsumer");
    if let Some(pv) = find_match(claim, volumes, delayed, selected.filter(|_| delayed)) {
        return ClaimAction::Bind(pv.name_any());
    }
    if delayed && selected.is_none() {
        return ClaimAction::WaitForFirstConsumer;
    }
    if class_name.is_empty() {
        return ClaimAction::Pending(
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        );
    }
    match class {
        None => ClaimAction::Pending(
            "Warning",
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        ),
        Some(c) => ClaimAction::Provision(c.provisioner.clone()),
    }
}

/// The binder's decision for a volume; `claim` is the claim its reference names, when
/// it exists.
pub fn plan_volume(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeAction {
    let phase = volume_phase(pv);
    let set = |want: &'static str| {
        if phase == want {
            VolumeAction::Nothing
        } else {
            VolumeAction::Phase(want)
        }
    };
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return set("Available");
    };
    let uid = r.uid.as_deref().unwrap_or("");
    let claim = claim.filter(|c| uid.is_empty() || c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        if uid.is_empty() {
            // Pre-bound by the user to a claim that does not exist yet.
            return set("Available");
        }
        if phase == "Released" || phase == "Failed" {
            return VolumeAction::Nothing;
        }
        return VolumeAction::Release(reclaim(pv));
    };
    let by_controller = pv
        .annotations()
        .contains_key(BOUND_BY_CONTROLLER_ANNOTATION);
    match volume_name(claim) {
        // The claim is not bound yet: it will be (a binding in progress), or it is the
        // user's pre-binding of the volume.
        "" if by_controller => VolumeAction::Nothing,
        "" => set("Available"),
        n if n == pv.name_any() => set("Bound"),
        _ => VolumeAction::Unbind { by_controller },
    }
}

/// How a released volume is reclaimed.
pub fn reclaim(pv: &PersistentVolume) -> Reclaim {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete" if pv.annotations().contains_key(PROVISIONED_BY) => Reclaim::External,
        "Delete" => Reclaim::Fail(format!(
            "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
            pv.name_any()
        )),
        "Recycle" => Reclaim::NoRecycler,
        _ => Reclaim::Retain,
    }
}

#[cfg(test)]
mod tests;
