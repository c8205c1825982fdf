//! The audit log: who did what, when, to which selection, and how it ended.

use sqlx::{SqliteExecutor, SqlitePool};

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
    /// How they proved it: `password`, `token`, `proxy` or `no auth`; none for the
    /// dashboard's own entries (and entries from before the column, when the actor did not
    /// say it).
    pub mode: Option<String>,
    /// What: replay.start, replay.pause, replay.resume, replay.cancel, replay.finish.
    pub action: String,
    /// The job it concerns.
    pub job_id: Option<String>,
    /// One sentence.
    pub summary: String,
    /// JSON: selection and counts at that moment.
    pub detail: String,
}

/// An entry to append.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// When, ms.
    pub at: i64,
    /// Who.
    pub actor: &'a str,
    /// How they proved it (see [`AuditEntry::mode`]).
    pub mode: Option<&'a str>,
    /// What, e.g. `replay.start`.
    pub action: &'a str,
    /// The job it concerns.
    pub job_id: Option<&'a str>,
    /// One sentence.
    pub summary: &'a str,
    /// Selection and counts at that moment.
    pub detail: &'a serde_json::Value,
}

/// Append an entry, in the caller's transaction when given one, so that an action and its
/// audit entry are committed together.
pub async fn append<'e>(db: impl SqliteExecutor<'e>, entry: &NewEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, mode, action, job_id, summary, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.at)
    .bind(entry.actor)
    .bind(entry.mode)
    .bind(entry.action)
    .bind(entry.job_id)
    .bind(entry.summary)
    .bind(entry.detail.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// Entries newest first, older than the entry id `before` when given.
pub async fn list(pool: &SqlitePool, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, mode, action, job_id, summary, detail FROM audit_log
         WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
