//! Sets of field paths, stored as a tree as structured-merge-diff does: each node has the
//! elements that are members of the set at that level and the children below them. A
//! path is in the set when its last element is a member of the node its prefix leads to.
//!
//! [`Set::to_fields_v1`] / [`Set::from_fields_v1`] are the `FieldsV1` encoding of
//! `metadata.managedFields`: one JSON object per node, keys `f:`/`k:`/`v:`/`i:` for its
//! elements, and `.` inside a child when the child's element is itself a member.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    /// Elements that are members at this level.
    pub members: BTreeSet<PathElement>,
    /// Sub-sets below an element (the element may or may not be a member too).
    pub children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Self {
        Set::default()
    }

    /// Whether the set has no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds a path (the empty path is ignored: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The sub-set below `e` (empty if none).
    pub fn child(&self, e: &PathElement) -> Option<&Set> {
        self.children.get(e)
    }

    /// Every path in `self` or `other`.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other`.
    pub fn union_with(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (e, c) in &other.children {
            self.children.entry(e.clone()).or_default().union_with(c);
        }
    }

    /// The paths of `self` that are not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (e, c) in &self.children {
            let d = match other.children.get(e) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(e.clone(), d);
            }
        }
        out
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (e, c) in &self.children {
            if let Some(o) = other.children.get(e) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(e.clone(), i);
                }
            }
        }
        out
    }

    /// Removes empty children (after in-place edits).
    pub fn compact(&mut self) {
        for c in self.children.values_mut() {
            c.compact();
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    /// Every member path: a level's members, then its children's paths.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        // Members of a level first, then the children's paths (structured-merge-diff's
        // iteration order, which conflict messages list paths in).
        for e in &self.members {
            prefix.push(e.clone());
            out.push(Path(prefix.clone()));
            prefix.pop();
        }
        for (e, c) in &self.children {
            prefix.push(e.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut elems: BTreeSet<&PathElement> = self.members.iter().collect();
        elems.extend(
            self.children
                .keys()
                .filter(|e| self.children.get(*e).is_some_and(|c| !c.is_empty())),
        );
        let mut m = Map::new();
        for e in elems {
            let mut v = match self.children.get(e).filter(|c| !c.is_empty()) {
                Some(c) => c.to_fields_v1(),
                None => Value::Object(Map::new()),
            };
            let is_member = self.members.contains(e);
            if is_member && self.children.get(e).is_some_and(|c| !c.is_empty()) {
                // `.` first: the element itself is a member besides having children.
                let mut with_dot = Map::new();
                with_dot.insert(".".into(), Value::Object(Map::new()));
                if let Value::Object(inner) = v {
                    with_dot.extend(inner);
                }
                v = Value::Object(with_dot);
            }
            m.insert(e.encode(), v);
        }
        Value::Object(m)
    }

    /// Parses `FieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "fieldsV1 must be an object".to_string())?;
        let mut out = Set::new();
        for (k, child) in obj {
            if k == "." {
                continue;
            }
            let e = PathElement::decode(k)?;
            let cobj = child
                .as_object()
                .ok_or_else(|| format!("fieldsV1 entry {k:?} must be an object"))?;
            if cobj.is_empty() || cobj.contains_key(".") {
                out.members.insert(e.clone());
            }
            if cobj.keys().any(|k| k != ".") {
                let c = Set::from_fields_v1(child)?;
                if !c.is_empty() {
                    out.children.insert(e, c);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &[&str]) -> Vec<PathElement> {
        s.iter()
            .map(|e| PathElement::decode(e).expect("element"))
            .collect()
    }

    #[test]
    fn fields_v1_round_trip_with_dots() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}, "f:selector": {}}
        });
        let s = Set::from_fields_v1(&v).expect("parse");
        assert!(s.has(&p(&["f:metadata", "f:labels"])));
        assert!(!s.has(&p(&["f:metadata"])));
        assert!(s.has(&p(&["f:spec", "f:selector"])));
        assert_eq!(s.to_fields_v1(), v);
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::new();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = Set::new();
        b.insert(&p(&["f:spec", "f:replicas"]));
        assert_eq!(a.intersection(&b), b);
        let d = a.difference(&b);
        assert_eq!(d.paths().len(), 1);
        assert_eq!(d.paths()[0].to_string(), ".spec.paused");
        assert_eq!(b.union(&d), a);
        assert!(b.difference(&a).is_empty());
    }
}
