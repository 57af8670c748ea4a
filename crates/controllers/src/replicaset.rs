//! The ReplicaSet controller: keeps `spec.replicas` active pods per ReplicaSet, adopts
//! matching orphans and releases pods that no longer match, deletes the least valuable
//! pods first, and reports status (replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas, observedGeneration).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::events::Recorder;
use crate::informer::Informer;
use crate::podcontrol::{create_pods, delete_pods, Expectations, Owner};
use crate::podendpoint;
use crate::podrank::pods_to_delete;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::{
    controller_of, controller_ref, is_deleting, is_not_found, pod_active, pod_available,
    pod_owner_keys, pod_ready, selector_is_empty, selector_matches, split_key,
};
use crate::Informers;

/// Workers, as kube-controller-manager's `--concurrent-replicaset-syncs` default: a sync mostly waits
/// for API calls, so two workers left keys queued for seconds at a thousand nodes.
const WORKERS: usize = 5;

/// Most pods created or deleted in one sync (kube's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;
struct Ctx {
    client: Client,
    pods: Arc<Informer<Pod>>,
    rss: Arc<Informer<ReplicaSet>>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Starts the controller.
pub fn run(client: Client, inf: &Informers) {
    let queue = WorkQueue::new();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: inf.pods.clone(),
        rss: inf.replicasets.clone(),
        recorder: Recorder::new(client, "replicaset-controller"),
        expectations: Expectations::default(),
    });
    let rss = inf.replicasets.clone();
    Triggers::new(&queue, &inf.replicasets)
        .primary()
        // Its controller if it is a ReplicaSet, else the ReplicaSets that may adopt it.
        .watches(&inf.pods, move |p, _| {
            pod_owner_keys(&rss.list(), p, |o| o.spec.as_ref().map(|s| &s.selector))
        })
        // A periodic full resync catches what event mapping misses (e.g. a pod whose
        // labels changed away from a ReplicaSet).
        .every(Duration::from_secs(30));
    run_workers("replicaset", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(rs) = ctx.rss.store().get(&ObjectRef::new(name).within(ns)) else {
        ctx.expectations.delete(key);
        return Ok(None);
    };
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone();
    let rs_uid = rs.uid().unwrap_or_default();
    let ns_pods = podendpoint::claim_candidates(&ctx.pods, ns, &selector, &rs_uid);
    let satisfied = ctx.expectations.satisfied(key, |pod| {
        ctx.pods.store().get(&ObjectRef::new(pod).within(ns))
    });
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);

    // Claim pods: keep owned matching ones, adopt matching orphans, release the rest.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for p in ns_pods.iter().filter(|p| pod_active(p)) {
        let matches = !selector_is_empty(&selector) && selector_matches(&selector, p.labels());
        match controller_of(p.as_ref()) {
            Some(r) if r.uid == rs_uid => {
                if matches {
                    owned.push(p.clone());
                } else if !is_deleting(rs.as_ref()) {
                    release(&pods_api, p, &rs_uid).await?;
                }
            }
            Some(_) => {}
            None => {
                let adopted = matches
                    && !is_deleting(rs.as_ref())
                    && adopt(&pods_api, p, rs.as_ref()).await?;
                if adopted {
                    owned.push(p.clone());
                }
            }
        }
    }

    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    if satisfied && !is_deleting(rs.as_ref()) {
        manage(ctx, key, &rs, &owned, want).await?;
    }

    // Status.
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0) as i64;
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully = owned
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| pod_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| pod_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let new = ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(fully as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if status_differs(&old, &new) {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({"status": {
            "replicas": new.replicas,
            "fullyLabeledReplicas": new.fully_labeled_replicas,
            "readyReplicas": new.ready_replicas,
            "availableReplicas": new.available_replicas,
            "observedGeneration": new.observed_generation,
        }});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("updating status of replicaset {key}"))
            }
        }
    }
    if min_ready > 0 && ready > available {
        return Ok(Some(Duration::from_secs(min_ready as u64)));
    }
    Ok(None)
}

fn status_differs(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    a.replicas != b.replicas
        || a.fully_labeled_replicas.unwrap_or(0) != b.fully_labeled_replicas.unwrap_or(0)
        || a.ready_replicas.unwrap_or(0) != b.ready_replicas.unwrap_or(0)
        || a.available_replicas.unwrap_or(0) != b.available_replicas.unwrap_or(0)
        || a.observed_generation != b.observed_generation
}

