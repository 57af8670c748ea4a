//! The `coredns` add-on: the objects `skiff server` creates on start, mirroring
//! kubeadm's CoreDNS manifests (cmd/kubeadm/app/phases/addons/dns) with skiff's own
//! server (`skiff dns`) in place of the CoreDNS image.

use serde_json::{json, Value};
use skiff_api::defaults::{CLUSTER_DOMAIN, DNS_SERVICE_IP};

/// Name of the Deployment, ServiceAccount and container.
pub const DEPLOYMENT_NAME: &str = "coredns";
/// Name of the Service.
pub const SERVICE_NAME: &str = "kube-dns";
/// Namespace of every add-on object.
pub const NAMESPACE: &str = "kube-system";
/// Name of the ClusterRole and ClusterRoleBinding.
pub const CLUSTER_ROLE_NAME: &str = "system:coredns";

/// The add-on's objects in creation order: ServiceAccount, ClusterRole,
/// ClusterRoleBinding, Deployment, Service.
pub fn objects() -> Vec<Value> {
    vec![
        service_account(),
        cluster_role(),
        cluster_role_binding(),
        deployment(),
        service(),
    ]
}

/// ServiceAccount `kube-system/coredns`.
pub fn service_account() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": DEPLOYMENT_NAME, "namespace": NAMESPACE }
    })
}

/// ClusterRole `system:coredns`: what the watchers read.
pub fn cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": CLUSTER_ROLE_NAME },
        "rules": [
            { "apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"] },
            { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get"] },
            { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"] }
        ]
    })
}

/// ClusterRoleBinding `system:coredns` to the ServiceAccount.
pub fn cluster_role_binding() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": CLUSTER_ROLE_NAME },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE_NAME },
        "subjects": [ { "kind": "ServiceAccount", "name": DEPLOYMENT_NAME, "namespace": NAMESPACE } ]
    })
}

/// Deployment `kube-system/coredns`: two replicas of `skiff dns`.
pub fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": DEPLOYMENT_NAME,
            "namespace": NAMESPACE,
            "labels": { "k8s-app": "kube-dns" }
        },
        "spec": {
            "replicas": 2,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
            "selector": { "matchLabels": { "k8s-app": "kube-dns" } },
            "template": {
                "metadata": { "labels": { "k8s-app": "kube-dns" } },
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": DEPLOYMENT_NAME,
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [{
                                "weight": 100,
                                "podAffinityTerm": {
                                    "labelSelector": {
                                        "matchExpressions": [
                                            { "key": "k8s-app", "operator": "In", "values": ["kube-dns"] }
                                        ]
                                    },
                                    "topologyKey": "kubernetes.io/hostname"
                                }
                            }]
                        }
                    },
                    "tolerations": [
                        { "key": "CriticalAddonsOnly", "operator": "Exists" },
                        { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" }
                    ],
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "containers": [{
                        "name": DEPLOYMENT_NAME,
                        "image": "skiff",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["skiff", "dns"],
                        "args": ["--domain", CLUSTER_DOMAIN],
                        "resources": {
                            "limits": { "memory": "170Mi" },
                            "requests": { "cpu": "100m", "memory": "70Mi" }
                        },
                        "ports": [
                            { "containerPort": 53, "name": "dns", "protocol": "UDP" },
                            { "containerPort": 53, "name": "dns-tcp", "protocol": "TCP" },
                            { "containerPort": 9153, "name": "metrics", "protocol": "TCP" }
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": { "add": ["NET_BIND_SERVICE"], "drop": ["ALL"] },
                            "readOnlyRootFilesystem": true
                        },
                        "livenessProbe": {
                            "httpGet": { "path": "/health", "port": 8080, "scheme": "HTTP" },
                            "initialDelaySeconds": 60,
                            "timeoutSeconds": 5,
                            "successThreshold": 1,
                            "failureThreshold": 5
                        },
                        // Probed every second rather than kubeadm's default 10 s: skiff's
                        // DNS is ready within milliseconds of its first sync, and `skiff up`
                        // waits for it.
                        "readinessProbe": {
                            "httpGet": { "path": "/ready", "port": 8181, "scheme": "HTTP" },
                            "periodSeconds": 1
                        },
                        // The kubelet probes once the hook is done: without it the first
                        // probe comes before the server has synced, fails, and Ready waits
                        // a whole period (most of `skiff up`'s time). The hook never fails.
                        "lifecycle": {
                            "postStart": {
                                "exec": { "command": ["skiff", "dns", "--wait-ready", "10"] }
                            }
                        }
                    }],
                    "dnsPolicy": "Default"
                }
            }
        }
    })
}

/// Service `kube-system/kube-dns` at the cluster's DNS address.
pub fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE_NAME,
            "namespace": NAMESPACE,
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS"
            },
            "annotations": { "prometheus.io/port": "9153", "prometheus.io/scrape": "true" }
        },
        "spec": {
            "selector": { "k8s-app": "kube-dns" },
            "clusterIP": DNS_SERVICE_IP.to_string(),
            "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                { "name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153 }
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;

    #[test]
    fn objects_parse_as_typed_resources() {
        let objs = objects();
        assert_eq!(objs.len(), 5);
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
        let d: Deployment = serde_json::from_value(deployment()).expect("deployment");
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.expect("pod spec");
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert_eq!(
            pod.containers[0].command.as_deref(),
            Some(&["skiff".to_string(), "dns".to_string()][..])
        );
        let s: Service = serde_json::from_value(service()).expect("service");
        let sspec = s.spec.expect("spec");
        assert_eq!(sspec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(sspec.ports.expect("ports").len(), 3);
    }
}
