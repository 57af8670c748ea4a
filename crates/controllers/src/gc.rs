//! The garbage collector: objects whose owners (ownerReferences) are all gone are
//! deleted (background cascading); owners deleted in the foreground (finalizer
//! `foregroundDeletion`) have their dependents deleted first and lose the finalizer once
//! no blocking dependent is left; owners deleted with `orphan` propagation (finalizer
//! `orphan`) have their dependents' ownerReferences removed, then the finalizer.
//!
//! It watches every kind discovery lists (except events), keeps a cache of each, and
//! sweeps the whole graph whenever a deletion happens (and every few seconds). An owner
//! missing from the caches is confirmed absent with a live GET before anything is
//! deleted, since the caches of different kinds lag independently.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::discovery::ApiResource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{store::Writer, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use skiff_runtime::tolerant;
use tokio::sync::Notify;

use crate::discovery::{Kind, Kinds};
use crate::util::is_not_found;

/// Finalizer of owners deleted with propagationPolicy Foreground.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of owners deleted with propagationPolicy Orphan.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Period of the sweep when nothing triggers it.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(5);

struct Watched {
    kind: Kind,
    // Metadata only (as kube's GC uses metadata informers): ownerReferences, finalizers
    // and deletion are all it needs, and whole objects (a 1,000-address Endpoints) cost
    // far more to receive and decode on every change.
    store: Store<PartialObjectMeta<DynamicObject>>,
}

struct Gc {
    client: Client,
    kinds: Kinds,
    watched: Vec<Watched>,
    trigger: Notify,
    not_ready: AtomicUsize,
}

/// What the sweep decided to do with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete it with this propagation policy.
    Delete(String),
    /// Remove owner references with these uids.
    RemoveOwners(Vec<String>),
    /// Remove this finalizer.
    RemoveFinalizer(String),
}

/// Decides what to do with `obj` given which owner uids exist (`exists`) and, for
/// existing owners, whether they are being deleted in the foreground (`foreground`), and
/// the dependents of `obj` (objects whose ownerReferences name it).
pub fn decide(
    obj: &ObjectMeta,
    exists: &dyn Fn(&OwnerReference) -> bool,
    foreground: &dyn Fn(&str) -> bool,
    dependents: &[(&ObjectMeta, &OwnerReference)],
) -> Vec<Action> {
    let mut actions = Vec::new();
    let deleting = obj.deletion_timestamp.is_some();
    let finalizers = obj.finalizers.as_deref().unwrap_or_default();
    if deleting && finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
        // Dependents are orphaned by the caller (RemoveOwners on each); then the
        // finalizer goes.
        actions.push(Action::RemoveFinalizer(ORPHAN_FINALIZER.into()));
    } else if deleting && finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
        let blocking = dependents
            .iter()
            .any(|(_, r)| r.block_owner_deletion == Some(true));
        if !blocking {
            actions.push(Action::RemoveFinalizer(FOREGROUND_FINALIZER.into()));
        }
    }
    let owners = obj.owner_references.as_deref().unwrap_or_default();
    if owners.is_empty() || deleting {
        return actions;
    }
    let (present, absent): (Vec<&OwnerReference>, Vec<&OwnerReference>) =
        owners.iter().partition(|r| exists(r));
    if present.is_empty() {
        actions.push(Action::Delete("Background".into()));
    } else if !absent.is_empty() {
        actions.push(Action::RemoveOwners(
            absent.iter().map(|r| r.uid.clone()).collect(),
        ));
    } else if present.iter().all(|r| foreground(&r.uid)) {
        actions.push(Action::Delete("Foreground".into()));
    }
    actions
}

