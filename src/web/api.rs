//! The JSON API under /api, shared by the pages and by scripts. Documented in the README.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;

use super::view::iso;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::filter::MessageQuery;
use crate::index::record::decode_headers;
use crate::replay::target::{ReplaySource, Resolution};
use crate::store::records::{RecordDetail, RecordId, RecordSummary};
use crate::store::{self, groups, records, stats};

/// Routes under /api.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/topics", get(topics))
        .route("/api/messages", get(messages))
        .route("/api/messages/{topic}/{partition}/{offset}", get(message))
        .route("/api/messages/{topic}/{partition}/{offset}/raw", get(raw))
        .route("/api/groups", get(list_groups))
        .route("/api/cluster", get(cluster))
}

/// One DLQ topic in `GET /api/topics`.
#[derive(Serialize)]
pub struct TopicJson {
    topic: String,
    partitions: i64,
    messages: i64,
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
    let overviews =
        stats::topic_overviews(&state.pool, &snapshot.assigned_partitions, store::now_ms()).await?;
    let events = store::events::recent(&state.pool, None, 500).await?;
    Ok(Json(
        overviews
            .into_iter()
            .map(|o| TopicJson {
                unresolved: o.unresolved(),
                partitions: o.partitions,
                messages: o.messages,
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

/// Origin coordinates of a record.
#[derive(Serialize)]
pub struct OriginJson {
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: Option<String>,
    consumer_group: Option<String>,
}

/// Error fields of a record.
#[derive(Serialize)]
pub struct ErrorJson {
    class: Option<String>,
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stacktrace: Option<Option<String>>,
}

/// One record in listings.
#[derive(Serialize)]
pub struct MessageJson {
    topic: String,
    partition: i32,
    offset: i64,
    generation: i64,
    timestamp: String,
    key: Option<String>,
    key_base64: Option<String>,
    status: String,
    replay_count: i64,
    value_size: i64,
    origin: OriginJson,
    error: ErrorJson,
    convention: String,
    group: String,
    /// Replays of this record, or of its lineage, that came back to a DLQ.
    failed_again_after_replays: i64,
    /// Whether it failed again after two or more replays.
    replay_loop: bool,
}

impl MessageJson {
    fn from_summary(r: RecordSummary) -> Self {
        MessageJson {
            timestamp: iso(r.ts),
            key: r
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_string),
            key_base64: r.key.as_deref().map(|k| BASE64.encode(k)),
            origin: OriginJson {
                topic: r.origin_topic,
                partition: r.origin_partition,
                offset: r.origin_offset,
                timestamp: r.origin_timestamp.map(iso),
                consumer_group: r.consumer_group,
            },
            error: ErrorJson {
                class: r.error_class,
                message: r.error_message,
                stacktrace: None,
            },
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            generation: r.generation,
            status: r.status,
            replay_count: r.replay_count,
            value_size: r.value_size,
            convention: r.convention,
            group: r.fingerprint,
            failed_again_after_replays: r.failed_again_count,
            replay_loop: r.failed_again_count >= store::outcomes::LOOP_REPLAYS,
        }
    }
}

#[derive(Serialize)]
struct MessagePageJson {
    messages: Vec<MessageJson>,
    next_cursor: Option<String>,
    /// With `q` only: how many of the newest records are not searchable yet (0 when search
    /// results are complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    search_pending: Option<i64>,
}

async fn messages(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<MessagePageJson>> {
    let query = MessageQuery::parse(query.as_deref().unwrap_or(""))?;
    let page = records::list(&state.pool, &query).await?;
    let search_pending = match query.filter.q {
        Some(_) => Some(store::search::progress(&state.pool).await?.pending()),
        None => None,
    };
    Ok(Json(MessagePageJson {
        search_pending,
        next_cursor: page.older.map(|c| c.encode()),
        messages: page
            .rows
            .into_iter()
            .map(MessageJson::from_summary)
            .collect(),
    }))
}

/// Where a replay of the record would go, resolved as a replay would resolve it.
#[derive(Serialize)]
pub struct ReplayTargetJson {
    /// The first retry topic, when not refused.
    pub target: Option<String>,
    /// The rule that chose it (a --replay-target mapping or the template).
    pub rule: Option<String>,
    /// Why a replay would be refused, in one sentence.
    pub refused: Option<String>,
    /// Whether the target's existence was checked against the cluster (false while no
    /// broker answers).
    pub checked: bool,
}

/// Resolve a record's replay target against the rules and the cluster's topics.
pub async fn replay_target(state: &AppState, r: &RecordSummary) -> ReplayTargetJson {
    let topics = state.cluster_topics.topics().await;
    let source = ReplaySource {
        dlq_topic: &r.topic,
        origin_topic: r.origin_topic.as_deref(),
        consumer_group: r.consumer_group.as_deref(),
    };
    let resolution = state.replay_rules.resolve(source, &state.topics, |t| {
        topics.as_ref().is_none_or(|known| known.contains(t))
    });
    match resolution {
        Resolution::Target { topic, rule } => ReplayTargetJson {
            target: Some(topic),
            rule: Some(rule),
            refused: None,
            checked: topics.is_some(),
        },
        Resolution::Refused(why) => ReplayTargetJson {
            target: None,
            rule: None,
            refused: Some(why),
            checked: topics.is_some(),
        },
    }
}

/// One header in the message detail.
#[derive(Serialize)]
struct HeaderJson {
    name: String,
    value: Option<String>,
    value_base64: Option<String>,
}

/// The full record in `GET /api/messages/{topic}/{partition}/{offset}`.
#[derive(Serialize)]
struct MessageDetailJson {
    #[serde(flatten)]
    summary: MessageJson,
    value: Option<String>,
    value_base64: Option<String>,
    headers: Vec<HeaderJson>,
    attempts: Option<i64>,
    problems: Vec<String>,
    timestamp_type: Option<String>,
    indexed_at: String,
    replay: ReplayTargetJson,
    /// Every replay of this message, newest first.
    replays: Vec<super::replays::ResultJson>,
}

/// Parse `{partition}` and `{offset}` path segments with a sentence on failure.
pub fn coordinates(partition: &str, offset: &str) -> Result<(i32, i64)> {
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "Partition '{partition}' is not a partition number."
            ))
        })?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| Error::BadRequest(format!("Offset '{offset}' is not an offset.")))?;
    Ok((partition, offset))
}

