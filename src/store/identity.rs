//! The index file's own identity: a short id created once by migration 0012, stable for the
//! life of the file.

use sqlx::SqlitePool;

use crate::error::Result;

/// The index file's id (12 hex digits), e.g. for naming the Kafka group its offsets are
/// committed under.
pub async fn index_id(pool: &SqlitePool) -> Result<String> {
    Ok(
        sqlx::query_scalar("SELECT index_id FROM index_identity WHERE singleton = 1")
            .fetch_one(pool)
            .await?,
    )
}
