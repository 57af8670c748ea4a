//! CrashLoopBackOff: the first restart is immediate, then 10 s doubling up to 5 min; a
//! container that ran for 10 minutes starts over.

use std::time::Duration;

/// First back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Longest back-off delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A run this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Back-off state of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The container exited after running `ran_for`: how long to wait before the next
    /// start.
    pub fn on_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.next = None;
        }
        match self.next {
            None => {
                self.next = Some(INITIAL);
                Duration::ZERO
            }
            Some(d) => {
                self.next = Some((d * 2).min(MAX));
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let s = Duration::from_secs(1);
        let got: Vec<u64> = (0..8).map(|_| b.on_exit(s).as_secs()).collect();
        assert_eq!(got, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.on_exit(RESET_AFTER), Duration::ZERO);
        assert_eq!(b.on_exit(s), INITIAL);
    }
}
