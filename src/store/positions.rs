//! Per-partition index positions: the next offset to read, advanced with the rows it covers.

use sqlx::{SqliteConnection, SqlitePool};

use crate::error::Result;

/// The next offset to index for one partition.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Position {
    /// DLQ topic.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The offset after the last indexed record.
    pub next_offset: i64,
}

/// Every stored position.
pub async fn all(pool: &SqlitePool) -> Result<Vec<Position>> {
    Ok(sqlx::query_as(
        "SELECT topic, partition, next_offset FROM partition_positions ORDER BY topic, partition",
    )
    .fetch_all(pool)
    .await?)
}

/// Advance positions inside the caller's transaction; a position never moves backwards.
pub async fn advance(conn: &mut SqliteConnection, positions: &[Position], now: i64) -> Result<()> {
    for p in positions {
        sqlx::query(
            "INSERT INTO partition_positions (topic, partition, next_offset, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (topic, partition) DO UPDATE SET
                next_offset = MAX(next_offset, excluded.next_offset), updated_at = excluded.updated_at",
        )
        .bind(&p.topic)
        .bind(p.partition)
        .bind(p.next_offset)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
