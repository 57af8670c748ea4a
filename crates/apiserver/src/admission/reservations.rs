//! The datastore side of Service allocation. Each value a Service holds (its cluster
//! IP, each node port) is reserved under its own key (`/registry/skiff/allocations/
//! <kind>/<value>`, created only if absent) just before the Service is written, and the
//! allocator picks among the values not reserved: the keys play the part of Kubernetes'
//! IPAddress objects and allocator bitmaps. Of two servers racing for one value, one
//! write fails; on one server the plugin's lock orders the writers. A reservation whose
//! Service no longer holds the value can be taken after [`RESERVATION_GRACE_MS`], and
//! [`repair`] (kube-apiserver's repair controllers) removes such leftovers and reserves
//! what Services hold without a reservation.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use skiff_store::{Store, StoreError};

use super::allocator::InUse;
use crate::status::ApiResult;

/// Key prefix of allocation reservations.
const RESERVATIONS: &str = "/registry/skiff/allocations/";
/// How long a reservation holds without a Service that uses the value: longer than any
/// write between reserving and storing the Service.
const RESERVATION_GRACE_MS: u64 = 30_000;

/// Who reserved a value, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Reservation {
    namespace: String,
    name: String,
    /// Milliseconds since the Unix epoch.
    at_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The values a Service holds, as reservation keys: its cluster IP and node ports.
fn held_values(svc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        out.push(format!("{RESERVATIONS}ip/{ip}"));
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
            out.push(format!("{RESERVATIONS}nodeport/{np}"));
        }
    }
    out
}

