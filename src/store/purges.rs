//! Purges: a frozen selection with one item per record, applied, undone and erased in
//! chunks, each chunk in a write transaction of its own and sized by time ([`ChunkSizer`]),
//! so that a million-record purge never holds the writer (and so the indexer) for more than
//! a few milliseconds at a time. Every chunk re-checks its records under the writer lock: a record
//! that a replay job still has to send, or that another purge took meanwhile, is refused
//! with a reason instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqliteExecutor, SqlitePool};

use super::raw::Handle;
use super::selection::{push_source, Source};
use crate::error::Result;
use crate::states::{PurgeItemState, PurgeStatus, RecordStatus};

/// How long one chunk of a purge should hold the writer. The indexer's batches and replay
/// outcomes queue behind it; a fixed number of items held it for 4 ms at rest and 36 ms on a
/// busy machine, so chunks are sized by the time the previous ones took.
pub const CHUNK_HOLD: Duration = Duration::from_millis(3);

/// A chunk's hold of the writer beyond which its phases are logged (at debug).
const SLOW_HOLD: Duration = Duration::from_millis(8);

/// Sizes the chunks of a long purge operation (items applied, undone or erased, or record
/// ids scanned by a preview) so that each holds the writer about [`CHUNK_HOLD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizer {
    size: i64,
    min: i64,
    max: i64,
}

impl ChunkSizer {
    /// For items applied, undone or erased.
    pub const fn items() -> Self {
        Self {
            size: 100,
            min: 10,
            max: 2_000,
        }
    }

    /// For the record ids a preview window scans: a filter is applied to windows of the
    /// index in id order, so a selective filter costs a scan, never a long hold.
    pub const fn preview_ids() -> Self {
        Self {
            size: 500,
            min: 50,
            max: 20_000,
        }
    }

    /// The size of the next chunk.
    pub const fn size(&self) -> i64 {
        self.size
    }

    /// Learn from a chunk of `used` (of at most `size()`) that held the writer for `held`.
    /// The size moves towards what would have taken [`CHUNK_HOLD`], by at most a factor of
    /// two per chunk, so that one chunk slowed by something else (a checkpoint, another
    /// process) does not swing it; a short last chunk says nothing about the rate.
    pub fn held(&mut self, used: i64, held: Duration) {
        if used < self.size / 2 {
            return;
        }
        let ideal = used as f64 * CHUNK_HOLD.as_secs_f64() / held.as_secs_f64().max(1e-6);
        let next = ideal.clamp(self.size as f64 / 2.0, self.size as f64 * 2.0);
        self.size = (next as i64).clamp(self.min, self.max);
    }
}

/// The condition, on a record row named `r`, that an unfinished replay job still has to
/// send it, with that job's id (NULL when none).
pub(crate) const JOB_STILL_SENDING: &str = "(SELECT o.job_id FROM replay_items o JOIN replay_jobs j ON j.id = o.job_id
    WHERE o.record_id = r.id AND o.state = 'pending' AND j.status IN ('queued', 'running', 'paused') LIMIT 1)";

/// A new purge.
#[derive(Debug, Clone)]
pub struct NewPurge {
    /// Purge id.
    pub id: String,
    /// Who asked for it.
    pub actor: String,
    /// Selection JSON.
    pub selection: String,
    /// Why, in the operator's words.
    pub reason: Option<String>,
    /// Erase the payloads once purged.
    pub erase: bool,
    /// The selection is every message (no filter).
    pub everything: bool,
    /// Created, ms.
    pub created_at: i64,
}

/// A purge as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Purge {
    /// Purge id.
    pub id: String,
    /// Status.
    pub status: PurgeStatus,
    /// Who asked for it.
    pub actor: String,
    /// The selection as asked for.
    pub selection: Json<serde_json::Value>,
    /// Why.
    pub reason: Option<String>,
    /// Payloads are erased once purged.
    pub erase: bool,
    /// The selection is every message.
    pub everything: bool,
    /// Records to purge, as previewed.
    pub total: i64,
    /// Refused at preview.
    pub refused: i64,
    /// Purged.
    pub purged: i64,
    /// Refused when applied (changed since the preview).
    pub skipped: i64,
    /// Restored by an undo.
    pub undone: i64,
    /// Erased.
    pub erased: i64,
    /// Records per DLQ topic, as previewed.
    pub by_topic: Json<BTreeMap<String, i64>>,
    /// Records per status, as previewed.
    pub by_status: Json<BTreeMap<String, i64>>,
    /// Created, ms.
    pub created_at: i64,
    /// Confirmed, ms.
    pub confirmed_at: Option<i64>,
    /// Applied to the last record, ms.
    pub finished_at: Option<i64>,
}

