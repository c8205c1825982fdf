//! The `records` table and its search index: batch writes from the indexer, filtered
//! keyset-paginated reads for pages and the API.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::codec::{self, Encoded};
use super::positions::{self, Position};
use super::raw::{with_handle, Statement, STATEMENTS_PER_HOLD};
use super::search;
pub use super::selection::RecordId;
use super::selection::{push_filter, push_filter_conditions};
use super::{deferred, groups, outcomes, stats};
use crate::error::Result;
use crate::filter::{fts_expression, MessageFilter, MessageQuery, Page};
use crate::index::normalise::ReplayOrigin;
use crate::index::record::NewRecord;
use crate::states::RecordStatus;

/// The columns of `records` the indexer writes, in `bind_record`'s order.
const RECORD_COLUMNS: &str = "topic, partition, generation, \"offset\", ts, timestamp_type, indexed_at, key, value_size, convention, origin_topic, origin_partition, origin_offset, origin_timestamp, consumer_group, error_class, error_message, attempts, problems, fingerprint, status, lineage_replays, failed_again_count";

/// How many parameters `bind_record` binds.
const RECORD_PARAMS: usize = 23;

/// A new record's body row, keyed by the id its `records` row was given. It replaces a body
/// left behind under the same id (whoever deletes records deletes their bodies too, but a
/// leftover must not stop the indexer).
const BODY_INSERT_SQL: &str =
    "INSERT OR REPLACE INTO record_bodies (record_id, value, headers, stacktrace, codec) VALUES (?1, ?2, ?3, ?4, ?5)";

/// What a batch write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records newly stored.
    pub inserted: usize,
    /// Records already in the index (re-read after a restart or a new assignment) and skipped.
    pub already_indexed: usize,
}

/// Bind one record to the parameters of `INSERT ... (RECORD_COLUMNS) VALUES (?1, ...)`.
fn bind_record<'a>(s: &mut Statement<'a>, r: &'a NewRecord) -> Result<()> {
    let n = &r.normalised;
    s.text(1, Some(&r.topic))?;
    s.int(2, r.partition.into())?;
    s.int(3, r.generation)?;
    s.int(4, r.offset)?;
    s.int(5, r.ts)?;
    s.text(6, r.timestamp_type)?;
    s.int(7, r.indexed_at)?;
    s.blob(8, r.key.as_deref())?;
    s.int(9, r.value.as_ref().map_or(0, |v| v.len() as i64))?;
    s.text(10, Some(n.convention.as_str()))?;
    s.text(11, n.origin_topic.as_deref())?;
    s.opt_int(12, n.origin_partition.map(i64::from))?;
    s.opt_int(13, n.origin_offset)?;
    s.opt_int(14, n.origin_timestamp)?;
    s.text(15, n.consumer_group.as_deref())?;
    s.text(16, n.error_class.as_deref())?;
    s.text(17, n.error_message.as_deref())?;
    s.opt_int(18, n.attempts)?;
    let problems = (!n.problems.is_empty()).then(|| n.problems.join("\n"));
    s.text_copy(19, problems.as_deref())?;
    s.text(20, Some(&r.fingerprint))?;
    s.text(21, Some(RecordStatus::New.as_str()))?;
    // Every replay of a lineage that is back in a DLQ failed again.
    s.int(22, r.lineage_replays())?;
    s.int(23, r.lineage_replays())?;
    Ok(())
}

/// Bind a record's body to `BODY_INSERT_SQL` for the row id its record got, with its
/// payload as `codec::encode` made it.
fn bind_body<'a>(
    s: &mut Statement<'a>,
    id: i64,
    r: &'a NewRecord,
    value: &'a Encoded,
) -> Result<()> {
    s.int(1, id)?;
    s.blob(2, value.bytes(r.value.as_deref()))?;
    s.text(3, Some(&r.headers_json))?;
    s.text(4, r.normalised.stacktrace.as_deref())?;
    s.int(5, value.codec.as_column())?;
    Ok(())
}

/// Bind the body row of a record whose body is deferred: no payload, no headers, no stack
/// trace, as an erased record's (the pages read `deferred_bodies` for why).
fn bind_deferred_body(s: &mut Statement<'_>, id: i64) -> Result<()> {
    s.int(1, id)?;
    s.blob(2, None)?;
    s.text(3, Some("[]"))?;
    s.text(4, None)?;
    s.int(5, codec::Codec::Plain.as_column())?;
    Ok(())
}

