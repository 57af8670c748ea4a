//! Field management (`metadata.managedFields`) and server-side apply, as kube-apiserver's
//! field manager does them on top of structured-merge-diff.
//!
//! - [`record_update`]: a create, update or non-apply patch by a manager: the fields it
//!   added or changed become its own (an `Update` entry per manager, apiVersion and
//!   subresource); fields removed are dropped from every entry.
//! - [`apply`]: a server-side apply: the applied configuration becomes the manager's set
//!   of fields, fields it no longer applies are removed unless someone else owns them,
//!   and changing a value another manager set is a [`Conflict`] unless forced.
//!
//! Sets are computed from the kind's schema ([`typed`]): associative lists by their key
//! fields, sets by value, atomic lists, maps and structs as wholes.

pub mod path;
pub mod set;
pub mod typed;
pub mod walk;

use serde_json::{json, Map, Value};

pub use path::{Path, PathElement};
pub use set::Set;
pub use typed::Ty;

use crate::registry::ResourceInfo;

/// The annotation client-side `kubectl apply` keeps its last configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The manager's name (`kubectl-client-side-apply`, `kube-controller-manager`...).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion the fields are named in.
    pub api_version: String,
    /// When the manager last changed the object (RFC 3339).
    pub time: Option<String>,
    /// `status`, `scale`... or empty for the main resource.
    pub subresource: String,
    /// The fields the manager owns.
    pub set: Set,
}

impl Entry {
    /// Whether two entries are the same manager (kube's manager identifier: name,
    /// operation, subresource, and for `Update` the apiVersion).
    fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// How conflict messages name the manager: `"x"`, `"x" with subresource "status"`,
    /// and for updates `... using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("apiVersion".into(), json!(self.api_version));
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation));
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let set = match v.get("fieldsV1") {
            Some(f) if !f.is_null() => Set::from_fields_v1(f)?,
            _ => Set::new(),
        };
        Ok(Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            set,
        })
    }
}

/// The entries of an object's `metadata.managedFields` (`None` when it has none or
/// they do not parse).
pub fn decode(obj: &Value) -> Option<Vec<Entry>> {
    let arr = obj.pointer("/metadata/managedFields")?.as_array()?;
    arr.iter()
        .map(Entry::from_json)
        .collect::<Result<_, _>>()
        .ok()
}

/// Writes entries into `metadata.managedFields`, sorted as kube-apiserver sorts them
/// (Apply before Update, then by time, manager, apiVersion, subresource); none removes
/// the field.
pub fn encode(obj: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if sorted.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(sorted.into_iter().map(Entry::to_json).collect()),
        );
    }
}

/// Who writes, and how.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    /// The manager (`?fieldManager=` or the User-Agent's prefix).
    pub manager: &'a str,
    /// The request's apiVersion (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written (`status`, `scale`), if any.
    pub subresource: Option<&'a str>,
    /// The time to record (RFC 3339, seconds).
    pub time: &'a str,
}

/// Paths no manager owns (kube-apiserver's stripped metadata).
fn strip(set: &mut Set) {
    for f in ["apiVersion", "kind"] {
        set.members.remove(&PathElement::field(f));
        set.children.remove(&PathElement::field(f));
    }
    let meta = PathElement::field("metadata");
    set.members.remove(&meta);
    if let Some(m) = set.children.get_mut(&meta) {
        for f in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ] {
            m.members.remove(&PathElement::field(f));
            m.children.remove(&PathElement::field(f));
        }
    }
    set.compact();
}

