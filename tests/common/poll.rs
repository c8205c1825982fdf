//! Waiting on a condition with a deadline, never on a fixed sleep.

use std::time::{Duration, Instant};

/// Poll `check` every 50 ms until it returns Some; fail the test with `what` at `deadline`.
pub fn poll_until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
