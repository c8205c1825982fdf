//! Wall-clock time as the index stores it (milliseconds since the epoch, UTC), and its
//! RFC 3339 form for the API and headers. Shared by every layer, so it depends on none.

use chrono::{TimeZone, Utc};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds, for the API, headers and `<time datetime>`.
pub fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The time as one task sees it: the wall clock, or, in tests, a time set by hand, so that
/// whatever depends on ages (retention) can be moved days ahead without waiting.
#[derive(Debug, Default)]
pub struct Clock {
    /// 0: the wall clock; otherwise the fixed time, ms.
    fixed: std::sync::atomic::AtomicI64,
}

impl Clock {
    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        match self.fixed.load(std::sync::atomic::Ordering::Acquire) {
            0 => now_ms(),
            at => at,
        }
    }

    /// Stop the clock at `ms` (tests); it stays there until set again.
    pub fn set_ms(&self, ms: i64) {
        self.fixed
            .store(ms.max(1), std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_follows_the_wall_until_set() {
        let c = Clock::default();
        assert!((c.now_ms() - now_ms()).abs() < 60_000);
        c.set_ms(42);
        assert_eq!(c.now_ms(), 42);
    }
}
