//! When a failed event is tried again: the in-place backoff of the live topic (seeds 000
//! and 004: exponential, per partition, order kept) and the due time of a retry topic.

use std::time::Duration;

/// In-place retries on the live topic: `attempts` tries in all, waiting `first` after the
/// first failure and twice as long after each next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// Attempts in place, the first one included.
    pub attempts: u32,
}

impl Backoff {
    /// The schedule: 300 ms doubling, 5 attempts (300, 600, 1200, 2400 ms of waits).
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_millis(300),
        attempts: 5,
    };

    /// How long to wait after attempt `failed` (1-based) failed, or None when the in-place
    /// attempts are used up and the event moves on to the first retry topic.
    pub fn after(&self, failed: u32) -> Option<Duration> {
        if failed == 0 || failed >= self.attempts {
            return None;
        }
        Some(self.first.saturating_mul(1 << (failed - 1).min(20)))
    }
}

/// How long an event on a retry topic must still wait, given when it is due (ms since the
/// epoch, from its header) and now; None when it is due. An event without a due time (a
/// replay from the dashboard) is due at once.
pub fn wait_until_due(due_ms: Option<i64>, now_ms: i64) -> Option<Duration> {
    let due = due_ms?;
    (due > now_ms).then(|| Duration::from_millis((due - now_ms) as u64))
}

/// When an event forwarded now to a retry topic with `delay` is due.
pub fn due_at(now_ms: i64, delay: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_300ms_for_five_attempts() {
        let b = Backoff::DEFAULT;
        let waits: Vec<_> = (1..=6).map(|a| b.after(a)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(300)),
                Some(Duration::from_millis(600)),
                Some(Duration::from_millis(1200)),
                Some(Duration::from_millis(2400)),
                None,
                None
            ]
        );
        assert_eq!(b.after(0), None);
        let one = Backoff {
            first: Duration::from_millis(5),
            attempts: 1,
        };
        assert_eq!(one.after(1), None, "a single attempt never waits");
    }

    #[test]
    fn an_event_waits_until_due_and_not_after() {
        assert_eq!(
            wait_until_due(Some(10_500), 10_000),
            Some(Duration::from_millis(500))
        );
        assert_eq!(wait_until_due(Some(10_000), 10_000), None);
        assert_eq!(wait_until_due(Some(9_000), 10_000), None);
        assert_eq!(
            wait_until_due(None, 10_000),
            None,
            "replays are due at once"
        );
        assert_eq!(due_at(1_000, Duration::from_secs(5)), 6_000);
    }
}
