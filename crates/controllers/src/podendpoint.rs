//! The endpoint of one pod for one Service, as the Endpoints, EndpointSlice and
//! EndpointSliceMirroring controllers publish it (Kubernetes' `endpointutil`): whether a
//! Service selects a pod, the pod's address with its conditions, and the Service's ports
//! resolved against the pod's container ports. One shape ([`Address`], [`ResolvedPort`])
//! converted to both the core/v1 Endpoints and the discovery/v1 EndpointSlice types, so
//! the three controllers cannot drift apart.

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::informer::Informer;
use crate::util::{controller_of, pod_phase, pod_ready};

/// Label marking the Endpoints/EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Whether the controllers manage endpoints for `svc`: it has a selector, is not an
/// ExternalName Service, and is not `default/kubernetes`.
pub fn managed(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    let is_api = svc.metadata.namespace.as_deref() == Some("default")
        && svc.metadata.name.as_deref() == Some("kubernetes");
    !is_api
        && spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// The pods informer's index values of a pod: `<namespace>/<key>=<value>` for each of its
/// labels. With it, the Service → pods and pod → Services lookups look at the pods or
/// Services sharing a label pair instead of all of them: scanning every pod for every
/// Service sync (and every Service for every pod change) was most of the server's CPU at
/// a thousand nodes and 20,000 pods.
///
/// Also [`owner_value`] of the pod's controller, for the controllers that look up the
/// pods they own (a ReplicaSet's sync scanned every pod of its namespace).
pub fn pod_index(p: &Pod) -> Vec<String> {
    owned_index(p)
}

/// The index values of any object a controller claims by selector and ownership (pods,
/// and the ReplicaSets of Deployments): `<namespace>/<key>=<value>` for each of its
/// labels and [`owner_value`] of its controller.
pub fn owned_index<K: Resource>(o: &K) -> Vec<String> {
    let ns = o.meta().namespace.as_deref().unwrap_or("");
    let mut values: Vec<String> = o
        .labels()
        .iter()
        .map(|(k, v)| format!("{ns}/{k}={v}"))
        .collect();
    if let Some(owner) = controller_of(o) {
        values.push(owner_value(&owner.uid));
    }
    values
}

/// The index value of the objects whose controller has this UID (no label pair has it:
/// a namespace holds no `:`).
pub fn owner_value(uid: &str) -> String {
    format!("owner:{uid}")
}

/// The objects controlled by the object with this UID, from an informer indexed by
/// [`owned_index`].
pub fn controlled<K>(objs: &Informer<K>, uid: &str) -> Vec<Arc<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    objs.indexed(&owner_value(uid))
        .into_iter()
        .filter(|o| controller_of(o.as_ref()).is_some_and(|r| r.uid == uid))
        .collect()
}

/// The objects of `ns` a controller with this selector and UID looks at when it claims
/// them (kube's `ClaimPods`, `ClaimReplicaSets`): those it controls (to keep, or release
/// if they no longer match) and those carrying its selector's first `matchLabels` pair
/// (to adopt), from an informer indexed by [`owned_index`]; every object of `ns` for a
/// selector of expressions only. Each object once.
pub fn claim_candidates<K>(
    objs: &Informer<K>,
    ns: &str,
    selector: &LabelSelector,
    uid: &str,
) -> Vec<Arc<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    let first = selector
        .match_labels
        .as_ref()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| format!("{ns}/{k}={v}"));
    let matching = match first {
        Some(v) => objs.indexed(&v),
        None => objs.list(),
    };
    let mut seen = HashSet::new();
    matching
        .into_iter()
        .chain(controlled(objs, uid))
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter(|o| seen.insert(o.meta().name.clone()))
        .collect()
}

/// The Services informer's index values of a Service: `<namespace>/<key>=<value>` for
/// each pair of its selector.
pub fn service_index(s: &Service) -> Vec<String> {
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    s.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{ns}/{k}={v}"))
        .collect()
}