impl Purge {
    /// Records still purged by it (not undone).
    pub fn still_purged(&self) -> i64 {
        (self.purged - self.undone).max(0)
    }
}

const PURGE_COLUMNS: &str = "id, status, actor, selection, reason, erase, everything, total, refused, purged, skipped, undone, erased, by_topic, by_status, created_at, confirmed_at, finished_at";

/// One purge by id (previews included).
pub async fn purge<'e>(db: impl SqliteExecutor<'e>, id: &str) -> Result<Option<Purge>> {
    Ok(
        sqlx::query_as(&format!("SELECT {PURGE_COLUMNS} FROM purges WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Confirmed purges, newest first.
pub async fn purges(pool: &SqlitePool, limit: i64) -> Result<Vec<Purge>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PURGE_COLUMNS} FROM purges WHERE status NOT IN ('building', 'preview')
         ORDER BY created_at DESC, id DESC LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Purges in a status, oldest first.
pub async fn purges_in(pool: &SqlitePool, status: PurgeStatus) -> Result<Vec<Purge>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PURGE_COLUMNS} FROM purges WHERE status = ? ORDER BY created_at, id"
    ))
    .bind(status)
    .fetch_all(pool)
    .await?)
}

/// Start a purge preview ('building'): its items are added by [`add_preview_window`].
pub async fn create(pool: &SqlitePool, p: &NewPurge) -> Result<()> {
    sqlx::query(
        "INSERT INTO purges (id, status, actor, selection, reason, erase, everything, created_at)
         VALUES (?, 'building', ?, ?, ?, ?, ?, ?)",
    )
    .bind(&p.id)
    .bind(&p.actor)
    .bind(&p.selection)
    .bind(&p.reason)
    .bind(p.erase)
    .bind(p.everything)
    .bind(p.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Add the selected records with ids in `(after, through]` to a building preview: pending,
/// or refused with the reason. Returns how many items were added, and how long the writer
/// was held.
pub async fn add_preview_window(
    pool: &SqlitePool,
    id: &str,
    source: Source<'_>,
    after: i64,
    through: i64,
) -> Result<(u64, Duration)> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO purge_items (purge_id, record_id, state, prev_status, reason) SELECT ",
    );
    qb.push_bind(id.to_string());
    qb.push(format!(
        ", r.id, CASE WHEN r.status = 'purged' OR r.job IS NOT NULL THEN 'refused' ELSE 'pending' END, r.status,
           CASE WHEN r.status = 'purged' THEN 'The message is already purged (by purge ' || COALESCE(r.purge_id, '?') || ').'
                WHEN r.job IS NOT NULL THEN 'Replay job ' || r.job || ' still has to send this message; wait for it to finish, or cancel it, and purge again.'
                ELSE NULL END
         FROM (SELECT r.id, r.status, r.purge_id, {JOB_STILL_SENDING} AS job FROM records r
               WHERE r.id IN (SELECT id FROM records NOT INDEXED"
    ));
    // NOT INDEXED: a window is a range of row ids, read from the table itself; through the
    // index of a filter's column (the time index for a time range) each window read every
    // matching row of the whole index before keeping its own.
    push_source(&mut qb, source, through);
    qb.push(" AND id > ").push_bind(after);
    qb.push(")) AS r");
    let mut tx = super::begin_write(pool).await?;
    let started = Instant::now();
    let done = qb.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((done.rows_affected(), started.elapsed()))
}

/// The DLQ topics of a building preview's messages that are not refused.
pub async fn preview_topics(pool: &SqlitePool, id: &str) -> Result<Vec<String>> {
    item_topics(pool, id, "pending").await
}

/// The DLQ topics of the messages a purge refused.
pub async fn refused_topics(pool: &SqlitePool, id: &str) -> Result<Vec<String>> {
    item_topics(pool, id, "refused").await
}

/// The DLQ topics of a purge's items in `state`.
async fn item_topics(pool: &SqlitePool, id: &str, state: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT r.topic FROM purge_items i JOIN records r ON r.id = i.record_id
         WHERE i.purge_id = ? AND i.state = ?",
    )
    .bind(id)
    .bind(state)
    .fetch_all(pool)
    .await?)
}

