//! Small helpers every controller uses: object keys, label selectors, owner references,
//! pod state, API error classification.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

/// Keys of the `K` controllers a pod event concerns: the pod's controller if it is a
/// `K`, else every `K` of the pod's namespace whose (non-empty) selector selects it, the
/// candidates to adopt it (kube's `getPodReplicaSets`, `getDaemonSetsForPod`...).
pub fn pod_owner_keys<K>(
    owners: &[std::sync::Arc<K>],
    pod: &Pod,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<String>
where
    K: Resource<DynamicType = ()>,
{
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_of(pod) {
        return if r.kind == K::kind(&()) {
            vec![format!("{ns}/{}", r.name)]
        } else {
            vec![]
        };
    }
    owners
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|o| {
            selector(o).is_some_and(|s| !selector_is_empty(s) && selector_matches(s, pod.labels()))
        })
        .map(|o| key_of(o.as_ref()))
        .collect()
}

/// `namespace/name` (or `name` for cluster-scoped objects), client-go's MetaNamespaceKey.
pub fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.name_any()),
        _ => obj.name_any(),
    }
}

/// Splits a key made by [`key_of`] into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// The current time as a metav1.Time (whole seconds, as the API serialises it).
pub fn now() -> Time {
    let ts = Timestamp::now();
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

pub use skiff_api::helpers::selector_matches;

/// Whether a selector selects nothing (nil or without any requirement). ReplicaSets and
/// Deployments with such a selector manage no pods, as in Kubernetes.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference to `owner` (controller and blockOwnerDeletion true).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the object is being deleted.
pub fn is_deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

pub use skiff_api::helpers::pod_ready;

/// When the pod's Ready condition turned True, if it is True (`UNIX_EPOCH` if unknown).
pub fn pod_ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`
/// (podutil.IsPodAvailable).
pub fn pod_available(pod: &Pod, min_ready_seconds: i64, now: Timestamp) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.as_second() + min_ready_seconds <= now.as_second(),
    }
}

/// The pod's phase ("Pending" if unset).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod counts for a controller: not Succeeded/Failed and not being deleted
/// (controller.IsPodActive).
pub fn pod_active(pod: &Pod) -> bool {
    let phase = pod_phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 AlreadyExists (as opposed to a Conflict).
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether an API error is a 409 (conflict or already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pods_owner_keys_are_its_controller_or_the_selectors_that_pick_it() {
        use k8s_openapi::api::apps::v1::ReplicaSet;
        let rs = |name: &str, ns: &str, app: &str| -> std::sync::Arc<ReplicaSet> {
            std::sync::Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"selector": {"matchLabels": {"app": app}}},
                }))
                .unwrap(),
            )
        };
        let all = [
            rs("a", "d", "web"),
            rs("b", "d", "db"),
            rs("c", "other", "web"),
        ];
        fn sel(r: &ReplicaSet) -> Option<&LabelSelector> {
            r.spec.as_ref().map(|s| &s.selector)
        }
        let orphan: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "labels": {"app": "web"}},
        }))
        .unwrap();
        assert_eq!(pod_owner_keys(&all, &orphan, sel), ["d/a"]);
        let mut owned = orphan.clone();
        owned.metadata.owner_references = Some(vec![OwnerReference {
            kind: "ReplicaSet".into(),
            name: "b".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert_eq!(pod_owner_keys(&all, &owned, sel), ["d/b"]);
        owned.metadata.owner_references.as_mut().unwrap()[0].kind = "Job".into();
        assert!(pod_owner_keys(&all, &owned, sel).is_empty());
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("run", "httpd")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, &labels(&[("run", "httpd")])));
        assert!(selector_matches(
            &sel,
            &labels(&[("run", "httpd"), ("tier", "web")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("run", "httpd"), ("tier", "db")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("run", "nginx")])));
        assert!(selector_is_empty(&LabelSelector::default()));
    }
}
