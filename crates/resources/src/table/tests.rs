//! Golden tests of the Tables for the seed's objects (and the pod statuses kubectl shows).
//! `UPDATE_GOLDEN=1 cargo test -p skiff-resources` rewrites the files.

use super::access::{format_label_selector, parse_time};
use super::*;
use crate::registry::lookup;
use skiff_testkit::golden::check_json;

/// Where the golden Tables live.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn now() -> DateTime<Utc> {
    parse_time("2026-11-25T12:00:00Z").expect("time")
}

fn render(group: &str, plural: &str, objects: &[Value]) -> Value {
    let info = lookup(group, "v1", plural).expect("registered");
    let mut t = table(info, objects, IncludeObject::None, now());
    // Descriptions are long; the golden files pin columns and cells.
    for c in t["columnDefinitions"].as_array_mut().into_iter().flatten() {
        let has = c["description"].as_str().is_some_and(|d| !d.is_empty());
        c["description"] = json!(if has { "..." } else { "" });
    }
    t
}

fn seed_pod(name: &str, ip: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-11-25T11:58:30Z",
                     "labels": {"run": "httpd", "pod-template-hash": "5bbc9b449d"}},
        "spec": {"nodeName": node, "containers": [{"name": "httpd", "image": "httpd"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "httpd", "ready": true, "restartCount": 0,
                                          "state": {"running": {"startedAt": "2026-11-25T11:58:40Z"}}}]}})
}

