//! Replay jobs: the frozen selection of a preview, status transitions, counters. Everything a
//! job does is recorded first, so a restarted dashboard can go on (items: `items.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite, SqliteExecutor, SqlitePool};

pub use super::selection::Source;
use super::selection::{push_source, RecordId};
use crate::error::Result;
use crate::kafka::Compression;
use crate::states::{ItemState, JobStatus};

/// The newest record row id: a selection is bounded by it, so it is frozen at preview time.
pub async fn max_record_id(pool: &SqlitePool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM records")
            .fetch_one(pool)
            .await?,
    )
}

/// The oldest record row id (1 for an empty index).
pub async fn min_record_id(pool: &SqlitePool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MIN(id), 1) FROM records")
            .fetch_one(pool)
            .await?,
    )
}

/// What target resolution depends on, with how many selected records share it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoutingKey {
    /// DLQ topic.
    pub topic: String,
    /// Origin topic from the headers.
    pub origin_topic: Option<String>,
    /// Consumer group from the headers.
    pub consumer_group: Option<String>,
    /// Records with these values.
    pub count: i64,
}

/// The distinct (topic, origin, group) of a selection: targets are resolved once per key,
/// not once per record, so a million-record selection never passes through memory.
pub async fn routing_keys(
    pool: &SqlitePool,
    source: Source<'_>,
    max_id: i64,
) -> Result<Vec<RoutingKey>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT topic, origin_topic, consumer_group, COUNT(*) AS count FROM records",
    );
    push_source(&mut qb, source, max_id);
    qb.push(" GROUP BY topic, origin_topic, consumer_group");
    Ok(qb.build_query_as().fetch_all(pool).await?)
}

/// A routing key's resolution: a target topic, or why not.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Route {
    /// DLQ topic.
    pub t: String,
    /// Origin topic.
    pub o: Option<String>,
    /// Consumer group.
    pub g: Option<String>,
    /// Target topic, when not refused.
    pub target: Option<String>,
    /// The refusal, when refused.
    pub reason: Option<String>,
}

/// A new job row.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub id: String,
    /// Who asked for it.
    pub actor: String,
    /// Selection JSON.
    pub selection: String,
    /// Messages per second, 0 = unlimited.
    pub rate: i64,
    /// The codec its records will be sent with.
    pub compression: Compression,
    /// Created, ms.
    pub created_at: i64,
}

