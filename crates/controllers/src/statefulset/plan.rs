//! What the StatefulSet controller does with one StatefulSet, as a pure function of the
//! set, its two revisions (current and update), its pods, the claims of its volume claim
//! templates and the time (kube's `updateStatefulSet`, `processReplica`,
//! `processCondemned`, `newVersionedStatefulSetPod` and the claim retention rules of
//! `stateful_set_utils.go`): which pods (and claims) to create, delete or update, in
//! which order, and the status after.
//!
//! The actions come in phases as kube runs them: the replicas in ordinal order, the
//! retention owners of the condemned pods, the condemned pods (scale down, highest
//! ordinal first), the rolling update. With `OrderedReady` a phase stops at the first
//! action that must complete (or the first pod not Running and Ready) and later phases
//! are empty; with `Parallel` every pod is handled at once.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::util::{controller_ref, is_deleting, pod_available, pod_phase, pod_ready};

/// The label with the pod's own name (`apps.StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal (`apps.PodIndexLabel`, feature PodIndexLabel, on).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the ControllerRevision a pod was made from: for StatefulSets the
/// revision's full name (`apps.StatefulSetRevisionLabel`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with a ControllerRevision's hash (`history.ControllerRevisionHashLabel`).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// One revision of the set: its ControllerRevision's name and the pod template it holds.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    /// The ControllerRevision's name (`<set>-<hash>`), the pods' [`REVISION_LABEL`].
    pub name: &'a str,
    /// The template recorded in it.
    pub template: &'a PodTemplateSpec,
}

/// What [`plan`] decides from.
pub struct Input<'a> {
    /// The StatefulSet.
    pub set: &'a StatefulSet,
    /// The revision the pods below the partition keep (`status.currentRevision`).
    pub current: Revision<'a>,
    /// The revision of the set's template (`status.updateRevision`).
    pub update: Revision<'a>,
    /// The collision count the update revision's name was made with.
    pub collision_count: i32,
    /// The pods the set controls whose names are `<set>-<ordinal>`.
    pub pods: &'a [&'a Pod],
    /// The claims of the set's namespace by name (those of its templates matter).
    pub claims: &'a BTreeMap<String, &'a PersistentVolumeClaim>,
    /// Now (minReadySeconds).
    pub now: Timestamp,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod's missing claims (`claims`), then the pod (`CreateStatefulPod`).
    CreatePod {
        /// The pod.
        pod: Pod,
        /// Its claims that do not exist yet, with their retention owners.
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Create the missing claims of a pod that exists (a Pending pod whose claim was
    /// deleted, or a pod whose storage is fixed).
    CreateClaims {
        /// The pod's name.
        pod: String,
        /// The claims.
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Delete a pod.
    DeletePod {
        /// Its name.
        name: String,
        /// Its uid (a precondition, and the expectation).
        uid: String,
        /// The Warning event recorded before (failed pods are recreated).
        warning: Option<(String, String)>,
    },
    /// Replace the pod's labels and volumes (its identity or storage was not the set's).
    UpdatePod {
        /// The pod as it should be.
        pod: Pod,
    },
    /// Replace a claim's ownerReferences (the retention policy).
    SetClaimOwners {
        /// The claim's name.
        claim: String,
        /// Its ownerReferences after.
        owners: Vec<OwnerReference>,
    },
}

/// What to do and the status after.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The actions by phase; each phase runs in order, a failed action ends the sync.
    pub phases: Vec<Vec<Action>>,
    /// Whether the actions of a phase may run at once (`Parallel`).
    pub parallel: bool,
    /// The status after.
    pub status: StatefulSetStatus,
    /// When to look again (pods Ready but not yet available).
    pub requeue: Option<Duration>,
}

/// The pod name of `ordinal` (`getPodName`).
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The parent's name and the ordinal of a pod named `<parent>-<ordinal>`
/// (`getParentNameAndOrdinal`), or None.
pub fn parent_and_ordinal(pod: &str) -> Option<(&str, i32)> {
    let (parent, ord) = pod.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The claim of template `template` for the pod of `ordinal`
/// (`getPersistentVolumeClaimName`).
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// `spec.ordinals.start` (0 unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

fn replicas_of(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// Whether the ordinal is one the set should run (`podInOrdinalRange`).
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas_of(set)
}

fn policy(set: &StatefulSet) -> (String, String) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let get = |v: Option<&String>| v.cloned().unwrap_or_else(|| "Retain".into());
    (
        get(p.and_then(|p| p.when_deleted.as_ref())),
        get(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// Who a claim's owner is, as the retention rules compare references.
struct Owner<'a> {
    group: &'a str,
    kind: &'a str,
    name: String,
    uid: String,
}

fn set_owner(set: &StatefulSet) -> Owner<'static> {
    Owner {
        group: "apps",
        kind: "StatefulSet",
        name: set.name_any(),
        uid: set.uid().unwrap_or_default(),
    }
}

fn pod_owner(pod: &Pod) -> Owner<'static> {
    Owner {
        group: "",
        kind: "Pod",
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
    }
}

fn ref_group(r: &OwnerReference) -> &str {
    r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// `matchesRef`: the reference is to that very owner.
fn matches(r: &OwnerReference, o: &Owner) -> bool {
    ref_group(r) == o.group && r.kind == o.kind && r.name == o.name && r.uid == o.uid
}

/// `hasStaleOwnerRef`: a reference to an owner of that name that has since been
/// replaced (another uid).
fn stale(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|r| ref_group(r) == o.group && r.kind == o.kind && r.name == o.name && r.uid != o.uid)
}

fn has_ref(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    claim.owner_references().iter().any(|r| r.uid == o.uid)
}

fn unexpected_controller(claim: &PersistentVolumeClaim, set: &Owner, pod: &Owner) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && !matches(r, set) && !matches(r, pod))
}