/// Store a batch of records and advance partition positions in one transaction: either
/// all of it is durable or none of it is. Records already present (same topic, partition,
/// offset) are skipped, so re-reading after a crash never duplicates a row.
pub async fn insert_batch(
    pool: &SqlitePool,
    batch: &[NewRecord],
    advance_to: &[Position],
    now: i64,
) -> Result<BatchOutcome> {
    insert_batch_deferring(pool, batch, advance_to, now, false).await
}

/// [`insert_batch`], storing the records' bodies (payload, headers, stack trace) only when
/// `defer_bodies` is false. With it, each new record gets an empty body row and a mark in
/// `deferred_bodies` (see `store::deferred`), in the same transaction as its row: the index
/// is low on space, and the metadata (coordinates, the fields derived from the headers,
/// status, counts) is what keeps the index whole; the bodies are read again from the broker
/// once space is back.
pub async fn insert_batch_deferring(
    pool: &SqlitePool,
    batch: &[NewRecord],
    advance_to: &[Position],
    now: i64,
    defer_bodies: bool,
) -> Result<BatchOutcome> {
    let params = (1..=RECORD_PARAMS)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert_sql = format!("INSERT OR IGNORE INTO records ({RECORD_COLUMNS}) VALUES ({params})");
    // Compressed before the write lock is taken, so that no other writer waits on zstd.
    let above = codec::compress_above(pool).await?;
    let values: Vec<Encoded> = if defer_bodies {
        Vec::new()
    } else {
        batch
            .iter()
            .map(|r| codec::encode(r.value.as_deref(), above))
            .collect()
    };
    let mut tx = super::begin_write(pool).await?;
    // The search index is filled behind this (`index::search::run`), in its own file, for ids above
    // its mark only, so no record may get an id at or below the mark. SQLite gives a new row
    // the newest id plus one, which is above the mark unless the newest rows were deleted
    // after being made searchable; then the first new row is given the id after the mark
    // explicitly, and the rows after it follow on. (The alternative, writing search entries
    // for such rows here, would make this transaction write the search file too.) The mark
    // is read through the attached search file; it can only grow meanwhile, and only up to
    // ids already stored, which stay below the ids given here.
    let search_mark = search::indexed_through(&mut tx).await?;
    let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM records")
        .fetch_one(&mut *tx)
        .await?;
    let mut first_id = (newest < search_mark).then_some(search_mark + 1);
    // Lowered again before the commit. A batch that fails on the way leaves the connection
    // with the larger cache until its next batch.
    super::batch_cache(&mut tx, true).await?;
    let insert_at_sql = format!(
        "INSERT OR IGNORE INTO records (id, {RECORD_COLUMNS}) VALUES (?{}, {params})",
        RECORD_PARAMS + 1
    );
    // (row id, index in `batch`) of every row this batch added.
    let mut inserted: Vec<(i64, usize)> = Vec::with_capacity(batch.len());
    for (chunk_no, chunk) in batch.chunks(STATEMENTS_PER_HOLD).enumerate() {
        with_handle(&mut tx, |db| {
            let mut row = db.prepare(&insert_sql)?;
            let mut row_at = match first_id {
                Some(_) => Some(db.prepare(&insert_at_sql)?),
                None => None,
            };
            let mut body = db.prepare(BODY_INSERT_SQL)?;
            let mut mark = match defer_bodies {
                true => Some(db.prepare(deferred::MARK_SQL)?),
                false => None,
            };
            for (j, r) in chunk.iter().enumerate() {
                let stored = match (first_id, row_at.as_mut()) {
                    (Some(id), Some(s)) => {
                        bind_record(s, r)?;
                        s.int(RECORD_PARAMS as i32 + 1, id)?;
                        s.execute()? == 1
                    }
                    _ => {
                        bind_record(&mut row, r)?;
                        row.execute()? == 1
                    }
                };
                // A row that is already stored is ignored and changes nothing; otherwise the
                // id just assigned is this record's, whatever ids earlier rows got.
                if stored {
                    let id = match first_id.take() {
                        Some(id) => id,
                        None => db.last_insert_rowid(),
                    };
                    let at = chunk_no * STATEMENTS_PER_HOLD + j;
                    match (values.get(at), mark.as_mut()) {
                        (Some(value), _) => bind_body(&mut body, id, r, value)?,
                        (None, Some(mark)) => {
                            bind_deferred_body(&mut body, id)?;
                            mark.int(1, id)?;
                            mark.int(2, now)?;
                            mark.execute()?;
                        }
                        (None, None) => bind_deferred_body(&mut body, id)?,
                    }
                    body.execute()?;
                    inserted.push((id, at));
                }
            }
            Ok(())
        })
        .await?;
        tokio::task::yield_now().await;
    }
    let new_rows: Vec<&NewRecord> = inserted.iter().map(|&(_, i)| &batch[i]).collect();
    with_handle(&mut tx, |db| {
        stats::count_new_records(db, &new_rows)?;
        groups::count_new_records(db, &new_rows)
    })
    .await?;
    let returned: Vec<(i64, &ReplayOrigin)> = inserted
        .iter()
        .filter_map(|&(id, i)| batch[i].replay_origin.as_ref().map(|o| (id, o)))
        .collect();
    outcomes::link_returned(&mut tx, &returned).await?;
    let unlabelled: Vec<outcomes::Unlabelled<'_>> = inserted
        .iter()
        .map(|&(id, i)| (id, &batch[i]))
        .filter(|(_, r)| r.replay_origin.is_none())
        .filter_map(|(id, r)| {
            r.key.as_deref().map(|key| outcomes::Unlabelled {
                id,
                topic: &r.topic,
                key,
            })
        })
        .collect();
    outcomes::link_probable(&mut tx, &unlabelled, now).await?;
    positions::advance(&mut tx, advance_to, now).await?;
    super::batch_cache(&mut tx, false).await?;
    tx.commit().await?;
    Ok(BatchOutcome {
        inserted: inserted.len(),
        already_indexed: batch.len() - inserted.len(),
    })
}