fn service_id(svc: &Value) -> (String, String) {
    let get = |f: &str| {
        svc.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (get("namespace"), get("name"))
}

/// Whether the Service `r` names still holds the value of reservation `key`.
fn owner_holds(store: &dyn Store, r: &Reservation, key: &str) -> ApiResult<bool> {
    let svc_key = format!("/registry/core/services/{}/{}", r.namespace, r.name);
    Ok(match store.get(&svc_key)? {
        Some(kv) => serde_json::from_slice::<Value>(&kv.value)
            .map(|svc| held_values(&svc).iter().any(|k| k == key))
            .unwrap_or(false),
        None => false,
    })
}

/// Reserves every value `svc` holds for it (a no-op for values it reserved before) and
/// releases those `old` held and `svc` no longer does. Fails with kube-apiserver's
/// "already allocated" message when another Service, through another server, got there
/// first. Call after admission and validation, right before the write; not in dry runs.
pub(super) fn reserve(store: &dyn Store, svc: &Value, old: Option<&Value>) -> ApiResult<()> {
    let (namespace, name) = service_id(svc);
    let mine = Reservation {
        namespace,
        name,
        at_ms: now_ms(),
    };
    let value = serde_json::to_vec(&mine).unwrap_or_default();
    let held = held_values(svc);
    let had = old.map(held_values).unwrap_or_default();
    let result = reserve_each(store, svc, &mine, &value, &held);
    if result.is_err() {
        // Nothing half-done: give back what this call took (and `old` did not hold).
        let partial = json!({
            "metadata": {"namespace": mine.namespace, "name": mine.name},
        });
        for key in held.iter().filter(|k| !had.contains(k)) {
            release_key(store, &partial, key);
        }
        return result;
    }
    if let Some(old) = old {
        release_except(store, old, &held)?;
    }
    Ok(())
}

/// Reserves each of `held` for `mine` (see [`reserve`]).
fn reserve_each(
    store: &dyn Store,
    svc: &Value,
    mine: &Reservation,
    value: &[u8],
    held: &[String],
) -> ApiResult<()> {
    for key in held {
        let taken = || -> ApiResult<()> {
            let what = key.trim_start_matches(RESERVATIONS);
            let message = match what.split_once('/') {
                Some(("ip", ip)) => format!("spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"),
                Some((_, port)) => format!("spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"),
                None => format!("{what} is already allocated"),
            };
            let field = if what.starts_with("ip/") {
                "spec.clusterIPs"
            } else {
                "spec.ports[0].nodePort"
            };
            Err(super::allocator::invalid(svc, field.to_string(), message))
        };
        match store.create(key, value) {
            Ok(_) => continue,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(kv) = store.get(key)? else {
            // Released meanwhile: try once more.
            match store.create(key, value) {
                Ok(_) => continue,
                Err(StoreError::AlreadyExists(_)) => return taken(),
                Err(e) => return Err(e.into()),
            }
        };
        let theirs: Option<Reservation> = serde_json::from_slice(&kv.value).ok();
        let ours = theirs
            .as_ref()
            .is_some_and(|r| r.namespace == mine.namespace && r.name == mine.name);
        let stale = match &theirs {
            None => true,
            Some(_) if ours => true,
            Some(r) => {
                now_ms().saturating_sub(r.at_ms) > RESERVATION_GRACE_MS
                    && !owner_holds(store, r, key)?
            }
        };
        if !stale {
            return taken();
        }
        match store.update(key, value, Some(kv.mod_revision)) {
            Ok(_) => {}
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => return taken(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Releases the values `svc` holds (it was deleted).
pub(super) fn release(store: &dyn Store, svc: &Value) -> ApiResult<()> {
    release_except(store, svc, &[])
}

fn release_except(store: &dyn Store, svc: &Value, keep: &[String]) -> ApiResult<()> {
    for key in held_values(svc).iter().filter(|k| !keep.contains(k)) {
        release_key(store, svc, key);
    }
    Ok(())
}

/// Deletes reservation `key` if `svc` holds it. Someone else's meanwhile, or gone
/// already: theirs to keep.
fn release_key(store: &dyn Store, svc: &Value, key: &str) {
    let (namespace, name) = service_id(svc);
    let Ok(Some(kv)) = store.get(key) else {
        return;
    };
    let ours = serde_json::from_slice::<Reservation>(&kv.value)
        .is_ok_and(|r| r.namespace == namespace && r.name == name);
    if ours {
        let _ = store.delete(key, Some(kv.mod_revision));
    }
}

/// Cluster IPs and node ports in use by Services other than `obj`: the values reserved
/// for them. Every Service write reserves what the Service holds before it is stored,
/// so the reservations (small, one key a value) answer without reading every Service,
/// as kube-apiserver's allocators answer from their bitmap or IPAddress objects; a
/// reservation left behind by a failed write holds until [`repair`] removes it.
pub(super) fn in_use(store: &dyn Store, obj: &Value) -> ApiResult<InUse> {
    let (namespace, name) = service_id(obj);
    let (reservations, _) = store.list(RESERVATIONS)?;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for kv in reservations {
        let Ok(r) = serde_json::from_slice::<Reservation>(&kv.value) else {
            continue;
        };
        if r.namespace == namespace && r.name == name {
            continue;
        }
        match kv.key.trim_start_matches(RESERVATIONS).split_once('/') {
            Some(("ip", ip)) => ips.extend(ip.parse::<Ipv4Addr>().ok()),
            Some(("nodeport", p)) => ports.extend(p.parse::<u16>().ok()),
            _ => {}
        }
    }
    Ok(InUse { ips, ports })
}

/// How often [`repair`] runs: kube-apiserver's ClusterIP and NodePort repair
/// controllers run every 3 minutes.
pub(crate) const REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(180);

/// What one [`repair`] pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Repaired {
    /// Reservations made for values Services held without one (Services stored by a
    /// server that did not reserve, or whose reservation was lost).
    pub added: usize,
    /// Reservations removed: older than the grace period, for a value their Service no
    /// longer holds (a write that failed after reserving, a server that died).
    pub removed: usize,
}

/// Makes the reservations match the stored Services, as kube-apiserver's repair
/// controllers make their allocation bitmaps match: every held value reserved, no
/// value reserved for a Service that does not hold it past the grace period. Services
/// are read before the reservations, and removals are conditional on the revision read,
/// so a Service written meanwhile keeps what it reserved.
pub(crate) fn repair(store: &dyn Store) -> ApiResult<Repaired> {
    let (services, _) = store.list("/registry/core/services/")?;
    let mut held: std::collections::HashMap<String, (String, String)> =
        std::collections::HashMap::new();
    for kv in &services {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let owner = service_id(&svc);
        for key in held_values(&svc) {
            if let Some(other) = held.get(&key) {
                tracing::warn!(value = %key.trim_start_matches(RESERVATIONS), first = %format!("{}/{}", other.0, other.1), second = %format!("{}/{}", owner.0, owner.1), "two Services hold one allocated value");
                continue;
            }
            held.insert(key, owner.clone());
        }
    }
    let (reservations, _) = store.list(RESERVATIONS)?;
    let now = now_ms();
    let mut out = Repaired::default();
    let mut reserved = HashSet::new();
    for kv in reservations {
        reserved.insert(kv.key.clone());
        let r = serde_json::from_slice::<Reservation>(&kv.value).ok();
        let holder = held.get(&kv.key);
        let current = match &r {
            Some(r) => {
                holder.is_some_and(|(ns, n)| *ns == r.namespace && *n == r.name)
                    || now.saturating_sub(r.at_ms) <= RESERVATION_GRACE_MS
            }
            None => false,
        };
        if current {
            continue;
        }
        match store.delete(&kv.key, Some(kv.mod_revision)) {
            Ok(_) => {
                out.removed += 1;
                reserved.remove(&kv.key);
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (key, (namespace, name)) in held {
        if reserved.contains(&key) {
            continue;
        }
        let r = Reservation {
            namespace,
            name,
            at_ms: now,
        };
        match store.create(&key, &serde_json::to_vec(&r).unwrap_or_default()) {
            Ok(_) => out.added += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::SqliteStore;

    fn svc(ns: &str, name: &str, ip: &str, node_port: Option<u16>) -> Value {
        let mut port = json!({"port": 80});
        if let Some(np) = node_port {
            port["nodePort"] = json!(np);
        }
        json!({"metadata": {"namespace": ns, "name": name},
               "spec": {"clusterIP": ip, "ports": [port]}})
    }

    fn store_service(store: &dyn Store, s: &Value) {
        let (ns, name) = service_id(s);
        let key = format!("/registry/core/services/{ns}/{name}");
        store.create(&key, &serde_json::to_vec(s).unwrap()).unwrap();
    }

    fn reservation(store: &dyn Store, key: &str, ns: &str, name: &str, age_ms: u64) {
        let r = Reservation {
            namespace: ns.into(),
            name: name.into(),
            at_ms: now_ms() - age_ms,
        };
        store
            .create(
                &format!("{RESERVATIONS}{key}"),
                &serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
    }

    fn reserved_keys(store: &dyn Store) -> Vec<String> {
        let (kvs, _) = store.list(RESERVATIONS).unwrap();
        kvs.into_iter()
            .map(|kv| kv.key.trim_start_matches(RESERVATIONS).to_string())
            .collect()
    }

    #[test]
    fn values_in_use_are_the_reservations_of_other_services() {
        let store = SqliteStore::in_memory().unwrap();
        let a = svc("default", "a", "10.96.0.10", Some(30080));
        reserve(&store, &a, None).unwrap();
        // Reserved a moment ago for a Service not stored yet (another server's write).
        reservation(&store, "ip/10.96.0.11", "default", "b", 0);
        // Left behind long ago: still in use until the repair removes it.
        reservation(
            &store,
            "nodeport/30090",
            "default",
            "gone",
            10 * RESERVATION_GRACE_MS,
        );
        let used = in_use(&store, &svc("default", "c", "", None)).unwrap();
        let mut ips: Vec<String> = used.ips.iter().map(ToString::to_string).collect();
        ips.sort();
        assert_eq!(ips, ["10.96.0.10", "10.96.0.11"]);
        let mut ports: Vec<u16> = used.ports.into_iter().collect();
        ports.sort();
        assert_eq!(ports, [30080, 30090]);
        // A Service's own values are not in use against it.
        let own = in_use(&store, &a).unwrap();
        assert!(!own.ips.contains(&"10.96.0.10".parse().unwrap()));
        assert!(!own.ports.contains(&30080));
    }

    #[test]
    fn repair_reserves_held_values_and_removes_stale_reservations() {
        let store = SqliteStore::in_memory().unwrap();
        // Stored without reservations (as an older server stored Services).
        store_service(&store, &svc("default", "old", "10.96.0.20", Some(30100)));
        // Reserved properly.
        let kept = svc("default", "kept", "10.96.0.21", None);
        reserve(&store, &kept, None).unwrap();
        store_service(&store, &kept);
        // A write that failed after reserving, long ago, and one a moment ago.
        reservation(
            &store,
            "ip/10.96.0.22",
            "default",
            "failed",
            2 * RESERVATION_GRACE_MS,
        );
        reservation(&store, "ip/10.96.0.23", "default", "writing", 0);
        // An old reservation of a Service that moved to another value.
        store_service(&store, &svc("default", "moved", "10.96.0.25", None));
        reservation(
            &store,
            "ip/10.96.0.24",
            "default",
            "moved",
            2 * RESERVATION_GRACE_MS,
        );

        let r = repair(&store).unwrap();
        assert_eq!(
            r,
            Repaired {
                added: 3,
                removed: 2
            }
        );
        let mut keys = reserved_keys(&store);
        keys.sort();
        assert_eq!(
            keys,
            [
                "ip/10.96.0.20",
                "ip/10.96.0.21",
                "ip/10.96.0.23",
                "ip/10.96.0.25",
                "nodeport/30100"
            ]
        );
        // Nothing more to do on a second pass.
        assert_eq!(repair(&store).unwrap(), Repaired::default());
        // The repaired reservations name their Services.
        let used = in_use(&store, &svc("default", "old", "", None)).unwrap();
        assert!(!used.ips.contains(&"10.96.0.20".parse().unwrap()));
        assert!(used.ips.contains(&"10.96.0.21".parse().unwrap()));
    }
}
