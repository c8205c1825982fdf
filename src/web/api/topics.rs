//! `/api/topics`: every DLQ topic with its counts and log events.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::clock::iso;
use crate::error::Result;
use crate::store::{self, stats};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/topics", get(topics))
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
