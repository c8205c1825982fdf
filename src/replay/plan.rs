//! From a request to a frozen preview: validate the selection, resolve every record's target
//! (once per routing key, in SQL for the records), and freeze the result as a job in
//! 'preview' that the operator confirms or lets expire.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::target::{ReplaySource, Resolution};
use crate::app::App;
use crate::error::{Error, Result};
use crate::filter::{MessageFilter, MessageQuery};
use crate::kafka::Compression;
use crate::store::records::RecordId;
use crate::store::replays::{self, NewJob, Route, Source};
use crate::store::{self, audit};

/// The default rate, in messages per second.
pub const DEFAULT_RATE: i64 = 500;
/// The highest rate a job may ask for.
pub const MAX_RATE: i64 = 1_000_000;
/// The most messages an explicit list may name.
pub const MAX_LISTED: usize = 10_000;
/// Messages per second assumed for an estimate when the rate is unlimited (what a bulk
/// replay reaches on a small machine; see the README's figures).
const UNLIMITED_ESTIMATE_RATE: f64 = 20_000.0;
/// Refusals listed in a preview; the count covers all of them.
pub const REFUSALS_LISTED: i64 = 1000;
/// How long an unconfirmed preview is kept, ms.
pub const PREVIEW_TTL_MS: i64 = 3_600_000;

/// One message named by its coordinates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRef {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Log generation (the newest when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// What to replay: listed messages or everything matching a filter.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These messages.
    Messages(Vec<MessageRef>),
    /// Every message matching the filter (frozen at preview time).
    Filter(MessageFilter),
}

impl Selection {
    /// The selection as stored with the job and shown in the audit log.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Selection::Messages(m) => serde_json::json!({ "messages": m }),
            Selection::Filter(f) => {
                let pairs: BTreeMap<&str, String> = f.to_pairs().into_iter().collect();
                serde_json::json!({ "filter": pairs })
            }
        }
    }

    /// A filter from a JSON object of the same fields as `GET /api/messages` takes.
    pub fn filter_from_json(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let mut pairs = Vec::new();
        for (k, v) in fields {
            if ["limit", "cursor", "before", "after"].contains(&k.as_str()) {
                return Err(Error::BadRequest(format!(
                    "Filter field '{k}' is about paging; a replay takes every matching message, so leave it out."
                )));
            }
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                _ => {
                    return Err(Error::BadRequest(format!(
                        "Filter field '{k}' must be a string or a number."
                    )))
                }
            };
            pairs.push((k.clone(), text));
        }
        let query = serde_urlencoded::to_string(&pairs)
            .map_err(|_| Error::BadRequest("The filter cannot be encoded.".into()))?;
        Ok(Selection::Filter(MessageQuery::parse(&query)?.filter))
    }
}

/// Validate a requested rate: absent means the default, 0 means unlimited.
pub fn rate(asked: Option<&serde_json::Value>) -> Result<i64> {
    let bad = |v: &dyn std::fmt::Display| {
        Error::BadRequest(format!(
            "Rate '{v}' is not a rate; use a whole number of messages per second from 0 (unlimited) to {MAX_RATE}."
        ))
    };
    match asked {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_RATE),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(r) if (0..=MAX_RATE).contains(&r) => Ok(r),
            _ => Err(bad(n)),
        },
        Some(serde_json::Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(r) if (0..=MAX_RATE).contains(&r) => Ok(r),
            _ => Err(bad(s)),
        },
        Some(other) => Err(bad(other)),
    }
}

/// Seconds a job of `count` messages takes at `rate`.
pub fn estimated_seconds(count: i64, rate: i64) -> f64 {
    let per_second = if rate > 0 {
        rate as f64
    } else {
        UNLIMITED_ESTIMATE_RATE
    };
    (count as f64 / per_second * 10.0).ceil() / 10.0
}

/// A refused message in a preview.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Generation of the partition's log (see the message API).
    pub generation: i64,
    /// Why, in a sentence with the fix.
    pub reason: String,
}

