//! Keeps an in-memory copy of all Services and EndpointSlices with kube-runtime
//! watchers (which retry with backoff while the API is unavailable), notes which
//! Services changed, and wakes the sync loop on every change. An object that does not
//! decode is skipped and logged (`skiff_runtime::tolerant`); one turned bad keeps its
//! last good state here, so its rules stay as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use skiff_runtime::tolerant;
use tokio::sync::Notify;

/// Annotation the EndpointSlice controller sets to when the change that produced a
/// slice happened; network programming latency is measured from it.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Debug, Default)]
struct Inner {
    /// Services by `namespace/name`.
    services: BTreeMap<String, Service>,
    /// EndpointSlices by `namespace/name` of the slice.
    slices: BTreeMap<String, EndpointSlice>,
    /// Slice keys by the `namespace/name` of their Service.
    slices_of: BTreeMap<String, BTreeSet<String>>,
    /// Services whose objects changed since the last [`Cache::take_changes`].
    dirty: BTreeSet<String>,
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

/// One Service whose objects changed: the Service (absent if deleted) and its slices.
#[derive(Debug)]
pub struct ServiceChange {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// The Service, `None` if it no longer exists.
    pub service: Option<Service>,
    /// All its EndpointSlices.
    pub slices: Vec<EndpointSlice>,
}

/// What changed since the last call to [`Cache::take_changes`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Changed Services.
    pub services: Vec<ServiceChange>,
    /// Trigger times of the slice changes included.
    pub triggers: Vec<SystemTime>,
}

fn key<K: Resource>(obj: &K) -> String {
    meta_key(obj.meta())
}

