//! Discovery documents in kube-apiserver's shapes: `/api` (APIVersions), `/apis`
//! (APIGroupList), `/api/v1` and `/apis/<g>/<v>` (APIResourceList), and aggregated
//! discovery (APIGroupDiscoveryList, `apidiscovery.k8s.io/v2` and `v2beta1`).
//!
//! kubectl caches these and builds its REST mapping from them, so field names, ordering
//! and the subresource entries follow kube-apiserver.

use serde_json::{json, Map, Value};

use crate::registry::{group_versions, groups, resources_of, ResourceInfo};

/// The response kind and verbs of a subresource, as kube-apiserver reports them.
pub struct SubresourceInfo {
    /// Group of the response kind (`""` = the parent's group).
    pub group: &'static str,
    /// Version of the response kind (`""` = the parent's version).
    pub version: &'static str,
    /// Kind returned by the subresource (`""` = the parent's kind).
    pub kind: &'static str,
    /// Verbs allowed on the subresource.
    pub verbs: &'static [&'static str],
}

/// Facts about a subresource of `parent`.
pub fn subresource_info(parent: &ResourceInfo, sub: &str) -> SubresourceInfo {
    const GPU: &[&str] = &["get", "patch", "update"];
    const CG: &[&str] = &["create", "get"];
    const C: &[&str] = &["create"];
    let own = |kind: &'static str, verbs: &'static [&'static str]| SubresourceInfo {
        group: "",
        version: "",
        kind,
        verbs,
    };
    match sub {
        "status" | "ephemeralcontainers" | "resize" => own(parent.kind, GPU),
        "scale" => SubresourceInfo {
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            verbs: GPU,
        },
        "log" => own("Pod", &["get"]),
        "exec" => own("PodExecOptions", CG),
        "attach" => own("PodAttachOptions", CG),
        "portforward" => own("PodPortForwardOptions", CG),
        "binding" => own("Binding", C),
        "eviction" => SubresourceInfo {
            group: "policy",
            version: "v1",
            kind: "Eviction",
            verbs: C,
        },
        "token" => SubresourceInfo {
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: C,
        },
        "proxy" => {
            let kind = match parent.kind {
                "Pod" => "PodProxyOptions",
                "Node" => "NodeProxyOptions",
                _ => "ServiceProxyOptions",
            };
            own(kind, &["create", "delete", "get", "patch", "update"])
        }
        "finalize" => own(parent.kind, &["update"]),
        _ => own(parent.kind, &["get"]),
    }
}