async fn manage(
    ctx: &Ctx,
    key: &str,
    rs: &Arc<ReplicaSet>,
    owned: &[Arc<Pod>],
    want: usize,
) -> anyhow::Result<()> {
    let ns = rs.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if owned.len() < want {
        let diff = (want - owned.len()).min(BURST_REPLICAS);
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let tmeta = template.metadata.clone().unwrap_or_default();
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", rs.name_any())),
                namespace: Some(ns.clone()),
                labels: tmeta.labels.clone(),
                annotations: tmeta.annotations.clone(),
                finalizers: tmeta.finalizers.clone(),
                owner_references: Some(vec![controller_ref(rs.as_ref())]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        let owner = Owner {
            obj: rs.as_ref(),
            key,
            recorder: &ctx.recorder,
            expectations: &ctx.expectations,
        };
        create_pods(&owner, &pods_api, vec![pod; diff], |_| {
            format!("pods for replicaset {key}")
        })
        .await?;
    } else if owned.len() > want {
        let diff = (owned.len() - want).min(BURST_REPLICAS);
        // Rank by siblings: active pods of ReplicaSets with the same controller.
        let owner_uid = controller_of(rs.as_ref()).map(|r| r.uid.clone());
        let sibling_rs: HashSet<String> = ctx
            .rss
            .list()
            .iter()
            .filter(|o| o.namespace() == rs.namespace())
            .filter(|o| match &owner_uid {
                Some(u) => controller_of(o.as_ref()).map(|r| &r.uid) == Some(u),
                None => o.uid() == rs.uid(),
            })
            .filter_map(|o| o.uid())
            .collect();
        let sibling_pods: Vec<Arc<Pod>> = sibling_rs
            .iter()
            .flat_map(|uid| podendpoint::controlled(&ctx.pods, uid))
            .collect();
        let related: Vec<&Pod> = sibling_pods
            .iter()
            .filter(|p| pod_active(p))
            .map(|p| p.as_ref())
            .collect();
        let owned_refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let victims = pods_to_delete(&owned_refs, &related, diff);
        let victims: Vec<(String, String)> = victims
            .iter()
            .filter_map(|p| Some((p.name_any(), p.uid()?)))
            .collect();
        let owner = Owner {
            obj: rs.as_ref(),
            key,
            recorder: &ctx.recorder,
            expectations: &ctx.expectations,
        };
        delete_pods(&owner, &pods_api, &victims, &DeleteParams::default()).await?;
    }
    Ok(())
}

/// Makes `owner` the pod's controller (a merge patch guarded by the pod's
/// resourceVersion); false if the pod is gone.
pub(crate) async fn adopt<K: kube::Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    pod: &Pod,
    owner: &K,
) -> anyhow::Result<bool> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(controller_ref(owner));
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.resource_version()}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("adopting pod {}", pod.name_any())),
    }
}

