//! Waiting on a condition with a deadline, never on a fixed sleep: the one place that owns
//! the interval between checks, the deadline and the message a test fails with.
//!
//! Async tests wait with [`wait_for`], so that the runtime keeps serving the dashboard in
//! the same process meanwhile; code that talks to child processes through blocking calls
//! waits with [`wait_for_blocking`]. Both run on [`Deadline`].

use std::future::Future;
use std::time::{Duration, Instant};

/// How long to wait between two checks.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// A wait in progress: what is waited for, and until when.
struct Deadline<'a> {
    what: &'a str,
    started: Instant,
    limit: Duration,
}

impl<'a> Deadline<'a> {
    fn start(what: &'a str, limit: Duration) -> Self {
        Deadline {
            what,
            started: Instant::now(),
            limit,
        }
    }

    /// After a check that found nothing: fail the test once the deadline has passed, else
    /// how long to pause before the next check.
    fn pause(&self) -> Duration {
        assert!(
            self.started.elapsed() < self.limit,
            "timed out waiting for {}",
            self.what
        );
        INTERVAL
    }
}

/// Poll `check` until it returns Some; fail the test with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let wait = Deadline::start(what, deadline);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(wait.pause()).await;
    }
}

/// Poll `count` until it reaches `target`, failing only when it has not moved for `stall`:
/// for long work whose total time depends on how loaded the machine is (a cleanup of tens
/// of thousands of records on a 2-core CI runner), where a fixed deadline would fail a
/// slow but healthy run and a stalled one must still fail.
pub async fn wait_for_count<F, Fut>(what: &str, target: i64, stall: Duration, mut count: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
    let mut last = i64::MIN;
    let mut wait = Deadline::start(what, stall);
    loop {
        let n = count().await;
        if n >= target {
            return n;
        }
        if n != last {
            last = n;
            wait = Deadline::start(what, stall);
        }
        tokio::time::sleep(wait.pause()).await;
    }
}

/// Poll `check` for up to `limit`: its value as soon as it has one, None once the time has
/// passed. For a wait that may rightly end empty ("is the disk full yet, or does it need
/// more records?"), where the caller decides what follows.
pub async fn wait_for_or_none<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`wait_for`] for a blocking `check`, called from a plain thread or (the end-to-end
/// tests) from a multi-threaded runtime's worker, where [`off_runtime`] lets it block.
pub fn wait_for_blocking<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let wait = Deadline::start(what, deadline);
    off_runtime(|| loop {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(wait.pause());
    })
}

/// Run blocking code, telling a tokio runtime first if this is one of its worker threads
/// (`block_in_place`): the other tasks move to another thread instead of stalling, and
/// reqwest's blocking client, which refuses to run on a runtime thread, runs there. Only a
/// multi-threaded runtime can do that; the tests that block all run on one.
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
