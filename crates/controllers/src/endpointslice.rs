//! The EndpointSlice controller: for every Service with a selector, EndpointSlices
//! (`discovery.k8s.io/v1`, addressType IPv4, at most 100 endpoints each, named
//! `<service>-<5 random chars>` by generateName) with one endpoint per selected pod and
//! its ready/serving/terminating conditions. Pods whose ports resolve differently (named
//! targetPorts) go to different slices, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use skiff_api::names::{
    ENDPOINTSLICE_CONTROLLER, ENDPOINTSLICE_MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};

use crate::endpoints::{
    find_port, headless, hostname_for, in_endpoints, managed, pod_ipv4, pod_ref, selects,
    HEADLESS_LABEL,
};
use crate::informer::{on_change, Change, Informer};
use crate::queue::{run_workers, WorkQueue};
use crate::util::{controller_ref, is_not_found, key_of, pod_ready, split_key};
use crate::Informers;

/// Most endpoints in one slice (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One desired slice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    /// Ports, in the Service's order.
    pub ports: Vec<EndpointPort>,
    /// Endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// The endpoint of one pod (podToEndpoint).
pub fn pod_endpoint(pod: &Pod, svc: &Service, ip: String) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // "ready" is never true for a terminating pod, unless publishNotReadyAddresses.
    let ready = publish || (serving && !terminating);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(publish || serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pod_ref(pod)),
        ..Default::default()
    }
}

/// The slices `svc` should have, given the pods it selects: grouped by resolved ports,
/// at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each; one empty slice without ports when
/// no pod qualifies (Kubernetes' placeholder slice).
pub fn desired_slices(svc: &Service, pods: &[&Pod]) -> Vec<SliceContent> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        if !in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let eports: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(find_port(pod, sp)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let gk = serde_json::to_string(&eports).unwrap_or_default();
        groups
            .entry(gk)
            .or_insert_with(|| (eports, Vec::new()))
            .1
            .push(pod_endpoint(pod, svc, ip));
    }
    let mut out = Vec::new();
    for (_, (eports, mut eps)) in groups {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: eports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        out.push(SliceContent {
            ports: vec![],
            endpoints: vec![],
        });
    }
    out
}

/// Labels of a Service's slices.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(
        ENDPOINTSLICE_MANAGED_BY_LABEL.into(),
        ENDPOINTSLICE_CONTROLLER.into(),
    );
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

