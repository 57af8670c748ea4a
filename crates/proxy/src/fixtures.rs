//! Ready-made API objects for tests: the seed's `default/httpd-svc` with its four pods,
//! and small builders for other shapes of Service and EndpointSlice. Public so that the
//! crate's integration tests and golden tests share them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort as ApiServicePort, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as ApiEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{Endpoint, Protocol, ServicePort, ServicePortName};

/// One port of a Service: name, port, protocol (`TCP`...), node port (0: none).
pub type PortSpec<'a> = (&'a str, i32, &'a str, i32);
/// One endpoint of a slice: IP, node name, ready, serving, terminating.
pub type EndpointSpec<'a> = (&'a str, &'a str, bool, bool, bool);

/// A Service of the given type with a selector `run=<name>`.
pub fn service(ns: &str, name: &str, type_: &str, cluster_ip: &str, ports: &[PortSpec]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            selector: Some(BTreeMap::from([("run".to_string(), name.to_string())])),
            session_affinity: Some("None".into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(pname, port, proto, node_port)| ApiServicePort {
                        name: (!pname.is_empty()).then(|| pname.to_string()),
                        port: *port,
                        protocol: Some(proto.to_string()),
                        node_port: (*node_port != 0).then_some(*node_port),
                        target_port: Some(IntOrString::Int(80)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// Sets `status.loadBalancer.ingress` to the given IPs.
pub fn with_lb_ingress(mut svc: Service, ips: &[&str]) -> Service {
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ips.iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ip_mode: Some("VIP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
        ..Default::default()
    });
    svc
}

/// An IPv4 EndpointSlice of Service `ns/svc`, with ports (name, port, protocol).
pub fn slice(
    ns: &str,
    svc: &str,
    slice_name: &str,
    ports: &[(&str, i32, &str)],
    endpoints: &[EndpointSpec],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(slice_name.into()),
            labels: Some(BTreeMap::from([(
                skiff_api::names::SERVICE_NAME_LABEL.to_string(),
                svc.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: endpoints
            .iter()
            .map(|(ip, node, ready, serving, terminating)| ApiEndpoint {
                addresses: vec![ip.to_string()],
                node_name: Some(node.to_string()),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    serving: Some(*serving),
                    terminating: Some(*terminating),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// The seed's Service: `default/httpd-svc`, 10.110.212.171, 8080/TCP -> 80.
pub fn seed_service() -> Service {
    service(
        "default",
        "httpd-svc",
        "ClusterIP",
        "10.110.212.171",
        &[("", 8080, "TCP", 0)],
    )
}

/// The seed's four ready pods on k8s-n1 and k8s-n2, deliberately not in string order.
pub fn seed_slice() -> EndpointSlice {
    slice(
        "default",
        "httpd-svc",
        "httpd-svc-abcde",
        &[("", 80, "TCP")],
        &[
            ("10.244.2.36", "k8s-n2", true, true, false),
            ("10.244.1.101", "k8s-n1", true, true, false),
            ("10.244.2.35", "k8s-n2", true, true, false),
            ("10.244.1.102", "k8s-n1", true, true, false),
        ],
    )
}

/// A bare ClusterIP port `default/t:` on 10.96.0.50:80 with endpoints given as
/// (IP, ready, serving, terminating), all local, port 80.
pub fn port_with(eps: &[(&str, bool, bool, bool)]) -> ServicePort {
    ServicePort {
        name: ServicePortName {
            namespace: "default".into(),
            name: "t".into(),
            port: String::new(),
            protocol: Protocol::Tcp,
        },
        cluster_ip: "10.96.0.50".parse().expect("literal IP"),
        port: 80,
        node_port: 0,
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        affinity_timeout: None,
        external_policy_local_declared: false,
        internal_policy_local: false,
        health_check_node_port: 0,
        endpoints: eps
            .iter()
            .map(|(ip, ready, serving, terminating)| Endpoint {
                ip: ip.parse().expect("literal IP"),
                port: 80,
                ready: *ready,
                serving: *serving,
                terminating: *terminating,
                is_local: true,
            })
            .collect(),
    }
}

/// `n` ClusterIP Services `bench/svc-<i>` (10.100.0.0 upwards, port 80 named `http`)
/// with 5 ready endpoints each on node `n1` (172.16.0.0 upwards, port 8080): the
/// benchmarks' load.
pub fn many(n: u32) -> (Vec<Service>, Vec<EndpointSlice>) {
    let svc_base = u32::from(std::net::Ipv4Addr::new(10, 100, 0, 0));
    let ep_base = u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0));
    let ip = |base: u32, i: u32| std::net::Ipv4Addr::from(base + i).to_string();
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..n {
        let name = format!("svc-{i}");
        services.push(service(
            "bench",
            &name,
            "ClusterIP",
            &ip(svc_base, i),
            &[("http", 80, "TCP", 0)],
        ));
        let eps: Vec<String> = (0..5).map(|k| ip(ep_base, i * 5 + k)).collect();
        let specs: Vec<EndpointSpec> = eps
            .iter()
            .map(|e| (e.as_str(), "n1", true, true, false))
            .collect();
        slices.push(slice(
            "bench",
            &name,
            &format!("{name}-1"),
            &[("http", 8080, "TCP")],
            &specs,
        ));
    }
    (services, slices)
}
