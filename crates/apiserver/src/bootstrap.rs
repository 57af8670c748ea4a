//! Objects the server keeps on every start: the system namespaces, the
//! `default/kubernetes` Service, the default StorageClass `standard`, the system
//! PriorityClasses, the mandatory flow-control configuration, and its Endpoints and EndpointSlice pointing at every
//! live server (kept by `masterleases`, which the server runs right after this); and the
//! default RBAC policy (kube's `ensureRBACPolicy` post-start hook), reconciled as
//! `authz::rbac::reconcile` says.

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
    // The default StorageClass, as kind's `standard`: created when missing at every
    // start (k3s re-applies its local-storage manifest the same way), never changed.
    ensure(
        state,
        info("storage.k8s.io", "v1", "storageclasses")?,
        None,
        default_storage_class(),
        &[],
    )
    .await?;
    // kube-apiserver's `scheduling/bootstrap-system-priority-classes` post-start hook.
    let pc = info("scheduling.k8s.io", "v1", "priorityclasses")?;
    for class in system_priority_classes() {
        ensure(state, pc, None, class, &[]).await?;
    }
    // The mandatory API priority and fairness configuration (read-only in skiff).
    let (fs, plc) = (
        info("flowcontrol.apiserver.k8s.io", "v1", "flowschemas")?,
        info(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "prioritylevelconfigurations",
        )?,
    );
    let (schemas, levels) = flow_control();
    for l in levels {
        ensure(state, plc, None, l, &[]).await?;
    }
    for f in schemas {
        ensure(state, fs, None, f, &[]).await?;
    }
    rbac_policy(state).await
}

/// `system-node-critical` and `system-cluster-critical`, as kube-apiserver creates them.
fn system_priority_classes() -> [Value; 2] {
    let class = |name: &str, value: i64, description: &str| {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": name}, "value": value, "description": description,
               "preemptionPolicy": "PreemptLowerPriority"})
    };
    [
        class(
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        class(
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ]
}

/// kube-apiserver's mandatory FlowSchemas and PriorityLevelConfigurations (`exempt`,
/// `catch-all`; `apf_configuration`'s `mandatory` objects), with the annotation that
/// marks them as maintained by the server.
fn flow_control() -> (Vec<Value>, Vec<Value>) {
    let meta = |name: &str| json!({"name": name, "annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}});
    let levels = vec![
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
               "metadata": meta("exempt"),
               "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
               "metadata": meta("catch-all"),
               "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5,
                        "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}}),
    ];
    let schemas = vec![
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
               "metadata": meta("exempt"),
               "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1,
                        "rules": [{"subjects": [{"kind": "Group", "group": {"name": "system:masters"}}],
                                   "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                      "clusterScope": true, "namespaces": ["*"]}],
                                   "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
               "metadata": meta("catch-all"),
               "spec": {"priorityLevelConfiguration": {"name": "catch-all"}, "matchingPrecedence": 10000,
                        "distinguisherMethod": {"type": "ByUser"},
                        "rules": [{"subjects": [{"kind": "Group", "group": {"name": "system:unauthenticated"}},
                                                {"kind": "Group", "group": {"name": "system:authenticated"}}],
                                   "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                      "clusterScope": true, "namespaces": ["*"]}],
                                   "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}),
    ];
    (schemas, levels)
}

/// The default StorageClass `standard`, provisioned by the built-in local-path
/// provisioner when a claim's first pod is scheduled.
pub(crate) fn default_storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": skiff_api::names::DEFAULT_STORAGE_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": skiff_api::names::LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// Creates the default ClusterRoles and ClusterRoleBindings, and brings existing ones up
/// to date (adding, never removing).
async fn rbac_policy(state: &ApiState) -> ApiResult<()> {
    use crate::authz::rbac::{bootstrap, reconcile};
    let roles = info("rbac.authorization.k8s.io", "v1", "clusterroles")?;
    for want in bootstrap::aggregated_cluster_roles() {
        let name = want.metadata.name.clone().unwrap_or_default();
        let expected = to_value(&want)?;
        match state.store.get(&key(roles, None, &name))? {
            None => create_default(state, roles, expected).await?,
            Some(kv) => {
                let have = from_value(decode(&kv)?)?;
                if let Some(new) = reconcile::cluster_role(&want, &have) {
                    update_default(state, roles, &name, to_value(&new)?, kv.mod_revision).await?;
                }
            }
        }
    }
    let bindings = info("rbac.authorization.k8s.io", "v1", "clusterrolebindings")?;
    for want in bootstrap::cluster_role_bindings() {
        let name = want.metadata.name.clone().unwrap_or_default();
        let k = key(bindings, None, &name);
        match state.store.get(&k)? {
            None => create_default(state, bindings, to_value(&want)?).await?,
            Some(kv) => {
                let have: skiff_api::k8s_openapi::api::rbac::v1::ClusterRoleBinding =
                    from_value(decode(&kv)?)?;
                let Some(new) = reconcile::cluster_role_binding(&want, &have) else {
                    continue;
                };
                if new.role_ref != have.role_ref {
                    // roleRef is immutable: replace the binding, as kube does.
                    state.store.delete(&k, Some(kv.mod_revision))?;
                    create_default(state, bindings, to_value(&new)?).await?;
                } else {
                    update_default(state, bindings, &name, to_value(&new)?, kv.mod_revision)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(o: &T) -> ApiResult<Value> {
    serde_json::to_value(o).map_err(|e| ApiError::internal(format!("encoding: {e}")))
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_json::from_value(v).map_err(|e| ApiError::internal(format!("decoding: {e}")))
}

async fn create_default(
    state: &ApiState,
    info: &'static skiff_resources::ResourceInfo,
    mut obj: Value,
) -> ApiResult<()> {
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    match create_object(state, info, None, obj, &WriteOpts::internal()).await {
        // Another server of the same cluster made it meanwhile.
        Err(e) if e.code == 409 => Ok(()),
        r => r.map(|_| ()),
    }
}

async fn update_default(
    state: &ApiState,
    info: &'static skiff_resources::ResourceInfo,
    name: &str,
    mut obj: Value,
    rev: i64,
) -> ApiResult<()> {
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    let r = update_object(
        state,
        info,
        None,
        name,
        obj,
        UpdateMode::Main,
        Some(rev),
        &WriteOpts::internal(),
    )
    .await;
    match r {
        // Another server reconciled it meanwhile; the next start looks again.
        Err(e) if e.code == 409 => Ok(()),
        r => r.map(|_| ()),
    }
}

/// The `kubernetes` Service's IP: the first address of the service CIDR.
fn kubernetes_ip(state: &ApiState) -> String {
    let base = u32::from(state.service_cidr.network());
    std::net::Ipv4Addr::from(base + 1).to_string()
}
