//! Broker-side reclaim as an action: where a whole prefix of a DLQ partition is resolved
//! (`store::reclaim` has the rule), delete it on the broker with DeleteRecords.
//!
//! In order: one write transaction recomputes every asked partition's prefix, marks each
//! bound as in flight and appends the `reclaim` audit entry, so that nothing can make those
//! records unresolved while the broker works (replay previews and purge undos refuse what is
//! below the mark); then the broker is asked, through [`RecordDeleter`]; then what it
//! answered is recorded: the mark becomes the reclaimed mark and the new log start is stored
//! (which marks the records below it `expired`, purged ones staying purged), with the
//! payloads dropped unless `--reclaim-keeps-payload`; or, where the broker refused, the mark
//! is cleared. Either way a `reclaim.finish` entry says how it ended.

use std::sync::Arc;

use rdkafka::error::RDKafkaErrorCode;
use serde::Serialize;

use super::{Actions, Actor, RecordDeleter};
use crate::error::{Error, Result};
use crate::store::audit::{self, NewEntry};
use crate::store::reclaim::{self as rule, Reclaimable};
use crate::store::{self, expiry};

/// What reclaim needs besides the index: the broker's DeleteRecords, and whether payloads
/// stay in the index once the broker deleted their records.
pub struct Reclaimer {
    deleter: Arc<dyn RecordDeleter>,
    keeps_payload: bool,
    /// One reclaim at a time in this process: a second waits for the first's answer, then
    /// recomputes.
    running: tokio::sync::Mutex<()>,
}

impl Reclaimer {
    /// Reclaim through `deleter`; `keeps_payload` is `--reclaim-keeps-payload`.
    pub fn new(deleter: Arc<dyn RecordDeleter>, keeps_payload: bool) -> Self {
        Reclaimer {
            deleter,
            keeps_payload,
            running: tokio::sync::Mutex::new(()),
        }
    }
}

/// A partition the broker deleted the prefix of.
#[derive(Debug, Clone, Serialize)]
pub struct Reclaimed {
    /// Partition.
    pub partition: i32,
    /// Offsets below this were asked to be deleted.
    pub deleted_to: i64,
    /// The log start the broker answered with.
    pub low_watermark: i64,
    /// Indexed records in the deleted prefix.
    pub records: i64,
    /// Their payload bytes.
    pub bytes: i64,
    /// Payloads dropped from the index afterwards (0 with `--reclaim-keeps-payload`).
    pub payloads_dropped: i64,
}

/// A partition the broker did not delete anything of.
#[derive(Debug, Clone, Serialize)]
pub struct NotReclaimed {
    /// Partition.
    pub partition: i32,
    /// Why, in a sentence.
    pub reason: String,
}

/// How a reclaim ended.
#[derive(Debug, Clone, Serialize)]
pub struct ReclaimOutcome {
    /// DLQ topic.
    pub topic: String,
    /// Partitions deleted up to their bound.
    pub reclaimed: Vec<Reclaimed>,
    /// Partitions the broker refused.
    pub refused: Vec<NotReclaimed>,
}

/// The sentence for an error the broker (or librdkafka for it) answered DeleteRecords with.
pub fn refusal(topic: &str, code: RDKafkaErrorCode) -> String {
    use RDKafkaErrorCode as C;
    match code {
        C::UnsupportedFeature | C::UnsupportedVersion | C::InvalidRequest => format!(
            "The broker does not support DeleteRecords, so nothing of {topic} was deleted on it: its records stay there until the topic's retention removes them, and the index is unchanged."
        ),
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => format!(
            "The dashboard may not delete records of {topic} (its Kafka user needs the DELETE permission on the topic), so nothing was deleted; the index is unchanged."
        ),
        C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::OperationTimedOut
        | C::RequestTimedOut => format!(
            "The broker dropped or did not answer the DeleteRecords request for {topic} ({code}): a broker that is down cannot answer, and some brokers that list DeleteRecords do not implement it. Nothing is known to be deleted and the index is unchanged; records the broker did delete become expired when its log start is next checked."
        ),
        other => format!(
            "The broker refused to delete records of {topic} ({other}); nothing was deleted and the index is unchanged."
        ),
    }
}

impl Actions {
    /// Every partition of `topic` with its reclaimable prefix (none is reclaimable when its
    /// first record is unresolved).
    pub async fn reclaimable(&self, topic: &str) -> Result<Vec<Reclaimable>> {
        let plan = rule::plan(&self.pool, topic, None).await?;
        if plan.is_empty() {
            return Err(unknown_topic(topic));
        }
        Ok(plan)
    }

