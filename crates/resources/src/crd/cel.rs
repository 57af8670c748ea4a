//! CEL validation rules of a CRD schema (`x-kubernetes-validations`), as
//! kube-apiserver's `apiextensions-apiserver/pkg/apiserver/schema/cel` applies them: the
//! checks of the rules when the CRD is written ([`check`]), and their evaluation against
//! an object and its old version ([`validate`]), with kube's messages, `oldSelf`
//! transition rules (only where an old value correlates, unless `optionalOldSelf`), and
//! a cost limit per call and per object.
//!
//! The interpreter is the `cel` crate with the Kubernetes libraries of `kube-cel`. It has
//! no type checker and no cost tracking, so two things are simpler than in kube: a rule
//! is refused at write time for syntax errors and undeclared variables only (not type
//! errors), and the cost of a call is bounded before it runs, as (nodes of the rule) ×
//! (the largest list or map under `self`)^(depth of nested comprehensions).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use kube_cel::cel::objects::{Key, Map, OptionalValue};
use kube_cel::cel::{Context, ExecutionError, Program, Value as Cel};
use kube_cel::KubeCelExt;
use serde_json::{json, Map as JsonMap, Value};

use crate::validation::FieldError;

/// kube's `celconfig.PerCallLimit`: the most one evaluation of a rule may cost.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's `celconfig.RuntimeCELCostBudget`: the most all the rules of one object may cost.
pub const RUNTIME_BUDGET: u64 = 10_000_000;

const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// One compiled rule.
struct Rule {
    /// The rule as written in the schema.
    rule: String,
    message: String,
    reason: Option<String>,
    /// `fieldPath` as a field-path suffix (`.spec.x` → `spec.x`).
    field_path: Option<String>,
    optional_old_self: bool,
    program: Program,
    message_program: Option<Program>,
    uses_old_self: bool,
    /// Nodes of the expression (rule and message expression).
    nodes: u64,
    /// Depth of nested comprehensions.
    depth: u32,
}

/// The rules of one schema node and of the nodes below it that have any.
#[derive(Default)]
struct Node {
    /// The schema's `type`, the bad value of kube's errors (`Invalid value: "object"`).
    ty: String,
    rules: Vec<Rule>,
    props: Vec<(String, Node)>,
    items: Option<Box<Node>>,
    additional: Option<Box<Node>>,
    /// `x-kubernetes-list-map-keys` of a `map` list: its items correlate by these keys.
    map_keys: Option<Vec<String>>,
    /// Whether map values correlate with the old map's (not `x-kubernetes-map-type: atomic`).
    correlatable: bool,
    /// The node is an object of the API (the root or an embedded resource): its
    /// `metadata` shows only `name` and `generateName`.
    resource_root: bool,
}

/// The compiled rules of one CRD version's schema.
pub struct Rules {
    root: Option<Node>,
}

impl Rules {
    /// Compiles the rules of `schema` (rules that do not compile are skipped: the CRD
    /// was refused with them when it was written).
    pub fn compile(schema: &Value) -> Rules {
        Rules {
            root: node(schema, true),
        }
    }

    /// Whether the schema has any rule.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }
}

/// The compiled rules of a schema that lives for the whole process (the registry's
/// interned definitions), compiled once.
pub fn rules_for(schema: &'static Value) -> &'static Rules {
    static CACHE: OnceLock<Mutex<HashMap<usize, &'static Rules>>> = OnceLock::new();
    let key = schema as *const Value as usize;
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(rules) = cache.get(&key).copied() {
        return rules;
    }
    let rules: &'static Rules = Box::leak(Box::new(Rules::compile(schema)));
    cache.insert(key, rules);
    rules
}

fn ty(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name) == Some(&Value::Bool(true))
}

fn node(s: &Value, resource_root: bool) -> Option<Node> {
    let mut n = Node {
        ty: ty(s).to_string(),
        resource_root,
        correlatable: s.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic"),
        ..Node::default()
    };
    for r in s
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Ok(c) = compile_rule(r) {
            n.rules.push(c);
        }
    }
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, ps) in p {
            if let Some(c) = node(ps, flag(ps, "x-kubernetes-embedded-resource")) {
                n.props.push((k.clone(), c));
            }
        }
    }
    if let Some(is) = s.get("items") {
        n.items = node(is, flag(is, "x-kubernetes-embedded-resource")).map(Box::new);
        if s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            n.map_keys = Some(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        n.additional = node(ap, flag(ap, "x-kubernetes-embedded-resource")).map(Box::new);
    }
    (!n.rules.is_empty() || !n.props.is_empty() || n.items.is_some() || n.additional.is_some())
        .then_some(n)
}

