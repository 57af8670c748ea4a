//! Durations of the steps of pod starts (sandbox, CNI, volumes, image, environment,
//! runc, status), kept in process as the kubelet keeps its runtime-operation
//! histograms, so the startup benchmark can say where the time goes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Samples per step, in the order recorded.
static STEPS: Mutex<BTreeMap<&'static str, Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Records one sample of a step.
pub fn record(step: &'static str, d: Duration) {
    // Also in the agent's log (`SKIFF_LOG=skiff_agent::kubelet::timing=debug`), so a slow
    // start shows its slow step without the benchmark.
    tracing::debug!(step, took_us = d.as_micros() as u64, "pod start step");
    STEPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(step)
        .or_default()
        .push(d);
}

/// Records the time since `since` for a step and returns now (to chain steps).
pub fn lap(step: &'static str, since: Instant) -> Instant {
    let now = Instant::now();
    record(step, now.duration_since(since));
    now
}

/// Forgets every sample.
pub fn reset() {
    STEPS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The value at quantile `q` (0..=1) of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1);
    sorted[i]
}

/// One line per step: count, p50, p99, max, in milliseconds.
pub fn summary() -> String {
    let steps = STEPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for (step, samples) in steps.iter() {
        let mut s = samples.clone();
        s.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        out.push_str(&format!(
            "{step:<14} n={:<4} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms\n",
            s.len(),
            ms(quantile(&s, 0.5)),
            ms(quantile(&s, 0.99)),
            ms(s[s.len() - 1]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_samples() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
