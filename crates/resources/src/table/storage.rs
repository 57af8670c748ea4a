//! Columns and cells of the storage kinds (`printPersistentVolume`,
//! `printPersistentVolumeClaim`, `printStorageClass`, `printCSIDriver`, `printCSINode`,
//! `printVolumeAttachment`, `printStorageCapacity` in kube-apiserver's printers).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::access::*;
use super::columns::{age_col, col, doc, name_col, Col};

/// The annotation that marks the default StorageClass (and its beta spelling, which
/// kube still honours).
const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

fn core(t: &str) -> String {
    format!("io.k8s.api.core.v1.{t}")
}
fn storage(t: &str) -> String {
    format!("io.k8s.api.storage.v1.{t}")
}

/// Columns of a storage kind, `None` for other kinds.
pub(super) fn columns(group: &str, kind: &str) -> Option<Vec<Col>> {
    Some(match (group, kind) {
        ("", "PersistentVolume") => vec![
            name_col(),
            col(
                "Capacity",
                "string",
                0,
                doc(&core("PersistentVolumeSpec"), "capacity"),
            ),
            col(
                "Access Modes",
                "string",
                0,
                doc(&core("PersistentVolumeSpec"), "accessModes"),
            ),
            col(
                "Reclaim Policy",
                "string",
                0,
                doc(
                    &core("PersistentVolumeSpec"),
                    "persistentVolumeReclaimPolicy",
                ),
            ),
            col(
                "Status",
                "string",
                0,
                doc(&core("PersistentVolumeStatus"), "phase"),
            ),
            col(
                "Claim",
                "string",
                0,
                doc(&core("PersistentVolumeSpec"), "claimRef"),
            ),
            col("StorageClass", "string", 0, "StorageClass of the pv"),
            col(
                "VolumeAttributesClass",
                "string",
                0,
                "VolumeAttributesClass of the pv",
            ),
            col(
                "Reason",
                "string",
                0,
                doc(&core("PersistentVolumeStatus"), "reason"),
            ),
            age_col(),
            col(
                "VolumeMode",
                "string",
                1,
                doc(&core("PersistentVolumeSpec"), "volumeMode"),
            ),
        ],
        ("", "PersistentVolumeClaim") => vec![
            name_col(),
            col(
                "Status",
                "string",
                0,
                doc(&core("PersistentVolumeClaimStatus"), "phase"),
            ),
            col(
                "Volume",
                "string",
                0,
                doc(&core("PersistentVolumeClaimSpec"), "volumeName"),
            ),
            col(
                "Capacity",
                "string",
                0,
                doc(&core("PersistentVolumeClaimStatus"), "capacity"),
            ),
            col(
                "Access Modes",
                "string",
                0,
                doc(&core("PersistentVolumeClaimStatus"), "accessModes"),
            ),
            col("StorageClass", "string", 0, "StorageClass of the pvc"),
            col(
                "VolumeAttributesClass",
                "string",
                0,
                "VolumeAttributesClass of the pvc",
            ),
            age_col(),
            col(
                "VolumeMode",
                "string",
                1,
                doc(&core("PersistentVolumeClaimSpec"), "volumeMode"),
            ),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            name_col(),
            col(
                "Provisioner",
                "string",
                0,
                doc(&storage("StorageClass"), "provisioner"),
            ),
            col(
                "ReclaimPolicy",
                "string",
                0,
                doc(&storage("StorageClass"), "reclaimPolicy"),
            ),
            col(
                "VolumeBindingMode",
                "string",
                0,
                doc(&storage("StorageClass"), "volumeBindingMode"),
            ),
            col(
                "AllowVolumeExpansion",
                "string",
                0,
                doc(&storage("StorageClass"), "allowVolumeExpansion"),
            ),
            age_col(),
        ],
        ("storage.k8s.io", "CSIDriver") => vec![
            name_col(),
            col(
                "AttachRequired",
                "boolean",
                0,
                doc(&storage("CSIDriverSpec"), "attachRequired"),
            ),
            col(
                "PodInfoOnMount",
                "boolean",
                0,
                doc(&storage("CSIDriverSpec"), "podInfoOnMount"),
            ),
            col(
                "StorageCapacity",
                "boolean",
                0,
                doc(&storage("CSIDriverSpec"), "storageCapacity"),
            ),
            col(
                "TokenRequests",
                "string",
                0,
                doc(&storage("CSIDriverSpec"), "tokenRequests"),
            ),
            col(
                "RequiresRepublish",
                "boolean",
                0,
                doc(&storage("CSIDriverSpec"), "requiresRepublish"),
            ),
            col(
                "Modes",
                "string",
                0,
                doc(&storage("CSIDriverSpec"), "volumeLifecycleModes"),
            ),
            age_col(),
        ],
        ("storage.k8s.io", "CSINode") => vec![
            name_col(),
            col(
                "Drivers",
                "integer",
                0,
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            age_col(),
        ],
        ("storage.k8s.io", "VolumeAttachment") => vec![
            name_col(),
            col(
                "Attacher",
                "string",
                0,
                doc(&storage("VolumeAttachmentSpec"), "attacher"),
            ),
            col(
                "PV",
                "string",
                0,
                doc(&storage("VolumeAttachmentSource"), "persistentVolumeName"),
            ),
            col(
                "Node",
                "string",
                0,
                doc(&storage("VolumeAttachmentSpec"), "nodeName"),
            ),
            col(
                "Attached",
                "boolean",
                0,
                doc(&storage("VolumeAttachmentStatus"), "attached"),
            ),
            age_col(),
        ],
        ("storage.k8s.io", "CSIStorageCapacity") => vec![
            name_col(),
            col(
                "StorageClassName",
                "string",
                0,
                doc(&storage("CSIStorageCapacity"), "storageClassName"),
            ),
            col(
                "Capacity",
                "string",
                0,
                doc(&storage("CSIStorageCapacity"), "capacity"),
            ),
            age_col(),
        ],
        _ => return None,
    })
}

/// `GetAccessModesAsString`: the short names in kube's fixed order, each once.
pub fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The class of a PV or PVC: the beta annotation first, then `spec.storageClassName`
/// (kube's `GetPersistentVolume(Claim)Class`).
fn class_of(o: &Value) -> &str {
    o.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(o, "/spec/storageClassName"))
}

