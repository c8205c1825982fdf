//! The background task that checkpoints the index's write-ahead logs (the SQL is
//! `store::wal::checkpoint`; why it runs here and not on commit is explained there).

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::store::wal::checkpoint;

/// How often the log is copied back into the database file.
const EVERY: Duration = Duration::from_millis(500);

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