fn non_controller_owner(claim: &PersistentVolumeClaim, set: &Owner, pod: &Owner) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|r| r.controller != Some(true) && (r.uid == set.uid || r.uid == pod.uid))
}

/// Whether the claim's owners are as the retention policy wants them
/// (`isClaimOwnerUpToDate`): none for Retain/Retain; the set for `whenDeleted: Delete`
/// while the pod is in range; the pod once it is scaled down for `whenScaled: Delete`.
/// Claims with a stale or foreign controller are left alone.
pub fn claim_owners_up_to_date(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> bool {
    let (so, po) = (set_owner(set), pod_owner(pod));
    if stale(claim, &so) || stale(claim, &po) {
        return true;
    }
    if unexpected_controller(claim, &so, &po) {
        return !(has_ref(claim, &so) || has_ref(claim, &po));
    }
    if non_controller_owner(claim, &so, &po) {
        return false;
    }
    let scaled_down = !pod_in_range(set, pod);
    let (want_set, want_pod) = wanted_owners(set, scaled_down);
    has_ref(claim, &so) == want_set && has_ref(claim, &po) == want_pod
}

/// Whether the claim should be owned by the set and by the pod.
fn wanted_owners(set: &StatefulSet, scaled_down: bool) -> (bool, bool) {
    match policy(set) {
        (d, s) if d == "Delete" && s == "Retain" => (true, false),
        (d, s) if d == "Retain" && s == "Delete" => (false, scaled_down),
        (d, s) if d == "Delete" && s == "Delete" => (!scaled_down, scaled_down),
        // Retain/Retain, and anything unknown (kube treats it as Retain).
        _ => (false, false),
    }
}

fn pod_in_range(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(&pod.name_any()).is_some_and(|(_, o)| in_range(set, o))
}

/// The claim's ownerReferences as the retention policy wants them
/// (`updateClaimOwnerRefForSetAndPod`): references to the set and the pod scrubbed, then
/// controller references added as [`claim_owners_up_to_date`] describes, none if
/// another controller owns the claim.
pub fn claim_owners(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Vec<OwnerReference> {
    let (so, po) = (set_owner(set), pod_owner(pod));
    let foreign = unexpected_controller(claim, &so, &po);
    let mut refs: Vec<OwnerReference> = claim
        .owner_references()
        .iter()
        .filter(|r| !matches(r, &so) && !matches(r, &po))
        .cloned()
        .collect();
    if foreign {
        return refs;
    }
    let (want_set, want_pod) = wanted_owners(set, !pod_in_range(set, pod));
    if want_pod {
        refs.push(controller_ref(pod));
    }
    if want_set {
        refs.push(controller_ref(set));
    }
    refs
}

/// The claims of the pod of `ordinal` as the set's templates make them
/// (`getPersistentVolumeClaims`): `<template>-<set>-<ordinal>` in the set's namespace,
/// labelled with the template's labels plus the selector's matchLabels. In template
/// order.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return vec![];
    };
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let template = t.name_any();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template, &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (template, claim)
        })
        .collect()
}

