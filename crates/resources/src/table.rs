//! Server-side printing: `meta.k8s.io/v1` Tables as kube-apiserver's printers.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::registry::ResourceInfo;

/// What each Table row carries in its `object` field (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata as `PartialObjectMetadata` (kubectl's default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

/// Renders objects as a Table; the caller sets list metadata (resourceVersion, continue).
pub fn table(
    _info: &ResourceInfo,
    _objects: &[Value],
    _include_object: IncludeObject,
    _now: DateTime<Utc>,
) -> Value {
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": [], "rows": []})
}
