//! The audit log: who did what, when, to which selection, and how it ended.

use sqlx::SqlitePool;

use crate::error::Result;

/// One audit entry.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    /// Entry id (newest first order, and the keyset cursor).
    pub id: i64,
    /// When, ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What: replay.start, replay.pause, replay.resume, replay.cancel, replay.finish.
    pub action: String,
    /// The job it concerns.
    pub job_id: Option<String>,
    /// One sentence.
    pub summary: String,
    /// JSON: selection and counts at that moment.
    pub detail: String,
}

/// Append an entry.
pub async fn append(
    pool: &SqlitePool,
    at: i64,
    actor: &str,
    action: &str,
    job_id: Option<&str>,
    summary: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, job_id, summary, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(job_id)
    .bind(summary)
    .bind(detail.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Entries newest first, older than the entry id `before` when given.
pub async fn list(pool: &SqlitePool, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, action, job_id, summary, detail FROM audit_log
         WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
