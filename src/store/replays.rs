//! Replay jobs and their items: the frozen selection, claims, delivery results, history.
//! Everything a job does is recorded here first, so a restarted dashboard can go on.

use std::collections::BTreeMap;
use std::ptr::NonNull;

use libsqlite3_sys::sqlite3;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::raw::{with_handle, Statement};
use super::records::{push_filter, RecordId};
use crate::error::Result;
use crate::filter::MessageFilter;
use crate::kafka::Compression;

/// Job statuses, as stored and as the API shows them.
pub mod status {
    /// Frozen selection waiting for the operator's confirmation; never listed.
    pub const PREVIEW: &str = "preview";
    /// Confirmed, waiting for its partitions to be free of other running jobs.
    pub const QUEUED: &str = "queued";
    /// Sending.
    pub const RUNNING: &str = "running";
    /// Stopped by the operator; resumes where it stopped.
    pub const PAUSED: &str = "paused";
    /// Stopped for good by the operator; what was sent stays sent.
    pub const CANCELLED: &str = "cancelled";
    /// Every message sent.
    pub const COMPLETED: &str = "completed";
    /// Finished, with at least one failed delivery.
    pub const COMPLETED_WITH_FAILURES: &str = "completed_with_failures";

    /// Whether a job in this status will not change any more.
    pub fn is_final(s: &str) -> bool {
        [CANCELLED, COMPLETED, COMPLETED_WITH_FAILURES].contains(&s)
    }
}

