//! The back-off of pod re-creation after failures (kube's `backoffRecord`): 10 s after
//! the first failure since the last success, doubling with each further one, at most
//! 6 minutes, counted from the last failure.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Delay after the first failure (kube's `DefaultJobPodFailureBackOff`).
pub const BASE: Duration = Duration::from_secs(10);
/// Longest delay (kube's `MaxJobPodFailureBackOff`).
pub const MAX: Duration = Duration::from_secs(360);

/// What the back-off of one Job depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Pod failures since the last success.
    pub failures_after_last_success: u32,
    /// When the last of them finished.
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record after pods newly finished: successes at `succeeded`, failures at
    /// `failed` (when each pod finished).
    pub fn update(&self, succeeded: &[Timestamp], failed: &[Timestamp]) -> Record {
        let Some(last_success) = succeeded.iter().max() else {
            if failed.is_empty() {
                return self.clone();
            }
            let newest = failed.iter().max().copied();
            return Record {
                failures_after_last_success: self.failures_after_last_success + failed.len() as u32,
                last_failure: self.last_failure.max(newest),
            };
        };
        let after: Vec<Timestamp> = failed
            .iter()
            .copied()
            .filter(|t| t > last_success)
            .collect();
        Record {
            failures_after_last_success: after.len() as u32,
            last_failure: after.iter().max().copied(),
        }
    }

    /// How long pod creation still waits at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let (n, Some(last)) = (self.failures_after_last_success, self.last_failure) else {
            return Duration::ZERO;
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let delay = BASE
            .checked_mul(1u32 << (n - 1).min(16))
            .unwrap_or(MAX)
            .min(MAX);
        let elapsed = now.duration_since(last);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
    }

    #[test]
    fn doubles_from_ten_seconds_up_to_six_minutes() {
        let none = Record::default();
        assert_eq!(none.remaining(at(0)), Duration::ZERO);
        let one = none.update(&[], &[at(0)]);
        assert_eq!(one.failures_after_last_success, 1);
        assert_eq!(one.remaining(at(0)), Duration::from_secs(10));
        assert_eq!(one.remaining(at(4)), Duration::from_secs(6));
        assert_eq!(one.remaining(at(11)), Duration::ZERO);
        let two = one.update(&[], &[at(20)]);
        assert_eq!(two.remaining(at(20)), Duration::from_secs(20));
        let three = two.update(&[], &[at(30), at(25)]);
        assert_eq!(three.failures_after_last_success, 4);
        assert_eq!(three.last_failure, Some(at(30)));
        assert_eq!(three.remaining(at(30)), Duration::from_secs(80));
        let many = Record {
            failures_after_last_success: 40,
            last_failure: Some(at(0)),
        };
        assert_eq!(many.remaining(at(0)), MAX);
    }

    #[test]
    fn a_success_resets_it_but_for_later_failures() {
        let r = Record {
            failures_after_last_success: 3,
            last_failure: Some(at(0)),
        };
        assert_eq!(r.update(&[at(5)], &[]), Record::default());
        assert_eq!(r.update(&[], &[]), r);
        let later = r.update(&[at(5)], &[at(3), at(7)]);
        assert_eq!(later.failures_after_last_success, 1);
        assert_eq!(later.last_failure, Some(at(7)));
    }
}