/// Refuse, with `reason`, the pending messages of `topic` in a building preview.
pub async fn refuse_topic(pool: &SqlitePool, id: &str, topic: &str, reason: &str) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "UPDATE purge_items SET state = 'refused', reason = ?3
         WHERE purge_id = ?1 AND state = 'pending'
           AND record_id IN (SELECT id FROM records WHERE topic = ?2)",
    )
    .bind(id)
    .bind(topic)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Finish a building preview: count it per topic and status, and make it confirmable.
pub async fn finish_preview(pool: &SqlitePool, id: &str) -> Result<()> {
    let counts: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT i.state, r.topic, i.prev_status, COUNT(*) FROM purge_items i JOIN records r ON r.id = i.record_id
         WHERE i.purge_id = ? GROUP BY 1, 2, 3",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut by_topic: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    let (mut total, mut refused) = (0, 0);
    for (state, topic, status, n) in counts {
        if state == PurgeItemState::Pending.as_str() {
            total += n;
            *by_topic.entry(topic).or_default() += n;
            *by_status.entry(status).or_default() += n;
        } else {
            refused += n;
        }
    }
    sqlx::query(
        "UPDATE purges SET status = 'preview', total = ?, refused = ?, by_topic = ?, by_status = ? WHERE id = ? AND status = 'building'",
    )
    .bind(total)
    .bind(refused)
    .bind(Json(&by_topic))
    .bind(Json(&by_status))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Delete unconfirmed purges created before `before` (ms).
pub async fn delete_stale_previews(pool: &SqlitePool, before: i64) -> Result<()> {
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM purges WHERE status IN ('building', 'preview') AND created_at < ?",
    )
    .bind(before)
    .fetch_all(pool)
    .await?;
    for id in stale {
        delete_preview(pool, &id).await?;
    }
    Ok(())
}

/// Delete an unconfirmed purge, a chunk of its items at a time.
pub async fn delete_preview(pool: &SqlitePool, id: &str) -> Result<()> {
    let mut sizer = ChunkSizer::items();
    loop {
        let mut tx = super::begin_write(pool).await?;
        let started = Instant::now();
        let done = sqlx::query(
            "DELETE FROM purge_items WHERE purge_id = ?1 AND record_id IN
               (SELECT record_id FROM purge_items WHERE purge_id = ?1 LIMIT ?2)
             AND EXISTS (SELECT 1 FROM purges WHERE id = ?1 AND status IN ('building', 'preview'))",
        )
        .bind(id)
        .bind(sizer.size())
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        if done == 0 {
            sqlx::query("DELETE FROM purges WHERE id = ? AND status IN ('building', 'preview')")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(());
        }
        tx.commit().await?;
        sizer.held(done, started.elapsed());
    }
}

/// Set what the operator asked for beside the selection (at confirmation, from a page).
pub async fn set_request<'e>(
    db: impl SqliteExecutor<'e>,
    id: &str,
    reason: Option<&str>,
    erase: bool,
) -> Result<()> {
    sqlx::query("UPDATE purges SET reason = ?, erase = ? WHERE id = ?")
        .bind(reason)
        .bind(erase)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Move a purge from one status to another; whether it was in `from`.
pub async fn transition<'e>(
    db: impl SqliteExecutor<'e>,
    id: &str,
    from: PurgeStatus,
    to: PurgeStatus,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE purges SET status = ?1,
           confirmed_at = CASE WHEN ?1 = 'applying' THEN ?3 ELSE confirmed_at END,
           finished_at = CASE WHEN ?1 = 'applied' THEN ?3 ELSE finished_at END
         WHERE id = ?2 AND status = ?4",
    )
    .bind(to)
    .bind(id)
    .bind(now)
    .bind(from)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The record id at which the next chunk of a purge's items in `state` after `after` ends