/// Create a job in 'preview' with its frozen items: each selected record with its target,
/// or refused with the reason. Purged records, records the broker no longer has (expired,
/// or below the log start or a reclaim), records whose payload retention removed, records
/// whose body is not stored (`store::deferred`) and records an unfinished job has yet to
/// send are refused too.
pub async fn create_preview(
    pool: &SqlitePool,
    job: &NewJob,
    source: Source<'_>,
    max_id: i64,
    routes: &[Route],
) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "INSERT INTO replay_jobs (id, status, actor, selection, rate, compression, total, targets, created_at)
         VALUES (?, 'preview', ?, ?, ?, ?, 0, '{}', ?)",
    )
    .bind(&job.id)
    .bind(&job.actor)
    .bind(&job.selection)
    .bind(job.rate)
    .bind(job.compression)
    .bind(job.created_at)
    .execute(&mut *tx)
    .await?;
    let routes_json = serde_json::to_string(routes).unwrap_or_else(|_| "[]".into());
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO replay_items (job_id, record_id, target_topic, state, reason)
         SELECT ",
    );
    qb.push_bind(job.id.clone());
    // A record already waiting in an unfinished job is refused: two jobs holding the same
    // record would send it twice under two replay ids, which no consumer could deduplicate.
    // An expired record, or one below its partition's log start or a reclaim (the broker no
    // longer has it, or is deleting it), is refused: it can be seen, not replayed. So is one
    // whose body was not stored (the disk was low): it is never sent with an empty payload.
    qb.push(format!(
        ", r.id,
           CASE WHEN r.status = 'purged' OR r.gone OR r.retained OR r.unstored IS NOT NULL OR r.other_job IS NOT NULL THEN NULL ELSE m.target END,
           CASE WHEN r.status = 'purged' OR r.gone OR r.retained OR r.unstored IS NOT NULL OR r.other_job IS NOT NULL OR m.target IS NULL THEN 'refused' ELSE 'pending' END,
           CASE WHEN r.status = 'purged' THEN 'The message is purged; purged messages are not replayed.'
                WHEN r.retained THEN 'The payload of this message was removed by retention (--retain payloads); it can be seen here but not replayed.'
                WHEN r.unstored = 'deferred' THEN '{deferred}'
                WHEN r.unstored = 'lost' THEN '{lost}'
                WHEN r.gone THEN 'The broker no longer has this message (its log start moved past offset ' || r.\"offset\" || '); it can be seen here but not replayed.'
                WHEN r.other_job IS NOT NULL THEN 'Replay job ' || r.other_job || ' has not sent this message yet; wait for it to finish, or cancel it, and replay again.'
                WHEN m.target IS NULL THEN COALESCE(m.reason, 'The message changed while the preview was made; preview again.')
                ELSE NULL END
         FROM (SELECT id, topic, origin_topic, consumer_group, status, \"offset\",
                 (records.status = 'expired' OR {}) AS gone,
                 records.erased_by_retention AS retained,
                 (SELECT CASE WHEN d.lost_at IS NULL THEN 'deferred' ELSE 'lost' END FROM deferred_bodies d
                  WHERE d.record_id = records.id) AS unstored,
                 (SELECT o.job_id FROM replay_items o JOIN replay_jobs j ON j.id = o.job_id
                  WHERE o.record_id = records.id AND o.state = 'pending'
                    AND j.status IN ('queued', 'running', 'paused') LIMIT 1) AS other_job
               FROM records",
        super::reclaim::below_log_start("records"),
        deferred = super::deferred::REPLAY_REFUSAL_DEFERRED,
        lost = super::deferred::REPLAY_REFUSAL_LOST,
    ));
    push_source(&mut qb, source, max_id);
    qb.push(
        ") AS r LEFT JOIN (SELECT json_extract(value, '$.t') AS t, json_extract(value, '$.o') AS o,
             json_extract(value, '$.g') AS g, json_extract(value, '$.target') AS target,
             json_extract(value, '$.reason') AS reason FROM json_each(",
    );
    qb.push_bind(routes_json);
    qb.push(")) AS m ON m.t = r.topic AND m.o IS r.origin_topic AND m.g IS r.consumer_group");
    qb.build().execute(&mut *tx).await?;
    count_items(&mut tx, &job.id).await?;
    tx.commit().await?;
    Ok(())
}

/// Count a job's items into its total, refusals and per-target counts.
async fn count_items(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<()> {
    let counts: Vec<(Option<String>, String, i64)> = sqlx::query_as(
        "SELECT target_topic, state, COUNT(*) FROM replay_items WHERE job_id = ? GROUP BY 1, 2",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut targets: BTreeMap<String, i64> = BTreeMap::new();
    let (mut total, mut refused) = (0, 0);
    for (target, state, n) in counts {
        match target {
            Some(t) if state == ItemState::Pending.as_str() => {
                total += n;
                *targets.entry(t).or_default() += n;
            }
            _ => refused += n,
        }
    }
    sqlx::query("UPDATE replay_jobs SET total = ?, refused = ?, targets = ? WHERE id = ?")
        .bind(total)
        .bind(refused)
        .bind(serde_json::to_string(&targets).unwrap_or_else(|_| "{}".into()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Refuse the items of a job in preview whose record was purged since the preview was
/// made, and count the job again: a purge refuses only records that a confirmed job still
/// has to send, so a preview confirmed after a purge must not send what it purged.
/// Returns how many items were refused.
pub async fn refuse_purged(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE replay_items SET state = 'refused', target_topic = NULL,
           reason = 'The message was purged after the preview was made; purged messages are not replayed.'
         WHERE job_id = ?1 AND state = 'pending'
           AND record_id IN (SELECT i.record_id FROM replay_items i JOIN records r ON r.id = i.record_id
                             WHERE i.job_id = ?1 AND i.state = 'pending' AND r.status = 'purged')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() > 0 {
        count_items(tx, id).await?;
    }
    Ok(done.rows_affected())
}

/// The DLQ topics of the messages a job in preview would still send.
pub async fn topics_to_send(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<Vec<String>> {
    item_topics(&mut *tx, id, "i.state = 'pending'").await
}

/// The DLQ topics of the messages a job holds (all but the refused ones).
pub async fn job_topics(pool: &SqlitePool, id: &str) -> Result<Vec<String>> {
    item_topics(pool, id, "i.state != 'refused'").await
}

/// The DLQ topics of the messages a job refused.
pub async fn refused_topics(pool: &SqlitePool, id: &str) -> Result<Vec<String>> {
    item_topics(pool, id, "i.state = 'refused'").await
}

/// The DLQ topics of a job's items whose state meets `state_condition` (SQL on `i`).
async fn item_topics<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: &str,
    state_condition: &'static str,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT DISTINCT r.topic FROM replay_items i JOIN records r ON r.id = i.record_id
         WHERE i.job_id = ? AND {state_condition}"
    ))
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// Row ids of records named by coordinates (the newest generation when none is given);
/// None for each one not in the index.
pub async fn record_ids(pool: &SqlitePool, ids: &[RecordId]) -> Result<Vec<Option<i64>>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(
            sqlx::query_scalar(
                "SELECT id FROM records WHERE topic = ?1 AND partition = ?2 AND \"offset\" = ?3
                 AND (?4 IS NULL OR generation = ?4) ORDER BY generation DESC LIMIT 1",
            )
            .bind(&id.topic)
            .bind(id.partition)
            .bind(id.offset)
            .bind(id.generation)
            .fetch_optional(pool)
            .await?,
        );
    }
    Ok(out)
}

/// How a group was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupSource {
    /// `--replay-consumer-group`.
    Flag,
    /// The records' consumer-group header.
    Headers,
    /// The broker's group list: groups with commits on the target topic.
    Broker,
}

/// How one target topic's consumption is followed: `consumer_groups[]` in the job JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTracking {
    /// The target (retry) topic.
    pub target_topic: String,
    /// The DLQ topics whose records went there.
    pub dlq_topics: Vec<String>,
    /// The groups followed; a record is consumed once every one has committed past it.
    /// Empty when consumption is not tracked.
    pub groups: Vec<String>,
    /// How the groups were found.
    pub source: Option<GroupSource>,
    /// Whether consumption is followed.
    pub tracked: bool,
    /// A sentence for the operator when something is missing.
    pub note: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Status.
    pub status: JobStatus,
    /// Who started it.
    pub actor: String,
    /// The selection as asked for (`Selection::to_json`).
    pub selection: Json<serde_json::Value>,
    /// Messages per second, 0 = unlimited.
    pub rate: i64,
    /// The codec its records are sent with.
    pub compression: Compression,
    /// Messages to send.
    pub total: i64,
    /// Delivered.
    pub sent: i64,
    /// Delivery failed.
    pub failed: i64,
    /// Refused at preview.
    pub refused: i64,
    /// Not sent because the job was cancelled.
    pub cancelled: i64,
    /// Messages per target topic.
    pub targets: Json<BTreeMap<String, i64>>,
    /// Created, ms.
    pub created_at: i64,
    /// First started, ms.
    pub started_at: Option<i64>,
    /// Finished or cancelled, ms.
    pub finished_at: Option<i64>,
    /// Delivered and seen consumed by the target's consumer group.
    pub consumed: i64,
    /// Delivered and back in a DLQ.
    pub failed_again: i64,
    /// Delivered and probably back in a DLQ: matched by key and value, without the header.
    pub failed_again_probably: i64,
    /// How consumption is followed, per target topic (JSON, see `replay::outcomes`).
    pub consumer_groups: Json<Vec<GroupTracking>>,
}

impl Job {
    /// Delivered messages not yet seen consumed.
    pub fn awaiting_consumption(&self) -> i64 {
        (self.sent - self.consumed).max(0)
    }

    /// Messages neither delivered, failed nor cancelled yet.
    pub fn remaining(&self) -> i64 {
        (self.total - self.sent - self.failed - self.cancelled).max(0)
    }

    /// Target topics with their message counts.
    pub fn target_counts(&self) -> BTreeMap<String, i64> {
        self.targets.0.clone()
    }
}

pub(crate) const JOB_COLUMNS: &str = "id, status, actor, selection, rate, compression, total, sent, failed, refused, cancelled, targets, created_at, started_at, finished_at, consumed, failed_again, failed_again_probably, consumer_groups";

/// One job by id (previews included).
pub async fn job<'e>(db: impl SqliteExecutor<'e>, id: &str) -> Result<Option<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Confirmed jobs, newest first.
pub async fn jobs(pool: &SqlitePool, limit: i64) -> Result<Vec<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE status <> 'preview' ORDER BY created_at DESC, id DESC LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Jobs in a status, oldest first.
pub async fn jobs_in(pool: &SqlitePool, status: JobStatus) -> Result<Vec<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE status = ? ORDER BY created_at, id"
    ))
    .bind(status)
    .fetch_all(pool)
    .await?)
}