fn strs(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String((*s).to_string())).collect())
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api`: the core group's versions (APIVersions). The caller may fill in
/// `serverAddressByClientCIDRs` with the address clients should use.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// One `APIGroup` entry (also served alone at `/apis/<group>`).
pub fn api_group(group: &str) -> Option<Value> {
    let versions = group_versions(group);
    let preferred = *versions.first()?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    Some(json!({
        "name": group,
        "versions": vs,
        "preferredVersion": {"groupVersion": group_version(group, preferred), "version": preferred},
    }))
}

/// `/apis`: every named group with its versions and preferred version (APIGroupList).
pub fn api_groups() -> Value {
    let items: Vec<Value> = groups().into_iter().filter_map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": items})
}

/// `/apis/<group>`: one group as an `APIGroup` object.
pub fn api_group_document(group: &str) -> Option<Value> {
    let mut g = api_group(group)?;
    let obj = g.as_object_mut()?;
    let mut out = Map::new();
    out.insert("kind".into(), json!("APIGroup"));
    out.insert("apiVersion".into(), json!("v1"));
    out.append(obj);
    Some(Value::Object(out))
}

/// `/api/v1` or `/apis/<group>/<version>`: the APIResourceList, including subresource
/// entries such as `pods/status`, sorted by name as kube-apiserver sorts them.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for r in resources_of(group, version) {
        let mut e = Map::new();
        e.insert("name".into(), json!(r.plural));
        e.insert("singularName".into(), json!(r.singular));
        e.insert("namespaced".into(), json!(r.namespaced));
        e.insert("kind".into(), json!(r.kind));
        e.insert("verbs".into(), strs(r.verbs));
        if !r.short_names.is_empty() {
            e.insert("shortNames".into(), strs(r.short_names));
        }
        if !r.categories.is_empty() {
            e.insert("categories".into(), strs(r.categories));
        }
        e.insert("storageVersionHash".into(), json!(storage_version_hash(r)));
        entries.push((r.plural.to_string(), Value::Object(e)));
        for sub in r.subresources {
            let s = subresource_info(r, sub);
            let mut e = Map::new();
            let name = format!("{}/{}", r.plural, sub);
            e.insert("name".into(), json!(name));
            e.insert("singularName".into(), json!(""));
            e.insert("namespaced".into(), json!(r.namespaced));
            if !s.group.is_empty() {
                e.insert("group".into(), json!(s.group));
                e.insert("version".into(), json!(s.version));
            }
            e.insert("kind".into(), json!(s.kind));
            e.insert("verbs".into(), strs(s.verbs));
            entries.push((name, Value::Object(e)));
        }
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
}

/// A stable, opaque hash of the storage version (kube-apiserver's `storageVersionHash`
/// is the first 8 bytes of a SHA-256, base64; clients only compare it for equality).
fn storage_version_hash(r: &ResourceInfo) -> String {
    let key = format!("{}/{}/{}", r.group, r.storage_version, r.kind);
    // FNV-1a, 64 bit: no IO, no extra dependency, stable across runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    base64_8(h.to_be_bytes())
}

/// Standard base64 of 8 bytes (12 characters with one `=` pad).
fn base64_8(bytes: [u8; 8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(12);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut e = Map::new();
    e.insert("resource".into(), json!(r.plural));
    e.insert(
        "responseKind".into(),
        json!({"group": r.group, "version": r.version, "kind": r.kind}),
    );
    e.insert(
        "scope".into(),
        json!(if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    e.insert("singularResource".into(), json!(r.singular));
    e.insert("verbs".into(), strs(r.verbs));
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), strs(r.short_names));
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), strs(r.categories));
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|sub| {
                let s = subresource_info(r, sub);
                let (g, v) = if s.group.is_empty() {
                    (r.group, r.version)
                } else {
                    (s.group, s.version)
                };
                json!({
                    "subresource": sub,
                    "responseKind": {"group": g, "version": v, "kind": s.kind},
                    "verbs": strs(s.verbs),
                })
            })
            .collect();
        e.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(e)
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions(group)
        .into_iter()
        .map(|v| {
            let mut rs: Vec<&ResourceInfo> = resources_of(group, v).collect();
            rs.sort_by_key(|r| r.plural);
            json!({
                "version": v,
                "resources": rs.into_iter().map(aggregated_resource).collect::<Vec<_>>(),
                "freshness": "Current",
            })
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

/// Aggregated discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`):
/// for `/api` when `core` (one item named `""`), else for `/apis` (every named group).
/// `v2` selects `apidiscovery.k8s.io/v2`, otherwise `v2beta1` (same shape).
pub fn aggregated(core: bool, v2: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("")]
    } else {
        groups().into_iter().map(aggregated_group).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": if v2 { "apidiscovery.k8s.io/v2" } else { "apidiscovery.k8s.io/v2beta1" },
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_lists_apps_with_v1_preferred() {
        let g = api_groups();
        let apps = g["groups"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "apps"))
            .expect("apps group");
        assert_eq!(apps["preferredVersion"]["version"], "v1");
        assert_eq!(apps["versions"][1]["groupVersion"], "apps/v1beta2");
        assert_eq!(apps["versions"][2]["groupVersion"], "apps/v1beta1");
    }

    #[test]
    fn resource_list_has_subresources_sorted() {
        let l = resource_list("apps", "v1").expect("apps/v1");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        let i = names
            .iter()
            .position(|n| *n == "deployments")
            .expect("deployments");
        assert_eq!(names[i + 1], "deployments/scale");
        assert_eq!(names[i + 2], "deployments/status");
        let scale = &l["resources"][i + 1];
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(resource_list("apps", "v9").is_none());
    }

    #[test]
    fn aggregated_core_has_pods_with_subresources() {
        let a = aggregated(true, true);
        assert_eq!(a["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(a["items"][0]["metadata"]["name"], "");
        let pods = a["items"][0]["versions"][0]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods"))
            .expect("pods")
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
        let ev = pods["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["subresource"] == "eviction"))
            .expect("eviction")
            .clone();
        assert_eq!(
            ev["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
    }

    #[test]
    fn discovery_golden() {
        use skiff_testkit::golden::check_json;
        const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        check_json(format!("{GOLDEN}/discovery_api.json"), &core_versions());
        check_json(format!("{GOLDEN}/discovery_apis.json"), &api_groups());
        check_json(
            format!("{GOLDEN}/discovery_api_v1.json"),
            &resource_list("", "v1").expect("core"),
        );
        check_json(
            format!("{GOLDEN}/discovery_apps_v1.json"),
            &resource_list("apps", "v1").expect("apps"),
        );
        check_json(
            format!("{GOLDEN}/discovery_apps_v1beta2.json"),
            &resource_list("apps", "v1beta2").expect("apps/v1beta2"),
        );
        check_json(
            format!("{GOLDEN}/discovery_aggregated_apis_v2.json"),
            &aggregated(false, true),
        );
        check_json(
            format!("{GOLDEN}/discovery_aggregated_api_v2.json"),
            &aggregated(true, true),
        );
    }

    #[test]
    fn base64_matches_known_value() {
        assert_eq!(base64_8(*b"abcdefgh"), "YWJjZGVmZ2g=");
    }
}
