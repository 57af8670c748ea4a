//! kube-scheduler's VolumeBinding plugin as pure functions over what the scheduler's
//! informers hold ([`Volumes`]): PreFilter ([`pre_filter`]: the pod's claims exist, are
//! not being deleted, and none of an Immediate class is unbound), Filter ([`filter`]: a
//! bound claim's PersistentVolume node affinity; an unbound WaitForFirstConsumer claim
//! has an Available PersistentVolume the node can use, or can be provisioned for the
//! node), and the PreBind check ([`check_provisioned`]: the claims the scheduler gave a
//! node to are bound, or why scheduling must start over).
//!
//! PreBind gives the claim the node (`volume.kubernetes.io/selected-node`) in both
//! cases: the PersistentVolume binder then binds it to a volume that node can use, where
//! kube-scheduler would write the volume's `claimRef` itself.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use skiff_api::names::{BIND_COMPLETED_ANNOTATION, SELECTED_NODE_ANNOTATION};
use skiff_api::volumes::{claim_class, find_match, volume_fits_node};

/// A class whose volumes are made by hand (`volume.NotSupportedProvisioner`).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Filter reason: a bound claim's volume cannot be used on the node.
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Filter reason: an unbound claim cannot be bound or provisioned for the node.
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// Filter reason: a claim is bound to a volume that does not exist.
pub const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Filter reason (VolumeRestrictions): another pod uses a ReadWriteOncePod claim of
/// this pod.
pub const RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
/// PreFilter message: a claim of an Immediate class is not bound yet.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What the scheduler knows of claims, volumes and classes.
pub trait Volumes {
    /// The claim `ns/name`.
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// The PersistentVolume `name`.
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// The StorageClass `name`.
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
    /// Every PersistentVolume.
    fn volumes(&self) -> Vec<Arc<PersistentVolume>>;
}

/// A pod's claims, sorted as PreFilter sorts them.
#[derive(Debug, Clone, Default)]
pub struct PodClaims {
    /// Claims bound to a volume.
    pub bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of a WaitForFirstConsumer class: bound once a node is chosen.
    pub delayed: Vec<Arc<PersistentVolumeClaim>>,
}

/// The claim names the pod's volumes use (`persistentVolumeClaim`, and the
/// `<pod>-<volume>` claim of a generic ephemeral volume), with whether it is ephemeral.
pub fn claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), false))
            } else if v.ephemeral.is_some() {
                Some((format!("{pod_name}-{}", v.name), true))
            } else {
                None
            }
        })
        .collect()
}

/// A claim bound to its volume (`isPVCFullyBound`: the PersistentVolume controller
/// marks the binding complete; the Bound phase counts too, for binders that only set it).
pub fn fully_bound(pvc: &PersistentVolumeClaim) -> bool {
    let named = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let completed = pvc.annotations().contains_key(BIND_COMPLETED_ANNOTATION)
        || pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    named && completed
}

/// Whether the claim waits for its first consumer (`IsDelayBindingMode`): its class
/// says WaitForFirstConsumer. No class, or one not found, binds at once.
pub fn delay_binding(pvc: &PersistentVolumeClaim, vols: &dyn Volumes) -> bool {
    let name = claim_class(pvc);
    !name.is_empty()
        && vols
            .class(&name)
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

/// VolumeBinding's PreFilter: `Ok(None)` when the pod uses no claim; `Err` is the
/// reason no node can run the pod (UnschedulableAndUnresolvable), in kube's words.
pub fn pre_filter(pod: &Pod, vols: &dyn Volumes) -> Result<Option<PodClaims>, String> {
    let names = claim_names(pod);
    if names.is_empty() {
        return Ok(None);
    }
    let ns = pod.namespace().unwrap_or_default();
    let mut out = PodClaims::default();
    let mut immediate = false;
    for (name, ephemeral) in names {
        let Some(pvc) = vols.claim(&ns, &name) else {
            return Err(if ephemeral {
                format!("waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}")
            } else {
                format!("persistentvolumeclaim {name:?} not found")
            });
        };
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            let pv = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            return Err(format!(
                "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {pv:?}"
            ));
        }
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        let unnamed = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        if fully_bound(&pvc) {
            out.bound.push(pvc);
        } else if unnamed && delay_binding(&pvc, vols) {
            out.delayed.push(pvc);
        } else {
            // Pre-bound claims wait for the PersistentVolume controller too.
            immediate = true;
        }
    }
    if immediate {
        return Err(UNBOUND_IMMEDIATE.to_string());
    }
    Ok(Some(out))
}

