//! `/api/topics`: every DLQ topic with its counts and log events; `/api/topics/{topic}/reclaim`:
//! the reclaimable prefix of each partition, and the reclaim itself.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use crate::actions::reclaim::ReclaimOutcome;
use crate::clock::iso;
use crate::error::{Error, Result};
use crate::store::reclaim::Reclaimable;
use crate::store::{self, stats};
use crate::web::extract::{require_json, Actor};
use crate::web::routes::{Routes, ADMIN, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/api/topics", VIEWER, topics)
        .get("/api/topics/{topic}/reclaim", VIEWER, reclaimable)
        .post("/api/topics/{topic}/reclaim", ADMIN, reclaim)
}

/// One partition in `GET /api/topics/{topic}/reclaim`.
#[derive(Serialize)]
pub struct ReclaimableJson {
    partition: i32,
    /// The generation of the partition's log the prefix is of.
    generation: i64,
    /// Records of that generation in the index.
    indexed: i64,
    /// The log start last seen on the broker (null before the first look).
    low_watermark: Option<i64>,
    /// Offsets below this were deleted by an earlier reclaim.
    reclaimed_to: Option<i64>,
    /// DeleteRecords would delete the offsets below this; null when nothing is reclaimable.
    reclaimable_to: Option<i64>,
    /// Indexed records in the reclaimable prefix.
    records: i64,
    /// Their payload bytes.
    bytes: i64,
}

impl ReclaimableJson {
    /// The API form of a partition's prefix.
    pub fn new(p: &Reclaimable) -> Self {
        ReclaimableJson {
            partition: p.partition,
            generation: p.generation,
            indexed: p.indexed,
            low_watermark: p.log_start,
            reclaimed_to: p.reclaimed_to,
            reclaimable_to: p.reclaimable_to(),
            records: if p.reclaimable_to().is_some() {
                p.records
            } else {
                0
            },
            bytes: if p.reclaimable_to().is_some() {
                p.bytes
            } else {
                0
            },
        }
    }
}

async fn reclaimable(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Vec<ReclaimableJson>>> {
    let plan = state.actions.reclaimable(&topic).await?;
    Ok(Json(plan.iter().map(ReclaimableJson::new).collect()))
}

/// `POST /api/topics/{topic}/reclaim`, with no body or `{"partitions": [0, 2]}`: delete the
/// reclaimable prefixes on the broker. 409 with a sentence when nothing is reclaimable or the
/// broker refused (it does not support DeleteRecords, or the dashboard lacks the ACL).
async fn reclaim(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReclaimOutcome>> {
    require_json(&headers)?;
    let partitions = reclaim_partitions(&body)?;
    Ok(Json(
        state
            .actions
            .reclaim(&topic, partitions.as_deref(), &actor)
            .await?,
    ))
}

/// The partitions a reclaim request names: an empty body or `{}` means all.
fn reclaim_partitions(body: &Bytes) -> Result<Option<Vec<i32>>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let shape = || {
        Error::BadRequest(
            "The body must be empty or a JSON object such as {\"partitions\": [0, 2]}.".into(),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("The request body is not valid JSON ({e}).")))?;
    let fields = value.as_object().ok_or_else(shape)?;
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "partitions") {
        return Err(Error::BadRequest(format!(
            "Unknown field '{unknown}'; a reclaim takes only 'partitions'."
        )));
    }
    match fields.get("partitions") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(list) => {
            let list: Vec<i32> = serde_json::from_value(list.clone()).map_err(|_| {
                Error::BadRequest(
                    "Field 'partitions' must be a list of partition numbers, such as [0, 2]."
                        .into(),
                )
            })?;
            if list.is_empty() || list.iter().any(|p| *p < 0) {
                return Err(Error::BadRequest(
                    "Field 'partitions' must name at least one partition, each a number from 0 (leave it out for all).".into(),
                ));
            }
            Ok(Some(list))
        }
    }
}

/// One DLQ topic in `GET /api/topics`.
#[derive(Serialize)]
pub struct TopicJson {
    topic: String,
    partitions: i64,
    /// Records indexed, purged ones left out.
    messages: i64,
    /// Purged records.
    purged: i64,
    by_status: BTreeMap<String, i64>,
    oldest: Option<String>,
    newest: Option<String>,
    oldest_unresolved: Option<String>,
    unresolved: i64,
    events: Vec<EventJson>,
}

/// Something the indexer noticed about a topic's log (retention gap, restarted offsets).
#[derive(Serialize)]
pub struct EventJson {
    kind: String,
    partition: i32,
    generation: i64,
    from_offset: Option<i64>,
    to_offset: Option<i64>,
    message: String,
    detected_at: String,
}

async fn topics(State(state): State<AppState>) -> Result<Json<Vec<TopicJson>>> {
    let snapshot = state.status.snapshot();
    let overviews = stats::topic_overviews(
        &state.pool,
        &snapshot.assigned_partitions,
        crate::clock::now_ms(),
    )
    .await?;
    let events = store::events::recent(&state.pool, None, 500).await?;
    Ok(Json(
        overviews
            .into_iter()
            .map(|o| TopicJson {
                unresolved: o.unresolved(),
                partitions: o.partitions,
                messages: o.messages,
                purged: o.purged,
                oldest: o.oldest.map(iso),
                newest: o.newest.map(iso),
                oldest_unresolved: o.oldest_unresolved.map(iso),
                by_status: o.by_status,
                events: events
                    .iter()
                    .filter(|e| e.topic == o.topic)
                    .map(|e| EventJson {
                        kind: e.kind.clone(),
                        partition: e.partition,
                        generation: e.generation,
                        from_offset: e.from_offset,
                        to_offset: e.to_offset,
                        message: e.message.clone(),
                        detected_at: iso(e.detected_at),
                    })
                    .collect(),
                topic: o.topic,
            })
            .collect(),
    ))
}