/// The part of a set a write may own: the main resource of a kind with a status
/// subresource does not own status (its strategy resets it), the status subresource
/// owns only status; stripped metadata is nobody's.
fn owned_part(info: &ResourceInfo, sub: Option<&str>, set: &Set) -> Set {
    let status = PathElement::field("status");
    let mut out = match sub {
        Some("status") => {
            let mut s = Set::new();
            if set.members.contains(&status) {
                s.members.insert(status.clone());
            }
            if let Some(c) = set.children.get(&status) {
                s.children.insert(status.clone(), c.clone());
            }
            s
        }
        _ if info.has_subresource("status") => {
            let mut s = set.clone();
            s.members.remove(&status);
            s.children.remove(&status);
            s
        }
        _ => set.clone(),
    };
    strip(&mut out);
    out
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

/// Records an `Update` by `op.manager` from `live` (None: a create) to `new`, writing
/// the result into `new`'s `metadata.managedFields`. Entries come from `new` when the
/// client sent some (an empty list resets them), else from `live`.
pub fn record_update(info: &ResourceInfo, live: Option<&Value>, new: &mut Value, op: &Operation) {
    let ty = Ty::of_info(info);
    let sent = new.pointer("/metadata/managedFields");
    // `[]` or `[{}]` resets the entries (kube's isResetManagedFields).
    let reset = sent.and_then(Value::as_array).is_some_and(|a| {
        a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()))
    });
    let mut entries = if reset {
        Vec::new()
    } else {
        match decode(new).filter(|e| !e.is_empty()) {
            Some(e) => e,
            None => live.and_then(decode).unwrap_or_default(),
        }
    };
    let old = match live {
        Some(l) => without_managed_fields(l),
        None => walk::zero_object(&ty),
    };
    let newv = without_managed_fields(new);
    let c = walk::compare(&ty, Some(&old), Some(&newv))
        .filtered(|s| owned_part(info, op.subresource, s));
    let me = Entry {
        manager: op.manager.to_string(),
        operation: "Update".into(),
        api_version: op.api_version.to_string(),
        time: Some(op.time.to_string()),
        subresource: op.subresource.unwrap_or("").to_string(),
        set: Set::new(),
    };
    let changed = c.changed();
    for e in entries.iter_mut() {
        // Updates always win: whatever this write changed is no longer anyone else's.
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_manager(&me)) {
            Some(e) => {
                e.set.union_with(&changed);
                e.time = me.time.clone();
            }
            None => entries.push(Entry { set: changed, ..me }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    cap_update_managers(&mut entries);
    let had = new.pointer("/metadata/managedFields").is_some();
    if entries.is_empty() && !had {
        return;
    }
    encode(new, &entries);
}

/// At most this many `Update` entries are kept (kube's DefaultMaxUpdateManagers).
const MAX_UPDATE_MANAGERS: usize = 10;

/// Beyond [`MAX_UPDATE_MANAGERS`] update entries, the oldest are merged into one
/// `ancient-changes` entry per apiVersion, as kube-apiserver does.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let updates = entries.iter().filter(|e| e.operation == "Update").count();
    if updates <= MAX_UPDATE_MANAGERS {
        return;
    }
    let mut order: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i].operation == "Update")
        .collect();
    order.sort_by(|a, b| entries[*a].time.cmp(&entries[*b].time));
    let mut remove: Vec<usize> = Vec::new();
    // The first entry seen per apiVersion becomes that version's bucket.
    let mut bucket_of: Vec<(String, usize)> = Vec::new();
    let mut left = updates;
    for i in order {
        if left <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        match bucket_of
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, b)| *b)
        {
            Some(b) => {
                let merged = entries[b].set.union(&entries[i].set);
                let time = entries[i].time.clone();
                let bucket = &mut entries[b];
                bucket.manager = "ancient-changes".into();
                bucket.subresource = String::new();
                bucket.set = merged;
                bucket.time = time;
                remove.push(i);
                left -= 1;
            }
            None => bucket_of.push((version, i)),
        }
    }
    remove.sort_unstable();
    for i in remove.into_iter().rev() {
        entries.remove(i);
    }
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How the other manager is named in messages (see [`Entry::describe`]).
    pub manager: String,
    /// The field.
    pub path: Path,
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 `Conflict`).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

/// kube-apiserver's message for apply conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.path
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl ApplyError {
    /// The `details.causes` of the 409 Status.
    pub fn causes(&self) -> Value {
        match self {
            ApplyError::Conflicts(cs) => Value::Array(
                cs.iter()
                    .map(|c| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with {}", c.manager),
                            "field": c.path.to_string(),
                        })
                    })
                    .collect(),
            ),
        }
    }
}

/// Server-side apply of `config` by `op.manager` onto `live` (None: the object does not
/// exist yet). Returns the object to store (not yet defaulted), with its
/// `metadata.managedFields`.
pub fn apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    config: &Value,
    op: &Operation,
    force: bool,
) -> Result<Value, ApplyError> {
    let ty = Ty::of_info(info);
    let mut entries: Vec<Entry> = match live {
        Some(l) => match decode(l).filter(|e| !e.is_empty()) {
            Some(e) => e,
            // Objects written before field management: everything they hold belongs
            // to `before-first-apply`, as kube-apiserver assumes.
            None => {
                let set = owned_part(
                    info,
                    None,
                    &walk::to_field_set(&ty, &without_managed_fields(l)),
                );
                vec![Entry {
                    manager: "before-first-apply".into(),
                    operation: "Update".into(),
                    api_version: op.api_version.to_string(),
                    time: Some(op.time.to_string()),
                    subresource: String::new(),
                    set,
                }]
            }
        },
        None => Vec::new(),
    };
    let live_v = live
        .map(without_managed_fields)
        .unwrap_or_else(|| json!({}));
    let mut merged = walk::merge(&ty, &live_v, config);
    drop_nulls(&mut merged);
    let me = Entry {
        manager: op.manager.to_string(),
        operation: "Apply".into(),
        api_version: op.api_version.to_string(),
        time: None,
        subresource: op.subresource.unwrap_or("").to_string(),
        set: owned_part(info, op.subresource, &walk::to_field_set(&ty, config)),
    };
    let prev = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));
    let owned_all = entries
        .iter()
        .fold(me.set.clone(), |acc, e| acc.union(&e.set));
    if let Some(p) = &prev {
        walk::prune(&ty, &mut merged, &p.set, &owned_all);
    }
    let c = walk::compare(&ty, Some(&live_v), Some(&merged))
        .filtered(|s| owned_part(info, op.subresource, s));
    let changed = c.changed();
    let mut conflicts = Vec::new();
    for e in &entries {
        for p in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: p,
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for e in entries.iter_mut() {
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    entries.retain(|e| !e.set.is_empty());
    let object_changed = merged != live_v;
    let time = match &prev {
        Some(p) if !object_changed => p.time.clone(),
        _ => Some(op.time.to_string()),
    };
    entries.push(Entry { time, ..me });
    if live_v
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_some()
    {
        // Objects also managed by client-side apply keep its annotation in step with
        // the server-side applied configuration (kube's last-applied updater).
        let mut last = config.clone();
        if let Some(a) = last
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(LAST_APPLIED);
        }
        let text = format!("{}\n", sorted_json(&last));
        if let Some(a) = merged
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.insert(LAST_APPLIED.into(), Value::String(text));
        }
    }
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = json!({});
    }
    encode(&mut merged, &entries);
    Ok(merged)
}

/// Compact JSON with object keys sorted (as Go encodes maps).
fn sorted_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// Nulls in an applied configuration unset fields.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
