//! The `deferred_bodies` table: records indexed while the index's file system was low on
//! space (below `--min-free-space`) keep their metadata and wait here for their body
//! (payload, headers, stack trace), which the backfill (`index::backfill`) reads again from
//! the broker once space is back. A record the broker no longer has by then keeps its mark,
//! as lost, with the reason its page shows.

use sqlx::{SqliteConnection, SqlitePool};

use super::codec::{self, Encoded};
use super::search::{self, EntryChange};
use crate::error::Result;

/// What a message's page, its JSON and its raw download say about a body not stored yet.
pub const DEFERRED_SENTENCE: &str = "payload not stored yet: the disk was low when it was indexed; it is read again from Kafka once space is freed";

/// Why a replay refuses a record whose body is not stored yet (no quote in it: it is
/// written into the preview's SQL).
pub const REPLAY_REFUSAL_DEFERRED: &str = "The payload of this message is not stored yet: the disk was low when it was indexed; it is read again from Kafka once space is freed, and can be replayed then.";

/// Why a replay refuses a record whose body the broker no longer had when read again.
pub const REPLAY_REFUSAL_LOST: &str = "The payload of this message was not stored (the disk was low when it was indexed) and the broker no longer had it when space was freed; it can be seen here but not replayed.";

/// Marks a record of the indexer's batch as deferred, inside the batch's transaction.
/// An upsert, not `INSERT OR REPLACE`: a replace deletes the old row without firing the
/// delete trigger that keeps `deferred_counts` (recursive triggers are off).
pub(crate) const MARK_SQL: &str =
    "INSERT INTO deferred_bodies (record_id, deferred_at) VALUES (?1, ?2)
     ON CONFLICT (record_id) DO UPDATE SET deferred_at = excluded.deferred_at, lost_at = NULL, lost_reason = NULL";

/// Why a record's body is not in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Not stored yet: it is read again from the broker once space is freed.
    Deferred,
    /// The broker no longer had it when it was read again: this sentence says why.
    Lost(String),
}

impl Missing {
    /// The sentence a page, the JSON and the raw download give.
    pub fn sentence(&self) -> &str {
        match self {
            Missing::Deferred => DEFERRED_SENTENCE,
            Missing::Lost(why) => why,
        }
    }

    /// Why a replay refuses the record.
    pub fn replay_refusal(&self) -> &'static str {
        match self {
            Missing::Deferred => REPLAY_REFUSAL_DEFERRED,
            Missing::Lost(_) => REPLAY_REFUSAL_LOST,
        }
    }

    /// From the table's columns (`lost_reason` of a row that has one).
    pub(crate) fn of_row(deferred: bool, lost_reason: Option<String>) -> Option<Self> {
        match (deferred, lost_reason) {
            (false, _) => None,
            (true, None) => Some(Missing::Deferred),
            (true, Some(why)) => Some(Missing::Lost(why)),
        }
    }
}

/// The sentence of a record that the broker no longer had when its body was read again.
pub fn lost_sentence(cause: &str) -> String {
    format!("payload not stored: the disk was low when it was indexed, and when space was freed {cause}; only its metadata is kept")
}

/// How many bodies wait, and how many were lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeferredCounts {
    /// Bodies still to be read again from the broker.
    pub pending: i64,
    /// Bodies the broker no longer had.
    pub lost: i64,
}

/// Both counts (kept by the table's triggers, migration 0016: one row read).
pub async fn counts(pool: &SqlitePool) -> Result<DeferredCounts> {
    let (pending, lost): (i64, i64) =
        sqlx::query_as("SELECT pending, lost FROM deferred_counts WHERE only = 1")
            .fetch_one(pool)
            .await?;
    Ok(DeferredCounts { pending, lost })
}

/// One record whose body is to be read again, with what identifies it on the broker.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Waiting {
    /// records.id.
    pub id: i64,
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Generation of the partition's log it was indexed from.
    pub generation: i64,
    /// Offset.
    pub offset: i64,
    /// Key, to check that the record read again is the same record.
    pub key: Option<Vec<u8>>,
    /// Its timestamp, when it had one (same check).
    pub ts: Option<i64>,
}

/// Up to `limit` records still waiting for their body, with ids above `after`, in id order
/// (the mark's primary key: no sort however many wait; within a partition ids follow
/// offsets). Erased records are not among them (an erase removes the mark: what was erased
/// is never read back).
pub async fn waiting(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<Waiting>> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.topic, r.partition, r.generation, r.\"offset\", r.key,
                CASE WHEN r.timestamp_type IS NULL THEN NULL ELSE r.ts END AS ts
         FROM deferred_bodies d JOIN records r ON r.id = d.record_id
         WHERE d.record_id > ? AND d.lost_at IS NULL AND r.erased_at IS NULL
         ORDER BY d.record_id LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A body read again from the broker, as the indexer would have stored it.
#[derive(Debug, Clone)]
pub struct Body {
    /// records.id.
    pub id: i64,
    /// The payload, original bytes.
    pub value: Option<Vec<u8>>,
    /// Headers as stored: JSON `[[name, base64 | null], ...]`.
    pub headers_json: String,
    /// The stack trace from the headers.
    pub stacktrace: Option<String>,
}

/// What one [`fill`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FillOutcome {
    /// Bodies written.
    pub stored: usize,
    /// Records marked lost.
    pub lost: usize,
}