/// Runs the garbage collector forever.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let kinds = loop {
        match Kinds::discover(&client).await {
            Ok(k) => break k,
            Err(e) => {
                tracing::info!(error = %format!("{e:#}"), "garbage collector: discovery failed, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let mut watched = Vec::new();
    let gc_kinds: Vec<Kind> = kinds
        .all
        .iter()
        .filter(|k| k.ar.plural != "events")
        .cloned()
        .collect();
    // Stores first, then the Gc that reads them.
    let mut writers: Vec<(Kind, Writer<PartialObjectMeta<DynamicObject>>)> = Vec::new();
    for k in gc_kinds {
        let writer: Writer<PartialObjectMeta<DynamicObject>> = Writer::new(k.ar.clone());
        watched.push(Watched {
            kind: k.clone(),
            store: writer.as_reader(),
        });
        writers.push((k, writer));
    }
    let gc = Arc::new(Gc {
        client: client.clone(),
        kinds,
        not_ready: AtomicUsize::new(watched.len()),
        watched,
        trigger: Notify::new(),
    });
    for (k, writer) in writers {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &k.ar);
        // Object by object: one whose metadata does not decode is skipped, not the end
        // of this kind's cache (which would stop every sweep).
        let api = tolerant::api_with(&api, &k.ar);
        let g = gc.clone();
        tokio::spawn(async move {
            let stream =
                tolerant::reflector(writer, api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut first = true;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::InitDone) => {
                        if first {
                            first = false;
                            g.not_ready.fetch_sub(1, Ordering::SeqCst);
                        }
                        g.trigger.notify_one();
                    }
                    Ok(Event::Delete(_)) => g.trigger.notify_one(),
                    // Owners being deleted in the foreground or orphaning need work
                    // now; new dependents of vanished owners wait for the periodic sweep.
                    Ok(Event::Apply(o)) => {
                        let waiting = o.metadata.deletion_timestamp.is_some()
                            && o.finalizers()
                                .iter()
                                .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER);
                        if waiting {
                            g.trigger.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(kind = %k.ar.kind, error = %e, "gc watch error"),
                }
            }
        });
    }
    let mut last_sweep = Duration::ZERO;
    loop {
        let _ = tokio::time::timeout(SWEEP_PERIOD, gc.trigger.notified()).await;
        if gc.not_ready.load(Ordering::SeqCst) > 0 {
            continue;
        }
        // Coalesce bursts of events into one sweep, for at least as long as the last
        // sweep took: a sweep reads every cached object, and a burst of deletions
        // would otherwise keep one running back to back.
        tokio::time::sleep(last_sweep.max(Duration::from_millis(20))).await;
        let started = std::time::Instant::now();
        let swept = gc.sweep().await;
        last_sweep = started.elapsed();
        if let Err(e) = swept {
            tracing::info!(error = %format!("{e:#}"), "garbage collector sweep");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Gc {
    /// The API of `kind`; its answers (the object got, deleted or patched) are decoded
    /// tolerantly, so an object whose metadata does not decode is no error here.
    fn api_for(&self, kind: &Kind, ns: Option<&str>) -> Api<tolerant::Decoded<DynamicObject>> {
        let api: Api<DynamicObject> = match (kind.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            _ => Api::all_with(self.client.clone(), &kind.ar),
        };
        tolerant::api_with(&api, &kind.ar)
    }

    /// Whether the owner exists, by a live GET (uid must match).
    async fn owner_exists_live(
        &self,
        r: &OwnerReference,
        ns: Option<&str>,
    ) -> anyhow::Result<bool> {
        let Some(kind) = self.kinds.resolve(&r.api_version, &r.kind) else {
            // Unknown kind: never delete on a guess.
            return Ok(true);
        };
        // An owner that does not decode still exists: compare what of its metadata does.
        let api = self.api_for(kind, ns);
        match api.get(&r.name).await {
            Ok(o) => Ok(o.meta().uid.as_deref() == Some(r.uid.as_str())),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e).context("looking up owner"),
        }
    }

    async fn sweep(&self) -> anyhow::Result<()> {
        // The caches' objects are read where they are, not copied: a sweep reads every
        // one (70,000 at 1,000 nodes), and copying their metadata was most of its cost.
        let states: Vec<Vec<Arc<PartialObjectMeta<DynamicObject>>>> =
            self.watched.iter().map(|w| w.store.state()).collect();
        let mut by_uid: HashMap<&str, (usize, &ObjectMeta)> =
            HashMap::with_capacity(states.iter().map(Vec::len).sum());
        for (i, objs) in states.iter().enumerate() {
            for o in objs {
                if let Some(uid) = o.metadata.uid.as_deref() {
                    by_uid.insert(uid, (i, &o.metadata));
                }
            }
        }
        let mut dependents: HashMap<&str, Vec<(&ObjectMeta, &OwnerReference, usize)>> =
            HashMap::new();
        for (kind, meta) in by_uid.values() {
            for r in meta.owner_references.iter().flatten() {
                dependents
                    .entry(r.uid.as_str())
                    .or_default()
                    .push((meta, r, *kind));
            }
        }
        let mut live_absent: HashSet<String> = HashSet::new();
        let mut live_present: HashSet<String> = HashSet::new();
        for (uid, (kind, meta)) in &by_uid {
            let owners = meta.owner_references.as_deref().unwrap_or_default();
            let deleting = meta.deletion_timestamp.is_some();
            if owners.is_empty() && !deleting {
                // Nothing to decide (see `decide`).
                continue;
            }
            let ns = meta.namespace.as_deref();
            // Owners missing from the caches are checked live before being called absent.
            for r in owners {
                if by_uid.contains_key(r.uid.as_str())
                    || live_absent.contains(&r.uid)
                    || live_present.contains(&r.uid)
                {
                    continue;
                }
                if self.owner_exists_live(r, ns).await? {
                    live_present.insert(r.uid.clone());
                } else {
                    live_absent.insert(r.uid.clone());
                }
            }
            // An owner being deleted still exists until it is gone (or it waits for its
            // dependents, which `foreground` covers).
            let exists = |r: &OwnerReference| {
                by_uid.contains_key(r.uid.as_str()) || live_present.contains(&r.uid)
            };
            let foreground = |uid: &str| {
                by_uid.get(uid).is_some_and(|(_, o)| {
                    o.deletion_timestamp.is_some()
                        && o.finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == FOREGROUND_FINALIZER)
                })
            };
            let deps: &[(&ObjectMeta, &OwnerReference, usize)] =
                dependents.get(uid).map(Vec::as_slice).unwrap_or_default();
            let dep_refs: Vec<(&ObjectMeta, &OwnerReference)> =
                deps.iter().map(|(o, r, _)| (*o, *r)).collect();
            let finalizers = meta.finalizers.as_deref().unwrap_or_default();
            if deleting && finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                for (dep, _, k) in deps {
                    self.remove_owners(&self.watched[*k].kind, dep, &[uid.to_string()])
                        .await?;
                }
            } else if deleting && finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                for (dep, _, k) in deps {
                    if dep.deletion_timestamp.is_none() {
                        self.delete(&self.watched[*k].kind, dep, "Foreground")
                            .await?;
                    }
                }
            }
            for action in decide(meta, &exists, &foreground, &dep_refs) {
                let kind = &self.watched[*kind].kind;
                match action {
                    Action::Delete(policy) => self.delete(kind, meta, &policy).await?,
                    Action::RemoveOwners(uids) => self.remove_owners(kind, meta, &uids).await?,
                    Action::RemoveFinalizer(f) => self.remove_finalizer(kind, meta, &f).await?,
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, kind: &Kind, obj: &ObjectMeta, policy: &str) -> anyhow::Result<()> {
        let api = self.api_for(kind, obj.namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(if policy == "Foreground" {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }),
            preconditions: Some(Preconditions {
                uid: obj.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(kind = %kind.ar.kind, name = %name_of(obj), policy, "garbage collecting");
        match api.delete(name_of(obj), &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {} {}", kind.ar.kind, name_of(obj))),
        }
    }

    async fn remove_owners(
        &self,
        kind: &Kind,
        obj: &ObjectMeta,
        uids: &[String],
    ) -> anyhow::Result<()> {
        let refs: Vec<&OwnerReference> = obj
            .owner_references
            .iter()
            .flatten()
            .filter(|r| !uids.contains(&r.uid))
            .collect();
        if refs.len() == obj.owner_references.as_ref().map_or(0, Vec::len) {
            return Ok(());
        }
        let api = self.api_for(kind, obj.namespace.as_deref());
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version}});
        match api
            .patch(name_of(obj), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e)
                .with_context(|| format!("removing owners of {} {}", kind.ar.kind, name_of(obj))),
        }
    }

    async fn remove_finalizer(
        &self,
        kind: &Kind,
        obj: &ObjectMeta,
        finalizer: &str,
    ) -> anyhow::Result<()> {
        let left: Vec<&String> = obj
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        let api = self.api_for(kind, obj.namespace.as_deref());
        let patch = serde_json::json!({"metadata": {"finalizers": left, "resourceVersion": obj.resource_version}});
        match api
            .patch(name_of(obj), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!("removing finalizer of {} {}", kind.ar.kind, name_of(obj))
            }),
        }
    }
}

