//! Recording Kubernetes Events (core/v1, what `kubectl describe` reads) the way
//! client-go's event recorder does: one Event per occurrence, sent in the background so a
//! controller never waits on it, with repeats of the same reason and message folded into
//! a count. At most [`MAX_IN_FLIGHT`] sends per recorder run at once: a scheduler
//! binding a thousand pods must not open a thousand connections for its events (client-go
//! likewise queues events behind one sink per broadcaster).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

/// `type` of a normal event.
pub const NORMAL: &str = "Normal";
/// `type` of a warning event.
pub const WARNING: &str = "Warning";

/// (namespace, involved uid, field path, reason, message) of an event already sent: as
/// client-go's aggregation key, events about two containers of one pod stay apart.
type SeenKey = (String, String, String, String, String);

/// Most event writes of one recorder in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;

/// Sends Events on behalf of one component (e.g. `deployment-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    host: Option<String>,
    in_flight: Arc<tokio::sync::Semaphore>,
    seen: Arc<Mutex<HashMap<SeenKey, (String, i32)>>>,
    // involved uid -> (tokens, last refill): client-go's spam filter.
    buckets: Arc<Mutex<HashMap<String, (f64, std::time::Instant)>>>,
}

/// Events one object may get in a burst (client-go's spam filter burst).
pub const SPAM_BURST: f64 = 25.0;
/// Seconds for one more event token per object (client-go: one per 5 minutes).
pub const SPAM_REFILL_SECS: f64 = 300.0;

/// Takes one token from a bucket that holds at most [`SPAM_BURST`] and gains one every
/// [`SPAM_REFILL_SECS`]; false when empty.
pub fn take_token(bucket: &mut (f64, std::time::Instant), now: std::time::Instant) -> bool {
    let refill = now.duration_since(bucket.1).as_secs_f64() / SPAM_REFILL_SECS;
    bucket.0 = (bucket.0 + refill).min(SPAM_BURST);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

/// The reference to `obj` an Event's involvedObject holds.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder for `component`.
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            host: None,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            seen: Arc::default(),
            buckets: Arc::default(),
        }
    }

    /// The same recorder, its events naming `host` as their source host and reporting
    /// instance (the kubelet names its node).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Records an event about `obj` in the background.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.publish_ref(object_ref(obj), type_, reason, message);
    }

    /// Records an event about the object `involved` in the background.
    pub fn publish_ref(
        &self,
        involved: ObjectReference,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = (
            ns.clone(),
            involved.uid.clone().unwrap_or_default(),
            involved.field_path.clone().unwrap_or_default(),
            reason.to_string(),
            message.clone(),
        );
        {
            // Like client-go, an object that gets many events (a ReplicaSet creating
            // a thousand pods) gets the first burst only, then one per refill period.
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() > 8192 {
                buckets.clear();
            }
            let now = std::time::Instant::now();
            let bucket = buckets
                .entry(involved.uid.clone().unwrap_or_default())
                .or_insert((SPAM_BURST, now));
            if !take_token(bucket, now) {
                return;
            }
        }
        let now = Timestamp::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let previous = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 4096 {
                seen.clear();
            }
            let entry = seen.get(&key).cloned();
            match &entry {
                Some((name, count)) => {
                    seen.insert(key.clone(), (name.clone(), count + 1));
                }
                None => {
                    let name = format!(
                        "{}.{:x}",
                        involved.name.clone().unwrap_or_default(),
                        now.as_nanosecond()
                    );
                    seen.insert(key.clone(), (name, 1));
                }
            }
            entry
        };
        if let Some((name, count)) = previous {
            let patch = serde_json::json!({
                "count": count + 1,
                "lastTimestamp": Time(now),
            });
            let in_flight = self.in_flight.clone();
            tokio::spawn(async move {
                let _permit = in_flight.acquire_owned().await;
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(event = %name, error = %e, "patching event");
                }
            });
            return;
        }
        let name = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.get(&key).map(|(n, _)| n.clone()).unwrap_or_default()
        };
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let _permit = in_flight.acquire_owned().await;
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(event = %ev.name_any(), error = %e, "creating event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn spam_filter_allows_a_burst_then_one_per_period() {
        let t0 = Instant::now();
        let mut b = (SPAM_BURST, t0);
        for _ in 0..25 {
            assert!(take_token(&mut b, t0));
        }
        assert!(!take_token(&mut b, t0));
        assert!(take_token(&mut b, t0 + Duration::from_secs(300)));
        assert!(!take_token(&mut b, t0 + Duration::from_secs(301)));
    }
}
