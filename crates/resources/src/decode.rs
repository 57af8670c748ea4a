//! Typed decoding of request bodies, as kube-apiserver's JSON decoder does it.
//!
//! kube-apiserver unmarshals every body into the kind's Go struct before anything else,
//! so a wrongly-typed field never reaches storage: it answers 400 with Go's
//! `encoding/json` message (`json: cannot unmarshal number into Go struct field
//! ServicePort.spec.ports.name of type string`), or the message of the field type's own
//! `UnmarshalJSON` (quantities, int-or-string, times). Fields the struct does not declare
//! are dropped on the way (reported for `fieldValidation`).
//!
//! [`decode`] walks the body against the kind's OpenAPI schema ([`crate::schema`]) and
//! gives the object as Go would re-encode it (unknown fields gone, a Secret's
//! `stringData` folded into `data`). [`check_typed`] then deserializes the finished
//! object with its `k8s-openapi` type, the last guard that whatever is stored decodes in
//! every typed client.

use base64::Engine;
use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::schema;

/// kube's `resource.ErrFormatWrong`.
pub const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// kube's `resource.ErrSuffix`.
pub const QUANTITY_SUFFIX: &str = "unable to parse quantity's suffix";

/// A body that does not decode into the kind's type, with Go's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

/// A decoded body: the object as stored from it, and the fields the type does not declare.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object without undeclared fields.
    pub object: Value,
    /// Paths of the dropped fields, `.spec.foo` / `.spec.ports[0].foo`.
    pub unknown: Vec<String>,
}

/// Decodes `obj` as the kind of `info` (its group/version/kind schema). Kinds without a
/// schema pass unchanged.
pub fn decode(info: &ResourceInfo, mut obj: Value) -> Result<Decoded, TypeError> {
    if let Some(c) = info.custom {
        // A custom resource is unstructured JSON: kube-apiserver prunes what its schema
        // does not declare; types are the schema validation's business (422).
        if !obj.is_object() {
            return Err(TypeError(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&obj)
            )));
        }
        let unknown = crate::crd::schema::prune(&c.schema, &mut obj);
        return Ok(Decoded {
            object: obj,
            unknown,
        });
    }
    decode_kind(info.group, info.version, info.kind, obj)
}

/// [`decode`] by group, version and kind (for subresource bodies such as `Scale`).
pub fn decode_kind(
    group: &str,
    version: &str,
    kind: &str,
    mut obj: Value,
) -> Result<Decoded, TypeError> {
    let Some(name) = schema::kind_schema_name(group, version, kind) else {
        return Ok(Decoded {
            object: obj,
            unknown: Vec::new(),
        });
    };
    let mut w = Walker {
        unknown: Vec::new(),
    };
    let node = Node::Named(name);
    let ctx = Ctx {
        parent: None,
        seg: Seg::Root,
        go_struct: kind,
        ty: None,
    };
    if obj.is_object() {
        w.walk_struct(&mut obj, name, &ctx)?;
    } else if !obj.is_null() {
        return Err(TypeError(format!(
            "json: cannot unmarshal {} into Go value of type {}",
            json_kind(&obj),
            node.go_type()
        )));
    }
    if group.is_empty() && kind == "Secret" {
        fold_string_data(&mut obj);
    }
    Ok(Decoded {
        object: obj,
        unknown: w.unknown,
    })
}

/// Deserializes `obj` with the `k8s-openapi` type of its group/version/kind: what every
/// typed client will do with it once stored. Kinds without a type pass.
pub fn check_typed(group: &str, version: &str, kind: &str, obj: &Value) -> Result<(), String> {
    match schema::typed_check(group, version, kind) {
        Some(check) => check(obj),
        None => Ok(()),
    }
}

