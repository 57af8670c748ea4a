//! Keeps the RBAC authorizer's [`Policy`] in step with the stored roles and bindings, as
//! kube-apiserver's RBAC informers do: a list at start (before the server serves), then
//! one store watch of `/registry/rbac.authorization.k8s.io/`, relisting when the watch
//! ends (compacted history, a datastore failover).

use std::sync::Arc;
use std::time::Duration;

use skiff_store::{EventKind, KeyValue, Store, StoreError};

use super::{Policy, Rbac, RbacKind, RbacObject};

/// Where the four RBAC kinds are stored.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// The kind, namespace and name a key stores.
fn parse_key(key: &str) -> Option<(RbacKind, Option<&str>, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let mut parts = rest.split('/');
    let kind = match parts.next()? {
        "roles" => RbacKind::Role,
        "rolebindings" => RbacKind::RoleBinding,
        "clusterroles" => RbacKind::ClusterRole,
        "clusterrolebindings" => RbacKind::ClusterRoleBinding,
        _ => return None,
    };
    let a = parts.next()?;
    match (kind, parts.next()) {
        (RbacKind::Role | RbacKind::RoleBinding, Some(name)) => Some((kind, Some(a), name)),
        (RbacKind::ClusterRole | RbacKind::ClusterRoleBinding, None) => Some((kind, None, a)),
        _ => None,
    }
}

/// The object stored at `key`, if it decodes (a value that does not is skipped, as an
/// informer skips what it cannot decode; the write path validated it).
fn decode(key: &str, value: &[u8]) -> Option<RbacObject> {
    let (kind, _, _) = parse_key(key)?;
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    match RbacObject::from_json(kind, v) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(%key, error = %e, "skipping an RBAC object that does not decode");
            None
        }
    }
}

/// Loads every role and binding into `rbac`; returns the revision listed at.
pub(crate) fn load(store: &dyn Store, rbac: &Rbac) -> Result<i64, StoreError> {
    let (kvs, rev) = store.list(PREFIX)?;
    rbac.replace(policy_of(&kvs));
    Ok(rev)
}

fn policy_of(kvs: &[KeyValue]) -> Policy {
    Policy::from_objects(kvs.iter().filter_map(|kv| decode(&kv.key, &kv.value)))
}

/// Follows the store from `rev` (what [`load`] returned) forever.
pub(crate) async fn run(store: Arc<dyn Store>, rbac: Arc<Rbac>, mut rev: i64) {
    loop {
        match store.watch(PREFIX, rev) {
            Ok(mut rx) => {
                while let Some(ev) = rx.recv().await {
                    let Ok(ev) = ev else { break };
                    rev = ev.revision;
                    let Some((kind, ns, name)) = parse_key(&ev.key) else {
                        continue;
                    };
                    match ev.kind {
                        EventKind::Deleted => rbac.remove(kind, ns, name),
                        EventKind::Added | EventKind::Modified => {
                            if let Some(o) = decode(&ev.key, &ev.value) {
                                rbac.apply(o);
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching RBAC objects"),
        }
        // The watch ended: relist (what was missed is then in the list).
        tokio::time::sleep(Duration::from_millis(200)).await;
        match load(store.as_ref(), &rbac) {
            Ok(r) => rev = r,
            Err(e) => tracing::warn!(error = %e, "listing RBAC objects"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_kind_namespace_and_name() {
        assert_eq!(
            parse_key("/registry/rbac.authorization.k8s.io/roles/default/reader"),
            Some((RbacKind::Role, Some("default"), "reader"))
        );
        assert_eq!(
            parse_key("/registry/rbac.authorization.k8s.io/clusterrolebindings/admin"),
            Some((RbacKind::ClusterRoleBinding, None, "admin"))
        );
        assert_eq!(
            parse_key("/registry/rbac.authorization.k8s.io/clusterroles/a/b"),
            None
        );
        assert_eq!(parse_key("/registry/core/pods/default/x"), None);
    }
}
