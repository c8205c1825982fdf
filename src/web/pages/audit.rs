//! The audit log: who did what, when.

use askama::Template;
use axum::extract::{RawQuery, State};

use super::{html, PageResult};
use crate::store::audit;
use crate::web::auth::Caller;
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::query::audit_params;
use crate::web::routes::{Routes, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/audit", VIEWER, audit_page)
}

struct AuditRow {
    at: String,
    at_exact: String,
    at_iso: String,
    actor: String,
    /// How the actor proved who they are; empty for the dashboard's own entries.
    mode: String,
    action: String,
    job: Option<(String, String)>,
    summary: String,
}

#[derive(Template)]
#[template(path = "pages/audit.html")]
struct AuditPage {
    frame: Frame,
    rows: Vec<AuditRow>,
    older_link: Option<String>,
    paged: bool,
}

/// `GET /audit`: who did what, newest first, with an "Older" keyset link.
async fn audit_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    RawQuery(query): RawQuery,
) -> PageResult {
    let (before, limit) = audit_params(query.as_deref())?;
    let now = crate::clock::now_ms();
    let mut entries = audit::list(&state.pool, before, limit + 1).await?;
    let older_link = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| format!("/audit?before={}", e.id))
    } else {
        None
    };
    html(AuditPage {
        frame: Frame::build(&state, who.as_ref(), "audit").await,
        rows: entries
            .into_iter()
            .map(|e| AuditRow {
                at: view::relative(e.at, now),
                at_exact: view::time(e.at),
                at_iso: crate::clock::iso(e.at),
                job: e.job_id.map(|id| (action_link(&e.action, &id), id)),
                actor: e.actor,
                mode: e.mode.unwrap_or_default(),
                action: e.action,
                summary: e.summary,
            })
            .collect(),
        older_link,
        paged: before.is_some(),
    })
}

/// The page of the action an entry concerns: a purge for `purge.*`, a replay job otherwise.
fn action_link(action: &str, id: &str) -> String {
    if action.starts_with("purge.") {
        format!("/purges/{}", path_segment(id))
    } else {
        job_link(id)
    }
}
