//! How structured-merge-diff sees each field of a kind: a struct (granular or atomic), a
//! map (granular or atomic), a list (atomic, a set, or associative by key fields) or a
//! scalar. Read from the generated OpenAPI schemas plus the `+listType`, `+listMapKey`,
//! `+mapType` and `+structType` markers of Kubernetes' Go types that the schemas lack
//! (lists without a marker follow their patch strategy, as kube-openapi's conversion
//! does: merge with a key is associative, merge without one a set, else atomic).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::{json, Value};

use crate::registry::{Custom, ResourceInfo};
use crate::schema;

/// The key fields of an associative list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// One key field (from the patch merge key).
    One(&'static str),
    /// Several key fields (`+listMapKey` markers).
    Many(&'static [&'static str]),
}

impl Keys {
    /// The key field names.
    pub fn names(&self) -> &[&'static str] {
        match self {
            Keys::One(k) => std::slice::from_ref(k),
            Keys::Many(ks) => ks,
        }
    }
}

/// A list's element relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Items are scalars identified by value.
    Set,
    /// Items are objects identified by key fields.
    Assoc(Keys),
}

/// The type of one node of an object.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// An object with named fields.
    Struct {
        /// Schema name (for the marker tables).
        name: Option<&'static str>,
        /// The resolved schema.
        schema: &'static Value,
        /// `+structType=atomic`.
        atomic: bool,
    },
    /// A string-keyed map.
    Map {
        /// Raw schema of the values, if known.
        elem: Option<&'static Value>,
        /// `+mapType=atomic`.
        atomic: bool,
    },
    /// A list.
    List {
        /// Raw schema of the items, if known.
        item: Option<&'static Value>,
        /// How items relate.
        kind: ListKind,
    },
    /// A scalar (string, number, bool, int-or-string, quantity, time...).
    Scalar,
    /// No schema: deduced from the value (objects are granular maps, lists atomic).
    Untyped,
}

/// Lists whose `+listMapKey` markers name more than the patch merge key, or whose
/// `+listType` differs from what the patch strategy implies: (schema, field, kind).
const LIST_TYPES: &[(&str, &str, ListKind)] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        ListKind::Assoc(Keys::Many(&["containerPort", "protocol"])),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        ListKind::Assoc(Keys::Many(&["containerPort", "protocol"])),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        ListKind::Assoc(Keys::Many(&["port", "protocol"])),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        ListKind::Assoc(Keys::Many(&["topologyKey", "whenUnsatisfiable"])),
    ),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", ListKind::Atomic),
    (
        "io.k8s.api.discovery.v1.Endpoint",
        "addresses",
        ListKind::Set,
    ),
];

/// Maps marked `+mapType=atomic`: (schema, field).
const ATOMIC_MAPS: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
    ("io.k8s.api.core.v1.ServiceSpec", "selector"),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"),
];

/// Structs marked `+structType=atomic`.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.FileKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.discovery.v1.EndpointPort",
];