const SUMMARY_COLUMNS: &str = "id, topic, partition, generation, \"offset\", ts, key, status, origin_topic, origin_partition, origin_offset, origin_timestamp, consumer_group, error_class, substr(error_message, 1, 400) AS error_message, convention, replay_count, value_size, fingerprint, failed_again_count, (SELECT CASE codec WHEN 0 THEN substr(value, 1, 160) ELSE value END FROM record_bodies WHERE record_id = records.id) AS value_head, (SELECT codec FROM record_bodies WHERE record_id = records.id) AS value_codec, purge_id, erased_at, erased_by_retention, (SELECT actor FROM purges WHERE purges.id = records.purge_id) AS purge_actor, (SELECT confirmed_at FROM purges WHERE purges.id = records.purge_id) AS purge_at, (SELECT reason FROM purges WHERE purges.id = records.purge_id) AS purge_reason";

/// One row of a listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordSummary {
    /// Row id (keyset tie-breaker).
    pub id: i64,
    /// DLQ topic.
    pub topic: String,
    /// DLQ partition.
    pub partition: i32,
    /// Generation of the partition's log.
    pub generation: i64,
    /// DLQ offset.
    pub offset: i64,
    /// Record time, ms.
    pub ts: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Lifecycle status.
    pub status: RecordStatus,
    /// Origin topic from the headers.
    pub origin_topic: Option<String>,
    /// Origin partition.
    pub origin_partition: Option<i32>,
    /// Origin offset.
    pub origin_offset: Option<i64>,
    /// Origin timestamp, ms.
    pub origin_timestamp: Option<i64>,
    /// Consumer group that failed.
    pub consumer_group: Option<String>,
    /// Error class.
    pub error_class: Option<String>,
    /// Error message (first 400 characters).
    pub error_message: Option<String>,
    /// Header convention that matched.
    pub convention: String,
    /// Times replayed.
    pub replay_count: i64,
    /// Payload size in bytes.
    pub value_size: i64,
    /// Failure group.
    pub fingerprint: String,
    /// Replays of it, or of its lineage, that came back to a DLQ.
    pub failed_again_count: i64,
    /// The first bytes of the payload, for a preview where there is no error message
    /// (decoded by `finish_heads`; as stored until then).
    pub value_head: Option<Vec<u8>>,
    /// How `value_head` was stored (`record_bodies.codec`; None without a body row).
    pub value_codec: Option<i64>,
    /// The purge that holds it (status `purged`).
    pub purge_id: Option<String>,
    /// When its payload, headers and stack trace were erased, ms.
    pub erased_at: Option<i64>,
    /// Whether retention erased them (`--retain payloads`), not an operator.
    pub erased_by_retention: bool,
    /// Who purged it.
    pub purge_actor: Option<String>,
    /// When it was purged, ms.
    pub purge_at: Option<i64>,
    /// Why it was purged.
    pub purge_reason: Option<String>,
}

