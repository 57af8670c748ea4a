//! Unit tests of the CEL rules: compilation checks with kube's messages, evaluation,
//! transition rules, messages and the cost bound.

use super::*;

fn schema(rules: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": rules,
                "properties": {
                    "replicas": {"type": "integer"},
                    "min": {"type": "integer"},
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                            "x-kubernetes-validations": [
                                {"rule": "self.port == oldSelf.port", "message": "port is immutable"}
                            ]
                        }
                    }
                }
            }
        }
    })
}

fn run(rules: Value, obj: Value, old: Option<Value>) -> Vec<String> {
    let s = schema(rules);
    let mut checked = Vec::new();
    check(&s, "s", &mut checked);
    assert!(checked.is_empty(), "{checked:?}");
    validate(&Rules::compile(&s), &obj, old.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "Foo", "metadata": {"name": "a"}, "spec": spec})
}

#[test]
fn a_false_rule_gives_kubes_invalid_error_with_the_message_or_the_rule() {
    let rules = json!([
        {"rule": "self.replicas >= self.min", "message": "replicas must be at least min"},
        {"rule": "self.name.startsWith('x')"}
    ]);
    let errs = run(
        rules.clone(),
        obj(json!({"replicas": 1, "min": 2, "name": "y"})),
        None,
    );
    assert_eq!(
        errs,
        [
            "spec: Invalid value: \"object\": replicas must be at least min",
            "spec: Invalid value: \"object\": failed rule: self.name.startsWith('x')",
        ]
    );
    assert!(run(
        rules,
        obj(json!({"replicas": 3, "min": 2, "name": "xy"})),
        None
    )
    .is_empty());
}

#[test]
fn kubernetes_library_functions_and_macros_evaluate() {
    let rules = json!([
        {"rule": "self.tags.all(t, t.matches('^[a-z]+$'))", "message": "lowercase"},
        {"rule": "self.tags.isSorted()", "message": "sorted"},
        {"rule": "has(self.name) && size(self.name) < 5", "message": "short"},
        {"rule": "self.tags.exists(t, t == 'a')", "message": "has a"},
        {"rule": "self.name.lowerAscii() == self.name", "message": "lower"}
    ]);
    let good = obj(json!({"name": "abc", "tags": ["a", "b"]}));
    assert_eq!(run(rules.clone(), good, None), Vec::<String>::new());
    let bad = obj(json!({"name": "ABCDEF", "tags": ["b", "A"]}));
    assert_eq!(
        run(rules, bad, None),
        [
            "spec: Invalid value: \"object\": lowercase",
            "spec: Invalid value: \"object\": sorted",
            "spec: Invalid value: \"object\": short",
            "spec: Invalid value: \"object\": has a",
            "spec: Invalid value: \"object\": lower",
        ]
    );
}

#[test]
fn message_expression_reason_and_field_path_shape_the_error() {
    let rules = json!([
        {"rule": "self.replicas < 10", "messageExpression": "'too many: ' + string(self.replicas)",
         "reason": "FieldValueForbidden", "fieldPath": ".replicas"},
        {"rule": "self.min > 0", "messageExpression": "''", "message": "fallback"}
    ]);
    assert_eq!(
        run(rules, obj(json!({"replicas": 12, "min": 0})), None),
        [
            "spec.replicas: Forbidden: too many: 12",
            "spec: Invalid value: \"object\": fallback",
        ]
    );
}

#[test]
fn transition_rules_run_only_on_update_with_a_correlated_old_value() {
    let rules = json!([{"rule": "self.name == oldSelf.name", "message": "name is immutable"}]);
    assert!(run(rules.clone(), obj(json!({"name": "a"})), None).is_empty());
    assert_eq!(
        run(
            rules.clone(),
            obj(json!({"name": "b"})),
            Some(obj(json!({"name": "a"})))
        ),
        ["spec: Invalid value: \"object\": name is immutable"]
    );
    // Items of a map list correlate by their keys, wherever they moved.
    let new = obj(json!({"ports": [{"name": "y", "port": 2}, {"name": "x", "port": 9}]}));
    let old = obj(json!({"ports": [{"name": "x", "port": 1}]}));
    assert_eq!(
        run(json!([]), new, Some(old)),
        ["spec.ports[1]: Invalid value: \"object\": port is immutable"]
    );
}

