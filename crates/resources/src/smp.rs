//! Strategic merge patch (`application/strategic-merge-patch+json`), as
//! `k8s.io/apimachinery/pkg/util/strategicpatch` applies it on the server.
//!
//! Maps merge key by key (`null` deletes a key); lists merge by their patch merge key
//! (`containers` by `name`, Service `ports` by `port`...) when the schema declares the
//! `merge` strategy, lists of scalars with that strategy are unions, other lists are
//! replaced. Directives: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`. Merge keys come from the
//! OpenAPI schemas (see [`crate::schema`]).

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::schema;

/// Why a strategic merge patch could not be applied (kube-apiserver answers these with
/// an error status; the message mirrors apimachinery's).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PatchError {
    /// The patch is not a JSON object, or a directive is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A list element lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The element, rendered as JSON.
        map: String,
        /// The merge key.
        key: String,
    },
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `original` with the merge semantics of `info`'s kind.
pub fn strategic_merge_patch(
    info: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "unable to find api field in struct for the patch: the patch must be a JSON object"
                .into(),
        ));
    };
    let (group, version) = match original.get("apiVersion").and_then(Value::as_str) {
        Some(av) => crate::registry::split_api_version(av),
        None => (info.group, info.version),
    };
    let s = schema::kind_schema(group, version, info.kind)
        .or_else(|| schema::kind_schema(info.group, info.version, info.kind));
    let orig = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(merge_map(orig, p, s)?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

type Schema = Option<&'static Value>;

/// Merges a patch map into an original map. `None` means "delete this map".
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    s: Schema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE) {
        match d.as_str() {
            Some("replace") => {
                let mut p = patch.clone();
                p.remove(DIRECTIVE);
                return Ok(Some(strip_directives_map(p)));
            }
            Some("delete") => return Ok(None),
            Some("merge") => {}
            _ => {
                return Err(PatchError::Invalid(format!(
                    "Unknown patch type: {d} in map: {}",
                    Value::Object(patch.clone())
                )))
            }
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let Value::Array(keys) = keys else {
            return Err(PatchError::Invalid(format!(
                "invalid patch: {RETAIN_KEYS} must be a list of strings"
            )));
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    // $deleteFromPrimitiveList/<field>: remove values from a list of scalars.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(del) = v else {
                return Err(PatchError::Invalid(format!(
                    "invalid patch: {k} must be a list"
                )));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|x| !del.contains(x));
            }
        }
    }
    for (k, pv) in patch {
        if k == DIRECTIVE
            || k == RETAIN_KEYS
            || k.starts_with(SET_ORDER)
            || k.starts_with(DELETE_PRIMITIVE)
        {
            continue;
        }
        let field = s.and_then(|s| field_schema(s, k));
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let (strategies, merge_key) = field.map(schema::patch_meta).unwrap_or_default();
        let replace = strategies.contains(&"replace");
        let ov = original.remove(k);
        let merged = match (ov, pv) {
            (Some(Value::Object(om)), Value::Object(pm)) if !replace => {
                merge_map(om, pm, field)?.map(Value::Object)
            }
            (None, Value::Object(pm)) => merge_map(Map::new(), pm, field)?.map(Value::Object),
            (Some(Value::Array(ol)), Value::Array(pl)) if strategies.contains(&"merge") => {
                let order = patch.get(&format!("{SET_ORDER}{k}"));
                Some(Value::Array(merge_list(
                    ol,
                    pl,
                    field.and_then(schema::items),
                    merge_key,
                    order,
                )?))
            }
            (None, Value::Array(pl)) if strategies.contains(&"merge") => {
                let order = patch.get(&format!("{SET_ORDER}{k}"));
                Some(Value::Array(merge_list(
                    Vec::new(),
                    pl,
                    field.and_then(schema::items),
                    merge_key,
                    order,
                )?))
            }
            (_, pv) => Some(strip_directives(pv.clone())),
        };
        if let Some(v) = merged {
            original.insert(k.clone(), v);
        }
    }
    // `$setElementOrder/<field>` without the field in the patch still reorders it.
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            if patch.contains_key(field) {
                continue;
            }
            let fs = s.and_then(|s| field_schema(s, field));
            let merge_key = fs.map(schema::patch_meta).and_then(|m| m.1);
            if let Some(Value::Array(list)) = original.remove(field) {
                let live = list.clone();
                let ordered = apply_order(list, &live, order, merge_key)?;
                original.insert(field.to_string(), Value::Array(ordered));
            }
        }
    }
    Ok(Some(original))
}

