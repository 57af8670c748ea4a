//! Version conversion between served versions of the same kind.

use serde_json::Value;

/// Converts an object to `to_api_version` (e.g. `apps/v1beta1` Deployment → `apps/v1`).
pub fn convert(obj: Value, to_api_version: &str) -> Value {
    let mut obj = obj;
    if let Some(m) = obj.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(to_api_version.to_string()),
        );
    }
    obj
}
