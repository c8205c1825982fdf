//! `/api/messages`: listings, one message with its replays, and the raw payload.

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;

use crate::actions::replay::TargetCheck;
use crate::clock::iso;
use crate::error::{Error, Result};
use crate::filter::MessageQuery;
use crate::index::record::decode_headers;
use crate::states::RecordStatus;
use crate::store::records::RecordSummary;
use crate::store::{self, records};
use crate::web::auth::Caller;
use crate::web::extract::{find_record, not_indexed, record_id};
use crate::web::masking;
use crate::web::routes::{Routes, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/api/messages", VIEWER, messages)
        .get(
            "/api/messages/{topic}/{partition}/{offset}",
            VIEWER,
            message,
        )
        .get(
            "/api/messages/{topic}/{partition}/{offset}/raw",
            VIEWER,
            raw,
        )
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
    status: RecordStatus,
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
    /// The purge that holds it, when it is purged.
    #[serde(skip_serializing_if = "Option::is_none")]
    purge: Option<PurgeMark>,
}

/// Who purged a message, when and why, and whether its payload was erased.
#[derive(Serialize)]
pub struct PurgeMark {
    id: String,
    actor: Option<String>,
    at: Option<String>,
    reason: Option<String>,
    erased: bool,
}

impl MessageJson {
    fn from_summary(r: RecordSummary) -> Self {
        MessageJson {
            purge: r.purge_id.clone().map(|id| PurgeMark {
                id,
                actor: r.purge_actor.clone(),
                at: r.purge_at.map(iso),
                reason: r.purge_reason.clone(),
                erased: r.erased_at.is_some(),
            }),
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
    Caller(who): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<MessagePageJson>> {
    let query = MessageQuery::parse(query.as_deref().unwrap_or(""))?;
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    masking::refuse_filter(&sight, &query.filter)?;
    let mut page = records::list(&state.pool, &query).await?;
    for r in &mut page.rows {
        masking::summary(&sight, r);
    }
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

/// One header in the message detail.
#[derive(Serialize)]
struct HeaderJson {
    name: String,
    value: Option<String>,
    value_base64: Option<String>,
    /// Whether the value is withheld from this caller: `hidden` (viewers with
    /// `--viewer-payloads=hidden`) or `redacted` (`--redact-headers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<&'static str>,
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
    replay: TargetCheck,
    /// Every replay of this message, newest first.
    replays: Vec<super::replays::ResultJson>,
    /// Every purge of this message, newest first.
    purges: Vec<super::purges::PurgeHistoryJson>,
    /// What this answer withholds from the caller, in a sentence (hidden payloads or
    /// redacted fields); absent when nothing is.
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<String>,
    /// Why the payload, headers and stack trace are not in the index (the disk was low when
    /// it was indexed: not stored yet, or lost), in a sentence; absent when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_not_stored: Option<String>,
    /// `deferred` (read again from Kafka once space is freed) or `lost`, with the above.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_state: Option<&'static str>,
}

async fn message(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<MessageDetailJson>> {
    let mut d = find_record(
        &state,
        &record_id(&topic, &partition, &offset, query.as_deref())?,
    )
    .await?;
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    // The replay target is resolved from the stored fields, before any is masked (the origin
    // topic and group it uses are shown as the target anyway).
    let mut replay = state.actions.target_for(&d.summary).await;
    if let Some(missing) = d.missing_body() {
        replay = replay.without_body(&missing);
    }
    masking::detail(&sight, &mut d);
    let missing = d.missing_body();
    let headers = decode_headers(&d.headers)
        .into_iter()
        .map(|h| {
            let withheld = if !sight.payloads() {
                Some("hidden")
            } else if sight.header_masked(&h.name) {
                Some("redacted")
            } else {
                None
            };
            let value = match withheld {
                Some("hidden") => None,
                Some(_) => Some(crate::redact::MASK.as_bytes().to_vec()),
                None => h.value,
            };
            HeaderJson {
                value: value
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string),
                value_base64: value
                    .as_deref()
                    .filter(|_| withheld.is_none())
                    .map(|v| BASE64.encode(v)),
                name: h.name,
                withheld,
            }
        })
        .collect();
    let replays = store::items::history(&state.pool, d.summary.id)
        .await?
        .iter_mut()
        .map(|i| {
            masking::item(&sight, i);
            super::replays::ResultJson::new(i)
        })
        .collect();
    let purges = store::purges::history(&state.pool, d.summary.id)
        .await?
        .iter()
        .map(super::purges::PurgeHistoryJson::new)
        .collect();
    let mut summary = MessageJson::from_summary(d.summary);
    summary.error.message = d.full_error_message;
    summary.error.stacktrace = Some(d.stacktrace.filter(|_| sight.payloads()));
    // A later export must go through the same `Sight` (issue 13: exports are masked too).
    let value = d
        .value
        .as_deref()
        .filter(|_| sight.payloads())
        .map(|v| sight.payload(v).into_owned());
    Ok(Json(MessageDetailJson {
        payload_state: missing.as_ref().map(|m| match m {
            store::deferred::Missing::Deferred => "deferred",
            store::deferred::Missing::Lost(_) => "lost",
        }),
        payload_not_stored: missing.map(|m| crate::web::health::capitalised(m.sentence())),
        withheld: sight.note(),
        summary,
        value: value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string),
        value_base64: value.as_deref().map(|v| BASE64.encode(v)),
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
        purges,
    }))
}

/// `GET .../raw`: the value bytes exactly as stored, as a download; refused to viewers
/// whose payloads are hidden and, while anything is redacted, to everyone but admins.
pub async fn raw(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    if let Some(why) = state
        .disclosure
        .sight(who.as_ref().map(|w| w.role))
        .raw_refusal()
    {
        return Err(Error::Forbidden(why.into()));
    }
    let id = record_id(&topic, &partition, &offset, query.as_deref())?;
    let value = match records::value(&state.pool, &id)
        .await?
        .ok_or_else(|| not_indexed(&id))?
    {
        records::StoredValue::Kept(v) => v,
        records::StoredValue::Erased(at) => {
            return Err(Error::Gone(format!(
                "The payload of {}/{}/{} was erased on {} after it was purged; only its coordinates, error and history are kept.",
                id.topic,
                id.partition,
                id.offset,
                iso(at)
            )))
        }
        // Not stored yet: 503, as for anything the dashboard cannot give now but will (the
        // backfill reads it again from Kafka once space is freed); lost: 410, as erased.
        records::StoredValue::NotStored(missing) => {
            let sentence = format!(
                "The payload of {}/{}/{}: {}.",
                id.topic,
                id.partition,
                id.offset,
                missing.sentence()
            );
            return Err(match missing {
                store::deferred::Missing::Deferred => Error::Unavailable(sentence),
                store::deferred::Missing::Lost(_) => Error::Gone(sentence),
            });
        }
        records::StoredValue::RemovedByRetention(at) => {
            return Err(Error::Gone(format!(
                "The payload of {}/{}/{} was removed by retention (--retain payloads) on {}; only its coordinates, error and history are kept.",
                id.topic,
                id.partition,
                id.offset,
                iso(at)
            )))
        }
    };
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