/// Which records a new job covers.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Every record matching a filter.
    Filter(&'a MessageFilter),
    /// These record row ids.
    Ids(&'a [i64]),
}

fn push_source(qb: &mut QueryBuilder<'_, Sqlite>, source: Source<'_>, max_id: i64) {
    match source {
        Source::Filter(f) => push_filter(qb, f),
        Source::Ids(ids) => {
            qb.push(" WHERE id IN (SELECT value FROM json_each(")
                .push_bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
                .push("))");
        }
    }
    // Rows indexed after the preview started are not part of it.
    qb.push(" AND id <= ").push_bind(max_id);
}

/// The newest record row id: a selection is bounded by it, so it is frozen at preview time.
pub async fn max_record_id(pool: &SqlitePool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM records")
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
/// or refused with the reason. Purged records and records an unfinished job has yet to
/// send are refused too.
pub async fn create_preview(
    pool: &SqlitePool,
    job: &NewJob,
    source: Source<'_>,
    max_id: i64,
    routes: &[Route],
) -> Result<()> {
    let (_turn, mut tx) = super::begin_write(pool).await?;
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
    qb.push(
        ", r.id,
           CASE WHEN r.status = 'purged' OR r.other_job IS NOT NULL THEN NULL ELSE m.target END,
           CASE WHEN r.status = 'purged' OR r.other_job IS NOT NULL OR m.target IS NULL THEN 'refused' ELSE 'pending' END,
           CASE WHEN r.status = 'purged' THEN 'The message is purged; purged messages are not replayed.'
                WHEN r.other_job IS NOT NULL THEN 'Replay job ' || r.other_job || ' has not sent this message yet; wait for it to finish, or cancel it, and replay again.'
                WHEN m.target IS NULL THEN COALESCE(m.reason, 'The message changed while the preview was made; preview again.')
                ELSE NULL END
         FROM (SELECT id, topic, origin_topic, consumer_group, status,
                 (SELECT o.job_id FROM replay_items o JOIN replay_jobs j ON j.id = o.job_id
                  WHERE o.record_id = records.id AND o.state = 'pending'
                    AND j.status IN ('queued', 'running', 'paused') LIMIT 1) AS other_job
               FROM records",
    );
    push_source(&mut qb, source, max_id);
    qb.push(
        ") AS r LEFT JOIN (SELECT json_extract(value, '$.t') AS t, json_extract(value, '$.o') AS o,
             json_extract(value, '$.g') AS g, json_extract(value, '$.target') AS target,
             json_extract(value, '$.reason') AS reason FROM json_each(",
    );
    qb.push_bind(routes_json);
    qb.push(")) AS m ON m.t = r.topic AND m.o IS r.origin_topic AND m.g IS r.consumer_group");
    qb.build().execute(&mut *tx).await?;
    let counts: Vec<(Option<String>, String, i64)> = sqlx::query_as(
        "SELECT target_topic, state, COUNT(*) FROM replay_items WHERE job_id = ? GROUP BY 1, 2",
    )
    .bind(&job.id)
    .fetch_all(&mut *tx)
    .await?;
    let mut targets: BTreeMap<String, i64> = BTreeMap::new();
    let (mut total, mut refused) = (0, 0);
    for (target, state, n) in counts {
        match target {
            Some(t) if state == "pending" => {
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
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
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

/// A job as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Status (see [`status`]).
    pub status: String,
    /// Who started it.
    pub actor: String,
    /// Selection JSON.
    pub selection: String,
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
    /// JSON {topic: n}.
    pub targets: String,
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
    pub consumer_groups: String,
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
        serde_json::from_str(&self.targets).unwrap_or_default()
    }
}

pub(crate) const JOB_COLUMNS: &str = "id, status, actor, selection, rate, compression, total, sent, failed, refused, cancelled, targets, created_at, started_at, finished_at, consumed, failed_again, failed_again_probably, consumer_groups";

/// One job by id (previews included).
pub async fn job(pool: &SqlitePool, id: &str) -> Result<Option<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
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
pub async fn jobs_in(pool: &SqlitePool, status: &str) -> Result<Vec<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE status = ? ORDER BY created_at, id"
    ))
    .bind(status)
    .fetch_all(pool)
    .await?)
}

/// Set a job's status, only when it is in one of `from`; returns whether it changed.
pub async fn transition(
    pool: &SqlitePool,
    id: &str,
    from: &[&str],
    to: &str,
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
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Change the rate of a job not yet running (set at confirmation).
pub async fn set_rate(pool: &SqlitePool, id: &str, rate: i64) -> Result<()> {
    sqlx::query("UPDATE replay_jobs SET rate = ? WHERE id = ?")
        .bind(rate)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Delete previews nobody confirmed, created before `before` (ms).
pub async fn delete_stale_previews(pool: &SqlitePool, before: i64) -> Result<u64> {
    let (_turn, mut tx) = super::begin_write(pool).await?;
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

/// The DLQ partitions a job's unsent items are on, as "topic\0partition" keys.
pub async fn job_partitions(pool: &SqlitePool, id: &str) -> Result<Vec<(String, i32)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT r.topic, r.partition FROM replay_items i JOIN records r ON r.id = i.record_id
         WHERE i.job_id = ? AND i.state = 'pending'",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// One item to send, with what the producer needs.
#[derive(Debug, Clone)]
pub struct SendItem {
    /// Record row id.
    pub record_id: i64,
    /// Target topic.
    pub target_topic: String,
    /// DLQ topic.
    pub topic: String,
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Stored headers JSON.
    pub headers: String,
    /// Replays before this one: the record's own delivered replays, plus those its lineage
    /// went through before it came back to a DLQ.
    pub replay_count: i64,
}

/// The next unsent items of a job after `after` (a record id), in record id order.
pub async fn next_items(
    pool: &SqlitePool,
    job_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<SendItem>> {
    let mut conn = pool.acquire().await?;
    // Stepped here rather than on sqlx's worker thread: this read runs beside each claim,
    // and a bulk replay waits for whichever of the two ends last.
    with_handle(&mut conn, |db| {
    // SAFETY: `with_handle` keeps sqlx off the connection; the statement is dropped before
    // it returns.
    let mut rows = unsafe {
        Statement::prepare(
            db,
            "SELECT i.record_id, i.target_topic, r.topic, r.partition, r.\"offset\", r.key, b.value, b.headers, r.lineage_replays + r.replay_count
             FROM replay_items i JOIN records r ON r.id = i.record_id JOIN record_bodies b ON b.record_id = i.record_id
             WHERE i.job_id = ?1 AND i.record_id > ?2 AND i.state = 'pending'
             ORDER BY i.record_id LIMIT ?3",
        )
    }?;
    rows.text(1, Some(job_id))?;
    rows.int(2, after)?;
    rows.int(3, limit)?;
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let mut items = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(10_000));
    while rows.next_row()? {
        items.push(SendItem {
            record_id: rows.column_int(0),
            target_topic: text(rows.column_bytes(1)),
            topic: text(rows.column_bytes(2)),
            partition: rows.column_int(3) as i32,
            offset: rows.column_int(4),
            key: rows.column_bytes(5).map(<[u8]>::to_vec),
            value: rows.column_bytes(6).map(<[u8]>::to_vec),
            headers: text(rows.column_bytes(7)),
            replay_count: rows.column_int(8),
        });
    }
    Ok(items)
    })
    .await
}

/// Make this connection's temporary table `name` exist and be empty.
///
/// # Safety
/// As for [`Statement::prepare`].
unsafe fn empty_temp_table(db: NonNull<sqlite3>, name: &str, columns: &str) -> Result<()> {
    // SAFETY: as the caller promises.
    unsafe {
        Statement::run(
            db,
            &format!("CREATE TEMP TABLE IF NOT EXISTS {name} ({columns})"),
        )?;
        Statement::run(db, &format!("DELETE FROM {name}"))?;
    }
    Ok(())
}

/// Claim a job's items up to record id `through` before they are handed to the producer:
/// one cursor per job, not a write per item. Items are sent in record id order, so every
/// pending item at or below the cursor may have reached the broker (`sending` in results;
/// after a crash it is sent again with the same replay id) and every one above it has not.
/// Records keep their status until their delivery is recorded.
pub async fn claim(pool: &SqlitePool, job_id: &str, through: i64) -> Result<()> {
    let (_turn, mut tx) = super::begin_write(pool).await?;
    sqlx::query("UPDATE replay_jobs SET claimed_through = MAX(claimed_through, ?) WHERE id = ?")
        .bind(through)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The outcome of one delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    /// Record row id.
    #[serde(rename = "id")]
    pub record_id: i64,
    /// The dlq-replay-count header that was sent.
    #[serde(rename = "n")]
    pub replay_count: i64,
    /// Target partition and offset when delivered.
    #[serde(rename = "p")]
    pub partition: Option<i32>,
    /// Target offset.
    #[serde(rename = "o")]
    pub offset: Option<i64>,
    /// The broker's (or client's) error when not delivered.
    #[serde(rename = "e")]
    pub error: Option<String>,
}

/// Record delivery results in one transaction: items, records (status, replay count) and
/// the job's counters.
pub async fn record_deliveries(
    pool: &SqlitePool,
    job_id: &str,
    deliveries: &[Delivery],
    now: i64,
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let (_turn, mut tx) = super::begin_write(pool).await?;
    let (mut sent, mut failed) = (0_i64, 0_i64);
    // As in `claim`: one block on this task, no round trips while the turn is held.
    with_handle(&mut tx, |db| {
        // SAFETY: `with_handle` keeps sqlx off the connection; the statements are dropped
        // before it returns.
        unsafe {
            // The batch goes into a keyed temporary table first, with each record's topic
            // and status before this outcome, so that every update below is driven by the
            // batch's ids (a join the planner might turn around would scan the job or the
            // whole index per batch) and the counters are adjusted without reading the
            // records again. The updates join the batch once per row (UPDATE ... FROM)
            // rather than looking it up once per column; the `IN (SELECT id ...)` beside the
            // join keeps the planner driving from the batch (without it, it scans `records`).
            empty_temp_table(
                db,
                "delivered",
                "id INTEGER PRIMARY KEY, n INTEGER, p INTEGER, o INTEGER, e TEXT,
                 topic TEXT NOT NULL, status TEXT NOT NULL, fingerprint TEXT NOT NULL",
            )?;
            // Only items still unsent count: a report for an item the job no longer owns
            // (never expected) changes nothing.
            let mut add = Statement::prepare(
                db,
                "INSERT OR REPLACE INTO delivered (id, n, p, o, e, topic, status, fingerprint)
                 SELECT r.id, ?2, ?3, ?4, ?5, r.topic, r.status, r.fingerprint
                 FROM replay_items i JOIN records r ON r.id = i.record_id
                 WHERE i.job_id = ?6 AND i.record_id = ?1 AND i.state = 'pending'",
            )?;
            add.text(6, Some(job_id))?;
            for d in deliveries {
                add.int(1, d.record_id)?;
                add.int(2, d.replay_count)?;
                add.opt_int(3, d.partition.map(i64::from))?;
                add.opt_int(4, d.offset)?;
                add.text(5, d.error.as_deref())?;
                add.execute()?;
            }
            let mut counts = Statement::prepare(
                db,
                "SELECT COALESCE(SUM(e IS NULL), 0), COALESCE(SUM(e IS NOT NULL), 0) FROM delivered",
            )?;
            if counts.next_row()? {
                (sent, failed) = (counts.column_int(0), counts.column_int(1));
            }
            drop(counts);
            let mut items = Statement::prepare(
                db,
                "UPDATE replay_items SET
                   state = CASE WHEN d.e IS NULL THEN 'sent' ELSE 'failed' END,
                   reason = d.e, replay_count = d.n, target_partition = d.p, target_offset = d.o,
                   finished_at = ?1
                 FROM delivered AS d
                 WHERE replay_items.job_id = ?2 AND replay_items.record_id IN (SELECT id FROM delivered)
                   AND replay_items.record_id = d.id",
            )?;
            items.int(1, now)?;
            items.text(2, Some(job_id))?;
            items.execute()?;
            // A record's replay count counts delivered replays; its status is its latest
            // outcome.
            Statement::run(
                db,
                "UPDATE records SET
                   status = CASE WHEN d.e IS NULL THEN 'replayed' ELSE 'replay_failed' END,
                   replay_count = replay_count + (d.e IS NULL)
                 FROM delivered AS d
                 WHERE records.id IN (SELECT id FROM delivered) AND records.id = d.id",
            )?;
            Statement::run(
                db,
                "INSERT INTO topic_status_counts (topic, status, count)
                 SELECT topic, status, -COUNT(*) FROM delivered GROUP BY topic, status
                 UNION ALL
                 SELECT topic, CASE WHEN e IS NULL THEN 'replayed' ELSE 'replay_failed' END, COUNT(*)
                 FROM delivered GROUP BY 1, 2
                 ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count",
            )?;
            Statement::run(
                db,
                "UPDATE failure_groups SET replayed = replayed + c.n
                 FROM (SELECT fingerprint, COUNT(*) AS n FROM delivered WHERE e IS NULL GROUP BY fingerprint) AS c
                 WHERE failure_groups.fingerprint = c.fingerprint",
            )?;
            let mut job = Statement::prepare(
                db,
                "UPDATE replay_jobs SET sent = sent + ?1, failed = failed + ?2 WHERE id = ?3",
            )?;
            job.int(1, sent)?;
            job.int(2, failed)?;
            job.text(3, Some(job_id))?;
            job.execute()?;
        }
        Ok(())
    })
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Give back what a stopped job claimed but never handed to the producer. On pause (and
/// shutdown, and a failed run) the cursor goes back to `handed_through`, the last record id
/// handed over; a caller never lowers it below where its run started, so items that may have
/// reached the broker before a crash stay `sending`. On cancel every unsent item becomes
/// 'cancelled'. Returns the items given back (pause) or cancelled.
pub async fn release(
    pool: &SqlitePool,
    job_id: &str,
    cancel: bool,
    handed_through: Option<i64>,
    now: i64,
) -> Result<i64> {
    let (_turn, mut tx) = super::begin_write(pool).await?;
    let released = if cancel {
        let done = sqlx::query(
            "UPDATE replay_items SET state = 'cancelled', finished_at = ?
             WHERE job_id = ? AND state = 'pending'",
        )
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        sqlx::query("UPDATE replay_jobs SET cancelled = cancelled + ? WHERE id = ?")
            .bind(done)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        done
    } else {
        let Some(through) = handed_through else {
            tx.commit().await?;
            return Ok(0);
        };
        let given_back: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM replay_items i JOIN replay_jobs j ON j.id = i.job_id
             WHERE i.job_id = ?1 AND i.state = 'pending' AND i.record_id > ?2 AND i.record_id <= j.claimed_through",
        )
        .bind(job_id)
        .bind(through)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE replay_jobs SET claimed_through = ? WHERE id = ?")
            .bind(through)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        given_back
    };
    tx.commit().await?;
    Ok(released)
}

/// Where a job's claim cursor is (see [`claim`]).
pub async fn claimed_through(pool: &SqlitePool, job_id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT claimed_through FROM replay_jobs WHERE id = ?")
            .bind(job_id)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0),
    )
}

/// Whether a job has items left to send.
pub async fn has_unsent(pool: &SqlitePool, job_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM replay_items WHERE job_id = ? AND state = 'pending')",
    )
    .bind(job_id)
    .fetch_one(pool)
    .await?)
}

/// One item of a job, for results lists and a message's history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ItemResult {
    /// Job id.
    pub job_id: String,
    /// DLQ topic.
    pub topic: String,
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Generation of the DLQ partition's log.
    pub generation: i64,
    /// pending | sending | sent | failed | refused | cancelled.
    pub state: String,
    /// Target topic.
    pub target_topic: Option<String>,
    /// Target partition when delivered.
    pub target_partition: Option<i32>,
    /// Target offset when delivered.
    pub target_offset: Option<i64>,
    /// Why refused or failed.
    pub reason: Option<String>,
    /// The dlq-replay-count sent.
    pub replay_count: Option<i64>,
    /// When the outcome was recorded, ms.
    pub finished_at: Option<i64>,
    /// Who started the job.
    pub actor: String,
    /// Record row id (keyset cursor).
    #[serde(skip)]
    pub record_id: i64,
    /// When first seen consumed by the target's consumer group, ms.
    pub consumed_at: Option<i64>,
    /// The DLQ record it came back as, when it failed again.
    #[sqlx(flatten)]
    pub failed_again: ReturnedRecord,
}

