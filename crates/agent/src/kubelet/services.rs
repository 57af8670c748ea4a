//! The Services of every namespace from one watch (the kubelet's service lister), for
//! the containers' Service environment variables: a container start then costs no API
//! request for them. A Service that does not decode is skipped and logged
//! (`skiff_runtime::tolerant`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use skiff_runtime::tolerant;

/// How long a container start waits for the first list before asking the API itself.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(2);

/// A cache of Services, filled once [`ServiceCache::start`] runs.
pub struct ServiceCache {
    store: Store<Service>,
    writer: Mutex<Option<Writer<Service>>>,
}

impl Default for ServiceCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Mutex::new(Some(writer)),
        }
    }
}

impl std::fmt::Debug for ServiceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCache")
            .field("services", &self.store.len())
            .finish()
    }
}

impl ServiceCache {
    /// Starts the watch that fills the cache (once; later calls do nothing).
    pub fn start(&self, client: Client) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let api = tolerant::api(&Api::<Service>::all(client));
        let stream = tolerant::reflector(writer, api, watcher::Config::default()).default_backoff();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "watching Services");
                }
            }
        });
    }

    /// The Services of a namespace, or None when the first list has not come in time
    /// (the caller then asks the API).
    pub async fn in_namespace(&self, namespace: &str) -> Option<Vec<Arc<Service>>> {
        tokio::time::timeout(FIRST_LIST_WAIT, self.store.wait_until_ready())
            .await
            .ok()?
            .ok()?;
        Some(
            self.store
                .state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace)),
        )
    }
}
