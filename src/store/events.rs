//! Index events: what the indexer noticed about a broker's logs (retention gaps, restarted
//! offsets), kept so the pages can tell the user.

use sqlx::SqlitePool;

use super::positions::{self, Position};
use crate::error::Result;

/// Kind of event: records deleted by the broker before they were indexed.
pub const RETENTION_GAP: &str = "retention_gap";
/// Kind of event: the partition's offsets restarted (topic recreated, cluster wiped).
pub const LOG_RESET: &str = "log_reset";

/// One event.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct IndexEvent {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// `retention_gap` or `log_reset`.
    pub kind: String,
    /// Generation of the partition after the event.
    pub generation: i64,
    /// First offset concerned.
    pub from_offset: Option<i64>,
    /// Offset after the last one concerned.
    pub to_offset: Option<i64>,
    /// The sentence shown to users.
    pub message: String,
    /// When it was detected, ms.
    #[serde(skip)]
    pub detected_at: i64,
}

/// Record an event and move the partition's position, in one transaction.
pub async fn record(pool: &SqlitePool, event: &IndexEvent, new_position: &Position) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO index_events (topic, partition, kind, generation, from_offset, to_offset, message, detected_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.topic)
    .bind(event.partition)
    .bind(&event.kind)
    .bind(event.generation)
    .bind(event.from_offset)
    .bind(event.to_offset)
    .bind(&event.message)
    .bind(event.detected_at)
    .execute(&mut *tx)
    .await?;
    positions::reset(&mut tx, new_position, event.detected_at).await?;
    tx.commit().await?;
    Ok(())
}

/// The most recent events, newest first, optionally for one topic.
pub async fn recent(pool: &SqlitePool, topic: Option<&str>, limit: i64) -> Result<Vec<IndexEvent>> {
    Ok(sqlx::query_as(
        "SELECT topic, partition, kind, generation, from_offset, to_offset, message, detected_at FROM index_events
         WHERE (?1 IS NULL OR topic = ?1) ORDER BY detected_at DESC, id DESC LIMIT ?2",
    )
    .bind(topic)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
