//! Replay as an action: resolve every selected record's target (once per routing key, in SQL
//! for the records), freeze the result as a job in 'preview' that the operator confirms or
//! lets expire, then confirm, steer and audit the job. Sending is the runner's
//! (`replay::runner`), behind [`JobRunner`](super::JobRunner).

use std::collections::BTreeMap;

use serde::Serialize;

use super::selection::{self, Selection};
use super::{new_action_id, Actions, Actor};
pub use super::{Refusal, PREVIEW_TTL_MS, REFUSALS_LISTED};
use crate::error::{Error, Result};
use crate::kafka::Compression;
use crate::replay::target::{ReplaySource, Resolution};
use crate::states::{JobStatus, RecordStatus};
use crate::store::audit::{self, NewEntry};
use crate::store::items;
use crate::store::jobs::{self, NewJob, Route};
use crate::store::records::RecordSummary;

/// The default rate, in messages per second.
pub const DEFAULT_RATE: i64 = 500;
/// The highest rate a job may ask for.
pub const MAX_RATE: i64 = 1_000_000;
/// Messages per second assumed for an estimate when the rate is unlimited (what a bulk
/// replay reaches on a small machine; see the README's figures).
const UNLIMITED_ESTIMATE_RATE: f64 = 20_000.0;

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
    pub fn of(job: &jobs::Job) -> Self {
        SendSettings {
            compression: job.compression,
            compression_read_by_every_client: job.compression.read_by_every_client(),
        }
    }
}

/// What an operator can do to a confirmed job, as named in URLs (`/replays/{id}/pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobControl {
    /// Stop sending for now.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Stop for good.
    Cancel,
}

impl JobControl {
    /// The action a URL segment names.
    pub fn parse(action: &str) -> Result<Self> {
        match action {
            "pause" => Ok(JobControl::Pause),
            "resume" => Ok(JobControl::Resume),
            "cancel" => Ok(JobControl::Cancel),
            other => Err(Error::NotFound(format!(
                "A replay job has no action '{other}'; use pause, resume or cancel."
            ))),
        }
    }
}

/// Where a replay of one record would go, resolved as a replay would resolve it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
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

impl TargetCheck {
    /// The check of a record whose body is not stored (the disk was low when it was
    /// indexed): refused with the reason a preview gives, whatever its target.
    pub fn without_body(self, missing: &crate::store::deferred::Missing) -> Self {
        TargetCheck {
            target: None,
            rule: None,
            refused: Some(missing.replay_refusal().to_string()),
            checked: self.checked,
        }
    }
}

