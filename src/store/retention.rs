//! Retention (`--retain`): the SQL of the background cleanup that keeps the index bounded
//! (the runner is `crate::retention`). Three sweeps, each in chunks of a write transaction of
//! its own, sized by time like a purge's ([`super::purges::ChunkSizer`]):
//! - **resolved records past their age** are removed, rows, bodies, counters and search
//!   entries ([`remove_chunk`] with [`Sweep::Resolved`]);
//! - **payloads past their age** are removed: payload, headers and stack trace, as an erase
//!   does; the row keeps its coordinates, error, status and history ([`payload_chunk`]);
//! - **max-records**: the oldest resolved records beyond the cap, then, only while the index
//!   is still above it, the oldest records of any status ([`Sweep::CapResolved`],
//!   [`Sweep::CapAny`]); what the second removes before it was resolved is counted per topic
//!   in `retention_removed` for the overview.
//!
//! A record is *resolved* here ([`RESOLVED`]) when it is `replayed`, none of its replays came
//! back to a DLQ and every replay of it was seen consumed; `purged`; or `expired`. Its age is
//! counted from [`RESOLVED_AT`]: the last consumption of a replay, the confirmation of its
//! purge, and for an expired record the time it was indexed (the index does not store when
//! the broker dropped it). A payload's age is counted from the time its record was indexed.
//! A record that an unfinished replay job or purge still holds ([`HELD`]) is never touched.
//!
//! Resumable: every chunk commits what it removed, its counters and (for payloads) the cursor
//! in one transaction, so a process killed at any point goes on after a restart without
//! removing or counting anything twice. The search file is kept in step through
//! [`super::search::change_entries`], with the lock order of `store::search`: the search
//! file's writer lock first, then the index's, committed in the other order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection, SqlitePool};

use super::search::{self, EntryChange};
use crate::error::Result;

/// The condition, on a record row named `r`, that it is resolved for retention.
pub const RESOLVED: &str = "((r.status = 'replayed' AND r.failed_again_count = 0
       AND EXISTS (SELECT 1 FROM replay_items i WHERE i.record_id = r.id AND i.state = 'sent' AND i.consumed_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM replay_items i WHERE i.record_id = r.id AND i.state = 'sent' AND i.consumed_at IS NULL))
     OR r.status IN ('purged', 'expired'))";

/// When a resolved record (row `r`) became resolved, ms; NULL for any other.
pub const RESOLVED_AT: &str = "(CASE r.status
       WHEN 'purged' THEN (SELECT p.confirmed_at FROM purges p WHERE p.id = r.purge_id)
       WHEN 'expired' THEN r.indexed_at
       WHEN 'replayed' THEN (SELECT MAX(i.consumed_at) FROM replay_items i WHERE i.record_id = r.id AND i.state = 'sent')
     END)";

/// The condition, on a record row named `r`, that an unfinished replay job still has to send
/// it or an unfinished purge still has to apply to it.
pub const HELD: &str = "(EXISTS (SELECT 1 FROM replay_items o JOIN replay_jobs j ON j.id = o.job_id
       WHERE o.record_id = r.id AND o.state = 'pending' AND j.status IN ('preview', 'queued', 'running', 'paused'))
     OR EXISTS (SELECT 1 FROM purge_items pi JOIN purges p ON p.id = pi.purge_id
       WHERE pi.record_id = r.id AND pi.state = 'pending' AND p.status IN ('building', 'preview', 'applying')))";

/// Where a sweep stands: the (ts, id) of the last record it looked at, oldest first.
pub type Cursor = (i64, i64);

/// Where every sweep starts.
pub const START: Cursor = (i64::MIN, i64::MIN);

/// Which records a chunk of [`remove_chunk`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Resolved records that became resolved before this time, ms.
    Resolved {
        /// Records resolved before it are removed.
        cutoff: i64,
    },
    /// The oldest resolved records, while the index holds more than `cap`.
    CapResolved {
        /// --retain max-records.
        cap: i64,
    },
    /// The oldest records of any status, while the index holds more than `cap`.
    CapAny {
        /// --retain max-records.
        cap: i64,
    },
}

