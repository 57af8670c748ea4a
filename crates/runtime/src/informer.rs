//! Shared informers: one list/watch per resource kind, a local cache of its objects
//! (a kube-runtime reflector store) and a broadcast of every change to the controllers
//! that subscribed, as client-go's SharedInformer does. Objects that do not decode as
//! `K` are skipped and logged, not fatal to the informer ([`crate::tolerant`]).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
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
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts listing and watching `api` in the background.
    pub fn spawn(api: Api<K>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let (tx, _) = broadcast::channel(16384);
        let (ready_tx, ready) = watch::channel(false);
        let informer = Arc::new(Informer {
            store,
            tx: tx.clone(),
            ready,
        });
        let cfg = watcher::Config::default();
        tokio::spawn(async move {
            let api = crate::tolerant::api(&api);
            let stream = crate::tolerant::reflector(writer, api, cfg).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(o)) => {
                        let _ = tx.send(Change::Applied(Arc::new(o)));
                    }
                    Ok(Event::Delete(o)) => {
                        let _ = tx.send(Change::Deleted(Arc::new(o)));
                    }
                    Ok(Event::InitDone) => {
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
