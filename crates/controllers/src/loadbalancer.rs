//! A ServiceLB-style LoadBalancer controller: Services of type LoadBalancer get the
//! nodes' InternalIPs as `status.loadBalancer.ingress` (ipMode VIP); the proxy serves
//! their ports on every node. Services that stop being LoadBalancers lose the status.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_not_found, key_of, split_key};
use crate::Informers;

/// The ingress list for LoadBalancer Services: every Ready node's InternalIP, sorted.
pub fn ingress_for(nodes: &[Arc<Node>]) -> Vec<LoadBalancerIngress> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
        .filter_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect();
    ips.sort_by_key(|ip| {
        ip.parse::<std::net::Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(u32::MAX)
    });
    ips.dedup();
    ips.into_iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip),
            ip_mode: Some("VIP".into()),
            ..Default::default()
        })
        .collect()
}

struct Ctx {
    client: Client,
    services: Arc<Informer<Service>>,
    nodes: Arc<Informer<Node>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let svcs = inf.services.clone();
    Triggers::new(&queue, &inf.services)
        .primary_if(|_, deleted| !deleted)
        // Node addresses are the LoadBalancer Services' ingress IPs.
        .watches(&inf.nodes, move |_, _| {
            svcs.list()
                .iter()
                .filter(|s| {
                    s.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some("LoadBalancer")
                })
                .map(|s| key_of(s.as_ref()))
                .collect()
        });
    let ctx = Arc::new(Ctx {
        client,
        services: inf.services.clone(),
        nodes: inf.nodes.clone(),
    });
    run_workers("loadbalancer", queue, 1, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(svc) = ctx.services.store().get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has_class = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_ref())
        .is_some();
    if has_class {
        // Another implementation's Service.
        return Ok(None);
    }
    let want = if is_lb {
        ingress_for(&ctx.nodes.list())
    } else {
        vec![]
    };
    let have = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    if have == want {
        return Ok(None);
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": want}}});
    match api
        .patch_status(
            &svc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("updating load balancer status of {key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_lists_ready_nodes_internal_ips() {
        let node = |name: &str, ip: &str, ready: &str| {
            Arc::new(
                serde_json::from_value::<Node>(serde_json::json!({
                    "metadata": {"name": name},
                    "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                               "conditions": [{"type": "Ready", "status": ready}]}
                }))
                .expect("node"),
            )
        };
        let got = ingress_for(&[
            node("b", "192.168.0.10", "True"),
            node("a", "192.168.0.9", "True"),
            node("c", "192.168.0.11", "Unknown"),
        ]);
        let ips: Vec<_> = got
            .iter()
            .map(|i| (i.ip.clone().unwrap_or_default(), i.ip_mode.clone()))
            .collect();
        assert_eq!(
            ips,
            [
                ("192.168.0.9".to_string(), Some("VIP".to_string())),
                ("192.168.0.10".to_string(), Some("VIP".to_string()))
            ]
        );
    }
}