/// What one chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Records looked at.
    pub scanned: i64,
    /// Records removed, or payloads removed.
    pub removed: i64,
    /// Of those, records that were not resolved (max-records only).
    pub unresolved: i64,
    /// Where the next chunk starts; None when the sweep is done.
    pub next: Option<Cursor>,
    /// How long the chunk held the writers: from its turn on the index to the commit of its
    /// search-file transaction.
    pub held: Duration,
}

/// (id, ts) of up to `limit` records after `after`, oldest first: the resolved ones (by
/// status, through the status index) with a timestamp below `ts_below`, or every one.
async fn scan(
    pool: &SqlitePool,
    after: Cursor,
    resolved_only: bool,
    ts_below: i64,
    limit: i64,
) -> Result<Vec<(i64, i64)>> {
    let sql = if resolved_only {
        // One index walk per resolved status, merged: the oldest resolved records of all.
        let one = |status: &str| {
            format!(
                "SELECT * FROM (SELECT id, ts FROM records WHERE status = '{status}' AND ts < ?3
                   AND (ts, id) > (?1, ?2) ORDER BY ts, id LIMIT ?4)"
            )
        };
        format!(
            "SELECT id, ts FROM ({} UNION ALL {} UNION ALL {}) ORDER BY ts, id LIMIT ?4",
            one("purged"),
            one("expired"),
            one("replayed")
        )
    } else {
        "SELECT id, ts FROM records WHERE ts < ?3 AND (ts, id) > (?1, ?2) ORDER BY ts, id LIMIT ?4"
            .to_string()
    };
    Ok(sqlx::query_as(&sql)
        .bind(after.0)
        .bind(after.1)
        .bind(ts_below)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Records in the index, from the per-topic counters (no scan of `records`).
async fn total(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(SUM(count), 0) FROM topic_status_counts")
            .fetch_one(conn)
            .await?,
    )
}

/// Take the search file's writer lock and read its mark; see the module's notes.
async fn begin_search(
    search: &mut SqliteConnection,
) -> Result<(sqlx::Transaction<'_, sqlx::Sqlite>, i64)> {
    let mut stx = search.begin_with("BEGIN IMMEDIATE").await?;
    let mark: i64 = sqlx::query_scalar("SELECT indexed_through FROM search_progress")
        .fetch_one(&mut *stx)
        .await?;
    Ok((stx, mark))
}

/// Remove the next chunk of a sweep: up to `limit` records after `after` are looked at, and
/// those the sweep takes (never one that [`HELD`]) are removed with their bodies, counters and
/// search entries. `search` is a connection to the search file (`search::connect`).
pub async fn remove_chunk(
    pool: &SqlitePool,
    search: &mut SqliteConnection,
    sweep: Sweep,
    after: Cursor,
    limit: i64,
    now: i64,
) -> Result<Chunk> {
    let (resolved_only, ts_below, cap) = match sweep {
        Sweep::Resolved { cutoff } => (true, cutoff, None),
        Sweep::CapResolved { cap } => (true, i64::MAX, Some(cap)),
        Sweep::CapAny { cap } => (false, i64::MAX, Some(cap)),
    };
    let scanned = scan(pool, after, resolved_only, ts_below, limit).await?;
    let Some(&(last_id, last_ts)) = scanned.last() else {
        return Ok(Chunk::default());
    };
    let next = Some((last_ts, last_id));
    let scanned_ids: Vec<i64> = scanned.iter().map(|r| r.0).collect();
    let (mut stx, mark) = begin_search(search).await?;
    let mut tx = super::begin_write(pool).await?;
    let started = Instant::now();
    let need = match cap {
        Some(cap) => total(&mut tx).await? - cap,
        None => i64::MAX,
    };
    if need <= 0 {
        tx.rollback().await?;
        stx.rollback().await?;
        return Ok(Chunk {
            scanned: scanned.len() as i64,
            ..Chunk::default()
        });
    }
    // Checked again under the writer: a record may have changed since the scan.
    let condition = match sweep {
        Sweep::Resolved { cutoff } => format!("{RESOLVED} AND {RESOLVED_AT} < {cutoff}"),
        Sweep::CapResolved { .. } => RESOLVED.to_string(),
        Sweep::CapAny { .. } => "1".to_string(),
    };
    let mut doomed: Vec<(i64, String, bool)> = sqlx::query_as(&format!(
        "SELECT r.id, r.topic, {RESOLVED} FROM records r
         WHERE r.id IN (SELECT value FROM json_each(?1)) AND NOT {HELD} AND {condition}
         ORDER BY r.ts, r.id"
    ))
    .bind(ids_json(&scanned_ids))
    .fetch_all(&mut *tx)
    .await?;
    let done = usize::try_from(need).is_ok_and(|n| n <= doomed.len());
    doomed.truncate(usize::try_from(need).unwrap_or(usize::MAX));
    let ids: Vec<i64> = doomed.iter().map(|d| d.0).collect();
    let changes: Vec<EntryChange> =
        search::entry_texts(&mut tx, &ids, mark, &search::mask(&mut stx).await?)
            .await?
            .into_iter()
            .map(|(id, old)| EntryChange::removed(id, old))
            .collect();
    delete_rows(&mut tx, &ids_json(&ids)).await?;
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut unresolved = 0;
    for (_, topic, resolved) in &doomed {
        let kind = match (sweep, resolved) {
            (Sweep::Resolved { .. }, _) => "resolved",
            (_, true) => "capped_resolved",
            (_, false) => {
                unresolved += 1;
                "capped_unresolved"
            }
        };
        *counts.entry((topic, kind)).or_default() += 1;
    }
    count_removed(&mut tx, &counts, now).await?;
    tx.commit().await?;
    search::change_entries(&mut stx, &changes, search::Scrub::No).await?;
    stx.commit().await?;
    // The search file's lock is held from before the index's turn to here, and the search
    // catch-up waits behind it: its hold, not the index's alone, sizes the next chunk.
    let held = started.elapsed();
    Ok(Chunk {
        scanned: scanned.len() as i64,
        removed: ids.len() as i64,
        unresolved,
        next: if done { None } else { next },
        held,
    })
}

