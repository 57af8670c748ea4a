//! Field paths as structured-merge-diff names them: a path is a list of elements, each a
//! struct/map field (`f:name`), a list item by its keys (`k:{"name":"web"}`), a set item
//! by its value (`v:"x"`) or an atomic-list item by its index (`i:0`).

use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
///
/// The derived order (field < key < value < index, then by content) is the order in
/// which structured-merge-diff sorts the elements of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An item of an associative list, by its key fields: (name, compact JSON value),
    /// sorted by name.
    Key(Vec<(String, String)>),
    /// An item of a set, by its value (compact JSON).
    Value(String),
    /// An item of a list by position (only where items have no identity).
    Index(usize),
}

impl PathElement {
    /// A field element.
    pub fn field(name: &str) -> Self {
        PathElement::Field(name.to_string())
    }

    /// The FieldsV1 encoding of the element: `f:name`, `k:{...}`, `v:...`, `i:N`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(n) => format!("f:{n}"),
            PathElement::Key(kv) => {
                let mut m = Map::new();
                for (k, v) in kv {
                    let v: Value = serde_json::from_str(v).unwrap_or(Value::Null);
                    m.insert(k.clone(), v);
                }
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses the FieldsV1 encoding of an element.
    pub fn decode(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid path element {s:?}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid key element {s:?}: {e}"))?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| format!("key element {s:?} is not an object"))?;
                let mut kv: Vec<(String, String)> = obj
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                kv.sort();
                Ok(PathElement::Key(kv))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value element {s:?}: {e}"))?;
                Ok(PathElement::Value(v.to_string()))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|e| format!("invalid index element {s:?}: {e}")),
            _ => Err(format!("unknown path element kind in {s:?}")),
        }
    }
}

impl fmt::Display for PathElement {
    /// As structured-merge-diff prints paths in conflict messages:
    /// `.name`, `[name="web"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(kv) => {
                let parts: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A field path from the root of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of field names, e.g. `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Self {
        Path(names.iter().map(|n| PathElement::field(n)).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_round_trip_through_fieldsv1() {
        for s in [
            "f:spec",
            r#"k:{"containerPort":80,"protocol":"TCP"}"#,
            r#"v:"foregroundDeletion""#,
            "i:3",
        ] {
            let e = PathElement::decode(s).expect("decode");
            assert_eq!(e.encode(), s);
        }
    }

    #[test]
    fn paths_print_as_in_conflict_messages() {
        let mut p = Path::fields(&["spec", "template", "spec", "containers"]);
        p.0.push(PathElement::decode(r#"k:{"name":"web"}"#).expect("key"));
        p.0.push(PathElement::field("image"));
        assert_eq!(
            p.to_string(),
            r#".spec.template.spec.containers[name="web"].image"#
        );
    }
}
