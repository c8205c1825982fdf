//! The items of replay jobs: one per selected record, claimed through a cursor, sent, and
//! recorded with their delivery result and outcome.

use std::collections::BTreeMap;

use sqlx::SqlitePool;

use super::raw::{with_handle, Handle, STATEMENTS_PER_HOLD};
use crate::error::Result;
use crate::states::ItemState;

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
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    // Stepped here rather than on sqlx's worker thread: this read runs beside each claim,
    // and a bulk replay waits for whichever of the two ends last. One read per chunk, on a
    // reader connection: a chunk is at most MAX_CHUNK (2,000) rows, and reading it in holds
    // of STATEMENTS_PER_HOLD measured slower bulk replay (22.6–25.0k msg/s against
    // 26.6–30.9k in one piece, alternating runs) for no reader's benefit: WAL readers do not
    // wait on each other, and no writer waits on this.
    with_handle(&mut conn, |db| {
        let mut rows = db.prepare(
            "SELECT i.record_id, i.target_topic, r.topic, r.partition, r.\"offset\", r.key, b.value, b.headers, r.lineage_replays + r.replay_count
             FROM replay_items i JOIN records r ON r.id = i.record_id JOIN record_bodies b ON b.record_id = i.record_id
             WHERE i.job_id = ?1 AND i.record_id > ?2 AND i.state = 'pending'
             ORDER BY i.record_id LIMIT ?3",
        )?;
        rows.text(1, Some(job_id))?;
        rows.int(2, after)?;
        rows.int(3, limit)?;
        let mut items = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(10_000));
        while let Some(row) = rows.next_row()? {
            items.push(SendItem {
                record_id: row.int(0),
                target_topic: text(row.bytes(1)),
                topic: text(row.bytes(2)),
                partition: row.int(3) as i32,
                offset: row.int(4),
                key: row.bytes(5).map(<[u8]>::to_vec),
                value: row.bytes(6).map(<[u8]>::to_vec),
                headers: text(row.bytes(7)),
                replay_count: row.int(8),
            });
        }
        Ok(items)
    })
    .await
}

/// Make this connection's temporary table `name` exist and be empty.
fn empty_temp_table(db: &Handle<'_>, name: &str, columns: &str) -> Result<()> {
    db.run(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {name} ({columns})"
    ))?;
    db.run(&format!("DELETE FROM {name}"))?;
    Ok(())
}

