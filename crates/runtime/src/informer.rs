//! Shared informers: one list/watch per resource kind, a local cache of its objects
//! (a kube-runtime reflector store) and a broadcast of every change to the controllers
//! that subscribed, as client-go's SharedInformer does. Objects that do not decode as
//! `K` are skipped and logged, not fatal to the informer ([`crate::tolerant`]).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

/// One change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// The object was added or modified (its new state).
    Applied(Arc<K>),
    /// The object was deleted (its last known state).
    Deleted(Arc<K>),
    /// The informer relisted (or a subscriber lagged): every object should be looked at.
    Resync,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resync => Change::Resync,
        }
    }
}

/// A cache of one kind of object kept current by a watch, with change notifications.
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
    ready: watch::Receiver<bool>,
    /// client-go's indexers: objects by the values an index function gave them.
    index: Option<Mutex<Index<K>>>,
}

/// Computes the index values of an object (client-go's `IndexFunc`).
pub type IndexFn<K> = fn(&K) -> Vec<String>;

/// The objects under each index value, and each object's values (to drop them when it
/// changes).
struct Index<K> {
    f: IndexFn<K>,
    by_value: HashMap<String, HashMap<String, Arc<K>>>,
    values_of: HashMap<String, Vec<String>>,
}

impl<K: Resource> Index<K> {
    fn key(o: &K) -> String {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or(""),
            o.meta().name.as_deref().unwrap_or("")
        )
    }

    fn remove(&mut self, key: &str) {
        for v in self.values_of.remove(key).unwrap_or_default() {
            if let Some(objs) = self.by_value.get_mut(&v) {
                objs.remove(key);
                if objs.is_empty() {
                    self.by_value.remove(&v);
                }
            }
        }
    }

    fn apply(&mut self, o: &Arc<K>) {
        let key = Self::key(o);
        self.remove(&key);
        let values: Vec<String> = (self.f)(o)
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for v in &values {
            self.by_value
                .entry(v.clone())
                .or_default()
                .insert(key.clone(), o.clone());
        }
        self.values_of.insert(key, values);
    }

    fn rebuild(&mut self, all: Vec<Arc<K>>) {
        self.by_value.clear();
        self.values_of.clear();
        for o in &all {
            self.apply(o);
        }
    }
}

/// A poisoned lock only means a task panicked mid-update; the next resync rebuilds it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts listing and watching `api` in the background.
    pub fn spawn(api: Api<K>) -> Arc<Self> {
        Self::start(api, None)
    }

    /// [`Informer::spawn`], keeping an index of the objects by the values `f` gives
    /// them, for [`Informer::indexed`] (client-go's `AddIndexers`).
    pub fn spawn_indexed(api: Api<K>, f: IndexFn<K>) -> Arc<Self> {
        Self::start(api, Some(f))
    }

    fn start(api: Api<K>, f: Option<IndexFn<K>>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let (tx, _) = broadcast::channel(16384);
        let (ready_tx, ready) = watch::channel(false);
        let informer = Arc::new(Informer {
            store,
            tx: tx.clone(),
            ready,
            index: f.map(|f| {
                Mutex::new(Index {
                    f,
                    by_value: HashMap::new(),
                    values_of: HashMap::new(),
                })
            }),
        });
        let cfg = watcher::Config::default();
        let this = informer.clone();
        tokio::spawn(async move {
            let api = crate::tolerant::api(&api);
            let stream = crate::tolerant::reflector(writer, api, cfg).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    // The index changes before subscribers hear of the change.
                    Ok(Event::Apply(o)) => {
                        let o = Arc::new(o);
                        if let Some(i) = &this.index {
                            lock(i).apply(&o);
                        }
                        let _ = tx.send(Change::Applied(o));
                    }
                    Ok(Event::Delete(o)) => {
                        if let Some(i) = &this.index {
                            lock(i).remove(&Index::key(&o));
                        }
                        let _ = tx.send(Change::Deleted(Arc::new(o)));
                    }
                    Ok(Event::InitDone) => {
                        // A relist replaced the whole cache: so is the index.
                        if let Some(i) = &this.index {
                            lock(i).rebuild(this.store.state());
                        }
                        let _ = ready_tx.send(true);
                        let _ = tx.send(Change::Resync);
                    }
                    Ok(Event::Init) | Ok(Event::InitApply(_)) => {}
                    Err(e) => {
                        tracing::debug!(kind = %K::kind(&Default::default()), error = %e, "watch error");
                    }
                }
            }
        });
        informer
    }

    /// The cache (complete once [`Informer::wait_ready`] returned).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.tx.subscribe()
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// All cached objects.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// The cached objects the index function gave `value`. An informer started without
    /// an index function returns every object: callers filter what they get anyway.
    pub fn indexed(&self, value: &str) -> Vec<Arc<K>> {
        match &self.index {
            Some(i) => lock(i)
                .by_value
                .get(value)
                .map(|objs| objs.values().cloned().collect())
                .unwrap_or_default(),
            None => self.list(),
        }
    }
}

/// Runs `on_change` for every change of `informer` (after it is ready, starting with one
/// [`Change::Resync`]), forever. A lagging receiver turns into a resync.
pub fn on_change<K, F>(informer: &Arc<Informer<K>>, mut on_change: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    F: FnMut(Change<K>) + Send + 'static,
{
    let mut rx = informer.subscribe();
    let informer = informer.clone();
    tokio::spawn(async move {
        informer.wait_ready().await;
        on_change(Change::Resync);
        loop {
            match rx.recv().await {
                Ok(c) => on_change(c),
                Err(broadcast::error::RecvError::Lagged(_)) => on_change(Change::Resync),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Sends `()` on every `period` forever (periodic resyncs).
pub fn every(period: Duration, mut f: impl FnMut() + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            f();
        }
    });
}