/// The DLQ record a replayed record came back as (all None when it has not).
#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize)]
pub struct ReturnedRecord {
    /// DLQ topic.
    #[sqlx(rename = "back_topic")]
    pub topic: Option<String>,
    /// DLQ partition.
    #[sqlx(rename = "back_partition")]
    pub partition: Option<i32>,
    /// DLQ offset.
    #[sqlx(rename = "back_offset")]
    pub offset: Option<i64>,
    /// Generation of the DLQ partition's log.
    #[sqlx(rename = "back_generation")]
    pub generation: Option<i64>,
    /// Its error class.
    #[sqlx(rename = "back_error_class")]
    pub error_class: Option<String>,
    /// Its error message.
    #[sqlx(rename = "back_error_message")]
    pub error_message: Option<String>,
    /// Whether it was matched by key and value (it carried no `dlq-replay-id`).
    #[sqlx(rename = "back_probable")]
    pub probable: bool,
}

const ITEM_COLUMNS: &str = "i.job_id, r.topic, r.partition, r.\"offset\", r.generation, CASE WHEN i.state = 'pending' AND i.record_id <= j.claimed_through THEN 'sending' ELSE i.state END AS state, i.target_topic, i.target_partition, i.target_offset, i.reason, i.replay_count, i.finished_at, j.actor, i.record_id, i.consumed_at, back.topic AS back_topic, back.partition AS back_partition, back.\"offset\" AS back_offset, back.generation AS back_generation, back.error_class AS back_error_class, back.error_message AS back_error_message, i.failed_again_probable AS back_probable";

