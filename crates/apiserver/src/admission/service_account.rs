//! The `ServiceAccount` plugin's defaulting: a pod created without a service account
//! runs as `default`; `serviceAccount` (deprecated) and `serviceAccountName` agree.

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;

use super::{Attributes, Operation, Plugin};
use crate::status::ApiResult;

/// Sets a new pod's service account (kube's `plugin/pkg/admission/serviceaccount`).
#[derive(Debug, Default)]
pub(crate) struct ServiceAccount;

impl Plugin for ServiceAccount {
    fn handles(&self, info: &ResourceInfo) -> bool {
        info.group.is_empty() && info.kind == "Pod"
    }

    fn admit(&self, a: &Attributes<'_>, obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        if a.operation != Operation::Create {
            return Ok(());
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let named = |f: &str| {
            spec.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let sa = named("serviceAccountName")
            .or_else(|| named("serviceAccount"))
            .unwrap_or_else(|| "default".into());
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(obj: &mut Value, op: Operation) {
        let info = skiff_resources::lookup("", "v1", "pods").unwrap();
        let a = Attributes {
            info,
            requested: info,
            operation: op,
            namespace: Some("d"),
            name: "p",
            subresource: None,
            user: None,
        };
        ServiceAccount.admit(&a, obj, None).unwrap();
    }

    #[test]
    fn defaults_and_aligns_the_two_fields() {
        let mut p = json!({"spec": {"containers": []}});
        admit(&mut p, Operation::Create);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut p = json!({"spec": {"serviceAccount": "old"}});
        admit(&mut p, Operation::Create);
        assert_eq!(p["spec"]["serviceAccountName"], "old");
        let mut p = json!({"spec": {"serviceAccountName": "new", "serviceAccount": "old"}});
        admit(&mut p, Operation::Create);
        assert_eq!(p["spec"]["serviceAccount"], "new");
        // Updates keep what is stored.
        let mut p = json!({"spec": {}});
        admit(&mut p, Operation::Update);
        assert_eq!(p, json!({"spec": {}}));
    }
}
