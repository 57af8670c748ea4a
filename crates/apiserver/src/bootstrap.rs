//! Objects the server keeps on every start: the system namespaces, the
//! `default/kubernetes` Service, and its Endpoints and EndpointSlice pointing at every
//! live server (kept by `masterleases`, which the server runs right after this).

use serde_json::{json, Value};
use skiff_store::Store;

use crate::rest::{create_object, update_object, UpdateMode, WriteOpts};
use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, key};

pub(crate) fn info(
    group: &str,
    version: &str,
    plural: &str,
) -> ApiResult<&'static skiff_resources::ResourceInfo> {
    skiff_resources::lookup(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{group}/{version}/{plural} is not registered")))
}

/// Creates `desired` if missing; otherwise replaces the fields named in `owned` when
/// they differ.
pub(crate) async fn ensure(
    state: &ApiState,
    info: &'static skiff_resources::ResourceInfo,
    ns: Option<&str>,
    desired: Value,
    owned: &[&str],
) -> ApiResult<()> {
    let name = desired
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match state.store.get(&key(info, ns, &name))? {
        None => {
            create_object(state, info, ns, desired, &WriteOpts::internal()).await?;
        }
        Some(kv) => {
            let mut cur = decode(&kv)?;
            let mut changed = false;
            for f in owned {
                let ptr = format!("/{}", f.replace('.', "/"));
                let want = desired.pointer(&ptr).cloned().unwrap_or(Value::Null);
                if cur.pointer(&ptr) != Some(&want) {
                    // Only top-level and `metadata.labels`-style two-level fields are owned.
                    let mut parts = f.splitn(2, '.');
                    let a = parts.next().unwrap_or("");
                    match parts.next() {
                        Some(b) => cur[a][b] = want,
                        None => cur[a] = want,
                    }
                    changed = true;
                }
            }
            if changed {
                update_object(
                    state,
                    info,
                    ns,
                    &name,
                    cur,
                    UpdateMode::Main,
                    Some(kv.mod_revision),
                    &WriteOpts::internal(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Runs the bootstrap (idempotent).
pub(crate) async fn run(state: &ApiState) -> ApiResult<()> {
    let ns_info = info("", "v1", "namespaces")?;
    for ns in skiff_api::names::SYSTEM_NAMESPACES {
        ensure(
            state,
            ns_info,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &[],
        )
        .await?;
    }
    let svc_ip = kubernetes_ip(state);
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": svc_ip, "clusterIPs": [svc_ip],
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": state.port}],
                 "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
    });
    ensure(
        state,
        info("", "v1", "services")?,
        Some("default"),
        svc,
        &["metadata.labels"],
    )
    .await?;
    Ok(())
}

/// The `kubernetes` Service's IP: the first address of the service CIDR.
fn kubernetes_ip(state: &ApiState) -> String {
    let base = u32::from(state.service_cidr.network());
    std::net::Ipv4Addr::from(base + 1).to_string()
}