#[test]
fn pods_golden() {
    let mut pods = vec![
        seed_pod("httpd-5bbc9b449d-7xk2p", "10.244.1.101", "k8s-n1"),
        seed_pod("httpd-5bbc9b449d-9qwzv", "10.244.2.35", "k8s-n2"),
    ];
    pods.push(json!({"metadata": {"name": "creating", "creationTimestamp": "2026-11-25T11:59:55Z"},
        "spec": {"nodeName": "k8s-n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}}));
    pods.push(json!({"metadata": {"name": "crashing", "creationTimestamp": "2026-11-25T11:00:00Z"},
        "spec": {"nodeName": "k8s-n2", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": "10.244.2.9", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 2,
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-25T11:59:55Z"}},
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}));
    pods.push(json!({"metadata": {"name": "done", "creationTimestamp": "2026-11-23T09:00:00Z"},
        "spec": {"nodeName": "k8s-n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}));
    pods.push(json!({"metadata": {"name": "leaving", "creationTimestamp": "2026-11-25T11:50:00Z",
                                  "deletionTimestamp": "2026-11-25T11:59:59Z"},
        "spec": {"nodeName": "k8s-n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.7", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}}));
    pods.push(json!({"metadata": {"name": "init", "creationTimestamp": "2026-11-25T11:59:00Z"},
        "spec": {"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "ready": false, "restartCount": 0,
            "state": {"running": {}}}]}}));
    pods.push(json!({"metadata": {"name": "pending", "creationTimestamp": "2026-11-25T11:59:58Z"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Pending"}}));
    check_json(
        format!("{GOLDEN}/table_pods.json"),
        &render("", "pods", &pods),
    );
}

#[test]
fn services_golden() {
    let svcs = vec![
        json!({"metadata": {"name": "httpd-svc", "creationTimestamp": "2026-11-25T11:57:00Z"},
               "spec": {"type": "ClusterIP", "clusterIP": "10.110.212.171", "clusterIPs": ["10.110.212.171"],
                        "selector": {"run": "httpd"}, "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}]}}),
        json!({"metadata": {"name": "kubernetes", "creationTimestamp": "2026-11-25T10:00:00Z"},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        json!({"metadata": {"name": "httpd-np", "creationTimestamp": "2026-11-25T11:59:00Z"},
               "spec": {"type": "NodePort", "clusterIP": "10.110.212.172", "clusterIPs": ["10.110.212.172"],
                        "selector": {"run": "httpd", "tier": "web"},
                        "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80, "nodePort": 31688},
                                  {"port": 53, "protocol": "UDP", "targetPort": 53, "nodePort": 30053}]}}),
        json!({"metadata": {"name": "lb", "creationTimestamp": "2026-11-25T11:59:00Z"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
                        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}, "status": {"loadBalancer": {}}}),
        json!({"metadata": {"name": "ext", "creationTimestamp": "2026-11-25T11:59:00Z"},
               "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        json!({"metadata": {"name": "headless", "creationTimestamp": "2026-11-25T11:59:00Z"},
               "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}}}),
    ];
    check_json(
        format!("{GOLDEN}/table_services.json"),
        &render("", "services", &svcs),
    );
}

#[test]
fn workloads_golden() {
    let dep = json!({"metadata": {"name": "httpd", "creationTimestamp": "2026-11-25T11:58:00Z"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"run": "httpd"}},
                 "template": {"spec": {"containers": [{"name": "httpd", "image": "httpd"}]}}},
        "status": {"replicas": 4, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4}});
    check_json(
        format!("{GOLDEN}/table_deployments.json"),
        &render("apps", "deployments", &[dep]),
    );
    let rs = json!({"metadata": {"name": "httpd-5bbc9b449d", "creationTimestamp": "2026-11-25T11:58:00Z"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"run": "httpd", "pod-template-hash": "5bbc9b449d"}},
                 "template": {"spec": {"containers": [{"name": "httpd", "image": "httpd"}]}}},
        "status": {"replicas": 4, "readyReplicas": 3}});
    check_json(
        format!("{GOLDEN}/table_replicasets.json"),
        &render("apps", "replicasets", &[rs]),
    );
}

#[test]
fn nodes_golden() {
    let node = |name: &str, ip: &str, role: bool, ready: &str, unsched: bool| {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if role {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
        }
        json!({"metadata": {"name": name, "creationTimestamp": "2026-11-25T10:00:00Z", "labels": labels},
            "spec": {"unschedulable": unsched},
            "status": {"conditions": [{"type": "Ready", "status": ready}],
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.18.0", "containerRuntimeVersion": "skiff://0.1.0"}}})
    };
    let nodes = vec![
        node("k8s-m", "172.18.0.2", true, "True", false),
        node("k8s-n1", "172.18.0.3", false, "True", true),
        node("k8s-n2", "172.18.0.4", false, "Unknown", false),
    ];
    check_json(
        format!("{GOLDEN}/table_nodes.json"),
        &render("", "nodes", &nodes),
    );
}

#[test]
fn endpoints_and_slices_golden() {
    let ep = json!({"metadata": {"name": "httpd-svc", "creationTimestamp": "2026-11-25T11:57:00Z"},
        "subsets": [{"addresses": [{"ip": "10.244.1.101"}, {"ip": "10.244.1.102"}, {"ip": "10.244.2.35"}, {"ip": "10.244.2.36"}],
                     "ports": [{"port": 80, "protocol": "TCP"}]}]});
    let empty = json!({"metadata": {"name": "none", "creationTimestamp": "2026-11-25T11:57:00Z"}});
    assert_eq!(
        format_endpoints(&ep),
        "10.244.1.101:80,10.244.1.102:80,10.244.2.35:80 + 1 more..."
    );
    check_json(
        format!("{GOLDEN}/table_endpoints.json"),
        &render("", "endpoints", &[ep, empty]),
    );
    let slice = json!({"metadata": {"name": "httpd-svc-x7k2m", "creationTimestamp": "2026-11-25T11:57:00Z"},
        "addressType": "IPv4", "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.101"]}, {"addresses": ["10.244.1.102"]}]});
    check_json(
        format!("{GOLDEN}/table_endpointslices.json"),
        &render("discovery.k8s.io", "endpointslices", &[slice]),
    );
}

#[test]
fn small_kinds_golden() {
    let t = "2026-11-25T10:00:00Z";
    check_json(
        format!("{GOLDEN}/table_namespaces.json"),
        &render(
            "",
            "namespaces",
            &[
                json!({"metadata": {"name": "default", "creationTimestamp": t}, "status": {"phase": "Active"}}),
            ],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_configmaps.json"),
        &render(
            "",
            "configmaps",
            &[
                json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": t}, "data": {"ca.crt": "x"}}),
            ],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_secrets.json"),
        &render(
            "",
            "secrets",
            &[
                json!({"metadata": {"name": "s", "creationTimestamp": t}, "type": "Opaque", "data": {"a": "", "b": ""}}),
            ],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_serviceaccounts.json"),
        &render(
            "",
            "serviceaccounts",
            &[json!({"metadata": {"name": "default", "creationTimestamp": t}})],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_leases.json"),
        &render(
            "coordination.k8s.io",
            "leases",
            &[
                json!({"metadata": {"name": "k8s-n1", "creationTimestamp": t}, "spec": {"holderIdentity": "k8s-n1"}}),
            ],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_events.json"),
        &render(
            "",
            "events",
            &[
                json!({"metadata": {"name": "httpd.1", "creationTimestamp": t}, "type": "Normal", "reason": "ScalingReplicaSet",
               "involvedObject": {"kind": "Deployment", "name": "httpd"}, "message": "Scaled up replica set httpd-5bbc9b449d from 0 to 4",
               "source": {"component": "deployment-controller"}, "firstTimestamp": "2026-11-25T11:58:00Z",
               "lastTimestamp": "2026-11-25T11:58:00Z", "count": 1}),
            ],
        ),
    );
    check_json(
        format!("{GOLDEN}/table_default.json"),
        &render(
            "rbac.authorization.k8s.io",
            "roles",
            &[json!({"metadata": {"name": "r", "creationTimestamp": t}})],
        ),
    );
}

#[test]
fn include_object_variants() {
    let info = lookup("", "v1", "configmaps").expect("cm");
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}});
    let t = table(
        info,
        std::slice::from_ref(&cm),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a"}})
    );
    let t = table(
        info,
        std::slice::from_ref(&cm),
        IncludeObject::Object,
        now(),
    );
    assert_eq!(t["rows"][0]["object"], cm);
    let t = table(info, &[cm], IncludeObject::None, now());
    assert!(t["rows"][0].get("object").is_none());
    assert_eq!(t["rows"][0]["cells"][2], "<unknown>");
}

#[test]
fn selectors_format_like_kubernetes() {
    let sel = json!({"matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]}, {"key": "d", "operator": "DoesNotExist"}]});
    assert_eq!(selector_string(Some(&sel)), "a=1,b=2,c in (x,y),!d");
    assert_eq!(format_label_selector(None), "<none>");
}

#[test]
fn hpa_rows_as_kubectl_get_hpa_prints_them() {
    let info = crate::registry::lookup("autoscaling", "v2", "horizontalpodautoscalers")
        .expect("registered");
    let metric = |name: &str, target: Value| json!({"type": "Resource", "resource": {"name": name, "target": target}});
    let hpa = json!({"metadata": {"name": "web", "creationTimestamp": "2026-11-25T11:58:00Z"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                 "metrics": [metric("cpu", json!({"type": "Utilization", "averageUtilization": 50})),
                             metric("memory", json!({"type": "AverageValue", "averageValue": "100Mi"})),
                             metric("cpu", json!({"type": "Utilization", "averageUtilization": 70}))]},
        "status": {"currentReplicas": 2, "desiredReplicas": 2,
                   "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                                        "current": {"averageUtilization": 93, "averageValue": "93m"}}}]}});
    let t = table(info, std::slice::from_ref(&hpa), IncludeObject::None, now());
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Reference",
            "Targets",
            "MinPods",
            "MaxPods",
            "Replicas",
            "Age"
        ]
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web",
            "Deployment/web",
            "cpu: 93%/50%, memory: <unknown>/100Mi + 1 more...",
            "<unset>",
            5,
            2,
            "2m"
        ])
    );
    let mut none = hpa;
    none["spec"]["metrics"] = json!([]);
    let t = table(info, &[none], IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][2], "<none>");
}