/// VolumeRestrictions' ReadWriteOncePod rule: whether one of `others` (the pods the
/// scheduler counts, bound or assumed, on any node) uses a claim of `pod` whose access
/// modes include `ReadWriteOncePod`. kube-scheduler then rejects every node with
/// [`RWOP_CONFLICT`] (preemption could free the claim).
pub fn read_write_once_pod_conflict<'a>(
    pod: &Pod,
    vols: &dyn Volumes,
    others: impl IntoIterator<Item = &'a Pod>,
) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    let exclusive: Vec<String> = claim_names(pod)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            vols.claim(&ns, name).is_some_and(|c| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.access_modes.as_ref())
                    .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
            })
        })
        .collect();
    if exclusive.is_empty() {
        return false;
    }
    others.into_iter().any(|other| {
        other.uid() != pod.uid()
            && other.namespace().unwrap_or_default() == ns
            && claim_names(other)
                .iter()
                .any(|(name, _)| exclusive.contains(name))
    })
}

/// Whether the node's labels are in the class's `allowedTopologies` (none: anywhere).
pub fn topology_allows(class: &StorageClass, node: &Node) -> bool {
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    terms.iter().any(|t| {
        t.match_label_expressions
            .iter()
            .flatten()
            .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

/// VolumeBinding's Filter for one node: the reasons it cannot run the pod, in
/// kube-scheduler's order (none: it can).
pub fn filter(claims: &PodClaims, vols: &dyn Volumes, node: &Node) -> Vec<&'static str> {
    let node_name = node.name_any();
    let mut bound_ok = true;
    let mut unbound_ok = true;
    let mut pvs_found = true;
    for pvc in &claims.bound {
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        match vols.volume(&pv_name) {
            None => {
                pvs_found = false;
                break;
            }
            Some(pv) if !volume_fits_node(&pv, node) => {
                bound_ok = false;
                break;
            }
            Some(_) => {}
        }
    }
    for pvc in &claims.delayed {
        if let Some(selected) = pvc.annotations().get(SELECTED_NODE_ANNOTATION) {
            if *selected != node_name {
                unbound_ok = false;
                break;
            }
        }
        // A volume made beforehand that this node can use (`FindMatchingVolume`), else
        // one the class's provisioner can make for it.
        let pvs = vols.volumes();
        if find_match(pvc, pvs.iter().map(|pv| &**pv), true, Some(node)).is_some() {
            continue;
        }
        let class = vols.class(&claim_class(pvc));
        let provisions = class.as_ref().is_some_and(|c| {
            !c.provisioner.is_empty() && c.provisioner != NO_PROVISIONER && topology_allows(c, node)
        });
        if !provisions {
            unbound_ok = false;
            break;
        }
    }
    let mut reasons = Vec::new();
    if !bound_ok {
        reasons.push(NODE_CONFLICT);
    }
    if !unbound_ok {
        reasons.push(BIND_CONFLICT);
    }
    if !pvs_found {
        reasons.push(PV_NOT_EXIST);
    }
    reasons
}

/// PreBind's check of the claims given to `node` (`checkBindings`), on their current
/// state (`None`: gone): `Ok(true)` once all are bound, `Ok(false)` to wait more, `Err`
/// when scheduling must start over (the provisioner gave the claim back, or its volume
/// does not fit the node).
pub fn check_provisioned(
    claims: &[(String, Option<Arc<PersistentVolumeClaim>>)],
    vols: &dyn Volumes,
    node: &Node,
) -> Result<bool, String> {
    let node_name = node.name_any();
    let mut all = true;
    for (name, pvc) in claims {
        let Some(pvc) = pvc else {
            return Err(format!(
                "failed to check provisioning pvc: persistentvolumeclaim {name:?} not found"
            ));
        };
        if pvc.annotations().get(SELECTED_NODE_ANNOTATION) != Some(&node_name) {
            // The provisioner removes the annotation when it cannot make the volume.
            return Err(format!("provisioning failed for PVC {name:?}"));
        }
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if !pv_name.is_empty() {
            match vols.volume(&pv_name) {
                // Not seen yet: next time.
                None => {
                    all = false;
                    continue;
                }
                Some(pv) if !volume_fits_node(&pv, node) => {
                    return Err(format!(
                        "pv {pv_name:?} node affinity doesn't match node {node_name:?}: no matching NodeSelectorTerms"
                    ));
                }
                Some(_) => {}
            }
        }
        if !fully_bound(pvc) {
            all = false;
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        claims: HashMap<String, Arc<PersistentVolumeClaim>>,
        pvs: HashMap<String, Arc<PersistentVolume>>,
        classes: HashMap<String, Arc<StorageClass>>,
    }

    impl Volumes for Fake {
        fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.claims.get(&format!("{ns}/{name}")).cloned()
        }
        fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.pvs.get(name).cloned()
        }
        fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
            self.classes.get(name).cloned()
        }
        fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
            self.pvs.values().cloned().collect()
        }
    }

    impl Fake {
        fn standard() -> Self {
            let mut f = Fake::default();
            f.add_class("standard", "rancher.io/local-path", "WaitForFirstConsumer");
            f.add_class("fast", "example.com/fast", "Immediate");
            f.add_class("manual", NO_PROVISIONER, "WaitForFirstConsumer");
            f
        }
        fn add_class(&mut self, name: &str, provisioner: &str, mode: &str) {
            let c: StorageClass = serde_json::from_value(json!({
                "metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode
            }))
            .expect("class");
            self.classes.insert(name.into(), Arc::new(c));
        }
        fn add_claim(&mut self, name: &str, v: serde_json::Value) {
            let mut base = json!({"metadata": {"name": name, "namespace": "default"},
                                  "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}});
            merge(&mut base, v);
            let c: PersistentVolumeClaim = serde_json::from_value(base).expect("claim");
            self.claims.insert(format!("default/{name}"), Arc::new(c));
        }
        fn add_pv(&mut self, name: &str, node: &str) {
            let pv: PersistentVolume = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"hostPath": {"path": "/x"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
            }))
            .expect("pv");
            self.pvs.insert(name.into(), Arc::new(pv));
        }
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pod(claims: &[&str]) -> Pod {
        let vols: Vec<serde_json::Value> = claims
            .iter()
            .map(|c| json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "volumes": vols}
        }))
        .expect("pod")
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        )
        .expect("node")
    }

    const BOUND: fn(&str) -> serde_json::Value = |pv| {
        json!({"metadata": {"annotations": {BIND_COMPLETED_ANNOTATION: "yes"}},
               "spec": {"volumeName": pv}, "status": {"phase": "Bound"}})
    };

    #[test]
    fn pre_filter_refuses_missing_deleted_lost_and_unbound_immediate_claims() {
        let mut f = Fake::standard();
        let no_claims: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
                .expect("pod");
        assert!(matches!(pre_filter(&no_claims, &f), Ok(None)));
        assert_eq!(
            pre_filter(&pod(&["data"]), &f).err().as_deref(),
            Some("persistentvolumeclaim \"data\" not found")
        );
        f.add_claim("gone", json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["kubernetes.io/pvc-protection"]}}));
        assert_eq!(
            pre_filter(&pod(&["gone"]), &f).err().as_deref(),
            Some("persistentvolumeclaim \"gone\" is being deleted")
        );
        f.add_claim(
            "lost",
            json!({"spec": {"volumeName": "pv-1"}, "status": {"phase": "Lost"}}),
        );
        assert_eq!(
            pre_filter(&pod(&["lost"]), &f).err().as_deref(),
            Some("persistentvolumeclaim \"lost\" bound to non-existent persistentvolume \"pv-1\"")
        );
        f.add_claim("now", json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(
            pre_filter(&pod(&["now"]), &f).err().as_deref(),
            Some(UNBOUND_IMMEDIATE)
        );
        // No class (or an unknown one) binds at once too.
        f.add_claim("classless", json!({"spec": {"storageClassName": ""}}));
        assert_eq!(
            pre_filter(&pod(&["classless"]), &f).err().as_deref(),
            Some(UNBOUND_IMMEDIATE)
        );
        f.add_claim("later", json!({}));
        f.add_claim("done", BOUND("pv-done"));
        let c = pre_filter(&pod(&["later", "done"]), &f)
            .expect("ok")
            .expect("claims");
        assert_eq!(c.delayed.len(), 1);
        assert_eq!(c.bound.len(), 1);
    }

    #[test]
    fn filter_checks_bound_volumes_node_affinity_and_provisioning() {
        let mut f = Fake::standard();
        f.add_claim("done", BOUND("pv-1"));
        f.add_pv("pv-1", "n1");
        let c = pre_filter(&pod(&["done"]), &f)
            .expect("ok")
            .expect("claims");
        assert!(filter(&c, &f, &node("n1")).is_empty());
        assert_eq!(filter(&c, &f, &node("n2")), vec![NODE_CONFLICT]);
        f.add_claim("orphan", BOUND("pv-missing"));
        let c = pre_filter(&pod(&["orphan"]), &f)
            .expect("ok")
            .expect("claims");
        assert_eq!(filter(&c, &f, &node("n1")), vec![PV_NOT_EXIST]);
        // WaitForFirstConsumer: any node, until one is selected.
        f.add_claim("later", json!({}));
        let c = pre_filter(&pod(&["later"]), &f)
            .expect("ok")
            .expect("claims");
        assert!(filter(&c, &f, &node("n2")).is_empty());
        f.add_claim(
            "picked",
            json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}}),
        );
        let c = pre_filter(&pod(&["picked"]), &f)
            .expect("ok")
            .expect("claims");
        assert!(filter(&c, &f, &node("n1")).is_empty());
        assert_eq!(filter(&c, &f, &node("n2")), vec![BIND_CONFLICT]);
        // A class without a provisioner cannot make the volume.
        f.add_claim("manual", json!({"spec": {"storageClassName": "manual"}}));
        let c = pre_filter(&pod(&["manual"]), &f)
            .expect("ok")
            .expect("claims");
        assert_eq!(filter(&c, &f, &node("n1")), vec![BIND_CONFLICT]);
        // ... but a volume made by hand for a node serves the claim there (a local PV):
        // big enough, of its class and access modes, not claimed by another.
        let local = |name: &str, node: &str, size: &str, claimed: bool| {
            let mut pv = json!({"metadata": {"name": name},
                "spec": {"storageClassName": "manual", "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                "status": {"phase": "Available"}});
            if claimed {
                pv["spec"]["claimRef"] = json!({"namespace": "default", "name": "other"});
            }
            Arc::new(serde_json::from_value::<PersistentVolume>(pv).expect("pv"))
        };
        f.add_claim(
            "manual",
            json!({"spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}}}}),
        );
        let c = pre_filter(&pod(&["manual"]), &f)
            .expect("ok")
            .expect("claims");
        f.pvs
            .insert("small".into(), local("small", "n1", "1Gi", false));
        f.pvs
            .insert("taken".into(), local("taken", "n1", "10Gi", true));
        f.pvs
            .insert("disk-n2".into(), local("disk-n2", "n2", "10Gi", false));
        assert_eq!(filter(&c, &f, &node("n1")), vec![BIND_CONFLICT]);
        assert!(filter(&c, &f, &node("n2")).is_empty());
    }

    #[test]
    fn a_read_write_once_pod_claim_has_one_user() {
        let mut f = Fake::standard();
        f.add_claim(
            "solo",
            json!({"spec": {"accessModes": ["ReadWriteOncePod"]}}),
        );
        f.add_claim(
            "shared",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        );
        let with_uid = |claims: &[&str], uid: &str| {
            let mut p = pod(claims);
            p.metadata.uid = Some(uid.into());
            p
        };
        let me = with_uid(&["solo"], "me");
        assert!(!read_write_once_pod_conflict(&me, &f, []));
        // The pod itself (assumed) does not count.
        assert!(!read_write_once_pod_conflict(&me, &f, [&me]));
        let other = with_uid(&["solo"], "other");
        assert!(read_write_once_pod_conflict(&me, &f, [&other]));
        // ReadWriteOnce claims may be shared (on one node, which VolumeBinding sees to).
        let a = with_uid(&["shared"], "a");
        let b = with_uid(&["shared"], "b");
        assert!(!read_write_once_pod_conflict(&a, &f, [&b]));
        // Another namespace's claim of the same name is another claim.
        let mut elsewhere = with_uid(&["solo"], "x");
        elsewhere.metadata.namespace = Some("other".into());
        assert!(!read_write_once_pod_conflict(&me, &f, [&elsewhere]));
    }

    #[test]
    fn allowed_topologies_limit_provisioning() {
        let mut f = Fake::standard();
        let c: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "zoned"}, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [{"key": "kubernetes.io/hostname", "values": ["n2"]}]}]
        }))
        .expect("class");
        f.classes.insert("zoned".into(), Arc::new(c));
        f.add_claim("z", json!({"spec": {"storageClassName": "zoned"}}));
        let c = pre_filter(&pod(&["z"]), &f).expect("ok").expect("claims");
        assert_eq!(filter(&c, &f, &node("n1")), vec![BIND_CONFLICT]);
        assert!(filter(&c, &f, &node("n2")).is_empty());
    }

    #[test]
    fn prebind_waits_for_the_binding_and_gives_up_when_the_provisioner_does() {
        let mut f = Fake::standard();
        let n1 = node("n1");
        f.add_claim(
            "c",
            json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}}),
        );
        let now = |f: &Fake| vec![("c".to_string(), f.claim("default", "c"))];
        assert_eq!(check_provisioned(&now(&f), &f, &n1), Ok(false));
        // Bound, but its volume not seen yet: wait.
        f.add_claim(
            "c",
            json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}},
                                "spec": {"volumeName": "pv-c"}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(check_provisioned(&now(&f), &f, &n1), Ok(false));
        f.add_pv("pv-c", "n1");
        assert_eq!(check_provisioned(&now(&f), &f, &n1), Ok(true));
        f.add_pv("pv-c", "n2");
        assert!(check_provisioned(&now(&f), &f, &n1)
            .expect_err("conflict")
            .starts_with("pv \"pv-c\" node affinity doesn't match node \"n1\""));
        f.add_claim("c", json!({}));
        assert_eq!(
            check_provisioned(&now(&f), &f, &n1),
            Err("provisioning failed for PVC \"c\"".to_string())
        );
        assert!(check_provisioned(&[("x".into(), None)], &f, &n1).is_err());
    }
}
