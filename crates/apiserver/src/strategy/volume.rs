//! PersistentVolumes and PersistentVolumeClaims (`pkg/registry/core/persistentvolume`
//! and `.../persistentvolumeclaim` `strategy.go`): no generation, created `Pending`; a
//! PV's `lastPhaseTransitionTime` follows its phase.

use serde_json::{json, Value};

use super::Strategy;
use crate::storage::now_ts;

/// The PersistentVolume strategy.
pub(super) struct PersistentVolume;

/// The PersistentVolumeClaim strategy.
pub(super) struct PersistentVolumeClaim;

impl Strategy for PersistentVolume {
    fn has_generation(&self) -> bool {
        false
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending", "lastPhaseTransitionTime": now_ts()});
    }

    fn prepare_for_update(&self, obj: &mut Value, old: &Value) {
        let phase = |o: &Value| o.pointer("/status/phase").cloned();
        if phase(obj) != phase(old) && obj.get("status").is_some_and(Value::is_object) {
            obj["status"]["lastPhaseTransitionTime"] = json!(now_ts());
        }
    }
}

impl Strategy for PersistentVolumeClaim {
    fn has_generation(&self) -> bool {
        false
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }
}
