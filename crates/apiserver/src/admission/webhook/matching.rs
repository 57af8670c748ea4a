//! Which webhooks a request goes to, as kube-apiserver's `webhook/predicates` decide:
//! the rules (operations, groups, versions, resources with `*` and subresources, scope),
//! `matchPolicy` (an equivalent version of the resource), the namespace and object
//! selectors. Pure functions over the configuration's JSON.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_resources::ResourceInfo;

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    /// The resource, at the version being matched.
    pub info: &'a ResourceInfo,
    /// The subresource (`""` for the object itself).
    pub subresource: &'a str,
    /// Whether the request is in a namespace (kube's `attr.GetNamespace() != ""`; a
    /// Namespace object itself is cluster-scoped).
    pub namespaced: bool,
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn one_of(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

/// Whether one `RuleWithOperations` covers the request (kube's `rules.Matcher`).
pub(crate) fn rule_matches(rule: &Value, r: &Request<'_>) -> bool {
    if !one_of(&strs(rule, "operations"), r.operation) {
        return false;
    }
    if !one_of(&strs(rule, "apiGroups"), r.info.group)
        || !one_of(&strs(rule, "apiVersions"), r.info.version)
    {
        return false;
    }
    let resource_ok = strs(rule, "resources").iter().any(|res| {
        let (res, sub) = res.split_once('/').unwrap_or((res.as_str(), ""));
        (res == "*" || res == r.info.plural) && (sub == "*" || sub == r.subresource)
    });
    if !resource_ok {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => r.namespaced,
        "Cluster" => !r.namespaced,
        _ => true,
    }
}

/// Whether any of the webhook's rules covers the request.
pub(crate) fn rules_match(hook: &Value, r: &Request<'_>) -> bool {
    hook.get("rules")
        .and_then(Value::as_array)
        .is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, r)))
}

/// The version of the resource the webhook is called with: the request's own when a
/// rule names it; with `matchPolicy: Equivalent` (the default), else another served
/// version of the same group and resource that a rule names (kube converts the object
/// to it). `None`: the webhook is not called.
pub(crate) fn matched_version<'a>(
    hook: &Value,
    r: &Request<'_>,
    versions: impl IntoIterator<Item = &'a ResourceInfo>,
) -> Option<&'a ResourceInfo> {
    let mut versions = versions.into_iter().peekable();
    let requested = versions.peek().copied()?;
    if rules_match(hook, r) {
        return Some(requested);
    }
    if hook.get("matchPolicy").and_then(Value::as_str) == Some("Exact") {
        return None;
    }
    versions
        .skip(1)
        .find(|info| rules_match(hook, &Request { info, ..*r }))
}

