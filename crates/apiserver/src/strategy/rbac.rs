//! Roles and bindings: kube's `pkg/registry/rbac/{role,clusterrole,rolebinding,
//! clusterrolebinding}/strategy.go` with the validation of `pkg/apis/rbac/validation`.
//! None keeps a `metadata.generation`. Who may write them (the escalation check) is
//! admission's `RbacEscalation`.

use serde_json::{json, Value};
use skiff_resources::validation::{is_dns1123_subdomain, is_qualified_name, is_valid_label_value};
use skiff_resources::{FieldError as Error, FieldErrorKind, ResourceInfo};

use super::{from_resources, FieldError, Strategy};

/// The RBAC API group, the only one roles are referenced in and users and groups belong to.
const GROUP: &str = "rbac.authorization.k8s.io";

/// The four RBAC kinds' strategy.
pub(super) struct Rbac;

impl Strategy for Rbac {
    fn has_generation(&self) -> bool {
        false
    }

    fn validate(&self, info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = skiff_resources::validate(info, obj, old);
        match info.kind {
            "Role" => validate_rules(obj, true, &mut errs),
            "ClusterRole" => {
                validate_rules(obj, false, &mut errs);
                validate_aggregation(obj, &mut errs);
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                validate_binding(obj, info.kind == "RoleBinding", &mut errs);
                if let Some(old) = old {
                    validate_role_ref_unchanged(obj, old, &mut errs);
                }
            }
            _ => {}
        }
        from_resources(errs)
    }
}

