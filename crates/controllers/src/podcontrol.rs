//! Creating and deleting a controller's pods as kube's `PodControl` and
//! `slowStartBatch` do it, for every controller that owns pods (ReplicaSet, DaemonSet,
//! Job): creates in batches of 1, 2, 4... (so that a create that keeps failing fails
//! fast), deletes all at once, each request recorded in the owner's expectations and
//! as an Event (`SuccessfulCreate`/`FailedCreate`, `SuccessfulDelete`/`FailedDelete`,
//! kube's reasons and messages).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::events::{Recorder, NORMAL, WARNING};
use crate::util::is_not_found;

/// How long unfulfilled expectations block a sync (kube: 5 minutes; shorter here since a
/// lost watch event costs more than a rare double create).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// Most pod creates (or deletes) of one sync in flight at once. Batches still grow 1, 2, 4... (kube's
/// slowStartBatch, so that a failing create fails fast), but each request in flight holds
/// one HTTP/1 connection of the client's pool: past a few the API server only gets
/// slower (see BENCH.md).
pub const CREATES_IN_FLIGHT: usize = 16;

/// Pods a controller created or deleted and has not yet seen in its cache
/// (client-go's ControllerExpectations, tracked by name and uid). Checking them costs a
/// cache lookup per pending pod, not a scan of every pod.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expect>>,
}

struct Expect {
    /// Names of pods created.
    created: HashSet<String>,
    /// Name -> uid of pods deleted.
    deleted: HashMap<String, String>,
    at: Instant,
}

impl Expectations {
    /// Records pods created (names) and deleted ((name, uid) pairs) for `key`.
    pub fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<(String, String)>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(key.to_string()).or_insert_with(|| Expect {
            created: HashSet::new(),
            deleted: HashMap::new(),
            at: Instant::now(),
        });
        e.created.extend(created);
        e.deleted.extend(deleted);
        e.at = Instant::now();
    }

    /// Whether the cache shows everything expected for `key`; `lookup` finds a pod of the
    /// key's namespace in the cache by name. Satisfied expectations are dropped.
    pub fn satisfied(&self, key: &str, lookup: impl Fn(&str) -> Option<Arc<Pod>>) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = m.get_mut(key) else { return true };
        if e.at.elapsed() > EXPECTATIONS_TIMEOUT {
            m.remove(key);
            return true;
        }
        e.created.retain(|name| lookup(name).is_none());
        e.deleted.retain(|name, uid| {
            lookup(name).is_some_and(|p| {
                p.metadata.uid.as_deref() == Some(uid.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            })
        });
        let done = e.created.is_empty() && e.deleted.is_empty();
        if done {
            m.remove(key);
        }
        done
    }

    /// Forgets `key`.
    pub fn delete(&self, key: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The controller the pods belong to: where Events go and whose expectations count
/// the requests.
pub struct Owner<'a, K> {
    /// The owning object (the Events' involved object).
    pub obj: &'a K,
    /// Its key in the controller's queue and expectations.
    pub key: &'a str,
    /// The controller's Event recorder.
    pub recorder: &'a Recorder,
    /// The controller's expectations.
    pub expectations: &'a Expectations,
}

/// The batch sizes of a slow start of `n` creations: 1, 2, 4..., the last one what is
/// left (kube's `slowStartBatch` with `SlowStartInitialBatchSize` 1).
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut batch) = (n, 1usize);
    while left > 0 {
        let now = batch.min(left);
        out.push(now);
        left -= now;
        batch = batch.saturating_mul(2);
    }
    out
}

