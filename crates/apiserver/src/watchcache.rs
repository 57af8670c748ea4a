//! Shared watches, after kube-apiserver's cacher: one store watch per resource fans its
//! events out to every WATCH of that resource, and a watcher of pods by node
//! (`fieldSelector=spec.nodeName=X`, what every kubelet holds) is only woken for events
//! of its node's pods, found through an index of the node name (the cacher's pod
//! "trigger"), instead of every watcher being handed every write. With a thousand nodes,
//! a pod write used to wake a thousand watchers, each copying the object and scanning it;
//! now it wakes one.
//!
//! A hub keeps its last [`BUFFER_EVENTS`] events, so a watch that resumes from a recent
//! revision is served from memory. A watch from before that (or before the hub began),
//! or one that cannot keep up (its channel is full when the hub has an event for it),
//! gets a store watch of its own from the revision it has reached, as before: the
//! watcher sees one unbroken stream either way.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use skiff_store::{Event, Store, StoreError, WatchReceiver};
use tokio::sync::mpsc;

/// Events a hub keeps for watches that resume (kube's watch cache holds 100 to 100,000
/// per resource, by time); about 30 MB for pods of 4 KB.
const BUFFER_EVENTS: usize = 4096;

/// Events queued for one watcher before the hub gives it a store watch of its own.
const WATCHER_BUFFER: usize = 64;

/// Extracts a watch trigger value (pods: `spec.nodeName`) from stored bytes.
type TriggerFn = fn(&[u8]) -> Option<String>;

/// The shared watches of one server, one hub per resource (created on its first watch).
#[derive(Default)]
pub(crate) struct WatchCache {
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

/// One watch as [`WatchCache::watch`] opened it.
pub(crate) struct Watch {
    /// The events, in revision order.
    pub events: WatchReceiver,
    /// The hub serving it, and its subscriber id (`None`: a store watch of its own).
    hub: Option<(Arc<Hub>, u64)>,
}

impl Watch {
    /// A revision every event of this watch up to which has been delivered into
    /// [`Watch::events`] (or was not for it), while the hub still serves it: what a
    /// bookmark may announce once the channel is drained. Read it *before* checking that
    /// the channel is empty.
    pub fn progress(&self) -> Option<i64> {
        let (hub, id) = self.hub.as_ref()?;
        let inner = lock(&hub.inner);
        inner.attached(*id).then_some(inner.progress)
    }
}

impl WatchCache {
    /// A watch of the keys under `prefix` after revision `from`, through the hub of the
    /// resource whose keys are under `root`; `trigger`: only objects whose trigger value
    /// (before or after the change) is this are wanted (the watcher still filters: this
    /// only spares it the others).
    pub(crate) fn watch(
        &self,
        store: &Arc<dyn Store>,
        root: &str,
        prefix: &str,
        from: i64,
        trigger: Option<String>,
    ) -> Result<Watch, StoreError> {
        let hub = self.hub(store, root);
        if let Some(hub) = hub {
            let mut inner = lock(&hub.inner);
            if !inner.dead && from >= inner.floor {
                let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
                let sub = Sub {
                    id: inner.next_id,
                    prefix: prefix.to_string(),
                    after: from,
                    trigger,
                    tx,
                };
                // The buffered events it missed, then the live ones.
                let missed = inner
                    .buffer
                    .iter()
                    .filter(|(e, values)| e.revision > from && sub.wants(e, values))
                    .map(|(e, _)| e.clone())
                    .collect::<Vec<_>>();
                if missed.len() <= WATCHER_BUFFER {
                    for e in missed {
                        // Fits: the channel is new and as large as `missed`.
                        let _ = sub.tx.try_send(Ok(e));
                    }
                    inner.next_id += 1;
                    let id = sub.id;
                    inner.add(sub);
                    drop(inner);
                    return Ok(Watch {
                        events: rx,
                        hub: Some((hub.clone(), id)),
                    });
                }
            }
        }
        Ok(Watch {
            events: store.watch(prefix, from)?,
            hub: None,
        })
    }