/// An object's name (empty when it has none).
fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The resource of an object kind (for tests and tools).
pub fn api_resource(kind: &Kind) -> &ApiResource {
    &kind.ar
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    fn owner(uid: &str, block: bool) -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true, "blockOwnerDeletion": block})
    }

    #[test]
    fn orphans_are_collected_and_dangling_refs_removed() {
        let pod = obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "p1", "ownerReferences": [owner("rs1", true)]}}),
        );
        assert_eq!(
            decide(&pod.metadata, &|_| false, &|_| false, &[]),
            vec![Action::Delete("Background".into())]
        );
        assert_eq!(decide(&pod.metadata, &|_| true, &|_| false, &[]), vec![]);
        assert_eq!(
            decide(&pod.metadata, &|_| true, &|_| true, &[]),
            vec![Action::Delete("Foreground".into())]
        );
        let two = obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "p1", "ownerReferences": [owner("a", true), owner("b", false)]}}),
        );
        assert_eq!(
            decide(&two.metadata, &|r| r.uid == "a", &|_| false, &[]),
            vec![Action::RemoveOwners(vec!["b".into()])]
        );
    }

    #[test]
    fn foreground_and_orphan_finalizers() {
        let rs = obj(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "rs1",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["foregroundDeletion"]}}),
        );
        let pod = obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "p1", "ownerReferences": [owner("rs1", true)]}}),
        );
        let r: OwnerReference = serde_json::from_value(owner("rs1", true)).expect("ref");
        assert_eq!(
            decide(&rs.metadata, &|_| true, &|_| false, &[(&pod.metadata, &r)]),
            vec![]
        );
        assert_eq!(
            decide(&rs.metadata, &|_| true, &|_| false, &[]),
            vec![Action::RemoveFinalizer("foregroundDeletion".into())]
        );
        let orphaning = obj(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "rs1",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["orphan"]}}),
        );
        assert_eq!(
            decide(
                &orphaning.metadata,
                &|_| true,
                &|_| false,
                &[(&pod.metadata, &r)]
            ),
            vec![Action::RemoveFinalizer("orphan".into())]
        );
    }
}