impl Actions {
    /// Resolve and freeze a selection as a preview job. Messages of topics outside the
    /// actor's scope are refused in it, each with the sentence why.
    pub async fn preview(&self, selection: Selection, rate: i64, actor: &Actor) -> Result<Preview> {
        let frozen = selection::freeze(&self.pool, &selection).await?;
        let keys = jobs::routing_keys(&self.pool, frozen.source(), frozen.max_id).await?;
        if keys.is_empty() {
            return Err(frozen.nothing_matches());
        }
        let Some(existing) = self.cluster.topic_names().await else {
            return Err(Error::Unavailable(
                "No broker answers, so the replay targets cannot be checked; try again when the dashboard is connected.".into(),
            ));
        };
        let routes: Vec<Route> = keys
            .into_iter()
            .map(|k| {
                let resolution = self.replay_rules.resolve(
                    ReplaySource {
                        dlq_topic: &k.topic,
                        origin_topic: k.origin_topic.as_deref(),
                        consumer_group: k.consumer_group.as_deref(),
                    },
                    &self.topics,
                    |t| existing.contains(t),
                );
                let (target, reason) = match resolution {
                    _ if !actor.scope.allows(&k.topic) => {
                        (None, Some(actor.scope.refusal(&k.topic)))
                    }
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
        let now = crate::clock::now_ms();
        // Unconfirmed previews of earlier requests go first, so they never pile up.
        jobs::delete_stale_previews(&self.pool, now - PREVIEW_TTL_MS).await?;
        let job = NewJob {
            id: new_action_id('r'),
            actor: actor.name.clone(),
            selection: selection.to_json().to_string(),
            rate,
            compression: self.replay_compression,
            created_at: now,
        };
        jobs::create_preview(&self.pool, &job, frozen.source(), frozen.max_id, &routes).await?;
        self.preview_of(&job.id).await
    }

    /// The preview of a job in 'preview' (or of any job: what it was asked to do).
    pub async fn preview_of(&self, id: &str) -> Result<Preview> {
        let job = jobs::job(&self.pool, id)
            .await?
            .ok_or_else(|| unknown_job(id))?;
        let refused = items::refusals(&self.pool, id, REFUSALS_LISTED)
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
            crate::store::outcomes::returned_in_preview(&self.pool, id).await?;
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
            expires_at: crate::clock::iso(job.created_at + PREVIEW_TTL_MS),
            replay: SendSettings::of(&job),
        })
    }

    /// Confirm a preview: it becomes a queued job, with `rate` if given, and the start is
    /// audited, all in one transaction. Nothing is sent before this. A preview made by
    /// someone else is refused as a whole when it would send a message of a topic outside
    /// the confirming actor's scope.
    pub async fn confirm(&self, id: &str, rate: Option<i64>, actor: &Actor) -> Result<jobs::Job> {
        let mut tx = crate::store::begin_write(&self.pool).await?;
        let job = jobs::job(&mut *tx, id)
            .await?
            .ok_or_else(|| unknown_job(id))?;
        if job.status != JobStatus::Preview {
            return Err(Error::Conflict(format!(
                "Replay job {id} was already confirmed (it is {}).",
                job.status.words()
            )));
        }
        jobs::refuse_purged(&mut tx, id).await?;
        if actor.scope.is_limited() {
            let topics = jobs::topics_to_send(&mut tx, id).await?;
            if let Err(refusal) = actor.scope.check(topics.iter().map(String::as_str)) {
                drop(tx);
                return Err(self.refused(actor, "replay", Some(id), refusal).await);
            }
        }
        let job = jobs::job(&mut *tx, id)
            .await?
            .ok_or_else(|| unknown_job(id))?;
        if job.total == 0 {
            return Err(Error::BadRequest(
                "Every message of this selection is refused, so there is nothing to replay; the preview says why.".into(),
            ));
        }
        if let Some(rate) = rate {
            jobs::set_rate(&mut *tx, id, rate).await?;
        }
        let now = crate::clock::now_ms();
        jobs::transition(&mut *tx, id, &[JobStatus::Preview], JobStatus::Queued, now).await?;
        let job = jobs::job(&mut *tx, id)
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
            &mut *tx,
            &NewEntry {
                at: now,
                actor: &actor.name,
                mode: actor.mode(),
                action: "replay.start",
                job_id: Some(id),
                summary: &summary,
                detail: &serde_json::json!({
                    "selection": job.selection.0,
                    "total": job.total,
                    "refused": job.refused,
                    "targets": targets,
                    "rate": job.rate,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.runner.wake();
        Ok(job)
    }

    /// Pause, resume or cancel a confirmed job, audited as `actor`; refused as a whole when
    /// the job holds messages of a topic outside the actor's scope (an operator limited to
    /// some topics may not resume, or stop, someone else's replay of others).
    pub async fn control(&self, id: &str, action: JobControl, actor: &Actor) -> Result<jobs::Job> {
        if actor.scope.is_limited() {
            let topics = jobs::job_topics(&self.pool, id).await?;
            self.check_scope(
                actor,
                "replay control",
                Some(id),
                topics.iter().map(String::as_str),
            )
            .await?;
        }
        self.runner.control(id, action, actor).await
    }

    /// Where a replay of `record` would go now, checked against the cluster's topics when a
    /// broker answers.
    pub async fn target_for(&self, record: &RecordSummary) -> TargetCheck {
        if record.status == RecordStatus::Expired {
            return TargetCheck {
                target: None,
                rule: None,
                refused: Some(expired_refusal(record.offset)),
                checked: false,
            };
        }
        let topics = self.cluster.topic_names().await;
        let source = ReplaySource {
            dlq_topic: &record.topic,
            origin_topic: record.origin_topic.as_deref(),
            consumer_group: record.consumer_group.as_deref(),
        };
        let resolution = self.replay_rules.resolve(source, &self.topics, |t| {
            topics.as_ref().is_none_or(|known| known.contains(t))
        });
        let checked = topics.is_some();
        match resolution {
            Resolution::Target { topic, rule } => TargetCheck {
                target: Some(topic),
                rule: Some(rule),
                refused: None,
                checked,
            },
            Resolution::Refused(why) => TargetCheck {
                target: None,
                rule: None,
                refused: Some(why),
                checked,
            },
        }
    }
}

/// Why an expired record is not replayed (the same sentence as a preview's refusal).
pub fn expired_refusal(offset: i64) -> String {
    format!("The broker no longer has this message (its log start moved past offset {offset}); it can be seen here but not replayed.")
}

/// The error for a job id that names nothing.
pub fn unknown_job(id: &str) -> Error {
    Error::NotFound(format!("There is no replay job {id}."))
}

/// A rate as words.
pub fn rate_text(rate: i64) -> String {
    if rate == 0 {
        "an unlimited rate".into()
    } else {
        format!("{rate} messages/s")
    }
}