/// The pod's volumes with one per claim template referring to its claim
/// (`updateStorage`): the claims' first, then the template's other volumes.
fn with_storage(set: &StatefulSet, spec: &mut PodSpec, ordinal: i32) {
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: Some(false),
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(t, _)| *t == v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// Whether the pod's volumes refer to its claims (`storageMatches`).
fn storage_matches(set: &StatefulSet, pod: &Pod, ordinal: i32) -> bool {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    claims_for(set, ordinal).iter().all(|(template, claim)| {
        volumes.iter().any(|v| {
            v.name == *template
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim.name_any())
        })
    })
}

/// Whether the pod carries the set's identity (`identityMatches`).
fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    parent_and_ordinal(&name).is_some_and(|(parent, _)| parent == set.name_any())
        && pod.namespace() == set.namespace()
        && pod.labels().get(POD_NAME_LABEL) == Some(&name)
}

/// The pod's identity labels (`updateIdentity`).
fn set_identity(pod: &mut Pod, ordinal: i32) {
    let name = pod.name_any();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The pod of `ordinal` made from `revision` (`newStatefulSetPod` + `setPodRevision`):
/// named `<set>-<ordinal>`, hostname its name and subdomain the governing Service, the
/// identity and revision labels, one volume per claim template.
pub fn new_pod(set: &StatefulSet, revision: Revision, ordinal: i32) -> Pod {
    let t = revision.template;
    let meta = t.metadata.clone().unwrap_or_default();
    let name = pod_name(&set.name_any(), ordinal);
    let mut spec = t.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    with_storage(set, &mut spec, ordinal);
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", set.name_any())),
            namespace: set.namespace(),
            labels: Some(meta.labels.unwrap_or_default()),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    set_identity(&mut pod, ordinal);
    pod.labels_mut()
        .insert(REVISION_LABEL.into(), revision.name.to_string());
    pod
}

/// The revision a new pod of `ordinal` gets (`newVersionedStatefulSetPod`): the
/// current one below the partition (or, without a rollingUpdate, below the set's
/// current replicas), else the update revision.
pub fn revision_for<'a>(
    set: &StatefulSet,
    current: Revision<'a>,
    update: Revision<'a>,
    ordinal: i32,
) -> Revision<'a> {
    let spec = set.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.unwrap_or_default();
    let start = start_ordinal(set);
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let keep = match strategy.rolling_update.as_ref() {
        // kube's condition reads `A && B || C`: a partition applies whatever the type.
        Some(ru) => ordinal < start + ru.partition.unwrap_or(0),
        None => {
            rolling
                && ordinal
                    < start
                        + set
                            .status
                            .as_ref()
                            .and_then(|s| s.current_replicas)
                            .unwrap_or(0)
        }
    };
    if keep {
        current
    } else {
        update
    }
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

fn running_and_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running" && pod_ready(pod)
}

fn running_and_available(pod: &Pod, min_ready: i64, now: Timestamp) -> bool {
    pod_phase(pod) == "Running" && pod_available(pod, min_ready, now)
}

fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !is_deleting(pod)
}

