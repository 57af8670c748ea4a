//! Feeding the record store from the API: watchers on Services and EndpointSlices in
//! all namespaces. A watch (re)start lists everything and replaces the store's copy, so
//! objects deleted while the watch was down disappear too. An object that does not
//! decode as its type is skipped and logged (`skiff_runtime::tolerant`), so one bad
//! Service cannot keep DNS from becoming ready; a record of an object turned bad stays
//! as it was until the next list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use skiff_runtime::tolerant;

use crate::records::{Change, Records};

/// Watches Services and EndpointSlices into `records` forever; sets `ready` once both
/// have been listed the first time.
pub async fn watch(
    client: Client,
    records: Arc<Records>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let svc_synced = Arc::new(AtomicBool::new(false));
    let slice_synced = Arc::new(AtomicBool::new(false));
    let mark = {
        let (a, b, ready) = (svc_synced.clone(), slice_synced.clone(), ready.clone());
        move || {
            if a.load(Ordering::Relaxed)
                && b.load(Ordering::Relaxed)
                && !ready.swap(true, Ordering::Relaxed)
            {
                tracing::info!("services and endpoint slices synced; ready");
            }
        }
    };
    let services = {
        let records = records.clone();
        let synced = svc_synced.clone();
        let mark = mark.clone();
        let api: Api<Service> = Api::all(client.clone());
        async move {
            let mut buf: Vec<Service> = Vec::new();
            let mut stream = tolerant::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(s)) => records.apply(Change::ServiceApplied(Box::new(s))),
                    Ok(Event::Delete(s)) => records.apply(Change::ServiceDeleted {
                        namespace: s.namespace().unwrap_or_default(),
                        name: s.name_any(),
                    }),
                    Ok(Event::Init) => buf.clear(),
                    Ok(Event::InitApply(s)) => buf.push(s),
                    Ok(Event::InitDone) => {
                        records.apply(Change::ServicesReplaced(std::mem::take(&mut buf)));
                        synced.store(true, Ordering::Relaxed);
                        mark();
                    }
                    Err(e) => tracing::warn!(error = %e, "watching services"),
                }
            }
        }
    };
    let slices = {
        let records = records.clone();
        let synced = slice_synced.clone();
        let api: Api<EndpointSlice> = Api::all(client);
        async move {
            let mut buf: Vec<EndpointSlice> = Vec::new();
            let mut stream = tolerant::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(s)) => records.apply(Change::SliceApplied(Box::new(s))),
                    Ok(Event::Delete(s)) => records.apply(Change::SliceDeleted {
                        namespace: s.namespace().unwrap_or_default(),
                        name: s.name_any(),
                    }),
                    Ok(Event::Init) => buf.clear(),
                    Ok(Event::InitApply(s)) => buf.push(s),
                    Ok(Event::InitDone) => {
                        records.apply(Change::SlicesReplaced(std::mem::take(&mut buf)));
                        synced.store(true, Ordering::Relaxed);
                        mark();
                    }
                    Err(e) => tracing::warn!(error = %e, "watching endpoint slices"),
                }
            }
        }
    };
    tokio::join!(services, slices);
    anyhow::bail!("the service and endpoint slice watches ended")
}
