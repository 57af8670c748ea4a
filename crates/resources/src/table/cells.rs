//! Cells of every other kind's row (`print<Kind>` in kube-apiserver's printers).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::access::*;
use super::pod::pod_cells;
use crate::duration::human_duration;
use crate::registry::ResourceInfo;

pub(super) fn cells(
    info: &ResourceInfo,
    o: &Value,
    now: DateTime<Utc>,
) -> (Vec<Value>, Option<Value>) {
    if let Some(c) = super::storage::cells(info.group, info.kind, o, now) {
        return (c, None);
    }
    let c = match (info.group, info.kind) {
        ("", "Pod") => return pod_cells(o, now),
        ("", "PodTemplate") => {
            let (n, im) = container_cells(o, "/template/spec/containers");
            vec![
                name(o),
                n,
                im,
                json!(format_labels(obj(o, "/template/metadata/labels"))),
            ]
        }
        ("", "ReplicationController") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                age(o, now),
                n,
                im,
                json!(format_labels(obj(o, "/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                age(o, now),
                n,
                im,
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "Deployment") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                age(o, now),
                n,
                im,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "DaemonSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(format_labels(obj(o, "/spec/template/spec/nodeSelector"))),
                age(o, now),
                n,
                im,
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                age(o, now),
                n,
                im,
            ]
        }
        ("apps", "ControllerRevision") => {
            let controller = arr(o, "/metadata/ownerReferences")
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    let (group, _) = crate::registry::split_api_version(s(r, "/apiVersion"));
                    let gk = if group.is_empty() {
                        s(r, "/kind").to_lowercase()
                    } else {
                        format!("{}.{group}", s(r, "/kind").to_lowercase())
                    };
                    format!("{gk}/{}", s(r, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name(o),
                json!(controller),
                json!(i(o, "/revision")),
                age(o, now),
            ]
        }
        ("batch", "Job") => job_cells(o, now),
        ("batch", "CronJob") => {
            let (n, im) = container_cells(o, "/spec/jobTemplate/spec/template/spec/containers");
            let last = match o
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
            {
                Some(t) => since(t, now),
                None => "<none>".into(),
            };
            let tz = match s(o, "/spec/timeZone") {
                "" => "<none>",
                t => t,
            };
            let suspend = o.pointer("/spec/suspend").and_then(Value::as_bool);
            vec![
                name(o),
                json!(s(o, "/spec/schedule")),
                json!(tz),
                json!(match suspend {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                }),
                json!(arr(o, "/status/active").len()),
                json!(last),
                age(o, now),
                n,
                im,
                json!(format_label_selector(
                    o.pointer("/spec/jobTemplate/spec/selector")
                )),
            ]
        }
        ("", "Service") => service_cells(o, now),
        ("", "Endpoints") => vec![name(o), json!(format_endpoints(o)), age(o, now)],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(o, "/ports")
                .iter()
                .map(|p| match p.get("port").and_then(Value::as_i64) {
                    Some(n) => n.to_string(),
                    None => match p.get("name").and_then(Value::as_str) {
                        Some(n) => n.to_string(),
                        None => "*".into(),
                    },
                })
                .collect();
            let addrs: Vec<String> = arr(o, "/endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "/addresses")
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            vec![
                name(o),
                json!(s(o, "/addressType")),
                json!(list_with_more(&ports, 3)),
                json!(list_with_more(&addrs, 3)),
                age(o, now),
            ]
        }
        ("", "Node") => node_cells(o, now),
        ("", "Event") => event_cells(o, now, false),
        ("events.k8s.io", "Event") => event_cells(o, now, true),
        ("", "Namespace") => vec![name(o), json!(s(o, "/status/phase")), age(o, now)],
        ("", "Secret") => {
            let n = obj(o, "/data").map(Map::len).unwrap_or(0);
            vec![name(o), json!(s(o, "/type")), json!(n), age(o, now)]
        }
        ("", "ServiceAccount") => vec![name(o), json!(arr(o, "/secrets").len()), age(o, now)],
        ("", "ConfigMap") => {
            let n = obj(o, "/data").map(Map::len).unwrap_or(0)
                + obj(o, "/binaryData").map(Map::len).unwrap_or(0);
            vec![name(o), json!(n), age(o, now)]
        }
        // metrics-server's table: a pod's usage is its containers' sum.
        ("metrics.k8s.io", "NodeMetrics" | "PodMetrics") => {
            let usages: Vec<&Value> = match o.get("usage") {
                Some(u) => vec![u],
                None => arr(o, "/containers")
                    .iter()
                    .filter_map(|c| c.get("usage"))
                    .collect(),
            };
            let sum = |r: &str| -> f64 {
                usages
                    .iter()
                    .filter_map(|u| u.get(r)?.as_str())
                    .filter_map(skiff_api::quantity::parse)
                    .sum()
            };
            vec![
                name(o),
                json!(skiff_api::metrics::cpu_quantity(
                    (sum("cpu") * 1e9).round() as u64
                )),
                json!(skiff_api::metrics::memory_quantity(
                    sum("memory").round() as u64
                )),
                json!(s(o, "/window")),
            ]
        }
        ("", "ComponentStatus") => {
            let mut status = "Unknown".to_string();
            let mut message = String::new();
            let mut error = String::new();
            if let Some(c) = arr(o, "/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Healthy")
            {
                status = if s(c, "/status") == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                }
                .into();
                message = s(c, "/message").into();
                error = s(c, "/error").into();
            }
            vec![name(o), json!(status), json!(message), json!(error)]
        }
        ("", "ResourceQuota") => {
            let fmt_pairs = |ptr_hard: &str, ptr_used: &str, want_requests: bool| -> String {
                let hard = obj(o, ptr_hard);
                let mut keys: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
                keys.sort();
                keys.into_iter()
                    .filter(|k| k.starts_with("limits.") != want_requests)
                    .map(|k| {
                        let used = o
                            .pointer(&format!("{ptr_used}/{k}"))
                            .and_then(Value::as_str)
                            .unwrap_or("0");
                        let h = hard
                            .and_then(|h| h.get(k.as_str()))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        format!("{k}: {used}/{h}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name(o),
                age(o, now),
                json!(fmt_pairs("/status/hard", "/status/used", true)),
                json!(fmt_pairs("/status/hard", "/status/used", false)),
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name(o), json!(s(o, "/spec/holderIdentity")), age(o, now)]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![
                name(o),
                json!(format_label_selector(o.pointer("/spec/podSelector"))),
                age(o, now),
            ]
        }
        ("networking.k8s.io", "Ingress") => {
            let class = match s(o, "/spec/ingressClassName") {
                "" => "<none>",
                c => c,
            };
            let rules = arr(o, "/spec/rules");
            let hosts: Vec<String> = rules
                .iter()
                .take(3)
                .map(|r| s(r, "/host").to_string())
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if rules.len() > 3 {
                format!("{} + {} more...", hosts.join(","), rules.len() - 3)
            } else {
                hosts.join(",")
            };
            let mut addrs: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .filter(|a| !a.is_empty())
                .collect();
            addrs.sort();
            addrs.dedup();
            let ports = if arr(o, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name(o),
                json!(class),
                json!(hosts),
                json!(addrs.join(",")),
                json!(ports),
                age(o, now),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            // Printed from v2, as kube prints from its internal version.
            let v2;
            let o = if o["apiVersion"] == "autoscaling/v1" {
                v2 = crate::convert(o.clone(), "autoscaling/v2");
                &v2
            } else {
                o
            };
            let min = o
                .pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .map(|m| m.to_string())
                .unwrap_or_else(|| "<unset>".into());
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    s(o, "/spec/scaleTargetRef/kind"),
                    s(o, "/spec/scaleTargetRef/name")
                )),
                json!(hpa_metrics(
                    arr(o, "/spec/metrics"),
                    arr(o, "/status/currentMetrics")
                )),
                json!(min),
                json!(i(o, "/spec/maxReplicas")),
                json!(i(o, "/status/currentReplicas")),
                age(o, now),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let fmt = |p: &str| match o.pointer(p) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name(o),
                json!(fmt("/spec/minAvailable")),
                json!(fmt("/spec/maxUnavailable")),
                json!(i(o, "/status/disruptionsAllowed")),
                age(o, now),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name(o),
            json!(i(o, "/value")),
            json!(o
                .pointer("/globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age(o, now),
            json!(s(o, "/preemptionPolicy")),
        ],
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => {
            let n = o
                .get("webhooks")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![name(o), json!(n), age(o, now)]
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            let duration = match o.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
                Some(secs) => human_duration(chrono::Duration::seconds(secs)),
                None => "<none>".to_string(),
            };
            vec![
                name(o),
                age(o, now),
                json!(s(o, "/spec/signerName")),
                json!(s(o, "/spec/username")),
                json!(duration),
                json!(csr_condition(o)),
            ]
        }
        ("apiregistration.k8s.io", "APIService") => {
            let service = match o.pointer("/spec/service").filter(|v| v.is_object()) {
                Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
                None => "Local".to_string(),
            };
            let available = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
                .map(|c| match (s(c, "/status"), s(c, "/reason")) {
                    (st, r) if st != "True" && !r.is_empty() => format!("{st} ({r})"),
                    (st, _) => st.to_string(),
                })
                .unwrap_or_else(|| "Unknown".to_string());
            vec![name(o), json!(service), json!(available), age(o, now)]
        }
        ("node.k8s.io", "RuntimeClass") => vec![name(o), json!(s(o, "/handler")), age(o, now)],
        ("networking.k8s.io", "IngressClass") => {
            let params = match o.pointer("/spec/parameters").filter(|p| p.is_object()) {
                Some(p) => {
                    let kind = match s(p, "/apiGroup") {
                        "" => s(p, "/kind").to_string(),
                        g => format!("{}.{g}", s(p, "/kind")),
                    };
                    format!("{kind}/{}", s(p, "/name"))
                }
                None => "<none>".into(),
            };
            vec![
                name(o),
                json!(s(o, "/spec/controller")),
                json!(params),
                age(o, now),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in arr(o, "/subjects") {
                match s(sub, "/kind") {
                    "User" => users.push(s(sub, "/name").to_string()),
                    "Group" => groups.push(s(sub, "/name").to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, "/namespace"), s(sub, "/name")))
                    }
                    _ => {}
                }
            }
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    s(o, "/roleRef/kind"),
                    s(o, "/roleRef/name")
                )),
                age(o, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        _ => vec![name(o), json!(s(o, "/metadata/creationTimestamp"))],
    };
    (c, None)
}

/// kube's `extractCSRStatus`: `Pending`, `Approved` or `Denied`, then `,Failed` and
/// `,Issued`.
fn csr_condition(o: &Value) -> String {
    let conds = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let has = |t: &str| conds.iter().any(|c| c["type"] == t);
    let mut out = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        out.push_str(",Failed");
    }
    if o.pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        out.push_str(",Issued");
    }
    out
}

