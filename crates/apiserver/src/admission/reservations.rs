//! The datastore side of Service allocation. Allocations are computed from the stored
//! Services while the writer holds the plugin's lock, so on one server they always agree
//! with the store. Servers sharing a datastore do not share that lock, so each allocated
//! value is also reserved under its own key (`/registry/skiff/allocations/<kind>/<value>`,
//! created only if absent) just before the Service is written: of two servers racing for
//! one value, one write fails. The keys play the part of Kubernetes' IPAddress objects
//! and allocator snapshots: a reservation whose Service no longer holds the value expires
//! after [`RESERVATION_GRACE_MS`], which also covers writes that failed after reserving.

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

/// Cluster IPs and node ports in use by Services other than `obj`.
pub(super) fn in_use(store: &dyn Store, obj: &Value) -> ApiResult<InUse> {
    let me = (
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let (kvs, _) = store.list("/registry/core/services/")?;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for kv in kvs {
        let Ok(s) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let id = (
            s.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            s.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        if id == me {
            continue;
        }
        if let Some(ip) = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|i| i.parse().ok())
        {
            ips.insert(ip);
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                ports.insert(np as u16);
            }
        }
    }
    // Values other servers reserved a moment ago for Services not written yet.
    let (reservations, _) = store.list(RESERVATIONS)?;
    let now = now_ms();
    for kv in reservations {
        let Ok(r) = serde_json::from_slice::<Reservation>(&kv.value) else {
            continue;
        };
        if (r.namespace.as_str(), r.name.as_str()) == me
            || now.saturating_sub(r.at_ms) > RESERVATION_GRACE_MS
        {
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
