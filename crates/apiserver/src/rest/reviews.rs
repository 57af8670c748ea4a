//! Create-only kinds that are answered, not stored: the authorization reviews
//! (SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview: the
//! authorizer chain's decision on the attributes they carry; SelfSubjectRulesReview: the
//! chain's rules for the caller), SelfSubjectReview, TokenReview, and `bindings`.
//!
//! As kube-apiserver's `pkg/registry/authorization`: the spec is validated (422 with
//! kube's messages), the attributes are asked of the same chain that authorizes requests,
//! and the status carries `allowed`, `denied`, the deciding authorizer's `reason` and
//! `evaluationError`.

use serde_json::{json, Map, Value};
use skiff_api::k8s_openapi::api::rbac::v1::PolicyRule;

use super::Reply;
use crate::authn::Identity;
use crate::authz::{Attributes, Decision, Target};
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

/// The group of the authorization reviews.
const AUTHORIZATION: &str = "authorization.k8s.io";

fn answered(mut body: Value, kind: &str, api_version: &str, status: Value) -> Reply {
    if !body.is_object() {
        body = json!({});
    }
    body["kind"] = json!(kind);
    body["apiVersion"] = json!(api_version);
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = status;
    Reply::ok(201, body)
}

/// The answer for a create of one of these kinds, or `None` for stored kinds.
/// `namespace` is the request's (LocalSubjectAccessReview is namespaced).
pub(crate) fn answer(
    state: &ApiState,
    ident: &Identity,
    kind: &str,
    namespace: Option<&str>,
    body: &Value,
) -> Option<ApiResult<Reply>> {
    let body = body.clone();
    let reply = match kind {
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview" => {
            access_review(state, ident, kind, namespace, body)
        }
        "SelfSubjectRulesReview" => rules_review(state, ident, &body),
        "SelfSubjectReview" => Ok(answered(
            body,
            kind,
            "authentication.k8s.io/v1",
            json!({"userInfo": {"username": ident.user, "groups": ident.groups}}),
        )),
        "TokenReview" => {
            let token = body
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            // Audiences the reviewer wants the token for (the API server's by default).
            let wanted = crate::authn::tokens::spec_audiences(&body);
            let status = match state.authn.review(&token, &wanted) {
                Ok((who, audiences)) => json!({
                    "authenticated": true,
                    "user": {"username": who.user, "groups": who.groups},
                    "audiences": audiences,
                }),
                Err(why) => json!({"authenticated": false, "error": why}),
            };
            Ok(answered(body, kind, "authentication.k8s.io/v1", status))
        }
        _ => return None,
    };
    Some(reply)
}

/// The attributes a SubjectAccessReview's spec asks about (kube's `ResourceAttributes` or
/// `NonResourceAttributes`), owned; empty strings stand for absent fields.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// `spec.resourceAttributes`.
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    /// `spec.nonResourceAttributes`.
    Path { verb: String, path: String },
}

impl Asked {
    /// The authorizer's attributes for `user`.
    fn attributes<'a>(&'a self, user: &'a Identity) -> Attributes<'a> {
        let some = |s: &'a String| Some(s.as_str()).filter(|s| !s.is_empty());
        match self {
            Asked::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                name,
            } => Attributes {
                user,
                verb,
                target: Target::Resource {
                    group,
                    resource,
                    subresource: some(subresource),
                    namespace: some(namespace),
                    name: some(name),
                },
            },
            Asked::Path { verb, path } => Attributes::path(user, verb, path),
        }
    }
}

/// A string field of `v` (absent or not a string: empty, as Go's zero value).
fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `spec.<field>`, unless absent or `null` (Go's nil pointer).
fn given<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    spec.get(field).filter(|v| !v.is_null())
}

/// Go's `%#v` of kube's internal `NonResourceAttributes`, as field errors print it.
fn go_non_resource(v: &Value) -> String {
    format!(
        "authorization.NonResourceAttributes{{Path:{:?}, Verb:{:?}}}",
        text(v, "path"),
        text(v, "verb")
    )
}