/// Store bodies read again and mark records lost, in one transaction of the index (and one
/// of the search file, for records the search index already holds without their payload
/// text). `search` is a connection to the search file (`search::connect`); its writer lock
/// is taken first and committed last, as for every change of an entry (see `store::search`).
/// A record no longer waiting (erased, removed, filled by another pass) is left as it is.
pub async fn fill(
    pool: &SqlitePool,
    search_conn: &mut SqliteConnection,
    bodies: &[Body],
    lost: &[(i64, String)],
    now: i64,
) -> Result<FillOutcome> {
    let above = codec::compress_above(pool).await?;
    let values: Vec<Encoded> = bodies
        .iter()
        .map(|b| codec::encode(b.value.as_deref(), above))
        .collect();
    let mut search_tx = search::begin_write(pool, search_conn).await?;
    let mark: i64 = sqlx::query_scalar("SELECT indexed_through FROM search_progress")
        .fetch_one(&mut *search_tx)
        .await?;
    let mask = search::mask(&mut search_tx).await?;
    let mut tx = super::begin_write(pool).await?;
    let ids: Vec<i64> = bodies.iter().map(|b| b.id).collect();
    let still: Vec<i64> = sqlx::query_scalar(
        "SELECT d.record_id FROM deferred_bodies d JOIN records r ON r.id = d.record_id
         WHERE d.lost_at IS NULL AND r.erased_at IS NULL AND d.record_id IN (SELECT value FROM json_each(?))",
    )
    .bind(ids_json(&ids))
    .fetch_all(&mut *tx)
    .await?;
    let still: std::collections::HashSet<i64> = still.into_iter().collect();
    let filled: Vec<i64> = ids.iter().copied().filter(|i| still.contains(i)).collect();
    // The entries as the catch-up made them, without payload text: a contentless FTS5 table
    // removes an entry only given the same text.
    let mut old = search::entry_texts(&mut tx, &filled, mark, &mask).await?;
    old.sort_by_key(|(id, _)| *id);
    let mut outcome = FillOutcome::default();
    for (b, value) in bodies.iter().zip(&values) {
        if !still.contains(&b.id) {
            continue;
        }
        sqlx::query(
            "UPDATE record_bodies SET value = ?2, headers = ?3, stacktrace = ?4, codec = ?5 WHERE record_id = ?1",
        )
        .bind(b.id)
        .bind(value.bytes(b.value.as_deref()))
        .bind(&b.headers_json)
        .bind(b.stacktrace.as_deref())
        .bind(value.codec.as_column())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deferred_bodies WHERE record_id = ?")
            .bind(b.id)
            .execute(&mut *tx)
            .await?;
        outcome.stored += 1;
    }
    for (id, why) in lost {
        let n = sqlx::query(
            "UPDATE deferred_bodies SET lost_at = ?2, lost_reason = ?3 WHERE record_id = ?1 AND lost_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(why)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        outcome.lost += n as usize;
    }
    // Made from the rows as they are now, as the catch-up would make them.
    let mut new = search::entry_texts(&mut tx, &filled, mark, &mask).await?;
    new.sort_by_key(|(id, _)| *id);
    let changes: Vec<EntryChange> = old
        .into_iter()
        .zip(new)
        .map(|((id, old), (_, new))| EntryChange {
            id,
            old,
            new: Some(new),
        })
        .collect();
    // The old entries hold no payload text, only what the new ones hold again: nothing to
    // scrub.
    search::change_entries(&mut search_tx, &changes, search::Scrub::No).await?;
    tx.commit().await?;
    search_tx.commit().await?;
    Ok(outcome)
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_as_deferred_until_the_broker_is_found_without_the_record() {
        assert_eq!(Missing::of_row(false, None), None);
        assert_eq!(Missing::of_row(true, None), Some(Missing::Deferred));
        let lost = Missing::of_row(true, Some(lost_sentence("the broker no longer had it")));
        assert_eq!(
            lost.as_ref().map(Missing::sentence),
            Some("payload not stored: the disk was low when it was indexed, and when space was freed the broker no longer had it; only its metadata is kept")
        );
        assert_eq!(lost.unwrap().replay_refusal(), REPLAY_REFUSAL_LOST);
        assert_eq!(Missing::Deferred.sentence(), DEFERRED_SENTENCE);
        // Written into the preview's SQL as literals.
        assert!(!REPLAY_REFUSAL_DEFERRED.contains('\'') && !REPLAY_REFUSAL_LOST.contains('\''));
    }
}