/// The schema of a map's field: a declared property or the map's value schema.
fn field_schema(s: &'static Value, k: &str) -> Schema {
    schema::property(s, k).or_else(|| schema::additional_properties(s))
}

/// The merge key's value of a list element.
fn key_of<'a>(v: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    item_schema: Schema,
    merge_key: Option<&str>,
    order: Option<&Value>,
) -> Result<Vec<Value>, PatchError> {
    let live = original.clone();
    let maps = patch.iter().any(Value::is_object) || original.iter().any(Value::is_object);
    if !maps {
        // A list of scalars with the merge strategy: the union, original order first.
        let mut out = original;
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return apply_order(out, &live, order.unwrap_or(&Value::Null), None);
    }
    let Some(key) = merge_key else {
        return Ok(patch.iter().cloned().map(strip_directives).collect());
    };
    let mut out = original;
    // `$patch: replace` as an element replaces the whole list with the other elements.
    if patch
        .iter()
        .any(|p| p.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|p| p.get(DIRECTIVE).is_none())
            .cloned()
            .map(strip_directives)
            .collect());
    }
    for p in patch {
        let Value::Object(pm) = p else {
            return Err(PatchError::Invalid(format!(
                "invalid patch: list element {p} is not an object"
            )));
        };
        let Some(kv) = pm.get(key) else {
            return Err(PatchError::MissingMergeKey {
                map: p.to_string(),
                key: key.to_string(),
            });
        };
        let pos = out.iter().position(|o| o.get(key) == Some(kv));
        if pm.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            out.retain(|o| o.get(key) != Some(kv));
            continue;
        }
        match pos {
            Some(i) => {
                let orig = match out[i].take() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                match merge_map(orig, pm, item_schema)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), pm, item_schema)? {
                    out.push(Value::Object(m));
                }
            }
        }
    }
    apply_order(out, &live, order.unwrap_or(&Value::Null), Some(key))
}

/// Orders `list` by `$setElementOrder` as apimachinery's `normalizeElementOrder`: the
/// elements named in the order come in that order; the others (kept by the server) keep
/// their order in the live list `live` and are interleaved by their live positions.
fn apply_order(
    list: Vec<Value>,
    live: &[Value],
    order: &Value,
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let Value::Array(order) = order else {
        return Ok(list);
    };
    let index_in = |items: &[Value], v: &Value| {
        let k = key_of(v, key)?;
        items.iter().position(|o| key_of(o, key) == Some(k))
    };
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) =
        list.into_iter().partition(|v| index_in(order, v).is_some());
    patched.sort_by_key(|v| index_in(order, v));
    // Items missing from the live list keep their place relative to each other, first.
    server_only.sort_by_key(|v| index_in(live, v).map_or(0, |i| i + 1));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index_in(live, l), index_in(live, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Removes patch directives from a value that is taken as is.
fn strip_directives(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives_map(m)),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_directives).collect()),
        other => other,
    }
}

