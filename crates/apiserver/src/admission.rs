//! Admission in the create/update path: per-kind server-set fields, and Service cluster
//! IP and node port allocation. Allocations are computed from the stored Services while
//! the caller holds `ApiState::service_lock`, so they always agree with the store.
//!
//! Servers sharing a datastore do not share that lock, so each allocated value is also
//! reserved under its own key (`/registry/skiff/allocations/<kind>/<value>`, created only
//! if absent) just before the Service is written: of two servers racing for one value,
//! one write fails. The keys play the part of Kubernetes' IPAddress objects and allocator
//! snapshots: a reservation whose Service no longer holds the value expires after
//! [`RESERVATION_GRACE_MS`], which also covers writes that failed after reserving.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;
use skiff_store::{Store, StoreError};

use crate::state::ApiState;
use crate::status::{ApiError, ApiResult};

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
fn owner_holds(state: &ApiState, r: &Reservation, key: &str) -> ApiResult<bool> {
    let svc_key = format!("/registry/core/services/{}/{}", r.namespace, r.name);
    Ok(match state.store.get(&svc_key)? {
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
pub(crate) fn reserve(state: &ApiState, svc: &Value, old: Option<&Value>) -> ApiResult<()> {
    let (namespace, name) = service_id(svc);
    let mine = Reservation {
        namespace,
        name,
        at_ms: now_ms(),
    };
    let value = serde_json::to_vec(&mine).unwrap_or_default();
    let held = held_values(svc);
    let had = old.map(held_values).unwrap_or_default();
    let result = reserve_each(state, svc, &mine, &value, &held);
    if result.is_err() {
        // Nothing half-done: give back what this call took (and `old` did not hold).
        let partial = json!({
            "metadata": {"namespace": mine.namespace, "name": mine.name},
        });
        for key in held.iter().filter(|k| !had.contains(k)) {
            release_key(state, &partial, key);
        }
        return result;
    }
    if let Some(old) = old {
        release_except(state, old, &held)?;
    }
    Ok(())
}

/// Reserves each of `held` for `mine` (see [`reserve`]).
fn reserve_each(
    state: &ApiState,
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
            Err(invalid(svc, field.to_string(), message))
        };
        match state.store.create(key, value) {
            Ok(_) => continue,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(kv) = state.store.get(key)? else {
            // Released meanwhile: try once more.
            match state.store.create(key, value) {
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
                    && !owner_holds(state, r, key)?
            }
        };
        if !stale {
            return taken();
        }
        match state.store.update(key, value, Some(kv.mod_revision)) {
            Ok(_) => {}
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => return taken(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Releases the values `svc` holds (it was deleted).
pub(crate) fn release(state: &ApiState, svc: &Value) -> ApiResult<()> {
    release_except(state, svc, &[])
}

fn release_except(state: &ApiState, svc: &Value, keep: &[String]) -> ApiResult<()> {
    for key in held_values(svc).iter().filter(|k| !keep.contains(k)) {
        release_key(state, svc, key);
    }
    Ok(())
}

/// Deletes reservation `key` if `svc` holds it. Someone else's meanwhile, or gone
/// already: theirs to keep.
fn release_key(state: &ApiState, svc: &Value, key: &str) {
    let (namespace, name) = service_id(svc);
    let Ok(Some(kv)) = state.store.get(key) else {
        return;
    };
    let ours = serde_json::from_slice::<Reservation>(&kv.value)
        .is_ok_and(|r| r.namespace == namespace && r.name == name);
    if ours {
        let _ = state.store.delete(key, Some(kv.mod_revision));
    }
}

/// Mutates `obj` (storage version) as kube-apiserver's admission and strategies do.
pub(crate) fn admit(
    state: &ApiState,
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    match (info.group, info.kind) {
        ("", "Pod") if old.is_none() => {
            let spec = obj.get_mut("spec").and_then(Value::as_object_mut);
            if let Some(spec) = spec {
                let sa = spec
                    .get("serviceAccountName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .or_else(|| {
                        spec.get("serviceAccount")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                    })
                    .unwrap_or("default")
                    .to_string();
                spec.insert("serviceAccountName".into(), json!(sa));
                spec.insert("serviceAccount".into(), json!(sa));
            }
        }
        ("", "Namespace") => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let meta = crate::rest::objects::meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if old.is_none() {
                if obj.pointer("/spec/finalizers").is_none() {
                    if !obj.get("spec").is_some_and(Value::is_object) {
                        obj["spec"] = json!({});
                    }
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                }
                obj["status"] = json!({"phase": "Active"});
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "Service") => service(state, obj, old)?,
        _ => {}
    }
    Ok(())
}

fn invalid(obj: &Value, field: String, message: String) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::invalid(
        "",
        "Service",
        name,
        vec![(field, "FieldValueInvalid".into(), message)],
    )
}

/// Cluster IPs and node ports in use by Services other than `obj`.
fn in_use(state: &ApiState, obj: &Value) -> ApiResult<(HashSet<Ipv4Addr>, HashSet<u16>)> {
    let me = (
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let (kvs, _) = state.store.list("/registry/core/services/")?;
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
    let (reservations, _) = state.store.list(RESERVATIONS)?;
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
    Ok((ips, ports))
}

fn allocate_ip(net: ipnet::Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(net.network());
    let size = 1u64 << (32 - net.prefix_len());
    if size < 4 {
        return None;
    }
    // Offsets 0 (network), 1 (the kubernetes Service) and the broadcast are never handed
    // out. KEP-3070: dynamic allocation prefers addresses above a static band (size/16,
    // between 16 and 256 addresses) so that fixed IPs such as kube-dns's 10.96.0.10 stay
    // free for the Services that ask for them.
    let band = (size / 16).clamp(16, 256).min(size - 1);
    let mut rng = rand::rng();
    for (lo, hi) in [(band.max(2), size - 1), (2, band)] {
        if lo >= hi {
            continue;
        }
        for _ in 0..1000 {
            let ip = Ipv4Addr::from(base + rng.random_range(lo..hi) as u32);
            if !used.contains(&ip) {
                return Some(ip);
            }
        }
        if let Some(ip) = (lo..hi)
            .map(|o| Ipv4Addr::from(base + o as u32))
            .find(|ip| !used.contains(ip))
        {
            return Some(ip);
        }
    }
    None
}

fn allocate_port((lo, hi): (u16, u16), used: &HashSet<u16>) -> Option<u16> {
    // KEP-3668: dynamic allocation prefers the upper band, leaving the static band
    // (up to 30085 for the default range) to users who pick ports themselves.
    let band = skiff_api::defaults::NODE_PORT_STATIC_BAND_MAX.clamp(lo, hi);
    let mut rng = rand::rng();
    for (a, b) in [(band.saturating_add(1), hi), (lo, band)] {
        if a > b {
            continue;
        }
        for _ in 0..200 {
            let p = rng.random_range(a..=b);
            if !used.contains(&p) {
                return Some(p);
            }
        }
        if let Some(p) = (a..=b).find(|p| !used.contains(p)) {
            return Some(p);
        }
    }
    None
}

fn service(state: &ApiState, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    obj["spec"]["type"] = json!(ty);
    let (used_ips, used_ports) = in_use(state, obj)?;

    // Cluster IP.
    if ty == "ExternalName" {
        if let Some(s) = obj["spec"].as_object_mut() {
            s.remove("clusterIP");
            s.remove("clusterIPs");
        }
    } else {
        let requested = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| {
                obj.pointer("/spec/clusterIPs/0")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            });
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ip = match (requested, old_ip) {
            (None, Some(o)) => o,
            (Some(r), Some(o)) if r == o => o,
            (Some(r), Some(_)) => {
                return Err(invalid(obj, "spec.clusterIPs[0]".into(), format!("spec.clusterIPs[0]: Invalid value: []string{{\"{r}\"}}: may not change once set")));
            }
            (Some(r), None) if r == "None" => r,
            (Some(r), None) => {
                let ip: Ipv4Addr = r.parse().map_err(|_| {
                    invalid(obj, "spec.clusterIPs[0]".into(), format!("spec.clusterIPs[0]: Invalid value: \"{r}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
                })?;
                if !state.service_cidr.contains(&ip) {
                    return Err(invalid(obj, "spec.clusterIPs".into(), format!(
                        "spec.clusterIPs: Invalid value: []string{{\"{r}\"}}: failed to allocate IP {r}: the provided IP ({r}) is not in the valid range. The range of valid IPs is {}",
                        state.service_cidr
                    )));
                }
                if used_ips.contains(&ip) {
                    return Err(invalid(obj, "spec.clusterIPs".into(), format!(
                        "spec.clusterIPs: Invalid value: []string{{\"{r}\"}}: failed to allocate IP {r}: provided IP is already allocated"
                    )));
                }
                r
            }
            (None, None) => allocate_ip(state.service_cidr, &used_ips)
                .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?
                .to_string(),
        };
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
        if obj.pointer("/spec/ipFamilies").is_none() {
            obj["spec"]["ipFamilies"] = json!(["IPv4"]);
        }
        if obj.pointer("/spec/ipFamilyPolicy").is_none() {
            obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
    }

    // Node ports.
    let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taken = used_ports;
    let mut ports: Vec<Value> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (lo, hi) = state.node_port_range;
    // Requested ports first, so an allocation never takes a port asked for later.
    for (i, p) in ports.iter().enumerate() {
        if !wants_node_ports {
            break;
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            if np < lo as i64 || np > hi as i64 {
                return Err(invalid(obj, format!("spec.ports[{i}].nodePort"), format!(
                    "spec.ports[{i}].nodePort: Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                )));
            }
            if taken.contains(&(np as u16)) {
                return Err(invalid(obj, format!("spec.ports[{i}].nodePort"), format!(
                    "spec.ports[{i}].nodePort: Invalid value: {np}: provided port is already allocated"
                )));
            }
            taken.insert(np as u16);
        }
    }
    for p in ports.iter_mut() {
        let Some(pm) = p.as_object_mut() else {
            continue;
        };
        if !wants_node_ports {
            pm.remove("nodePort");
            continue;
        }
        if pm
            .get("nodePort")
            .and_then(Value::as_i64)
            .is_some_and(|n| n != 0)
        {
            continue;
        }
        // Keep the port this Service port had before (same port number and protocol).
        let keep = old_ports
            .iter()
            .find(|o| o.get("port") == pm.get("port") && o.get("protocol") == pm.get("protocol"))
            .and_then(|o| o.get("nodePort").and_then(Value::as_u64))
            .map(|n| n as u16)
            .filter(|n| !taken.contains(n));
        let np = match keep {
            Some(n) => n,
            None => allocate_port(state.node_port_range, &taken).ok_or_else(|| {
                ApiError::internal("failed to allocate a nodePort: range is full")
            })?,
        };
        taken.insert(np);
        pm.insert("nodePort".into(), json!(np));
    }
    obj["spec"]["ports"] = json!(ports);
    if wants_node_ports {
        if obj.pointer("/spec/externalTrafficPolicy").is_none() {
            obj["spec"]["externalTrafficPolicy"] = json!("Cluster");
        }
        if ty == "LoadBalancer" && obj.pointer("/spec/allocateLoadBalancerNodePorts").is_none() {
            obj["spec"]["allocateLoadBalancerNodePorts"] = json!(true);
        }
    } else if let Some(s) = obj["spec"].as_object_mut() {
        s.remove("externalTrafficPolicy");
        s.remove("allocateLoadBalancerNodePorts");
        s.remove("healthCheckNodePort");
    }
    if obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .is_some_and(|a| a.is_empty())
        && ty == "ExternalName"
    {
        if let Some(s) = obj["spec"].as_object_mut() {
            s.remove("ports");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ips_skip_reserved_addresses() {
        let net: ipnet::Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let mut used = HashSet::new();
        // Offsets 2..=6 are the only allocatable addresses of a /29.
        for _ in 0..5 {
            let ip = allocate_ip(net, &used).unwrap();
            let off = u32::from(ip) - u32::from(net.network());
            assert!((2..=6).contains(&off), "{ip}");
            assert!(used.insert(ip));
        }
        assert_eq!(allocate_ip(net, &used), None);
    }

    #[test]
    fn cluster_ips_prefer_the_upper_band() {
        let net: ipnet::Ipv4Net = "10.96.0.0/12".parse().unwrap();
        for _ in 0..200 {
            let ip = allocate_ip(net, &HashSet::new()).unwrap();
            assert!(u32::from(ip) - u32::from(net.network()) >= 256, "{ip}");
        }
    }

    #[test]
    fn node_ports_prefer_the_dynamic_band() {
        let used = HashSet::new();
        for _ in 0..100 {
            let p = allocate_port((30000, 32767), &used).unwrap();
            assert!((30086..=32767).contains(&p), "{p}");
        }
        // With the upper band full, the static band is used.
        let used: HashSet<u16> = (30086..=32767).collect();
        let p = allocate_port((30000, 32767), &used).unwrap();
        assert!((30000..=30085).contains(&p));
        let used: HashSet<u16> = (30000..=32767).collect();
        assert_eq!(allocate_port((30000, 32767), &used), None);
    }
}