/// The record a URL names: path coordinates plus an optional `?generation=N`.
pub fn record_id(
    topic: &str,
    partition: &str,
    offset: &str,
    query: Option<&str>,
) -> Result<RecordId> {
    let (partition, offset) = coordinates(partition, offset)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Error::BadRequest("The query string is not valid URL encoding.".into()))?;
    let mut generation = None;
    for (k, v) in params {
        if k != "generation" {
            return Err(Error::BadRequest(format!(
                "Unknown parameter '{k}'; a message address takes only 'generation'."
            )));
        }
        generation = Some(v.parse::<i64>().ok().filter(|g| *g >= 0).ok_or_else(|| {
            Error::BadRequest(format!(
                "Parameter 'generation' is '{v}'; use a whole number from 0."
            ))
        })?);
    }
    Ok(RecordId {
        topic: topic.to_string(),
        partition,
        offset,
        generation,
    })
}

/// Fetch one record or a 404 naming it.
pub async fn find(state: &AppState, id: &RecordId) -> Result<RecordDetail> {
    records::get(&state.pool, id)
        .await?
        .ok_or_else(|| not_indexed(id))
}

fn not_indexed(id: &RecordId) -> Error {
    let generation = id
        .generation
        .map(|g| format!(" (generation {g})"))
        .unwrap_or_default();
    Error::NotFound(format!(
        "No indexed message at {} partition {} offset {}{generation}.",
        id.topic, id.partition, id.offset
    ))
}

async fn message(
    State(state): State<AppState>,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<MessageDetailJson>> {
    let d = find(
        &state,
        &record_id(&topic, &partition, &offset, query.as_deref())?,
    )
    .await?;
    let headers = decode_headers(&d.headers)
        .into_iter()
        .map(|h| HeaderJson {
            value: h
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string),
            value_base64: h.value.as_deref().map(|v| BASE64.encode(v)),
            name: h.name,
        })
        .collect();
    let replay = replay_target(&state, &d.summary).await;
    let replays = store::replays::history(&state.pool, d.summary.id)
        .await?
        .iter()
        .map(super::replays::ResultJson::new)
        .collect();
    let mut summary = MessageJson::from_summary(d.summary);
    summary.error.message = d.full_error_message;
    summary.error.stacktrace = Some(d.stacktrace);
    Ok(Json(MessageDetailJson {
        summary,
        value: d
            .value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string),
        value_base64: d.value.as_deref().map(|v| BASE64.encode(v)),
        headers,
        attempts: d.attempts,
        problems: d
            .problems
            .map(|p| p.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        timestamp_type: d.timestamp_type,
        indexed_at: iso(d.indexed_at),
        replay,
        replays,
    }))
}

/// `GET .../raw`: the value bytes exactly as stored, as a download.
pub async fn raw(
    State(state): State<AppState>,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let id = record_id(&topic, &partition, &offset, query.as_deref())?;
    let value = records::value(&state.pool, &id)
        .await?
        .ok_or_else(|| not_indexed(&id))?;
    let (p, o) = (id.partition, id.offset);
    let safe_topic: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{safe_topic}-{p}-{o}.bin\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        value.unwrap_or_default(),
    )
        .into_response())
}

#[derive(Serialize)]
struct GroupJson {
    #[serde(flatten)]
    group: groups::FailureGroup,
    first_seen: String,
    last_seen: String,
    hourly: Vec<i64>,
}

async fn list_groups(State(state): State<AppState>) -> Result<Json<Vec<GroupJson>>> {
    let now = store::now_ms();
    let mut out = Vec::new();
    for g in groups::list(&state.pool, 500).await? {
        out.push(GroupJson {
            hourly: groups::hourly(&state.pool, &g.fingerprint, now).await?,
            first_seen: iso(g.first_seen),
            last_seen: iso(g.last_seen),
            group: g,
        });
    }
    Ok(Json(out))
}

#[derive(Serialize)]
struct ClusterJson {
    brokers: String,
    embedded: bool,
    connected: bool,
    since: String,
    last_error: Option<String>,
    indexed_since_start: u64,
}

async fn cluster(State(state): State<AppState>) -> Json<ClusterJson> {
    let s = state.status.snapshot();
    Json(ClusterJson {
        brokers: state.kafka.brokers.clone(),
        embedded: state.kafka.embedded,
        connected: s.connected,
        since: iso(s.since),
        last_error: s.last_error,
        indexed_since_start: s.indexed,
    })
}
