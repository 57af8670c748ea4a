//! Recording Kubernetes Events (core/v1, what `kubectl describe` reads) the way
//! client-go's event recorder does: one Event per occurrence, sent in the background so a
//! controller never waits on it, with repeats of the same reason and message folded into
//! a count.

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

/// (namespace, involved uid, reason, message) of an event already sent.
type SeenKey = (String, String, String, String);

/// Sends Events on behalf of one component (e.g. `deployment-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    seen: Arc<Mutex<HashMap<SeenKey, (String, i32)>>>,
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
            seen: Arc::default(),
        }
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
            reason.to_string(),
            message.clone(),
        );
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
            tokio::spawn(async move {
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
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(event = %ev.name_any(), error = %e, "creating event");
            }
        });
    }
}
