//! client-go's work queue metrics for every controller of this process, in the
//! Prometheus text format kube-controller-manager serves: `workqueue_depth`,
//! `workqueue_adds_total`, `workqueue_retries_total` and the histograms
//! `workqueue_queue_duration_seconds` (how long a key waited before a worker took it: the
//! controller-manager queue latency clusterloader2 watches) and
//! `workqueue_work_duration_seconds` (how long its reconcile took), labelled by the
//! controller's name. [`render`] is what a server adds to its `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use super::WorkQueue;

/// client-go's buckets: `prometheus.ExponentialBuckets(10e-9, 10, 10)`, 10 ns to 10 s.
const BUCKETS: [f64; 10] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

/// Counts per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, metric: &str, name: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n;
            out.push_str(&format!(
                "{metric}_bucket{{name=\"{name}\",le=\"{b}\"}} {cumulative}\n"
            ));
        }
        out.push_str(&format!(
            "{metric}_bucket{{name=\"{name}\",le=\"+Inf\"}} {}\n{metric}_sum{{name=\"{name}\"}} {}\n{metric}_count{{name=\"{name}\"}} {}\n",
            self.count, self.sum, self.count
        ));
    }
}

/// One controller's queues (a controller run twice, in tests, has two) and histograms.
#[derive(Default)]
struct Entry {
    queues: Vec<Weak<WorkQueue>>,
    queue_duration: Histogram,
    work_duration: Histogram,
    retries: u64,
}

fn registry() -> MutexGuard<'static, BTreeMap<&'static str, Entry>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<&'static str, Entry>>> = OnceLock::new();
    // A poisoned lock only means a worker panicked mid-update; counters stay usable.
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Registers `queue` as controller `name`'s (its depth and adds are read from it).
pub(crate) fn register(name: &'static str, queue: &Arc<WorkQueue>) {
    let mut reg = registry();
    let entry = reg.entry(name).or_default();
    entry.queues.retain(|q| q.strong_count() > 0);
    if !entry
        .queues
        .iter()
        .any(|q| q.ptr_eq(&Arc::downgrade(queue)))
    {
        entry.queues.push(Arc::downgrade(queue));
    }
}

/// Records one key taken off `name`'s queue after waiting `waited`, reconciled in `took`.
pub(crate) fn processed(name: &'static str, waited: Duration, took: Duration) {
    let mut reg = registry();
    let entry = reg.entry(name).or_default();
    entry.queue_duration.observe(waited);
    entry.work_duration.observe(took);
}

/// Records one key requeued with backoff after a failure.
pub(crate) fn retried(name: &'static str) {
    registry().entry(name).or_default().retries += 1;
}

/// Every controller's work queue metrics in the Prometheus text format.
pub fn render() -> String {
    let reg = registry();
    let mut out = String::new();
    let live =
        |e: &Entry| -> Vec<Arc<WorkQueue>> { e.queues.iter().filter_map(Weak::upgrade).collect() };
    out.push_str(
        "# HELP workqueue_depth Current depth of workqueue\n# TYPE workqueue_depth gauge\n",
    );
    for (name, e) in reg.iter() {
        let depth: usize = live(e).iter().map(|q| q.len()).sum();
        out.push_str(&format!("workqueue_depth{{name=\"{name}\"}} {depth}\n"));
    }
    out.push_str("# HELP workqueue_adds_total Total number of adds handled by workqueue\n# TYPE workqueue_adds_total counter\n");
    for (name, e) in reg.iter() {
        let adds: u64 = live(e).iter().map(|q| q.adds()).sum();
        out.push_str(&format!("workqueue_adds_total{{name=\"{name}\"}} {adds}\n"));
    }
    out.push_str("# HELP workqueue_retries_total Total number of retries handled by workqueue\n# TYPE workqueue_retries_total counter\n");
    for (name, e) in reg.iter() {
        out.push_str(&format!(
            "workqueue_retries_total{{name=\"{name}\"}} {}\n",
            e.retries
        ));
    }
    out.push_str("# HELP workqueue_queue_duration_seconds How long in seconds an item stays in workqueue before being requested.\n# TYPE workqueue_queue_duration_seconds histogram\n");
    for (name, e) in reg.iter() {
        e.queue_duration
            .render(&mut out, "workqueue_queue_duration_seconds", name);
    }
    out.push_str("# HELP workqueue_work_duration_seconds How long in seconds processing an item from workqueue takes.\n# TYPE workqueue_work_duration_seconds histogram\n");
    for (name, e) in reg.iter() {
        e.work_duration
            .render(&mut out, "workqueue_work_duration_seconds", name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_client_go_names_with_cumulative_buckets() {
        let q = WorkQueue::new();
        register("metrics-test", &q);
        q.add("a");
        q.add("b");
        processed(
            "metrics-test",
            Duration::from_micros(50),
            Duration::from_millis(3),
        );
        processed(
            "metrics-test",
            Duration::from_millis(50),
            Duration::from_secs(20),
        );
        retried("metrics-test");
        let text = render();
        for line in [
            "workqueue_depth{name=\"metrics-test\"} 2",
            "workqueue_adds_total{name=\"metrics-test\"} 2",
            "workqueue_retries_total{name=\"metrics-test\"} 1",
            "workqueue_queue_duration_seconds_bucket{name=\"metrics-test\",le=\"0.0001\"} 1",
            "workqueue_queue_duration_seconds_bucket{name=\"metrics-test\",le=\"0.1\"} 2",
            "workqueue_queue_duration_seconds_count{name=\"metrics-test\"} 2",
            // Over the last bucket: counted in +Inf only.
            "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"10\"} 1",
            "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"+Inf\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