/// Set a job's status, only when it is in one of `from`; returns whether it changed.
pub async fn transition<'e>(
    db: impl SqliteExecutor<'e>,
    id: &str,
    from: &[JobStatus],
    to: JobStatus,
    now: i64,
) -> Result<bool> {
    let from_json = serde_json::to_string(from).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query(
        "UPDATE replay_jobs SET status = ?1,
           started_at = CASE WHEN ?1 = 'running' THEN COALESCE(started_at, ?3) ELSE started_at END,
           finished_at = CASE WHEN ?1 IN ('cancelled', 'completed', 'completed_with_failures') THEN ?3 ELSE finished_at END
         WHERE id = ?2 AND status IN (SELECT value FROM json_each(?4))",
    )
    .bind(to)
    .bind(id)
    .bind(now)
    .bind(from_json)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Change the rate of a job not yet running (set at confirmation).
pub async fn set_rate<'e>(db: impl SqliteExecutor<'e>, id: &str, rate: i64) -> Result<()> {
    sqlx::query("UPDATE replay_jobs SET rate = ? WHERE id = ?")
        .bind(rate)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Delete previews nobody confirmed, created before `before` (ms).
pub async fn delete_stale_previews(pool: &SqlitePool, before: i64) -> Result<u64> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "DELETE FROM replay_items WHERE job_id IN
           (SELECT id FROM replay_jobs WHERE status = 'preview' AND created_at < ?)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("DELETE FROM replay_jobs WHERE status = 'preview' AND created_at < ?")
        .bind(before)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Messages over all confirmed jobs, for metrics.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct MessageTotals {
    /// Delivered.
    pub sent: i64,
    /// Not delivered.
    pub failed: i64,
    /// Delivered and seen consumed.
    pub consumed: i64,
    /// Delivered and back in a DLQ.
    pub failed_again: i64,
}

/// Confirmed jobs per status, and message totals over all jobs, for metrics.
pub async fn totals(pool: &SqlitePool) -> Result<(Vec<(String, i64)>, MessageTotals)> {
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM replay_jobs WHERE status <> 'preview' GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    let totals: MessageTotals = sqlx::query_as(
        "SELECT COALESCE(SUM(sent), 0) AS sent, COALESCE(SUM(failed), 0) AS failed,
                COALESCE(SUM(consumed), 0) AS consumed, COALESCE(SUM(failed_again), 0) AS failed_again
         FROM replay_jobs WHERE status <> 'preview'",
    )
    .fetch_one(pool)
    .await?;
    Ok((by_status, totals))
}

/// Confirmed jobs not finished yet (queued, running or paused): the count the navigation
/// shows.
pub async fn active_count(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM replay_jobs WHERE status IN ('queued', 'running', 'paused')",
    )
    .fetch_one(pool)
    .await?)
}
