//! Lists and watches that survive objects which do not decode as their type.
//!
//! An object written with wrong types (a Service port named `5`, a Deployment with
//! `replicas: 1.5`) may sit in the store: written before the API server checked types,
//! or written into the datastore directly. kube-rs decodes a whole list at once, so one
//! such object fails every list and every watch of its kind, and with it DNS, the proxy
//! and the controllers. Here each object is decoded on its own instead, as
//! [`Decoded`]: the good ones pass, a bad one is skipped and logged once with its key
//! and the serde error (with the path of the field), as client-go's informers do with an
//! object they cannot handle.
//!
//! What a bad object does to a consumer's view:
//! - in a list (first list or relist): it is left out, unless the consumer still has a
//!   last good state of it (see [`watcher_with`]), which is kept;
//! - added by a watch event: left out;
//! - a good object modified into a bad one: the event is dropped, so the consumer keeps
//!   the last good state (a stale object is safer than a missing one: the proxy keeps
//!   serving the Service, the garbage collector does not take its owner for gone);
//! - deleted: a delete event is passed on, with the last good state when the consumer
//!   has one, otherwise with an empty object carrying the bad object's metadata
//!   (name, namespace, uid: enough for every consumer to find what to forget).
//!
//! The stream never stops and never retries because of a bad object: only the API's
//! own errors go through kube's backoff.
//!
//! kube-core's `DeserializeGuard` does the same per object, but fails the whole list
//! when an object's *metadata* does not decode (e.g. `annotations: {a: 1}`), and it asks
//! for full objects where `K` is a metadata-only type; [`Decoded`] salvages what
//! metadata decodes and forwards `metadata_api`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, StreamExt};
use kube::api::ObjectMeta;
use kube::core::DynamicResourceScope;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One object of a list or watch, decoded on its own: either a `K` or the reason it is
/// not one.
#[derive(Debug, Clone)]
pub enum Decoded<K> {
    /// The object decoded as `K`.
    Ok(K),
    /// The object did not decode; what of its metadata did is kept.
    Bad(Box<Bad>),
}

/// An object that did not decode as its type.
#[derive(Debug, Clone, Default)]
pub struct Bad {
    /// Its metadata, as far as it decodes: fields of the wrong type are left out.
    pub meta: ObjectMeta,
    /// The decode error, with the path of the offending field
    /// (`spec.ports[0].name: invalid type: integer `5`, expected a string`).
    pub error: String,
}

impl Bad {
    /// The object's key as client-go's `MetaNamespaceKeyFunc` makes it: `namespace/name`,
    /// or `name` for a cluster-scoped object.
    pub fn key(&self) -> String {
        key_of(&self.meta)
    }
}

