//! What kube-apiserver's apiextensions controllers do in process, from one store watch
//! of the CustomResourceDefinitions: the naming controller (`status.acceptedNames`,
//! `NamesAccepted` with the conflicts), the establishing controller (`Established`),
//! the registry of served custom resources (`skiff_resources::registry::set_dynamic`,
//! installed before `Established` is written, so a client that waited for it is served)
//! and the `customresourcecleanup` finalizer (a deleted CRD's objects go, then the CRD).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_resources::crd::{self, CLEANUP_FINALIZER};
use skiff_resources::ResourceInfo;
use skiff_store::StoreError;

use crate::http::Query;
use crate::rest::{delete_object, update_object, UpdateMode, WriteOpts};
use crate::state::ApiState;
use crate::status::ApiResult;
use crate::storage::{custom_prefix, decode};
use crate::strategy::set_condition;

/// Where CRDs are stored.
const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The CRD resource itself.
fn crd_info() -> &'static ResourceInfo {
    skiff_resources::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CustomResourceDefinitions are registered")
}

/// One server's share of the process-wide registry of custom resources; dropped with
/// the server's task, it takes that server's resources out.
struct Owner(u64);

impl Owner {
    fn new() -> Owner {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Owner(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        skiff_resources::registry::set_dynamic(self.0, Vec::new());
    }
}

/// The status the naming and establishing controllers want for `crd` (`others`: every
/// CRD), or `None` when it is being deleted.
fn desired(crd: &Value, others: &[&Value]) -> Value {
    let mut out = crd.clone();
    match crd::names_conflict(crd, others) {
        Ok(()) => {
            out["status"]["acceptedNames"] =
                crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
            set_condition(
                &mut out,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                &mut out,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
        Err((reason, message)) => {
            set_condition(&mut out, "NamesAccepted", "False", reason, &message);
            if !crd::condition_true(crd, "Established") {
                set_condition(
                    &mut out,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
    out
}

/// One pass over every CRD: install what is served, write statuses that changed, finish
/// the deletions. Whether a deletion waits for objects' finalizers (and so another pass
/// is due without a CRD changing).
async fn reconcile(state: &ApiState, owner: &Owner) -> ApiResult<bool> {
    let (kvs, _) = state.store.list(PREFIX)?;
    let stored: Vec<(Value, i64)> = kvs
        .iter()
        .filter_map(|kv| decode(kv).ok().map(|v| (v, kv.mod_revision)))
        .collect();
    let all: Vec<&Value> = stored.iter().map(|(v, _)| v).collect();
    let wanted: Vec<Value> = stored
        .iter()
        .map(|(c, _)| {
            if c.pointer("/metadata/deletionTimestamp").is_some() {
                c.clone()
            } else {
                desired(c, &all)
            }
        })
        .collect();
    let infos: Vec<ResourceInfo> = wanted
        .iter()
        .filter(|c| crd::condition_true(c, "Established"))
        .flat_map(crd::served)
        .collect();
    skiff_resources::registry::set_dynamic(owner.0, infos);
    // The served group/versions changed: their APIServices follow.
    crate::apiservices::sync(state).await?;
    let info = crd_info();
    let mut waiting = false;
    for ((old, rev), new) in stored.iter().zip(wanted) {
        let name = old
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            waiting |= finalize(state, old, *rev).await?;
        } else if new.get("status") != old.get("status") {
            let mut opts = WriteOpts::internal();
            opts.subresource = Some("status".into());
            match update_object(
                state,
                info,
                None,
                name,
                new,
                UpdateMode::Status,
                Some(*rev),
                &opts,
            )
            .await
            {
                Ok(_) => {}
                // Someone wrote it meanwhile: the watch brings the next pass.
                Err(e) if e.reason == "Conflict" || e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(waiting)
}

/// The cleanup finalizer, as kube's CRD finalizer: the CRD is marked `Terminating`, every
/// object of it is deleted as a client's DELETE would (objects with finalizers of their
/// own stay, marked for deletion, until their controllers let go), and once none is
/// left, the finalizer goes (and with the last finalizer, the CRD). Whether it waits for
/// objects still there.
async fn finalize(state: &ApiState, crd: &Value, rev: i64) -> ApiResult<bool> {
    let has = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|f| f == CLEANUP_FINALIZER));
    if !has {
        return Ok(false);
    }
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !crd::condition_true(crd, "Terminating") {
        let mut new = crd.clone();
        set_condition(
            &mut new,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
        let mut opts = WriteOpts::internal();
        opts.subresource = Some("status".into());
        return match update_object(
            state,
            crd_info(),
            None,
            name,
            new,
            UpdateMode::Status,
            Some(rev),
            &opts,
        )
        .await
        {
            // Our own write brings the next pass, which deletes the objects.
            Ok(_) => Ok(false),
            Err(e) if e.reason == "Conflict" || e.reason == "NotFound" => Ok(false),
            Err(e) => Err(e),
        };
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = crd::storage_version(crd).unwrap_or("");
    if !group.is_empty() && !plural.is_empty() {
        let prefix = custom_prefix(group, plural);
        let (kvs, _) = state.store.list(&prefix)?;
        let info = skiff_resources::lookup(group, version, plural);
        let mut left = 0;
        for kv in &kvs {
            let obj = decode(kv)?;
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                left += 1;
                continue;
            }
            let meta = |f: &str| {
                obj.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let (ns, obj_name) = (meta("namespace"), meta("name").unwrap_or_default());
            let deleted = match info {
                Some(info) => delete_object(
                    state,
                    info,
                    ns.as_deref(),
                    &obj_name,
                    &json!({}),
                    &Query(HashMap::new()),
                    &WriteOpts::internal(),
                )
                .await
                // Gone, unless it came back marked for deletion.
                .map(|(_, obj)| obj.pointer("/metadata/deletionTimestamp").is_none()),
                // Not served (never established): nothing can hold it.
                None => match state.store.delete(&kv.key, None) {
                    Ok(_) | Err(StoreError::NotFound(_)) => Ok(true),
                    Err(e) => Err(e.into()),
                },
            };
            match deleted {
                Ok(true) => {}
                // Marked for deletion, its finalizers pending.
                Ok(false) => left += 1,
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
        if left > 0 {
            return Ok(true);
        }
    }
    let mut new = crd.clone();
    if let Some(a) = new
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        a.retain(|f| f != CLEANUP_FINALIZER);
    }
    match update_object(
        state,
        crd_info(),
        None,
        name,
        new,
        UpdateMode::Main,
        Some(rev),
        &WriteOpts::internal(),
    )
    .await
    {
        Ok(_) => Ok(false),
        Err(e) if e.reason == "Conflict" || e.reason == "NotFound" => Ok(false),
        Err(e) => Err(e),
    }
}

/// Installs the established CRDs' resources before the server serves; returns the
/// revision to follow the store from.
pub(crate) async fn start(state: Arc<ApiState>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let owner = Owner::new();
    let rev = state.store.current_revision()?;
    let waiting = reconcile(&state, &owner)
        .await
        .map_err(|e| anyhow::anyhow!("reconciling CustomResourceDefinitions: {}", e.message))?;
    Ok(tokio::spawn(run(state, owner, rev, waiting)))
}

/// Follows the CRDs forever: one pass per batch of events, and a relist when the watch
/// ends (or a pass failed). While a deletion waits for objects' finalizers, a pass also
/// runs every [`FINALIZER_POLL`].
async fn run(state: Arc<ApiState>, owner: Owner, mut rev: i64, mut waiting: bool) {
    loop {
        match state.store.watch(PREFIX, rev) {
            Ok(mut rx) => loop {
                let next = if waiting {
                    match tokio::time::timeout(FINALIZER_POLL, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            waiting = pass(&state, &owner).await;
                            continue;
                        }
                    }
                } else {
                    rx.recv().await
                };
                let Some(Ok(ev)) = next else { break };
                rev = ev.revision;
                while let Ok(Ok(more)) = rx.try_recv() {
                    rev = more.revision;
                }
                waiting = pass(&state, &owner).await;
            },
            Err(e) => tracing::warn!(error = %e, "watching CustomResourceDefinitions"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(r) = state.store.current_revision() {
            rev = r;
        }
        waiting = pass(&state, &owner).await;
    }
}

/// How often a CRD deletion that waits for its objects' finalizers looks again.
const FINALIZER_POLL: Duration = Duration::from_secs(1);

/// One [`reconcile`], its failure logged; whether a deletion waits (or the pass failed,
/// so another is due).
async fn pass(state: &ApiState, owner: &Owner) -> bool {
    match reconcile(state, owner).await {
        Ok(waiting) => waiting,
        Err(e) => {
            tracing::warn!(error = %e.message, "reconciling CustomResourceDefinitions");
            true
        }
    }
}
