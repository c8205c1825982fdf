//! Per-partition index positions: the log generation and the next offset to read, advanced
//! with the rows they cover.

use sqlx::{SqliteConnection, SqlitePool};

use crate::error::Result;

/// Where indexing stands in one partition.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Position {
    /// DLQ topic.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Which incarnation of the partition's log (0 until its offsets ever restart).
    pub generation: i64,
    /// The offset after the last indexed record.
    pub next_offset: i64,
}

/// Every stored position.
pub async fn all(pool: &SqlitePool) -> Result<Vec<Position>> {
    Ok(sqlx::query_as(
        "SELECT topic, partition, generation, next_offset FROM partition_positions ORDER BY topic, partition",
    )
    .fetch_all(pool)
    .await?)
}

/// Advance positions inside the caller's transaction. Within a generation a position never
/// moves backwards; a newer generation replaces the old position.
pub async fn advance(conn: &mut SqliteConnection, positions: &[Position], now: i64) -> Result<()> {
    for p in positions {
        sqlx::query(
            "INSERT INTO partition_positions (topic, partition, generation, next_offset, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (topic, partition) DO UPDATE SET
                next_offset = CASE
                    WHEN excluded.generation > generation THEN excluded.next_offset
                    WHEN excluded.generation = generation THEN MAX(next_offset, excluded.next_offset)
                    ELSE next_offset END,
                generation = MAX(generation, excluded.generation),
                log_start = CASE WHEN excluded.generation > generation THEN NULL ELSE log_start END,
                reclaiming_to = CASE WHEN excluded.generation > generation THEN NULL ELSE reclaiming_to END,
                reclaimed_to = CASE WHEN excluded.generation > generation THEN NULL ELSE reclaimed_to END,
                updated_at = excluded.updated_at",
        )
        .bind(&p.topic)
        .bind(p.partition)
        .bind(p.generation)
        .bind(p.next_offset)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Set a position exactly (after the broker's log was found to have moved), in the caller's
/// transaction. A new generation starts without a known log start or reclaim: those
/// described the old log (see migration 0011).
pub async fn reset(conn: &mut SqliteConnection, p: &Position, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO partition_positions (topic, partition, generation, next_offset, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (topic, partition) DO UPDATE SET generation = excluded.generation,
            next_offset = excluded.next_offset, updated_at = excluded.updated_at,
            log_start = CASE WHEN excluded.generation <> generation THEN NULL ELSE log_start END,
            reclaiming_to = CASE WHEN excluded.generation <> generation THEN NULL ELSE reclaiming_to END,
            reclaimed_to = CASE WHEN excluded.generation <> generation THEN NULL ELSE reclaimed_to END",
    )
    .bind(&p.topic)
    .bind(p.partition)
    .bind(p.generation)
    .bind(p.next_offset)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