/// A replica slot: the pod there, or the one this sync creates (not yet a pod).
enum Slot<'a> {
    Pod(&'a Pod),
    New(Box<Pod>),
}

impl Slot<'_> {
    fn pod(&self) -> Option<&Pod> {
        match self {
            Slot::Pod(p) => Some(p),
            Slot::New(_) => None,
        }
    }
}

/// Counts of `computeReplicaStatus` over the pods that exist.
fn count(status: &mut StatefulSetStatus, pods: &[&Pod], input: &Input, min_ready: i64) {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for p in pods {
        replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if running_and_available(p, min_ready, input.now) {
                available += 1;
            }
        }
        if !is_deleting(*p) {
            let rev = revision_of(p);
            current += i32::from(rev == input.current.name);
            updated += i32::from(rev == input.update.name);
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
}

/// Decides the sync of one StatefulSet (see the module doc).
pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0) as i64;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let monotonic = !parallel;
    let start = start_ordinal(set);
    let replica_count = replicas_of(set);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(input.current.name.to_string()),
        update_revision: Some(input.update.name.to_string()),
        collision_count: Some(input.collision_count),
        ..Default::default()
    };
    let mut out = Plan {
        parallel,
        ..Default::default()
    };

    // Pods by slot; pods out of range are condemned, highest ordinal first.
    let mut slots: Vec<Option<Slot>> = (0..replica_count).map(|_| None).collect();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in input.pods {
        let Some((_, ord)) = parent_and_ordinal(&p.name_any()) else {
            continue;
        };
        if in_range(set, ord) {
            slots[(ord - start) as usize] = Some(Slot::Pod(p));
        } else if ord >= 0 {
            condemned.push((ord, p));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let new_slot = |ord: i32| {
        let rev = revision_for(set, input.current, input.update, ord);
        Slot::New(Box::new(new_pod(set, rev, ord)))
    };
    let mut slots: Vec<Slot> = slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.unwrap_or_else(|| new_slot(start + i as i32)))
        .collect();

    // The first unhealthy pod: of the replicas in order, else of the condemned from the
    // lowest ordinal.
    #[derive(PartialEq)]
    enum Who {
        Replica,
        Condemned(String),
    }
    let first_unhealthy = if slots.iter().any(|s| !s.pod().is_some_and(healthy)) {
        Some(Who::Replica)
    } else {
        condemned
            .iter()
            .rev()
            .find(|(_, p)| !healthy(p))
            .map(|(_, p)| Who::Condemned(p.name_any()))
    };

    let finish = |slots: &[Slot], condemned: &[(i32, &Pod)], status: &mut StatefulSetStatus| {
        let mut pods: Vec<&Pod> = slots.iter().filter_map(Slot::pod).collect();
        pods.extend(condemned.iter().map(|(_, p)| *p));
        count(status, &pods, input, min_ready);
    };
    if is_deleting(set) {
        finish(&slots, &condemned, &mut status);
        out.status = complete(set, status);
        return out;
    }

    // 1. The replicas, in ordinal order.
    let mut phase = Vec::new();
    let mut stopped = false;
    for (i, slot) in slots.iter_mut().enumerate() {
        let ord = start + i as i32;
        if let Slot::Pod(p) = slot {
            let phase_name = pod_phase(p);
            if (phase_name == "Failed" || phase_name == "Succeeded") && !is_deleting(*p) {
                let (reason, what) = if phase_name == "Failed" {
                    ("RecreatingFailedPod", "failed")
                } else {
                    ("RecreatingTerminatedPod", "terminated")
                };
                phase.push(Action::DeletePod {
                    name: p.name_any(),
                    uid: p.uid().unwrap_or_default(),
                    warning: Some((
                        reason.to_string(),
                        format!(
                            "StatefulSet {}/{} is recreating {what} Pod {}",
                            set.namespace().unwrap_or_default(),
                            set.name_any(),
                            p.name_any()
                        ),
                    )),
                });
                // The replacement has the same name: it is made once the pod is gone
                // (kube tries at once and fails on the terminating pod).
                if monotonic {
                    stopped = true;
                    break;
                }
                continue;
            }
        }
        let pod = match slot {
            Slot::New(pod) => {
                let claims = claims_for(set, ord);
                let mut missing = Vec::new();
                let mut owners = Vec::new();
                let mut stale_claim = false;
                for (_, mut claim) in claims {
                    match input.claims.get(&claim.name_any()) {
                        None => {
                            claim.metadata.owner_references =
                                Some(claim_owners(&claim, set, pod)).filter(|r| !r.is_empty());
                            missing.push(claim);
                        }
                        Some(existing) => {
                            // `PodClaimIsStale`: a claim still owned by an earlier pod
                            // of this name (whenScaled: Delete) waits for its deletion.
                            let (_, scaled) = policy(set);
                            if scaled == "Delete" && stale(existing, &pod_owner(pod)) {
                                stale_claim = true;
                            }
                            if !claim_owners_up_to_date(existing, set, pod) {
                                owners.push(Action::SetClaimOwners {
                                    claim: existing.name_any(),
                                    owners: claim_owners(existing, set, pod),
                                });
                            }
                        }
                    }
                }
                if stale_claim {
                    stopped = true;
                    break;
                }
                phase.push(Action::CreatePod {
                    pod: (**pod).clone(),
                    claims: missing,
                });
                phase.extend(owners);
                if monotonic {
                    stopped = true;
                    break;
                }
                continue;
            }
            Slot::Pod(p) => *p,
        };
        if pod_phase(pod) == "Pending" {
            let missing: Vec<PersistentVolumeClaim> = claims_for(set, ord)
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| !input.claims.contains_key(&c.name_any()))
                .collect();
            if !missing.is_empty() {
                phase.push(Action::CreateClaims {
                    pod: pod.name_any(),
                    claims: missing,
                });
            }
        }
        if monotonic
            && (is_deleting(pod)
                || !running_and_ready(pod)
                || !running_and_available(pod, min_ready, input.now))
        {
            stopped = true;
            break;
        }
        // The invariants: identity, storage, retention owners.
        if !identity_matches(set, pod) || !storage_matches(set, pod, ord) {
            let mut fixed = pod.clone();
            set_identity(&mut fixed, ord);
            with_storage(set, fixed.spec.get_or_insert_with(PodSpec::default), ord);
            let missing: Vec<PersistentVolumeClaim> = claims_for(set, ord)
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| !input.claims.contains_key(&c.name_any()))
                .collect();
            if !missing.is_empty() {
                phase.push(Action::CreateClaims {
                    pod: pod.name_any(),
                    claims: missing,
                });
            }
            phase.push(Action::UpdatePod { pod: fixed });
        }
        phase.extend(fix_claim_owners(set, pod, ord, input.claims));
    }
    // A failed pod deleted this sync leaves its slot to a new pod (made next sync).
    for slot in slots.iter_mut() {
        if let Slot::Pod(p) = slot {
            if matches!(pod_phase(p), "Failed" | "Succeeded") && !is_deleting(*p) {
                let ord = parent_and_ordinal(&p.name_any()).map_or(0, |(_, o)| o);
                *slot = new_slot(ord);
            }
        }
    }
    out.phases.push(phase);
    if stopped {
        finish(&slots, &condemned, &mut status);
        out.status = complete(set, status);
        out.requeue = requeue(set, &out.status);
        return out;
    }

    // 2. The retention owners of the condemned pods' claims.
    let mut phase = Vec::new();
    for (ord, p) in &condemned {
        phase.extend(fix_claim_owners(set, p, *ord, input.claims));
    }
    out.phases.push(phase);

    // 3. Scale down: the highest ordinal first, one at a time when ordered.
    let mut phase = Vec::new();
    for (_, p) in &condemned {
        if is_deleting(*p) {
            if monotonic {
                stopped = true;
                break;
            }
            continue;
        }
        let first = first_unhealthy == Some(Who::Condemned(p.name_any()));
        if monotonic
            && !first
            && (!running_and_ready(p) || !running_and_available(p, min_ready, input.now))
        {
            stopped = true;
            break;
        }
        phase.push(Action::DeletePod {
            name: p.name_any(),
            uid: p.uid().unwrap_or_default(),
            warning: None,
        });
        if monotonic {
            stopped = true;
            break;
        }
    }
    out.phases.push(phase);
    finish(&slots, &condemned, &mut status);
    if stopped {
        out.status = complete(set, status);
        out.requeue = requeue(set, &out.status);
        return out;
    }

    // 4. The rolling update: the highest ordinal not of the update revision is
    // replaced, once those above it are healthy; OnDelete waits for the user.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate" {
        let update_min = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0) as usize;
        let mut phase = Vec::new();
        // Deletes a pod not of the update revision (nor going already), to be made
        // again of it; whether it did.
        let replace = |p: &Pod, phase: &mut Vec<Action>, status: &mut StatefulSetStatus| {
            if revision_of(p) == input.update.name || is_deleting(p) {
                return false;
            }
            phase.push(Action::DeletePod {
                name: p.name_any(),
                uid: p.uid().unwrap_or_default(),
                warning: None,
            });
            status.current_replicas = status.current_replicas.map(|c| c - 1);
            true
        };
        let max_unavailable = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.as_ref());
        if let Some(max) = max_unavailable {
            // `maxUnavailable` (kube's MaxUnavailableStatefulSet, on by default from
            // 1.35): up to that many pods are replaced at once, highest ordinals first,
            // counting every unavailable pod of the set against it.
            let max = crate::rollout::scaled_value(max, replica_count, true).max(1) as usize;
            let unavailable = slots
                .iter()
                .filter(|s| {
                    s.pod().is_none_or(|p| {
                        is_deleting(p) || !running_and_available(p, min_ready, input.now)
                    })
                })
                .count();
            let mut budget = max.saturating_sub(unavailable);
            for target in (update_min..slots.len()).rev() {
                if budget == 0 {
                    break;
                }
                let Some(p) = slots[target].pod() else {
                    continue;
                };
                if replace(p, &mut phase, &mut status) {
                    budget -= 1;
                }
            }
            out.phases.push(phase);
            out.status = complete(set, status);
            out.requeue = requeue(set, &out.status);
            return out;
        }
        for target in (update_min..slots.len()).rev() {
            let Some(p) = slots[target].pod() else {
                break;
            };
            if replace(p, &mut phase, &mut status) {
                break;
            }
            if !healthy(p) {
                break;
            }
        }
        out.phases.push(phase);
    }
    out.status = complete(set, status);
    out.requeue = requeue(set, &out.status);
    out
}

