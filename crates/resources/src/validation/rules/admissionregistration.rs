//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration, with kube-apiserver's
//! messages (`pkg/apis/admissionregistration/validation`): webhook names, rules,
//! client configuration, policies and timeouts.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{arr, s, Errs};
use crate::validation::{is_dns1035_label, is_dns1123_subdomain, FieldError};

/// The AdmissionReview versions kube-apiserver speaks, preferred first.
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Validates a webhook configuration (`mutating`: a MutatingWebhookConfiguration).
/// On update, `old`'s webhooks may keep what they already had (duplicate names, unknown
/// review versions), as kube-apiserver's ratcheting allows.
pub(super) fn validate_webhook_configuration(
    obj: &Value,
    old: Option<&Value>,
    mutating: bool,
    e: &mut Errs,
) {
    let old_hooks = old.map(|o| arr(o, "/webhooks")).unwrap_or(&[]);
    let old_unique = {
        let mut seen = HashSet::new();
        old.is_none()
            || old_hooks
                .iter()
                .all(|h| seen.insert(s(h, "/name").unwrap_or("")))
    };
    let old_versions_ok = old.is_none()
        || old_hooks.iter().all(|h| {
            arr(h, "/admissionReviewVersions")
                .iter()
                .any(|v| v.as_str().is_some_and(|v| REVIEW_VERSIONS.contains(&v)))
        });
    let mut names = HashSet::new();
    for (i, h) in arr(obj, "/webhooks").iter().enumerate() {
        let p = format!("webhooks[{i}]");
        let name = s(h, "/name").unwrap_or("");
        validate_webhook(h, &p, mutating, old_versions_ok, e);
        if old_unique && !name.is_empty() && !names.insert(name) {
            e.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
        }
    }
}

