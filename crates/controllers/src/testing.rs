//! Unit-test support (compiled for tests only): informers filled from a recording fake
//! of the API ([`skiff_testkit::fakeapi`]), so that a reconciler's `sync` runs against
//! a cache the test chose and its requests can be asserted, without an API server.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_testkit::fakeapi::{FakeApi, Request};

use crate::informer::Informer;

/// How long an informer may take to list from the fake (it takes milliseconds; a
/// missing [`FakeApi::objects`] rule makes it retry forever, which fails here).
const READY_WITHIN: Duration = Duration::from_secs(10);

/// An informer of every `K` in the cluster, ready: the fake serves `items` as the list
/// of `K` (a watch that then sends nothing).
pub async fn informer<K>(fake: &FakeApi, items: Vec<Value>) -> Arc<Informer<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    ready(fake, items, None).await
}

/// [`informer`], with the index `f` kept (as the server's shared informers keep theirs).
pub async fn indexed_informer<K>(
    fake: &FakeApi,
    items: Vec<Value>,
    f: crate::informer::IndexFn<K>,
) -> Arc<Informer<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    ready(fake, items, Some(f)).await
}

async fn ready<K>(
    fake: &FakeApi,
    items: Vec<Value>,
    f: Option<crate::informer::IndexFn<K>>,
) -> Arc<Informer<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let path = format!("{}/{}", prefix::<K>(), K::plural(&()));
    fake.objects(&path, &format!("{}List", K::kind(&())), items);
    let api = Api::<K>::all(fake.client());
    let inf = match f {
        Some(f) => Informer::spawn_indexed(api, f),
        None => Informer::spawn(api),
    };
    tokio::time::timeout(READY_WITHIN, inf.wait_ready())
        .await
        .unwrap_or_else(|_| panic!("the {} informer did not list", K::kind(&())));
    inf
}

/// `/api/v1` or `/apis/<group>/<version>` of `K`.
fn prefix<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    if group.is_empty() {
        format!("/api/{}", K::version(&()))
    } else {
        format!("/apis/{group}/{}", K::version(&()))
    }
}

/// The path of the namespaced collection of `K` in `ns`.
pub fn collection<K: Resource<DynamicType = ()>>(ns: &str) -> String {
    format!("{}/namespaces/{ns}/{}", prefix::<K>(), K::plural(&()))
}

/// The writes a reconciler made, without the Events it records in the background
/// (those arrive at no fixed point, and are the recorder's business).
pub fn writes_but_events(fake: &FakeApi) -> Vec<Request> {
    fake.writes()
        .into_iter()
        .filter(|r| !r.path.ends_with("/events"))
        .collect()
}