/// The Targets cell of an HPA (`formatHPAMetrics`): `current/target` per metric, at
/// most two, then `+ N more...`.
fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    for (at, spec) in specs.iter().enumerate() {
        let status = statuses.get(at);
        let current = |ptr: &str, pct: bool| -> String {
            match status.and_then(|st| st.pointer(ptr)) {
                Some(Value::Number(n)) if pct => format!("{n}%"),
                Some(Value::String(q)) => q.clone(),
                _ => "<unknown>".into(),
            }
        };
        let entry = match s(spec, "/type") {
            "Pods" => format!(
                "{}/{}",
                current("/pods/current/averageValue", false),
                s(spec, "/pods/target/averageValue")
            ),
            "Object" => {
                let (cur, target) = if spec.pointer("/object/target/averageValue").is_some() {
                    (
                        "/object/current/averageValue",
                        "/object/target/averageValue",
                    )
                } else {
                    ("/object/current/value", "/object/target/value")
                };
                format!("{}/{}", current(cur, false), s(spec, target))
            }
            "External" => {
                let (cur, target) = if spec.pointer("/external/target/averageValue").is_some() {
                    (
                        "/external/current/averageValue",
                        "/external/target/averageValue",
                    )
                } else {
                    ("/external/current/value", "/external/target/value")
                };
                format!("{}/{}", current(cur, false), s(spec, target))
            }
            kind @ ("Resource" | "ContainerResource") => {
                let key = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = s(spec, &format!("/{key}/name"));
                if let Some(v) = spec.pointer(&format!("/{key}/target/averageValue")) {
                    format!(
                        "{name}: {}/{}",
                        current(&format!("/{key}/current/averageValue"), false),
                        v.as_str().unwrap_or_default()
                    )
                } else {
                    let target = spec
                        .pointer(&format!("/{key}/target/averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|t| format!("{t}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!(
                        "{name}: {}/{target}",
                        current(&format!("/{key}/current/averageUtilization"), true)
                    )
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(entry);
        if list.len() > 2 {
            list.truncate(2);
            more = true;
            break;
        }
        count += 1;
    }
    let ret = list.join(", ");
    if more {
        format!("{ret} + {} more...", specs.len() - count)
    } else {
        ret
    }
}

fn job_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = i(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let par = i(o, "/spec/parallelism");
            if par > 1 {
                format!("{succeeded}/1 of {par}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = o
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let end = o
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let dur = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now - s),
        (Some(s), Some(e)) => human_duration(e - s),
    };
    let cond = |t: &str| {
        arr(o, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    let status = if cond("Failed") {
        "Failed"
    } else if cond("Complete") {
        "Complete"
    } else if cond("Suspended") {
        "Suspended"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Running"
    };
    let (n, im) = container_cells(o, "/spec/template/spec/containers");
    vec![
        name(o),
        json!(status),
        json!(completions),
        json!(dur),
        age(o, now),
        n,
        im,
        json!(format_label_selector(o.pointer("/spec/selector"))),
    ]
}

/// `makePortString`: `8080/TCP`, `8080:31688/TCP`, comma-joined; `<none>` when empty.
pub fn port_string(svc: &Value) -> String {
    let parts: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            match i(p, "/nodePort") {
                0 => format!("{port}/{proto}"),
                np => format!("{port}:{np}/{proto}"),
            }
        })
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn service_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = s(o, "/spec/type");
    let cluster_ip = arr(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| {
            o.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("<none>");
    let external_ips: Vec<String> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .filter(|a| !a.is_empty())
                .collect();
            lb.sort();
            lb.dedup();
            if !external_ips.is_empty() {
                lb.extend(external_ips);
                lb.join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(o, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    vec![
        name(o),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(port_string(o)),
        age(o, now),
        json!(format_labels(obj(o, "/spec/selector"))),
    ]
}

fn node_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(o, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
    {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in obj(o, "/metadata/labels").into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let addr = |t: &str| {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(o),
        json!(status.join(",")),
        json!(roles),
        age(o, now),
        json!(s(o, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown(s(o, "/status/nodeInfo/osImage"))),
        json!(unknown(s(o, "/status/nodeInfo/kernelVersion"))),
        json!(unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

fn event_cells(o: &Value, now: DateTime<Utc>, new_api: bool) -> Vec<Value> {
    // events.k8s.io/v1 names the same facts differently.
    let (first_p, last_p, count_p, obj_p, msg_p, src_p) = if new_api {
        (
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "/deprecatedCount",
            "/regarding",
            "/note",
            "/deprecatedSource",
        )
    } else {
        (
            "/firstTimestamp",
            "/lastTimestamp",
            "/count",
            "/involvedObject",
            "/message",
            "/source",
        )
    };
    let first = match parse_time(s(o, first_p)) {
        Some(t) => human_duration(now - t),
        None => since(s(o, "/eventTime"), now),
    };
    let mut last = match parse_time(s(o, last_p)) {
        Some(t) => human_duration(now - t),
        None => first.clone(),
    };
    let mut count = i(o, count_p);
    if let Some(series) = o.get("series").filter(|v| v.is_object()) {
        last = since(s(series, "/lastObservedTime"), now);
        count = i(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let involved = o.pointer(obj_p).cloned().unwrap_or(Value::Null);
    let kind = s(&involved, "/kind").to_lowercase();
    let target = match s(&involved, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match s(o, &format!("{src_p}/component")) {
        "" => s(o, "/reportingController"),
        c => c,
    };
    let instance = match s(o, &format!("{src_p}/host")) {
        "" => s(o, "/reportingInstance"),
        h => h,
    };
    let source = if component.is_empty() {
        String::new()
    } else if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(o, "/type")),
        json!(s(o, "/reason")),
        json!(target),
        json!(s(&involved, "/fieldPath")),
        json!(source),
        json!(s(o, msg_p).trim()),
        json!(first),
        json!(count),
        name(o),
    ]
}