/// Everything stored about one record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordDetail {
    /// The listing fields.
    #[sqlx(flatten)]
    pub summary: RecordSummary,
    /// Full error message.
    pub full_error_message: Option<String>,
    /// Stack trace.
    pub stacktrace: Option<String>,
    /// Attempts made before the record was dead-lettered.
    pub attempts: Option<i64>,
    /// Header problems, newline-separated.
    pub problems: Option<String>,
    /// Stored headers JSON.
    pub headers: String,
    /// Timestamp type.
    pub timestamp_type: Option<String>,
    /// When indexed, ms.
    pub indexed_at: i64,
    /// The payload.
    pub value: Option<Vec<u8>>,
    /// Whether its body (payload, headers, stack trace) was not stored: the disk was low
    /// when it was indexed (see `store::deferred`).
    pub body_deferred: bool,
    /// Why the broker could not give that body back, once it was asked again.
    pub body_lost_reason: Option<String>,
}

impl RecordDetail {
    /// Why its body is not in the index, when it was deferred.
    pub fn missing_body(&self) -> Option<deferred::Missing> {
        deferred::Missing::of_row(self.body_deferred, self.body_lost_reason.clone())
    }
}

/// A page of a listing, newest first, with cursors for the neighbouring pages.
#[derive(Debug, Clone)]
pub struct RecordPage {
    /// The rows, newest first.
    pub rows: Vec<RecordSummary>,
    /// Cursor of the next older page, when there is one.
    pub older: Option<crate::filter::Cursor>,
    /// Cursor of the next newer page, when there is one.
    pub newer: Option<crate::filter::Cursor>,
}

/// How many bytes of a payload a listing previews.
const HEAD_BYTES: usize = 160;

/// Decode a listing row's payload preview: its first `HEAD_BYTES` of the original payload.
/// A body that cannot be decoded has no preview (its detail page says why) rather than
/// failing the whole page.
fn finish_head(row: &mut RecordSummary) {
    let codec = row.value_codec.unwrap_or(0);
    if codec == 0 {
        return;
    }
    row.value_head = row.value_head.take().and_then(|stored| {
        codec::search_prefix(Some(&stored), codec, HEAD_BYTES).map(|head| head.into_owned())
    });
    row.value_codec = Some(0);
}

/// With free text, the page is driven by the search index, which yields matches newest
/// indexed first and stops after a page; materialising every match of a common word and
/// sorting it by time took hundreds of milliseconds on a large index.
fn search_driven_from(qb: &mut QueryBuilder<'_, Sqlite>, expr: String) {
    // CROSS JOIN keeps the search index the outer loop (SQLite does not reorder it), so that
    // a selective second filter cannot turn this into a lookup per row of that filter.
    qb.push(" FROM search.records_fts CROSS JOIN records ON records.id = records_fts.rowid");
    qb.push(" WHERE records_fts MATCH ").push_bind(expr);
}

/// One page of records matching a filter: newest first by record time, or, with free text,
/// newest indexed first.
pub async fn list(pool: &SqlitePool, query: &MessageQuery) -> Result<RecordPage> {
    let limit = i64::from(query.limit);
    let ascending = matches!(query.page, Page::Newer(_));
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
    push_listing(&mut qb, query);
    let mut rows: Vec<RecordSummary> = qb.build_query_as().fetch_all(pool).await?;
    rows.iter_mut().for_each(finish_head);
    let more = rows.len() as i64 > limit;
    rows.truncate(query.limit as usize);
    if ascending {
        rows.reverse();
    }
    let cursor_of = |r: &RecordSummary| crate::filter::Cursor { ts: r.ts, id: r.id };
    let older_if_more = || {
        if more {
            rows.last().map(cursor_of)
        } else {
            None
        }
    };
    let (older, newer) = match query.page {
        Page::First => (older_if_more(), None),
        Page::Older(_) => (older_if_more(), rows.first().map(cursor_of)),
        Page::Newer(_) => (
            rows.last().map(cursor_of),
            if more {
                rows.first().map(cursor_of)
            } else {
                None
            },
        ),
    };
    Ok(RecordPage { rows, older, newer })
}

