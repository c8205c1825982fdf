//! The items of replay jobs: one per selected record, claimed through a cursor, sent, and
//! recorded with their delivery result and outcome.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use sqlx::SqlitePool;

use super::codec;
use super::raw::{with_handle, STATEMENTS_PER_HOLD};
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

/// One item to send, with what the producer needs. Its key, value and headers are slices of
/// one buffer per chunk read, and its topics are shared with the chunk's other items: the
/// feeder makes no allocation per record (with three per record, glibc's malloc was a
/// large part of a bulk replay's CPU).
#[derive(Debug, Clone)]
pub struct SendItem {
    /// Record row id.
    pub record_id: i64,
    /// Target topic.
    pub target_topic: Arc<str>,
    /// DLQ topic.
    pub topic: Arc<str>,
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Option<Bytes>,
    /// Stored headers JSON.
    pub headers: Bytes,
    /// Replays before this one: the record's own delivered replays, plus those its lineage
    /// went through before it came back to a DLQ.
    pub replay_count: i64,
}

impl SendItem {
    /// The stored headers JSON as text (written by the indexer, so UTF-8; anything else
    /// reads as no headers rather than as a panic).
    pub fn headers_json(&self) -> &str {
        std::str::from_utf8(&self.headers).unwrap_or("[]")
    }
}

/// Where one item's bytes lie in its chunk's buffer.
struct Spans {
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Range<usize>,
}