/// Drops the owner reference to `owner_uid` from the pod.
pub(crate) async fn release(api: &Api<Pod>, pod: &Pod, owner_uid: &str) -> anyhow::Result<()> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.resource_version()}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("releasing pod {}", pod.name_any())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{collection, informer, writes_but_events};

    use std::collections::HashMap;

    fn pod(name: &str, uid: &str, deleting: bool) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": uid}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    #[test]
    fn expectations_wait_for_creates_and_deletes_to_show() {
        let e = Expectations::default();
        assert!(e.satisfied("default/rs", |_| None), "nothing expected");
        e.expect(
            "default/rs",
            vec!["rs-a".into(), "rs-b".into()],
            vec![("rs-old".into(), "u-old".into())],
        );
        let mut cache: HashMap<String, Arc<Pod>> = HashMap::new();
        cache.insert("rs-old".into(), pod("rs-old", "u-old", false));
        cache.insert("rs-a".into(), pod("rs-a", "u-a", false));
        assert!(!e.satisfied("default/rs", |n| cache.get(n).cloned()));
        cache.insert("rs-b".into(), pod("rs-b", "u-b", false));
        assert!(
            !e.satisfied("default/rs", |n| cache.get(n).cloned()),
            "old pod still there"
        );
        // Terminating counts as deleted; so does a new pod of the same name.
        cache.insert("rs-old".into(), pod("rs-old", "u-old", true));
        assert!(e.satisfied("default/rs", |n| cache.get(n).cloned()));
        e.expect("default/rs", vec![], vec![("rs-a".into(), "u-a".into())]);
        cache.insert("rs-a".into(), pod("rs-a", "u-a2", false));
        assert!(e.satisfied("default/rs", |n| cache.get(n).cloned()));
    }

    const RS_UID: &str = "rs-uid";

    /// ReplicaSet `web` of `default` wanting `replicas` pods labelled `app=web`.
    fn replicaset(replicas: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": RS_UID,
                         "resourceVersion": "5", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "httpd"}]}}}})
    }

    /// A pod labelled `app=web`, owned by the ReplicaSet when `owned`, on `node` (or
    /// pending without one), Ready or not.
    fn web_pod(name: &str, owned: bool, node: Option<&str>, ready: bool) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "7", "labels": {"app": "web"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "httpd"}]},
            "status": {"phase": "Pending"}});
        if owned {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "web", "uid": RS_UID, "controller": true}]);
        }
        if let Some(node) = node {
            p["spec"]["nodeName"] = json!(node);
            p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready {"True"} else {"False"},
                "lastTransitionTime": "2026-01-01T00:00:10Z"}]});
        }
        p
    }

    /// The controller's context over `fake`, its caches holding `rs` and `pods`.
    async fn ctx(fake: &FakeApi, rs: Value, pods: Vec<Value>) -> Ctx {
        let client = fake.client();
        Ctx {
            pods: informer(fake, pods).await,
            rss: informer(fake, vec![rs]).await,
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            expectations: Expectations::default(),
        }
    }

    #[tokio::test]
    async fn sync_adopts_an_orphan_creates_the_missing_pod_and_reports_status() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        let orphan = web_pod("orphan", false, Some("n1"), true);
        fake.reply(
            "PATCH",
            &format!("{pods}/orphan"),
            Reply::ok(orphan.clone()),
        );
        fake.echo_creates(&pods);
        let status = format!("{}/web/status", collection::<ReplicaSet>("default"));
        fake.reply("PATCH", &status, Reply::ok(replicaset(3)));
        let ctx = ctx(
            &fake,
            replicaset(3),
            vec![web_pod("web-a", true, Some("n1"), true), orphan],
        )
        .await;
        fake.clear();

        sync(&ctx, "default/web").await.expect("sync");

        let writes = writes_but_events(&fake);
        let lines: Vec<String> = writes.iter().map(|r| r.line()).collect();
        assert_eq!(
            lines,
            [
                format!("PATCH {pods}/orphan"),
                format!("POST {pods}"),
                format!("PATCH {status}"),
            ],
            "{writes:#?}"
        );
        // Adoption: a merge patch adding the controller reference, guarded by the
        // pod's resourceVersion.
        let adopt = writes[0].body.as_ref().expect("patch body");
        assert_eq!(
            writes[0].content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(adopt["metadata"]["resourceVersion"], "7");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["uid"], RS_UID);
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["controller"], true);
        // The new pod: from the template, named by generateName, controlled by the
        // ReplicaSet.
        let pod = writes[1].body.as_ref().expect("pod");
        assert_eq!(pod["metadata"]["generateName"], "web-");
        assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], RS_UID);
        assert_eq!(pod["spec"]["containers"][0]["image"], "httpd");
        // Status counts the pods it owns now (the new one is not in the cache yet).
        assert_eq!(
            writes[2].body.as_ref().expect("status")["status"],
            json!({"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                   "availableReplicas": 2, "observedGeneration": 1})
        );

        // Until the cache shows the created pod, another sync creates nothing (the
        // expectations of client-go's ReplicaSet controller).
        fake.clear();
        sync(&ctx, "default/web").await.expect("second sync");
        assert!(
            !fake
                .writes()
                .iter()
                .any(|r| r.line() == format!("POST {pods}")),
            "{:#?}",
            fake.writes()
        );
    }

    #[tokio::test]
    async fn sync_deletes_the_least_valuable_pods_first() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        for name in ["ready", "pending", "unready"] {
            fake.reply(
                "DELETE",
                &format!("{pods}/{name}"),
                Reply::ok(web_pod(name, true, None, false)),
            );
        }
        let status = format!("{}/web/status", collection::<ReplicaSet>("default"));
        fake.reply("PATCH", &status, Reply::ok(replicaset(1)));
        let ctx = ctx(
            &fake,
            replicaset(1),
            vec![
                web_pod("ready", true, Some("n1"), true),
                web_pod("pending", true, None, false),
                web_pod("unready", true, Some("n2"), false),
            ],
        )
        .await;
        fake.clear();

        sync(&ctx, "default/web").await.expect("sync");

        let writes = writes_but_events(&fake);
        // The two deletes run concurrently: compare them as a set.
        let mut deleted: Vec<String> = writes
            .iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path.clone())
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [format!("{pods}/pending"), format!("{pods}/unready")],
            "{writes:#?}"
        );
        assert!(!writes.iter().any(|r| r.method == "POST"), "{writes:#?}");
        let last = writes.last().expect("a status write");
        assert_eq!(last.line(), format!("PATCH {status}"));
        assert_eq!(
            last.body.as_ref().expect("status")["status"]["replicas"],
            3,
            "status counts the pods owned before the deletes"
        );
    }
}