/// `namespace/name`, or `name` without a namespace.
fn key_of(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

impl<K> Decoded<K> {
    /// The object, if it decoded.
    pub fn ok(self) -> Option<K> {
        match self {
            Decoded::Ok(k) => Some(k),
            Decoded::Bad(_) => None,
        }
    }
}

/// Decodes one object as `K`; never fails.
pub fn decode<K: DeserializeOwned>(value: &Value) -> Decoded<K> {
    match K::deserialize(value) {
        Ok(k) => Decoded::Ok(k),
        Err(_) => {
            // Decode again, only now, tracking the path: the error alone
            // ("invalid type: integer `5`") does not say which field.
            let error = match serde_path_to_error::deserialize::<_, K>(value) {
                Ok(_) => "the object does not decode".to_string(),
                Err(e) if e.path().to_string() == "." => e.into_inner().to_string(),
                Err(e) => format!("{}: {}", e.path(), e.inner()),
            };
            Decoded::Bad(Box::new(Bad {
                meta: salvage_meta(value.get("metadata")),
                error,
            }))
        }
    }
}

/// The metadata of a bad object: all of it if it decodes, else the fields that decode
/// on their own (name, namespace, uid and resourceVersion are strings the API server
/// wrote, so they survive; `annotations: {a: 1}` does not).
fn salvage_meta(meta: Option<&Value>) -> ObjectMeta {
    let Some(meta) = meta else {
        return ObjectMeta::default();
    };
    if let Ok(m) = ObjectMeta::deserialize(meta) {
        return m;
    }
    let Value::Object(fields) = meta else {
        return ObjectMeta::default();
    };
    let good: serde_json::Map<String, Value> = fields
        .iter()
        .filter(|(k, v)| {
            let one = Value::Object(std::iter::once(((*k).clone(), (*v).clone())).collect());
            ObjectMeta::deserialize(&one).is_ok()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ObjectMeta::deserialize(&Value::Object(good)).unwrap_or_default()
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Decoded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only malformed JSON fails here, and that fails the whole document anyway.
        let value = Value::deserialize(deserializer)?;
        Ok(decode(&value))
    }
}

impl<K: Resource> Resource for Decoded<K> {
    type DynamicType = K::DynamicType;
    // Dynamic, so that `Api::namespaced_with` builds one for any `K`; the URL is `K`'s.
    type Scope = DynamicResourceScope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn metadata_api() -> bool {
        K::metadata_api()
    }
    fn url_path(dt: &Self::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Decoded::Ok(k) => k.meta(),
            Decoded::Bad(b) => &b.meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Decoded::Ok(k) => k.meta_mut(),
            Decoded::Bad(b) => &mut b.meta,
        }
    }
}

/// The same collection as `api` (same namespace or all), decoding object by object:
/// its `list` and `get` return [`Decoded`] items instead of failing.
pub fn api<K>(api: &Api<K>) -> Api<Decoded<K>>
where
    K: Resource + Clone,
    K::DynamicType: Default,
{
    api_with(api, &Default::default())
}

/// [`api`] for a kind known at runtime (`dt` must be the one `api` was made with).
pub fn api_with<K: Resource + Clone>(api: &Api<K>, dt: &K::DynamicType) -> Api<Decoded<K>> {
    let client = api.clone().into_client();
    match api.namespace() {
        Some(ns) => Api::namespaced_with(client, ns, dt),
        None => Api::all_with(client, dt),
    }
}

/// kube's `watcher` on `api`, with every object decoded on its own and bad ones
/// skipped (see the module's documentation). No backoff is applied: add
/// `WatchStreamExt::default_backoff` as with kube's.
pub fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Default + Send + 'static,
    K::DynamicType: Default,
{
    watcher_with(self::api(&api), config, |_: &ObjectMeta| None)
}

/// [`watcher`] for a consumer that remembers objects: `last_good` gives its current
/// state of a bad object's key (or `None`), which is then kept on a relist and passed
/// with a deletion.
pub fn watcher_with<K, F>(
    api: Api<Decoded<K>>,
    config: watcher::Config,
    last_good: F,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Default + Send + 'static,
    F: FnMut(&ObjectMeta) -> Option<K> + Send + 'static,
{
    filtered(
        api,
        config,
        Filter::new(String::new(), last_good, tombstone::<K>),
    )
}

/// An empty `K` with `meta`: what a deletion of an object never seen good carries.
fn tombstone<K: Resource + Default>(meta: ObjectMeta) -> Option<K> {
    let mut k = K::default();
    *k.meta_mut() = meta;
    Some(k)
}

fn filtered<K, F>(
    api: Api<Decoded<K>>,
    config: watcher::Config,
    mut filter: Filter<K, F>,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(&ObjectMeta) -> Option<K> + Send + 'static,
{
    filter.what = api.resource_url().to_string();
    watcher::watcher(api, config).filter_map(move |ev| {
        futures::future::ready(match ev {
            Ok(ev) => filter.event(ev).map(Ok),
            Err(e) => Some(Err(e)),
        })
    })
}

/// kube's `reflector` over a tolerant watch: `writer`'s store is the last good state
/// of a bad object (and a bad object it never had needs no deletion, so `K` need not
/// have a `Default` to make tombstones of: this serves metadata-only and dynamic kinds).
///
/// The cached objects have no `metadata.managedFields`, as kube-controller-manager's
/// and kube-scheduler's informers trim them: nothing reads them from a cache, they are
/// often the larger part of a small object, and an update sent without them keeps the
/// stored ones.
pub fn reflector<K>(
    writer: Writer<K>,
    api: Api<Decoded<K>>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let store = writer.as_reader();
    let last_good = move |m: &ObjectMeta| {
        // A linear search, but only for bad objects, which are rare.
        store
            .find(|o| o.meta().name == m.name && o.meta().namespace == m.namespace)
            .map(|o| (*o).clone())
    };
    let filter = Filter::new(String::new(), last_good, |_| None);
    let trimmed = filtered(api, config, filter).modify(|o| o.meta_mut().managed_fields = None);
    kube::runtime::reflector(writer, trimmed)
}

/// Turns events of [`Decoded`] objects into events of `K`, logging each bad object
/// once per resourceVersion.
pub struct Filter<K, F> {
    what: String,
    /// Bad objects reported: key → resourceVersion.
    reported: HashMap<String, String>,
    last_good: F,
    tombstone: fn(ObjectMeta) -> Option<K>,
}

impl<K, F> Filter<K, F>
where
    K: Resource,
    F: FnMut(&ObjectMeta) -> Option<K>,
{
    /// A filter for the collection `what` (named in the logs, e.g. `/api/v1/services`):
    /// `last_good` gives the consumer's state of a bad object, `tombstone` makes the
    /// object a deletion of a bad object carries when there is none (`None`: no event).
    pub fn new(what: String, last_good: F, tombstone: fn(ObjectMeta) -> Option<K>) -> Self {
        Filter {
            what,
            reported: HashMap::new(),
            last_good,
            tombstone,
        }
    }

    /// The event to pass on for `ev`, if any.
    pub fn event(&mut self, ev: Event<Decoded<K>>) -> Option<Event<K>> {
        match ev {
            Event::Init => Some(Event::Init),
            Event::InitDone => Some(Event::InitDone),
            Event::InitApply(Decoded::Ok(k)) => Some(Event::InitApply(k)),
            Event::Apply(Decoded::Ok(k)) => Some(Event::Apply(k)),
            Event::Delete(Decoded::Ok(k)) => {
                self.reported.remove(&key_of(k.meta()));
                Some(Event::Delete(k))
            }
            Event::InitApply(Decoded::Bad(b)) => {
                self.report(&b);
                (self.last_good)(&b.meta).map(Event::InitApply)
            }
            Event::Apply(Decoded::Bad(b)) => {
                self.report(&b);
                None
            }
            Event::Delete(Decoded::Bad(b)) => {
                self.reported.remove(&b.key());
                let b = *b;
                (self.last_good)(&b.meta)
                    .or_else(|| (self.tombstone)(b.meta))
                    .map(Event::Delete)
            }
        }
    }

    /// The keys of the bad objects seen and not deleted since.
    pub fn bad_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.reported.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn report(&mut self, b: &Bad) {
        let key = b.key();
        let rv = b.meta.resource_version.clone().unwrap_or_default();
        if self.reported.get(&key) == Some(&rv) {
            return;
        }
        tracing::warn!(
            resource = %self.what,
            key = %key,
            resource_version = %rv,
            error = %b.error,
            "skipping an object that does not decode"
        );
        self.reported.insert(key, rv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::core::{ObjectList, WatchEvent};
    use serde_json::json;

    fn svc(ns: &str, name: &str, port_name: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                         "resourceVersion": "7"},
            "spec": {"ports": [{"port": 80, "name": port_name}]}
        })
    }

    #[test]
    fn a_list_with_one_bad_item_yields_the_good_ones_and_names_the_bad_one() {
        let body = json!({
            "apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "9"},
            "items": [svc("a", "one", json!("http")), svc("b", "bad", json!(5)),
                      svc("a", "two", json!("dns"))]
        });
        let list: ObjectList<Decoded<Service>> =
            serde_json::from_str(&body.to_string()).expect("the list decodes");
        assert_eq!(list.items.len(), 3);
        let mut f = Filter::new("/api/v1/services".into(), |_: &ObjectMeta| None, tombstone);
        let mut good = Vec::new();
        for item in list.items {
            if let Some(Event::InitApply(s)) = f.event(Event::InitApply(item)) {
                good.push(key_of(&s.metadata));
            }
        }
        assert_eq!(good, ["a/one", "a/two"]);
        assert_eq!(f.bad_keys(), ["b/bad"]);
    }

    #[test]
    fn the_error_names_the_field() {
        let Decoded::Bad(b) = decode::<Service>(&svc("b", "bad", json!(5))) else {
            panic!("a port named 5 must not decode");
        };
        assert_eq!(b.key(), "b/bad");
        assert_eq!(b.meta.uid.as_deref(), Some("uid-bad"));
        assert_eq!(b.meta.resource_version.as_deref(), Some("7"));
        assert!(
            b.error
                .starts_with("spec.ports[0].name: invalid type: integer `5`"),
            "{}",
            b.error
        );

        let cm = json!({"metadata": {"name": "c", "namespace": "n"}, "data": {"a": 1}});
        let Decoded::Bad(b) = decode::<ConfigMap>(&cm) else {
            panic!("data {{a: 1}} must not decode");
        };
        assert!(
            b.error.starts_with("data.a: invalid type: integer `1`"),
            "{}",
            b.error
        );

        for replicas in [json!(1.5), json!("two"), json!(99_999_999_999_i64)] {
            let d = json!({"metadata": {"name": "d", "namespace": "n"},
                           "spec": {"replicas": replicas, "selector": {}, "template": {}}});
            assert!(
                matches!(decode::<Deployment>(&d), Decoded::Bad(_)),
                "replicas {replicas} must not decode"
            );
        }
    }

    #[test]
    fn bad_metadata_keeps_the_fields_that_decode() {
        let cm = json!({"metadata": {"name": "c", "namespace": "n", "uid": "u",
                                     "annotations": {"a": 1}, "labels": {"l": "v"},
                                     "resourceVersion": "3"}});
        let Decoded::Bad(b) = decode::<ConfigMap>(&cm) else {
            panic!("annotations {{a: 1}} must not decode");
        };
        assert_eq!(b.key(), "n/c");
        assert_eq!(b.meta.uid.as_deref(), Some("u"));
        assert_eq!(b.meta.resource_version.as_deref(), Some("3"));
        assert!(b.meta.annotations.is_none());
        assert_eq!(b.meta.labels.as_ref().map(|l| l.len()), Some(1));
        assert!(b.error.contains("metadata.annotations.a"), "{}", b.error);
        // Not even an object: still a (nameless) bad item, not a failed list.
        let Decoded::Bad(b) = decode::<ConfigMap>(&json!(42)) else {
            panic!("42 is not a ConfigMap");
        };
        assert_eq!(b.key(), "");
    }

    #[test]
    fn a_watch_event_of_a_bad_object_decodes() {
        let line = json!({"type": "MODIFIED", "object": svc("b", "bad", json!(5))});
        let ev: WatchEvent<Decoded<Service>> =
            serde_json::from_str(&line.to_string()).expect("the event decodes");
        let WatchEvent::Modified(Decoded::Bad(b)) = ev else {
            panic!("expected a bad Modified event");
        };
        assert_eq!(b.key(), "b/bad");
    }

    fn decoded(v: Value) -> Decoded<Service> {
        decode(&v)
    }

    #[test]
    fn a_good_object_turned_bad_keeps_its_last_good_state() {
        let last: Service = serde_json::from_value(svc("a", "s", json!("http"))).expect("svc");
        let kept = last.clone();
        let last_good =
            move |m: &ObjectMeta| (m.name.as_deref() == Some("s")).then(|| kept.clone());
        let mut f = Filter::new("/api/v1/services".into(), last_good, tombstone);
        // The watch's modification is dropped: the consumer keeps what it has.
        assert!(f
            .event(Event::Apply(decoded(svc("a", "s", json!(5)))))
            .is_none());
        // A relist keeps the last good state instead of losing the object.
        match f.event(Event::InitApply(decoded(svc("a", "s", json!(5))))) {
            Some(Event::InitApply(s)) => assert_eq!(s, last),
            other => panic!("expected the last good state, got {other:?}"),
        }
        // Logged once per resourceVersion.
        assert_eq!(f.bad_keys(), ["a/s"]);
        // Its deletion passes the last good state; then it is forgotten.
        match f.event(Event::Delete(decoded(svc("a", "s", json!(5))))) {
            Some(Event::Delete(s)) => assert_eq!(s, last),
            other => panic!("expected a delete, got {other:?}"),
        }
        assert!(f.bad_keys().is_empty());
    }

    #[test]
    fn a_bad_object_never_seen_good_is_deleted_by_its_metadata() {
        let mut f = Filter::new("/api/v1/services".into(), |_: &ObjectMeta| None, tombstone);
        assert!(f
            .event(Event::Apply(decoded(svc("a", "s", json!(5)))))
            .is_none());
        match f.event(Event::Delete(decoded(svc("a", "s", json!(5))))) {
            Some(Event::Delete(s)) => {
                assert_eq!(key_of(&s.metadata), "a/s");
                assert_eq!(s.metadata.uid.as_deref(), Some("uid-s"));
                assert!(s.spec.is_none());
            }
            other => panic!("expected a delete, got {other:?}"),
        }
    }

    #[test]
    fn decoded_api_keeps_the_collection() {
        // No request is made: only the URL is built.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let client = kube::Client::try_from(config).expect("client");
        let ns: Api<Service> = Api::namespaced(client.clone(), "web");
        assert_eq!(api(&ns).resource_url(), "/api/v1/namespaces/web/services");
        let all: Api<Deployment> = Api::all(client);
        assert_eq!(api(&all).resource_url(), "/apis/apps/v1/deployments");
    }
}