/// The joins `ITEM_COLUMNS` reads from (`back` is the DLQ record a replay came back as).
const ITEM_FROM: &str = "replay_items i JOIN records r ON r.id = i.record_id JOIN replay_jobs j ON j.id = i.job_id LEFT JOIN records back ON back.id = i.failed_again_id";

/// Order of states in a results list: failures first, then refusals, then the rest.
pub const RESULT_STATES: [&str; 6] = [
    "failed",
    "refused",
    "sending",
    "pending",
    "cancelled",
    "sent",
];

/// A page of a job's items in `state` after record id `after`.
pub async fn items(
    pool: &SqlitePool,
    job_id: &str,
    state: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ItemResult>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ITEM_COLUMNS} FROM {ITEM_FROM}
         WHERE i.job_id = ? AND {} AND i.record_id > ? ORDER BY i.record_id LIMIT ?",
        stored_state_condition(state)
    ))
    .bind(job_id)
    .bind(stored_state(state))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The stored state behind a state as results name it: `sending` is a pending item at or
/// below the job's claim cursor.
fn stored_state(state: &str) -> &str {
    if state == "sending" {
        "pending"
    } else {
        state
    }
}

/// The condition selecting items in a state as results name it (one `?` for the stored
/// state).
fn stored_state_condition(state: &str) -> &'static str {
    match state {
        "sending" => "i.state = ? AND i.record_id <= j.claimed_through",
        "pending" => "i.state = ? AND i.record_id > j.claimed_through",
        _ => "i.state = ?",
    }
}

/// Items of a job per state.
pub async fn item_counts(pool: &SqlitePool, job_id: &str) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE WHEN i.state = 'pending' AND i.record_id <= j.claimed_through THEN 'sending' ELSE i.state END,
                COUNT(*)
         FROM replay_items i JOIN replay_jobs j ON j.id = i.job_id WHERE i.job_id = ? GROUP BY 1",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Every replay of one record (confirmed jobs only), newest first.
pub async fn history(pool: &SqlitePool, record_id: i64) -> Result<Vec<ItemResult>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ITEM_COLUMNS} FROM {ITEM_FROM}
         WHERE i.record_id = ? AND j.status <> 'preview' ORDER BY COALESCE(i.finished_at, j.created_at) DESC, j.created_at DESC"
    ))
    .bind(record_id)
    .fetch_all(pool)
    .await?)
}

/// Refused items of a job, first `limit`.
pub async fn refusals(pool: &SqlitePool, job_id: &str, limit: i64) -> Result<Vec<ItemResult>> {
    items(pool, job_id, "refused", 0, limit).await
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