#[test]
fn optional_old_self_runs_on_create_with_an_empty_optional() {
    let rules = json!([{"rule": "!oldSelf.hasValue() || self.name == oldSelf.value().name",
                        "optionalOldSelf": true, "message": "immutable"}]);
    assert!(run(rules.clone(), obj(json!({"name": "a"})), None).is_empty());
    assert_eq!(
        run(
            rules,
            obj(json!({"name": "b"})),
            Some(obj(json!({"name": "a"})))
        ),
        ["spec: Invalid value: \"object\": immutable"]
    );
}

#[test]
fn root_rules_see_only_name_and_generate_name_of_metadata_and_say_nil() {
    let s = json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('a') && !has(self.metadata.labels)", "message": "m"}]});
    let mut o = obj(json!({}));
    o["metadata"]["labels"] = json!({"x": "y"});
    assert!(validate(&Rules::compile(&s), &o, None).is_empty());
    o["metadata"]["name"] = json!("b");
    let errs = validate(&Rules::compile(&s), &o, None);
    assert_eq!(errs[0].to_string(), "<nil>: Invalid value: \"object\": m");
}

#[test]
fn runtime_errors_name_the_rule() {
    let errs = run(json!([{"rule": "self.missing == 1"}]), obj(json!({})), None);
    assert_eq!(
        errs,
        ["spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing == 1"]
    );
}

#[test]
fn a_rule_whose_cost_is_too_high_stops_validation() {
    let rules =
        json!([{"rule": "self.tags.all(a, self.tags.all(b, self.tags.all(c, a != b || b == c)))"}]);
    let tags: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    let errs = run(rules, obj(json!({"tags": tags})), None);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("no further validation rules will be run due to call cost exceeds limit"),
        "{errs:?}"
    );
}

#[test]
fn crd_checks_refuse_bad_rules_with_kubes_messages() {
    let s = json!({"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.x >"},
            {"rule": "foo == 1"},
            {"rule": "   "},
            {"rule": "true", "message": ""},
            {"rule": "true", "reason": "Nope"},
            {"rule": "true", "fieldPath": ".nothere"},
            {"rule": "true", "messageExpression": "'a' +"}
        ], "properties": {"x": {"type": "integer"}}},
        "list": {"type": "array", "items": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}
    }});
    let mut out = Vec::new();
    check(&s, "spec.versions[0].schema.openAPIV3Schema", &mut out);
    let text: Vec<String> = out.iter().map(ToString::to_string).collect();
    let p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations";
    let has = |prefix: &str, needle: &str| {
        assert!(
            text.iter()
                .any(|t| t.starts_with(prefix) && t.contains(needle)),
            "no {prefix} … {needle} in {text:#?}"
        )
    };
    has(
        &format!("{p}[0].rule: Invalid value"),
        "compilation failed: ERROR: <input>:1:",
    );
    has(
        &format!("{p}[1].rule: Invalid value"),
        "compilation failed: ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')",
    );
    has(
        &format!("{p}[2].rule: Required value"),
        "rule is not specified",
    );
    has(
        &format!("{p}[3].message: Invalid value"),
        "message must be non-empty if specified",
    );
    has(
        &format!("{p}[4].reason: Unsupported value: \"Nope\""),
        "FieldValueDuplicate",
    );
    has(
        &format!("{p}[5].fieldPath: Invalid value"),
        "fieldPath must be a valid path",
    );
    has(
        &format!("{p}[6].messageExpression: Invalid value"),
        "messageExpression compilation failed",
    );
    has(
        "spec.versions[0].schema.openAPIV3Schema.properties[list].items.x-kubernetes-validations[0].rule",
        "oldSelf cannot be used on the uncorrelatable portion of the schema within spec.versions[0].schema.openAPIV3Schema.properties[list]",
    );
    assert_eq!(text.len(), 8, "{text:#?}");
}