/// The pods `svc` selects, from an informer indexed by [`pod_index`].
pub fn selected_pods(pods: &Informer<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    // Every selected pod carries the selector's first pair: its pods are the candidates.
    let Some(first) = service_index(svc).into_iter().next() else {
        return Vec::new();
    };
    pods.indexed(&first)
        .into_iter()
        .filter(|p| selects(svc, p))
        .collect()
}

/// The Services that select `pod`, from an informer indexed by [`service_index`].
pub fn selecting_services(services: &Informer<Service>, pod: &Pod) -> Vec<Arc<Service>> {
    let mut found: HashMap<String, Arc<Service>> = HashMap::new();
    for v in pod_index(pod) {
        for s in services.indexed(&v) {
            if selects(&s, pod) {
                found.insert(
                    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                    s,
                );
            }
        }
    }
    found.into_values().collect()
}

/// Whether `svc` selects `pod` (same namespace, every selector label matches).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    if svc.metadata.namespace != pod.metadata.namespace || !managed(svc) {
        return false;
    }
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.labels();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the Service is headless (clusterIP None).
pub fn headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ipv4(pod: &Pod) -> Option<&str> {
    let st = pod.status.as_ref()?;
    st.pod_ip
        .iter()
        .chain(st.pod_ips.iter().flatten().map(|p| &p.ip))
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(String::as_str)
}

/// Whether a pod appears in endpoints at all (endpointutil.ShouldPodBeInEndpoints).
pub fn in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ipv4(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    match restart {
        "Never" => !matches!(pod_phase(pod), "Failed" | "Succeeded"),
        "OnFailure" => pod_phase(pod) != "Succeeded",
        _ => true,
    }
}

/// The container port a Service port reaches on `pod` (podutil.FindPort): a number as
/// is, a name looked up among the pod's container ports of the same protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
        }
    }
}

/// The hostname a pod has in a Service's records (endpointutil.ShouldSetHostname).
pub fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| h.to_string())
}

/// A reference to a pod as endpoints hold it.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// One Service port resolved to the port a pod (or a user-given address) listens on.
/// Ordered by name, then port and protocol, as Endpoints subsets list their ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name ("" when unnamed).
    pub name: String,
    /// The port on the endpoint.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

impl ResolvedPort {
    /// `sp` resolved on `pod`, if the pod has that port.
    pub fn of_pod(sp: &ServicePort, pod: &Pod) -> Option<Self> {
        Some(ResolvedPort {
            name: sp.name.clone().unwrap_or_default(),
            port: find_port(pod, sp)?,
            protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: sp.app_protocol.clone(),
        })
    }

    /// A port of user-managed Endpoints.
    pub fn from_core(p: &CorePort) -> Self {
        ResolvedPort {
            name: p.name.clone().unwrap_or_default(),
            port: p.port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        }
    }

    /// As an Endpoints subset lists it (an empty name is left out).
    pub fn to_core(&self) -> CorePort {
        CorePort {
            name: (!self.name.is_empty()).then(|| self.name.clone()),
            port: self.port,
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }

    /// As an EndpointSlice lists it (the name is always set, "" when unnamed).
    pub fn to_discovery(&self) -> EndpointPort {
        EndpointPort {
            name: Some(self.name.clone()),
            port: Some(self.port),
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }
}

/// The Service's ports resolved on `pod`, in the Service's order; a named targetPort
/// the pod does not have is left out.
pub fn resolved_ports(svc: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| ResolvedPort::of_pod(sp, pod))
        .collect()
}

/// One address behind a Service with its conditions (EndpointSlice semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    /// The IPv4 address.
    pub ip: String,
    /// Hostname for headless Services' DNS records.
    pub hostname: Option<String>,
    /// Node of the pod.
    pub node_name: Option<String>,
    /// The pod (or whatever user-managed Endpoints point at).
    pub target_ref: Option<ObjectReference>,
    /// Ready to receive traffic (never true while terminating unless the Service
    /// publishes not-ready addresses).
    pub ready: bool,
    /// The pod's readiness regardless of termination.
    pub serving: bool,
    /// The pod is being deleted.
    pub terminating: bool,
}