fn validate_webhook(h: &Value, p: &str, mutating: bool, versions_strict: bool, e: &mut Errs) {
    match s(h, "/name").unwrap_or("") {
        "" => e.push(FieldError::required(format!("{p}.name"), "")),
        name => {
            for msg in fully_qualified_name(name) {
                e.push(FieldError::invalid(format!("{p}.name"), json!(name), msg));
            }
        }
    }
    for (j, r) in arr(h, "/rules").iter().enumerate() {
        validate_rule(r, &format!("{p}.rules[{j}]"), e);
    }
    if let Some(fp) = s(h, "/failurePolicy") {
        if !["Fail", "Ignore"].contains(&fp) {
            e.push(FieldError::not_supported(
                format!("{p}.failurePolicy"),
                json!(fp),
                &["Fail", "Ignore"],
            ));
        }
    }
    if let Some(mp) = s(h, "/matchPolicy") {
        if !["Equivalent", "Exact"].contains(&mp) {
            e.push(FieldError::not_supported(
                format!("{p}.matchPolicy"),
                json!(mp),
                &["Equivalent", "Exact"],
            ));
        }
    }
    match s(h, "/sideEffects") {
        None => e.push(FieldError::required(
            format!("{p}.sideEffects"),
            "must specify one of None, NoneOnDryRun",
        )),
        Some(se) if !["None", "NoneOnDryRun"].contains(&se) => e.push(FieldError::not_supported(
            format!("{p}.sideEffects"),
            json!(se),
            &["None", "NoneOnDryRun"],
        )),
        _ => {}
    }
    if let Some(t) = h.get("timeoutSeconds").and_then(Value::as_i64) {
        if !(1..=30).contains(&t) {
            e.push(FieldError::invalid(
                format!("{p}.timeoutSeconds"),
                json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    if mutating {
        if let Some(rp) = s(h, "/reinvocationPolicy") {
            if !["IfNeeded", "Never"].contains(&rp) {
                e.push(FieldError::not_supported(
                    format!("{p}.reinvocationPolicy"),
                    json!(rp),
                    &["IfNeeded", "Never"],
                ));
            }
        }
    }
    validate_review_versions(h, p, versions_strict, e);
    validate_client_config(h.get("clientConfig").unwrap_or(&Value::Null), p, e);
    for sel in ["namespaceSelector", "objectSelector"] {
        if let Some(v) = h.get(sel) {
            validate_label_selector(v, &format!("{p}.{sel}"), e);
        }
    }
}

/// A label selector's expressions, as `metav1validation.ValidateLabelSelector` checks them.
fn validate_label_selector(sel: &Value, p: &str, e: &mut Errs) {
    for (i, x) in arr(sel, "/matchExpressions").iter().enumerate() {
        let xp = format!("{p}.matchExpressions[{i}]");
        let values = arr(x, "/values");
        match s(x, "/operator").unwrap_or("") {
            "In" | "NotIn" if values.is_empty() => e.push(FieldError::required(
                format!("{xp}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.push(FieldError::forbidden(
                format!("{xp}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => e.push(FieldError::invalid(
                format!("{xp}.operator"),
                json!(op),
                "not a valid selector operator",
            )),
        }
    }
}

/// `utilvalidation.IsFullyQualifiedName`: a DNS subdomain of at least three segments.
fn fully_qualified_name(name: &str) -> Vec<String> {
    let errs = is_dns1123_subdomain(name);
    if !errs.is_empty() {
        return errs;
    }
    if name.split('.').count() < 3 {
        return vec!["should be a domain with at least three segments separated by dots".into()];
    }
    Vec::new()
}

fn validate_review_versions(h: &Value, p: &str, strict: bool, e: &mut Errs) {
    let path = format!("{p}.admissionReviewVersions");
    let versions = arr(h, "/admissionReviewVersions");
    if versions.is_empty() {
        e.push(FieldError::required(
            path,
            format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
        ));
        return;
    }
    let mut seen = HashSet::new();
    let mut known = false;
    for (i, v) in versions.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        for msg in is_dns1035_label(v) {
            e.push(FieldError::invalid(format!("{path}[{i}]"), json!(v), msg));
        }
        if !seen.insert(v) {
            e.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(v),
                "duplicate version",
            ));
        }
        known |= REVIEW_VERSIONS.contains(&v);
    }
    if strict && !known {
        e.push(FieldError::invalid(
            path,
            Value::Array(versions.to_vec()),
            format!(
                "must include at least one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

fn validate_rule(r: &Value, p: &str, e: &mut Errs) {
    let ops = arr(r, "/operations");
    if ops.is_empty() {
        e.push(FieldError::required(format!("{p}.operations"), ""));
    }
    if ops.len() > 1 && ops.iter().any(|o| o == "*") {
        e.push(FieldError::invalid(
            format!("{p}.operations"),
            Value::Array(ops.to_vec()),
            "if '*' is present, must not specify other operations",
        ));
    }
    const OPS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
    for (i, o) in ops.iter().enumerate() {
        let o = o.as_str().unwrap_or("");
        if !OPS.contains(&o) {
            e.push(FieldError::not_supported(
                format!("{p}.operations[{i}]"),
                json!(o),
                OPS,
            ));
        }
    }
    for (field, what) in [("apiGroups", "group"), ("apiVersions", "version")] {
        let list = arr(r, &format!("/{field}"));
        if list.is_empty() {
            e.push(FieldError::required(format!("{p}.{field}"), ""));
        }
        if list.len() > 1 && list.iter().any(|v| v == "*") {
            e.push(FieldError::invalid(
                format!("{p}.{field}"),
                Value::Array(list.to_vec()),
                format!("if '*' is present, must not specify other {what}s"),
            ));
        }
        if field == "apiVersions" {
            for (i, v) in list.iter().enumerate() {
                if v == "" {
                    e.push(FieldError::required(format!("{p}.{field}[{i}]"), ""));
                }
            }
        }
    }
    validate_resources(arr(r, "/resources"), &format!("{p}.resources"), e);
    if let Some(scope) = s(r, "/scope") {
        if !["*", "Cluster", "Namespaced"].contains(&scope) {
            e.push(FieldError::not_supported(
                format!("{p}.scope"),
                json!(scope),
                &["*", "Cluster", "Namespaced"],
            ));
        }
    }
}

/// kube's `validateResources`: `*`, `*/*`, `res/*`, `*/sub` and their exclusions.
fn validate_resources(list: &[Value], p: &str, e: &mut Errs) {
    if list.is_empty() {
        e.push(FieldError::required(p, ""));
        return;
    }
    let names: Vec<&str> = list.iter().map(|v| v.as_str().unwrap_or("")).collect();
    let has_all_all = names.contains(&"*/*");
    let has_star = names.contains(&"*");
    if has_all_all && names.len() > 1 {
        e.push(FieldError::invalid(
            p,
            Value::Array(list.to_vec()),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    let mut res_with_all_sub = HashSet::new();
    let mut sub_with_all_res = HashSet::new();
    for n in &names {
        if let Some((res, sub)) = n.split_once('/') {
            if sub == "*" {
                res_with_all_sub.insert(res);
            }
            if res == "*" {
                sub_with_all_res.insert(sub);
            }
        }
    }
    for (i, n) in names.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        if n.is_empty() {
            e.push(FieldError::required(ip, ""));
            continue;
        }
        if *n == "*" || *n == "*/*" {
            continue;
        }
        match n.split_once('/') {
            None => {
                if has_star {
                    e.push(FieldError::invalid(
                        ip,
                        json!(n),
                        "if '*' is present, must not specify other resources without subresources",
                    ));
                }
            }
            Some((res, sub)) => {
                if sub != "*" && res_with_all_sub.contains(res) {
                    e.push(FieldError::invalid(
                        ip.clone(),
                        json!(n),
                        format!("if '{res}/*' is present, must not specify {n}"),
                    ));
                }
                if res != "*" && sub_with_all_res.contains(sub) {
                    e.push(FieldError::invalid(
                        ip,
                        json!(n),
                        format!("if '*/{sub}' is present, must not specify {n}"),
                    ));
                }
            }
        }
    }
}

fn validate_client_config(cc: &Value, p: &str, e: &mut Errs) {
    validate_webhook_client_config(cc, &format!("{p}.clientConfig"), e);
}

/// kube's checks of a webhook `clientConfig` at path `p` (exactly one of `url` and
/// `service`, each well formed): shared by admission webhooks and CRD conversion.
pub(crate) fn validate_webhook_client_config(cc: &Value, p: &str, e: &mut Errs) {
    let p = p.to_string();
    let url = s(cc, "/url");
    let svc = cc.get("service").filter(|v| v.is_object());
    match (url, svc) {
        (Some(url), None) => {
            for msg in url_errors(url) {
                e.push(FieldError::invalid(format!("{p}.url"), json!(url), msg));
            }
        }
        (None, Some(svc)) => validate_service_ref(svc, &format!("{p}.service"), e),
        _ => e.push(FieldError::required(
            p,
            "exactly one of url or service is required",
        )),
    }
}

/// kube's `webhook.ValidateWebhookURL` (without the form of the host).
fn url_errors(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec!["host must be provided".into()];
    };
    let mut errs = Vec::new();
    if scheme != "https" {
        errs.push("'https' is the only allowed URL scheme".into());
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() {
        errs.push("host must be provided".into());
    }
    if let Some(u) = user {
        errs.push(format!(
            "user information is not permitted in the URL: {u:?}"
        ));
    }
    if let Some(f) = fragment {
        errs.push(format!("fragments are not permitted in the URL: {f:?}"));
    }
    if let Some(q) = query {
        errs.push(format!(
            "query parameters are not permitted in the URL: {q:?}"
        ));
    }
    errs
}

fn validate_service_ref(svc: &Value, p: &str, e: &mut Errs) {
    if s(svc, "/name").unwrap_or("").is_empty() {
        e.push(FieldError::required(
            format!("{p}.name"),
            "service name is required",
        ));
    }
    if s(svc, "/namespace").unwrap_or("").is_empty() {
        e.push(FieldError::required(
            format!("{p}.namespace"),
            "service namespace is required",
        ));
    }
    if let Some(path) = s(svc, "/path") {
        if let Some(msg) = path_error(path) {
            e.push(FieldError::invalid(format!("{p}.path"), json!(path), msg));
        }
    }
    if let Some(port) = svc.get("port").and_then(Value::as_i64) {
        if !(1..=65535).contains(&port) {
            e.push(FieldError::invalid(
                format!("{p}.port"),
                json!(port),
                "port is not valid: must be between 1 and 65535, inclusive",
            ));
        }
    }
}

/// kube's `webhook.ValidateWebhookService` path rules: absolute, no empty segment, each
/// segment a DNS subdomain.
fn path_error(path: &str) -> Option<String> {
    if path.is_empty() || path == "/" {
        return None;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Some("must start with a '/'".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for (i, seg) in rest.split('/').enumerate() {
        if seg.is_empty() {
            return Some(format!("segment[{i}] may not be empty"));
        }
        if let Some(msg) = is_dns1123_subdomain(seg).into_iter().next() {
            return Some(format!("segment[{i}]: {msg}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(extra: Value) -> Value {
        let mut h = json!({
            "name": "hook.example.com",
            "clientConfig": {"url": "https://127.0.0.1:9443/mutate"},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
        });
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    }

    fn errs(hooks: Vec<Value>) -> Vec<String> {
        let mut e = Errs::new();
        validate_webhook_configuration(&json!({"webhooks": hooks}), None, true, &mut e);
        e.iter()
            .map(|e| format!("{}: {}", e.path, e.body()))
            .collect()
    }

    #[test]
    fn a_valid_webhook_passes() {
        assert_eq!(errs(vec![hook(json!({}))]), Vec::<String>::new());
    }

    #[test]
    fn kube_messages() {
        let cases = [
            (json!({"name": "k8s.io"}), "webhooks[0].name: Invalid value: \"k8s.io\": should be a domain with at least three segments separated by dots"),
            (json!({"timeoutSeconds": 31}), "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"),
            (json!({"sideEffects": "Some"}), "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""),
            (json!({"sideEffects": null}), "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"),
            (json!({"failurePolicy": "other"}), "webhooks[0].failurePolicy: Unsupported value: \"other\": supported values: \"Fail\", \"Ignore\""),
            (json!({"admissionReviewVersions": []}), "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"),
            (json!({"clientConfig": {}}), "webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
            (json!({"clientConfig": {"url": "http://x.example.com"}}), "webhooks[0].clientConfig.url: Invalid value: \"http://x.example.com\": 'https' is the only allowed URL scheme"),
            (json!({"clientConfig": {"service": {"namespace": "ns", "name": "n", "path": "foo/", "port": 443}}}), "webhooks[0].clientConfig.service.path: Invalid value: \"foo/\": must start with a '/'"),
            (json!({"clientConfig": {"service": {"namespace": "ns", "name": "n", "port": 0}}}), "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive"),
            (json!({"rules": [{"operations": ["CREATE", "*"], "apiGroups": ["a"], "apiVersions": ["a"], "resources": ["a"]}]}), "webhooks[0].rules[0].operations: Invalid value: []string{\"CREATE\", \"*\"}: if '*' is present, must not specify other operations"),
            (json!({"rules": [{"operations": ["CREATE"], "apiGroups": ["a"], "apiVersions": ["a"], "resources": ["a/*", "a/x"]}]}), "webhooks[0].rules[0].resources[1]: Invalid value: \"a/x\": if 'a/*' is present, must not specify a/x"),
            (json!({"rules": [{"operations": ["PATCH"], "apiGroups": ["a"], "apiVersions": ["a"], "resources": ["a"]}]}), "webhooks[0].rules[0].operations[0]: Unsupported value: \"PATCH\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\""),
        ];
        for (extra, want) in cases {
            let mut h = hook(json!({}));
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    h.as_object_mut().unwrap().remove(k);
                } else {
                    h[k] = v.clone();
                }
            }
            assert_eq!(errs(vec![h]), vec![want.to_string()], "{extra}");
        }
    }

    #[test]
    fn names_are_unique() {
        assert_eq!(
            errs(vec![hook(json!({})), hook(json!({}))]),
            vec!["webhooks[1].name: Duplicate value: \"hook.example.com\"".to_string()]
        );
    }
}