/// (None when there are none): chunks are id ranges, so that every statement of a chunk
/// covers the same items.
async fn chunk_end(
    db: &mut SqliteConnection,
    id: &str,
    state: PurgeItemState,
    after: i64,
    limit: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(record_id) FROM (SELECT record_id FROM purge_items
         WHERE purge_id = ? AND state = ? AND record_id > ? ORDER BY record_id LIMIT ?)",
    )
    .bind(id)
    .bind(state)
    .bind(after)
    .bind(limit)
    .fetch_one(db)
    .await?)
}

/// What one chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Items changed as asked.
    pub done: i64,
    /// Items refused (changed since the preview).
    pub refused: i64,
    /// Where the chunk ended (None: nothing was left).
    pub through: Option<i64>,
    /// How long the chunk held the writer (from its turn to its commit).
    pub held: Duration,
}

/// The items of a purge among a JSON array of record ids (`?2`), as `i` joined to `r`.
const LISTED_ITEMS: &str = "purge_items i JOIN records r ON r.id = i.record_id
    WHERE i.purge_id = ?1 AND i.record_id IN (SELECT value FROM json_each(?2))";

/// Move the status counters of the records of listed items (`ids_json`) from each item's
/// `prev_status` to `purged`, or back with `reverse`, with the failure groups' purged counts.
async fn move_counts(
    tx: &mut SqliteConnection,
    id: &str,
    ids_json: &str,
    reverse: bool,
) -> Result<()> {
    let (from, to) = if reverse { ("", "-") } else { ("-", "") };
    sqlx::query(&format!(
        "INSERT INTO topic_status_counts (topic, status, count)
         SELECT r.topic, i.prev_status, {from}COUNT(*) FROM {LISTED_ITEMS} GROUP BY r.topic, i.prev_status
         UNION ALL SELECT r.topic, 'purged', {to}COUNT(*) FROM {LISTED_ITEMS} GROUP BY r.topic
         ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count"
    ))
    .bind(id)
    .bind(ids_json)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE failure_groups SET purged = purged {} c.n
         FROM (SELECT r.fingerprint AS fingerprint, COUNT(*) AS n FROM {LISTED_ITEMS} GROUP BY r.fingerprint) AS c
         WHERE failure_groups.fingerprint = c.fingerprint",
        if reverse { "-" } else { "+" }
    ))
    .bind(id)
    .bind(ids_json)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Set the state of listed items (`ids_json`) of a purge.