/// The list at `field` of `v` (empty when absent or null).
fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The string at `field` of `v` (`""` when absent).
fn string<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// kube's `ValidatePolicyRule` for each rule (`namespaced`: a Role's).
fn validate_rules(role: &Value, namespaced: bool, errs: &mut Vec<Error>) {
    for (i, rule) in list(role, "rules").iter().enumerate() {
        let path = format!("rules[{i}]");
        if list(rule, "verbs").is_empty() {
            errs.push(Error::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = list(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let urls_value = Value::Array(urls.to_vec());
            if namespaced {
                errs.push(Error::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls_value.clone(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let resource_rule = ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|f| !list(rule, f).is_empty());
            if resource_rule {
                errs.push(Error::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls_value,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list(rule, "apiGroups").is_empty() {
            errs.push(Error::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list(rule, "resources").is_empty() {
            errs.push(Error::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// A ClusterRole's `aggregationRule`: at least one selector, each a valid label selector
/// (kube's `ValidateLabelSelector`).
fn validate_aggregation(role: &Value, errs: &mut Vec<Error>) {
    let Some(rule) = role.get("aggregationRule").filter(|r| !r.is_null()) else {
        return;
    };
    let selectors = list(rule, "clusterRoleSelectors");
    if selectors.is_empty() {
        errs.push(Error::required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (i, sel) in selectors.iter().enumerate() {
        let path = format!("aggregationRule.clusterRoleSelectors[{i}]");
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                for m in is_qualified_name(k) {
                    errs.push(Error::invalid(format!("{path}.matchLabels"), json!(k), m));
                }
                for m in is_valid_label_value(v.as_str().unwrap_or("")) {
                    errs.push(Error::invalid(format!("{path}.matchLabels"), v.clone(), m));
                }
            }
        }
        for (j, req) in list(sel, "matchExpressions").iter().enumerate() {
            let path = format!("{path}.matchExpressions[{j}]");
            let values = list(req, "values");
            match string(req, "operator") {
                "In" | "NotIn" if values.is_empty() => errs.push(Error::required(
                    format!("{path}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(Error::forbidden(
                    format!("{path}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                op => errs.push(Error::invalid(
                    format!("{path}.operator"),
                    json!(op),
                    "not a valid selector operator",
                )),
            }
            let key = string(req, "key");
            for m in is_qualified_name(key) {
                errs.push(Error::invalid(format!("{path}.key"), json!(key), m));
            }
        }
    }
}

/// kube's `IsValidPathSegmentName`: what role names must be.
fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// kube's `ValidateRoleBinding` / `ValidateClusterRoleBinding` beyond metadata.
fn validate_binding(b: &Value, namespaced: bool, errs: &mut Vec<Error>) {
    let role_ref = b.get("roleRef").unwrap_or(&Value::Null);
    let api_group = string(role_ref, "apiGroup");
    if api_group != GROUP {
        errs.push(Error::not_supported(
            "roleRef.apiGroup",
            json!(api_group),
            &[GROUP],
        ));
    }
    let kind = string(role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(Error::not_supported("roleRef.kind", json!(kind), kinds));
    }
    let name = string(role_ref, "name");
    if name.is_empty() {
        errs.push(Error::required("roleRef.name", ""));
    }
    for m in path_segment_errors(name) {
        errs.push(Error::invalid("roleRef.name", json!(name), m));
    }
    for (i, s) in list(b, "subjects").iter().enumerate() {
        validate_subject(s, namespaced, &format!("subjects[{i}]"), errs);
    }
}

/// kube's `ValidateRoleBindingSubject`.
fn validate_subject(s: &Value, namespaced: bool, path: &str, errs: &mut Vec<Error>) {
    let name = string(s, "name");
    if name.is_empty() {
        errs.push(Error::required(format!("{path}.name"), ""));
    }
    let api_group = string(s, "apiGroup");
    match string(s, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in is_dns1123_subdomain(name) {
                    errs.push(Error::invalid(format!("{path}.name"), json!(name), m));
                }
            }
            if !api_group.is_empty() {
                errs.push(Error::not_supported(
                    format!("{path}.apiGroup"),
                    json!(api_group),
                    &[""],
                ));
            }
            if !namespaced && string(s, "namespace").is_empty() {
                errs.push(Error::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                errs.push(Error::not_supported(
                    format!("{path}.apiGroup"),
                    json!(api_group),
                    &[GROUP],
                ));
            }
        }
        kind => errs.push(Error::not_supported(
            format!("{path}.kind"),
            json!(kind),
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// A binding's `roleRef` may not change: kube prints the new one as a Go struct.
fn validate_role_ref_unchanged(b: &Value, old: &Value, errs: &mut Vec<Error>) {
    let role_ref = |v: &Value| {
        let r = v.get("roleRef").unwrap_or(&Value::Null);
        (
            string(r, "apiGroup").to_string(),
            string(r, "kind").to_string(),
            string(r, "name").to_string(),
        )
    };
    let new = role_ref(b);
    if new != role_ref(old) {
        let (group, kind, name) = new;
        // The value is Go's `%#v` of the internal type, which no JSON value renders: it
        // goes into the message, before kube's detail.
        errs.push(Error {
            path: "roleRef".into(),
            kind: FieldErrorKind::Invalid,
            message: format!(
                "rbac.RoleRef{{APIGroup:{group:?}, Kind:{kind:?}, Name:{name:?}}}: cannot change roleRef"
            ),
            bad_value: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(plural: &str) -> &'static ResourceInfo {
        skiff_resources::lookup(GROUP, "v1", plural).unwrap()
    }

    fn messages(plural: &str, obj: Value, old: Option<Value>) -> Vec<String> {
        Rbac.validate(info(plural), &obj, old.as_ref())
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn rules_are_checked_as_kube() {
        let role = json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            {"verbs": ["get"]},
        ]});
        assert_eq!(
            messages("roles", role.clone(), None),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[2].resources: Required value: resource rules must supply at least one resource",
            ]
        );
        let mut cr = role;
        cr["metadata"] = json!({"name": "r"});
        cr["rules"] = json!([{"nonResourceURLs": ["/x"], "resources": ["pods"], "verbs": ["get"]}]);
        assert_eq!(
            messages("clusterroles", cr, None),
            ["rules[0].nonResourceURLs: Invalid value: []string{\"/x\"}: rules cannot apply to both regular resources and non-resource URLs"]
        );
        let agg =
            json!({"metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            messages("clusterroles", agg, None),
            ["aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"]
        );
        let agg = json!({"metadata": {"name": "r"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Near"}]}
        ]}});
        assert_eq!(
            messages("clusterroles", agg, None),
            [
                "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "aggregationRule.clusterRoleSelectors[0].matchExpressions[1].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
    }

    #[test]
    fn bindings_are_checked_as_kube() {
        let crb = json!({"metadata": {"name": "b"},
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "a/b"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "default"},
            {"kind": "Robot", "name": "r"},
            {"kind": "User", "name": "", "apiGroup": ""},
        ]});
        assert_eq!(
            messages("clusterrolebindings", crb, None),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Invalid value: \"a/b\": may not contain '/'",
                "subjects[0].namespace: Required value",
                "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                "subjects[2].name: Required value",
                "subjects[2].apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
            ]
        );
        let rb = |name: &str| {
            json!({"metadata": {"name": "b", "namespace": "d"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}]})
        };
        assert!(messages("rolebindings", rb("view"), None).is_empty());
        assert_eq!(
            messages("rolebindings", rb("edit"), Some(rb("view"))),
            ["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"]
        );
        let e = &Rbac.validate(info("rolebindings"), &rb("edit"), Some(&rb("view")))[0];
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("roleRef", "FieldValueInvalid")
        );
    }
}
