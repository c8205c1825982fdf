//! Login throttling: wrong passwords are counted per user name and per client address over
//! the last minute, and once either has reached the limit, further attempts are refused
//! before their password is checked.
//!
//! Hand-written rather than `governor`: a token bucket there takes a cell on every check,
//! so it cannot count only the wrong passwords (the rule) without also charging the right
//! ones, and it has no way to look at a key without charging it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed per key in [`WINDOW`]; the next attempt is refused unchecked.
pub const LIMIT: usize = 10;
/// The window the failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys kept at most; beyond it the oldest windows are dropped, so a flood of invented
/// names cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

/// Recent failures per key ("user:NAME", "addr:IP").
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Why an attempt is refused unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key that reached the limit.
    pub key: String,
    /// Whether this is the first refusal of the key in its current window (the one the
    /// audit log records; later ones would only let an attacker flood it).
    pub first: bool,
}

impl LoginLimiter {
    /// Refuse an attempt when any of `keys` has [`LIMIT`] failures in the window.
    pub fn check(&self, keys: &[String], now: Instant) -> Result<(), Refusal> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                forget_old(times, now);
                if times.len() >= LIMIT {
                    // One extra entry marks that the refusal was already reported.
                    let first = times.len() == LIMIT;
                    if first {
                        times.push_back(now);
                    }
                    return Err(Refusal {
                        key: key.clone(),
                        first,
                    });
                }
            }
        }
        Ok(())
    }

    /// Count a wrong password against every key.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            forget_old(times, now);
            times.push_back(now);
        }
    }
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_attempt_in_a_minute_is_refused() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        let keys = vec!["user:alice".to_string(), "addr:10.0.0.1".to_string()];
        for i in 0..LIMIT {
            assert!(limiter.check(&keys, start).is_ok(), "attempt {}", i + 1);
            limiter.failed(&keys, start);
        }
        let refused = limiter.check(&keys, start).unwrap_err();
        assert!(refused.first);
        assert!(
            !limiter.check(&keys, start).unwrap_err().first,
            "reported once"
        );
        // Another address for another user is not held back.
        let other = vec!["user:bob".to_string(), "addr:10.0.0.2".to_string()];
        assert!(limiter.check(&other, start).is_ok());
        // The same address with another name is.
        let same_addr = vec!["user:bob".to_string(), "addr:10.0.0.1".to_string()];
        assert!(limiter.check(&same_addr, start).is_err());
        // A minute later the window is empty again.
        assert!(limiter.check(&keys, start + WINDOW).is_ok());
    }
}