/// A custom resource's schema as field management types it: its CRD's, with `apiVersion`
/// and `kind` strings and `metadata` the ObjectMeta schema. Made once per version of a
/// CRD (a [`Custom`] is interned, so its address names it) and kept.
fn custom_root(c: &'static Custom) -> &'static Value {
    static ROOTS: OnceLock<Mutex<HashMap<usize, &'static Value>>> = OnceLock::new();
    let mut roots = ROOTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let key = c as *const Custom as usize;
    roots.entry(key).or_insert_with(|| {
        let mut root = c.schema.clone();
        if !root.is_object() {
            root = json!({});
        }
        root["type"] = json!("object");
        let props = &mut root["properties"];
        if !props.is_object() {
            *props = json!({});
        }
        props["apiVersion"] = json!({"type": "string"});
        props["kind"] = json!({"type": "string"});
        props["metadata"] = json!({"$ref": format!("{}{OBJECT_META}", schema::REF_PREFIX)});
        Box::leak(Box::new(root))
    })
}

/// The schema name of ObjectMeta.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Follows `$ref`s (directly or as the first `allOf`), returning the last name seen.
fn resolve_named(raw: &'static Value) -> (Option<&'static str>, &'static Value) {
    let mut s = raw;
    let mut name = None;
    for _ in 0..8 {
        let Some(n) = schema::ref_name(s) else {
            break;
        };
        match schema::schemas().components.get_key_value(n) {
            Some((k, next)) => {
                name = Some(k.as_str());
                s = next;
            }
            None => break,
        }
    }
    (name, s)
}

impl Ty {
    /// The type of a kind's objects (`Untyped` when the kind has no schema).
    pub fn of_kind(group: &str, version: &str, kind: &str) -> Ty {
        match schema::kind_schema_name(group, version, kind)
            .and_then(|n| schema::schemas().components.get_key_value(n))
        {
            Some((name, s)) => Ty::Struct {
                name: Some(name.as_str()),
                schema: s,
                atomic: false,
            },
            None => Ty::Untyped,
        }
    }

    /// The type of a resource's objects: its kind's schema, or a custom resource's
    /// (from its CRD) with `metadata` typed as ObjectMeta, as kube-apiserver types them.
    pub fn of_info(info: &ResourceInfo) -> Ty {
        match info.custom {
            Some(c) => Ty::from_schema(custom_root(c), None, None),
            None => Ty::of_kind(info.group, info.version, info.kind),
        }
    }

    /// The type described by a raw (property, item or value) schema; `parent`/`field`
    /// name the struct field it belongs to, for the marker tables.
    fn from_schema(raw: &'static Value, parent: Option<&str>, field: Option<&str>) -> Ty {
        if let (Some(p), Some(f)) = (parent, field) {
            if let Some((_, _, kind)) = LIST_TYPES.iter().find(|(s, n, _)| *s == p && *n == f) {
                return Ty::List {
                    item: schema::items(raw),
                    kind: *kind,
                };
            }
            if ATOMIC_MAPS.iter().any(|(s, n)| *s == p && *n == f) {
                return Ty::Map {
                    elem: None,
                    atomic: true,
                };
            }
        }
        let (name, s) = resolve_named(raw);
        // A structural schema's extensions (CRDs; kube's `+listType` and friends).
        let marker = |m: &str| s.get(m).and_then(Value::as_str);
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
        {
            // Any field may be there: typed by its value.
            return Ty::Untyped;
        }
        if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Ty::Scalar;
        }
        let atomic_map = marker("x-kubernetes-map-type") == Some("atomic");
        if s.get("properties").is_some_and(Value::is_object) {
            return Ty::Struct {
                name,
                schema: s,
                atomic: atomic_map || name.is_some_and(|n| ATOMIC_STRUCTS.contains(&n)),
            };
        }
        let ty = s.get("type").and_then(Value::as_str);
        if let Some(list_type) = marker("x-kubernetes-list-type") {
            let keys: Vec<&'static str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let kind = match (list_type, keys.as_slice()) {
                ("set", _) => ListKind::Set,
                ("map", [one]) => ListKind::Assoc(Keys::One(one)),
                ("map", many) if !many.is_empty() => {
                    ListKind::Assoc(Keys::Many(crate::registry::intern_strs(many)))
                }
                _ => ListKind::Atomic,
            };
            return Ty::List {
                item: s.get("items"),
                kind,
            };
        }
        if ty == Some("array") || s.get("items").is_some() {
            let (strategies, key) = schema::patch_meta(raw);
            let kind = if strategies.contains(&"merge") {
                match key {
                    Some(k) => ListKind::Assoc(Keys::One(k)),
                    None => ListKind::Set,
                }
            } else {
                ListKind::Atomic
            };
            return Ty::List {
                item: s.get("items"),
                kind,
            };
        }
        if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
            return Ty::Map {
                elem: Some(ap),
                atomic: atomic_map,
            };
        }
        if ty == Some("object") {
            return Ty::Map {
                elem: None,
                atomic: atomic_map,
            };
        }
        Ty::Scalar
    }

    /// The type of field `name` of this (struct or map) type, and whether it is a
    /// declared struct field (as opposed to a map entry).
    pub fn field(&self, name: &str) -> (Ty, bool) {
        match self {
            Ty::Struct {
                name: sn, schema, ..
            } => match schema.get("properties").and_then(|p| p.get(name)) {
                Some(raw) => (Ty::from_schema(raw, *sn, Some(name)), true),
                None => (Ty::Untyped, false),
            },
            Ty::Map {
                elem: Some(raw), ..
            } => (Ty::from_schema(raw, None, None), false),
            _ => (Ty::Untyped, false),
        }
    }

    /// The type of the items of this list type.
    pub fn item(&self) -> Ty {
        match self {
            Ty::List {
                item: Some(raw), ..
            } => Ty::from_schema(raw, None, None),
            _ => Ty::Untyped,
        }
    }

    /// The schema name of a struct type.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Ty::Struct { name, .. } => *name,
            _ => None,
        }
    }
}

/// How a value is treated at one node: as a leaf, an object of fields, or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Compared and replaced as a whole.
    Leaf,
    /// Granular object.
    Object,
    /// Granular list with these item identities.
    List(ListKind),
}

/// The shape of a node of type `ty` holding `v` (values that do not fit their schema
/// are leaves).
pub fn shape(ty: &Ty, v: &Value) -> Shape {
    match (ty, v) {
        (Ty::Struct { atomic: false, .. } | Ty::Map { atomic: false, .. }, Value::Object(_)) => {
            Shape::Object
        }
        (Ty::Untyped, Value::Object(_)) => Shape::Object,
        (
            Ty::List {
                kind: k @ (ListKind::Set | ListKind::Assoc(_)),
                ..
            },
            Value::Array(_),
        ) => Shape::List(*k),
        _ => Shape::Leaf,
    }
}

