//! The search index, filled behind the indexer.
//!
//! Tokenising and indexing the text of a record took a third of the indexer's write
//! transaction. The indexer now stores rows only, and this catch-up adds their text to
//! `records_fts` in small transactions of its own, in row id order, advancing
//! `search_progress.indexed_through` with the rows it covers. So:
//! - every record with `id <= indexed_through` is in the search index, every record above
//!   it is not yet (search results are complete up to that row, and [`progress`] says how
//!   many newer records are still waiting, for pages to show);
//! - a crash or restart resumes at the stored mark, never skipping or repeating a row;
//! - whoever removes a row from `records` must remove its search entry (a contentless FTS5
//!   table needs the original text for that) only when `id <= indexed_through`.
//!
//! While the indexer works through a backlog the catch-up takes a small share of the
//! writer lock, so records become browsable at full speed and searchable shortly after;
//! when the indexer idles it runs at full speed.

use std::time::{Duration, Instant};

use sqlx::{SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::raw::Statement;
use crate::error::Result;
use crate::index::record::{search_text, SEARCH_PREFIX_BYTES};

/// Rows per catch-up transaction: as many as the indexer writes in one, so that it waits at
/// most about one of its own batches for the writer lock.
pub const CATCH_UP_ROWS: i64 = 5000;
/// How often an idle catch-up looks for new rows: the search lag of a quiet index.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// While the indexer is writing a backlog, the catch-up waits this many times as long as its
/// last transaction took: it keeps a fifth of the writer lock, enough to keep up with a
/// steady ~10k records/s, and a burst beyond that is browsable at once and searchable after.
const BUSY_BACKOFF: u32 = 4;

/// How far the search index has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchProgress {
    /// Every record with an id up to this one is searchable.
    pub indexed_through: i64,
    /// The newest record's id.
    pub newest: i64,
}

impl SearchProgress {
    /// Whether every stored record is searchable.
    pub fn complete(&self) -> bool {
        self.indexed_through >= self.newest
    }

    /// Records stored but not searchable yet (an upper bound when ids have gaps).
    pub fn pending(&self) -> i64 {
        (self.newest - self.indexed_through).max(0)
    }
}

/// Where the search index stands relative to the records.
pub async fn progress(pool: &SqlitePool) -> Result<SearchProgress> {
    let (indexed_through, newest): (i64, i64) = sqlx::query_as(
        "SELECT indexed_through, (SELECT COALESCE(MAX(id), 0) FROM records) FROM search_progress",
    )
    .fetch_one(pool)
    .await?;
    Ok(SearchProgress {
        indexed_through,
        newest,
    })
}

/// The search mark inside a write transaction.
pub async fn indexed_through(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT indexed_through FROM search_progress")
            .fetch_one(conn)
            .await?,
    )
}

/// Add the text of up to `max_rows` records past the mark to the search index and move the
/// mark past them, in one transaction. Returns how many records were added.
pub async fn catch_up(pool: &SqlitePool, max_rows: i64) -> Result<usize> {
    let (_turn, mut tx) = super::begin_write(pool).await?;
    let through = indexed_through(&mut tx).await?;
    let mut added = 0;
    let mut last = through;
    {
        let mut handle = tx.lock_handle().await?;
        let db = handle.as_raw_handle();
        // SAFETY: the handle's lock keeps sqlx off the connection while the statements live;
        // they are dropped at the end of this block, before the lock.
        let mut rows = unsafe { Statement::prepare(db, SELECT_SQL) }?;
        let mut insert = unsafe { Statement::prepare(db, INSERT_SQL) }?;
        rows.int(1, SEARCH_PREFIX_BYTES as i64)?;
        rows.int(2, through)?;
        rows.int(3, max_rows)?;
        while rows.next_row()? {
            let id = rows.column_int(0);
            let text = |i| rows.column_bytes(i).map(String::from_utf8_lossy);
            let (class, message) = (text(3), text(4));
            let t = search_text(
                rows.column_bytes(1),
                rows.column_bytes(2),
                class.as_deref(),
                message.as_deref(),
            );
            insert.int(1, id)?;
            insert.text_copy(2, Some(&t.key_text))?;
            insert.text_copy(3, Some(&t.body_text))?;
            insert.text_copy(4, Some(&t.error_text))?;
            insert.execute()?;
            added += 1;
            last = id;
        }
    }
    if added == 0 {
        return Ok(0);
    }
    sqlx::query("UPDATE search_progress SET indexed_through = ?")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(added)
}

/// The stored fields a record's search text is made from, past the mark, oldest first. Only
/// the prefix that is searched is read: a 10 MiB payload costs 2 KiB here.
const SELECT_SQL: &str =
    "SELECT id, substr(key, 1, ?1), substr(b.value, 1, ?1), error_class, error_message
     FROM records JOIN record_bodies b ON b.record_id = records.id
     WHERE id > ?2 ORDER BY id LIMIT ?3";

/// One search-index row: rowid = records.id.
pub const INSERT_SQL: &str =
    "INSERT INTO records_fts (rowid, key_text, body, error_text) VALUES (?1, ?2, ?3, ?4)";

/// Keep the search index caught up with the records until `shutdown`.
pub async fn run(pool: SqlitePool, shutdown: CancellationToken) {
    let mut last_newest: Option<i64> = None;
    loop {
        let started = Instant::now();
        let pause = match catch_up(&pool, CATCH_UP_ROWS).await {
            Ok(n) if (n as i64) < CATCH_UP_ROWS => IDLE_POLL,
            Ok(_) => {
                // Behind. Records still arriving means the indexer is working through a
                // backlog: let it have the writer lock most of the time. Otherwise go on at
                // once.
                let newest = progress(&pool).await.ok().map(|p| p.newest);
                let indexer_busy = last_newest.is_some() && newest != last_newest;
                last_newest = newest;
                if indexer_busy {
                    started.elapsed() * BUSY_BACKOFF
                } else {
                    Duration::ZERO
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "adding records to the search index failed; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
