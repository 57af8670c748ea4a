//! Pods: graceful deletion (`pkg/registry/core/pod/strategy.go`, `CheckGracefulDelete`).

use serde_json::Value;

use super::Strategy;

/// The pod strategy.
pub(super) struct Pod;

impl Strategy for Pod {
    /// A pod bound to a node waits for the node to stop it: the grace period asked for,
    /// else the pod's `terminationGracePeriodSeconds`, else 30 s; never longer than a
    /// deletion already under way. Unbound or finished pods go at once.
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !bound {
            return None;
        }
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let g = requested
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        if g <= 0 || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let cur = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        Some(cur.map_or(g, |c| c.min(g)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn grace_periods() {
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(Pod.grace_period(&bound, None), Some(10));
        assert_eq!(Pod.grace_period(&bound, Some(3)), Some(3));
        assert_eq!(Pod.grace_period(&bound, Some(0)), None);
        let unbound = json!({"spec": {}});
        assert_eq!(Pod.grace_period(&unbound, Some(5)), None);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(Pod.grace_period(&done, None), None);
        let default = json!({"spec": {"nodeName": "n1"}});
        assert_eq!(Pod.grace_period(&default, None), Some(30));
        // A second deletion may shorten the period, never lengthen it.
        let deleting =
            json!({"metadata": {"deletionGracePeriodSeconds": 5}, "spec": {"nodeName": "n1"}});
        assert_eq!(Pod.grace_period(&deleting, Some(20)), Some(5));
        assert_eq!(Pod.grace_period(&deleting, Some(2)), Some(2));
    }
}
