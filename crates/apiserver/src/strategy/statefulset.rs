//! StatefulSets (`pkg/registry/apps/statefulset/strategy.go`): fields of features that
//! are off by default in kube 1.33 are dropped, as `dropStatefulSetDisabledFields` does.

use serde_json::Value;

use super::Strategy;

/// The StatefulSet strategy.
pub(super) struct StatefulSet;

/// Drops `rollingUpdate.maxUnavailable` (feature MaxUnavailableStatefulSet, alpha and
/// off in 1.33) unless the stored object already uses it.
fn drop_disabled(obj: &mut Value, old: Option<&Value>) {
    let in_use = old
        .and_then(|o| o.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"))
        .is_some_and(|v| !v.is_null());
    if in_use {
        return;
    }
    if let Some(ru) = obj
        .pointer_mut("/spec/updateStrategy/rollingUpdate")
        .and_then(Value::as_object_mut)
    {
        ru.remove("maxUnavailable");
    }
}

impl Strategy for StatefulSet {
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_disabled(obj, None);
    }

    fn prepare_for_update(&self, obj: &mut Value, old: &Value) {
        drop_disabled(obj, Some(old));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_unavailable_is_dropped_unless_in_use() {
        let with = json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}});
        let mut new = with.clone();
        StatefulSet.prepare_for_create(&mut new);
        assert_eq!(
            new["spec"]["updateStrategy"]["rollingUpdate"],
            json!({"partition": 0})
        );
        let mut kept = with.clone();
        StatefulSet.prepare_for_update(&mut kept, &with);
        assert_eq!(
            kept["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            2
        );
        let mut added = with.clone();
        StatefulSet.prepare_for_update(&mut added, &new);
        assert!(added
            .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
            .is_none());
    }
}