async fn set_item_state(
    tx: &mut SqliteConnection,
    id: &str,
    ids_json: &str,
    state: PurgeItemState,
) -> Result<()> {
    sqlx::query(
        "UPDATE purge_items SET state = ?3 WHERE purge_id = ?1 AND record_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(id)
    .bind(ids_json)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The pending items of the next chunk of a purge (`?1`), at most `?2` after its cursor, in
/// record id order, with what their records are now: status, the purge that holds it, the
/// unfinished replay job that still has to send it, and the topic and failure group whose
/// counters move. One read of each item and its record: the refusal check, the status an
/// undo restores and the counters all come from it.
fn apply_read_sql() -> String {
    format!(
        "SELECT i.record_id, r.status, r.purge_id, {JOB_STILL_SENDING}, r.topic, r.fingerprint
         FROM purge_items i JOIN records r ON r.id = i.record_id
         WHERE i.purge_id = ?1 AND i.state = 'pending'
           AND i.record_id > (SELECT applied_through FROM purges WHERE id = ?1)
         ORDER BY i.record_id LIMIT ?2"
    )
}

/// A pending item of a chunk, as read by [`apply_read_sql`].
struct PendingItem {
    record_id: i64,
    status: String,
    topic: String,
    fingerprint: Option<String>,
}

/// Apply the next chunk of a confirmed purge: its pending items after the purge's cursor
/// become purged (their records `purged`, with the counters), or refused when an unfinished
/// replay job still has to send the record or another purge took it since the preview.
///
/// The chunk is one transaction run wholly on the connection's handle
/// ([`super::write_on_handle`]): one read of the chunk's items and records, then one
/// prepared statement stepped per item for each change. Through sqlx, its ten statements,
/// and then its `BEGIN` and `COMMIT`, each went to the connection's worker thread and back
/// while the chunk held the writer, and on a busy machine each of those hand-overs could
/// wait for a core: the indexer waited behind that (writer turn p99 10–18 ms, see
/// docs/performance.md). The hold is bounded by the chunk's size, which [`ChunkSizer`] keeps
/// at about [`CHUNK_HOLD`].
pub async fn apply_chunk(pool: &SqlitePool, id: &str, limit: i64) -> Result<ChunkOutcome> {
    let read = apply_read_sql();
    let asked = Instant::now();
    // An empty chunk (the purge is through) commits an empty transaction: nothing to undo.
    let (outcome, held) =
        super::write_on_handle(pool, |db| apply_items(db, &read, id, limit)).await?;
    if held > SLOW_HOLD {
        // For the writer's tail under a purge (docs/performance.md):
        // `RUST_LOG=dlq_dashboard::store::purges=debug`.
        tracing::debug!(
            waited_us = (asked.elapsed() - held).as_micros() as u64,
            held_us = held.as_micros() as u64,
            items = outcome.done + outcome.refused,
            "slow purge chunk"
        );
    }
    Ok(ChunkOutcome { held, ..outcome })
}

/// The statements of [`apply_chunk`], on its transaction's handle.
fn apply_items(db: &Handle<'_>, read: &str, id: &str, limit: i64) -> Result<ChunkOutcome> {
    let mut take: Vec<PendingItem> = Vec::new();
    let mut refuse: Vec<(i64, String)> = Vec::new();
    let mut through = None;
    {
        let mut rows = db.prepare(read)?;
        rows.text(1, Some(id))?;
        rows.int(2, limit)?;
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        while let Some(row) = rows.next_row()? {
            let record_id = row.int(0);
            through = Some(record_id);
            let status = text(row.bytes(1)).unwrap_or_default();
            if status == RecordStatus::Purged.as_str() {
                let by = text(row.bytes(2)).unwrap_or_else(|| "?".into());
                refuse.push((
                    record_id,
                    format!("Purge {by} purged this message after the preview was made."),
                ));
            } else if let Some(job) = text(row.bytes(3)) {
                refuse.push((
                    record_id,
                    format!("Replay job {job} was started with this message after the preview was made and still has to send it; wait for it to finish, or cancel it, and purge again."),
                ));
            } else {
                take.push(PendingItem {
                    record_id,
                    status,
                    topic: text(row.bytes(4)).unwrap_or_default(),
                    fingerprint: text(row.bytes(5)),
                });
            }
        }
    }
    let Some(hi) = through else {
        return Ok(ChunkOutcome::default());
    };
    let mut refused = db.prepare(
        "UPDATE purge_items SET state = 'refused', reason = ?3 WHERE purge_id = ?1 AND record_id = ?2",
    )?;
    refused.text(1, Some(id))?;
    for (record_id, reason) in &refuse {
        refused.int(2, *record_id)?;
        refused.text(3, Some(reason))?;
        refused.execute()?;
    }
    // What an undo restores is the status the record had when it was purged.
    let mut item = db.prepare(
        "UPDATE purge_items SET state = 'purged', prev_status = ?3 WHERE purge_id = ?1 AND record_id = ?2",
    )?;
    item.text(1, Some(id))?;
    let mut record =
        db.prepare("UPDATE records SET status = 'purged', purge_id = ?1 WHERE id = ?2")?;
    record.text(1, Some(id))?;
    let mut by_status: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut by_group: BTreeMap<&str, i64> = BTreeMap::new();
    for p in &take {
        item.int(2, p.record_id)?;
        item.text(3, Some(&p.status))?;
        item.execute()?;
        record.int(2, p.record_id)?;
        record.execute()?;
        *by_status.entry((&p.topic, &p.status)).or_default() += 1;
        if let Some(f) = &p.fingerprint {
            *by_group.entry(f).or_default() += 1;
        }
    }
    let mut count = db.prepare(
        "INSERT INTO topic_status_counts (topic, status, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count",
    )?;
    let mut per_topic: BTreeMap<&str, i64> = BTreeMap::new();
    for ((topic, status), n) in &by_status {
        if *n == 0 {
            continue;
        }
        *per_topic.entry(topic).or_default() += n;
        count.text(1, Some(topic))?;
        count.text(2, Some(status))?;
        count.int(3, -n)?;
        count.execute()?;
    }
    for (topic, n) in &per_topic {
        count.text(1, Some(topic))?;
        count.text(2, Some(RecordStatus::Purged.as_str()))?;
        count.int(3, *n)?;
        count.execute()?;
    }
    let mut group =
        db.prepare("UPDATE failure_groups SET purged = purged + ?2 WHERE fingerprint = ?1")?;
    for (fingerprint, n) in &by_group {
        group.text(1, Some(fingerprint))?;
        group.int(2, *n)?;
        group.execute()?;
    }
    let done = take.len() as i64;
    let mut purge = db.prepare(
        "UPDATE purges SET purged = purged + ?2, skipped = skipped + ?3, applied_through = ?4 WHERE id = ?1",
    )?;
    purge.text(1, Some(id))?;
    purge.int(2, done)?;
    purge.int(3, refuse.len() as i64)?;
    purge.int(4, hi)?;
    purge.execute()?;
    Ok(ChunkOutcome {
        done,
        refused: refuse.len() as i64,
        through: Some(hi),
        held: Duration::ZERO,
    })
}

/// Record ids of the next chunk of a purge's items after `after` that it still holds
/// (purged by it, not erased), among `only` when given, and where the chunk ends.
async fn held_chunk(
    tx: &mut SqliteConnection,
    id: &str,
    after: i64,
    limit: i64,
    only: Option<&[i64]>,
    restorable: bool,
) -> Result<Option<(Vec<i64>, i64)>> {
    // A list is done in one chunk (the caller splits it): scanning a large purge's chunks
    // for a few listed records would take the writer hundreds of times for nothing.
    let hi = match only {
        Some(_) => i64::MAX,
        None => match chunk_end(tx, id, PurgeItemState::Purged, after, limit).await? {
            Some(hi) => hi,
            None => return Ok(None),
        },
    };
    let ids = held_ids(tx, id, after, hi, only, restorable).await?;
    Ok(Some((ids, hi)))
}

/// Record ids of a purge's items in `(after, hi]` that it still holds (purged by it, not
/// erased), among `only` when given; with `restorable`, only those an undo can restore.
async fn held_ids(
    tx: &mut SqliteConnection,
    id: &str,
    after: i64,
    hi: i64,
    only: Option<&[i64]>,
    restorable: bool,
) -> Result<Vec<i64>> {
    // A record the broker no longer has (reclaimed, or aged out) cannot go back to a status
    // that offers it for replay: it stays purged.
    let restorable = if restorable {
        format!(" AND NOT {}", super::reclaim::below_log_start("r"))
    } else {
        String::new()
    };
    Ok(sqlx::query_scalar(&format!(
        "SELECT i.record_id FROM purge_items i JOIN records r ON r.id = i.record_id
         WHERE i.purge_id = ?1 AND i.state = 'purged' AND i.record_id > ?2 AND i.record_id <= ?3
           AND r.purge_id = ?1 AND r.erased_at IS NULL
           AND (?4 IS NULL OR i.record_id IN (SELECT value FROM json_each(?4))){restorable}
         ORDER BY i.record_id"
    ))
    .bind(id)
    .bind(after)
    .bind(hi)
    .bind(only.map(ids_json))
    .fetch_all(&mut *tx)
    .await?)
}

/// Undo the next chunk of a purge after record id `after`: its records get back the status
/// they had when purged. Erased records stay purged (their payload is gone). `only` limits it
/// to those record ids.
pub async fn undo_chunk(
    pool: &SqlitePool,
    id: &str,
    after: i64,
    limit: i64,
    only: Option<&[i64]>,
) -> Result<ChunkOutcome> {
    let mut tx = super::begin_write(pool).await?;
    let started = Instant::now();
    let Some((ids, hi)) = held_chunk(&mut tx, id, after, limit, only, true).await? else {
        tx.rollback().await?;
        return Ok(ChunkOutcome::default());
    };
    let listed = ids_json(&ids);
    move_counts(&mut tx, id, &listed, true).await?;
    sqlx::query(&format!(
        "UPDATE records SET status = c.prev_status, purge_id = NULL
         FROM (SELECT i.record_id AS record_id, i.prev_status AS prev_status FROM {LISTED_ITEMS}) AS c
         WHERE records.id = c.record_id"
    ))
    .bind(id)
    .bind(&listed)
    .execute(&mut *tx)
    .await?;
    set_item_state(&mut tx, id, &listed, PurgeItemState::Undone).await?;
    let done = ids.len() as i64;
    sqlx::query("UPDATE purges SET undone = undone + ? WHERE id = ?")
        .bind(done)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ChunkOutcome {
        done,
        refused: 0,
        through: Some(hi),
        held: started.elapsed(),
    })
}

/// Erase the payload, headers and stack trace of the listed records (`listed`, a JSON array
/// of ids) inside the caller's write transaction, zeroing the freed pages, and mark them
/// erased at `now`: by a purge's erase, or by retention (`by_retention`, which their pages
/// say). Their search entries are the caller's to change, in the same order of locks.
pub(crate) async fn erase_bodies(
    tx: &mut SqliteConnection,
    listed: &str,
    now: i64,
    by_retention: bool,
) -> Result<()> {
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE record_bodies SET value = NULL, headers = '[]', stacktrace = NULL
         WHERE record_id IN (SELECT value FROM json_each(?))",
    )
    .bind(listed)
    .execute(&mut *tx)
    .await?;
    sqlx::query("PRAGMA secure_delete = OFF")
        .execute(&mut *tx)
        .await?;
    // A body not stored yet (the disk was low) must never be read back from the broker
    // once erased.
    sqlx::query("DELETE FROM deferred_bodies WHERE record_id IN (SELECT value FROM json_each(?))")
        .bind(listed)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE records SET erased_at = ?1, erased_by_retention = ?3 WHERE id IN (SELECT value FROM json_each(?2))",
    )
    .bind(now)
    .bind(listed)
    .bind(by_retention)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Erase the next chunk of a purge after record id `after`: the payload, headers and stack