/// Claim a job's items up to record id `through` before they are handed to the producer:
/// one cursor per job, not a write per item. Items are sent in record id order, so every
/// pending item at or below the cursor may have reached the broker (`sending` in results;
/// after a crash it is sent again with the same replay id) and every one above it has not.
/// Records keep their status until their delivery is recorded.
pub async fn claim(pool: &SqlitePool, job_id: &str, through: i64) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
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
    let mut tx = super::begin_write(pool).await?;
    let (mut sent, mut failed) = (0_i64, 0_i64);
    // The turn is held from here to the commit: statements are stepped on this task, with
    // no round trips, and a yield after each hold of the handle.
    // The batch goes into a keyed temporary table first, with each record's topic
    // and status before this outcome, so that every update below is driven by the
    // batch's ids (a join the planner might turn around would scan the job or the
    // whole index per batch) and the counters are adjusted without reading the
    // records again. The updates join the batch once per row (UPDATE ... FROM)
    // rather than looking it up once per column; the `IN (SELECT id ...)` beside the
    // join keeps the planner driving from the batch (without it, it scans `records`).
    with_handle(&mut tx, |db| {
        empty_temp_table(
            db,
            "delivered",
            "id INTEGER PRIMARY KEY, n INTEGER, p INTEGER, o INTEGER, e TEXT,
             topic TEXT NOT NULL, status TEXT NOT NULL, fingerprint TEXT NOT NULL",
        )
    })
    .await?;
    for chunk in deliveries.chunks(STATEMENTS_PER_HOLD) {
        with_handle(&mut tx, |db| {
            // Only items still unsent count: a report for an item the job no longer owns
            // (never expected) changes nothing.
            let mut add = db.prepare(
                "INSERT OR REPLACE INTO delivered (id, n, p, o, e, topic, status, fingerprint)
                 SELECT r.id, ?2, ?3, ?4, ?5, r.topic, r.status, r.fingerprint
                 FROM replay_items i JOIN records r ON r.id = i.record_id
                 WHERE i.job_id = ?6 AND i.record_id = ?1 AND i.state = 'pending'",
            )?;
            add.text(6, Some(job_id))?;
            for d in chunk {
                add.int(1, d.record_id)?;
                add.int(2, d.replay_count)?;
                add.opt_int(3, d.partition.map(i64::from))?;
                add.opt_int(4, d.offset)?;
                add.text(5, d.error.as_deref())?;
                add.execute()?;
            }
            Ok(())
        })
        .await?;
        tokio::task::yield_now().await;
    }
    with_handle(&mut tx, |db| {
        let mut counts = db.prepare("SELECT COALESCE(SUM(e IS NULL), 0), COALESCE(SUM(e IS NOT NULL), 0) FROM delivered",
        )?;
        if let Some(row) = counts.next_row()? {
            (sent, failed) = (row.int(0), row.int(1));
        }
        drop(counts);
        let mut items = db.prepare("UPDATE replay_items SET
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
        db.run("UPDATE records SET
               status = CASE WHEN d.e IS NULL THEN 'replayed' ELSE 'replay_failed' END,
               replay_count = replay_count + (d.e IS NULL)
             FROM delivered AS d
             WHERE records.id IN (SELECT id FROM delivered) AND records.id = d.id",
        )?;
        db.run("INSERT INTO topic_status_counts (topic, status, count)
             SELECT topic, status, -COUNT(*) FROM delivered GROUP BY topic, status
             UNION ALL
             SELECT topic, CASE WHEN e IS NULL THEN 'replayed' ELSE 'replay_failed' END, COUNT(*)
             FROM delivered GROUP BY 1, 2
             ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count",
        )?;
        db.run("UPDATE failure_groups SET replayed = replayed + c.n
             FROM (SELECT fingerprint, COUNT(*) AS n FROM delivered WHERE e IS NULL GROUP BY fingerprint) AS c
             WHERE failure_groups.fingerprint = c.fingerprint",
        )?;
        let mut job = db.prepare("UPDATE replay_jobs SET sent = sent + ?1, failed = failed + ?2 WHERE id = ?3",
        )?;
        job.int(1, sent)?;
        job.int(2, failed)?;
        job.text(3, Some(job_id))?;
        job.execute()?;
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
    let mut tx = super::begin_write(pool).await?;
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
    /// Where the item stands.
    pub state: ItemState,
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

/// A page of a job's items in `state` after record id `after`.
pub async fn items(
    pool: &SqlitePool,
    job_id: &str,
    state: ItemState,
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
fn stored_state(state: ItemState) -> ItemState {
    if state == ItemState::Sending {
        ItemState::Pending
    } else {
        state
    }
}

/// The condition selecting items in a state as results name it (one `?` for the stored
/// state).
fn stored_state_condition(state: ItemState) -> &'static str {
    match state {
        ItemState::Sending => "i.state = ? AND i.record_id <= j.claimed_through",
        ItemState::Pending => "i.state = ? AND i.record_id > j.claimed_through",
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
    items(pool, job_id, ItemState::Refused, 0, limit).await
}

/// A page of a job's results, failures first: `state` limits them to one state; the
/// cursor is `STATE:RECORD_ID` of the last row seen.
pub async fn result_page(
    pool: &SqlitePool,
    id: &str,
    only: Option<ItemState>,
    cursor: Option<(ItemState, i64)>,
    limit: i64,
) -> Result<(Vec<ItemResult>, Option<String>)> {
    let states: Vec<ItemState> = match only {
        Some(s) => vec![s],
        None => ItemState::ALL.to_vec(),
    };
    let (mut from_state, mut after) = match &cursor {
        Some((s, a)) => (states.iter().position(|x| x == s).unwrap_or(0), *a),
        None => (0, 0),
    };
    let mut out: Vec<ItemResult> = Vec::new();
    while from_state < states.len() && (out.len() as i64) <= limit {
        let want = limit + 1 - out.len() as i64;
        out.extend(items(pool, id, states[from_state], after, want).await?);
        from_state += 1;
        after = 0;
    }
    let next = if out.len() as i64 > limit {
        out.truncate(limit as usize);
        out.last().map(|r| format!("{}:{}", r.state, r.record_id))
    } else {
        None
    };
    Ok((out, next))
}
