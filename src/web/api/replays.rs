//! `/api/replays`: preview, confirm and steer replay jobs, and read their results.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::actions::replay::{self as plan};
use crate::actions::selection::Selection;
use crate::actions::JobControl;
use crate::clock::iso;
use crate::error::{Error, Result};
use crate::replay::outcomes::GroupTracking;
use crate::states::ItemState;
use crate::states::JobStatus;
use crate::store::items::{self, ItemResult, ReturnedRecord};
use crate::store::jobs::{self, Job};
use crate::web::extract::{json_fields, json_flag, require_json, Actor};
use crate::web::query::results_query;
use crate::web::routes::{Routes, OPERATOR, VIEWER};
use crate::web::AppState;

/// Routes under /api for replays and the audit log.
pub fn router() -> Routes {
    Routes::new()
        .get("/api/replays", VIEWER, list)
        .post("/api/replays", OPERATOR, create)
        .get("/api/replays/{id}", VIEWER, one)
        .get("/api/replays/{id}/results", VIEWER, results)
        .post("/api/replays/{id}/{action}", OPERATOR, control)
}

/// A job in the API.
#[derive(Serialize)]
pub struct JobJson {
    id: String,
    status: JobStatus,
    total: i64,
    sent: i64,
    failed: i64,
    remaining: i64,
    refused: i64,
    cancelled: i64,
    rate: i64,
    targets: BTreeMap<String, i64>,
    actor: String,
    selection: serde_json::Value,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    eta_seconds: Option<f64>,
    replay: plan::SendSettings,
    consumed: i64,
    failed_again: i64,
    failed_again_probably: i64,
    awaiting_consumption: i64,
    consumer_groups: Vec<GroupTracking>,
    /// Why the running job cannot go on now (its results cannot be recorded); it waits and
    /// goes on by itself. None while it can.
    waiting_on: Option<String>,
}

impl JobJson {
    /// The API form of a stored job, as this dashboard runs it now.
    pub fn new(state: &AppState, job: &Job) -> Result<Self> {
        let remaining = job.remaining();
        Ok(JobJson {
            id: job.id.clone(),
            status: job.status,
            total: job.total,
            sent: job.sent,
            failed: job.failed,
            remaining,
            refused: job.refused,
            cancelled: job.cancelled,
            rate: job.rate,
            targets: job.target_counts(),
            actor: job.actor.clone(),
            selection: job.selection.0.clone(),
            created_at: iso(job.created_at),
            started_at: job.started_at.map(iso),
            finished_at: job.finished_at.map(iso),
            eta_seconds: (!job.status.is_final() && job.rate > 0)
                .then(|| plan::estimated_seconds(remaining, job.rate)),
            replay: plan::SendSettings::of(job),
            consumed: job.consumed,
            failed_again: job.failed_again,
            failed_again_probably: job.failed_again_probably,
            awaiting_consumption: job.awaiting_consumption(),
            consumer_groups: job.consumer_groups.0.clone(),
            waiting_on: crate::web::health::replay_waiting_on(state, job.status),
        })
    }
}

const CREATE_FIELDS: [&str; 6] = [
    "messages",
    "filter",
    "group",
    "rate",
    "dry_run",
    "preview_id",
];

/// `POST /api/replays`: a preview (`dry_run`), or a started job (202).
async fn create(
    State(state): State<AppState>,
    Actor(actor): Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let fields = json_fields(&headers, &body, &CREATE_FIELDS, false)?;
    let dry_run = json_flag(&fields, "dry_run")?;
    let rate = plan::rate(fields.get("rate"))?;
    if let Some(id) = fields.get("preview_id") {
        let Some(id) = id.as_str() else {
            return Err(Error::BadRequest(
                "Field 'preview_id' must be a string.".into(),
            ));
        };
        let asked = fields.get("rate").is_some().then_some(rate);
        let job = state.actions.confirm(id, asked, &actor).await?;
        return Ok(started(&job));
    }
    let selection = Selection::from_fields(&fields)?;
    let preview = state.actions.preview(selection, rate, &actor).await?;
    if dry_run {
        return Ok(Json(preview).into_response());
    }
    state
        .actions
        .whole_in_scope(&preview.preview_id, false, &actor)
        .await?;
    let job = state
        .actions
        .confirm(&preview.preview_id, None, &actor)
        .await?;
    Ok(started(&job))
}

