//! Services: type, ports, node ports, external names, cluster IP immutability.

use serde_json::{json, Value};

use super::super::names::*;
use super::super::FieldError;
use super::{arr, s, Errs};

pub(super) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn validate_port_num_or_name(v: &Value, path: &str, e: &mut Errs) {
    match v {
        Value::Number(n) => {
            for m in is_valid_port_num(n.as_i64().unwrap_or(0)) {
                e.push(FieldError::invalid(path, v.clone(), m));
            }
        }
        Value::String(name) => {
            // A numeric string is an int-or-string holding a number.
            if let Ok(n) = name.parse::<i64>() {
                for m in is_valid_port_num(n) {
                    e.push(FieldError::invalid(path, json!(n), m));
                }
            } else {
                for m in is_valid_port_name(name) {
                    e.push(FieldError::invalid(path, v.clone(), m));
                }
            }
        }
        _ => {}
    }
}

pub(super) fn validate_service(svc: &Value, old: Option<&Value>, e: &mut Errs) {
    let ty = s(svc, "/spec/type").unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&ty) {
        e.push(FieldError::not_supported("spec.type", json!(ty), TYPES));
    }
    let cluster_ip = s(svc, "/spec/clusterIP").unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = arr(svc, "/spec/ports");
    if ty == "ExternalName" {
        let name = s(svc, "/spec/externalName").unwrap_or("");
        if name.is_empty() {
            e.push(FieldError::required("spec.externalName", ""));
        } else {
            for m in is_dns1123_subdomain(name.trim_end_matches('.')) {
                e.push(FieldError::invalid("spec.externalName", json!(name), m));
            }
        }
        if !cluster_ip.is_empty() {
            e.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_empty() && !headless {
        e.push(FieldError::required("spec.ports", ""));
    }
    if let Some(aff) = s(svc, "/spec/sessionAffinity") {
        if aff != "None" && aff != "ClientIP" {
            e.push(FieldError::not_supported(
                "spec.sessionAffinity",
                json!(aff),
                &["ClientIP", "None"],
            ));
        }
    }
    let require_name = ports.len() > 1;
    let mut names: Vec<&str> = Vec::new();
    let mut keys: Vec<(i64, &str)> = Vec::new();
    let mut node_ports: Vec<(i64, &str)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = s(p, "/name").unwrap_or("");
        if require_name && name.is_empty() {
            e.push(FieldError::required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.push(FieldError::invalid(format!("{path}.name"), json!(name), m));
            }
            if names.contains(&name) {
                e.push(FieldError::duplicate(format!("{path}.name"), json!(name)));
            }
            names.push(name);
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        for m in is_valid_port_num(port) {
            e.push(FieldError::invalid(format!("{path}.port"), json!(port), m));
        }
        let proto = s(p, "/protocol").unwrap_or("");
        if proto.is_empty() {
            e.push(FieldError::required(format!("{path}.protocol"), ""));
        } else if !PROTOCOLS.contains(&proto) {
            e.push(FieldError::not_supported(
                format!("{path}.protocol"),
                json!(proto),
                PROTOCOLS,
            ));
        }
        if let Some(tp) = p.get("targetPort") {
            validate_port_num_or_name(tp, &format!("{path}.targetPort"), e);
        }
        if keys.contains(&(port, proto)) {
            e.push(FieldError::duplicate(
                path.clone(),
                json!(format!(
                    "core.ServicePort{{Port:{port}, Protocol:{proto:?}}}"
                )),
            ));
        }
        keys.push((port, proto));
        let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if np != 0 {
            if ty == "ClusterIP" || ty == "ExternalName" {
                e.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else {
                let (lo, hi) = (
                    i64::from(skiff_api::defaults::NODE_PORT_MIN),
                    i64::from(skiff_api::defaults::NODE_PORT_MAX),
                );
                if !(lo..=hi).contains(&np) {
                    e.push(FieldError::invalid(
                        format!("{path}.nodePort"),
                        json!(np),
                        format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                    ));
                }
                if node_ports.contains(&(np, proto)) {
                    e.push(FieldError::duplicate(format!("{path}.nodePort"), json!(np)));
                }
                node_ports.push((np, proto));
            }
        }
    }
    if let Some(old) = old {
        let old_ips: Vec<&str> = arr(old, "/spec/clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let new_ips: Vec<&str> = arr(svc, "/spec/clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let old_ip = s(old, "/spec/clusterIP").unwrap_or("");
        let changing_external =
            ty == "ExternalName" || s(old, "/spec/type") == Some("ExternalName");
        if !changing_external {
            let old_first = old_ips.first().copied().unwrap_or(old_ip);
            let new_first = new_ips.first().copied().unwrap_or(cluster_ip);
            if !old_first.is_empty() && !new_first.is_empty() && old_first != new_first {
                e.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    json!(new_ips),
                    "may not change once set",
                ));
            }
        }
    }
}