impl Address {
    /// The address of `pod` for `svc` (podToEndpoint), if the pod has an IPv4 address.
    pub fn of_pod(pod: &Pod, svc: &Service) -> Option<Self> {
        let ip = pod_ipv4(pod)?.to_string();
        let publish = svc
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            == Some(true);
        let serving = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        Some(Address {
            ip,
            hostname: hostname_for(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
            ready: publish || (serving && !terminating),
            serving: publish || serving,
            terminating,
        })
    }

    /// An address of user-managed Endpoints (`ready`: listed in `addresses` rather than
    /// `notReadyAddresses`).
    pub fn from_core(a: &EndpointAddress, ready: bool) -> Self {
        Address {
            ip: a.ip.clone(),
            hostname: a.hostname.clone(),
            node_name: a.node_name.clone(),
            target_ref: a.target_ref.clone(),
            ready,
            serving: ready,
            terminating: false,
        }
    }

    /// As an Endpoints subset lists it (readiness is where it is listed).
    pub fn to_core(&self) -> EndpointAddress {
        EndpointAddress {
            ip: self.ip.clone(),
            hostname: self.hostname.clone(),
            node_name: self.node_name.clone(),
            target_ref: self.target_ref.clone(),
        }
    }

    /// As an EndpointSlice lists it.
    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            addresses: vec![self.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(self.ready),
                serving: Some(self.serving),
                terminating: Some(self.terminating),
            }),
            hostname: self.hostname.clone(),
            node_name: self.node_name.clone(),
            target_ref: self.target_ref.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A ReplicaSet's claim looks at the pods it controls (matching or not any more) and
    /// the pods its selector matches, in its namespace only, each once.
    #[tokio::test]
    async fn claim_candidates_are_owned_or_matching_pods_of_the_namespace() {
        let fake = skiff_testkit::fakeapi::FakeApi::new();
        let owned = |uid: &str| {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "rs", "uid": uid, "controller": true}])
        };
        let p = |name: &str, ns: &str, app: &str, owner: Option<&str>| {
            let mut v = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": app}}});
            if let Some(uid) = owner {
                v["metadata"]["ownerReferences"] = owned(uid);
            }
            v
        };
        let pods = crate::testing::indexed_informer::<Pod>(
            &fake,
            vec![
                p("mine", "default", "web", Some("rs-uid")),
                p("relabelled", "default", "other", Some("rs-uid")),
                p("orphan", "default", "web", None),
                p("theirs", "default", "web", Some("other-uid")),
                p("unrelated", "default", "db", None),
                p("elsewhere", "prod", "web", None),
            ],
            pod_index,
        )
        .await;
        let selector: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        let mut names: Vec<String> = claim_candidates(&pods, "default", &selector, "rs-uid")
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["mine", "orphan", "relabelled", "theirs"]);
        let mut controlled: Vec<String> = controlled(&pods, "rs-uid")
            .iter()
            .map(|p| p.name_any())
            .collect();
        controlled.sort();
        assert_eq!(controlled, ["mine", "relabelled"]);
        // A selector of expressions only: every pod of the namespace.
        let selector: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        )
        .unwrap();
        assert_eq!(
            claim_candidates(&pods, "default", &selector, "rs-uid").len(),
            5
        );
    }

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                               {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP", "appProtocol": "http"},
                               {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}
        });
        if let Some(spec) = extra.get("spec").and_then(|s| s.as_object()) {
            for (k, val) in spec {
                v["spec"][k] = val.clone();
            }
        }
        serde_json::from_value(v).expect("svc")
    }

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "hostname": "web-1", "subdomain": "web",
                     "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        if let Some(meta) = extra.get("metadata").and_then(|s| s.as_object()) {
            for (k, val) in meta {
                v["metadata"][k] = val.clone();
            }
        }
        if let Some(st) = extra.get("status").and_then(|s| s.as_object()) {
            for (k, val) in st {
                v["status"][k] = val.clone();
            }
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn ports_resolve_per_pod_and_convert_to_both_shapes() {
        let ports = resolved_ports(&svc(json!({})), &pod(json!({})));
        // "dns" is a UDP named port the pod does not have: left out.
        assert_eq!(
            ports,
            vec![
                ResolvedPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: "TCP".into(),
                    app_protocol: None
                },
                ResolvedPort {
                    name: "metrics".into(),
                    port: 9100,
                    protocol: "TCP".into(),
                    app_protocol: Some("http".into())
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(ports[1].to_core()).expect("json"),
            json!({"name": "metrics", "port": 9100, "protocol": "TCP", "appProtocol": "http"})
        );
        assert_eq!(
            serde_json::to_value(ports[0].to_discovery()).expect("json"),
            json!({"name": "http", "port": 8080, "protocol": "TCP"})
        );
        let unnamed = ResolvedPort::from_core(&CorePort {
            port: 80,
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(unnamed.to_core()).expect("json"),
            json!({"port": 80, "protocol": "TCP"})
        );
        assert_eq!(
            serde_json::to_value(unnamed.to_discovery()).expect("json"),
            json!({"name": "", "port": 80, "protocol": "TCP"})
        );
    }

    #[test]
    fn address_conditions_follow_readiness_termination_and_publishing() {
        let s = svc(json!({}));
        let a = Address::of_pod(&pod(json!({})), &s).expect("address");
        assert_eq!(
            serde_json::to_value(a.to_endpoint()).expect("json"),
            json!({"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                   "hostname": "web-1", "nodeName": "n1",
                   "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"}})
        );
        assert_eq!(
            serde_json::to_value(a.to_core()).expect("json"),
            json!({"ip": "10.244.1.5", "hostname": "web-1", "nodeName": "n1",
                   "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"}})
        );
        let terminating = pod(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let t = Address::of_pod(&terminating, &s).expect("address");
        assert_eq!((t.ready, t.serving, t.terminating), (false, true, true));
        let not_ready =
            pod(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        let n = Address::of_pod(&not_ready, &s).expect("address");
        assert_eq!((n.ready, n.serving, n.terminating), (false, false, false));
        let publish = svc(json!({"spec": {"publishNotReadyAddresses": true}}));
        let p = Address::of_pod(&not_ready, &publish).expect("address");
        assert_eq!((p.ready, p.serving), (true, true));
        let no_ip = pod(json!({"status": {"podIP": null}}));
        assert!(Address::of_pod(&no_ip, &s).is_none());
        let user = Address::from_core(
            &EndpointAddress {
                ip: "192.0.2.1".into(),
                ..Default::default()
            },
            false,
        );
        assert_eq!(
            serde_json::to_value(user.to_endpoint()).expect("json"),
            json!({"addresses": ["192.0.2.1"], "conditions": {"ready": false, "serving": false, "terminating": false}})
        );
    }

    #[test]
    fn selection_and_hostnames() {
        let s = svc(json!({}));
        let p = pod(json!({}));
        assert!(selects(&s, &p));
        let other = pod(json!({"metadata": {"labels": {"app": "db"}}}));
        assert!(!selects(&s, &other));
        let elsewhere = pod(json!({"metadata": {"namespace": "kube-system"}}));
        assert!(!selects(&s, &elsewhere));
        assert_eq!(hostname_for(&p, &s).as_deref(), Some("web-1"));
        let mut other_svc = s.clone();
        other_svc.metadata.name = Some("api".into());
        assert_eq!(hostname_for(&p, &other_svc), None);
        assert!(!headless(&s));
    }
}
