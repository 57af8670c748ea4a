//! Counters and histograms the server serves on `/metrics` (Prometheus text format):
//! terminated watchers, and every resource request's latency by verb and resource as
//! kube-apiserver's `apiserver_request_duration_seconds` (what its API call latency SLO
//! and clusterloader2's density test read).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

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

/// kube-apiserver's buckets for `apiserver_request_duration_seconds`, in seconds.
pub(crate) const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// What a request's latency is recorded under: kube's labels verb (`GET`, `LIST`,
/// `POST`, `PUT`, `PATCH`, `DELETE`...), group, version, resource, subresource, scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RequestKey {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: String,
    pub scope: &'static str,
}

/// One histogram: counts per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Request latencies served on `/metrics`.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    by_key: Mutex<BTreeMap<RequestKey, Histogram>>,
}

impl RequestMetrics {
    /// Records one request's latency (until its response was ready).
    pub(crate) fn observe(&self, key: RequestKey, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = lock(&self.by_key);
        let h = map.entry(key).or_default();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The histograms in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version, resource, subresource and scope.\n\
             # TYPE apiserver_request_duration_seconds histogram\n",
        );
        for (k, h) in lock(&self.by_key).iter() {
            let labels = format!(
                "verb=\"{}\",group=\"{}\",version=\"{}\",resource=\"{}\",subresource=\"{}\",scope=\"{}\",component=\"apiserver\"",
                k.verb, k.group, k.version, k.resource, k.subresource, k.scope
            );
            let mut cumulative = 0;
            for (b, n) in DURATION_BUCKETS.iter().zip(h.buckets.iter()) {
                cumulative += n;
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 apiserver_request_duration_seconds_sum{{{labels}}} {}\n\
                 apiserver_request_duration_seconds_count{{{labels}}} {}\n",
                h.count, h.sum, h.count
            ));
        }
        out
    }
}

/// kube's verb label for a request's verb: the HTTP-style names its metrics use.
pub(crate) fn verb_label(verb: &'static str, apply: bool) -> &'static str {
    match verb {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" if apply => "APPLY",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "deletecollection" => "DELETECOLLECTION",
        other => other,
    }
}

/// Text another component of the same process adds to `/metrics` (the controllers'
/// work queues, say, as kube-controller-manager serves them on its own port).
pub type MetricsSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// The [`MetricsSource`]s registered with [`crate::ServerHandle::add_metrics_source`].
#[derive(Default)]
pub(crate) struct ExtraMetrics {
    sources: Mutex<Vec<MetricsSource>>,
}

impl ExtraMetrics {
    /// Adds a source, rendered after the server's own metrics.
    pub(crate) fn add(&self, source: MetricsSource) {
        lock(&self.sources).push(source);
    }

    /// Every source's text, in the order they were added.
    pub(crate) fn render(&self) -> String {
        let sources = lock(&self.sources).clone();
        sources.iter().map(|s| s()).collect()
    }
}

/// A poisoned lock only means another task panicked while holding it; a counter map
/// stays consistent, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_histogram_renders_cumulative_buckets() {
        let m = RequestMetrics::default();
        let key = RequestKey {
            verb: "POST",
            group: "",
            version: "v1",
            resource: "pods",
            subresource: String::new(),
            scope: "namespace",
        };
        m.observe(key.clone(), Duration::from_millis(3));
        m.observe(key, Duration::from_millis(30));
        let text = m.render();
        let labels = "verb=\"POST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"namespace\",component=\"apiserver\"";
        for line in [
            format!("apiserver_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1"),
            format!("apiserver_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 2"),
            format!("apiserver_request_duration_seconds_count{{{labels}}} 2"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