/// trace of its still purged records are deleted from the index file, and their search
/// entries replaced by entries without the payload's text. `search` is a connection to the
/// search file (`search::connect`); the search file's writer lock is taken first and
/// committed last, as `store::search` prescribes for removing entries, so no catch-up reads
/// a record between the two. The freed space of both files is zeroed (`secure_delete`), so
/// the erased bytes are gone from the files, not only unreachable, once the logs are
/// checkpointed.
///
/// The search side (reading the entries' text, the FTS5 deletes and inserts) is done before
/// the index's writer is taken, under the search file's lock only: inside the writer's turn
/// it held up the indexer for the whole of the FTS work. Nothing that changes what a held
/// record's entry is made from runs meanwhile (erase, reclaim and retention take the search
/// file's lock first), but an undo may restore some of the chunk's records (it does not need
/// the search file): so under the writer the chunk's held records are read again, and if
/// they changed, both transactions are rolled back and the chunk is done again.
///
/// The hold reported is the search file's, which covers the index's.
pub async fn erase_chunk(
    pool: &SqlitePool,
    search: &mut SqliteConnection,
    id: &str,
    after: i64,
    limit: i64,
    only: Option<&[i64]>,
    now: i64,
) -> Result<ChunkOutcome> {
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut *search)
        .await?;
    loop {
        let mut search_tx = super::search::begin_write(pool, search).await?;
        let started = Instant::now();
        let mark: i64 = sqlx::query_scalar("SELECT indexed_through FROM search_progress")
            .fetch_one(&mut *search_tx)
            .await?;
        // The mask the entries were made with: removing one takes the same text.
        let mask = super::search::mask(&mut search_tx).await?;
        let (ids, hi, changes) = {
            let mut conn = pool.acquire().await?;
            let Some((ids, hi)) = held_chunk(&mut conn, id, after, limit, only, false).await?
            else {
                search_tx.rollback().await?;
                return Ok(ChunkOutcome::default());
            };
            // The text the search entries were made from, read before it is erased: a
            // contentless FTS5 table removes an entry only given the same text.
            let changes: Vec<super::search::EntryChange> =
                super::search::entry_texts(&mut conn, &ids, mark, &mask)
                    .await?
                    .into_iter()
                    .map(|(id, old)| super::search::EntryChange::without_payload(id, old))
                    .collect();
            (ids, hi, changes)
        };
        super::search::change_entries(&mut search_tx, &changes, super::search::Scrub::Yes).await?;
        let mut tx = super::begin_write(pool).await?;
        if held_ids(&mut tx, id, after, hi, only, false).await? != ids {
            // Restored by an undo since they were read: the entries changed above are not
            // the ones to change.
            tx.rollback().await?;
            search_tx.rollback().await?;
            continue;
        }
        let listed = ids_json(&ids);
        erase_bodies(&mut tx, &listed, now, false).await?;
        let done = ids.len() as i64;
        sqlx::query("UPDATE purges SET erased = erased + ? WHERE id = ?")
            .bind(done)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        search_tx.commit().await?;
        return Ok(ChunkOutcome {
            done,
            refused: 0,
            through: Some(hi),
            held: started.elapsed(),
        });
    }
}