/// Why a rule does not compile: the field (`rule`, `messageExpression`) and kube's message.
struct CompileError {
    field: &'static str,
    required: bool,
    message: String,
}

fn compile_rule(r: &Value) -> Result<Rule, CompileError> {
    let text = r.get("rule").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Err(CompileError {
            field: "rule",
            required: true,
            message: "rule is not specified".into(),
        });
    }
    let program = parse(text).map_err(|e| CompileError {
        field: "rule",
        required: false,
        message: format!("compilation failed: {e}"),
    })?;
    let message_program = match r.get("messageExpression").and_then(Value::as_str) {
        Some(m) if !m.trim().is_empty() => Some(parse(m).map_err(|e| CompileError {
            field: "messageExpression",
            required: false,
            message: format!("messageExpression compilation failed: {e}"),
        })?),
        _ => None,
    };
    let mut free = Vec::new();
    free_idents(program.expression(), &mut Vec::new(), &mut free);
    let uses_old_self = free.iter().any(|v| v == "oldSelf");
    if let Some(mp) = &message_program {
        free_idents(mp.expression(), &mut Vec::new(), &mut free);
    }
    let (nodes, depth) = measure(program.expression());
    let (mnodes, mdepth) = message_program
        .as_ref()
        .map(|p| measure(p.expression()))
        .unwrap_or((0, 0));
    Ok(Rule {
        rule: text.to_string(),
        message: r
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string(),
        reason: r.get("reason").and_then(Value::as_str).map(String::from),
        field_path: r
            .get("fieldPath")
            .and_then(Value::as_str)
            .map(|p| p.trim().trim_start_matches('.').to_string())
            .filter(|p| !p.is_empty()),
        optional_old_self: flag(r, "optionalOldSelf"),
        program,
        message_program,
        uses_old_self,
        nodes: nodes + mnodes,
        depth: depth.max(mdepth),
    })
}

/// Parses an expression and refuses identifiers other than `self`, `oldSelf` and the
/// variables of its comprehensions, with cel-go's message.
fn parse(text: &str) -> Result<Program, String> {
    let program = Program::compile(text).map_err(|e| e.to_string())?;
    let mut free = Vec::new();
    free_idents(program.expression(), &mut Vec::new(), &mut free);
    if let Some(bad) = free
        .iter()
        .find(|v| !matches!(v.as_str(), "self" | "oldSelf"))
    {
        let (line, col) = position(text, bad);
        return Err(format!(
            "ERROR: <input>:{line}:{col}: undeclared reference to '{bad}' (in container '')"
        ));
    }
    Ok(program)
}

/// Line and column (1-based) of the first whole-word occurrence of `word` in `text`.
fn position(text: &str, word: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find(word).map(|a| a + from) {
            let before = line[..at].chars().last();
            let after = line[at + word.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !ident(before) && !ident(after) && before != Some('.') {
                return (i + 1, at + 1);
            }
            from = at + word.len();
        }
    }
    (1, 1)
}

/// The identifiers an expression reads that no comprehension around them binds.
fn free_idents(e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.contains(name) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_idents(t, bound, out);
            }
            for a in &c.args {
                free_idents(a, bound, out);
            }
        }
        Expr::Select(s) => free_idents(&s.operand, bound, out),
        Expr::List(l) => {
            for x in &l.elements {
                free_idents(x, bound, out);
            }
        }
        Expr::Map(m) => entries(&m.entries, bound, out),
        Expr::Struct(s) => entries(&s.entries, bound, out),
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            free_idents(&c.loop_cond, bound, out);
            free_idents(&c.loop_step, bound, out);
            free_idents(&c.result, bound, out);
            bound.truncate(n);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entries(
    es: &[kube_cel::cel::common::ast::IdedEntryExpr],
    b: &mut Vec<String>,
    o: &mut Vec<String>,
) {
    for en in es {
        match &en.expr {
            EntryExpr::MapEntry(m) => {
                free_idents(&m.key, b, o);
                free_idents(&m.value, b, o);
            }
            EntryExpr::StructField(f) => free_idents(&f.value, b, o),
        }
    }
}