/// The claim owner updates a pod's claims need (`UpdatePodClaimForRetentionPolicy`).
fn fix_claim_owners(
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
    claims: &BTreeMap<String, &PersistentVolumeClaim>,
) -> Vec<Action> {
    claims_for(set, ordinal)
        .into_iter()
        .filter_map(|(_, c)| claims.get(&c.name_any()).copied())
        .filter(|c| !claim_owners_up_to_date(c, set, pod))
        .map(|c| Action::SetClaimOwners {
            claim: c.name_any(),
            owners: claim_owners(c, set, pod),
        })
        .collect()
}

/// `completeRollingUpdate`: once every pod is updated and Ready, the update revision
/// becomes the current one.
fn complete(set: &StatefulSet, mut status: StatefulSetStatus) -> StatefulSetStatus {
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling
        && status.updated_replicas.unwrap_or(0) == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    status
}

/// One more look after minReadySeconds while pods are Ready but not yet available.
fn requeue(set: &StatefulSet, status: &StatefulSetStatus) -> Option<Duration> {
    let min_ready = set.spec.as_ref()?.min_ready_seconds.unwrap_or(0);
    (min_ready > 0 && status.available_replicas.unwrap_or(0) != replicas_of(set))
        .then(|| Duration::from_secs(min_ready as u64))
}
