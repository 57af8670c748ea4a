//! Unknown-field detection against the OpenAPI schemas (for `fieldValidation`).

use serde_json::Value;

use crate::registry::ResourceInfo;

/// Paths (`.spec.foo`) of fields the kind's schema does not declare.
pub fn unknown_fields(_info: &ResourceInfo, _obj: &Value) -> Vec<String> {
    Vec::new()
}
