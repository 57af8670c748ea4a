//! The ServiceAccount controller: a `default` ServiceAccount in every namespace that is
//! not being deleted (tokens are the API server's, through TokenRequest).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_already_exists, is_deleting};
use crate::Informers;

/// Name of the ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

struct Ctx {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    serviceaccounts: Arc<Informer<ServiceAccount>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    Triggers::new(&queue, &inf.namespaces)
        .primary_if(|_, deleted| !deleted)
        // A deleted `default` ServiceAccount is made again.
        .watches(&inf.serviceaccounts, |sa, deleted| {
            if deleted && sa.name_any() == DEFAULT_SERVICE_ACCOUNT {
                vec![sa.namespace().unwrap_or_default()]
            } else {
                Vec::new()
            }
        });
    let ctx = Arc::new(Ctx {
        client,
        namespaces: inf.namespaces.clone(),
        serviceaccounts: inf.serviceaccounts.clone(),
    });
    run_workers("serviceaccount", queue, 1, move |ns| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &ns).await }
    });
}

async fn sync(ctx: &Ctx, ns: &str) -> anyhow::Result<Option<Duration>> {
    let Some(namespace) = ctx.namespaces.store().get(&ObjectRef::new(ns)) else {
        return Ok(None);
    };
    if is_deleting(namespace.as_ref()) {
        return Ok(None);
    }
    ctx.serviceaccounts.wait_ready().await;
    if ctx
        .serviceaccounts
        .store()
        .get(&ObjectRef::new(DEFAULT_SERVICE_ACCOUNT).within(ns))
        .is_some()
    {
        return Ok(None);
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(None),
        Err(e) if is_already_exists(&e) => Ok(None),
        // The namespace started terminating meanwhile: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => Ok(None),
        Err(e) => Err(e).with_context(|| format!("creating serviceaccount {ns}/default")),
    }
}