fn meta_key(m: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// `namespace/name` of the Service a slice belongs to (label `kubernetes.io/service-name`).
fn owner(slice: &EndpointSlice) -> Option<String> {
    let svc = slice
        .metadata
        .labels
        .as_ref()?
        .get(skiff_api::names::SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or("")
    ))
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

impl Inner {
    fn put_slice(&mut self, slice: EndpointSlice) {
        let k = key(&slice);
        self.drop_slice(&k);
        if let Some(o) = owner(&slice) {
            self.slices_of
                .entry(o.clone())
                .or_default()
                .insert(k.clone());
            self.dirty.insert(o);
        }
        self.slices.insert(k, slice);
    }

    fn drop_slice(&mut self, k: &str) {
        if let Some(old) = self.slices.remove(k) {
            if let Some(o) = owner(&old) {
                if let Some(set) = self.slices_of.get_mut(&o) {
                    set.remove(k);
                    if set.is_empty() {
                        self.slices_of.remove(&o);
                    }
                }
                self.dirty.insert(o);
            }
        }
    }
}

impl Cache {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves consistent maps behind: keep using them.
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

    /// Takes the Services that changed, with their current objects, and the pending
    /// trigger times.
    pub fn take_changes(&self) -> Changes {
        self.with(|i| {
            let dirty = std::mem::take(&mut i.dirty);
            let services = dirty
                .into_iter()
                .map(|k| {
                    let (namespace, name) = k.split_once('/').unwrap_or(("", k.as_str()));
                    let slices = i
                        .slices_of
                        .get(&k)
                        .into_iter()
                        .flatten()
                        .filter_map(|s| i.slices.get(s).cloned())
                        .collect();
                    ServiceChange {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        service: i.services.get(&k).cloned(),
                        slices,
                    }
                })
                .collect();
            Changes {
                services,
                triggers: std::mem::take(&mut i.pending_triggers),
            }
        })
    }

    /// Replaces or inserts a Service (also used by tests that drive the proxy directly).
    pub fn apply_service(&self, svc: Service) {
        self.with(|i| {
            let k = key(&svc);
            i.dirty.insert(k.clone());
            i.services.insert(k, svc);
        });
        self.changed.notify_one();
    }

    /// Removes a Service.
    pub fn delete_service(&self, namespace: &str, name: &str) {
        self.with(|i| {
            let k = format!("{namespace}/{name}");
            i.services.remove(&k);
            i.dirty.insert(k);
        });
        self.changed.notify_one();
    }

    /// Replaces or inserts an EndpointSlice.
    pub fn apply_slice(&self, slice: EndpointSlice) {
        self.with(|i| {
            if i.slices_synced {
                i.pending_triggers.push(trigger_time(&slice));
            }
            i.put_slice(slice);
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
        let (c, last) = (self.clone(), self.clone());
        let last_svc = move |m: &ObjectMeta| last.with(|i| i.services.get(&meta_key(m)).cloned());
        tokio::spawn(run_watcher(svc, "services", last_svc, move |ev| {
            c.on_service(ev)
        }));
        let (c, last) = (self.clone(), self.clone());
        let last_slice = move |m: &ObjectMeta| last.with(|i| i.slices.get(&meta_key(m)).cloned());
        tokio::spawn(run_watcher(
            slices,
            "endpointslices",
            last_slice,
            move |ev| c.on_slice(ev),
        ));
    }

    fn on_service(&self, ev: Event<Service>) {
        self.with(|i| match ev {
            Event::Apply(o) => {
                let k = key(&o);
                i.dirty.insert(k.clone());
                i.services.insert(k, o);
            }
            Event::Delete(o) => {
                let k = key(&o);
                i.services.remove(&k);
                i.dirty.insert(k);
            }
            Event::Init => i.init_services.clear(),
            Event::InitApply(o) => {
                i.init_services.insert(key(&o), o);
            }
            Event::InitDone => {
                let new = std::mem::take(&mut i.init_services);
                // Everything listed, and everything that disappeared meanwhile, changed.
                i.dirty.extend(i.services.keys().cloned());
                i.dirty.extend(new.keys().cloned());
                i.services = new;
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
                i.put_slice(o);
            }
            Event::Delete(o) => {
                if i.slices_synced {
                    i.pending_triggers.push(SystemTime::now());
                }
                i.drop_slice(&key(&o));
            }
            Event::Init => i.init_slices.clear(),
            Event::InitApply(o) => {
                i.init_slices.insert(key(&o), o);
            }
            Event::InitDone => {
                let new = std::mem::take(&mut i.init_slices);
                let old: Vec<String> = i.slices.keys().cloned().collect();
                for k in old {
                    i.drop_slice(&k);
                }
                for s in new.into_values() {
                    i.put_slice(s);
                }
                i.slices_synced = true;
            }
        });
        self.changed.notify_one();
    }
}

/// Feeds `on_event` from a watch of `api`; `last_good` is the cached state of an object
/// that stopped decoding.
async fn run_watcher<K, L, F>(api: Api<K>, what: &'static str, last_good: L, mut on_event: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Default + Send + 'static,
    K::DynamicType: Default,
    L: FnMut(&ObjectMeta) -> Option<K> + Send + 'static,
    F: FnMut(Event<K>) + Send,
{
    let api = tolerant::api(&api);
    let mut stream = tolerant::watcher_with(api, watcher::Config::default(), last_good)
        .default_backoff()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => on_event(ev),
            Err(e) => tracing::warn!(error = %e, "watching {what} (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn changes_name_the_services_touched() {
        let c = Cache::default();
        c.apply_service(fixtures::seed_service());
        c.apply_slice(fixtures::seed_slice());
        c.mark_synced();
        let ch = c.take_changes();
        assert_eq!(ch.services.len(), 1);
        assert_eq!(ch.services[0].name, "httpd-svc");
        assert_eq!(ch.services[0].slices.len(), 1);
        assert!(c.take_changes().services.is_empty());
        c.apply_slice(fixtures::seed_slice());
        let ch = c.take_changes();
        assert_eq!(ch.services.len(), 1);
        assert_eq!(ch.triggers.len(), 1);
        c.delete_service("default", "httpd-svc");
        let ch = c.take_changes();
        assert!(ch.services[0].service.is_none());
    }
}