/// Record ids of a purge's items among `ids` that it still holds, and the others.
pub async fn split_held(pool: &SqlitePool, id: &str, ids: &[i64]) -> Result<(Vec<i64>, i64)> {
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT i.record_id FROM purge_items i JOIN records r ON r.id = i.record_id
         WHERE i.purge_id = ?1 AND i.state = 'purged' AND r.purge_id = ?1 AND r.erased_at IS NULL
           AND i.record_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(id)
    .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    .fetch_all(pool)
    .await?;
    let others = ids.len() as i64 - held.len() as i64;
    Ok((held, others))
}

/// One item of a purge, for a message's history and the purge's refusals.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PurgeEntry {
    /// Purge id.
    pub purge_id: String,
    /// Who purged.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// The item's state.
    pub state: PurgeItemState,
    /// The record's status before.
    pub prev_status: RecordStatus,
    /// Why refused.
    pub refusal: Option<String>,
    /// Confirmed, ms.
    pub at: Option<i64>,
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Generation.
    pub generation: i64,
    /// When the record's payload was erased, ms.
    pub erased_at: Option<i64>,
}

const ENTRY_SELECT: &str = "SELECT p.id AS purge_id, p.actor, p.reason, i.state, i.prev_status, i.reason AS refusal, p.confirmed_at AS at,
        r.topic, r.partition, r.\"offset\", r.generation, r.erased_at
     FROM purge_items i JOIN purges p ON p.id = i.purge_id JOIN records r ON r.id = i.record_id";

