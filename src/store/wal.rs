//! Write-ahead log checkpoints, off the writers' path.
//!
//! With SQLite's automatic checkpoints the commit that crosses the threshold copies the
//! whole log into the database file before it returns: the indexer stalled there for a
//! sixth of its time. A checkpoint on another connection runs alongside writers in WAL mode,
//! so this task does that work instead, and the automatic threshold (see `store::open`)
//! stays only as a backstop for a process that does not run it.

use sqlx::SqliteConnection;

use crate::error::Result;

/// Copy what the log holds into the database file without waiting for readers or writers.
/// Returns (frames in the log, frames copied).
pub async fn checkpoint(conn: &mut SqliteConnection) -> Result<(i64, i64)> {
    let (_busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok((log, copied))
}

/// Copy the whole log into the database file and empty the log, so that no earlier page
/// image stays in it (after an erasure). Waits for writers (the busy timeout); returns
/// whether it completed, which it does not while a reader still uses old pages. Only the
/// connection's main file: on a pool connection the search file is attached read-only,
/// and checkpointing it there fails with an I/O error.
pub async fn truncate(conn: &mut SqliteConnection) -> Result<bool> {
    let (busy, _log, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA main.wal_checkpoint(TRUNCATE)")
            .fetch_one(conn)
            .await?;
    Ok(busy == 0)
}

/// The page size of the connection's main file.
pub async fn page_size(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("PRAGMA main.page_size")
        .fetch_one(conn)
        .await?)
}