    /// The hub of the resource under `root`, started now if there is none (or the last
    /// one ended); `None` if the store cannot watch.
    fn hub(&self, store: &Arc<dyn Store>, root: &str) -> Option<Arc<Hub>> {
        let mut hubs = lock(&self.hubs);
        if let Some(h) = hubs.get(root) {
            if !lock(&h.inner).dead {
                return Some(h.clone());
            }
        }
        let from = store.current_revision().ok()?;
        let events = store.watch(root, from).ok()?;
        let hub = Arc::new(Hub {
            trigger: trigger_fn(root),
            inner: Mutex::new(HubInner {
                buffer: VecDeque::new(),
                floor: from,
                progress: from,
                dead: false,
                next_id: 0,
                all: Vec::new(),
                by_trigger: HashMap::new(),
            }),
        });
        tokio::spawn(run(hub.clone(), store.clone(), events));
        hubs.insert(root.to_string(), hub.clone());
        Some(hub)
    }
}

/// The root prefix of pods, whose watches are indexed by node.
const PODS: &str = "/registry/core/pods/";

/// The field a resource's watches are indexed by, as kube's cacher triggers: pods by
/// `spec.nodeName` (every kubelet's pod watch), everything else by `metadata.name` (a
/// kubelet's watch of each Secret and ConfigMap its pods use, each node's watch of its
/// own Node, `kubectl wait`).
pub(crate) fn trigger_field(root: &str) -> &'static str {
    if root == PODS {
        "spec.nodeName"
    } else {
        "metadata.name"
    }
}

/// The trigger of a resource's watches (see [`trigger_field`]).
fn trigger_fn(root: &str) -> Option<TriggerFn> {
    Some(if root == PODS {
        pod_node_name
    } else {
        object_name
    })
}

/// A stored object's `metadata.name`.
fn object_name(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
    }
    serde_json::from_slice::<Object>(bytes).ok()?.metadata?.name
}

/// A stored pod's `spec.nodeName`.
fn pod_node_name(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Pod {
        spec: Option<Spec>,
    }
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(rename = "nodeName")]
        node_name: Option<String>,
    }
    serde_json::from_slice::<Pod>(bytes)
        .ok()?
        .spec?
        .node_name
        .filter(|n| !n.is_empty())
}

/// One resource's shared watch.
struct Hub {
    trigger: Option<TriggerFn>,
    inner: Mutex<HubInner>,
}

struct HubInner {
    /// The last events, oldest first.
    /// The last events with their trigger values (computed once, when dispatched).
    buffer: VecDeque<(Arc<Event>, Vec<String>)>,
    /// Every event after this revision is in `buffer` or yet to come.
    floor: i64,
    /// The revision of the last event dispatched.
    progress: i64,
    /// The store watch ended: new watches go to the store.
    dead: bool,
    next_id: u64,
    /// Subscribers without a trigger.
    all: Vec<Sub>,
    /// Subscribers by trigger value.
    by_trigger: HashMap<String, Vec<Sub>>,
}

/// One watcher served by a hub.
struct Sub {
    id: u64,
    prefix: String,
    /// Events up to this revision are not for it (it started after them).
    after: i64,
    trigger: Option<String>,
    tx: mpsc::Sender<Result<Arc<Event>, StoreError>>,
}

impl Sub {
    /// Whether buffered event `e`, whose trigger values are `values`, is for it.
    fn wants(&self, e: &Event, values: &[String]) -> bool {
        e.revision > self.after
            && e.key.starts_with(&self.prefix)
            && self
                .trigger
                .as_ref()
                .is_none_or(|want| values.contains(want))
    }
}

impl HubInner {
    fn add(&mut self, sub: Sub) {
        match &sub.trigger {
            Some(t) => self.by_trigger.entry(t.clone()).or_default().push(sub),
            None => self.all.push(sub),
        }
    }

    fn attached(&self, id: u64) -> bool {
        self.all.iter().any(|s| s.id == id)
            || self
                .by_trigger
                .values()
                .any(|subs| subs.iter().any(|s| s.id == id))
    }
}