    /// Reclaim the resolved prefix of the asked partitions of `topic` (all when None) on the
    /// broker, audited as `actor`. A Conflict when nothing is reclaimable or the broker
    /// refused every partition.
    pub async fn reclaim(
        &self,
        topic: &str,
        partitions: Option<&[i32]>,
        actor: &Actor,
    ) -> Result<ReclaimOutcome> {
        self.check_scope(actor, "reclaim", None, [topic]).await?;
        let _one_at_a_time = self.reclaim.running.lock().await;
        let planned = self.mark_reclaim(topic, partitions, actor).await?;
        let to: Vec<(i32, i64)> = planned.iter().map(|p| (p.partition, p.bound)).collect();
        let answer = self.reclaim.deleter.delete_records(topic, &to).await;
        let now = crate::clock::now_ms();
        let mut outcome = ReclaimOutcome {
            topic: topic.to_string(),
            reclaimed: Vec::new(),
            refused: Vec::new(),
        };
        for p in &planned {
            let answered = match &answer {
                Err(code) => Err(*code),
                Ok(per_partition) => per_partition
                    .iter()
                    .find(|(partition, _)| *partition == p.partition)
                    .map_or(Err(RDKafkaErrorCode::UnknownTopicOrPartition), |(_, r)| *r),
            };
            match answered {
                Ok(low) => {
                    rule::finish_deleted(
                        &self.pool,
                        topic,
                        p.partition,
                        p.generation,
                        p.bound,
                        now,
                    )
                    .await?;
                    expiry::expire_below(&self.pool, topic, p.partition, p.generation, low).await?;
                    let payloads_dropped = if self.reclaim.keeps_payload {
                        0
                    } else {
                        rule::drop_payloads(
                            &self.pool,
                            topic,
                            p.partition,
                            p.generation,
                            p.floor,
                            p.bound,
                        )
                        .await?
                    };
                    outcome.reclaimed.push(Reclaimed {
                        partition: p.partition,
                        deleted_to: p.bound,
                        low_watermark: low,
                        records: p.records,
                        bytes: p.bytes,
                        payloads_dropped,
                    });
                }
                Err(code) => outcome.refused.push(NotReclaimed {
                    partition: p.partition,
                    reason: refusal(topic, code),
                }),
            }
        }
        self.finish_reclaim(&planned, &outcome, actor, now).await?;
        if outcome.reclaimed.is_empty() {
            let reason = outcome
                .refused
                .first()
                .map(|r| r.reason.clone())
                .unwrap_or_else(|| "The broker deleted nothing.".into());
            return Err(Error::Conflict(reason));
        }
        Ok(outcome)
    }

    /// The first step: in one write transaction, recompute the prefix of each asked
    /// partition, mark the reclaimable ones in flight, and audit the start.
    async fn mark_reclaim(
        &self,
        topic: &str,
        partitions: Option<&[i32]>,
        actor: &Actor,
    ) -> Result<Vec<Reclaimable>> {
        let mut tx = store::begin_write(&self.pool).await?;
        let plan = rule::plan_in(&mut tx, topic, partitions).await?;
        if plan.is_empty() {
            return Err(unknown_topic(topic));
        }
        if let Some(asked) = partitions {
            let missing: Vec<String> = asked
                .iter()
                .filter(|a| !plan.iter().any(|p| p.partition == **a))
                .map(i32::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(Error::NotFound(format!(
                    "{topic} has no indexed partition {}; nothing was reclaimed.",
                    missing.join(", ")
                )));
            }
        }
        let planned: Vec<Reclaimable> = plan
            .into_iter()
            .filter(|p| p.reclaimable_to().is_some())
            .collect();
        if planned.is_empty() {
            return Err(Error::Conflict(format!(
                "Nothing of {topic} is reclaimable: each partition's oldest message the broker still has is unresolved (new, failed, failed again, or waiting in a replay job or an unconfirmed replay preview), or the broker has no indexed message left."
            )));
        }
        for p in &planned {
            rule::mark_in(&mut tx, topic, p.partition, p.generation, p.bound).await?;
        }
        let records: i64 = planned.iter().map(|p| p.records).sum();
        let bytes: i64 = planned.iter().map(|p| p.bytes).sum();
        let summary = format!(
            "Reclaim of {records} message{} ({bytes} bytes) of {topic} on the broker started: {}.",
            if records == 1 { "" } else { "s" },
            planned
                .iter()
                .map(|p| format!("partition {} below offset {}", p.partition, p.bound))
                .collect::<Vec<_>>()
                .join(", ")
        );
        audit::append(
            &mut *tx,
            &NewEntry {
                at: crate::clock::now_ms(),
                actor: &actor.name,
                mode: actor.mode(),
                action: "reclaim",
                job_id: None,
                summary: &summary,
                detail: &serde_json::json!({
                    "topic": topic,
                    "partitions": planned.iter().map(|p| serde_json::json!({
                        "partition": p.partition,
                        "generation": p.generation,
                        "from": p.floor,
                        "to": p.bound,
                        "records": p.records,
                        "bytes": p.bytes,
                    })).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(planned)
    }

    /// The last step: clear the marks the broker refused, and audit how it ended, in one
    /// write transaction.
    async fn finish_reclaim(
        &self,
        planned: &[Reclaimable],
        outcome: &ReclaimOutcome,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut tx = store::begin_write(&self.pool).await?;
        for r in &outcome.refused {
            if let Some(p) = planned.iter().find(|p| p.partition == r.partition) {
                rule::clear_mark_in(&mut tx, &outcome.topic, p.partition, p.generation).await?;
            }
        }
        let deleted: i64 = outcome.reclaimed.iter().map(|r| r.records).sum();
        let summary = match (outcome.reclaimed.len(), outcome.refused.first()) {
            (_, None) => format!(
                "Reclaim of {} on the broker finished: {deleted} message{} deleted there, kept in the index.",
                outcome.topic,
                if deleted == 1 { "" } else { "s" }
            ),
            (0, Some(r)) => format!("Reclaim of {} refused: {}", outcome.topic, r.reason),
            (_, Some(r)) => format!(
                "Reclaim of {} partly done: {deleted} message{} deleted on the broker; {} partition{} refused: {}",
                outcome.topic,
                if deleted == 1 { "" } else { "s" },
                outcome.refused.len(),
                if outcome.refused.len() == 1 { "" } else { "s" },
                r.reason
            ),
        };
        audit::append(
            &mut *tx,
            &NewEntry {
                at: now,
                actor: &actor.name,
                mode: actor.mode(),
                action: "reclaim.finish",
                job_id: None,
                summary: &summary,
                detail: &serde_json::to_value(outcome).unwrap_or_default(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The error for a topic the index has no partition of.
pub fn unknown_topic(topic: &str) -> Error {
    Error::NotFound(format!(
        "The index has no partition of topic {topic}; the overview lists the DLQ topics it indexes."
    ))
}
