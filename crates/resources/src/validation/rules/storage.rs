//! PersistentVolumes, PersistentVolumeClaims (`ValidatePersistentVolume(Claim)[Update]`
//! in `pkg/apis/core/validation`) and StorageClasses (`pkg/apis/storage/validation`).

use serde_json::{json, Value};

use super::{arr, s, Errs};
use crate::validation::FieldError;

/// The access modes kube accepts, in its order.
const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// The volume sources of a PersistentVolumeSpec.
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn access_modes(spec: &Value, path: &str, e: &mut Errs) {
    let modes = arr(spec, "/accessModes");
    if modes.is_empty() {
        e.push(FieldError::required(
            format!("{path}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported(
                format!("{path}.accessModes"),
                m.clone(),
                ACCESS_MODES,
            ));
        }
    }
}

/// `ValidatePersistentVolume` (the spec's capacity, modes, one source, reclaim policy).
pub(super) fn validate_pv(obj: &Value, e: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    access_modes(spec, "spec", e);
    if spec
        .get("capacity")
        .and_then(Value::as_object)
        .is_none_or(|c| c.is_empty())
    {
        e.push(FieldError::required("spec.capacity", ""));
    } else if spec.pointer("/capacity/storage").is_none() {
        e.push(FieldError::not_supported(
            "spec.capacity",
            json!(spec["capacity"]
                .as_object()
                .and_then(|c| c.keys().next().cloned())
                .unwrap_or_default()),
            &["storage"],
        ));
    }
    if let Some(p) = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
    {
        if !["Delete", "Recycle", "Retain"].contains(&p) {
            e.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                json!(p),
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => e.push(FieldError::required("spec", "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                e.push(FieldError::forbidden(
                    format!("spec.{k}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if spec.get("hostPath").is_some() && s(spec, "/hostPath/path").unwrap_or("").is_empty() {
        e.push(FieldError::required("spec.hostPath.path", ""));
    }
    if spec.get("local").is_some() && spec.get("nodeAffinity").is_none() {
        e.push(FieldError::required(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        ));
    }
}

/// `ValidatePersistentVolumeClaim` (create).
pub(super) fn validate_pvc(obj: &Value, e: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    access_modes(spec, "spec", e);
    if spec.pointer("/resources/requests/storage").is_none() {
        e.push(FieldError::required("spec.resources[storage]", ""));
    }
}

/// `ValidatePersistentVolumeClaimUpdate`: the spec is immutable but for the volume
/// name set once, a class set where none was, and, for a bound claim, the storage
/// request (which may grow, not shrink below the capacity).
pub(super) fn validate_pvc_update(obj: &Value, old: &Value, e: &mut Errs) {
    let mut new_spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let mut old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    if s(&old_spec, "/volumeName").unwrap_or("").is_empty() {
        old_spec["volumeName"] = new_spec.get("volumeName").cloned().unwrap_or(Value::Null);
    }
    // Retroactive default class assignment: nil → a class is allowed.
    if old_spec.get("storageClassName").is_none_or(Value::is_null) {
        old_spec["storageClassName"] = new_spec
            .get("storageClassName")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let bound = s(obj, "/status/phase") == Some("Bound");
    if bound {
        if let Some(req) = new_spec.pointer("/resources/requests/storage").cloned() {
            let q = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .and_then(skiff_api::quantity::parse)
            };
            let cap = q(old.pointer("/status/capacity/storage"));
            let before = q(old.pointer("/spec/resources/requests/storage"));
            let want = q(Some(&req));
            // A shrinking request (recovery from a failed expansion) may not go below
            // what the volume has.
            if let (Some(cap), Some(before), Some(want)) = (cap, before, want) {
                if want < before && want < cap {
                    e.push(FieldError::forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than status.capacity",
                    ));
                }
            }
            old_spec["resources"]["requests"]["storage"] = req;
        }
    }
    // Drop nulls, so that an absent field and a null one compare equal.
    strip_nulls(&mut new_spec);
    strip_nulls(&mut old_spec);
    if new_spec != old_spec {
        e.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
}

fn strip_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

/// `ValidateStorageClass` and, on update, `ValidateStorageClassUpdate`.
pub(super) fn validate_storage_class(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    if s(obj, "/provisioner").unwrap_or("").is_empty() {
        e.push(FieldError::required("provisioner", ""));
    }
    if let Some(p) = s(obj, "/reclaimPolicy") {
        if !["Delete", "Retain"].contains(&p) {
            e.push(FieldError::not_supported(
                "reclaimPolicy",
                json!(p),
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = s(obj, "/volumeBindingMode") {
        if !["Immediate", "WaitForFirstConsumer"].contains(&m) {
            e.push(FieldError::not_supported(
                "volumeBindingMode",
                json!(m),
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
    let Some(old) = old else { return };
    let params = |o: &Value| {
        o.get("parameters")
            .filter(|p| p.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
    };
    if params(obj) != params(old) {
        e.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if s(obj, "/provisioner") != s(old, "/provisioner") {
        e.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if s(obj, "/reclaimPolicy") != s(old, "/reclaimPolicy") {
        e.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if s(obj, "/volumeBindingMode") != s(old, "/volumeBindingMode") {
        e.push(FieldError::invalid(
            "volumeBindingMode",
            json!(s(obj, "/volumeBindingMode")),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::registry::lookup;

    fn messages(plural: &str, group: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
        let info = lookup(group, "v1", plural).unwrap();
        crate::validate(info, obj, old)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn sc(provisioner: &str, reclaim: &str, mode: &str, params: Value) -> Value {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "s", "resourceVersion": "1"}, "provisioner": provisioner,
            "reclaimPolicy": reclaim, "volumeBindingMode": mode, "parameters": params})
    }

    #[test]
    fn storage_class_fields_are_immutable_with_kube_messages() {
        let old = sc("a", "Delete", "Immediate", json!({"k": "v"}));
        let new = sc("b", "Retain", "WaitForFirstConsumer", json!({"k": "w"}));
        assert_eq!(
            messages("storageclasses", "storage.k8s.io", &new, Some(&old)),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        let bad = sc("", "Recycle", "Immediate", json!({}));
        assert_eq!(
            messages("storageclasses", "storage.k8s.io", &bad, None),
            [
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            ]
        );
    }

    fn pvc(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c", "namespace": "d", "resourceVersion": "1"},
            "spec": spec, "status": status})
    }

    #[test]
    fn claims_need_modes_and_storage_and_keep_their_spec() {
        assert_eq!(
            messages(
                "persistentvolumeclaims",
                "",
                &pvc(json!({}), json!({})),
                None
            ),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}}});
        let pending = pvc(spec.clone(), json!({"phase": "Pending"}));
        // The binder sets the volume name once.
        let mut named = pending.clone();
        named["spec"]["volumeName"] = json!("pvc-1");
        assert!(messages("persistentvolumeclaims", "", &named, Some(&pending)).is_empty());
        // Growing the request of a pending claim is refused...
        let mut grown = pending.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            messages("persistentvolumeclaims", "", &grown, Some(&pending)),
            ["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
        // ...allowed once bound, not below the capacity.
        let bound = pvc(
            spec,
            json!({"phase": "Bound", "capacity": {"storage": "1Gi"}}),
        );
        let mut grown = bound.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(messages("persistentvolumeclaims", "", &grown, Some(&bound)).is_empty());
        let mut shrunk = bound.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("1Mi");
        assert_eq!(
            messages("persistentvolumeclaims", "", &shrunk, Some(&bound)),
            ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
    }

    #[test]
    fn volumes_need_exactly_one_source() {
        let pv = |spec: Value| {
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "v"}, "spec": spec})
        };
        assert_eq!(
            messages(
                "persistentvolumes",
                "",
                &pv(json!({"accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}})),
                None
            ),
            ["spec: Required value: must specify a volume type"]
        );
        assert_eq!(
            messages(
                "persistentvolumes",
                "",
                &pv(json!({"accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/a"},
                "nfs": {"server": "s", "path": "/"}})),
                None
            ),
            ["spec.nfs: Forbidden: may not specify more than 1 volume type"]
        );
        assert_eq!(
            messages(
                "persistentvolumes",
                "",
                &pv(json!({"hostPath": {"path": "/a"}})),
                None
            ),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.capacity: Required value",
            ]
        );
    }
}