/// The same topic name as the last one seen, shared, or a new one.
fn shared_topic(last: &mut Option<Arc<str>>, name: &[u8]) -> Arc<str> {
    match last {
        Some(t) if t.as_bytes() == name => t.clone(),
        _ => {
            let made: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
            *last = Some(made.clone());
            made
        }
    }
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
    // and a bulk replay waits for whichever of the two ends last. One read per chunk, on a
    // reader connection: a chunk is at most MAX_CHUNK (2,000) rows, and reading it in holds
    // of STATEMENTS_PER_HOLD measured slower bulk replay (22.6–25.0k msg/s against
    // 26.6–30.9k in one piece, alternating runs) for no reader's benefit: WAL readers do not
    // wait on each other, and no writer waits on this.
    with_handle(&mut conn, |db| {
        let mut rows = db.prepare(
            "SELECT i.record_id, i.target_topic, r.topic, r.partition, r.\"offset\", r.key, b.value, b.headers, r.lineage_replays + r.replay_count, b.codec
             FROM replay_items i JOIN records r ON r.id = i.record_id JOIN record_bodies b ON b.record_id = i.record_id
             WHERE i.job_id = ?1 AND i.record_id > ?2 AND i.state = 'pending'
             ORDER BY i.record_id LIMIT ?3",
        )?;
        rows.text(1, Some(job_id))?;
        rows.int(2, after)?;
        rows.int(3, limit)?;
        let capacity = usize::try_from(limit).unwrap_or(0).min(10_000);
        let mut rows_read = Vec::with_capacity(capacity);
        // About a KiB per item up front: growing it by doubling copied every chunk's bytes
        // again; untouched capacity is address space, not memory.
        let mut buffer: Vec<u8> = Vec::with_capacity(capacity * 1024);
        let (mut target_topic, mut topic) = (None, None);
        fn push(buffer: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
            let start = buffer.len();
            buffer.extend_from_slice(bytes);
            start..buffer.len()
        }
        while let Some(row) = rows.next_row()? {
            let key = row.bytes(5).map(|k| push(&mut buffer, k));
            // Replay sends the original bytes, whatever the index stored them as.
            let value = match row.bytes(6) {
                Some(stored) => {
                    let start = buffer.len();
                    codec::decode_append(stored, row.int(9), &mut buffer)?;
                    Some(start..buffer.len())
                }
                None => None,
            };
            let spans = Spans {
                key,
                value,
                headers: push(&mut buffer, row.bytes(7).unwrap_or_default()),
            };
            rows_read.push((
                SendItem {
                    record_id: row.int(0),
                    target_topic: shared_topic(&mut target_topic, row.bytes(1).unwrap_or_default()),
                    topic: shared_topic(&mut topic, row.bytes(2).unwrap_or_default()),
                    partition: row.int(3) as i32,
                    offset: row.int(4),
                    key: None,
                    value: None,
                    headers: Bytes::new(),
                    replay_count: row.int(8),
                },
                spans,
            ));
        }
        let buffer = Bytes::from(buffer);
        let items: Vec<SendItem> = rows_read
            .into_iter()
            .map(|(mut item, spans)| {
                item.key = spans.key.map(|r| buffer.slice(r));
                item.value = spans.value.map(|r| buffer.slice(r));
                item.headers = buffer.slice(spans.headers);
                item
            })
            .collect();
        Ok(items)
    })
    .await
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
    // Per record, three statements prepared once per hold and stepped with bound values:
    // the item, its record's topic, status and group (a rowid seek), the record. This
    // replaced a temporary table of the batch driving set-based UPDATE ... FROM statements,
    // which cost a seek of the item and the record more per delivery to fill, materialised
    // each join, sorted the batch for the counters, and (for statements changing thousands
    // of rows) copied every page they touched into a statement journal on disk. The turn is
    // held from here to the commit; the loop yields after each hold of the handle.
    //
    // OR FAIL: a failing statement stops without a statement journal (which only an
    // ABORT needs, to undo the statement alone); any error returns and the whole
    // transaction rolls back, so nothing of a failed batch stays.
    let mut moved = StatusMoves::default();
    let (mut sent, mut failed) = (0_i64, 0_i64);
    for chunk in deliveries.chunks(STATEMENTS_PER_HOLD) {
        with_handle(&mut tx, |db| {
            // Only items still unsent count: a report for an item the job no longer owns
            // (never expected) changes nothing.
            let mut item = db.prepare(
                "UPDATE OR FAIL replay_items SET state = ?3, reason = ?4, replay_count = ?5,
                   target_partition = ?6, target_offset = ?7, finished_at = ?8
                 WHERE job_id = ?1 AND record_id = ?2 AND state = 'pending'",
            )?;
            let mut before = db.prepare("SELECT topic, status, fingerprint FROM records WHERE id = ?1")?;
            // A record's replay count counts delivered replays; its status is its latest
            // outcome.
            let mut record = db.prepare(
                "UPDATE OR FAIL records SET status = ?2, replay_count = replay_count + ?3 WHERE id = ?1",
            )?;
            item.text(1, Some(job_id))?;
            item.int(8, now)?;
            for d in chunk {
                let delivered = d.error.is_none();
                item.int(2, d.record_id)?;
                item.text(3, Some(if delivered { "sent" } else { "failed" }))?;
                item.text(4, d.error.as_deref())?;
                item.int(5, d.replay_count)?;
                item.opt_int(6, d.partition.map(i64::from))?;
                item.opt_int(7, d.offset)?;
                if item.execute()? == 0 {
                    continue;
                }
                if delivered {
                    sent += 1;
                } else {
                    failed += 1;
                }
                before.int(1, d.record_id)?;
                if let Some(row) = before.next_row()? {
                    let column = |i| row.bytes(i).unwrap_or_default();
                    moved.record(column(0), column(1), column(2), delivered);
                }
                while before.next_row()?.is_some() {}
                let status = if delivered { "replayed" } else { "replay_failed" };
                record.int(1, d.record_id)?;
                record.text(2, Some(status))?;
                record.int(3, i64::from(delivered))?;
                record.execute()?;
            }
            Ok(())
        })
        .await?;
        tokio::task::yield_now().await;
    }
    moved.end_run();
    with_handle(&mut tx, |db| {
        let mut counts = db.prepare(
            "INSERT INTO topic_status_counts (topic, status, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((topic, status), n) in moved.counts.iter().filter(|(_, n)| **n != 0) {
            counts.text(1, Some(topic))?;
            counts.text(2, Some(status))?;
            counts.int(3, *n)?;
            counts.execute()?;
        }
        let mut groups = db
            .prepare("UPDATE failure_groups SET replayed = replayed + ?2 WHERE fingerprint = ?1")?;
        for (fingerprint, n) in &moved.replayed_by_group {
            groups.text(1, Some(fingerprint))?;
            groups.int(2, *n)?;
            groups.execute()?;
        }
        let mut job = db.prepare(
            "UPDATE replay_jobs SET sent = sent + ?1, failed = failed + ?2 WHERE id = ?3",
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

/// What a batch of recorded deliveries changes in the per-topic status counters and the
/// failure groups' replayed counts. A batch's records mostly share a topic, a status and a
/// group, so runs of equal keys are counted before they are looked up: no allocation per
/// record.
#[derive(Default)]
struct StatusMoves {
    counts: BTreeMap<(String, String), i64>,
    replayed_by_group: BTreeMap<String, i64>,
    run: Option<Run>,
}

/// Consecutive deliveries of records with the same topic, status, group and outcome.
struct Run {
    topic: Vec<u8>,
    status: Vec<u8>,
    fingerprint: Vec<u8>,
    delivered: bool,
    n: i64,
}

impl StatusMoves {
    fn record(&mut self, topic: &[u8], status: &[u8], fingerprint: &[u8], delivered: bool) {
        if let Some(run) = self.run.as_mut().filter(|r| {
            r.delivered == delivered
                && r.topic == topic
                && r.status == status
                && r.fingerprint == fingerprint
        }) {
            run.n += 1;
            return;
        }
        self.end_run();
        self.run = Some(Run {
            topic: topic.to_vec(),
            status: status.to_vec(),
            fingerprint: fingerprint.to_vec(),
            delivered,
            n: 1,
        });
    }

    fn end_run(&mut self) {
        let Some(run) = self.run.take() else { return };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let now = if run.delivered {
            "replayed"
        } else {
            "replay_failed"
        };
        let topic = text(&run.topic);
        *self
            .counts
            .entry((topic.clone(), now.to_string()))
            .or_default() += run.n;
        *self.counts.entry((topic, text(&run.status))).or_default() -= run.n;
        if run.delivered {
            *self
                .replayed_by_group
                .entry(text(&run.fingerprint))
                .or_default() += run.n;
        }
    }
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
