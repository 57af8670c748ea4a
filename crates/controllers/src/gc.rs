//! The garbage collector: objects whose owners (ownerReferences) are all gone are
//! deleted (background cascading); owners deleted in the foreground (finalizer
//! `foregroundDeletion`) have their dependents deleted first and lose the finalizer once
//! no blocking dependent is left; owners deleted with `orphan` propagation (finalizer
//! `orphan`) have their dependents' ownerReferences removed, then the finalizer.
//!
//! It watches every kind discovery lists (except events), metadata only, and keeps the
//! ownership graph from the watch events ([`Graph`], kube's `uidToNode`): a change marks
//! only the objects it may decide about (a deleted object's dependents and owners, an
//! object with owners, an owner being deleted), and a pass looks at those. Everything
//! is looked at again after a relist and every [`FULL_PASS_PERIOD`]. An owner missing
//! from the caches is confirmed absent with a live GET before anything is deleted, since
//! the caches of different kinds lag independently.

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
use kube::{Api, Client, Resource};
use skiff_runtime::tolerant;
use tokio::sync::Notify;

use crate::discovery::{Kind, Kinds};
use crate::util::is_not_found;

/// Finalizer of owners deleted with propagationPolicy Foreground.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of owners deleted with propagationPolicy Orphan.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// How often every object is looked at again, whatever the events said: a safety net
/// (owners of kinds the collector does not watch, a failed action).
pub const FULL_PASS_PERIOD: Duration = Duration::from_secs(30);

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
    graph: std::sync::Mutex<Graph>,
    trigger: Notify,
    not_ready: AtomicUsize,
}

/// The ownership graph, kept from the watch events: at 1,000 nodes the caches hold
/// 70,000 objects, and rebuilding the graph from them on every pass was a fifth of the
/// server's CPU.
#[derive(Default)]
pub struct Graph {
    /// Every object by uid: its kind (an index into the watched kinds) and the part of
    /// its metadata the collector reads.
    objects: HashMap<String, (usize, Arc<ObjectMeta>)>,
    /// Owner uid → the uids of the objects naming it (the owner may be absent).
    dependents: HashMap<String, HashSet<String>>,
    /// Objects to look at on the next pass.
    dirty: HashSet<String>,
}

/// What a pass needs of one object, taken from the graph under its lock.
struct Job {
    uid: String,
    kind: usize,
    meta: Arc<ObjectMeta>,
    /// For each owner uid in the graph: whether it is being deleted in the foreground.
    owners: HashMap<String, bool>,
    /// Its dependents with their reference to it (only when it is being deleted).
    dependents: Vec<(usize, Arc<ObjectMeta>, OwnerReference)>,
}

/// The part of an object's metadata the collector reads.
fn trimmed(m: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        deletion_timestamp: m.deletion_timestamp.clone(),
        finalizers: m.finalizers.clone(),
        owner_references: m.owner_references.clone(),
        ..Default::default()
    }
}

fn owner_uids(m: &ObjectMeta) -> impl Iterator<Item = &str> {
    m.owner_references.iter().flatten().map(|r| r.uid.as_str())
}

fn has_finalizer(m: &ObjectMeta, f: &str) -> bool {
    m.finalizers.iter().flatten().any(|x| x == f)
}

/// Whether a pass has anything to decide about an object (see [`decide`]).
fn needs_look(m: &ObjectMeta) -> bool {
    m.owner_references.as_ref().is_some_and(|r| !r.is_empty())
        || (m.deletion_timestamp.is_some()
            && (has_finalizer(m, FOREGROUND_FINALIZER) || has_finalizer(m, ORPHAN_FINALIZER)))
}

impl Graph {
    /// An object was added or changed.
    pub fn apply(&mut self, kind: usize, meta: &ObjectMeta) {
        let Some(uid) = meta.uid.clone() else {
            return;
        };
        let new = Arc::new(trimmed(meta));
        if let Some((_, old)) = self.objects.get(&uid) {
            let gone: Vec<String> = owner_uids(old)
                .filter(|o| !owner_uids(&new).any(|n| n == *o))
                .map(str::to_string)
                .collect();
            for o in gone {
                self.unlink(&o, &uid);
            }
        }
        for o in owner_uids(&new) {
            self.dependents
                .entry(o.to_string())
                .or_default()
                .insert(uid.clone());
        }
        if needs_look(&new) {
            self.dirty.insert(uid.clone());
        }
        if new.deletion_timestamp.is_some() && has_finalizer(&new, FOREGROUND_FINALIZER) {
            // Its dependents are deleted in the foreground once all their owners are.
            if let Some(deps) = self.dependents.get(&uid) {
                self.dirty.extend(deps.iter().cloned());
            }
        }
        self.objects.insert(uid, (kind, new));
    }