struct Ctx {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        services: inf.services.clone(),
        pods: inf.pods.clone(),
        slices: Informer::spawn(Api::all(client)),
    });
    {
        let q = queue.clone();
        let svcs = inf.services.clone();
        on_change(&inf.services, move |c| match c {
            Change::Applied(s) | Change::Deleted(s) => q.add(key_of(s.as_ref())),
            Change::Resync => svcs.list().iter().for_each(|s| q.add(key_of(s.as_ref()))),
        });
    }
    on_change(
        &inf.pods,
        crate::endpoints::pod_to_services(inf.services.clone(), queue.clone()),
    );
    {
        // Someone else changing or deleting our slices: put them back.
        let q = queue.clone();
        on_change(&ctx.slices, move |c| {
            if let Change::Applied(s) | Change::Deleted(s) = c {
                if s.labels()
                    .get(ENDPOINTSLICE_MANAGED_BY_LABEL)
                    .map(String::as_str)
                    == Some(ENDPOINTSLICE_CONTROLLER)
                {
                    if let Some(svc) = s.labels().get(SERVICE_NAME_LABEL) {
                        q.add(format!("{}/{svc}", s.namespace().unwrap_or_default()));
                    }
                }
            }
        });
    }
    {
        let q = queue.clone();
        let svcs = inf.services.clone();
        crate::informer::every(Duration::from_secs(60), move || {
            svcs.list().iter().for_each(|s| q.add(key_of(s.as_ref())))
        });
    }
    run_workers("endpointslice", queue, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

fn same_content(
    slice: &EndpointSlice,
    want: &SliceContent,
    labels: &BTreeMap<String, String>,
) -> bool {
    slice.endpoints == want.endpoints
        && slice.ports.clone().unwrap_or_default() == want.ports
        && slice.labels() == labels
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    ctx.slices.wait_ready().await;
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .list()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name))
        .filter(|s| {
            s.labels()
                .get(ENDPOINTSLICE_MANAGED_BY_LABEL)
                .map(String::as_str)
                == Some(ENDPOINTSLICE_CONTROLLER)
        })
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let svc = ctx
        .services
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns));
    let Some(svc) = svc.filter(|s| managed(s)) else {
        for s in existing {
            delete(&api, &s.name_any()).await?;
        }
        return Ok(None);
    };
    let all = ctx.pods.list();
    let pods: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| selects(&svc, p))
        .collect();
    let desired = desired_slices(&svc, &pods);
    let labels = slice_labels(&svc);
    let owner = controller_ref(svc.as_ref());
    // Reuse existing slices with the same ports, in name order, before creating any.
    let mut unused: Vec<Arc<EndpointSlice>> = existing;
    for want in desired {
        let pos = unused.iter().position(|s| {
            s.ports.clone().unwrap_or_default() == want.ports && s.address_type == "IPv4"
        });
        match pos.map(|i| unused.remove(i)) {
            Some(cur) => {
                if same_content(&cur, &want, &labels) {
                    continue;
                }
                let mut new = (*cur).clone();
                new.endpoints = want.endpoints;
                new.ports = Some(want.ports);
                new.metadata.labels = Some(labels.clone());
                api.replace(&cur.name_any(), &PostParams::default(), &new)
                    .await
                    .with_context(|| format!("updating endpointslice {ns}/{}", cur.name_any()))?;
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.to_string()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: want.endpoints,
                    ports: Some(want.ports),
                };
                let created = api
                    .create(&PostParams::default(), &slice)
                    .await
                    .with_context(|| format!("creating endpointslice for {key}"))?;
                // Wait for our cache to see it, so that the next sync reuses it.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                let r = kube::runtime::reflector::ObjectRef::new(&created.name_any()).within(ns);
                while ctx.slices.store().get(&r).is_none() && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for s in unused {
        delete(&api, &s.name_any()).await?;
    }
    Ok(None)
}

async fn delete(api: &Api<EndpointSlice>, name: &str) -> anyhow::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting endpointslice {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": ports}
        }))
        .expect("svc")
    }

    fn pod(i: usize, port_name: &str, port: i32, ready: bool, terminating: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("u{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "k8s-n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 200, i % 200 + 2),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if terminating {
            v["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn conditions_and_named_ports() {
        let s = svc(json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let pods = [
            pod(1, "http", 8080, true, false),
            pod(2, "http", 9090, false, false),
            pod(3, "http", 8080, true, true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&s, &refs);
        assert_eq!(slices.len(), 2, "two port sets");
        let a = &slices[0];
        assert_eq!(a.ports[0].port, Some(8080));
        assert_eq!(a.endpoints.len(), 2);
        let cond = |e: &Endpoint| {
            let c = e.conditions.clone().unwrap_or_default();
            (c.ready, c.serving, c.terminating)
        };
        assert_eq!(cond(&a.endpoints[0]), (Some(true), Some(true), Some(false)));
        assert_eq!(cond(&a.endpoints[1]), (Some(false), Some(true), Some(true)));
        assert_eq!(slices[1].ports[0].port, Some(9090));
        assert_eq!(
            cond(&slices[1].endpoints[0]),
            (Some(false), Some(false), Some(false))
        );
        let labels = slice_labels(&s);
        assert_eq!(
            labels.get("kubernetes.io/service-name").map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
    }

    #[test]
    fn at_most_100_per_slice_and_a_placeholder_when_empty() {
        let s = svc(json!([{"port": 80, "targetPort": 80}]));
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, "x", 80, true, false)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let sizes: Vec<usize> = desired_slices(&s, &refs)
            .iter()
            .map(|c| c.endpoints.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            desired_slices(&s, &[]),
            vec![SliceContent {
                ports: vec![],
                endpoints: vec![]
            }]
        );
    }
}
