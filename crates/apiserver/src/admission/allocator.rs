//! Service cluster IP and node port allocation, as a pure function of the Service, the
//! stored one and the values in use: the datastore is read and written by the caller
//! (`super::reservations`, `super::service_ips`).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rand::Rng;
use serde_json::{json, Value};

use crate::status::{ApiError, ApiResult};

/// Cluster IPs and node ports held by other Services (or reserved for them).
#[derive(Debug, Default, Clone)]
pub(crate) struct InUse {
    /// Cluster IPs.
    pub ips: HashSet<Ipv4Addr>,
    /// Node ports.
    pub ports: HashSet<u16>,
}

pub(super) fn invalid(obj: &Value, field: String, message: String) -> ApiError {
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

/// Assigns `obj` (a Service, storage version) its cluster IP and node ports, keeping
/// those of `old` (the stored Service, on update) and the values the client asked for,
/// avoiding `used`. Also sets the fields that follow from the type (IP families, traffic
/// policy) and drops those that do not apply to it.
pub(crate) fn assign(
    obj: &mut Value,
    old: Option<&Value>,
    used: InUse,
    service_cidr: Ipv4Net,
    node_port_range: (u16, u16),
) -> ApiResult<()> {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    obj["spec"]["type"] = json!(ty);
    let InUse {
        ips: used_ips,
        ports: used_ports,
    } = used;

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
                if !service_cidr.contains(&ip) {
                    return Err(invalid(obj, "spec.clusterIPs".into(), format!(
                        "spec.clusterIPs: Invalid value: []string{{\"{r}\"}}: failed to allocate IP {r}: the provided IP ({r}) is not in the valid range. The range of valid IPs is {}",
                        service_cidr
                    )));
                }
                if used_ips.contains(&ip) {
                    return Err(invalid(obj, "spec.clusterIPs".into(), format!(
                        "spec.clusterIPs: Invalid value: []string{{\"{r}\"}}: failed to allocate IP {r}: provided IP is already allocated"
                    )));
                }
                r
            }
            (None, None) => allocate_ip(service_cidr, &used_ips)
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
    let (lo, hi) = node_port_range;
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
            None => allocate_port(node_port_range, &taken).ok_or_else(|| {
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

    fn cidr() -> Ipv4Net {
        "10.96.0.0/12".parse().unwrap()
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"namespace": "d", "name": "s"}, "spec": spec})
    }

    #[test]
    fn assign_allocates_keeps_and_refuses() {
        let range = (30000, 32767);
        // A new NodePort Service gets an IP from the range and a node port.
        let mut s = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assign(&mut s, None, InUse::default(), cidr(), range).unwrap();
        let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(cidr().contains(&ip));
        assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        let np = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&np));
        // An update keeps both, even when the client leaves them out.
        let old = s.clone();
        let mut upd = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assign(&mut upd, Some(&old), InUse::default(), cidr(), range).unwrap();
        assert_eq!(upd["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(upd["spec"]["ports"][0]["nodePort"], json!(np));
        // Back to ClusterIP: node ports and the traffic policy go.
        let mut back = svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": np}]}));
        assign(&mut back, Some(&old), InUse::default(), cidr(), range).unwrap();
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        assert!(back["spec"].get("externalTrafficPolicy").is_none());
        // The cluster IP may not change once set.
        let mut moved = svc(json!({"clusterIP": "10.96.0.99"}));
        let e = assign(&mut moved, Some(&old), InUse::default(), cidr(), range).unwrap_err();
        assert!(
            e.message.contains("may not change once set"),
            "{}",
            e.message
        );
        // Requested values outside the ranges or in use are refused with kube's words.
        let mut out = svc(json!({"clusterIP": "192.0.2.1"}));
        let e = assign(&mut out, None, InUse::default(), cidr(), range).unwrap_err();
        assert!(
            e.message.contains("is not in the valid range"),
            "{}",
            e.message
        );
        let used = InUse {
            ips: ["10.96.0.10".parse().unwrap()].into(),
            ports: [30080].into(),
        };
        let mut taken = svc(json!({"clusterIP": "10.96.0.10"}));
        let e = assign(&mut taken, None, used.clone(), cidr(), range).unwrap_err();
        assert!(
            e.message.contains("provided IP is already allocated"),
            "{}",
            e.message
        );
        let mut port = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        let e = assign(&mut port, None, used, cidr(), range).unwrap_err();
        assert!(
            e.message.contains("provided port is already allocated"),
            "{}",
            e.message
        );
        // Headless and ExternalName Services hold no IP.
        let mut headless = svc(json!({"clusterIP": "None"}));
        assign(&mut headless, None, InUse::default(), cidr(), range).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut ext = svc(
            json!({"type": "ExternalName", "externalName": "example.org", "clusterIP": "10.96.0.5"}),
        );
        assign(&mut ext, None, InUse::default(), cidr(), range).unwrap();
        assert!(ext["spec"].get("clusterIP").is_none());
    }
}