/// Take listed records (`ids`, a JSON array) out of every counter, then delete their bodies
/// and rows, in the caller's write transaction. Their search entries are the caller's (see
/// [`search::change_entries`]).
async fn delete_rows(tx: &mut SqliteConnection, ids: &str) -> Result<()> {
    const LISTED: &str = "FROM records WHERE id IN (SELECT value FROM json_each(?1))";
    // Floor division by an hour, as `div_euclid` counted them.
    const HOUR: &str = "((ts - (((ts % 3600000) + 3600000) % 3600000)) / 3600000)";
    let statements = [
        format!(
            "INSERT INTO topic_status_counts (topic, status, count)
             SELECT topic, status, -COUNT(*) {LISTED} GROUP BY topic, status
             ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count"
        ),
        format!(
            "INSERT INTO topic_hourly (topic, hour, count)
             SELECT topic, {HOUR}, -COUNT(*) {LISTED} GROUP BY 1, 2
             ON CONFLICT (topic, hour) DO UPDATE SET count = count + excluded.count"
        ),
        format!(
            "INSERT INTO topic_error_classes (topic, error_class, count)
             SELECT topic, error_class, -COUNT(*) {LISTED} AND error_class IS NOT NULL GROUP BY 1, 2
             ON CONFLICT (topic, error_class) DO UPDATE SET count = count + excluded.count"
        ),
        format!(
            "INSERT INTO group_hourly (fingerprint, hour, count)
             SELECT fingerprint, {HOUR}, -COUNT(*) {LISTED} GROUP BY 1, 2
             ON CONFLICT (fingerprint, hour) DO UPDATE SET count = count + excluded.count"
        ),
        format!(
            "UPDATE failure_groups SET count = count - c.n, purged = purged - c.p
             FROM (SELECT fingerprint, COUNT(*) AS n, SUM(status = 'purged') AS p {LISTED} GROUP BY fingerprint) AS c
             WHERE failure_groups.fingerprint = c.fingerprint"
        ),
        format!(
            "DELETE FROM failure_groups WHERE count <= 0 AND fingerprint IN (SELECT fingerprint {LISTED})"
        ),
        format!(
            "DELETE FROM group_hourly WHERE count <= 0 AND fingerprint IN (SELECT fingerprint {LISTED})"
        ),
        format!("DELETE FROM topic_hourly WHERE count <= 0 AND topic IN (SELECT topic {LISTED})"),
        format!(
            "DELETE FROM topic_error_classes WHERE count <= 0 AND topic IN (SELECT topic {LISTED})"
        ),
        "DELETE FROM record_bodies WHERE record_id IN (SELECT value FROM json_each(?1))".into(),
        "DELETE FROM deferred_bodies WHERE record_id IN (SELECT value FROM json_each(?1))".into(),
        format!("DELETE {LISTED}"),
    ];
    for sql in statements {
        sqlx::query(&sql).bind(ids).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Add what a chunk removed to `retention_removed`, per (topic, kind).
async fn count_removed(
    tx: &mut SqliteConnection,
    counts: &BTreeMap<(&str, &str), i64>,
    now: i64,
) -> Result<()> {
    for ((topic, kind), n) in counts {
        sqlx::query(
            "INSERT INTO retention_removed (topic, kind, count, first_at, last_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (topic, kind) DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at",
        )
        .bind(topic)
        .bind(kind)
        .bind(n)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Remove the payloads of the next chunk of records indexed before `cutoff`, in record id
/// order from the stored cursor: payload, headers and stack trace go (the freed space zeroed,
/// as an erase does), the row is marked erased by retention, its search entry loses the
/// payload's text, and the cursor moves past the chunk, in one transaction. Records already
/// erased, or held by an unfinished job or purge, are passed over and keep their payload.
pub async fn payload_chunk(
    pool: &SqlitePool,
    search: &mut SqliteConnection,
    cutoff: i64,
    limit: i64,
    now: i64,
) -> Result<Chunk> {
    let (mut stx, mark) = begin_search(search).await?;
    let mut tx = super::begin_write(pool).await?;
    let started = Instant::now();
    let through: i64 = sqlx::query_scalar("SELECT payloads_through FROM retention_progress")
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<(i64, String, bool, bool)> = sqlx::query_as(&format!(
        "SELECT r.id, r.topic, r.indexed_at < ?2, r.erased_at IS NULL AND NOT {HELD}
         FROM records r WHERE r.id > ?1 ORDER BY r.id LIMIT ?3"
    ))
    .bind(through)
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    // Ids follow the time of indexing: the chunk ends before the first record too young.
    let old: Vec<&(i64, String, bool, bool)> = rows.iter().take_while(|r| r.2).collect();
    let Some(last) = old.last().map(|r| r.0) else {
        tx.rollback().await?;
        stx.rollback().await?;
        return Ok(Chunk::default());
    };
    let todo: Vec<i64> = old.iter().filter(|r| r.3).map(|r| r.0).collect();
    let listed = ids_json(&todo);
    let changes: Vec<EntryChange> =
        search::entry_texts(&mut tx, &todo, mark, &search::mask(&mut stx).await?)
            .await?
            .into_iter()
            .map(|(id, old)| EntryChange::without_payload(id, old))
            .collect();
    super::purges::erase_bodies(&mut tx, &listed, now, true).await?;
    sqlx::query("UPDATE retention_progress SET payloads_through = ?")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in old.iter().filter(|r| r.3) {
        *counts.entry((&r.1, "payload")).or_default() += 1;
    }
    count_removed(&mut tx, &counts, now).await?;
    tx.commit().await?;
    search::change_entries(&mut stx, &changes, search::Scrub::Yes).await?;
    stx.commit().await?;
    // The search file's lock is held from before the index's turn to here, and the search
    // catch-up waits behind it: its hold, not the index's alone, sizes the next chunk.
    let held = started.elapsed();
    Ok(Chunk {
        scanned: old.len() as i64,
        removed: todo.len() as i64,
        unresolved: 0,
        next: (old.len() == rows.len() && !rows.is_empty()).then_some((0, last)),
        held,
    })
}

/// What retention removed from one DLQ topic, of one kind.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Removed {
    /// DLQ topic.
    pub topic: String,
    /// resolved | payload | capped_resolved | capped_unresolved.
    pub kind: String,
    /// Records (or payloads) removed.
    pub count: i64,
    /// First removal, ms.
    pub first_at: i64,
    /// Last removal, ms.
    pub last_at: i64,
}

/// Everything retention removed, per topic and kind, by topic.
pub async fn removed(pool: &SqlitePool) -> Result<Vec<Removed>> {
    Ok(sqlx::query_as(
        "SELECT topic, kind, count, first_at, last_at FROM retention_removed ORDER BY topic, kind",
    )
    .fetch_all(pool)
    .await?)
}