/// Creates `pods` in slow-start batches; a batch with a failure ends it (the pods of
/// later batches are not tried). `what(i)` names the i-th pod's purpose in the error
/// (e.g. "the pod of ds on node n1").
pub async fn create_pods<K: Resource<DynamicType = ()>>(
    owner: &Owner<'_, K>,
    api: &Api<Pod>,
    pods: Vec<Pod>,
    what: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    let mut pods = pods.into_iter().enumerate();
    for size in slow_start_batches(pods.len()) {
        let batch: Vec<(usize, Pod)> = pods.by_ref().take(size).collect();
        let futs: Vec<_> = batch
            .into_iter()
            .map(|(i, pod)| {
                let api = api.clone();
                async move { (i, api.create(&PostParams::default(), &pod).await) }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(futs)
            .buffer_unordered(CREATES_IN_FLIGHT)
            .collect()
            .await;
        let mut created = Vec::new();
        let mut failed = None;
        for (i, r) in results {
            match r {
                Ok(p) => {
                    owner.recorder.publish(
                        owner.obj,
                        NORMAL,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    );
                    created.push(p.name_any());
                }
                Err(e) => {
                    owner.recorder.publish(
                        owner.obj,
                        WARNING,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    failed = Some((i, e));
                }
            }
        }
        owner.expectations.expect(owner.key, created, vec![]);
        if let Some((i, e)) = failed {
            return Err(e).with_context(|| format!("creating {}", what(i)));
        }
    }
    Ok(())
}

/// Deletes `pods` (name, uid) with `params`, all at once; a pod already gone is no
/// error. A failure forgets the owner's expectations (the cache decides again) and is
/// returned once every delete was tried.
pub async fn delete_pods<K: Resource<DynamicType = ()>>(
    owner: &Owner<'_, K>,
    api: &Api<Pod>,
    pods: &[(String, String)],
    params: &DeleteParams,
) -> anyhow::Result<()> {
    if pods.is_empty() {
        return Ok(());
    }
    owner.expectations.expect(owner.key, vec![], pods.to_vec());
    let futs: Vec<_> = pods
        .iter()
        .map(|(name, _)| {
            let api = api.clone();
            let name = name.clone();
            let params = params.clone();
            async move {
                let r = api.delete(&name, &params).await;
                (name, r)
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(futs)
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await;
    let mut err = None;
    for (name, r) in results {
        match r {
            Ok(_) => owner.recorder.publish(
                owner.obj,
                NORMAL,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                owner.recorder.publish(
                    owner.obj,
                    WARNING,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                );
                owner.expectations.delete(owner.key);
                err = Some(
                    anyhow::Error::new(e).context(format!("deleting pod {name} of {}", owner.key)),
                );
            }
        }
    }
    err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;
    use skiff_testkit::fakeapi::{FakeApi, Reply};

    use crate::testing::{collection, writes_but_events};

    #[test]
    fn slow_start_doubles_up_to_what_is_left() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(7), vec![1, 2, 4]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }

    fn rs() -> ReplicaSet {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "rs-uid"}}),
        )
        .expect("rs")
    }

    fn pod(name: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}}))
            .expect("pod")
    }

    #[tokio::test]
    async fn a_failed_create_stops_the_slow_start_and_names_the_pod() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        // The third create (the second batch's second) fails, so the third batch
        // never starts.
        let n = std::sync::atomic::AtomicUsize::new(0);
        fake.on("POST", &pods, move |req| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i == 2 {
                Reply::status(403, "Forbidden", "pods is forbidden: quota")
            } else {
                Reply::created(req.body.clone().unwrap_or_default())
            }
        });
        let (obj, recorder, expectations) = (
            rs(),
            Recorder::new(fake.client(), "t"),
            Expectations::default(),
        );
        let owner = Owner {
            obj: &obj,
            key: "default/web",
            recorder: &recorder,
            expectations: &expectations,
        };
        let api: Api<Pod> = Api::namespaced(fake.client(), "default");
        let batch: Vec<Pod> = (0..7).map(|i| pod(&format!("p{i}"))).collect();
        let err = create_pods(&owner, &api, batch, |i| format!("pod #{i}"))
            .await
            .expect_err("the third create fails");
        let msg = format!("{err:#}");
        assert!(msg.starts_with("creating pod #"), "{msg}");
        assert!(msg.contains("quota"), "{msg}");
        assert_eq!(writes_but_events(&fake).len(), 3);
    }

    #[tokio::test]
    async fn deletes_ignore_pods_already_gone_and_report_the_others() {
        let fake = FakeApi::new();
        let pods = collection::<Pod>("default");
        fake.reply("DELETE", &format!("{pods}/a"), Reply::ok(json!(pod("a"))));
        fake.reply("DELETE", &format!("{pods}/gone"), Reply::not_found());
        fake.reply(
            "DELETE",
            &format!("{pods}/stuck"),
            Reply::status(500, "InternalError", "etcd is down"),
        );
        let (obj, recorder, expectations) = (
            rs(),
            Recorder::new(fake.client(), "t"),
            Expectations::default(),
        );
        let owner = Owner {
            obj: &obj,
            key: "default/web",
            recorder: &recorder,
            expectations: &expectations,
        };
        let api: Api<Pod> = Api::namespaced(fake.client(), "default");
        delete_pods(
            &owner,
            &api,
            &[("a".into(), "ua".into()), ("gone".into(), "ug".into())],
            &DeleteParams::default(),
        )
        .await
        .expect("gone is no error");
        let err = delete_pods(
            &owner,
            &api,
            &[("stuck".into(), "us".into())],
            &DeleteParams::default(),
        )
        .await
        .expect_err("a 500 is");
        assert!(format!("{err:#}").starts_with("deleting pod stuck of default/web"));
        // The failure forgot the expectations, so the next sync may act at once.
        assert!(expectations.satisfied("default/web", |_| None));
    }
}