/// How SQLite runs the listing of `query`, as the lines of EXPLAIN QUERY PLAN. A listing
/// must walk an index in the order of the page and stop after it, never sort its matches:
/// that is what keeps a page of a million-record index in milliseconds.
pub async fn listing_plan(pool: &SqlitePool, query: &MessageQuery) -> Result<Vec<String>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("EXPLAIN QUERY PLAN ");
    push_listing(&mut qb, query);
    let rows: Vec<(i64, i64, i64, String)> = qb.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(_, _, _, detail)| detail).collect())
}

/// The listing's SELECT, with one row more than a page: that row tells whether another page
/// exists in that direction.
fn push_listing(qb: &mut QueryBuilder<'_, Sqlite>, query: &MessageQuery) {
    let ascending = matches!(query.page, Page::Newer(_));
    qb.push(format!("SELECT {SUMMARY_COLUMNS}"));
    if let Some(expr) = query.filter.q.as_deref().and_then(fts_expression) {
        search_driven_from(qb, expr);
        push_filter_conditions(qb, &query.filter);
        match query.page {
            Page::First => {}
            Page::Older(c) => {
                qb.push(" AND records_fts.rowid < ").push_bind(c.id);
            }
            Page::Newer(c) => {
                qb.push(" AND records_fts.rowid > ").push_bind(c.id);
            }
        }
        qb.push(if ascending {
            " ORDER BY records_fts.rowid ASC"
        } else {
            " ORDER BY records_fts.rowid DESC"
        });
    } else {
        qb.push(" FROM records");
        push_filter(qb, &query.filter);
        match query.page {
            Page::First => {}
            Page::Older(c) => {
                qb.push(" AND (ts, id) < (")
                    .push_bind(c.ts)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
            Page::Newer(c) => {
                qb.push(" AND (ts, id) > (")
                    .push_bind(c.ts)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
        }
        qb.push(if ascending {
            " ORDER BY ts ASC, id ASC"
        } else {
            " ORDER BY ts DESC, id DESC"
        });
    }
    qb.push(" LIMIT ").push_bind(i64::from(query.limit) + 1);
}

/// One record by its coordinates, its payload decoded to the original bytes.
pub async fn get(pool: &SqlitePool, id: &RecordId) -> Result<Option<RecordDetail>> {
    let row: Option<RecordDetail> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS}, error_message AS full_error_message, b.stacktrace, attempts, problems, b.headers, timestamp_type, indexed_at, b.value,
                d.record_id IS NOT NULL AS body_deferred, d.lost_reason AS body_lost_reason
         FROM records JOIN record_bodies b ON b.record_id = records.id LEFT JOIN deferred_bodies d ON d.record_id = records.id WHERE topic = ?1 AND partition = ?2 AND \"offset\" = ?3 AND (?4 IS NULL OR generation = ?4)
         ORDER BY generation DESC LIMIT 1"
    ))
    .bind(&id.topic)
    .bind(id.partition)
    .bind(id.offset)
    .bind(id.generation)
    .fetch_optional(pool)
    .await?;
    let Some(mut detail) = row else {
        return Ok(None);
    };
    let codec = detail.summary.value_codec.unwrap_or(0);
    detail.value = codec::decode(detail.value.take(), codec)?;
    finish_head(&mut detail.summary);
    Ok(Some(detail))
}

/// A record's stored payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    /// The payload (None for a null value).
    Kept(Option<Vec<u8>>),
    /// Erased by an operator at this time, ms.
    Erased(i64),
    /// Removed by retention (`--retain payloads`) at this time, ms.
    RemovedByRetention(i64),
    /// Not stored: the disk was low when it was indexed (see `store::deferred`).
    NotStored(deferred::Missing),
}