/// What a confirmed preview would do.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The preview's id: confirm it to start exactly this selection.
    pub preview_id: String,
    /// Messages that will be sent.
    pub count: i64,
    /// Messages per target topic.
    pub targets: BTreeMap<String, i64>,
    /// Refused messages (the first 1,000).
    pub refused: Vec<Refusal>,
    /// All refused messages.
    pub refused_count: i64,
    /// Messages per second the job will run at (0 = unlimited).
    pub rate: i64,
    /// How long sending takes at that rate.
    pub estimated_seconds: f64,
    /// When the preview expires unless confirmed.
    pub expires_at: String,
    /// How the records will be sent.
    pub replay: SendSettings,
    /// Of the messages to send, those that failed again after an earlier replay.
    pub failed_again_before: i64,
    /// Of those, the ones that failed again after two or more replays (a loop).
    pub looping: i64,
}

/// How a job's records are sent (`replay` in the preview and job JSON).
#[derive(Debug, Clone, Serialize)]
pub struct SendSettings {
    /// The codec of the record batches.
    pub compression: Compression,
    /// Whether every mainstream client reads that codec without plugins.
    pub compression_read_by_every_client: bool,
}

impl SendSettings {
    /// The settings a job was created with.
    pub fn of(job: &replays::Job) -> Self {
        SendSettings {
            compression: job.compression,
            compression_read_by_every_client: job.compression.read_by_every_client(),
        }
    }
}

/// A new job id: short, URL-safe, random.
fn new_job_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let id: String = (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("r{id}")
}

/// Resolve and freeze a selection as a preview job.
pub async fn preview(app: &App, selection: Selection, rate: i64, actor: &str) -> Result<Preview> {
    let newest = replays::max_record_id(&app.pool).await?;
    let mut max_id = newest;
    if let Selection::Filter(MessageFilter { q: Some(_), .. }) = &selection {
        // Free text matches only what the search index holds, which trails the index a
        // little: the selection stops at the search mark, as it stops at the newest record
        // for every filter, so it never depends on how far the catch-up had got per row.
        max_id = max_id.min(store::search::progress(&app.pool).await?.indexed_through);
    }
    let ids: Vec<i64>;
    let source = match &selection {
        Selection::Filter(f) => Source::Filter(f),
        Selection::Messages(list) => {
            if list.is_empty() {
                return Err(Error::BadRequest(
                    "The selection is empty: name at least one message.".into(),
                ));
            }
            if list.len() > MAX_LISTED {
                return Err(Error::BadRequest(format!(
                    "{} messages are listed; a list takes at most {MAX_LISTED}. Replay by filter instead.",
                    list.len()
                )));
            }
            let coords: Vec<RecordId> = list
                .iter()
                .map(|m| RecordId {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                    generation: m.generation,
                })
                .collect();
            let found = replays::record_ids(&app.pool, &coords).await?;
            let missing: Vec<String> = coords
                .iter()
                .zip(&found)
                .filter(|(_, id)| id.is_none())
                .map(|(c, _)| format!("{}/{}/{}", c.topic, c.partition, c.offset))
                .collect();
            if !missing.is_empty() {
                let shown = missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::NotFound(format!(
                    "{} of the listed messages are not in the index ({shown}{}); nothing was replayed.",
                    missing.len(),
                    if missing.len() > 5 { ", ..." } else { "" }
                )));
            }
            ids = found.into_iter().flatten().collect();
            Source::Ids(&ids)
        }
    };
    let keys = replays::routing_keys(&app.pool, source, max_id).await?;
    if keys.is_empty() {
        let behind = newest - max_id;
        return Err(Error::BadRequest(if behind > 0 {
            format!("The selection is empty: no searchable message matches it, and the {behind} newest messages are not searchable yet; try again in a moment.")
        } else {
            "The selection is empty: no indexed message matches it.".into()
        }));
    }
    let Some(existing) = app.cluster_topics.topics().await else {
        return Err(Error::Unavailable(
            "No broker answers, so the replay targets cannot be checked; try again when the dashboard is connected.".into(),
        ));
    };
    let routes: Vec<Route> = keys
        .into_iter()
        .map(|k| {
            let resolution = app.replay_rules.resolve(
                ReplaySource {
                    dlq_topic: &k.topic,
                    origin_topic: k.origin_topic.as_deref(),
                    consumer_group: k.consumer_group.as_deref(),
                },
                &app.topics,
                |t| existing.contains(t),
            );
            let (target, reason) = match resolution {
                Resolution::Target { topic, .. } => (Some(topic), None),
                Resolution::Refused(why) => (None, Some(why)),
            };
            Route {
                t: k.topic,
                o: k.origin_topic,
                g: k.consumer_group,
                target,
                reason,
            }
        })
        .collect();
    let now = store::now_ms();
    // Unconfirmed previews of earlier requests go first, so they never pile up.
    replays::delete_stale_previews(&app.pool, now - PREVIEW_TTL_MS).await?;
    let job = NewJob {
        id: new_job_id(),
        actor: actor.to_string(),
        selection: selection.to_json().to_string(),
        rate,
        compression: app.kafka.replay_compression,
        created_at: now,
    };
    replays::create_preview(&app.pool, &job, source, max_id, &routes).await?;
    preview_of(app, &job.id).await
}