/// The hub's loop: each store event buffered and handed to the watchers it is for.
async fn run(hub: Arc<Hub>, store: Arc<dyn Store>, mut events: WatchReceiver) {
    loop {
        let ev = match events.recv().await {
            Some(Ok(ev)) => ev,
            // The store watch ended (compaction under it, a backend error, shutdown):
            // every watcher goes on with a store watch of its own.
            Some(Err(_)) | None => {
                let mut inner = lock(&hub.inner);
                inner.dead = true;
                let from = inner.progress;
                let mut subs: Vec<Sub> = inner.all.drain(..).collect();
                subs.extend(inner.by_trigger.drain().flat_map(|(_, v)| v));
                drop(inner);
                for s in subs {
                    let after = s.after.max(from);
                    detach(&store, s, after);
                }
                return;
            }
        };
        // The trigger values, computed once for every watcher.
        let values: Vec<String> = match hub.trigger {
            Some(f) => {
                let mut v: Vec<String> = f(&ev.value).into_iter().collect();
                if let Some(p) = ev.prev_value.as_deref().and_then(f) {
                    if !v.contains(&p) {
                        v.push(p);
                    }
                }
                v
            }
            None => Vec::new(),
        };
        let mut inner = lock(&hub.inner);
        inner.buffer.push_back((ev.clone(), values.clone()));
        if inner.buffer.len() > BUFFER_EVENTS {
            if let Some((old, _)) = inner.buffer.pop_front() {
                inner.floor = old.revision;
            }
        }
        let mut slow = Vec::new();
        dispatch(&mut inner.all, &ev, &mut slow);
        for v in &values {
            if let Some(subs) = inner.by_trigger.get_mut(v) {
                dispatch(subs, &ev, &mut slow);
                if subs.is_empty() {
                    inner.by_trigger.remove(v);
                }
            }
        }
        inner.progress = ev.revision;
        drop(inner);
        for s in slow {
            // It has every event before this one.
            detach(&store, s, ev.revision - 1);
        }
    }
}

/// Hands `ev` to each of `subs` it is for; a closed watcher is dropped, a full one moved
/// to `slow`.
fn dispatch(subs: &mut Vec<Sub>, ev: &Arc<Event>, slow: &mut Vec<Sub>) {
    let mut i = 0;
    while i < subs.len() {
        let s = &subs[i];
        if ev.revision <= s.after || !ev.key.starts_with(&s.prefix) {
            i += 1;
            continue;
        }
        match s.tx.try_send(Ok(ev.clone())) {
            Ok(()) => i += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                subs.swap_remove(i);
            }
            Err(mpsc::error::TrySendError::Full(_)) => slow.push(subs.swap_remove(i)),
        }
    }
}

