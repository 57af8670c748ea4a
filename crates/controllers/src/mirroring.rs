//! The EndpointSliceMirroring controller: Services without a selector have user-managed
//! Endpoints; this mirrors them into EndpointSlices (managed by
//! `endpointslicemirroring-controller.k8s.io`) so that slice consumers (the proxy, DNS)
//! see them too. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"`
//! (the API server's own `default/kubernetes`) are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use skiff_api::names::{ENDPOINTSLICE_MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

use crate::endpointslice::{SliceContent, MAX_ENDPOINTS_PER_SLICE};
use crate::informer::Informer;
use crate::podendpoint::{Address, ResolvedPort};
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{controller_ref, is_not_found, key_of, split_key};
use crate::Informers;

/// managed-by value of mirrored slices.
pub const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Label that opts Endpoints out of mirroring.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Whether `ep` should be mirrored for `svc`.
pub fn should_mirror(svc: &Service, ep: &Endpoints) -> bool {
    let no_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none_or(|s| s.is_empty());
    no_selector && ep.labels().get(SKIP_MIRROR_LABEL).map(String::as_str) != Some("true")
}

/// The slices mirroring `ep`: one group per subset (IPv4 addresses only), at most
/// [`MAX_ENDPOINTS_PER_SLICE`] endpoints each.
pub fn mirrored_slices(ep: &Endpoints) -> Vec<SliceContent> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| ResolvedPort::from_core(p).to_discovery())
            .collect();
        let is_v4 = |a: &&EndpointAddress| a.ip.parse::<std::net::Ipv4Addr>().is_ok();
        let eps: Vec<Endpoint> = subset
            .addresses
            .iter()
            .flatten()
            .filter(is_v4)
            .map(|a| Address::from_core(a, true).to_endpoint())
            .chain(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .filter(is_v4)
                    .map(|a| Address::from_core(a, false).to_endpoint()),
            )
            .collect();
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    out
}

struct Ctx {
    client: Client,
    services: Arc<Informer<Service>>,
    endpoints: Arc<Informer<Endpoints>>,
    slices: Arc<Informer<EndpointSlice>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        services: inf.services.clone(),
        endpoints: inf.endpoints.clone(),
        slices: inf.endpointslices.clone(),
    });
    Triggers::new(&queue, &inf.services)
        .primary()
        .watches(&ctx.endpoints, |e, _| vec![key_of(e)])
        .watches(&ctx.slices, |s, _| {
            let ours = s
                .labels()
                .get(ENDPOINTSLICE_MANAGED_BY_LABEL)
                .map(String::as_str)
                == Some(MIRRORING_CONTROLLER);
            match s.labels().get(SERVICE_NAME_LABEL) {
                Some(svc) if ours => vec![format!("{}/{svc}", s.namespace().unwrap_or_default())],
                _ => Vec::new(),
            }
        });
    run_workers("endpointslicemirroring", queue, 1, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    ctx.slices.wait_ready().await;
    ctx.endpoints.wait_ready().await;
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
                == Some(MIRRORING_CONTROLLER)
        })
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let svc = ctx.services.store().get(&ObjectRef::new(name).within(ns));
    let ep = ctx.endpoints.store().get(&ObjectRef::new(name).within(ns));
    let desired = match (&svc, &ep) {
        (Some(svc), Some(ep)) if should_mirror(svc, ep) => mirrored_slices(ep),
        _ => vec![],
    };
    let mut unused = existing;
    if let Some(svc) = svc.filter(|_| !desired.is_empty()) {
        let mut labels: BTreeMap<String, String> =
            ep.as_ref().map(|e| e.labels().clone()).unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), name.to_string());
        labels.insert(
            ENDPOINTSLICE_MANAGED_BY_LABEL.into(),
            MIRRORING_CONTROLLER.into(),
        );
        for want in desired {
            let pos = unused
                .iter()
                .position(|s| s.ports.as_deref().unwrap_or_default() == want.ports.as_slice());
            match pos.map(|i| unused.remove(i)) {
                Some(cur) => {
                    if cur.endpoints == want.endpoints && cur.labels() == &labels {
                        continue;
                    }
                    let mut new = (*cur).clone();
                    new.endpoints = want.endpoints;
                    new.metadata.labels = Some(labels.clone());
                    api.replace(&cur.name_any(), &PostParams::default(), &new)
                        .await
                        .with_context(|| {
                            format!("updating mirrored endpointslice {ns}/{}", cur.name_any())
                        })?;
                }
                None => {
                    let slice = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{name}-")),
                            namespace: Some(ns.to_string()),
                            labels: Some(labels.clone()),
                            owner_references: Some(vec![controller_ref(svc.as_ref())]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints: want.endpoints,
                        ports: Some(want.ports),
                    };
                    api.create(&PostParams::default(), &slice)
                        .await
                        .with_context(|| format!("mirroring endpoints {key}"))?;
                }
            }
        }
    }
    for s in unused {
        match api.delete(&s.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("deleting mirrored endpointslice {}", s.name_any()))
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mirrors_user_endpoints() {
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}))
            .expect("svc");
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "notReadyAddresses": [{"ip": "192.0.2.2"}],
                         "ports": [{"port": 8080, "protocol": "TCP"}]}]}))
        .expect("ep");
        assert!(should_mirror(&svc, &ep));
        let slices = mirrored_slices(&ep);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].ports[0].port, Some(8080));
        let ready: Vec<_> = slices[0]
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect();
        assert_eq!(
            ready,
            [
                ("192.0.2.1".to_string(), Some(true)),
                ("192.0.2.2".to_string(), Some(false))
            ]
        );
        let skip: Endpoints = serde_json::from_value(json!({"metadata": {"name": "kubernetes",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}}))
        .expect("ep");
        assert!(!should_mirror(&svc, &skip));
    }
}
