//! `apiregistration.k8s.io/v1` APIServices for what this server serves, as
//! kube-apiserver's `autoregister` and `crdregistration` controllers keep them: one
//! local APIService per served group/version (built-in ones and those of established
//! CRDs), named `<version>.<group>` (`v1.` for core), with kube's priorities and the
//! condition `Available=True` (`Local`). A local APIService whose group/version is no
//! longer served is deleted; APIServices that name a `service` (aggregated APIs) are the
//! user's and left alone.

use serde_json::{json, Value};

use crate::bootstrap::{ensure, info};
use crate::http::Query;
use crate::rest::{delete_object, update_object, UpdateMode, WriteOpts};
use crate::state::ApiState;
use crate::status::ApiResult;
use crate::storage::{decode, key, now_ts, prefix};

/// kube-apiserver's `apiVersionPriorities` (group priority minimum, version priority);
/// custom resources get `(1000, 100)` as kube's `crdregistration` gives them.
fn priorities(group: &str, version: &str) -> (i64, i64) {
    let g = match group {
        "" => 18000,
        "apiregistration.k8s.io" => 17900,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "admissionregistration.k8s.io" => 16700,
        "apiextensions.k8s.io" => 16400,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        _ => return (1000, 100),
    };
    let v = match (group, version) {
        ("", _) => 1,
        ("autoscaling", "v2") => 30,
        ("flowcontrol.apiserver.k8s.io", "v1") => 21,
        _ => 15,
    };
    (g, v)
}

/// The APIService name of a group/version.
fn name(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// The local APIService of a group/version.
fn local(group: &str, version: &str, now: &str) -> Value {
    let (gp, vp) = priorities(group, version);
    let mut spec = json!({"groupPriorityMinimum": gp, "versionPriority": vp});
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    spec["version"] = json!(version);
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name(group, version),
                     "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
        "spec": spec,
        "status": {"conditions": [{"type": "Available", "status": "True",
                                    "lastTransitionTime": now, "reason": "Local",
                                    "message": "Local APIServices are always available"}]},
    })
}

/// Makes the local APIServices match what is served now.
pub(crate) async fn sync(state: &ApiState) -> ApiResult<()> {
    let info = info("apiregistration.k8s.io", "v1", "apiservices")?;
    let mut served: Vec<(&str, &str)> = Vec::new();
    for r in skiff_resources::registry::all_resources() {
        if !served.contains(&(r.group, r.version)) {
            served.push((r.group, r.version));
        }
    }
    let now = now_ts();
    for (g, v) in &served {
        let want = local(g, v, &now);
        // Another server of the cluster may write the same object at the same moment.
        match ensure(state, info, None, want.clone(), &["spec"]).await {
            Err(e) if e.code != 409 => return Err(e),
            _ => {}
        }
        // Status is the availability controller's, written through its subresource.
        let n = name(g, v);
        if let Some(kv) = state.store.get(&key(info, None, &n))? {
            let cur = decode(&kv)?;
            let available = cur
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                });
            if !available {
                let mut out = cur;
                out["status"] = want["status"].clone();
                let mut opts = WriteOpts::internal();
                opts.subresource = Some("status".into());
                match update_object(
                    state,
                    info,
                    None,
                    &n,
                    out,
                    UpdateMode::Status,
                    Some(kv.mod_revision),
                    &opts,
                )
                .await
                {
                    Err(e) if e.code != 409 => return Err(e),
                    _ => {}
                }
            }
        }
    }
    let wanted: Vec<String> = served.iter().map(|(g, v)| name(g, v)).collect();
    let (kvs, _) = state.store.list(&prefix(info, None))?;
    for kv in kvs {
        let svc = decode(&kv)?;
        let local = svc.pointer("/spec/service").is_none_or(Value::is_null);
        let n = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if local && !wanted.contains(&n) {
            let _ = delete_object(
                state,
                info,
                None,
                &n,
                &json!({}),
                &Query::parse(None),
                &WriteOpts::internal(),
            )
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_priorities() {
        let core = local("", "v1", "2026-01-01T00:00:00Z");
        assert_eq!(core["metadata"]["name"], "v1.");
        assert_eq!(
            core["spec"],
            json!({"groupPriorityMinimum": 18000, "versionPriority": 1, "version": "v1"})
        );
        let apps = local("apps", "v1", "2026-01-01T00:00:00Z");
        assert_eq!(apps["metadata"]["name"], "v1.apps");
        assert_eq!(priorities("widgets.example.com", "v1"), (1000, 100));
    }
}
