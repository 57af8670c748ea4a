//! `componentstatuses` (`kubectl get cs`): kube-apiserver 1.33 still lists `scheduler`,
//! `controller-manager` and `etcd-0`, computed at each request rather than stored
//! (`pkg/registry/core/componentstatus`). skiff runs the scheduler and the controllers
//! in its servers under leader election, so each is healthy while its Lease
//! (`kube-system/kube-scheduler`, `kube-system/kube-controller-manager`) is held and
//! renewed; `etcd-0` is the datastore, healthy when it answers a read.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{json, Value};

use crate::http::{include_object, representation, Query, Representation};
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key};

/// kube-apiserver's deprecation warning for the whole API (`kubectl get cs` prints it).
pub(crate) const DEPRECATED: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The components, in kube-apiserver's order, with the Lease that shows each alive.
const COMPONENTS: &[(&str, Option<&str>)] = &[
    ("scheduler", Some("kube-scheduler")),
    ("controller-manager", Some("kube-controller-manager")),
    ("etcd-0", None),
];

/// Whether a Lease was renewed within its duration at `now` (a holder is alive).
pub(crate) fn lease_fresh(lease: &Value, now: DateTime<Utc>) -> bool {
    let holder = lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .is_some_and(|h| !h.is_empty());
    let renewed = lease
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let duration = lease
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    holder && renewed.is_some_and(|r| now.signed_duration_since(r).num_seconds() <= duration)
}

/// The `Healthy` condition of one component: `(healthy, message, error)`.
fn check(state: &ApiState, lease: Option<&str>, now: DateTime<Utc>) -> (bool, String, String) {
    let Some(lease_name) = lease else {
        return match state.store.get("/registry/health") {
            Ok(_) => (true, "ok".into(), String::new()),
            Err(e) => (false, String::new(), e.to_string()),
        };
    };
    let Some(info) = skiff_resources::lookup("coordination.k8s.io", "v1", "leases") else {
        return (false, String::new(), "leases are not registered".into());
    };
    let lease = state
        .store
        .get(&key(info, Some("kube-system"), lease_name))
        .ok()
        .flatten()
        .and_then(|kv| decode(&kv).ok());
    match lease {
        Some(l) if lease_fresh(&l, now) => (true, "ok".into(), String::new()),
        Some(_) => (
            false,
            String::new(),
            format!("lease kube-system/{lease_name} is not renewed: no {lease_name} is leading"),
        ),
        None => (
            false,
            String::new(),
            format!("no lease kube-system/{lease_name}: no {lease_name} is running"),
        ),
    }
}

fn component(state: &ApiState, name: &str, lease: Option<&str>, now: DateTime<Utc>) -> Value {
    let (healthy, message, error) = check(state, lease, now);
    let mut cond = json!({"type": "Healthy", "status": if healthy { "True" } else { "False" }});
    if !message.is_empty() {
        cond["message"] = json!(message);
    }
    if !error.is_empty() {
        cond["error"] = json!(error);
    }
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name},
           "conditions": [cond]})
}

/// GET of one component or of the list, in the representation `Accept` asks for.
pub(crate) fn serve(
    state: &ApiState,
    t: &RequestInfo,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult<Value> {
    let now = Utc::now();
    let all: Vec<Value> = COMPONENTS
        .iter()
        .map(|(name, lease)| component(state, name, *lease, now))
        .collect();
    let objs = match &t.name {
        Some(n) => {
            let one = all
                .into_iter()
                .find(|o| o["metadata"]["name"] == n.as_str())
                .ok_or_else(|| ApiError::not_found("", "componentstatuses", n))?;
            if representation(headers) != Representation::Table {
                return Ok(match representation(headers) {
                    Representation::PartialMetadata => crate::http::partial_metadata(&one),
                    _ => one,
                });
            }
            vec![one]
        }
        None => all,
    };
    Ok(match representation(headers) {
        Representation::Table => {
            let mut table = skiff_resources::table(t.info, &objs, include_object(q), now);
            table["metadata"] = json!({});
            table
        }
        Representation::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", crate::http::meta_version(headers)),
            "metadata": {},
            "items": objs.iter().map(crate::http::partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": "ComponentStatusList",
            "apiVersion": "v1",
            "metadata": {},
            "items": objs,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_fresh_while_renewed_within_its_duration() {
        let now: DateTime<Utc> = "2026-01-01T00:00:20Z".parse().expect("time");
        let lease = |renew: &str, holder: &str| {
            json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                             "renewTime": renew}})
        };
        assert!(lease_fresh(
            &lease("2026-01-01T00:00:10.000000Z", "s1"),
            now
        ));
        assert!(!lease_fresh(
            &lease("2026-01-01T00:00:01.000000Z", "s1"),
            now
        ));
        assert!(!lease_fresh(&lease("2026-01-01T00:00:10.000000Z", ""), now));
        assert!(!lease_fresh(&json!({"spec": {}}), now));
    }
}