/// The preview of a job in 'preview' (or of any job: what it was asked to do).
pub async fn preview_of(app: &App, id: &str) -> Result<Preview> {
    let job = replays::job(&app.pool, id)
        .await?
        .ok_or_else(|| unknown_job(id))?;
    let refused = replays::refusals(&app.pool, id, REFUSALS_LISTED)
        .await?
        .into_iter()
        .map(|r| Refusal {
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            generation: r.generation,
            reason: r.reason.unwrap_or_default(),
        })
        .collect();
    let (failed_again_before, looping) =
        store::outcomes::returned_in_preview(&app.pool, id).await?;
    Ok(Preview {
        failed_again_before,
        looping,
        preview_id: job.id.clone(),
        count: job.total,
        targets: job.target_counts(),
        refused,
        refused_count: job.refused,
        rate: job.rate,
        estimated_seconds: estimated_seconds(job.total, job.rate),
        expires_at: crate::web::view::iso(job.created_at + PREVIEW_TTL_MS),
        replay: SendSettings::of(&job),
    })
}

/// The error for a job id that names nothing.
pub fn unknown_job(id: &str) -> Error {
    Error::NotFound(format!("There is no replay job {id}."))
}

/// Confirm a preview: it becomes a queued job, with `rate` if given. Nothing is sent before
/// this.
pub async fn confirm(app: &App, id: &str, rate: Option<i64>, actor: &str) -> Result<replays::Job> {
    let job = replays::job(&app.pool, id)
        .await?
        .ok_or_else(|| unknown_job(id))?;
    if job.status != replays::status::PREVIEW {
        return Err(Error::Conflict(format!(
            "Replay job {id} was already confirmed (it is {}).",
            job.status.replace('_', " ")
        )));
    }
    if job.total == 0 {
        return Err(Error::BadRequest(
            "Every message of this selection is refused, so there is nothing to replay; the preview says why.".into(),
        ));
    }
    if let Some(rate) = rate {
        replays::set_rate(&app.pool, id, rate).await?;
    }
    let now = store::now_ms();
    if !replays::transition(
        &app.pool,
        id,
        &[replays::status::PREVIEW],
        replays::status::QUEUED,
        now,
    )
    .await?
    {
        return Err(Error::Conflict(format!(
            "Replay job {id} was already confirmed."
        )));
    }
    let job = replays::job(&app.pool, id)
        .await?
        .ok_or_else(|| unknown_job(id))?;
    let targets = job.target_counts();
    let summary = format!(
        "Replay of {} message{} to {} started at {}.",
        job.total,
        if job.total == 1 { "" } else { "s" },
        targets.keys().cloned().collect::<Vec<_>>().join(", "),
        rate_text(job.rate)
    );
    audit::append(
        &app.pool,
        now,
        actor,
        "replay.start",
        Some(id),
        &summary,
        &serde_json::json!({
            "selection": serde_json::from_str::<serde_json::Value>(&job.selection).unwrap_or_default(),
            "total": job.total,
            "refused": job.refused,
            "targets": targets,
            "rate": job.rate,
        }),
    )
    .await?;
    app.replayer.wake();
    Ok(job)
}

/// A rate as words.
pub fn rate_text(rate: i64) -> String {
    if rate == 0 {
        "an unlimited rate".into()
    } else {
        format!("{rate} messages/s")
    }
}
