//! The walks over typed values that server-side apply is made of: the set of fields a
//! value sets ([`to_field_set`]), the difference between two values ([`compare`]),
//! merging an applied configuration into a live object ([`merge`]) and removing fields
//! an applier gave up ([`prune`]). They follow structured-merge-diff's semantics.

use serde_json::{Map, Value};

use super::path::PathElement;
use super::set::Set;
use super::typed::{shape, shape2, ListKind, Shape, Ty};

/// The identity of a list item: its key fields, its value, or its index.
pub fn item_element(kind: ListKind, item: &Value, index: usize) -> PathElement {
    match kind {
        ListKind::Set => PathElement::Value(item.to_string()),
        ListKind::Assoc(keys) => {
            let Some(obj) = item.as_object() else {
                return PathElement::Index(index);
            };
            let mut kv: Vec<(String, String)> = Vec::new();
            for k in keys.names() {
                match obj.get(*k) {
                    Some(v) => kv.push((k.to_string(), v.to_string())),
                    // The schema's default of the only defaulted key field (ports).
                    None if *k == "protocol" => kv.push((k.to_string(), "\"TCP\"".into())),
                    None => {}
                }
            }
            if kv.is_empty() {
                return PathElement::Index(index);
            }
            kv.sort();
            PathElement::Key(kv)
        }
        ListKind::Atomic => PathElement::Index(index),
    }
}

fn indexed(kind: ListKind, items: &[Value]) -> Vec<(PathElement, &Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let pe = item_element(kind, it, i);
        // Duplicates: the first item stands for its identity.
        if !out.iter().any(|(p, _)| *p == pe) {
            out.push((pe, it));
        }
    }
    out
}

/// The fields a value sets, as structured-merge-diff's `ToFieldSet`: scalars, atomic
/// values, list items, map entries and empty or null values are members; non-empty
/// struct fields only through their children.
pub fn to_field_set(ty: &Ty, v: &Value) -> Set {
    let mut set = Set::new();
    tfs(ty, v, &mut Vec::new(), &mut set);
    set
}

