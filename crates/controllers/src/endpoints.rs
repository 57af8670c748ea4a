//! The Endpoints controller: for every Service with a selector, one Endpoints object of
//! the same name listing the selected pods' IPs (ready ones in `addresses`, others in
//! `notReadyAddresses`) with the Service's ports resolved per pod. Services without a
//! selector keep their user-managed Endpoints; `default/kubernetes` is the API server's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::informer::Informer;
use crate::podendpoint::{
    headless, in_endpoints, managed, pod_ipv4, resolved_ports, selected_pods, selecting_services,
    Address, ResolvedPort, HEADLESS_LABEL,
};
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_already_exists, is_not_found, key_of, split_key};
use crate::Informers;

/// Workers, as kube-controller-manager's `--concurrent-endpoint-syncs` default: a sync mostly waits
/// for API calls, so two workers left keys queued for seconds at a thousand nodes.
const WORKERS: usize = 5;

/// Builds the Endpoints subsets of `svc` from the pods it selects, packed like
/// `endpoints.RepackSubsets` (addresses with the same ports share a subset), sorted.
pub fn build_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let no_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_none_or(|p| p.is_empty());
    // ip -> (address, ports)
    let mut by_ip: BTreeMap<&str, (Address, BTreeSet<ResolvedPort>)> = BTreeMap::new();
    for pod in pods {
        // Terminating pods leave Endpoints at once (only slices show them terminating).
        if !in_endpoints(pod, false) {
            continue;
        }
        let (Some(ip), Some(addr)) = (pod_ipv4(pod), Address::of_pod(pod, svc)) else {
            continue;
        };
        let pset: BTreeSet<ResolvedPort> = resolved_ports(svc, pod).into_iter().collect();
        if pset.is_empty() && !(no_ports && headless(svc)) {
            continue;
        }
        by_ip.insert(ip, (addr, pset));
    }
    let mut groups: BTreeMap<BTreeSet<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for (_, (addr, pset)) in by_ip {
        let g = groups.entry(pset).or_default();
        if addr.ready {
            g.0.push(addr.to_core());
        } else {
            g.1.push(addr.to_core());
        }
    }
    groups
        .into_iter()
        .map(|(pset, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!pset.is_empty()).then(|| pset.iter().map(ResolvedPort::to_core).collect()),
        })
        .collect()
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

struct Ctx {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
}

/// Maps a pod event to the keys of the Services that select (or selected) the pod.
pub fn pod_to_services(
    services: Arc<Informer<Service>>,
) -> impl FnMut(&Pod, bool) -> Vec<String> + Send + 'static {
    let last: Mutex<HashMap<String, HashSet<String>>> = Mutex::default();
    move |p, deleted| {
        let now: HashSet<String> = selecting_services(&services, p)
            .iter()
            .map(|s| key_of(s.as_ref()))
            .collect();
        let pk = key_of(p);
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let before = if deleted {
            last.remove(&pk)
        } else {
            last.insert(pk, now.clone())
        };
        now.into_iter()
            .chain(before.into_iter().flatten())
            .collect()
    }
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        services: inf.services.clone(),
        pods: inf.pods.clone(),
        endpoints: inf.endpoints.clone(),
    });
    Triggers::new(&queue, &inf.services)
        .primary()
        .watches(&inf.pods, pod_to_services(inf.services.clone()))
        .every(Duration::from_secs(60));
    run_workers("endpoints", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    ctx.endpoints.wait_ready().await;
    let Some(svc) = ctx.services.store().get(&ObjectRef::new(name).within(ns)) else {
        // The Service is gone: so are its Endpoints, unless they were never ours.
        if ns == "default" && name == "kubernetes" {
            return Ok(None);
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting endpoints {key}")),
        }
        return Ok(None);
    };
    if !managed(&svc) {
        return Ok(None);
    }
    let selected = selected_pods(&ctx.pods, &svc);
    let pods: Vec<&Pod> = selected.iter().map(|p| p.as_ref()).collect();
    let subsets = build_subsets(&svc, &pods);
    let labels = labels_for(&svc);
    let existing = ctx.endpoints.store().get(&ObjectRef::new(name).within(ns));
    match existing {
        Some(ep) => {
            if ep.subsets.as_deref().unwrap_or_default() == subsets.as_slice()
                && ep.labels() == &labels
            {
                return Ok(None);
            }
            let mut new = (*ep).clone();
            new.subsets = Some(subsets);
            new.metadata.labels = Some(labels);
            api.replace(name, &PostParams::default(), &new)
                .await
                .with_context(|| format!("updating endpoints {key}"))?;
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: Some(subsets),
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                // Our cache lags behind: retry against the real object.
                Err(e) if is_already_exists(&e) => {
                    anyhow::bail!("endpoints {key} exist but are not cached yet")
                }
                Err(e) => return Err(e).with_context(|| format!("creating endpoints {key}")),
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "httpd-svc", "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"run": "httpd"}, "clusterIP": "10.110.212.171",
                     "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}]}
        });
        if let (Some(a), Some(b)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in b {
                a.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("service")
    }

    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool, node: &str) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"run": "httpd"}},
            "spec": {"nodeName": node, "containers": [{"name": "httpd", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = ip.into();
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn subsets_split_ready_and_not_ready_sorted_by_ip() {
        let s = svc(json!({}));
        let pods = [
            pod("b", Some("10.244.2.35"), true, "k8s-n2"),
            pod("a", Some("10.244.1.101"), true, "k8s-n1"),
            pod("c", Some("10.244.1.102"), false, "k8s-n1"),
            pod("d", None, false, "k8s-n1"),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let got = serde_json::to_value(build_subsets(&s, &refs)).expect("json");
        assert_eq!(
            got,
            json!([{
                "addresses": [
                    {"ip": "10.244.1.101", "nodeName": "k8s-n1", "targetRef": {"kind": "Pod", "name": "a", "namespace": "default", "uid": "uid-a"}},
                    {"ip": "10.244.2.35", "nodeName": "k8s-n2", "targetRef": {"kind": "Pod", "name": "b", "namespace": "default", "uid": "uid-b"}}
                ],
                "notReadyAddresses": [
                    {"ip": "10.244.1.102", "nodeName": "k8s-n1", "targetRef": {"kind": "Pod", "name": "c", "namespace": "default", "uid": "uid-c"}}
                ],
                "ports": [{"port": 80, "protocol": "TCP"}]
            }])
        );
        let publish = svc(
            json!({"spec": {"selector": {"run": "httpd"}, "publishNotReadyAddresses": true,
            "ports": [{"name": "web", "port": 8080, "protocol": "TCP", "targetPort": "http"}]}}),
        );
        let subsets = build_subsets(&publish, &refs);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(3));
        assert_eq!(subsets[0].not_ready_addresses, None);
        let port = &subsets[0].ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("web"), 80));
    }

    #[test]
    fn services_without_selector_are_not_managed() {
        assert!(managed(&svc(json!({}))));
        assert!(!managed(&svc(json!({"spec": {"ports": [{"port": 80}]}}))));
        let api = svc(json!({"metadata": {"name": "kubernetes", "namespace": "default"}}));
        assert!(!managed(&api));
    }
}