    /// An object was deleted.
    pub fn delete(&mut self, meta: &ObjectMeta) {
        let Some(uid) = meta.uid.as_deref() else {
            return;
        };
        let Some((_, old)) = self.objects.remove(uid) else {
            return;
        };
        for o in owner_uids(&old) {
            // An owner deleted in the foreground may be waiting for this one.
            if self.objects.contains_key(o) {
                self.dirty.insert(o.to_string());
            }
        }
        let owners: Vec<String> = owner_uids(&old).map(str::to_string).collect();
        for o in owners {
            self.unlink(&o, uid);
        }
        // Its dependents may have lost their last owner.
        if let Some(deps) = self.dependents.get(uid) {
            self.dirty.extend(deps.iter().cloned());
        }
        self.dirty.remove(uid);
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    /// Rebuilds the graph from the caches (after a relist), every object to look at.
    fn rebuild(&mut self, objects: impl Iterator<Item = (usize, Arc<ObjectMeta>)>) {
        *self = Graph::default();
        for (kind, meta) in objects {
            self.apply(kind, &meta);
        }
    }

    /// Marks every object that has anything to decide.
    fn mark_all(&mut self) {
        let all: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, (_, m))| needs_look(m))
            .map(|(uid, _)| uid.clone())
            .collect();
        self.dirty.extend(all);
    }

    /// The objects marked since the last call, with what a pass needs of each.
    fn take_jobs(&mut self) -> Vec<Job> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut jobs = Vec::with_capacity(dirty.len());
        for uid in dirty {
            let Some((kind, meta)) = self.objects.get(&uid) else {
                continue;
            };
            let owners = owner_uids(meta)
                .filter_map(|o| {
                    self.objects.get(o).map(|(_, m)| {
                        let fg = m.deletion_timestamp.is_some()
                            && has_finalizer(m, FOREGROUND_FINALIZER);
                        (o.to_string(), fg)
                    })
                })
                .collect();
            let dependents = if meta.deletion_timestamp.is_some() {
                self.dependents
                    .get(&uid)
                    .into_iter()
                    .flatten()
                    .filter_map(|d| self.objects.get(d))
                    .filter_map(|(k, m)| {
                        let r = m.owner_references.iter().flatten().find(|r| r.uid == uid)?;
                        Some((*k, m.clone(), r.clone()))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            jobs.push(Job {
                kind: *kind,
                meta: meta.clone(),
                owners,
                dependents,
                uid,
            });
        }
        jobs
    }
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
        graph: Default::default(),
        trigger: Notify::new(),
    });
    let relisted = Arc::new(std::sync::atomic::AtomicBool::new(true));
    for (i, (k, writer)) in writers.into_iter().enumerate() {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &k.ar);
        // Object by object: one whose metadata does not decode is skipped, not the end
        // of this kind's cache (which would stop every pass).
        let api = tolerant::api_with(&api, &k.ar);
        let g = gc.clone();
        let relisted = relisted.clone();
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
                        // Deletions missed while the watch was down are only seen as
                        // the cache's new state: the graph is rebuilt from the caches.
                        relisted.store(true, Ordering::SeqCst);
                        g.trigger.notify_one();
                    }
                    Ok(Event::Delete(o)) => {
                        g.lock_graph().delete(&o.metadata);
                        g.trigger.notify_one();
                    }
                    Ok(Event::Apply(o)) => {
                        let mut graph = g.lock_graph();
                        graph.apply(i, &o.metadata);
                        let marked = !graph.dirty.is_empty();
                        drop(graph);
                        if marked {
                            g.trigger.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(kind = %k.ar.kind, error = %e, "gc watch error"),
                }
            }
        });
    }
    let mut last_full = std::time::Instant::now();
    loop {
        let _ = tokio::time::timeout(FULL_PASS_PERIOD, gc.trigger.notified()).await;
        if gc.not_ready.load(Ordering::SeqCst) > 0 {
            continue;
        }
        // Coalesce a burst of events into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let jobs = {
            let rebuild = relisted.swap(false, Ordering::SeqCst);
            let mut graph = gc.lock_graph();
            if rebuild {
                graph.rebuild(gc.watched.iter().enumerate().flat_map(|(i, w)| {
                    w.store
                        .state()
                        .into_iter()
                        .map(move |o| (i, Arc::new(trimmed(&o.metadata))))
                }));
            }
            if last_full.elapsed() >= FULL_PASS_PERIOD {
                last_full = std::time::Instant::now();
                graph.mark_all();
            }
            graph.take_jobs()
        };
        if let Err(e) = gc.pass(jobs).await {
            tracing::info!(error = %format!("{e:#}"), "garbage collector pass");
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

    fn lock_graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        // A poisoned lock only means a watch task panicked mid-update; the next relist
        // rebuilds the graph.
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides about each of `jobs` and acts. An object whose action failed is marked
    /// again (the first error is returned after the others are done).
    async fn pass(&self, jobs: Vec<Job>) -> anyhow::Result<()> {
        let mut live_absent: HashSet<String> = HashSet::new();
        let mut live_present: HashSet<String> = HashSet::new();
        let mut first_error = None;
        for job in jobs {
            if let Err(e) = self.look(&job, &mut live_absent, &mut live_present).await {
                self.lock_graph().dirty.insert(job.uid.clone());
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Decides about one object and acts.
    async fn look(
        &self,
        job: &Job,
        live_absent: &mut HashSet<String>,
        live_present: &mut HashSet<String>,
    ) -> anyhow::Result<()> {
        let meta = job.meta.as_ref();
        let owners = meta.owner_references.as_deref().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let ns = meta.namespace.as_deref();
        // Owners missing from the caches are checked live before being called absent.
        for r in owners {
            if job.owners.contains_key(&r.uid)
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
        let exists =
            |r: &OwnerReference| job.owners.contains_key(&r.uid) || live_present.contains(&r.uid);
        let foreground = |uid: &str| job.owners.get(uid).copied().unwrap_or(false);
        let dep_refs: Vec<(&ObjectMeta, &OwnerReference)> = job
            .dependents
            .iter()
            .map(|(_, m, r)| (m.as_ref(), r))
            .collect();
        if deleting && has_finalizer(meta, ORPHAN_FINALIZER) {
            for (k, dep, _) in &job.dependents {
                self.remove_owners(&self.watched[*k].kind, dep, std::slice::from_ref(&job.uid))
                    .await?;
            }
        } else if deleting && has_finalizer(meta, FOREGROUND_FINALIZER) {
            for (k, dep, _) in &job.dependents {
                if dep.deletion_timestamp.is_none() {
                    self.delete(&self.watched[*k].kind, dep, "Foreground")
                        .await?;
                }
            }
        }
        let kind = &self.watched[job.kind].kind;
        for action in decide(meta, &exists, &foreground, &dep_refs) {
            match action {
                Action::Delete(policy) => self.delete(kind, meta, &policy).await?,
                Action::RemoveOwners(uids) => self.remove_owners(kind, meta, &uids).await?,
                Action::RemoveFinalizer(f) => self.remove_finalizer(kind, meta, &f).await?,
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

    fn meta(uid: &str, owners: &[&str], deleting: Option<&str>) -> ObjectMeta {
        let refs: Vec<serde_json::Value> = owners.iter().map(|o| owner(o, true)).collect();
        let mut m = json!({"name": uid, "namespace": "default", "uid": uid,
                           "ownerReferences": refs});
        if let Some(f) = deleting {
            m["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
            m["finalizers"] = json!([f]);
        }
        serde_json::from_value(m).expect("metadata")
    }

    fn dirty(g: &mut Graph) -> Vec<String> {
        let mut uids: Vec<String> = g.take_jobs().into_iter().map(|j| j.uid).collect();
        uids.sort();
        uids
    }

    #[test]
    fn the_graph_marks_only_what_a_change_may_decide() {
        let mut g = Graph::default();
        g.apply(0, &meta("rs", &[], None));
        g.apply(1, &meta("p1", &["rs"], None));
        g.apply(1, &meta("p2", &["rs"], None));
        // Objects with owners are looked at; an object without is not.
        assert_eq!(dirty(&mut g), ["p1", "p2"]);
        // A pod's update: that pod only, seeing its owner present.
        g.apply(1, &meta("p1", &["rs"], None));
        let jobs = g.take_jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].owners.get("rs"), Some(&false));
        // The owner deleted: its dependents, which now find no owner in the graph.
        g.delete(&meta("rs", &[], None));
        let jobs = g.take_jobs();
        let mut uids: Vec<&str> = jobs.iter().map(|j| j.uid.as_str()).collect();
        uids.sort();
        assert_eq!(uids, ["p1", "p2"]);
        assert!(jobs.iter().all(|j| j.owners.is_empty()));
        // Dependents deleted: nothing left to look at.
        g.delete(&meta("p1", &["rs"], None));
        g.delete(&meta("p2", &["rs"], None));
        assert!(dirty(&mut g).is_empty());
        assert!(g.dependents.is_empty() && g.objects.is_empty());
    }

    #[test]
    fn a_foreground_deletion_marks_dependents_then_the_owner() {
        let mut g = Graph::default();
        g.apply(0, &meta("d", &[], None));
        g.apply(1, &meta("rs", &["d"], None));
        g.take_jobs();
        g.apply(0, &meta("d", &[], Some(FOREGROUND_FINALIZER)));
        let jobs = g.take_jobs();
        let mut uids: Vec<&str> = jobs.iter().map(|j| j.uid.as_str()).collect();
        uids.sort();
        assert_eq!(uids, ["d", "rs"]);
        let owner = jobs.iter().find(|j| j.uid == "d").expect("owner");
        assert_eq!(
            owner.dependents.len(),
            1,
            "the deleting owner sees its dependent"
        );
        let dep = jobs.iter().find(|j| j.uid == "rs").expect("dependent");
        assert_eq!(
            dep.owners.get("d"),
            Some(&true),
            "its owner is in the foreground"
        );
        // The dependent gone: the owner is looked at again (to lose its finalizer).
        g.delete(&meta("rs", &["d"], None));
        let jobs = g.take_jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].uid, "d");
        assert!(jobs[0].dependents.is_empty());
    }

    #[test]
    fn owners_dropped_from_an_object_are_unlinked() {
        let mut g = Graph::default();
        g.apply(1, &meta("p", &["a", "b"], None));
        g.apply(1, &meta("p", &["b"], None));
        assert!(!g.dependents.contains_key("a"));
        assert!(g.dependents["b"].contains("p"));
    }
}