/// Secret `stringData` is write-only: kube-apiserver's conversion merges it into `data`
/// (base64), `stringData` winning.
fn fold_string_data(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let Some(sd) = o.remove("stringData") else {
        return;
    };
    let Value::Object(sd) = sd else {
        return;
    };
    if sd.is_empty() {
        return;
    }
    if !o.get("data").is_some_and(Value::is_object) {
        o.insert("data".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(data)) = o.get_mut("data") {
        for (k, v) in sd {
            let s = v.as_str().unwrap_or("");
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
}

/// One step of the walk from the top of the object.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    /// A struct field.
    Field(&'a str),
    /// A list item.
    Index(usize),
    /// A map value.
    Key(&'a str),
}

/// Where the walk is: a chain of steps up to the root (paths are only spelled out for
/// an error or an unknown field, so a clean body allocates none), the Go struct whose
/// field is decoded, and the value's Go type where the schema does not tell it.
struct Ctx<'a> {
    parent: Option<&'a Ctx<'a>>,
    seg: Seg<'a>,
    go_struct: &'a str,
    ty: Option<&'static str>,
}

impl<'a> Ctx<'a> {
    fn child(&'a self, seg: Seg<'a>, go_struct: &'a str, ty: Option<&'static str>) -> Ctx<'a> {
        Ctx {
            parent: Some(self),
            seg,
            go_struct,
            ty,
        }
    }

    fn segs(&self) -> Vec<Seg<'a>> {
        let mut out = vec![self.seg];
        let mut at = self.parent;
        while let Some(c) = at {
            out.push(c.seg);
            at = c.parent;
        }
        out.reverse();
        out
    }

    /// The field path `encoding/json` reports: struct fields only, no indexes or keys.
    fn go_path(&self) -> String {
        let mut out = String::new();
        for s in self.segs() {
            if let Seg::Field(f) = s {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
        }
        out
    }

    /// The JSON path of unknown-field reports: `.spec.ports[0].name`.
    fn path(&self) -> String {
        let mut out = String::new();
        for s in self.segs() {
            match s {
                Seg::Root => {}
                Seg::Field(f) | Seg::Key(f) => {
                    out.push('.');
                    out.push_str(f);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn field_error(&self, what: &str, node: Node) -> TypeError {
        let go_type = match self.ty {
            Some(t) => t.to_string(),
            None => node.go_type(),
        };
        let go_path = self.go_path();
        if go_path.is_empty() {
            TypeError(format!(
                "json: cannot unmarshal {what} into Go value of type {go_type}"
            ))
        } else {
            TypeError(format!(
                "json: cannot unmarshal {what} into Go struct field {}.{go_path} of type {go_type}",
                self.go_struct
            ))
        }
    }
}

/// A schema node: a named component (a Go struct or a special type) or an inline schema.
#[derive(Clone, Copy)]
enum Node {
    Named(&'static str),
    Inline(&'static Value),
}

impl Node {
    /// The node of a field schema: its `$ref` (directly or as the first `allOf`), else
    /// the schema itself.
    fn of(s: &'static Value) -> Node {
        match schema::ref_name(s) {
            Some(name) if schema::schemas().components.contains_key(name) => Node::Named(name),
            _ => Node::Inline(s),
        }
    }

    fn schema(self) -> &'static Value {
        match self {
            Node::Named(n) => schema::schemas().components.get(n).unwrap_or(&Value::Null),
            Node::Inline(s) => s,
        }
    }

    /// The Go type `encoding/json` names in its messages: `string`, `int32`, `bool`,
    /// `[]v1.ServicePort`, `map[string]string`, `v1.ServiceSpec`.
    fn go_type(self) -> String {
        if let Node::Named(n) = self {
            if let Some(t) = special(n) {
                return match t {
                    Special::Quantity => "resource.Quantity".into(),
                    Special::IntOrString => "intstr.IntOrString".into(),
                    Special::Time => "v1.Time".into(),
                    Special::MicroTime => "v1.MicroTime".into(),
                    Special::Raw => go_named(n),
                };
            }
            let s = self.schema();
            if s.get("properties").is_some()
                || s.get("type").and_then(Value::as_str) != Some("string")
            {
                return go_named(n);
            }
        }
        let s = self.schema();
        match s.get("type").and_then(Value::as_str) {
            Some("string") if s.get("format").and_then(Value::as_str) == Some("byte") => {
                "[]uint8".into()
            }
            Some("string") => "string".into(),
            Some("integer") => match s.get("format").and_then(Value::as_str) {
                Some("int32") => "int32".into(),
                _ => "int64".into(),
            },
            Some("number") => "float64".into(),
            Some("boolean") => "bool".into(),
            Some("array") => match s.get("items") {
                Some(i) => format!("[]{}", Node::of(i).go_type()),
                None => "[]interface {}".into(),
            },
            Some("object") => match s.get("additionalProperties").filter(|a| a.is_object()) {
                Some(a) => format!("map[string]{}", Node::of(a).go_type()),
                None => "map[string]interface {}".into(),
            },
            _ => "interface {}".into(),
        }
    }
}

/// Fields whose Go type is a named type the OpenAPI schema does not show (a string or
/// map type of its own): (struct, field) → the type `encoding/json` names.
const NAMED_FIELD_TYPES: &[(&str, &str, &str)] = &[
    ("ServiceSpec", "type", "v1.ServiceType"),
    ("ServiceSpec", "sessionAffinity", "v1.ServiceAffinity"),
    (
        "ServiceSpec",
        "externalTrafficPolicy",
        "v1.ServiceExternalTrafficPolicy",
    ),
    (
        "ServiceSpec",
        "internalTrafficPolicy",
        "v1.ServiceInternalTrafficPolicy",
    ),
    ("ServiceSpec", "ipFamilyPolicy", "v1.IPFamilyPolicy"),
    ("ServiceSpec", "ipFamilies", "[]v1.IPFamily"),
    ("ServicePort", "protocol", "v1.Protocol"),
    ("ContainerPort", "protocol", "v1.Protocol"),
    ("Container", "imagePullPolicy", "v1.PullPolicy"),
    (
        "Container",
        "terminationMessagePolicy",
        "v1.TerminationMessagePolicy",
    ),
    ("PodSpec", "restartPolicy", "v1.RestartPolicy"),
    ("PodSpec", "dnsPolicy", "v1.DNSPolicy"),
    ("PodSpec", "preemptionPolicy", "v1.PreemptionPolicy"),
    ("ResourceRequirements", "limits", "v1.ResourceList"),
    ("ResourceRequirements", "requests", "v1.ResourceList"),
    ("Secret", "type", "v1.SecretType"),
    ("Toleration", "operator", "v1.TolerationOperator"),
    ("Toleration", "effect", "v1.TaintEffect"),
    ("Taint", "effect", "v1.TaintEffect"),
    ("DeploymentStrategy", "type", "v1.DeploymentStrategyType"),
    (
        "LabelSelectorRequirement",
        "operator",
        "v1.LabelSelectorOperator",
    ),
    ("PodStatus", "phase", "v1.PodPhase"),
    ("NamespaceStatus", "phase", "v1.NamespacePhase"),
];

/// The Go type of field `field` of struct `go_struct` when it is a named type.
fn named_field_type(go_struct: &str, field: &str) -> Option<&'static str> {
    NAMED_FIELD_TYPES
        .iter()
        .find(|(s, f, _)| *s == go_struct && *f == field)
        .map(|(_, _, t)| *t)
}

/// The zero value Go stores for a `null` map value or list item of type `node`.
fn zero(node: Node) -> Value {
    if let Node::Named(n) = node {
        match special(n) {
            Some(Special::Quantity) => return Value::String("0".into()),
            Some(Special::IntOrString) => return Value::from(0),
            Some(_) => return Value::Null,
            None => {}
        }
    }
    let s = node.schema();
    match s.get("type").and_then(Value::as_str) {
        Some("string") => Value::String(String::new()),
        Some("integer") | Some("number") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        Some("array") => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// `io.k8s.api.core.v1.ServiceSpec` → `v1.ServiceSpec` (package and type, as Go prints it).
fn go_named(name: &str) -> String {
    let mut it = name.rsplit('.');
    let ty = it.next().unwrap_or(name);
    match it.next() {
        Some(pkg) => format!("{pkg}.{ty}"),
        None => ty.to_string(),
    }
}

/// Types with their own `UnmarshalJSON` in Go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    Quantity,
    IntOrString,
    Time,
    MicroTime,
    /// Anything goes: RawExtension, FieldsV1, JSON.
    Raw,
}

fn special(name: &str) -> Option<Special> {
    Some(match name {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Special::Quantity,
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
        // A CRD's schema values (`default`, `enum`...) and the either-or schema nodes
        // (`items`, `additionalProperties`) are free-form JSON in Go too.
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            Special::Raw
        }
        _ => return None,
    })
}

/// What `encoding/json` calls a JSON value's kind in its messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Walker {
    unknown: Vec<String>,
}

impl Walker {
    /// Decodes `v` into the field whose schema is `node`.
    fn walk(&mut self, v: &mut Value, node: Node, ctx: &Ctx) -> Result<(), TypeError> {
        if v.is_null() {
            // Go leaves the field at its zero value.
            return Ok(());
        }
        if let Node::Named(n) = node {
            if let Some(sp) = special(n) {
                return check_special(sp, v);
            }
        }
        let s = node.schema();
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Ok(());
        }
        if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return check_special(Special::IntOrString, v);
        }
        match s.get("type").and_then(Value::as_str) {
            Some("object") | None if s.get("properties").is_some() => {
                if !v.is_object() {
                    return Err(ctx.field_error(json_kind(v), node));
                }
                match node {
                    Node::Named(n) => self.walk_struct(v, n, ctx),
                    Node::Inline(_) => self.walk_fields(v, s, ctx.go_struct, ctx),
                }
            }
            Some("object") => {
                let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) else {
                    // A free-form object: Go's map[string]interface{} takes any object.
                    return if v.is_object() {
                        Ok(())
                    } else {
                        Err(ctx.field_error(json_kind(v), node))
                    };
                };
                let Value::Object(m) = v else {
                    return Err(ctx.field_error(json_kind(v), node));
                };
                let item = Node::of(ap);
                for (k, x) in m.iter_mut() {
                    if x.is_null() {
                        // Go stores the element type's zero value.
                        *x = zero(item);
                        continue;
                    }
                    let c = ctx.child(Seg::Key(k), ctx.go_struct, None);
                    self.walk(x, item, &c)?;
                }
                Ok(())
            }
            Some("array") => {
                let Value::Array(a) = v else {
                    return Err(ctx.field_error(json_kind(v), node));
                };
                let Some(items) = s.get("items") else {
                    return Ok(());
                };
                let item = Node::of(items);
                for (i, x) in a.iter_mut().enumerate() {
                    if x.is_null() {
                        *x = zero(item);
                        continue;
                    }
                    let c = ctx.child(
                        Seg::Index(i),
                        ctx.go_struct,
                        ctx.ty.and_then(|t| t.strip_prefix("[]")),
                    );
                    self.walk(x, item, &c)?;
                }
                Ok(())
            }
            Some("string") => match v {
                Value::String(text) => match s.get("format").and_then(Value::as_str) {
                    Some("byte") => check_base64(text),
                    Some("date-time") => check_time(text, Special::Time),
                    _ => Ok(()),
                },
                _ => Err(ctx.field_error(json_kind(v), node)),
            },
            Some("integer") => {
                let bits32 = s.get("format").and_then(Value::as_str) == Some("int32");
                check_int(v, bits32).map_err(|what| ctx.field_error(&what, node))
            }
            Some("number") => match v {
                Value::Number(_) => Ok(()),
                _ => Err(ctx.field_error(json_kind(v), node)),
            },
            Some("boolean") => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(ctx.field_error(json_kind(v), node)),
            },
            _ => Ok(()),
        }
    }

    /// Decodes the fields of an object into the Go struct named `name`.
    fn walk_struct(
        &mut self,
        v: &mut Value,
        name: &'static str,
        ctx: &Ctx,
    ) -> Result<(), TypeError> {
        let s = Node::Named(name).schema();
        let go_struct = name.rsplit('.').next().unwrap_or(name);
        self.walk_fields(v, s, go_struct, ctx)
    }

    fn walk_fields(
        &mut self,
        v: &mut Value,
        s: &'static Value,
        go_struct: &str,
        ctx: &Ctx,
    ) -> Result<(), TypeError> {
        let Value::Object(m) = v else {
            return Ok(());
        };
        let props = s.get("properties").and_then(Value::as_object);
        let mut dropped = Vec::new();
        for (k, x) in m.iter_mut() {
            match props.and_then(|p| p.get(k)) {
                // Go leaves the field at its zero value, which it does not encode.
                Some(_) if x.is_null() => dropped.push(k.clone()),
                Some(fs) => {
                    let c = ctx.child(Seg::Field(k), go_struct, named_field_type(go_struct, k));
                    self.walk(x, Node::of(fs), &c)?;
                }
                None => {
                    dropped.push(k.clone());
                    self.unknown
                        .push(ctx.child(Seg::Field(k), go_struct, None).path());
                }
            }
        }
        for k in dropped {
            m.shift_remove(&k);
        }
        Ok(())
    }
}

/// Go's integer decoding: `number 1.5` / `number 99999999999` when the literal is no
/// integer of the field's size, the JSON kind otherwise.
fn check_int(v: &Value, bits32: bool) -> Result<(), String> {
    let Value::Number(n) = v else {
        return Err(json_kind(v).to_string());
    };
    let ok = match n.as_i64() {
        Some(i) => !bits32 || i32::try_from(i).is_ok(),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("number {n}"))
    }
}