/// `<unset>` for a missing or empty string field.
fn or_unset(o: &Value, ptr: &str) -> String {
    match s(o, ptr) {
        "" => "<unset>".into(),
        v => v.into(),
    }
}

/// Whether a StorageClass carries the default-class annotation set to `"true"`.
pub fn is_default_class(o: &Value) -> bool {
    DEFAULT_CLASS.iter().any(|a| {
        o.pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1")))
            .and_then(Value::as_str)
            == Some("true")
    })
}

fn phase_or_terminating(o: &Value) -> &str {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(o, "/status/phase")
    }
}

fn bool_or(o: &Value, ptr: &str, default: bool) -> bool {
    o.pointer(ptr).and_then(Value::as_bool).unwrap_or(default)
}

/// Cells of a storage kind's row, `None` for other kinds.
pub(super) fn cells(group: &str, kind: &str, o: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    Some(match (group, kind) {
        ("", "PersistentVolume") => {
            let claim = match o.pointer("/spec/claimRef").filter(|c| c.is_object()) {
                Some(c) => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
                None => String::new(),
            };
            vec![
                name(o),
                json!(s(o, "/spec/capacity/storage")),
                json!(access_modes(arr(o, "/spec/accessModes"))),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase_or_terminating(o)),
                json!(claim),
                json!(class_of(o)),
                json!(or_unset(o, "/spec/volumeAttributesClassName")),
                json!(s(o, "/status/reason")),
                age(o, now),
                json!(or_unset(o, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            // Capacity and access modes only once the claim names its volume.
            let (capacity, modes) = if s(o, "/spec/volumeName").is_empty() {
                (String::new(), String::new())
            } else {
                (
                    s(o, "/status/capacity/storage").to_string(),
                    access_modes(arr(o, "/status/accessModes")),
                )
            };
            vec![
                name(o),
                json!(phase_or_terminating(o)),
                json!(s(o, "/spec/volumeName")),
                json!(capacity),
                json!(modes),
                json!(class_of(o)),
                json!(or_unset(o, "/spec/volumeAttributesClassName")),
                age(o, now),
                json!(or_unset(o, "/spec/volumeMode")),
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let mut n = s(o, "/metadata/name").to_string();
            if is_default_class(o) {
                n.push_str(" (default)");
            }
            let or = |p: &str, d: &'static str| match s(o, p) {
                "" => d.to_string(),
                v => v.to_string(),
            };
            vec![
                json!(n),
                json!(s(o, "/provisioner")),
                json!(or("/reclaimPolicy", "Delete")),
                json!(or("/volumeBindingMode", "Immediate")),
                json!(bool_or(o, "/allowVolumeExpansion", false)),
                age(o, now),
            ]
        }
        ("storage.k8s.io", "CSIDriver") => {
            let tokens: Vec<&str> = arr(o, "/spec/tokenRequests")
                .iter()
                .map(|t| s(t, "/audience"))
                .collect();
            let modes: Vec<&str> = arr(o, "/spec/volumeLifecycleModes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let or_unset = |v: Vec<&str>| {
                if v.is_empty() {
                    "<unset>".to_string()
                } else {
                    v.join(",")
                }
            };
            vec![
                name(o),
                json!(bool_or(o, "/spec/attachRequired", true)),
                json!(bool_or(o, "/spec/podInfoOnMount", false)),
                json!(bool_or(o, "/spec/storageCapacity", false)),
                json!(or_unset(tokens)),
                json!(bool_or(o, "/spec/requiresRepublish", false)),
                json!(or_unset(modes)),
                age(o, now),
            ]
        }
        ("storage.k8s.io", "CSINode") => {
            vec![name(o), json!(arr(o, "/spec/drivers").len()), age(o, now)]
        }
        ("storage.k8s.io", "VolumeAttachment") => vec![
            name(o),
            json!(s(o, "/spec/attacher")),
            json!(s(o, "/spec/source/persistentVolumeName")),
            json!(s(o, "/spec/nodeName")),
            json!(bool_or(o, "/status/attached", false)),
            age(o, now),
        ],
        ("storage.k8s.io", "CSIStorageCapacity") => vec![
            name(o),
            json!(s(o, "/storageClassName")),
            json!(match s(o, "/capacity") {
                "" => "<unset>",
                c => c,
            }),
            age(o, now),
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, plural: &str, o: Value) -> Vec<Value> {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let info = crate::registry::lookup(group, "v1", plural).unwrap();
        cells(info.group, info.kind, &o, now).unwrap()
    }

    const CREATED: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn storage_class_rows_mark_the_default() {
        let sc = json!({"metadata": {"name": "standard", "creationTimestamp": CREATED,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            row("storage.k8s.io", "storageclasses", sc),
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60m")
            ]
        );
        let names: Vec<&str> = columns("storage.k8s.io", "StorageClass")
            .unwrap()
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age"
            ]
        );
    }

    #[test]
    fn volume_and_claim_rows() {
        let pv = json!({"metadata": {"name": "pvc-1", "creationTimestamp": CREATED},
            "spec": {"capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            row("", "persistentvolumes", pv),
            [
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("standard"),
                json!("<unset>"),
                json!(""),
                json!("60m"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"name": "data", "creationTimestamp": CREATED},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        assert_eq!(
            row("", "persistentvolumeclaims", pending.clone()),
            [
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("standard"),
                json!("<unset>"),
                json!("60m"),
                json!("<unset>")
            ]
        );
        let mut bound = pending;
        bound["spec"]["volumeName"] = json!("pvc-1");
        bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"]});
        bound["metadata"]["deletionTimestamp"] = json!(CREATED);
        assert_eq!(
            row("", "persistentvolumeclaims", bound)[..5],
            [
                json!("data"),
                json!("Terminating"),
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO")
            ]
        );
    }
}