/// Goes on serving `sub` from a store watch of its own after revision `after`.
fn detach(store: &Arc<dyn Store>, sub: Sub, after: i64) {
    let store = store.clone();
    tokio::spawn(async move {
        match store.watch(&sub.prefix, after) {
            Ok(mut events) => {
                while let Some(e) = events.recv().await {
                    if sub.tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = sub.tx.send(Err(e)).await;
            }
        }
    });
}

/// A poisoned lock only means a task panicked while holding it; the hub's lists stay
/// consistent (each change is one push or removal).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod(name: &str, node: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node},
        }))
        .unwrap()
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::open(&format!("sqlite://{}/s.db", dir.path().display())).unwrap();
        (dir, store)
    }

    async fn next(w: &mut Watch) -> Arc<Event> {
        tokio::time::timeout(Duration::from_secs(5), w.events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the watch is open")
            .expect("no error")
    }

    const ROOT: &str = PODS;

    #[test]
    fn reads_the_node_name_of_stored_pods() {
        assert_eq!(pod_node_name(&pod("a", Some("n1"))).as_deref(), Some("n1"));
        assert_eq!(pod_node_name(&pod("a", None)), None);
        assert_eq!(pod_node_name(b"{\"spec\":{\"nodeName\":\"\"}}"), None);
        assert_eq!(pod_node_name(b"not json"), None);
        assert_eq!(object_name(&pod("a", None)).as_deref(), Some("a"));
        assert_eq!(trigger_field(PODS), "spec.nodeName");
        assert_eq!(trigger_field("/registry/core/nodes/"), "metadata.name");
    }

    #[tokio::test]
    async fn a_node_watcher_sees_only_its_pods_including_binding_and_deletion() {
        let (_dir, store) = store();
        let cache = WatchCache::default();
        // The first watch starts the hub; watchers after it are served by it.
        let _first = cache.watch(&store, ROOT, ROOT, 0, None).unwrap();
        let rev = store.current_revision().unwrap();
        let mut n1 = cache
            .watch(&store, ROOT, ROOT, rev, Some("n1".into()))
            .unwrap();
        let mut all = cache.watch(&store, ROOT, ROOT, rev, None).unwrap();
        assert!(n1.hub.is_some() && all.hub.is_some());
        let k = |n: &str| format!("{ROOT}ns/{n}");
        store.create(&k("a"), &pod("a", None)).unwrap();
        store.create(&k("b"), &pod("b", Some("n2"))).unwrap();
        let (_, r) = store
            .get(&k("a"))
            .unwrap()
            .map(|kv| (kv.value, kv.mod_revision))
            .unwrap();
        store
            .update(&k("a"), &pod("a", Some("n1")), Some(r))
            .unwrap();
        store.delete(&k("a"), None).unwrap();
        // The unfiltered watcher gets all four events; n1's only its pod's binding and
        // deletion.
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(next(&mut all).await.key.clone());
        }
        assert_eq!(seen, [k("a"), k("b"), k("a"), k("a")]);
        let bound = next(&mut n1).await;
        assert_eq!(
            (bound.key.as_str(), bound.kind),
            (k("a").as_str(), skiff_store::EventKind::Modified)
        );
        let gone = next(&mut n1).await;
        assert_eq!(gone.kind, skiff_store::EventKind::Deleted);
        assert!(n1.events.try_recv().is_err(), "nothing else for n1");
        assert!(n1.progress().unwrap() >= gone.revision);
    }

    #[tokio::test]
    async fn resumes_from_the_buffer_or_from_the_store() {
        let (_dir, store) = store();
        let cache = WatchCache::default();
        let before = store.current_revision().unwrap();
        store
            .create(&format!("{ROOT}ns/old"), &pod("old", None))
            .unwrap();
        // The hub starts after `old`: a watch from before it is the store's.
        let mut early = cache.watch(&store, ROOT, ROOT, before, None).unwrap();
        assert!(early.hub.is_none());
        assert!(early.progress().is_none());
        assert_eq!(next(&mut early).await.key, format!("{ROOT}ns/old"));
        let from = store.current_revision().unwrap();
        store
            .create(&format!("{ROOT}ns/new"), &pod("new", None))
            .unwrap();
        // Wait until the hub has it, then resume from before it: served from the buffer.
        let mut probe = cache.watch(&store, ROOT, ROOT, from, None).unwrap();
        assert_eq!(next(&mut probe).await.key, format!("{ROOT}ns/new"));
        let mut late = cache.watch(&store, ROOT, ROOT, from, None).unwrap();
        assert!(late.hub.is_some());
        assert_eq!(next(&mut late).await.key, format!("{ROOT}ns/new"));
    }

    #[tokio::test]
    async fn a_watcher_that_does_not_read_goes_on_from_the_store_without_a_gap() {
        let (_dir, store) = store();
        let cache = WatchCache::default();
        let _first = cache.watch(&store, ROOT, ROOT, 0, None).unwrap();
        let rev = store.current_revision().unwrap();
        let mut slow = cache.watch(&store, ROOT, ROOT, rev, None).unwrap();
        let n = WATCHER_BUFFER * 3;
        for i in 0..n {
            store
                .create(&format!("{ROOT}ns/p{i}"), &pod("p", None))
                .unwrap();
        }
        let mut last = rev;
        for i in 0..n {
            let e = next(&mut slow).await;
            assert_eq!(e.key, format!("{ROOT}ns/p{i}"));
            assert!(e.revision > last);
            last = e.revision;
        }
        assert!(
            slow.progress().is_none(),
            "moved to a store watch of its own"
        );
    }
}