/// Types whose own `UnmarshalJSON` reports errors without Go's field context.
fn check_special(sp: Special, v: &Value) -> Result<(), TypeError> {
    match sp {
        Special::Raw => Ok(()),
        Special::Quantity => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            parse_quantity(text.trim()).map_err(|e| TypeError(e.to_string()))
        }
        Special::IntOrString => match v {
            Value::String(_) => Ok(()),
            // intstr's UnmarshalJSON decodes a non-string into its int32 on its own.
            other => check_int(other, true).map_err(|what| {
                TypeError(format!(
                    "json: cannot unmarshal {what} into Go value of type int32"
                ))
            }),
        },
        Special::Time | Special::MicroTime => match v {
            Value::String(s) => check_time(s, sp),
            other => Err(TypeError(format!(
                "json: cannot unmarshal {} into Go value of type string",
                json_kind(other)
            ))),
        },
    }
}

/// metav1.Time / MicroTime: RFC 3339 (an empty string is the zero time).
fn check_time(s: &str, sp: Special) -> Result<(), TypeError> {
    if s.is_empty() || chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(());
    }
    let layout = if sp == Special::MicroTime {
        "2006-01-02T15:04:05.000000Z07:00"
    } else {
        "2006-01-02T15:04:05Z07:00"
    };
    Err(TypeError(format!(
        "parsing time {s:?} as {layout:?}: cannot parse {s:?} as \"2006\""
    )))
}

/// `[]byte` fields: standard base64, as Go's `encoding/base64` decodes them (newlines
/// are skipped).
fn check_base64(s: &str) -> Result<(), TypeError> {
    let cleaned: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _) => i,
                base64::DecodeError::InvalidLastSymbol(i, _) => i,
                base64::DecodeError::InvalidLength(len) => len - len % 4,
                base64::DecodeError::InvalidPadding => cleaned.find('=').unwrap_or(0),
            };
            Err(TypeError(format!("illegal base64 data at input byte {at}")))
        }
    }
}

/// kube's `resource.ParseQuantity`: whether `s` is a quantity, with its error messages.
pub fn parse_quantity(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QUANTITY_FORMAT);
    }
    let mut pos = 0;
    if matches!(b[0], b'+' | b'-') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'+' | b'-') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() {
        return Err(QUANTITY_FORMAT);
    }
    let suffix = &s[suffix_start..];
    let known = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || (suffix.len() > 1
        && suffix.starts_with(['e', 'E'])
        && suffix[1..].parse::<i64>().is_ok());
    if known {
        Ok(())
    } else {
        Err(QUANTITY_SUFFIX)
    }
}

#[cfg(test)]
mod tests;
