//! `/api/audit`: the audit log, newest first.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;

use crate::clock::iso;
use crate::error::Result;
use crate::store::audit::{self, AuditEntry};
use crate::web::query::audit_params;
use crate::web::routes::{Routes, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/api/audit", VIEWER, list_audit)
}

/// One audit entry in the API.
#[derive(Serialize)]
pub struct AuditJson {
    id: i64,
    at: String,
    actor: String,
    /// How the actor proved who they are: password, token, proxy or "no auth"; null for
    /// the dashboard's own entries.
    mode: Option<String>,
    action: String,
    job_id: Option<String>,
    summary: String,
    detail: serde_json::Value,
}

impl AuditJson {
    /// The API form of an entry.
    pub fn new(e: AuditEntry) -> Self {
        AuditJson {
            id: e.id,
            at: iso(e.at),
            actor: e.actor,
            mode: e.mode,
            action: e.action,
            job_id: e.job_id,
            summary: e.summary,
            detail: serde_json::from_str(&e.detail).unwrap_or_default(),
        }
    }
}

#[derive(Serialize)]
struct AuditPage {
    entries: Vec<AuditJson>,
    next_cursor: Option<String>,
}

async fn list_audit(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditPage>> {
    let (before, limit) = audit_params(query.as_deref())?;
    let mut entries = audit::list(&state.pool, before, limit + 1).await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditJson::new).collect(),
        next_cursor,
    }))
}
