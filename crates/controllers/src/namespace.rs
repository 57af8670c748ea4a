//! The namespace controller: a namespace being deleted is emptied of every namespaced
//! object of every kind discovery lists, its status conditions say how that goes, and
//! once nothing is left the `kubernetes` finalizer is removed through
//! `PUT /api/v1/namespaces/{name}/finalize`, which lets the API server delete it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use skiff_runtime::tolerant;

use crate::discovery::Kinds;
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{is_deleting, is_not_found, now};
use crate::Informers;

/// The finalizer the namespace controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

struct Ctx {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    Triggers::new(&queue, &inf.namespaces).primary_if(|ns, deleted| !deleted && is_deleting(ns));
    let ctx = Arc::new(Ctx {
        client,
        namespaces: inf.namespaces.clone(),
    });
    run_workers("namespace", queue, 2, move |name| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &name).await }
    });
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now()),
    }
}

async fn sync(ctx: &Ctx, name: &str) -> anyhow::Result<Option<Duration>> {
    let Some(ns) = ctx.namespaces.store().get(&ObjectRef::new(name)) else {
        return Ok(None);
    };
    if !is_deleting(ns.as_ref()) {
        return Ok(None);
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        return Ok(None);
    }
    let kinds = Kinds::discover(&ctx.client).await?;
    // Delete everything; count what is still there (kind -> count) and finalizers.
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    let mut finalizers_left: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    for kind in kinds.all.iter().filter(|k| k.namespaced) {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), name, &kind.ar);
        // Object by object: one whose metadata does not decode must still be deleted,
        // not fail the list and keep the namespace forever.
        let api = tolerant::api_with(&api, &kind.ar);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                failures.push(format!("{}: {e}", kind.ar.plural));
                continue;
            }
        };
        if list.items.is_empty() {
            continue;
        }
        let label = if kind.ar.group.is_empty() {
            kind.ar.plural.clone()
        } else {
            format!("{}.{}", kind.ar.plural, kind.ar.group)
        };
        *remaining.entry(label).or_default() += list.items.len();
        for obj in &list.items {
            for f in obj.finalizers() {
                *finalizers_left.entry(f.clone()).or_default() += 1;
            }
            if obj.meta().deletion_timestamp.is_some() {
                continue;
            }
            // The answer is the object: decoded tolerantly too.
            match api
                .delete(&obj.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => failures.push(format!("{} {}: {e}", kind.ar.plural, obj.name_any())),
            }
        }
    }
    let mut conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
    ];
    conditions.push(if failures.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                failures.len(),
                failures.join(", ")
            ),
        )
    });
    conditions.push(if remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let parts: Vec<String> = remaining
            .iter()
            .map(|(k, n)| format!("{k} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        )
    });
    conditions.push(if finalizers_left.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let parts: Vec<String> = finalizers_left
            .iter()
            .map(|(k, n)| format!("{k} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        )
    });
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let old: Vec<(String, String, Option<String>)> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.message))
        .collect();
    let new: Vec<(String, String, Option<String>)> = conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.message.clone()))
        .collect();
    if old != new {
        let patch =
            serde_json::json!({"status": {"phase": "Terminating", "conditions": conditions}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                tracing::debug!(namespace = name, error = %e, "updating namespace conditions")
            }
        }
    }
    if !remaining.is_empty() || !failures.is_empty() {
        return Ok(Some(Duration::from_secs(1)));
    }
    // Empty: release the namespace.
    let mut fin = (*ns).clone();
    if let Some(spec) = fin.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .into_iter()
                .filter(|f| f != KUBERNETES_FINALIZER)
                .collect(),
        );
    }
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &fin)
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("finalizing namespace {name}")),
    }
}