/// Every confirmed purge of one record, newest first.
pub async fn history(pool: &SqlitePool, record_id: i64) -> Result<Vec<PurgeEntry>> {
    Ok(sqlx::query_as(&format!(
        "{ENTRY_SELECT} WHERE i.record_id = ? AND p.status NOT IN ('building', 'preview') ORDER BY p.created_at DESC"
    ))
    .bind(record_id)
    .fetch_all(pool)
    .await?)
}

/// Refused items of a purge, first `limit`.
pub async fn refusals(pool: &SqlitePool, id: &str, limit: i64) -> Result<Vec<PurgeEntry>> {
    Ok(sqlx::query_as(&format!(
        "{ENTRY_SELECT} WHERE i.purge_id = ? AND i.state = 'refused' ORDER BY i.record_id LIMIT ?"
    ))
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Refused items of a purge: at preview and when applied.
pub async fn refused_count(pool: &SqlitePool, id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM purge_items WHERE purge_id = ? AND state = 'refused'",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

/// Records purged over all purges (not undone), for metrics.
pub async fn purged_total(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(SUM(purged), 0) FROM purges WHERE status NOT IN ('building', 'preview')",
    )
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_move_towards_the_hold_target_by_at_most_a_factor_of_two() {
        let mut sizer = ChunkSizer::items();
        let start = sizer.size();
        // Four times too long: halved, not quartered.
        sizer.held(start, CHUNK_HOLD * 4);
        assert_eq!(sizer.size(), start / 2);
        // A tenth of the target: doubled, not ten times.
        let half = sizer.size();
        sizer.held(half, CHUNK_HOLD / 10);
        assert_eq!(sizer.size(), half * 2);
        // On target: kept.
        let kept = sizer.size();
        sizer.held(kept, CHUNK_HOLD);
        assert_eq!(sizer.size(), kept);
    }

    #[test]
    fn chunks_stay_within_bounds_and_a_short_last_chunk_teaches_nothing() {
        let mut sizer = ChunkSizer::items();
        for _ in 0..40 {
            sizer.held(sizer.size(), Duration::from_secs(1));
        }
        assert_eq!(sizer.size(), ChunkSizer::items().min);
        for _ in 0..40 {
            sizer.held(sizer.size(), Duration::ZERO);
        }
        assert_eq!(sizer.size(), ChunkSizer::items().max);
        let before = sizer.size();
        sizer.held(3, Duration::from_secs(1));
        assert_eq!(sizer.size(), before);
    }
}
