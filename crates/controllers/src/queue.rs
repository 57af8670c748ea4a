//! A deduplicating work queue of object keys, with client-go's semantics: a key is
//! processed by one worker at a time, a key added while it is processed is processed
//! again afterwards, and failures are retried with exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub mod metrics;

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    /// Keys waiting, with when they were first added (for the sync log).
    dirty: HashMap<String, Instant>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// The queue. Cheap to share through an `Arc`.
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    /// Keys added (not counting those already waiting), for `workqueue_adds_total`.
    adds: AtomicU64,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a worker panicked; the sets are still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `key` unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.lock();
        if inner.dirty.contains_key(&key) {
            return;
        }
        inner.dirty.insert(key.clone(), Instant::now());
        self.adds.fetch_add(1, Ordering::Relaxed);
        if !inner.processing.contains(&key) {
            inner.queue.push_back(key);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Number of keys waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Keys added since the queue was made (a key already waiting is not counted).
    pub fn adds(&self) -> u64 {
        self.adds.load(Ordering::Relaxed)
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next key, and how long it waited since it was added.
    async fn get(&self) -> (String, Duration) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if let Some(k) = inner.queue.pop_front() {
                    let waited = inner
                        .dirty
                        .remove(&k)
                        .map(|at| at.elapsed())
                        .unwrap_or_default();
                    inner.processing.insert(k.clone());
                    if !inner.queue.is_empty() {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return (k, waited);
                }
            }
            notified.await;
        }
    }

    fn done(&self, key: &str) {
        let mut inner = self.lock();
        inner.processing.remove(key);
        if inner.dirty.contains_key(key) {
            inner.queue.push_back(key.to_string());
            drop(inner);
            self.notify.notify_one();
        }
    }

    fn backoff(&self, key: &str) -> Duration {
        let mut inner = self.lock();
        let n = inner.failures.entry(key.to_string()).or_insert(0);
        *n += 1;
        let ms = 5u64.saturating_mul(1u64 << (*n).min(13));
        Duration::from_millis(ms.min(30_000))
    }

    fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }
}

/// Runs `workers` tasks that take keys off `queue` and call `reconcile`. `Ok(Some(d))`
/// requeues the key after `d`, errors requeue it with backoff.
pub fn run_workers<F, Fut>(name: &'static str, queue: Arc<WorkQueue>, workers: usize, reconcile: F)
where
    F: Fn(String) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<Option<Duration>>> + Send + 'static,
{
    metrics::register(name, &queue);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tokio::spawn(async move {
            loop {
                let (key, waited) = queue.get().await;
                let started = Instant::now();
                let result = reconcile(key.clone()).await;
                metrics::processed(name, waited, started.elapsed());
                tracing::debug!(
                    controller = name,
                    key = %key,
                    waited_us = waited.as_micros() as u64,
                    took_us = started.elapsed().as_micros() as u64,
                    "synced"
                );
                match result {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(d) = requeue {
                            queue.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let d = queue.backoff(&key);
                        metrics::retried(name);
                        tracing::info!(controller = name, key = %key, error = %format!("{e:#}"), retry_in = ?d, "sync failed");
                        queue.add_after(key.clone(), d);
                    }
                }
                queue.done(&key);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_reprocesses_keys_added_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let (k, _) = q.get().await;
        assert_eq!(k, "a");
        q.add("a");
        assert_eq!(q.len(), 1, "a is processing: only marked dirty");
        q.done("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await.0, "b");
        assert_eq!(q.get().await.0, "a");
    }
}