fn started(job: &Job) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/replays/{}", job.id))],
        Json(serde_json::json!({
            "id": job.id,
            "status": job.status,
            "total": job.total,
            "refused": job.refused,
        })),
    )
        .into_response()
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<JobJson>>> {
    Ok(Json(
        jobs::jobs(&state.pool, 500)
            .await?
            .iter()
            .map(|j| JobJson::new(&state, j))
            .collect::<Result<_>>()?,
    ))
}

/// A confirmed job or a 404 naming it.
pub async fn find_job(state: &AppState, id: &str) -> Result<Job> {
    jobs::job(&state.pool, id)
        .await?
        .filter(|j| j.status != JobStatus::Preview)
        .ok_or_else(|| plan::unknown_job(id))
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobJson>> {
    Ok(Json(JobJson::new(&state, &find_job(&state, &id).await?)?))
}

/// One result in `GET /api/replays/{id}/results`.
#[derive(Serialize)]
pub struct ResultJson {
    job_id: String,
    actor: String,
    topic: String,
    partition: i32,
    offset: i64,
    generation: i64,
    state: ItemState,
    target_topic: Option<String>,
    target_partition: Option<i32>,
    target_offset: Option<i64>,
    reason: Option<String>,
    replay_id: String,
    replay_count: Option<i64>,
    finished_at: Option<String>,
    consumed_at: Option<String>,
    failed_again: Option<FailedAgainJson>,
}

/// The DLQ record a replayed record came back as.
#[derive(Serialize)]
pub struct FailedAgainJson {
    topic: String,
    partition: i32,
    offset: i64,
    generation: i64,
    error_class: Option<String>,
    error_message: Option<String>,
    /// Matched by DLQ topic, key and value because it carried no dlq-replay-id: probably
    /// this replay, not certainly.
    probable: bool,
}

impl FailedAgainJson {
    fn of(back: &ReturnedRecord) -> Option<Self> {
        Some(FailedAgainJson {
            topic: back.topic.clone()?,
            partition: back.partition?,
            offset: back.offset?,
            generation: back.generation.unwrap_or(0),
            error_class: back.error_class.clone(),
            error_message: back.error_message.clone(),
            probable: back.probable,
        })
    }
}

impl ResultJson {
    /// The API form of an item.
    pub fn new(r: &ItemResult) -> Self {
        ResultJson {
            job_id: r.job_id.clone(),
            actor: r.actor.clone(),
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            generation: r.generation,
            state: r.state,
            target_topic: r.target_topic.clone(),
            target_partition: r.target_partition,
            target_offset: r.target_offset,
            reason: r.reason.clone(),
            replay_id: crate::replay::runner::replay_id(&r.job_id, r.record_id),
            replay_count: r.replay_count,
            finished_at: r.finished_at.map(iso),
            consumed_at: r.consumed_at.map(iso),
            failed_again: FailedAgainJson::of(&r.failed_again),
        }
    }
}

#[derive(Serialize)]
struct ResultsPage {
    results: Vec<ResultJson>,
    counts: BTreeMap<String, i64>,
    next_cursor: Option<String>,
}

async fn results(
    State(state): State<AppState>,
    crate::web::auth::Caller(who): crate::web::auth::Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<ResultsPage>> {
    find_job(&state, &id).await?;
    let q = results_query(query.as_deref(), true, 100)?;
    let (mut rows, next_cursor) =
        items::result_page(&state.pool, &id, q.only, q.cursor, q.limit).await?;
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    for r in &mut rows {
        crate::web::masking::item(&sight, r);
    }
    Ok(Json(ResultsPage {
        results: rows.iter().map(ResultJson::new).collect(),
        counts: items::item_counts(&state.pool, &id).await?,
        next_cursor,
    }))
}

/// The body a control POST may carry: nothing, or an empty JSON object.
fn control_body(headers: &HeaderMap, body: &Bytes) -> Result<()> {
    require_json(headers)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(o)) if o.is_empty() => Ok(()),
        _ => Err(Error::BadRequest(
            "This request takes no body (or an empty JSON object).".into(),
        )),
    }
}

/// `POST /api/replays/{id}/pause|resume|cancel`.
async fn control(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<JobJson>> {
    let action = JobControl::parse(&action)?;
    control_body(&headers, &body)?;
    Ok(Json(JobJson::new(
        &state,
        &state.actions.control(&id, action, &actor).await?,
    )?))
}
