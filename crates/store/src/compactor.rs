//! Periodic compaction of any store, as kube-apiserver's `--etcd-compaction-interval`.

use std::sync::Arc;
use std::time::Duration;

use crate::Store;

/// Every `every`, compacts the history older than both the last `keep_events` events and
/// `keep_for` ([`Store::compact_old`]), until the runtime shuts down. Must be called
/// within a tokio runtime; the (blocking) store calls run on its blocking pool.
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    every: Duration,
    keep_events: i64,
    keep_for: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.compact_old(keep_events, keep_for)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("compacting the store: {e}"),
                Err(e) => tracing::warn!("compacting the store: {e}"),
            }
        }
    })
}
