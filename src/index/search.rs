//! The search catch-up: a background task that keeps the search index (a file of its own,
//! see `store::search`) caught up with the records, so that indexing never waits on
//! full-text work.

use std::time::Duration;

use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::store::search::{catch_up, connect, CATCH_UP_ROWS};

/// Records the catch-up adds before, once caught up, it gives freed memory back to the
/// system: a backlog, not the trickle of a quiet index.
const RELEASE_AFTER_ROWS: usize = 20_000;

/// How often an idle catch-up looks for new rows: the search lag of a quiet index.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Keep the search index caught up with the records until `shutdown`: at once while behind,
/// every [`IDLE_POLL`] once caught up.
pub async fn run(pool: SqlitePool, shutdown: CancellationToken) {
    let mut search: Option<SqliteConnection> = None;
    // Records added since memory was last given back: a backlog's burst of allocations (the
    // indexer's and this task's) ends when this catches up after it.
    let mut added_since_release = 0;
    loop {
        let result = match search.as_mut() {
            Some(c) => catch_up(&pool, c, CATCH_UP_ROWS).await,
            None => match connect(&pool).await {
                Ok(c) => catch_up(&pool, search.insert(c), CATCH_UP_ROWS).await,
                Err(e) => Err(e),
            },
        };
        let pause = match result {
            Ok(n) if (n as i64) < CATCH_UP_ROWS => {
                added_since_release += n;
                if added_since_release >= RELEASE_AFTER_ROWS {
                    // Milliseconds of allocator work: off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(crate::memory::release_freed).await;
                    added_since_release = 0;
                }
                IDLE_POLL
            }
            Ok(n) => {
                added_since_release += n;
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %e, "adding records to the search index failed; retrying");
                search = None;
                Duration::from_secs(1)
            }
        };
        if pause.is_zero() {
            // Behind: go on at once, letting other tasks on this thread run first.
            if shutdown.is_cancelled() {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if let Some(c) = search {
        let _ = c.close().await;
    }
}