/// The nodes of an expression and the depth of its nested comprehensions (one whose
/// range is itself built by a comprehension, or by `flatten`, counts as nested too: its
/// range may be as large as the product).
fn measure(e: &IdedExpr) -> (u64, u32) {
    let sub = |xs: &mut dyn Iterator<Item = &IdedExpr>| {
        xs.map(measure)
            .fold((0u64, 0u32), |(n, d), (n2, d2)| (n + n2, d.max(d2)))
    };
    let (n, d) = match &e.expr {
        Expr::Call(c) => {
            let (n, d) = sub(&mut c.target.iter().map(|b| &**b).chain(c.args.iter()));
            (n, if c.func_name == "flatten" { d + 1 } else { d })
        }
        Expr::Select(s) => measure(&s.operand),
        Expr::List(l) => sub(&mut l.elements.iter()),
        Expr::Map(m) => sub(&mut m.entries.iter().flat_map(entry_exprs)),
        Expr::Struct(s) => sub(&mut s.entries.iter().flat_map(entry_exprs)),
        Expr::Comprehension(c) => {
            let (n, d) = sub(&mut [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter());
            (n, d + 1)
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => (0, 0),
    };
    (n + 1, d)
}

fn entry_exprs(en: &kube_cel::cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &en.expr {
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

// === checks of the CRD ===

/// kube's checks of the `x-kubernetes-validations` of a schema when the CRD is written
/// (`ValidateCustomResourceDefinitionOpenAPISchema`): each rule compiles, its message,
/// reason and fieldPath are valid, and `oldSelf` is used only where old values correlate.
/// `path` is the schema's field path (`spec.versions[0].schema.openAPIV3Schema`).
pub fn check(schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    check_node(schema, path, None, out);
}

fn check_node(s: &Value, path: &str, uncorrelatable: Option<&str>, out: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    for (i, r) in s
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let rp = format!("{path}.x-kubernetes-validations[{i}]");
        check_rule(s, r, &rp, uncorrelatable, out);
    }
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, ps) in p {
            check_node(ps, &format!("{path}.properties[{k}]"), uncorrelatable, out);
        }
    }
    if let Some(is) = s.get("items") {
        let map_list = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
        let unc = if map_list || uncorrelatable.is_some() {
            uncorrelatable
        } else {
            Some(path)
        };
        check_node(is, &format!("{path}.items"), unc, out);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        let atomic = s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        let unc = if atomic && uncorrelatable.is_none() {
            Some(path)
        } else {
            uncorrelatable
        };
        check_node(ap, &format!("{path}.additionalProperties"), unc, out);
    }
}

fn check_rule(
    s: &Value,
    r: &Value,
    rp: &str,
    uncorrelatable: Option<&str>,
    out: &mut Vec<FieldError>,
) {
    let text = r.get("rule").and_then(Value::as_str).unwrap_or("");
    let message = r.get("message").and_then(Value::as_str);
    let has_newline = |t: &str| t.contains('\n');
    match message {
        Some(m) if m.trim().is_empty() => out.push(FieldError::invalid(
            format!("{rp}.message"),
            json!(m),
            "message must be non-empty if specified",
        )),
        Some(m) if m.len() > 2048 => out.push(FieldError::invalid(
            format!("{rp}.message"),
            json!(format!("{}...", &m[..10])),
            "message must have a maximum length of 2048 characters",
        )),
        Some(m) if has_newline(m.trim()) => out.push(FieldError::invalid(
            format!("{rp}.message"),
            json!(m),
            "message must not contain line breaks",
        )),
        None if has_newline(text.trim()) => out.push(FieldError::required(
            format!("{rp}.message"),
            "message must be specified if rule contains line breaks",
        )),
        _ => {}
    }
    if let Some(me) = r.get("messageExpression").and_then(Value::as_str) {
        if me.trim().is_empty() {
            out.push(FieldError::required(
                format!("{rp}.messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
    }
    if let Some(reason) = r.get("reason").and_then(Value::as_str) {
        if !REASONS.contains(&reason) {
            out.push(FieldError::not_supported(
                format!("{rp}.reason"),
                json!(reason),
                REASONS,
            ));
        }
    }
    if let Some(fp) = r.get("fieldPath").and_then(Value::as_str) {
        if fp.trim().is_empty() {
            out.push(FieldError::invalid(
                format!("{rp}.fieldPath"),
                json!(fp),
                "fieldPath must be non-empty if specified",
            ));
        } else if has_newline(fp) {
            out.push(FieldError::invalid(
                format!("{rp}.fieldPath"),
                json!(fp),
                "fieldPath must not contain line breaks",
            ));
        } else if let Err(why) = valid_field_path(s, fp.trim(), true) {
            out.push(FieldError::invalid(
                format!("{rp}.fieldPath"),
                json!(fp),
                format!("fieldPath must be a valid path: {why}"),
            ));
        }
    }
    match compile_rule(r) {
        Err(e) if e.required => {
            out.push(FieldError::required(format!("{rp}.{}", e.field), e.message))
        }
        Err(e) => out.push(FieldError::invalid(
            format!("{rp}.{}", e.field),
            r.clone(),
            e.message,
        )),
        Ok(c) => {
            if c.uses_old_self {
                if let Some(u) = uncorrelatable {
                    out.push(FieldError::invalid(
                        format!("{rp}.rule"),
                        json!(text),
                        format!(
                            "oldSelf cannot be used on the uncorrelatable portion of the schema within {u}"
                        ),
                    ));
                }
            }
        }
    }
}

/// kube's `ValidFieldPath`: resolves a JSON path (`.a.b`, `.a['b.c']`) against a schema,
/// through properties and map values only, returning the field names and the schema it
/// points to, or kube's reason why it does not.
pub fn valid_field_path<'a>(
    schema: &'a Value,
    path: &str,
    allow_array_notation: bool,
) -> Result<(Vec<String>, &'a Value), String> {
    let mut s = schema;
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (name, next) = if let Some(r) = rest.strip_prefix('[') {
            if !allow_array_notation {
                return Err("array notation is not allowed".into());
            }
            let r = r
                .strip_prefix('\'')
                .ok_or_else(|| format!("expected single quoted string but got {r}"))?;
            let end = r.find("']").ok_or("unexpected end of JSON path")?;
            (&r[..end], &r[end + 2..])
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("unexpected end of JSON path".into());
            }
            (&r[..end], &r[end..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            return Err(format!("expected [ or . but got: {}", &rest[..end.max(1)]));
        };
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            s = p.get(name).ok_or("does not refer to a valid field")?;
        } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
            s = ap;
        } else {
            return Err("does not refer to a valid field".into());
        }
        out.push(name.to_string());
        rest = next;
    }
    Ok((out, s))
}

// === evaluation ===

thread_local! {
    /// The functions of kube's CEL environment, registered once per thread.
    static BASE: RefCell<Option<Context<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with a context holding the standard and Kubernetes CEL functions.
fn with_base<T>(f: impl FnOnce(&Context<'static>) -> T) -> T {
    BASE.with(|b| {
        let mut b = b.borrow_mut();
        let ctx = b.get_or_insert_with(|| Context::default().with_all());
        f(ctx)
    })
}

/// Evaluates the rules of `rules` against `obj` (and, on update, `old`), with kube's
/// field errors: `<path>: Invalid value: "<type>": <message>` (or the rule's `reason`),
/// the root's path being `<nil>`.
pub fn validate(rules: &Rules, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(root) = &rules.root else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut budget = RUNTIME_BUDGET as i64;
    with_base(|base| walk(root, obj, old, "", base, &mut budget, &mut out));
    out
}

/// The error kube adds instead of evaluating rules of an object with type errors.
pub fn not_checked() -> FieldError {
    FieldError::invalid(
        "<nil>",
        Value::Null,
        "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    )
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn walk(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    base: &Context<'static>,
    budget: &mut i64,
    out: &mut Vec<FieldError>,
) {
    if v.is_null() || *budget < 0 {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if !n.rules.is_empty() {
        evaluate(n, v, old, path, base, budget, out);
        if *budget < 0 {
            return;
        }
    }
    match v {
        Value::Object(o) => {
            for (k, c) in &n.props {
                if let Some(fv) = o.get(k) {
                    let fo = old.and_then(|x| x.get(k));
                    walk(c, fv, fo, &child(path, k), base, budget, out);
                }
            }
            if let Some(ap) = &n.additional {
                for (k, fv) in o {
                    if n.props.iter().any(|(p, _)| p == k) {
                        continue;
                    }
                    let fo = old.filter(|_| n.correlatable).and_then(|x| x.get(k));
                    walk(ap, fv, fo, &format!("{}[{k}]", path), base, budget, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &n.items {
                let olds = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let io = match (&n.map_keys, olds) {
                        (Some(keys), Some(olds)) => olds
                            .iter()
                            .find(|o| keys.iter().all(|k| o.get(k) == item.get(k))),
                        _ => None,
                    };
                    walk(is, item, io, &format!("{}[{i}]", path), base, budget, out);
                }
            }
        }
        _ => {}
    }
}

/// The size that bounds comprehensions over a value: its largest list, map or string
/// length (in units of 100 bytes for strings), at least 1.
fn largest(v: &Value) -> u64 {
    match v {
        Value::Array(a) => (a.len() as u64).max(a.iter().map(largest).max().unwrap_or(1)),
        Value::Object(o) => (o.len() as u64).max(o.values().map(largest).max().unwrap_or(1)),
        _ => 1,
    }
}

fn cost(r: &Rule, size: u64) -> u64 {
    let mut c = r.nodes.max(1);
    for _ in 0..r.depth {
        c = c.saturating_mul(size);
    }
    c
}

fn evaluate(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    base: &Context<'static>,
    budget: &mut i64,
    out: &mut Vec<FieldError>,
) {
    let shown = |p: &str| {
        if p.is_empty() {
            "<nil>".to_string()
        } else {
            p.to_string()
        }
    };
    let self_val = to_cel(&visible(n, v));
    let old_val = old.map(|o| to_cel(&visible(n, o)));
    let size = largest(v).max(old.map(largest).unwrap_or(1));
    let ty = json!(n.ty);
    for r in &n.rules {
        if r.uses_old_self && old.is_none() && !r.optional_old_self {
            continue;
        }
        let mut ctx = base.new_inner_scope();
        ctx.add_variable_from_value("self", self_val.clone());
        if r.optional_old_self {
            let opt = match &old_val {
                Some(o) => OptionalValue::of(o.clone()),
                None => OptionalValue::none(),
            };
            ctx.add_variable_from_value("oldSelf", Cel::Opaque(Arc::new(opt)));
        } else if let Some(o) = &old_val {
            ctx.add_variable_from_value("oldSelf", o.clone());
        }
        let c = cost(r, size);
        let rule_str = if r.message.is_empty() {
            r.rule.trim().to_string()
        } else {
            r.message.clone()
        };
        if c > PER_CALL_LIMIT {
            out.push(FieldError::invalid(
                shown(path),
                ty.clone(),
                format!("'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {rule_str}"),
            ));
            *budget = -1;
            return;
        }
        if c as i64 > *budget {
            out.push(FieldError::invalid(
                shown(path),
                ty.clone(),
                "validation failed due to running out of cost budget, no further validation rules will be run",
            ));
            *budget = -1;
            return;
        }
        *budget -= c as i64;
        match r.program.execute(&ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => {
                let at = match &r.field_path {
                    Some(fp) => shown(&field_path_join(path, fp)),
                    None => shown(path),
                };
                let detail = r
                    .message_program
                    .as_ref()
                    .and_then(|mp| match mp.execute(&ctx) {
                        Ok(Cel::String(s)) => {
                            let t = s.trim();
                            (!t.is_empty() && !t.contains('\n') && t.len() <= 5 * 1024)
                                .then(|| t.to_string())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| {
                        if r.message.is_empty() {
                            format!("failed rule: {}", r.rule.trim())
                        } else {
                            r.message.clone()
                        }
                    });
                out.push(match r.reason.as_deref() {
                    Some("FieldValueForbidden") => FieldError::forbidden(at, detail),
                    Some("FieldValueRequired") => FieldError::required(at, detail),
                    Some("FieldValueDuplicate") => FieldError::duplicate(at, ty.clone()),
                    _ => FieldError::invalid(at, ty.clone(), detail),
                });
            }
            Ok(other) => out.push(FieldError::invalid(
                shown(path),
                ty.clone(),
                format!(
                    "rule evaluated to {:?}, not a bool: {rule_str}",
                    other.type_of()
                ),
            )),
            Err(e) => {
                let msg = match &e {
                    ExecutionError::NoSuchOverload | ExecutionError::UnsupportedBinaryOperator(..) => format!(
                        "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {rule_str}"
                    ),
                    _ => format!("{} evaluating rule: {rule_str}", lower_first(&e.to_string())),
                };
                out.push(FieldError::invalid(shown(path), ty.clone(), msg));
            }
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Joins a rule's node path and its `fieldPath` (`.a['b']` → `a.b`).
fn field_path_join(path: &str, fp: &str) -> String {
    let mut p = path.to_string();
    let mut rest = fp;
    while !rest.is_empty() {
        let (name, next) = if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            (&r[..end], r.get(end + 2..).unwrap_or(""))
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        };
        p = child(&p, name);
        rest = next;
    }
    p
}

/// What a rule sees of a value: at an object of the API, `metadata` holds only `name`
/// and `generateName` (kube's `WithTypeAndObjectMeta`).
fn visible(n: &Node, v: &Value) -> Value {
    if !n.resource_root {
        return v.clone();
    }
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| k == "name" || k == "generateName");
    }
    v
}

/// A JSON value as CEL sees it: integers as `int`, other numbers as `double`.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => Cel::Map(Map {
            map: Arc::new(object(o)),
        }),
    }
}

fn object(o: &JsonMap<String, Value>) -> HashMap<Key, Cel> {
    o.iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
        .collect()
}

#[cfg(test)]
mod tests;
