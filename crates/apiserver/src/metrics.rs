//! Counters the server serves on `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Watch counters served on `/metrics`.
#[derive(Default)]
pub(crate) struct WatchMetrics {
    /// Watchers closed for not reading, by (group, resource): kube-apiserver's
    /// `apiserver_terminated_watchers_total`.
    terminated: Mutex<BTreeMap<(String, String), u64>>,
}

impl WatchMetrics {
    /// Counts one watcher of (group, resource) closed for not reading.
    pub(crate) fn terminated(&self, group: &str, resource: &str) {
        *lock(&self.terminated)
            .entry((group.to_string(), resource.to_string()))
            .or_default() += 1;
    }

    /// The counters in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_terminated_watchers_total Counter of watchers closed due to unresponsiveness broken by resource type.\n\
             # TYPE apiserver_terminated_watchers_total counter\n",
        );
        for ((group, resource), n) in lock(&self.terminated).iter() {
            out.push_str(&format!(
                "apiserver_terminated_watchers_total{{group=\"{group}\",resource=\"{resource}\"}} {n}\n"
            ));
        }
        out
    }
}

/// A poisoned lock only means another task panicked while holding it; a counter map
/// stays consistent, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
