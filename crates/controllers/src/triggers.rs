//! What enqueues a controller's keys, declared in one place as kube-runtime's
//! `Controller::owns` / `watches` do: the controller's own kind, the kinds it owns, any
//! other kind mapped to its keys, and a periodic resync.
//!
//! ```text
//! Triggers::new(&queue, &inf.deployments)
//!     .primary()
//!     .owns(&inf.replicasets)
//!     .watches(&inf.pods, |pod, deleted| ...keys...);
//! ```
//!
//! A relist (or a lagging subscriber) of any watched informer enqueues every primary
//! key, as the controllers did before: cheap, and a missed event cannot strand a key.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use serde::de::DeserializeOwned;

use crate::informer::{every, on_change, Change, Informer};
use crate::queue::WorkQueue;
use crate::util::{controller_of, key_of};

/// The triggers of one controller whose queue holds keys of `P` objects.
pub struct Triggers<P>
where
    P: Resource + Clone + 'static,
    P::DynamicType: Eq + Hash + Clone,
{
    queue: Arc<WorkQueue>,
    primary: Arc<Informer<P>>,
}

impl<P> Triggers<P>
where
    P: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    P::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Triggers feeding `queue` with keys of the objects of `primary`.
    pub fn new(queue: &Arc<WorkQueue>, primary: &Arc<Informer<P>>) -> Self {
        Triggers {
            queue: queue.clone(),
            primary: primary.clone(),
        }
    }

    /// Enqueues every cached primary object.
    fn enqueue_all(queue: &WorkQueue, primary: &Informer<P>) {
        primary
            .list()
            .iter()
            .for_each(|o| queue.add(key_of(o.as_ref())));
    }

    /// Every added, changed or deleted primary object enqueues its own key.
    pub fn primary(&self) -> &Self {
        self.primary_if(|_, _| true)
    }

    /// As [`Triggers::primary`], for the changes `keep(object, deleted)` accepts (a
    /// resync enqueues the cached objects it accepts as not deleted).
    pub fn primary_if(&self, keep: impl Fn(&P, bool) -> bool + Send + 'static) -> &Self {
        let q = self.queue.clone();
        let primary = self.primary.clone();
        on_change(&self.primary, move |c| match c {
            Change::Applied(o) if keep(&o, false) => q.add(key_of(o.as_ref())),
            Change::Deleted(o) if keep(&o, true) => q.add(key_of(o.as_ref())),
            Change::Resync => primary
                .list()
                .iter()
                .filter(|o| keep(o, false))
                .for_each(|o| q.add(key_of(o.as_ref()))),
            _ => {}
        });
        self
    }

    /// Objects of `owned` whose controller is a `P`: a change enqueues that controller
    /// (in the object's namespace).
    pub fn owns<K>(&self, owned: &Arc<Informer<K>>) -> &Self
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        let kind = P::kind(&Default::default()).into_owned();
        self.watches(owned, move |o: &K, _| {
            controller_of(o)
                .filter(|r| r.kind == kind)
                .map(|r| match o.meta().namespace.as_deref() {
                    Some(ns) if !ns.is_empty() => format!("{ns}/{}", r.name),
                    _ => r.name.clone(),
                })
                .into_iter()
                .collect()
        })
    }

    /// Any other relation: a change of an object of `inf` enqueues the keys
    /// `map(object, deleted)` gives.
    pub fn watches<K>(
        &self,
        inf: &Arc<Informer<K>>,
        mut map: impl FnMut(&K, bool) -> Vec<String> + Send + 'static,
    ) -> &Self
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
    {
        let q = self.queue.clone();
        let primary = self.primary.clone();
        on_change(inf, move |c| {
            let keys = match c {
                Change::Applied(o) => map(&o, false),
                Change::Deleted(o) => map(&o, true),
                Change::Resync => return Self::enqueue_all(&q, &primary),
            };
            keys.into_iter().for_each(|k| q.add(k));
        });
        self
    }

    /// Every `period`, every primary object is enqueued (catches what event mapping
    /// misses, e.g. an object whose labels moved away).
    pub fn every(&self, period: Duration) -> &Self {
        let q = self.queue.clone();
        let primary = self.primary.clone();
        every(period, move || Self::enqueue_all(&q, &primary));
        self
    }
}