/// One `FieldValueInvalid` cause: `(field, reason, "<field>: Invalid value: <value>:
/// <detail>")`.
fn invalid(field: &str, value: &str, detail: &str) -> (String, String, String) {
    (
        field.to_string(),
        "FieldValueInvalid".to_string(),
        format!("{field}: Invalid value: {value}: {detail}"),
    )
}

/// kube's `ValidateSubjectAccessReviewSpec` (with `subject`: the user or groups are
/// named) or `ValidateSelfSubjectAccessReviewSpec`: the field errors, in kube's order.
fn validate_spec(spec: &Value, subject: bool) -> Vec<(String, String, String)> {
    let mut errs = Vec::new();
    let resource = given(spec, "resourceAttributes");
    let non_resource = given(spec, "nonResourceAttributes");
    if let (Some(_), Some(nr)) = (resource, non_resource) {
        errs.push(invalid(
            "spec.nonResourceAttributes",
            &go_non_resource(nr),
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if resource.is_none() && non_resource.is_none() {
        // kube passes the (nil) nonResourceAttributes as the value: printed "null".
        errs.push(invalid(
            "spec.resourceAttributes",
            "\"null\"",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let no_groups = spec
        .get("groups")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if subject && text(spec, "user").is_empty() && no_groups {
        errs.push(invalid(
            "spec.user",
            &format!("{:?}", text(spec, "user")),
            "at least one of user or group must be specified",
        ));
    }
    if let Some(r) = resource {
        for sel in ["fieldSelector", "labelSelector"] {
            errs.extend(validate_selector(r, sel));
        }
    }
    errs
}

/// kube's checks of `spec.resourceAttributes.<which>` (fieldSelector, labelSelector):
/// a raw selector or requirements, not both. (The requirements' own checks are not
/// made: RBAC ignores selectors.)
fn validate_selector(resource: &Value, which: &str) -> Vec<(String, String, String)> {
    let Some(sel) = given(resource, which) else {
        return Vec::new();
    };
    let path = format!("spec.resourceAttributes.{which}");
    let raw = text(sel, "rawSelector");
    let requirements = sel
        .get("requirements")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let mut errs = Vec::new();
    if !raw.is_empty() && requirements {
        errs.push(invalid(
            &format!("{path}.rawSelector"),
            &format!("{raw:?}"),
            "may not specified at the same time as requirements",
        ));
    }
    if raw.is_empty() && !requirements {
        let field = format!("{path}.requirements");
        errs.push((
            field.clone(),
            "FieldValueRequired".to_string(),
            format!(
                "{field}: Required value: when {path} is specified, requirements or rawSelector is required"
            ),
        ));
    }
    errs
}

/// kube's check that a review's metadata is empty (but for the namespace of a
/// LocalSubjectAccessReview): the field error when it is not. Semantic equality, so
/// empty lists and maps count as absent; `managedFields` is ignored.
fn validate_metadata(meta: Option<&Value>, local: bool) -> Option<(String, String, String)> {
    let meta = meta.and_then(Value::as_object)?;
    let set = meta.iter().any(|(k, v)| {
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_i64() == Some(0),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Bool(_) => false,
        };
        !empty && k != "managedFields" && !(local && k == "namespace")
    });
    if !set {
        return None;
    }
    let detail = if local {
        "must be empty except for namespace"
    } else {
        "must be empty"
    };
    Some(invalid("metadata", &go_object_meta(meta), detail))
}

/// Go's `%#v` of a `metav1.ObjectMeta`, as kube prints a refused review's metadata.
/// Owner references and managed fields are summarized (Go prints pointers in them).
fn go_object_meta(m: &Map<String, Value>) -> String {
    let s = |k: &str| format!("{:?}", m.get(k).and_then(Value::as_str).unwrap_or(""));
    let time = |k: &str| match m.get(k).and_then(Value::as_str) {
        Some(t) => go_time(t),
        None => "time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)".to_string(),
    };
    let map = |k: &str| match m.get(k).and_then(Value::as_object) {
        Some(o) if !o.is_empty() => {
            let mut kv: Vec<(&String, &Value)> = o.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or("")))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
        Some(_) => "map[string]string{}".to_string(),
        None => "map[string]string(nil)".to_string(),
    };
    let deletion = match m.get("deletionTimestamp").and_then(Value::as_str) {
        Some(t) => go_time(t),
        None => "<nil>".to_string(),
    };
    let grace = match m.get("deletionGracePeriodSeconds").and_then(Value::as_i64) {
        // Go prints the pointer's address, which no one can predict.
        Some(_) => "(*int64)(0xc000000000)".to_string(),
        None => "(*int64)(nil)".to_string(),
    };
    let finalizers = match m.get("finalizers").and_then(Value::as_array) {
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|v| format!("{:?}", v.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
        None => "[]string(nil)".to_string(),
    };
    let owners = match m.get("ownerReferences").and_then(Value::as_array) {
        Some(a) => format!("[]v1.OwnerReference{{/* {} */}}", a.len()),
        None => "[]v1.OwnerReference(nil)".to_string(),
    };
    let managed = match m.get("managedFields").and_then(Value::as_array) {
        Some(a) => format!("[]v1.ManagedFieldsEntry{{/* {} */}}", a.len()),
        None => "[]v1.ManagedFieldsEntry(nil)".to_string(),
    };
    format!(
        "v1.ObjectMeta{{Name:{}, GenerateName:{}, Namespace:{}, SelfLink:{}, UID:{}, ResourceVersion:{}, Generation:{}, CreationTimestamp:{}, DeletionTimestamp:{deletion}, DeletionGracePeriodSeconds:{grace}, Labels:{}, Annotations:{}, OwnerReferences:{owners}, Finalizers:{finalizers}, ManagedFields:{managed}}}",
        s("name"),
        s("generateName"),
        s("namespace"),
        s("selfLink"),
        s("uid"),
        s("resourceVersion"),
        m.get("generation").and_then(Value::as_i64).unwrap_or(0),
        time("creationTimestamp"),
        map("labels"),
        map("annotations"),
    )
}

/// Go's `GoString` of a `metav1.Time` decoded from RFC 3339 `t` (kube keeps it in the
/// local zone): `time.Date(2024, time.January, 2, 3, 4, 5, 0, time.Local)`.
fn go_time(t: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let num = |r: std::ops::Range<usize>| t.get(r).and_then(|x| x.parse::<u32>().ok());
    match (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) {
        (Some(y), Some(mo @ 1..=12), Some(d), Some(h), Some(mi), Some(s)) => format!(
            "time.Date({y}, time.{}, {d}, {h}, {mi}, {s}, 0, time.Local)",
            MONTHS[mo as usize - 1]
        ),
        _ => format!("time.Date({t:?})"),
    }
}

/// kube's `ValidateLocalSubjectAccessReview` beyond the spec's checks: the attributes'
/// namespace is the review's, and only resource attributes may be asked.
fn validate_local(spec: &Value, namespace: &str) -> Vec<(String, String, String)> {
    let mut errs = Vec::new();
    if let Some(r) = given(spec, "resourceAttributes") {
        let asked = text(r, "namespace");
        if asked != namespace {
            errs.push(invalid(
                "spec.resourceAttributes.namespace",
                &format!("{asked:?}"),
                "must match metadata.namespace",
            ));
        }
    }
    if let Some(nr) = given(spec, "nonResourceAttributes") {
        errs.push(invalid(
            "spec.nonResourceAttributes",
            &go_non_resource(nr),
            "disallowed on this kind of request",
        ));
    }
    errs
}

/// The attributes of a valid spec (exactly one of the two is given).
fn asked(spec: &Value) -> Asked {
    match given(spec, "resourceAttributes") {
        Some(r) => Asked::Resource {
            verb: text(r, "verb"),
            group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
        },
        None => {
            let nr = given(spec, "nonResourceAttributes").unwrap_or(&Value::Null);
            Asked::Path {
                verb: text(nr, "verb"),
                path: text(nr, "path"),
            }
        }
    }
}

/// The subject a SubjectAccessReview names (kube's `AuthorizationAttributesFrom`: the
/// user and groups as given, nothing added).
fn subject(spec: &Value) -> Identity {
    Identity {
        user: text(spec, "user"),
        groups: spec
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    }
}

/// A review's status from the chain's decision (kube's `SubjectAccessReviewStatus`:
/// `allowed` always, `denied`, `reason` and `evaluationError` when set).
fn status(decision: &Decision, reason: &str) -> Value {
    let mut s = Map::new();
    s.insert("allowed".into(), json!(*decision == Decision::Allow));
    if matches!(decision, Decision::Deny(_)) {
        s.insert("denied".into(), json!(true));
    }
    if !reason.is_empty() {
        s.insert("reason".into(), json!(reason));
    }
    Value::Object(s)
}

/// SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectAccessReview.
fn access_review(
    state: &ApiState,
    ident: &Identity,
    kind: &str,
    namespace: Option<&str>,
    mut body: Value,
) -> ApiResult<Reply> {
    let local = kind == "LocalSubjectAccessReview";
    if local {
        // The create handler's `EnsureObjectNamespaceMatchesRequestNamespace`.
        let ns = namespace.unwrap_or_default();
        match body.pointer("/metadata/namespace").and_then(Value::as_str) {
            None | Some("") => {
                if !body.get("metadata").is_some_and(Value::is_object) {
                    body["metadata"] = json!({});
                }
                body["metadata"]["namespace"] = json!(ns);
            }
            Some(given) if given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            Some(_) => {}
        }
    }
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let mut errs = validate_spec(&spec, kind != "SelfSubjectAccessReview");
    errs.extend(validate_metadata(body.get("metadata"), local));
    if local {
        errs.extend(validate_local(&spec, namespace.unwrap_or_default()));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(AUTHORIZATION, kind, "", errs));
    }
    let who = if kind == "SelfSubjectAccessReview" {
        ident.clone()
    } else {
        subject(&spec)
    };
    let asked = asked(&spec);
    let (decision, reason) = state.authz.review(&asked.attributes(&who));
    Ok(answered(
        body,
        kind,
        "authorization.k8s.io/v1",
        status(&decision, &reason),
    ))
}

/// A resource rule as `SubjectRulesReviewStatus` lists it (empty lists left out, as
/// kube's `omitempty`; verbs always).
fn resource_rule(r: &PolicyRule) -> Value {
    let mut m = Map::new();
    m.insert("verbs".into(), json!(r.verbs));
    for (key, v) in [
        ("apiGroups", &r.api_groups),
        ("resources", &r.resources),
        ("resourceNames", &r.resource_names),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            m.insert(key.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// A non-resource rule as `SubjectRulesReviewStatus` lists it.
fn non_resource_rule(r: &PolicyRule) -> Value {
    let mut m = Map::new();
    m.insert("verbs".into(), json!(r.verbs));
    if let Some(v) = r.non_resource_urls.as_ref().filter(|v| !v.is_empty()) {
        m.insert("nonResourceURLs".into(), json!(v));
    }
    Value::Object(m)
}

/// SelfSubjectRulesReview: the chain's rules for the caller in `spec.namespace`. As
/// kube, the answer is a new object carrying the status only.
fn rules_review(state: &ApiState, ident: &Identity, body: &Value) -> ApiResult<Reply> {
    let namespace = body
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let rules = state.authz.rules_for(ident, namespace);
    Ok(answered(
        json!({"spec": {}}),
        "SelfSubjectRulesReview",
        "authorization.k8s.io/v1",
        rules_status(&rules),
    ))
}

/// `SubjectRulesReviewStatus` of a rule resolver's answer.
fn rules_status(rules: &crate::authz::RulesReview) -> Value {
    let mut s = Map::new();
    s.insert(
        "resourceRules".into(),
        rules.resource_rules.iter().map(resource_rule).collect(),
    );
    s.insert(
        "nonResourceRules".into(),
        rules
            .non_resource_rules
            .iter()
            .map(non_resource_rule)
            .collect(),
    );
    s.insert("incomplete".into(), json!(rules.incomplete));
    let error = rules.evaluation_error();
    if !error.is_empty() {
        s.insert("evaluationError".into(), json!(error));
    }
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[(String, String, String)]) -> Vec<&str> {
        errs.iter().map(|(_, _, m)| m.as_str()).collect()
    }

    #[test]
    fn spec_validation_matches_kube() {
        let neither = json!({"user": "bob"});
        assert_eq!(
            messages(&validate_spec(&neither, true)),
            [
                r#"spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified"#
            ]
        );
        let both = json!({
            "user": "bob",
            "resourceAttributes": {"verb": "get"},
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
        });
        assert_eq!(
            messages(&validate_spec(&both, true)),
            [
                r#"spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/healthz", Verb:"get"}: cannot be specified in combination with resourceAttributes"#
            ]
        );
        let nobody = json!({"resourceAttributes": {"verb": "get"}, "groups": []});
        assert_eq!(
            messages(&validate_spec(&nobody, true)),
            [r#"spec.user: Invalid value: "": at least one of user or group must be specified"#]
        );
        // A self review needs no subject; a group alone is a subject.
        assert!(validate_spec(&nobody, false).is_empty());
        let group = json!({"resourceAttributes": {}, "groups": ["g"]});
        assert!(validate_spec(&group, true).is_empty());
        // `null` is Go's nil pointer.
        let null = json!({"user": "u", "resourceAttributes": null, "nonResourceAttributes": {}});
        assert!(validate_spec(&null, true).is_empty());
    }

    #[test]
    fn metadata_must_be_empty() {
        assert_eq!(validate_metadata(None, false), None);
        let empty = json!({"creationTimestamp": null, "labels": {}, "finalizers": []});
        assert_eq!(validate_metadata(Some(&empty), false), None);
        let ns = json!({"namespace": "default"});
        assert_eq!(validate_metadata(Some(&ns), true), None);
        let named = json!({"name": "x", "labels": {"b": "2", "a": "1"}});
        let (field, _, message) = validate_metadata(Some(&named), false).unwrap();
        assert_eq!(field, "metadata");
        assert_eq!(
            message,
            r#"metadata: Invalid value: v1.ObjectMeta{Name:"x", GenerateName:"", Namespace:"", SelfLink:"", UID:"", ResourceVersion:"", Generation:0, CreationTimestamp:time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC), DeletionTimestamp:<nil>, DeletionGracePeriodSeconds:(*int64)(nil), Labels:map[string]string{"a":"1", "b":"2"}, Annotations:map[string]string(nil), OwnerReferences:[]v1.OwnerReference(nil), Finalizers:[]string(nil), ManagedFields:[]v1.ManagedFieldsEntry(nil)}: must be empty"#
        );
        let (_, _, message) = validate_metadata(Some(&named), true).unwrap();
        assert!(
            message.ends_with(": must be empty except for namespace"),
            "{message}"
        );
        assert_eq!(
            go_time("2024-03-02T01:04:05Z"),
            "time.Date(2024, time.March, 2, 1, 4, 5, 0, time.Local)"
        );
    }

    #[test]
    fn selectors_need_one_form() {
        let spec = json!({"user": "u", "resourceAttributes": {
            "fieldSelector": {},
            "labelSelector": {"rawSelector": "a=b", "requirements": [{"key": "a", "operator": "Exists"}]},
        }});
        assert_eq!(
            messages(&validate_spec(&spec, true)),
            [
                "spec.resourceAttributes.fieldSelector.requirements: Required value: when spec.resourceAttributes.fieldSelector is specified, requirements or rawSelector is required",
                r#"spec.resourceAttributes.labelSelector.rawSelector: Invalid value: "a=b": may not specified at the same time as requirements"#,
            ]
        );
        let ok =
            json!({"user": "u", "resourceAttributes": {"labelSelector": {"rawSelector": "a"}}});
        assert!(validate_spec(&ok, true).is_empty());
    }

    #[test]
    fn local_validation_matches_kube() {
        let spec = json!({"user": "u", "resourceAttributes": {"namespace": "other"}});
        assert_eq!(
            messages(&validate_local(&spec, "default")),
            [
                r#"spec.resourceAttributes.namespace: Invalid value: "other": must match metadata.namespace"#
            ]
        );
        let spec = json!({"user": "u", "nonResourceAttributes": {"path": "/x"}});
        assert_eq!(
            messages(&validate_local(&spec, "default")),
            [
                r#"spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/x", Verb:""}: disallowed on this kind of request"#
            ]
        );
        let ok = json!({"user": "u", "resourceAttributes": {"namespace": "default"}});
        assert!(validate_local(&ok, "default").is_empty());
    }

    #[test]
    fn attributes_leave_empty_fields_out() {
        let spec = json!({"resourceAttributes": {
            "verb": "list", "resource": "pods", "namespace": "", "subresource": "log", "name": "",
        }});
        let a = asked(&spec);
        let u = subject(&json!({"user": "bob", "groups": ["g"]}));
        assert_eq!(u.groups, ["g"]);
        let at = a.attributes(&u);
        assert_eq!(at.verb, "list");
        match at.target {
            Target::Resource {
                group,
                resource,
                subresource,
                namespace,
                name,
            } => {
                assert_eq!((group, resource), ("", "pods"));
                assert_eq!((subresource, namespace, name), (Some("log"), None, None));
            }
            Target::Path(_) => panic!("a resource was asked"),
        }
        let spec = json!({"nonResourceAttributes": {"verb": "get", "path": "/healthz"}});
        assert_eq!(
            asked(&spec),
            Asked::Path {
                verb: "get".into(),
                path: "/healthz".into()
            }
        );
    }

    #[test]
    fn status_has_kube_fields() {
        assert_eq!(
            status(&Decision::Allow, "RBAC: allowed by x"),
            json!({"allowed": true, "reason": "RBAC: allowed by x"})
        );
        assert_eq!(
            status(&Decision::NoOpinion(String::new()), ""),
            json!({"allowed": false})
        );
        assert_eq!(
            status(&Decision::Deny("no".into()), "no"),
            json!({"allowed": false, "denied": true, "reason": "no"})
        );
    }

    #[test]
    fn rules_status_omits_empty_lists() {
        let rules = crate::authz::RulesReview {
            resource_rules: vec![PolicyRule {
                verbs: vec!["get".into()],
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                resource_names: Some(vec![]),
                non_resource_urls: None,
            }],
            non_resource_rules: vec![PolicyRule {
                verbs: vec!["get".into()],
                non_resource_urls: Some(vec!["/healthz".into()]),
                ..PolicyRule::default()
            }],
            incomplete: true,
            errors: vec!["a".into(), "b".into(), "a".into()],
        };
        assert_eq!(
            rules_status(&rules),
            json!({
                "resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
                "incomplete": true,
                "evaluationError": "[a, b]",
            })
        );
        assert_eq!(
            rules_status(&crate::authz::RulesReview::default()),
            json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false})
        );
    }
}
