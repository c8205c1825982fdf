//! The search catch-up: a background task that keeps the search index (a file of its own,
//! see `store::search`) caught up with the records, so that indexing never waits on
//! full-text work.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::store::health::{Backoff, FaultKind, WriteHealth, Writer};
use crate::store::search::{self, catch_up, connect, CATCH_UP_ROWS};

/// Records the catch-up adds before, once caught up, it gives freed memory back to the
/// system: a backlog, not the trickle of a quiet index.
const RELEASE_AFTER_ROWS: usize = 20_000;

/// How often an idle catch-up looks for new rows: the search lag of a quiet index.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The first pause after a failed catch-up, doubled per failure up to 5 s.
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// Keep the search index caught up with the records until `shutdown`: at once while behind,
/// every [`IDLE_POLL`] once caught up. A failed write is retried with a capped backoff and
/// reported to `health`; a search file deleted or found damaged while running is made anew
/// and refilled from the first record (search results grow back meanwhile, and pages say
/// how far behind it is), with no restart.
pub async fn run(pool: SqlitePool, health: Arc<WriteHealth>, shutdown: CancellationToken) {
    let mut search: Option<SqliteConnection> = None;
    // Records added since memory was last given back: a backlog's burst of allocations (the
    // indexer's and this task's) ends when this catches up after it.
    let mut added_since_release = 0;
    let mut retry = Backoff::new(RETRY_FIRST, Duration::from_secs(5));
    let mut damaged = false;
    loop {
        if damaged || search::missing(&pool) || search::header_damaged(&pool) {
            if let Some(c) = search.take() {
                let _ = c.close().await;
            }
            match search::rebuild(&pool).await {
                Ok(()) => {
                    tracing::warn!(
                        file = %search::path_of(&pool).display(),
                        "the search file was missing or damaged; it was made anew and is being refilled"
                    );
                    damaged = false;
                }
                Err(e) => {
                    health.failed(Writer::Search, &e);
                    let pause = retry.failed();
                    tracing::warn!(error = %e, retry_in = ?pause, "making the search file anew failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            }
        }
        let result = match search.as_mut() {
            Some(c) => catch_up(&pool, c, CATCH_UP_ROWS).await,
            None => match connect(&pool).await {
                Ok(c) => catch_up(&pool, search.insert(c), CATCH_UP_ROWS).await,
                Err(e) => Err(e),
            },
        };
        if result.is_ok() {
            health.ok(Writer::Search);
            retry.succeeded();
        }
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
                let kind = health.failed(Writer::Search, &e);
                // Damage may be in the index file as well (the catch-up reads it): only a
                // search file that fails its own check is made anew.
                if kind == FaultKind::Corrupt {
                    damaged = search::damaged(&pool).await;
                }
                let pause = if damaged {
                    Duration::ZERO
                } else {
                    retry.failed()
                };
                tracing::warn!(error = %e, kind = kind.as_str(), retry_in = ?pause, "adding records to the search index failed; retrying");
                // A fresh connection next time: this one may be left in any state.
                search = None;
                pause.max(Duration::from_millis(1))
            }
        };
        if !super::after_pass(pause, &shutdown).await {
            break;
        }
    }
    if let Some(c) = search {
        let _ = c.close().await;
    }
}