/// The payload of one record, the original bytes: None when the record is unknown.
pub async fn value(pool: &SqlitePool, id: &RecordId) -> Result<Option<StoredValue>> {
    /// (stored value, codec, erased at, erased by retention, deferred, lost reason).
    type Stored = (
        Option<Vec<u8>>,
        i64,
        Option<i64>,
        bool,
        bool,
        Option<String>,
    );
    let row: Option<Stored> = sqlx::query_as(
        "SELECT b.value, b.codec, records.erased_at, records.erased_by_retention, d.record_id IS NOT NULL, d.lost_reason
         FROM records JOIN record_bodies b ON b.record_id = records.id LEFT JOIN deferred_bodies d ON d.record_id = records.id WHERE topic = ?1 AND partition = ?2 AND \"offset\" = ?3 AND (?4 IS NULL OR generation = ?4)
         ORDER BY generation DESC LIMIT 1",
    )
    .bind(&id.topic)
    .bind(id.partition)
    .bind(id.offset)
    .bind(id.generation)
    .fetch_optional(pool)
    .await?;
    row.map(
        |(value, codec, erased, by_retention, deferred, lost)| match erased {
            Some(at) if by_retention => Ok(StoredValue::RemovedByRetention(at)),
            Some(at) => Ok(StoredValue::Erased(at)),
            None => match deferred::Missing::of_row(deferred, lost) {
                Some(missing) => Ok(StoredValue::NotStored(missing)),
                None => codec::decode(value, codec).map(StoredValue::Kept),
            },
        },
    )
    .transpose()
}

/// What identifies a stored record's content: (timestamp if it had one, key, value). The
/// value is None when the index does not hold it (erased, or deferred on a low disk): then
/// only the timestamp and key can be compared.
pub type Identity = (Option<i64>, Option<Vec<u8>>, Option<Option<Vec<u8>>>);

/// What the index holds at one exact coordinate, for checking that a re-read record is the
/// same record (the payload decoded to the original bytes).
pub async fn identity(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    generation: i64,
    offset: i64,
) -> Result<Option<Identity>> {
    type Stored = (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>, i64, bool);
    let row: Option<Stored> = sqlx::query_as(
        "SELECT CASE WHEN timestamp_type IS NULL THEN NULL ELSE ts END, key, b.value, b.codec,
                erased_at IS NOT NULL OR EXISTS (SELECT 1 FROM deferred_bodies d WHERE d.record_id = records.id)
         FROM records JOIN record_bodies b ON b.record_id = records.id WHERE topic = ? AND partition = ? AND generation = ? AND \"offset\" = ?",
    )
    .bind(topic)
    .bind(partition)
    .bind(generation)
    .bind(offset)
    .fetch_optional(pool)
    .await?;
    row.map(|(ts, key, value, codec, not_held)| {
        let value = match not_held {
            true => None,
            false => Some(codec::decode(value, codec)?),
        };
        Ok((ts, key, value))
    })
    .transpose()
}

/// Partitions whose log was ever reset, with their current generation.
pub async fn current_generations(pool: &SqlitePool) -> Result<Vec<(String, i32, i64)>> {
    Ok(sqlx::query_as(
        "SELECT topic, partition, generation FROM partition_positions WHERE generation > 0",
    )
    .fetch_all(pool)
    .await?)
}

/// Distinct values for filter drop-downs: topics and error classes seen.
pub async fn distinct_error_classes(pool: &SqlitePool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT error_class FROM topic_error_classes GROUP BY error_class ORDER BY SUM(count) DESC LIMIT 200",
    )
    .fetch_all(pool)
    .await?)
}

/// How many records match, counting no further than `cap` (a broad filter over a large
/// index would otherwise scan every row for a number nobody reads past "10,000+").
pub async fn count_capped(pool: &SqlitePool, filter: &MessageFilter, cap: i64) -> Result<i64> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT COUNT(*) FROM (SELECT 1");
    match filter.q.as_deref().and_then(fts_expression) {
        Some(expr) => {
            search_driven_from(&mut qb, expr);
            push_filter_conditions(&mut qb, filter);
        }
        None => {
            qb.push(" FROM records");
            push_filter(&mut qb, filter);
        }
    }
    qb.push(" LIMIT ").push_bind(cap).push(")");
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}
