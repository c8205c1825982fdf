//! `/api/purges`: preview and confirm purges, list them, undo and erase them.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::actions::purge::{self, PurgeRequest};
use crate::actions::selection::{MessageRef, Selection};
use crate::clock::iso;
use crate::error::{Error, Result};
use crate::states::{PurgeItemState, PurgeStatus, RecordStatus};
use crate::store::purges::{self as stored, Purge, PurgeEntry};
use crate::web::extract::{json_fields, json_flag as flag, Actor};
use crate::web::routes::{Routes, ADMIN, OPERATOR, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/api/purges", VIEWER, list)
        .post("/api/purges", OPERATOR, create)
        .get("/api/purges/{id}", VIEWER, one)
        .post("/api/purges/{id}/undo", OPERATOR, undo)
        .post("/api/purges/{id}/erase", ADMIN, erase)
}

/// A purge in the API.
#[derive(Serialize)]
pub struct PurgeJson {
    id: String,
    status: PurgeStatus,
    actor: String,
    reason: Option<String>,
    erase: bool,
    selection: serde_json::Value,
    /// Messages the preview counted.
    total: i64,
    purged: i64,
    /// Refused at preview, or when applied because they changed since.
    refused: i64,
    undone: i64,
    erased: i64,
    /// Messages this purge holds now (purged, not undone).
    still_purged: i64,
    /// Whether some of them can still be restored.
    undo_possible: bool,
    by_topic: BTreeMap<String, i64>,
    by_status: BTreeMap<String, i64>,
    created_at: String,
    confirmed_at: Option<String>,
    finished_at: Option<String>,
}

impl PurgeJson {
    /// The API form of a stored purge.
    pub fn new(p: &Purge) -> Self {
        PurgeJson {
            id: p.id.clone(),
            status: p.status,
            actor: p.actor.clone(),
            reason: p.reason.clone(),
            erase: p.erase,
            selection: p.selection.0.clone(),
            total: p.total,
            purged: p.purged,
            refused: p.refused + p.skipped,
            undone: p.undone,
            erased: p.erased,
            still_purged: p.still_purged(),
            undo_possible: p.status == PurgeStatus::Applied && p.still_purged() > p.erased,
            by_topic: p.by_topic.0.clone(),
            by_status: p.by_status.0.clone(),
            created_at: iso(p.created_at),
            confirmed_at: p.confirmed_at.map(iso),
            finished_at: p.finished_at.map(iso),
        }
    }
}

/// A purge of one message, in the message's history.
#[derive(Serialize)]
pub struct PurgeHistoryJson {
    purge_id: String,
    actor: String,
    at: Option<String>,
    reason: Option<String>,
    state: PurgeItemState,
    /// The message's status before the purge (what an undo restores).
    status_before: RecordStatus,
    /// Why the purge refused it.
    refused: Option<String>,
}

impl PurgeHistoryJson {
    /// The API form of a message's purge item.
    pub fn new(e: &PurgeEntry) -> Self {
        PurgeHistoryJson {
            purge_id: e.purge_id.clone(),
            actor: e.actor.clone(),
            at: e.at.map(iso),
            reason: e.reason.clone(),
            state: e.state,
            status_before: e.prev_status,
            refused: e.refusal.clone(),
        }
    }
}

/// The fields of `POST /api/purges`.
const CREATE_FIELDS: [&str; 8] = [
    "messages",
    "filter",
    "group",
    "reason",
    "erase",
    "dry_run",
    "preview_id",
    "everything",
];

/// An optional `messages` list.
fn listed(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Vec<MessageRef>>> {
    match fields.get("messages") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => {
            let list: Vec<MessageRef> = serde_json::from_value(v.clone()).map_err(|e| {
                Error::BadRequest(format!(
                    "Field 'messages' must be a list of {{\"topic\", \"partition\", \"offset\"}} ({e})."
                ))
            })?;
            if list.is_empty() {
                return Err(Error::BadRequest(
                    "Field 'messages' is empty: name at least one message, or leave the field out for all of them.".into(),
                ));
            }
            Ok(Some(list))
        }
    }
}

/// `POST /api/purges`: a preview (`dry_run`), or a confirmed and applied purge.
async fn create(
    State(state): State<AppState>,
    Actor(actor): Actor,
    crate::web::auth::Caller(who): crate::web::auth::Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let fields = json_fields(&headers, &body, &CREATE_FIELDS, true)?;
    let everything = flag(&fields, "everything")?;
    if let Some(id) = fields.get("preview_id") {
        let Some(id) = id.as_str() else {
            return Err(Error::BadRequest(
                "Field 'preview_id' must be a string.".into(),
            ));
        };
        let done = state
            .actions
            .purge_confirm(id, everything, None, &actor)
            .await?;
        return Ok(applied(&done));
    }
    let request = PurgeRequest {
        reason: purge::reason(fields.get("reason"))?,
        erase: flag(&fields, "erase")?,
    };
    let dry_run = flag(&fields, "dry_run")?;
    let selection = Selection::from_fields(&fields)?;
    crate::web::masking::refuse_selection(&state, who.as_ref(), &selection)?;
    let preview = state
        .actions
        .purge_preview(selection, request, &actor)
        .await?;
    if dry_run {
        return Ok(Json(preview).into_response());
    }
    state
        .actions
        .whole_in_scope(&preview.preview_id, true, &actor)
        .await?;
    let done = state
        .actions
        .purge_confirm(&preview.preview_id, everything, None, &actor)
        .await?;
    Ok(applied(&done))
}

fn applied(done: &purge::PurgeDone) -> Response {
    (
        StatusCode::OK,
        [(header::LOCATION, format!("/api/purges/{}", done.id))],
        Json(done),
    )
        .into_response()
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<PurgeJson>>> {
    Ok(Json(
        stored::purges(&state.pool, 500)
            .await?
            .iter()
            .map(PurgeJson::new)
            .collect(),
    ))
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PurgeJson>> {
    Ok(Json(PurgeJson::new(
        &state.actions.find_purge(&id, false).await?,
    )))
}

/// `POST /api/purges/{id}/undo`: restore all of a purge's messages, or `messages`.
async fn undo(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<purge::PurgeChange>> {
    let fields = json_fields(&headers, &body, &["messages"], true)?;
    Ok(Json(
        state
            .actions
            .purge_undo(&id, listed(&fields)?, &actor)
            .await?,
    ))
}

/// `POST /api/purges/{id}/erase`: erase the payloads of all of a purge's messages, or
/// `messages`.
async fn erase(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<purge::PurgeChange>> {
    let fields = json_fields(&headers, &body, &["messages"], true)?;
    Ok(Json(
        state
            .actions
            .purge_erase(&id, listed(&fields)?, &actor)
            .await?,
    ))
}