/// A label selector of the configuration (`None`: match everything).
fn selector(hook: &Value, key: &str) -> Result<Option<LabelSelector>, String> {
    match hook.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// The labels of an object (empty when it has none, or there is no object).
pub(crate) fn labels_of(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// kube's `MatchObjectSelector`: the new object's labels or the old one's match.
pub(crate) fn object_selector_matches(
    hook: &Value,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, String> {
    let Some(sel) = selector(hook, "objectSelector")? else {
        return Ok(true);
    };
    let m = |o: Option<&Value>| {
        o.is_some() && skiff_api::helpers::selector_matches(&sel, &labels_of(o))
    };
    Ok(m(obj) || m(old))
}

/// kube's `MatchNamespaceSelector` with the namespace's labels (`None` for a
/// cluster-scoped request that is not about a Namespace: never exempted).
pub(crate) fn namespace_selector_matches(
    hook: &Value,
    ns_labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, String> {
    let Some(labels) = ns_labels else {
        return Ok(true);
    };
    match selector(hook, "namespaceSelector")? {
        None => Ok(true),
        Some(sel) => Ok(skiff_api::helpers::selector_matches(&sel, labels)),
    }
}

/// Whether the webhook's `namespaceSelector` selects anything narrower than everything
/// (only then does kube look the namespace up).
pub(crate) fn has_namespace_selector(hook: &Value) -> bool {
    hook.get("namespaceSelector")
        .and_then(Value::as_object)
        .is_some_and(|m| {
            m.values().any(|v| {
                !v.is_null()
                    && v != &Value::Object(Default::default())
                    && v != &Value::Array(vec![])
            })
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
        skiff_resources::registry::lookup(group, version, plural).unwrap()
    }

    fn req<'a>(op: &'a str, info: &'a ResourceInfo, sub: &'a str) -> Request<'a> {
        Request {
            operation: op,
            info,
            subresource: sub,
            namespaced: info.namespaced,
        }
    }

    fn rule(ops: &[&str], groups: &[&str], versions: &[&str], resources: &[&str]) -> Value {
        json!({"operations": ops, "apiGroups": groups, "apiVersions": versions,
               "resources": resources})
    }

    #[test]
    fn operations_groups_versions_and_resources() {
        let pods = info("", "v1", "pods");
        let r = rule(&["CREATE"], &[""], &["v1"], &["pods"]);
        assert!(rule_matches(&r, &req("CREATE", pods, "")));
        assert!(!rule_matches(&r, &req("UPDATE", pods, "")));
        assert!(!rule_matches(&r, &req("CREATE", pods, "status")));
        let deploys = info("apps", "v1", "deployments");
        assert!(!rule_matches(&r, &req("CREATE", deploys, "")));
        let any = rule(&["*"], &["*"], &["*"], &["*"]);
        assert!(rule_matches(&any, &req("DELETE", deploys, "")));
        // `*` is every resource but no subresource; `*/*` is everything.
        assert!(!rule_matches(&any, &req("UPDATE", deploys, "status")));
        let all = rule(&["*"], &["*"], &["*"], &["*/*"]);
        assert!(rule_matches(&all, &req("UPDATE", deploys, "scale")));
        let status = rule(&["UPDATE"], &["*"], &["*"], &["*/status"]);
        assert!(rule_matches(&status, &req("UPDATE", pods, "status")));
        assert!(!rule_matches(&status, &req("UPDATE", pods, "")));
        let pods_any = rule(&["UPDATE"], &[""], &["v1"], &["pods/*"]);
        assert!(rule_matches(
            &pods_any,
            &req("UPDATE", pods, "ephemeralcontainers")
        ));
        // `pods/*` covers the pod itself too, as kube's matcher splits it.
        assert!(rule_matches(&pods_any, &req("UPDATE", pods, "")));
    }

    #[test]
    fn scope() {
        let pods = info("", "v1", "pods");
        let nss = info("", "v1", "namespaces");
        let mut r = rule(&["*"], &["*"], &["*"], &["*"]);
        r["scope"] = json!("Namespaced");
        assert!(rule_matches(&r, &req("CREATE", pods, "")));
        assert!(!rule_matches(&r, &req("CREATE", nss, "")));
        r["scope"] = json!("Cluster");
        assert!(!rule_matches(&r, &req("CREATE", pods, "")));
        assert!(rule_matches(&r, &req("CREATE", nss, "")));
    }

    #[test]
    fn match_policy_equivalent_finds_another_version() {
        let v1beta1 = info("apps", "v1beta1", "deployments");
        let v1 = info("apps", "v1", "deployments");
        let mut hook = json!({"rules": [rule(&["CREATE"], &["apps"], &["v1"], &["deployments"])]});
        let r = req("CREATE", v1beta1, "");
        let found = matched_version(&hook, &r, [v1beta1, v1]).unwrap();
        assert_eq!(found.version, "v1");
        hook["matchPolicy"] = json!("Exact");
        assert!(matched_version(&hook, &r, [v1beta1, v1]).is_none());
        let r = req("CREATE", v1, "");
        assert_eq!(matched_version(&hook, &r, [v1]).unwrap().version, "v1");
    }

    #[test]
    fn selectors() {
        let hook = json!({
            "objectSelector": {"matchLabels": {"webhook": "on"}},
            "namespaceSelector": {"matchExpressions": [
                {"key": "skip", "operator": "DoesNotExist"}]},
        });
        let on = json!({"metadata": {"labels": {"webhook": "on"}}});
        let off = json!({"metadata": {"labels": {"webhook": "off"}}});
        assert!(object_selector_matches(&hook, Some(&on), None).unwrap());
        assert!(!object_selector_matches(&hook, Some(&off), None).unwrap());
        // An update matches when either version does.
        assert!(object_selector_matches(&hook, Some(&off), Some(&on)).unwrap());
        assert!(object_selector_matches(&json!({"objectSelector": {}}), Some(&off), None).unwrap());
        let skip: BTreeMap<String, String> = [("skip".to_string(), "y".to_string())].into();
        assert!(!namespace_selector_matches(&hook, Some(&skip)).unwrap());
        assert!(namespace_selector_matches(&hook, Some(&BTreeMap::new())).unwrap());
        assert!(namespace_selector_matches(&hook, None).unwrap());
        assert!(has_namespace_selector(&hook));
        assert!(!has_namespace_selector(&json!({"namespaceSelector": {}})));
    }
}
