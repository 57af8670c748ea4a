//! Server-side printing: `meta.k8s.io/v1` Tables, column for column as kube-apiserver's
//! printers (`pkg/printers/internalversion/printers.go`). Like kube-apiserver, cells
//! are always generated for every column (the "wide" set); kubectl hides the columns
//! with priority > 0 unless `-o wide`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

mod access;
mod cells;
mod columns;
mod custom;
mod pod;
mod storage;

pub use access::{format_endpoints, format_labels, selector_string};
pub use cells::port_string;
pub use storage::{access_modes, is_default_class};

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

impl IncludeObject {
    /// Parses the `includeObject` query parameter (`None`, `Metadata`, `Object`);
    /// anything else is kube-apiserver's default, `Metadata`.
    pub fn from_query(s: &str) -> IncludeObject {
        match s {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Renders `objects` (all of `info`'s kind) as a `meta.k8s.io/v1` Table. The caller sets
/// list metadata (`resourceVersion`, `continue`); `now` is the reference for ages.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let cols: Vec<Value> = match info.custom {
        Some(c) => custom::columns(c),
        None => columns::columns(info.group, info.kind)
            .into_iter()
            .map(|c| {
                json!({"name": c.name, "type": c.ty, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, conditions) = match info.custom {
                Some(c) => (custom::cells(c, o, now), None),
                None => cells::cells(info, o, now),
            };
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), o.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
           "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests;