fn strip_directives_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, _)| {
            k != DIRECTIVE
                && k != RETAIN_KEYS
                && !k.starts_with(SET_ORDER)
                && !k.starts_with(DELETE_PRIMITIVE)
        })
        .map(|(k, v)| (k, strip_directives(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    fn svc() -> &'static ResourceInfo {
        lookup("", "v1", "services").expect("services")
    }

    #[test]
    fn seed_nodeport_patch_keeps_port_fields_and_cluster_ip() {
        let original = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "httpd-svc", "namespace": "default",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{old}"}},
            "spec": {"clusterIP": "10.110.212.171", "clusterIPs": ["10.110.212.171"],
                     "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}],
                     "selector": {"run": "httpd"}, "sessionAffinity": "None", "type": "ClusterIP"},
            "status": {"loadBalancer": {}}});
        let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{new}"}},
            "spec": {"$setElementOrder/ports": [{"port": 8080}],
                     "ports": [{"nodePort": 31688, "port": 8080}], "type": "NodePort"}});
        let out = strategic_merge_patch(svc(), &original, &patch).expect("patch");
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 8080, "protocol": "TCP", "targetPort": 80, "nodePort": 31688}])
        );
        assert_eq!(out["spec"]["type"], "NodePort");
        assert_eq!(out["spec"]["clusterIP"], "10.110.212.171");
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{new}"
        );
    }

    fn deploy() -> &'static ResourceInfo {
        lookup("apps", "v1", "deployments").expect("deployments")
    }

    fn dep(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let original = dep(json!([
            {"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "b", "image": "y:1"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "B", "value": "3"}]}]}}}});
        let out = strategic_merge_patch(deploy(), &original, &patch).expect("patch");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
            {"name": "a", "image": "x:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]},
            {"name": "b", "image": "y:1"}])
        );
    }

    #[test]
    fn delete_directive_and_null_and_replace() {
        let original = dep(
            json!([{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "y"}]),
        );
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "$patch": "delete"}, {"name": "a", "args": ["3"], "image": null}]}}}});
        let out = strategic_merge_patch(deploy(), &original, &patch).expect("patch");
        // args has no merge strategy: replaced.
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "args": ["3"]}])
        );

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "z", "image": "z"}, {"$patch": "replace"}]}}}});
        let out = strategic_merge_patch(deploy(), &original, &patch).expect("patch");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "z", "image": "z"}])
        );

        let patch =
            json!({"spec": {"template": {"$patch": "replace", "spec": {"containers": []}}}});
        let out = strategic_merge_patch(deploy(), &original, &patch).expect("patch");
        assert_eq!(out["spec"]["template"], json!({"spec": {"containers": []}}));
    }

    #[test]
    fn retain_keys_on_deployment_strategy() {
        let original = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = strategic_merge_patch(deploy(), &original, &patch).expect("patch");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic_merge_patch(svc(), &original, &patch).expect("patch");
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn set_element_order_reorders_and_keeps_server_only_items() {
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 1, "name": "a"}, {"port": 2, "name": "b"}, {"port": 3, "name": "c"}]}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 3}, {"port": 1}],
            "ports": [{"port": 3, "targetPort": 30}]}});
        let out = strategic_merge_patch(svc(), &original, &patch).expect("patch");
        let ports: Vec<i64> = out["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        // apimachinery interleaves by live positions: 2 was before 3 in the live list.
        assert_eq!(ports, vec![2, 3, 1]);
        assert_eq!(out["spec"]["ports"][1]["targetPort"], 30);
    }

    #[test]
    fn set_element_order_puts_new_items_where_the_order_says() {
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 1}, {"port": 2}]}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 9}, {"port": 1}, {"port": 2}],
            "ports": [{"port": 9, "protocol": "UDP"}]}});
        let out = strategic_merge_patch(svc(), &original, &patch).expect("patch");
        let ports: Vec<i64> = out["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        assert_eq!(ports, vec![9, 1, 2]);
    }

    #[test]
    fn missing_merge_key_is_an_error() {
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": []}});
        let patch = json!({"spec": {"ports": [{"targetPort": 1}]}});
        let err = strategic_merge_patch(svc(), &original, &patch).expect_err("no merge key");
        assert!(
            err.to_string()
                .contains("does not contain declared merge key: port"),
            "{err}"
        );
    }

    #[test]
    fn labels_merge_and_null_deletes() {
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}});
        let out = strategic_merge_patch(svc(), &original, &patch).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }
}