/// The shape of a node given whichever of two values is present and not null.
pub fn shape2(ty: &Ty, a: Option<&Value>, b: Option<&Value>) -> Shape {
    fn pick(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    match (pick(a), pick(b)) {
        (Some(x), Some(y)) => {
            let (sx, sy) = (shape(ty, x), shape(ty, y));
            if sx == sy {
                sx
            } else {
                Shape::Leaf
            }
        }
        (Some(x), None) | (None, Some(x)) => shape(ty, x),
        (None, None) => match ty {
            Ty::Struct { atomic: false, .. } | Ty::Map { atomic: false, .. } => Shape::Object,
            Ty::List {
                kind: k @ (ListKind::Set | ListKind::Assoc(_)),
                ..
            } => Shape::List(*k),
            _ => Shape::Leaf,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_field_types() {
        let d = Ty::of_kind("apps", "v1", "Deployment");
        let (spec, declared) = d.field("spec");
        assert!(declared);
        let (sel, _) = spec.field("selector");
        assert!(matches!(sel, Ty::Struct { atomic: true, .. }));
        let (tpl, _) = spec.field("template");
        let (pod, _) = tpl.field("spec");
        let (containers, _) = pod.field("containers");
        assert!(matches!(
            containers,
            Ty::List {
                kind: ListKind::Assoc(Keys::One("name")),
                ..
            }
        ));
        let c = containers.item();
        let (ports, _) = c.field("ports");
        assert!(matches!(
            ports,
            Ty::List {
                kind: ListKind::Assoc(Keys::Many(&["containerPort", "protocol"])),
                ..
            }
        ));
        let (args, _) = c.field("args");
        assert!(matches!(
            args,
            Ty::List {
                kind: ListKind::Atomic,
                ..
            }
        ));
        let (meta, _) = d.field("metadata");
        let (fin, _) = meta.field("finalizers");
        assert!(matches!(
            fin,
            Ty::List {
                kind: ListKind::Set,
                ..
            }
        ));
        let (labels, declared) = meta.field("labels");
        assert!(declared);
        assert!(matches!(labels, Ty::Map { atomic: false, .. }));
        let (_, declared) = labels.field("app");
        assert!(!declared);
    }

    #[test]
    fn custom_resources_are_typed_by_their_schema_markers() {
        let crd = json!({"metadata": {"name": "gadgets.example.com"},
            "status": {"acceptedNames": {"plural": "gadgets", "kind": "Gadget"}},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "gadgets", "kind": "Gadget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["port", "protocol"],
                                "items": {"type": "object", "properties": {
                                    "port": {"type": "integer"}, "protocol": {"type": "string"}}}},
                            "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                "items": {"type": "string"}},
                            "args": {"type": "array", "items": {"type": "string"}},
                            "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                "additionalProperties": {"type": "string"}},
                            "size": {"x-kubernetes-int-or-string": true},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}});
        let info = crate::crd::served(&crd).pop().expect("served");
        let root = Ty::of_info(&info);
        let (spec, declared) = root.field("spec");
        assert!(declared);
        let field = |name| spec.field(name).0;
        assert!(matches!(
            field("ports"),
            Ty::List {
                kind: ListKind::Assoc(Keys::Many(&["port", "protocol"])),
                ..
            }
        ));
        assert!(matches!(
            field("tags"),
            Ty::List {
                kind: ListKind::Set,
                ..
            }
        ));
        // Lists without a marker are atomic in a structural schema.
        assert!(matches!(
            field("args"),
            Ty::List {
                kind: ListKind::Atomic,
                ..
            }
        ));
        assert!(matches!(field("selector"), Ty::Map { atomic: true, .. }));
        assert!(matches!(field("size"), Ty::Scalar));
        assert!(matches!(field("extra"), Ty::Untyped));
        // metadata is ObjectMeta, as for every kind.
        let (meta, _) = root.field("metadata");
        assert_eq!(meta.name(), Some(OBJECT_META));
        assert!(root.field("apiVersion").1);
        // One schema per CRD version, not one per call.
        assert!(std::ptr::eq(
            custom_root(info.custom.expect("custom")),
            custom_root(info.custom.expect("custom"))
        ));
    }

    #[test]
    fn service_selector_is_atomic() {
        let s = Ty::of_kind("", "v1", "Service");
        let (spec, _) = s.field("spec");
        assert!(matches!(
            spec.field("selector").0,
            Ty::Map { atomic: true, .. }
        ));
        assert!(matches!(
            spec.field("ports").0,
            Ty::List {
                kind: ListKind::Assoc(Keys::Many(&["port", "protocol"])),
                ..
            }
        ));
    }
}
