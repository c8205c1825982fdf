//! Records the broker no longer has. Once the log start (low watermark) of a DLQ partition
//! moves past indexed records of its current generation (retention, the mock cluster's log
//! cap, a reclaim), those records become `expired`: they stay in the index to be seen, and
//! are no longer offered for replay. Purged records stay purged.
//!
//! The marking runs in chunks of [`CHUNK_ROWS`], each in a write transaction of its own, so
//! that expiring a million records never holds the writer (and so the indexer and page
//! requests) for long. The partition's stored `log_start` doubles as the resume point: every
//! record of the generation below it has been looked at, so a crash mid-way goes on where
//! the last chunk committed, and a later move of the log start only looks at the new range.

use std::collections::HashMap;

use sqlx::SqlitePool;

use super::stats::add_status_count;
use crate::error::Result;
use crate::states::RecordStatus;

/// Records looked at per write transaction.
pub const CHUNK_ROWS: i64 = 2000;

/// The statuses that become `expired` when the broker drops the record.
pub const EXPIRING: [RecordStatus; 3] = [
    RecordStatus::New,
    RecordStatus::Replayed,
    RecordStatus::ReplayFailed,
];

/// What the index knows about one partition's log on the broker.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogStart {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The generation the indexer reads now.
    pub generation: i64,
    /// The log start last seen (None before the first look).
    pub log_start: Option<i64>,
}

/// The stored log start of every partition, by (topic, partition).
pub async fn log_starts(pool: &SqlitePool) -> Result<HashMap<(String, i32), LogStart>> {
    let rows: Vec<LogStart> =
        sqlx::query_as("SELECT topic, partition, generation, log_start FROM partition_positions")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.topic.clone(), r.partition), r))
        .collect())
}

/// Mark the records of `generation` of a partition below `low` (the broker's log start) as
/// expired, chunk by chunk, keeping the per-topic status counts in the same transactions,
/// and store `low` as the partition's log start. Returns how many records were marked.
///
/// Nothing happens when the partition is in another generation now (its log restarted
/// since `low` was read) or its stored log start is already at or past `low`.
pub async fn expire_below(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    generation: i64,
    low: i64,
) -> Result<i64> {
    let mut marked = 0;
    loop {
        let mut tx = super::begin_write(pool).await?;
        let stored: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT generation, log_start FROM partition_positions WHERE topic = ? AND partition = ?",
        )
        .bind(topic)
        .bind(partition)
        .fetch_optional(&mut *tx)
        .await?;
        let (from, first_look) = match stored {
            Some((g, start)) if g == generation => (start.unwrap_or(0), start.is_none()),
            _ => return Ok(marked),
        };
        if from >= low {
            if first_look {
                // Nothing below it to mark, but the page shows where the log starts.
                set_log_start(&mut tx, topic, partition, generation, low).await?;
                tx.commit().await?;
            }
            return Ok(marked);
        }
        let rows: Vec<(i64, i64, RecordStatus)> = sqlx::query_as(
            "SELECT id, \"offset\", status FROM records
             WHERE topic = ? AND partition = ? AND generation = ? AND \"offset\" >= ? AND \"offset\" < ?
             ORDER BY \"offset\" LIMIT ?",
        )
        .bind(topic)
        .bind(partition)
        .bind(generation)
        .bind(from)
        .bind(low)
        .bind(CHUNK_ROWS)
        .fetch_all(&mut *tx)
        .await?;
        let full = rows.len() as i64 == CHUNK_ROWS;
        let mut by_status: HashMap<RecordStatus, i64> = HashMap::new();
        let mut ids = Vec::new();
        for (id, _, status) in &rows {
            if EXPIRING.contains(status) {
                ids.push(*id);
                *by_status.entry(*status).or_default() += 1;
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE records SET status = 'expired' WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
            for (status, n) in &by_status {
                add_status_count(&mut tx, topic, status.as_str(), -n).await?;
            }
            add_status_count(
                &mut tx,
                topic,
                RecordStatus::Expired.as_str(),
                ids.len() as i64,
            )
            .await?;
            marked += ids.len() as i64;
        }
        // Where the next chunk starts, stored with this one: every record below it was looked
        // at. The last chunk stores the broker's log start itself.
        let through = match rows.last() {
            Some((_, offset, _)) if full => offset + 1,
            _ => low,
        };
        set_log_start(&mut tx, topic, partition, generation, through).await?;
        tx.commit().await?;
        if !full {
            return Ok(marked);
        }
        tokio::task::yield_now().await;
    }
}

/// Move a partition's stored log start up to `at` (never down), in the caller's transaction.
async fn set_log_start(
    conn: &mut sqlx::SqliteConnection,
    topic: &str,
    partition: i32,
    generation: i64,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE partition_positions SET log_start = MAX(COALESCE(log_start, 0), ?)
         WHERE topic = ? AND partition = ? AND generation = ?",
    )
    .bind(at)
    .bind(topic)
    .bind(partition)
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