fn tfs(ty: &Ty, v: &Value, path: &mut Vec<PathElement>, set: &mut Set) {
    match shape(ty, v) {
        Shape::Leaf => set.insert(path),
        Shape::Object => {
            for (k, cv) in v.as_object().into_iter().flatten() {
                let (cty, declared) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                tfs(&cty, cv, path, set);
                let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
                if empty || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Shape::List(kind) => {
            let ity = ty.item();
            for (pe, it) in indexed(kind, v.as_array().map_or(&[][..], Vec::as_slice)) {
                path.push(pe);
                tfs(&ity, it, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// Fields of `v` its struct schemas do not declare (structured-merge-diff refuses
/// them in applied configurations), as paths in its notation.
pub fn undeclared_fields(ty: &Ty, v: &Value) -> Vec<super::path::Path> {
    let mut out = Vec::new();
    undeclared(ty, v, &mut Vec::new(), &mut out);
    out
}

fn undeclared(ty: &Ty, v: &Value, path: &mut Vec<PathElement>, out: &mut Vec<super::path::Path>) {
    match (ty, v) {
        (Ty::Struct { .. } | Ty::Map { .. }, Value::Object(m)) => {
            for (k, cv) in m {
                let (cty, declared) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                if matches!(ty, Ty::Struct { .. }) && !declared {
                    out.push(super::path::Path(path.clone()));
                } else {
                    undeclared(&cty, cv, path, out);
                }
                path.pop();
            }
        }
        (Ty::List { kind, .. }, Value::Array(items)) => {
            let ity = ty.item();
            for (i, it) in items.iter().enumerate() {
                path.push(item_element(*kind, it, i));
                undeclared(&ity, it, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// What changed from one value to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Paths present only in the new value.
    pub added: Set,
    /// Leaves present in both with different values.
    pub modified: Set,
    /// Paths present only in the old value.
    pub removed: Set,
}

impl Comparison {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Added and modified paths.
    pub fn changed(&self) -> Set {
        self.added.union(&self.modified)
    }

    /// Keeps only the paths `keep` accepts (applied to every part).
    pub fn filtered(self, keep: impl Fn(&Set) -> Set) -> Comparison {
        Comparison {
            added: keep(&self.added),
            modified: keep(&self.modified),
            removed: keep(&self.removed),
        }
    }
}

/// Compares `old` (None: absent) with `new`, as structured-merge-diff's `Compare`.
pub fn compare(ty: &Ty, old: Option<&Value>, new: Option<&Value>) -> Comparison {
    let mut c = Comparison::default();
    cmp(ty, old, new, &mut Vec::new(), &mut c);
    c
}

fn cmp(
    ty: &Ty,
    l: Option<&Value>,
    r: Option<&Value>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let leaf = |c: &mut Comparison, path: &[PathElement]| match (l, r) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        (Some(a), Some(b)) if a != b => c.modified.insert(path),
        _ => {}
    };
    match shape2(ty, l, r) {
        Shape::Leaf => leaf(c, path),
        Shape::Object => {
            let lo = l.and_then(Value::as_object);
            let ro = r.and_then(Value::as_object);
            if lo.is_none_or(Map::is_empty) && ro.is_none_or(Map::is_empty) {
                // Empty or null on both sides: a leaf (keeps {} and null apart).
                leaf(c, path);
                return;
            }
            let mut keys: Vec<&String> = lo.map(|m| m.keys().collect()).unwrap_or_default();
            for k in ro.into_iter().flat_map(|m| m.keys()) {
                if !lo.is_some_and(|m| m.contains_key(k)) {
                    keys.push(k);
                }
            }
            for k in keys {
                let (cty, _) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                cmp(
                    &cty,
                    lo.and_then(|m| m.get(k)),
                    ro.and_then(|m| m.get(k)),
                    path,
                    c,
                );
                path.pop();
            }
            post(l, r, path, c);
        }
        Shape::List(kind) => {
            let la = l.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let ra = r.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            if la.is_empty() && ra.is_empty() {
                leaf(c, path);
                return;
            }
            let li = indexed(kind, la);
            let ri = indexed(kind, ra);
            let ity = ty.item();
            let mut pes: Vec<&PathElement> = li.iter().map(|(p, _)| p).collect();
            for (p, _) in &ri {
                if !li.iter().any(|(q, _)| q == p) {
                    pes.push(p);
                }
            }
            for pe in pes {
                let lv = li.iter().find(|(q, _)| q == pe).map(|(_, v)| *v);
                let rv = ri.iter().find(|(q, _)| q == pe).map(|(_, v)| *v);
                path.push(pe.clone());
                cmp(&ity, lv, rv, path, c);
                path.pop();
            }
            post(l, r, path, c);
        }
    }
}

fn post(l: Option<&Value>, r: Option<&Value>, path: &[PathElement], c: &mut Comparison) {
    if l.is_none() {
        c.added.insert(path);
    } else if r.is_none() {
        c.removed.insert(path);
    }
}

/// Merges an applied configuration into a live value: granular objects field by field,
/// associative lists and sets item by item, everything else replaced.
pub fn merge(ty: &Ty, live: &Value, config: &Value) -> Value {
    match shape2(ty, Some(live), Some(config)) {
        Shape::Leaf => config.clone(),
        Shape::Object => {
            let mut out = live.as_object().cloned().unwrap_or_default();
            for (k, cv) in config.as_object().into_iter().flatten() {
                let (cty, _) = ty.field(k);
                let nv = match out.get(k) {
                    Some(lv) => merge(&cty, lv, cv),
                    None => cv.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Value::Object(out)
        }
        Shape::List(kind) => {
            let la = live.as_array().map_or(&[][..], Vec::as_slice);
            let ra = config.as_array().map_or(&[][..], Vec::as_slice);
            Value::Array(merge_list(ty, kind, la, ra))
        }
    }
}

/// Items in the live order; shared items take the configuration's order among
/// themselves, new items follow the configuration item they came after.
fn merge_list(ty: &Ty, kind: ListKind, la: &[Value], ra: &[Value]) -> Vec<Value> {
    let ity = ty.item();
    let li = indexed(kind, la);
    let ri = indexed(kind, ra);
    let in_live = |p: &PathElement| li.iter().any(|(q, _)| q == p);
    let shared: Vec<&PathElement> = ri.iter().map(|(p, _)| p).filter(|p| in_live(p)).collect();
    // New items grouped behind the shared item that precedes them in the config.
    let mut leading: Vec<&Value> = Vec::new();
    let mut after: Vec<(&PathElement, Vec<&Value>)> = Vec::new();
    let mut prev: Option<&PathElement> = None;
    for (p, v) in &ri {
        if in_live(p) {
            prev = Some(p);
            continue;
        }
        match prev {
            None => leading.push(v),
            Some(sp) => match after.iter_mut().find(|(q, _)| *q == sp) {
                Some((_, vs)) => vs.push(v),
                None => after.push((sp, vec![*v])),
            },
        }
    }
    let mut out: Vec<Value> = Vec::with_capacity(la.len() + ra.len());
    if !shared.is_empty() {
        out.extend(leading.iter().map(|v| (*v).clone()));
    }
    let mut next_shared = shared.iter();
    for (p, lv) in &li {
        if !ri.iter().any(|(q, _)| q == p) {
            out.push((*lv).clone());
            continue;
        }
        let Some(sp) = next_shared.next() else {
            continue;
        };
        let l = li.iter().find(|(q, _)| q == *sp).map(|(_, v)| *v);
        let r = ri.iter().find(|(q, _)| q == *sp).map(|(_, v)| *v);
        if let (Some(l), Some(r)) = (l, r) {
            out.push(merge(&ity, l, r));
        }
        if let Some((_, vs)) = after.iter().find(|(q, _)| q == sp) {
            out.extend(vs.iter().map(|v| (*v).clone()));
        }
    }
    if shared.is_empty() {
        out.extend(leading.iter().map(|v| (*v).clone()));
    }
    out
}

/// Removes from `v` the members of `last` (what an applier owned before) that nobody
/// owns now (`owned`: every manager's set, the applier's new one included). A path
/// with owned paths below it stays; its unowned parts below are pruned.
pub fn prune(ty: &Ty, v: &mut Value, last: &Set, owned: &Set) {
    let owned_here = |e: &PathElement, owned: &Set| {
        owned.members.contains(e) || owned.children.get(e).is_some_and(|c| !c.is_empty())
    };
    let empty = Set::new();
    match shape(ty, v) {
        Shape::Leaf => {}
        Shape::Object => {
            let Some(obj) = v.as_object_mut() else { return };
            let mut elems: Vec<&PathElement> = last.members.iter().collect();
            elems.extend(last.children.keys().filter(|e| !last.members.contains(*e)));
            for e in elems {
                let PathElement::Field(k) = e else { continue };
                if !obj.contains_key(k) {
                    continue;
                }
                if last.members.contains(e) && !owned_here(e, owned) {
                    obj.remove(k);
                    continue;
                }
                if let (Some(lc), Some(cv)) = (last.children.get(e), obj.get_mut(k)) {
                    let (cty, _) = ty.field(k);
                    let was_empty = is_empty_container(cv);
                    prune(&cty, cv, lc, owned.children.get(e).unwrap_or(&empty));
                    // A map or list emptied by the pruning goes (structured-merge-diff
                    // drops empty results of its removals).
                    if !was_empty && is_empty_container(cv) {
                        obj.remove(k);
                    }
                }
            }
        }
        Shape::List(kind) => {
            let ity = ty.item();
            let Some(arr) = v.as_array_mut() else { return };
            let mut keep: Vec<Value> = Vec::with_capacity(arr.len());
            for (i, mut it) in std::mem::take(arr).into_iter().enumerate() {
                let pe = item_element(kind, &it, i);
                if last.members.contains(&pe) && !owned_here(&pe, owned) {
                    continue;
                }
                if let Some(lc) = last.children.get(&pe) {
                    prune(&ity, &mut it, lc, owned.children.get(&pe).unwrap_or(&empty));
                }
                keep.push(it);
            }
            *arr = keep;
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty)
}

/// Fields that Go's zero value of a kind serializes (non-pointer structs and non-
/// `omitempty` lists): (schema name's last segment, field, zero JSON). Paths below them
/// are not "added" when an object is created, which decides where `.` appears.
const ZERO_FIELDS: &[(&str, &str)] = &[
    ("DeploymentSpec", "template"),
    ("DeploymentSpec", "strategy"),
    ("ReplicaSetSpec", "template"),
    ("StatefulSetSpec", "template"),
    ("StatefulSetSpec", "updateStrategy"),
    ("DaemonSetSpec", "template"),
    ("DaemonSetSpec", "updateStrategy"),
    ("JobSpec", "template"),
    ("CronJobSpec", "jobTemplate"),
    ("JobTemplateSpec", "metadata"),
    ("JobTemplateSpec", "spec"),
    ("PodTemplateSpec", "metadata"),
    ("PodTemplateSpec", "spec"),
    ("PodTemplate", "template"),
    ("ServiceStatus", "loadBalancer"),
    ("PodSpec", "containers"),
];

/// The zero value of a kind as kube-apiserver sees it before a create: metadata, spec
/// and status present (empty), nested value structs present, `containers` null.
pub fn zero_object(ty: &Ty) -> Value {
    let mut m = Map::new();
    if let Ty::Struct { schema, .. } = ty {
        for f in ["metadata", "spec", "status"] {
            if schema.get("properties").and_then(|p| p.get(f)).is_some() {
                let (cty, _) = ty.field(f);
                m.insert(f.into(), zero_struct(&cty));
            }
        }
    }
    Value::Object(m)
}

fn zero_struct(ty: &Ty) -> Value {
    let short = ty.name().map(|n| n.rsplit('.').next().unwrap_or(n));
    let mut m = Map::new();
    for (s, f) in ZERO_FIELDS {
        if short == Some(*s) {
            let (cty, _) = ty.field(f);
            let v = match cty {
                Ty::List { .. } => Value::Null,
                _ => zero_struct(&cty),
            };
            m.insert((*f).into(), v);
        }
    }
    Value::Object(m)
}
