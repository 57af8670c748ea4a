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

/// One object in the graph.
#[derive(Clone)]
pub struct Node {
    /// Which kind it is.
    pub kind: usize,
    /// The object.
    pub obj: Arc<DynamicObject>,
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
    obj: &DynamicObject,
    exists: &dyn Fn(&OwnerReference) -> bool,
    foreground: &dyn Fn(&str) -> bool,
    dependents: &[(&DynamicObject, &OwnerReference)],
) -> Vec<Action> {
    let mut actions = Vec::new();
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let finalizers = obj.finalizers();
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
    let owners = obj.owner_references();
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
        let mut by_uid: HashMap<String, Node> = HashMap::new();
        for (i, w) in self.watched.iter().enumerate() {
            for o in w.store.state() {
                if let Some(uid) = o.metadata.uid.clone() {
                    // Only what the collector reads: the whole metadata (managedFields
                    // above all) of every object, copied on every sweep, was most of
                    // the server's CPU while 30,000 pods were deleted.
                    let m = &o.metadata;
                    let obj = Arc::new(DynamicObject {
                        types: None,
                        metadata: ObjectMeta {
                            name: m.name.clone(),
                            namespace: m.namespace.clone(),
                            uid: m.uid.clone(),
                            resource_version: m.resource_version.clone(),
                            deletion_timestamp: m.deletion_timestamp.clone(),
                            finalizers: m.finalizers.clone(),
                            owner_references: m.owner_references.clone(),
                            ..Default::default()
                        },
                        data: serde_json::Value::Null,
                    });
                    by_uid.insert(uid, Node { kind: i, obj });
                }
            }
        }
        let mut dependents: HashMap<String, Vec<(Arc<DynamicObject>, OwnerReference, usize)>> =
            HashMap::new();
        for n in by_uid.values() {
            for r in n.obj.owner_references() {
                dependents.entry(r.uid.clone()).or_default().push((
                    n.obj.clone(),
                    r.clone(),
                    n.kind,
                ));
            }
        }
        let mut live_absent: HashSet<String> = HashSet::new();
        let mut live_present: HashSet<String> = HashSet::new();
        for n in by_uid.values() {
            let obj = &n.obj;
            let ns = obj.metadata.namespace.clone();
            // Owners missing from the caches are checked live before being called absent.
            for r in obj.owner_references() {
                if by_uid.contains_key(&r.uid)
                    || live_absent.contains(&r.uid)
                    || live_present.contains(&r.uid)
                {
                    continue;
                }
                if self.owner_exists_live(r, ns.as_deref()).await? {
                    live_present.insert(r.uid.clone());
                } else {
                    live_absent.insert(r.uid.clone());
                }
            }
            // An owner being deleted still exists until it is gone (or it waits for its
            // dependents, which `foreground` covers).
            let exists =
                |r: &OwnerReference| by_uid.contains_key(&r.uid) || live_present.contains(&r.uid);
            let foreground = |uid: &str| {
                by_uid.get(uid).is_some_and(|o| {
                    o.obj.metadata.deletion_timestamp.is_some()
                        && o.obj.finalizers().iter().any(|f| f == FOREGROUND_FINALIZER)
                })
            };
            let uid = obj.metadata.uid.clone().unwrap_or_default();
            let deps = dependents.get(&uid).cloned().unwrap_or_default();
            let dep_refs: Vec<(&DynamicObject, &OwnerReference)> =
                deps.iter().map(|(o, r, _)| (o.as_ref(), r)).collect();
            let deleting = obj.metadata.deletion_timestamp.is_some();
            if deleting && obj.finalizers().iter().any(|f| f == ORPHAN_FINALIZER) {
                for (dep, _, k) in &deps {
                    self.remove_owners(&self.watched[*k].kind, dep, std::slice::from_ref(&uid))
                        .await?;
                }
            } else if deleting && obj.finalizers().iter().any(|f| f == FOREGROUND_FINALIZER) {
                for (dep, _, k) in &deps {
                    if dep.metadata.deletion_timestamp.is_none() {
                        self.delete(&self.watched[*k].kind, dep, "Foreground")
                            .await?;
                    }
                }
            }
            for action in decide(obj, &exists, &foreground, &dep_refs) {
                let kind = &self.watched[n.kind].kind;
                match action {
                    Action::Delete(policy) => self.delete(kind, obj, &policy).await?,
                    Action::RemoveOwners(uids) => self.remove_owners(kind, obj, &uids).await?,
                    Action::RemoveFinalizer(f) => self.remove_finalizer(kind, obj, &f).await?,
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, kind: &Kind, obj: &DynamicObject, policy: &str) -> anyhow::Result<()> {
        let api = self.api_for(kind, obj.metadata.namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(if policy == "Foreground" {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }),
            preconditions: Some(Preconditions {
                uid: obj.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(kind = %kind.ar.kind, name = %obj.name_any(), policy, "garbage collecting");
        match api.delete(&obj.name_any(), &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("deleting {} {}", kind.ar.kind, obj.name_any()))
            }
        }
    }

    async fn remove_owners(
        &self,
        kind: &Kind,
        obj: &DynamicObject,
        uids: &[String],
    ) -> anyhow::Result<()> {
        let refs: Vec<&OwnerReference> = obj
            .owner_references()
            .iter()
            .filter(|r| !uids.contains(&r.uid))
            .collect();
        if refs.len() == obj.owner_references().len() {
            return Ok(());
        }
        let api = self.api_for(kind, obj.metadata.namespace.as_deref());
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.metadata.resource_version}});
        match api
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e)
                .with_context(|| format!("removing owners of {} {}", kind.ar.kind, obj.name_any())),
        }
    }

    async fn remove_finalizer(
        &self,
        kind: &Kind,
        obj: &DynamicObject,
        finalizer: &str,
    ) -> anyhow::Result<()> {
        let left: Vec<&String> = obj
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        let api = self.api_for(kind, obj.metadata.namespace.as_deref());
        let patch = serde_json::json!({"metadata": {"finalizers": left, "resourceVersion": obj.metadata.resource_version}});
        match api
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!("removing finalizer of {} {}", kind.ar.kind, obj.name_any())
            }),
        }
    }
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
            decide(&pod, &|_| false, &|_| false, &[]),
            vec![Action::Delete("Background".into())]
        );
        assert_eq!(decide(&pod, &|_| true, &|_| false, &[]), vec![]);
        assert_eq!(
            decide(&pod, &|_| true, &|_| true, &[]),
            vec![Action::Delete("Foreground".into())]
        );
        let two = obj(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "p1", "ownerReferences": [owner("a", true), owner("b", false)]}}),
        );
        assert_eq!(
            decide(&two, &|r| r.uid == "a", &|_| false, &[]),
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
        assert_eq!(decide(&rs, &|_| true, &|_| false, &[(&pod, &r)]), vec![]);
        assert_eq!(
            decide(&rs, &|_| true, &|_| false, &[]),
            vec![Action::RemoveFinalizer("foregroundDeletion".into())]
        );
        let orphaning = obj(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "rs1",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["orphan"]}}),
        );
        assert_eq!(
            decide(&orphaning, &|_| true, &|_| false, &[(&pod, &r)]),
            vec![Action::RemoveFinalizer("orphan".into())]
        );
    }
}
