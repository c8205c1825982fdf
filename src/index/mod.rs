//! The indexer: a consumer that assigns itself every partition of the DLQ topics (no group)
//! and writes every record to SQLite together with the position it advances.

pub mod backfill;
pub mod consumer;
pub mod normalise;
pub mod reader;
pub mod record;
pub mod search;
pub mod status;

pub use status::IndexerStatus;

/// Between two passes of a background writer (the search catch-up, the backfill): with no
/// `pause` (it is behind), go on at once, letting other tasks on this thread run first;
/// else wait `pause`. False once `shutdown` is asked for.
pub(crate) async fn after_pass(
    pause: std::time::Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    if pause.is_zero() {
        if shutdown.is_cancelled() {
            return false;
        }
        tokio::task::yield_now().await;
        return true;
    }
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(pause) => true,
    }
}
