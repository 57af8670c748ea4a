//! Keeps an in-memory copy of all Services and EndpointSlices with kube-runtime
//! watchers (which retry with backoff while the API is unavailable) and wakes the sync
//! loop on every change.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// Annotation the EndpointSlice controller sets to when the change that produced a
/// slice happened; network programming latency is measured from it.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    services_synced: bool,
    slices_synced: bool,
    /// When the EndpointSlice changes not yet programmed happened.
    pending_triggers: Vec<SystemTime>,
    /// Objects of a re-list in progress, swapped in at its end.
    init_services: BTreeMap<String, Service>,
    init_slices: BTreeMap<String, EndpointSlice>,
}

/// The watched objects, shared between the watchers and the sync loop.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

/// A consistent copy of the cache for one sync.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// All Services.
    pub services: Vec<Service>,
    /// All EndpointSlices.
    pub slices: Vec<EndpointSlice>,
    /// Trigger times of the slice changes this snapshot includes.
    pub triggers: Vec<SystemTime>,
}

fn key<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

fn trigger_time(slice: &EndpointSlice) -> SystemTime {
    slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now)
}

impl Cache {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Resolves when something changed since the last call (a change before the first
    /// call counts: the wake-up is stored).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether both watchers have listed everything once (syncing before that would
    /// remove the rules of services not yet seen).
    pub fn ready(&self) -> bool {
        self.with(|i| i.services_synced && i.slices_synced)
    }

    /// Copies the current objects and takes the pending trigger times.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|i| Snapshot {
            services: i.services.values().cloned().collect(),
            slices: i.slices.values().cloned().collect(),
            triggers: std::mem::take(&mut i.pending_triggers),
        })
    }

    /// Replaces or inserts a Service (also used by tests that drive the proxy directly).
    pub fn apply_service(&self, svc: Service) {
        self.with(|i| i.services.insert(key(&svc), svc));
        self.changed.notify_one();
    }

    /// Replaces or inserts an EndpointSlice.
    pub fn apply_slice(&self, slice: EndpointSlice) {
        let t = trigger_time(&slice);
        self.with(|i| {
            if i.slices_synced {
                i.pending_triggers.push(t);
            }
            i.slices.insert(key(&slice), slice)
        });
        self.changed.notify_one();
    }

    /// Marks both kinds as listed (for tests that fill the cache by hand).
    pub fn mark_synced(&self) {
        self.with(|i| {
            i.services_synced = true;
            i.slices_synced = true;
        });
        self.changed.notify_one();
    }

    /// Wakes the sync loop without a change (e.g. to retry).
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Starts watchers on all Services and EndpointSlices; they run until the runtime
    /// stops, retrying with backoff.
    pub fn spawn_watchers(&self, client: kube::Client) {
        let svc: Api<Service> = Api::all(client.clone());
        let slices: Api<EndpointSlice> = Api::all(client);
        let c = self.clone();
        tokio::spawn(run_watcher(svc, "services", move |ev| c.on_service(ev)));
        let c = self.clone();
        tokio::spawn(run_watcher(slices, "endpointslices", move |ev| {
            c.on_slice(ev)
        }));
    }

    fn on_service(&self, ev: Event<Service>) {
        self.with(|i| match ev {
            Event::Apply(o) => {
                i.services.insert(key(&o), o);
            }
            Event::Delete(o) => {
                i.services.remove(&key(&o));
            }
            Event::Init => i.init_services.clear(),
            Event::InitApply(o) => {
                i.init_services.insert(key(&o), o);
            }
            Event::InitDone => {
                i.services = std::mem::take(&mut i.init_services);
                i.services_synced = true;
            }
        });
        self.changed.notify_one();
    }

    fn on_slice(&self, ev: Event<EndpointSlice>) {
        self.with(|i| match ev {
            Event::Apply(o) => {
                if i.slices_synced {
                    i.pending_triggers.push(trigger_time(&o));
                }
                i.slices.insert(key(&o), o);
            }
            Event::Delete(o) => {
                if i.slices_synced {
                    i.pending_triggers.push(SystemTime::now());
                }
                i.slices.remove(&key(&o));
            }
            Event::Init => i.init_slices.clear(),
            Event::InitApply(o) => {
                i.init_slices.insert(key(&o), o);
            }
            Event::InitDone => {
                if i.slices_synced {
                    i.pending_triggers.push(SystemTime::now());
                }
                i.slices = std::mem::take(&mut i.init_slices);
                i.slices_synced = true;
            }
        });
        self.changed.notify_one();
    }
}

async fn run_watcher<K, F>(api: Api<K>, what: &'static str, mut on_event: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(Event<K>) + Send,
{
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => on_event(ev),
            Err(e) => tracing::warn!(error = %e, "watching {what} (retrying)"),
        }
    }
}
