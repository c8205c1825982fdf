//! Write-ahead log checkpoints, off the writers' path.
//!
//! With SQLite's automatic checkpoints the commit that crosses the threshold copies the
//! whole log into the database file before it returns: the indexer stalled there for a
//! sixth of its time. A checkpoint on another connection runs alongside writers in WAL mode,
//! so this task does that work instead, and the automatic threshold (see `store::open`)
//! stays only as a backstop for a process that does not run it.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// How often the log is copied back into the database file.
const EVERY: Duration = Duration::from_millis(500);

/// Copy what the log holds into the database file without waiting for readers or writers.
/// Returns (frames in the log, frames copied).
pub async fn checkpoint(conn: &mut SqliteConnection) -> Result<(i64, i64)> {
    let (_busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok((log, copied))
}

/// Checkpoint the file `pool` is open on regularly until `shutdown` (see [`run_on`]).
pub async fn run(pool: SqlitePool, shutdown: CancellationToken) {
    run_on((*pool.connect_options()).clone(), shutdown).await
}

/// Checkpoint the file `options` open regularly until `shutdown`, on a connection of its
/// own: it takes no connection from the pages, and a checkpoint that takes a second during a
/// backlog is expected, not a slow statement to warn about. (The index's search file has a
/// log of its own, checkpointed by a second one of these.)
pub async fn run_on(options: SqliteConnectOptions, shutdown: CancellationToken) {
    let options = options.disable_statement_logging();
    let mut conn: Option<SqliteConnection> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let result = match conn.as_mut() {
            Some(c) => checkpoint(c).await,
            None => match options.connect().await {
                Ok(c) => checkpoint(conn.insert(c)).await,
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
            conn = None;
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}
