//! Broker-side reclaim: the longest prefix of a DLQ partition whose records are all
//! resolved, which DeleteRecords may then delete on the broker. The rule is here once, in
//! [`RESOLVED`] and [`plan_in`]; everything else (the topic page, the API, the action, the
//! metrics) asks these functions.
//!
//! A record is *resolved* when it is `replayed` and none of its replays came back to a DLQ
//! (`failed_again_count = 0`), `purged`, or `expired`, and no replay job (previewed or
//! confirmed, not finished) still has to send it: such a job could turn it into
//! `replay_failed`. The prefix of a partition's current generation starts at its *floor*
//! (what the broker no longer has: the stored log start, or what an earlier reclaim deleted)
//! and ends before the first record that is not resolved, or at the indexing position when
//! every indexed record is: DeleteRecords deletes the offsets below that bound, so an
//! unresolved record, or one not indexed yet, is never deleted.
//!
//! While a reclaim is in flight, `partition_positions.reclaiming_to` marks its bound
//! (set in the transaction that recomputed the prefix, before the broker is called), so
//! that what must not change meanwhile can check [`below_log_start`]: replay previews refuse
//! those records, and an undo of a purge must refuse them too.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::search;
use crate::error::Result;

/// The condition, on a record row named `r`, that it is resolved for reclaim, apart from
/// replay jobs that still have to send it (see [`JOB_STILL_TO_SEND`]).
pub const RESOLVED: &str =
    "((r.status = 'replayed' AND r.failed_again_count = 0) OR r.status IN ('purged', 'expired'))";

/// The job statuses whose pending items will still be sent: a preview may be confirmed, a
/// queued, running or paused job goes on.
pub const JOB_STILL_TO_SEND: &str = "('preview', 'queued', 'running', 'paused')";

/// The condition, on a record row named `alias` (with `topic`, `partition`, `generation` and
/// `"offset"` columns), that the broker no longer has it or is deleting it: in its
/// partition's current generation, its offset is below the log start last seen, below what
/// a reclaim deleted, or below a reclaim in flight.
///
/// This is what refuses a replay of such a record ([`super::jobs::create_preview`]), and
/// what an undo of a purge must refuse too: a record below it cannot go back to a status
/// that the broker's copy would back. For example, in an undo:
/// `UPDATE records AS r SET ... WHERE ... AND NOT (<below_log_start("r")>)`.
pub fn below_log_start(alias: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM partition_positions lp WHERE lp.topic = {alias}.topic AND lp.partition = {alias}.partition
           AND lp.generation = {alias}.generation
           AND {alias}.\"offset\" < MAX(COALESCE(lp.log_start, 0), COALESCE(lp.reclaimed_to, 0), COALESCE(lp.reclaiming_to, 0)))"
    )
}

/// One partition's reclaimable prefix, and what the index knows about its log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Reclaimable {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The generation the prefix is of (the partition's current one).
    pub generation: i64,
    /// The broker's log start (low watermark) as last seen; None before the first look.
    pub log_start: Option<i64>,
    /// Offsets below this were deleted by an earlier reclaim.
    pub reclaimed_to: Option<i64>,
    /// A reclaim in flight (or whose outcome a crash lost): its bound.
    pub reclaiming_to: Option<i64>,
    /// The offset after the last indexed record.
    pub next_offset: i64,
    /// Records of the generation in the index.
    pub indexed: i64,
    /// Where the prefix starts: what the broker no longer has below.
    pub floor: i64,
    /// The exclusive bound of the prefix: DeleteRecords deletes the offsets below it. Equal
    /// to `floor` when nothing is reclaimable.
    pub bound: i64,
    /// Indexed records in the prefix.
    pub records: i64,
    /// Their payload bytes.
    pub bytes: i64,
}

impl Reclaimable {
    /// The offset DeleteRecords would be called with, when anything is reclaimable.
    pub fn reclaimable_to(&self) -> Option<i64> {
        (self.records > 0 && self.bound > self.floor).then_some(self.bound)
    }
}

/// The prefix of every partition of `topic` (all of them when `partitions` is None), on any
/// connection: a reader for the page, the writer's transaction for a reclaim.
pub async fn plan_in(
    conn: &mut SqliteConnection,
    topic: &str,
    partitions: Option<&[i32]>,
) -> Result<Vec<Reclaimable>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "WITH part AS (
           SELECT topic, partition, generation, log_start, reclaimed_to, reclaiming_to, next_offset,
                  MAX(COALESCE(log_start, 0), COALESCE(reclaimed_to, 0)) AS floor
           FROM partition_positions WHERE topic = ",
    );
    qb.push_bind(topic.to_string());
    if let Some(list) = partitions {
        qb.push(" AND partition IN (SELECT value FROM json_each(");
        qb.push_bind(serde_json::to_string(list).unwrap_or_else(|_| "[]".into()));
        qb.push("))");
    }
    qb.push(format!(
        "), bounded AS (
           SELECT part.*,
             MIN(
               COALESCE((SELECT r.\"offset\" FROM records r
                         WHERE r.topic = part.topic AND r.partition = part.partition
                           AND r.generation = part.generation AND r.\"offset\" >= part.floor
                           AND NOT {RESOLVED}
                         ORDER BY r.\"offset\" LIMIT 1), part.next_offset),
               COALESCE((SELECT MIN(r.\"offset\") FROM replay_jobs j
                         JOIN replay_items i ON i.job_id = j.id
                         JOIN records r ON r.id = i.record_id
                         WHERE j.status IN {JOB_STILL_TO_SEND} AND i.state = 'pending'
                           AND r.topic = part.topic AND r.partition = part.partition
                           AND r.generation = part.generation AND r.\"offset\" >= part.floor),
                        part.next_offset),
               part.next_offset) AS bound
           FROM part
         )
         SELECT topic, partition, generation, log_start, reclaimed_to, reclaiming_to, next_offset,
                (SELECT COUNT(*) FROM records r WHERE r.topic = b.topic AND r.partition = b.partition
                   AND r.generation = b.generation) AS indexed,
                floor, MAX(bound, floor) AS bound,
                (SELECT COUNT(*) FROM records r WHERE r.topic = b.topic AND r.partition = b.partition
                   AND r.generation = b.generation AND r.\"offset\" >= b.floor AND r.\"offset\" < b.bound) AS records,
                (SELECT COALESCE(SUM(r.value_size), 0) FROM records r WHERE r.topic = b.topic AND r.partition = b.partition
                   AND r.generation = b.generation AND r.\"offset\" >= b.floor AND r.\"offset\" < b.bound) AS bytes
         FROM bounded b ORDER BY partition"
    ));
    Ok(qb.build_query_as().fetch_all(&mut *conn).await?)
}

/// [`plan_in`] on a connection of the pool, for pages, the API and metrics.
pub async fn plan(
    pool: &SqlitePool,
    topic: &str,
    partitions: Option<&[i32]>,
) -> Result<Vec<Reclaimable>> {
    let mut conn = pool.acquire().await?;
    plan_in(&mut conn, topic, partitions).await
}

/// Mark a reclaim of a partition's offsets below `to` as in flight, in the caller's write
/// transaction (the one that computed the prefix).
pub async fn mark_in(
    conn: &mut SqliteConnection,
    topic: &str,
    partition: i32,
    generation: i64,
    to: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE partition_positions SET reclaiming_to = ? WHERE topic = ? AND partition = ? AND generation = ?",
    )
    .bind(to)
    .bind(topic)
    .bind(partition)
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The broker deleted the partition's offsets below `to`: the in-flight mark becomes the
/// reclaimed mark. The new log start is stored by marking the records below it expired
/// ([`super::expiry::expire_below`]).
pub async fn finish_deleted(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    generation: i64,
    to: i64,
    now: i64,
) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "UPDATE partition_positions SET reclaimed_to = MAX(COALESCE(reclaimed_to, 0), ?), reclaiming_to = NULL, reclaimed_at = ?
         WHERE topic = ? AND partition = ? AND generation = ?",
    )
    .bind(to)
    .bind(now)
    .bind(topic)
    .bind(partition)
    .bind(generation)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The broker refused: clear the in-flight mark, in the caller's write transaction (with the
/// audit entry of the refusal).
pub async fn clear_mark_in(
    conn: &mut SqliteConnection,
    topic: &str,
    partition: i32,
    generation: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE partition_positions SET reclaiming_to = NULL WHERE topic = ? AND partition = ? AND generation = ?",
    )
    .bind(topic)
    .bind(partition)
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records per write transaction when payloads are dropped after a reclaim.
pub const DROP_CHUNK_ROWS: i64 = 2000;

/// Drop the payloads (`record_bodies.value`; headers and stack trace stay) of a partition's
/// records of `generation` at offsets in `from..to`, after a reclaim deleted them on the
/// broker. Chunked; each chunk also rewrites the records' search entries without the
/// payload text, so that search no longer finds it and a later removal of the entries
/// (erase) is given the text they now hold. Returns how many payloads were dropped.
///
/// Lock order as everywhere the search file is written besides the catch-up: the search
/// file's writer lock first, then the index's writer.
pub async fn drop_payloads(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    generation: i64,
    from: i64,
    to: i64,
) -> Result<i64> {
    let mut search_conn = search::connect(pool).await?;
    let mut cursor = from;
    let mut dropped = 0;
    while cursor < to {
        let mut stx = search::begin_write(pool, &mut search_conn).await?;
        let through: i64 = sqlx::query_scalar("SELECT indexed_through FROM search_progress")
            .fetch_one(&mut *stx)
            .await?;
        // The mask the entries were made with: removing one takes the same text.
        let mask = search::mask(&mut stx).await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT r.id, r.\"offset\" FROM records r JOIN record_bodies b ON b.record_id = r.id
             WHERE r.topic = ?1 AND r.partition = ?2 AND r.generation = ?3
               AND r.\"offset\" >= ?4 AND r.\"offset\" < ?5 AND b.value IS NOT NULL
             ORDER BY r.\"offset\" LIMIT ?6",
        )
        .bind(topic)
        .bind(partition)
        .bind(generation)
        .bind(cursor)
        .bind(to)
        .bind(DROP_CHUNK_ROWS)
        .fetch_all(pool)
        .await?;
        let Some(&(_, last)) = rows.last() else {
            stx.rollback().await?;
            break;
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        // The entries as the catch-up made them, and as they are without the payload.
        let changes: Vec<search::EntryChange> =
            search::entry_texts(&mut *pool.acquire().await?, &ids, through, &mask)
                .await?
                .into_iter()
                .map(|(id, old)| search::EntryChange::without_payload(id, old))
                .collect();
        search::change_entries(&mut stx, &changes, search::Scrub::Yes).await?;
        // The index's writer only for the update itself: the rows read above cannot change
        // meanwhile, since whatever else rewrites payloads (erase) holds the search file's
        // writer lock first, as this does.
        let mut tx = super::begin_write(pool).await?;
        sqlx::query(
            "UPDATE record_bodies SET value = NULL WHERE record_id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        stx.commit().await?;
        dropped += ids.len() as i64;
        cursor = last + 1;
        tokio::task::yield_now().await;
    }
    Ok(dropped)
}

/// Reclaimable records per partition of every DLQ topic the index has positions for, for
/// /metrics: (topic, partition, records).
pub async fn reclaimable_records(pool: &SqlitePool) -> Result<Vec<(String, i32, i64)>> {
    let topics: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT topic FROM partition_positions ORDER BY topic")
            .fetch_all(pool)
            .await?;
    let mut out = Vec::new();
    for topic in topics {
        for p in plan(pool, &topic, None).await? {
            out.push((p.topic, p.partition, p.records));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::index::record::{NewRecord, RecordParts};
    use crate::store::positions::Position;
    use crate::store::{expiry, records};

    const STATUSES: [&str; 6] = [
        "new",
        "replayed",
        "replay_failed",
        "purged",
        "expired",
        "replaying",
    ];
    /// Job statuses an item may sit in; the first four still send it.
    const JOBS: [&str; 6] = [
        "preview",
        "queued",
        "running",
        "paused",
        "completed",
        "cancelled",
    ];

    /// One indexed record of the layout.
    #[derive(Debug, Clone)]
    struct Rec {
        offset: i64,
        size: usize,
        status: &'static str,
        failed_again: bool,
        /// A pending item in a job of this status.
        pending_in: Option<&'static str>,
    }

    #[derive(Debug, Clone)]
    struct Layout {
        records: Vec<Rec>,
        next_offset: i64,
        log_start: Option<i64>,
        reclaimed_to: Option<i64>,
        /// The partition restarted once: an older generation holds unresolved records at the
        /// same offsets, which must not count.
        restarted: bool,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        let rec = (
            0i64..3,
            0usize..50,
            prop::sample::select(&STATUSES[..]),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.15, prop::sample::select(&JOBS[..])),
        );
        (
            prop::collection::vec(rec, 0..30),
            0i64..3,
            prop::option::of(0i64..40),
            prop::option::of(0i64..40),
            any::<bool>(),
            // Mostly resolved layouts, so that long prefixes are common.
            prop::bool::weighted(0.7),
        )
            .prop_map(|(recs, tail, log_start, reclaimed_to, restarted, mostly)| {
                let mut offset = 0;
                let records = recs
                    .into_iter()
                    .map(|(gap, size, status, failed_again, pending_in)| {
                        offset += gap;
                        let status = if mostly && status == "new" {
                            "replayed"
                        } else {
                            status
                        };
                        let r = Rec {
                            offset,
                            size,
                            status,
                            failed_again,
                            pending_in,
                        };
                        offset += 1;
                        r
                    })
                    .collect();
                Layout {
                    records,
                    next_offset: offset + tail,
                    log_start,
                    reclaimed_to,
                    restarted,
                }
            })
    }

    /// The rule, as simply as it can be said.
    fn reference(l: &Layout) -> (i64, i64, i64) {
        let floor = l.log_start.unwrap_or(0).max(l.reclaimed_to.unwrap_or(0));
        let resolved = |r: &Rec| {
            let status = (r.status == "replayed" && !r.failed_again)
                || r.status == "purged"
                || r.status == "expired";
            let waiting = r.pending_in.is_some_and(|j| JOBS[..4].contains(&j));
            status && !waiting
        };
        let first_unresolved = l
            .records
            .iter()
            .filter(|r| r.offset >= floor && !resolved(r))
            .map(|r| r.offset)
            .min();
        let bound = first_unresolved
            .unwrap_or(l.next_offset)
            .min(l.next_offset)
            .max(floor);
        let prefix: Vec<&Rec> = l
            .records
            .iter()
            .filter(|r| r.offset >= floor && r.offset < bound)
            .collect();
        (
            bound,
            prefix.len() as i64,
            prefix.iter().map(|r| r.size as i64).sum(),
        )
    }

    fn new_record(offset: i64, generation: i64, size: usize) -> NewRecord {
        let mut r = NewRecord::from_parts(
            RecordParts {
                topic: "p.dlq".into(),
                partition: 0,
                offset,
                timestamp: Some((1_000 + offset, "create")),
                key: None,
                value: Some(vec![b'x'; size]),
                headers: Vec::new(),
            },
            5,
        );
        r.generation = generation;
        r
    }

    async fn store_layout(pool: &SqlitePool, l: &Layout) {
        let generation = i64::from(l.restarted);
        let position = |generation, next_offset| Position {
            topic: "p.dlq".into(),
            partition: 0,
            generation,
            next_offset,
        };
        if l.restarted {
            let old: Vec<NewRecord> = (0..10).map(|o| new_record(o, 0, 3)).collect();
            records::insert_batch(pool, &old, &[position(0, 10)], 5)
                .await
                .unwrap();
        }
        let batch: Vec<NewRecord> = l
            .records
            .iter()
            .map(|r| new_record(r.offset, generation, r.size))
            .collect();
        records::insert_batch(pool, &batch, &[position(generation, l.next_offset)], 5)
            .await
            .unwrap();
        sqlx::query("UPDATE partition_positions SET log_start = ?, reclaimed_to = ?")
            .bind(l.log_start)
            .bind(l.reclaimed_to)
            .execute(pool)
            .await
            .unwrap();
        for job in JOBS {
            sqlx::query(
                "INSERT INTO replay_jobs (id, status, actor, selection, rate, total, targets, created_at)
                 VALUES (?, ?, 't', '{}', 0, 0, '{}', 0)",
            )
            .bind(job)
            .bind(job)
            .execute(pool)
            .await
            .unwrap();
        }
        for r in &l.records {
            let id: i64 = sqlx::query_scalar(
                "UPDATE records SET status = ?, failed_again_count = ? WHERE generation = ? AND \"offset\" = ? RETURNING id",
            )
            .bind(r.status)
            .bind(i64::from(r.failed_again))
            .bind(generation)
            .bind(r.offset)
            .fetch_one(pool)
            .await
            .unwrap();
            if let Some(job) = r.pending_in {
                sqlx::query(
                    "INSERT INTO replay_items (job_id, record_id, state) VALUES (?, ?, 'pending')",
                )
                .bind(job)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn the_prefix_is_the_longest_run_of_resolved_records_from_the_floor(l in layout()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (bound, records, bytes) = rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let pool = crate::store::open(&dir.path().join("r.db")).await.unwrap();
                store_layout(&pool, &l).await;
                let plan = plan(&pool, "p.dlq", None).await.unwrap();
                assert_eq!(plan.len(), 1);
                let p = &plan[0];
                pool.close().await;
                (p.bound, p.records, p.bytes)
            });
            prop_assert_eq!((bound, records, bytes), reference(&l));
        }
    }

    #[tokio::test]
    async fn expiry_marks_what_the_broker_dropped_in_chunks_and_leaves_purged_records_purged() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("e.db")).await.unwrap();
        let n = expiry::CHUNK_ROWS * 2 + 500;
        let batch: Vec<NewRecord> = (0..n).map(|o| new_record(o, 0, 1)).collect();
        let at = Position {
            topic: "p.dlq".into(),
            partition: 0,
            generation: 0,
            next_offset: n,
        };
        records::insert_batch(&pool, &batch, &[at], 5)
            .await
            .unwrap();
        sqlx::query("UPDATE records SET status = 'purged' WHERE \"offset\" % 10 = 0")
            .execute(&pool)
            .await
            .unwrap();
        let purged = n / 10;
        crate::store::stats::add_status_count(
            &mut pool.acquire().await.unwrap(),
            "p.dlq",
            "new",
            -purged,
        )
        .await
        .unwrap();
        crate::store::stats::add_status_count(
            &mut pool.acquire().await.unwrap(),
            "p.dlq",
            "purged",
            purged,
        )
        .await
        .unwrap();

        let low = n - 100;
        let marked = expiry::expire_below(&pool, "p.dlq", 0, 0, low)
            .await
            .unwrap();
        assert_eq!(
            marked,
            low - low / 10,
            "every record below but the purged ones"
        );
        let counts = crate::store::stats::status_counts(&pool).await.unwrap();
        let count = |s: &str| {
            counts
                .iter()
                .find(|(_, status, _)| status == s)
                .map_or(0, |c| c.2)
        };
        assert_eq!(count("expired"), marked);
        assert_eq!(count("purged"), purged);
        assert_eq!(count("new"), n - marked - purged);
        let still_purged: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE status = 'purged'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(still_purged, purged);
        // Stored, and not done twice; a stale generation changes nothing.
        let starts = expiry::log_starts(&pool).await.unwrap();
        assert_eq!(starts[&("p.dlq".to_string(), 0)].log_start, Some(low));
        assert_eq!(
            expiry::expire_below(&pool, "p.dlq", 0, 0, low)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            expiry::expire_below(&pool, "p.dlq", 0, 1, n).await.unwrap(),
            0
        );
        // Below the log start: what replay previews and purge undos refuse.
        let below: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT r.\"offset\" FROM records r WHERE {} AND r.\"offset\" >= ? ORDER BY 1",
            below_log_start("r")
        ))
        .bind(low - 2)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(below, [low - 2, low - 1]);
    }

    #[tokio::test]
    async fn dropped_payloads_leave_the_search_index_without_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("d.db")).await.unwrap();
        let batch: Vec<NewRecord> = (0..3)
            .map(|o| {
                let mut r = new_record(o, 0, 0);
                r.key = Some(format!("k{o}").into_bytes());
                r.value = Some(b"payloadword and more".to_vec());
                r
            })
            .collect();
        let at = Position {
            topic: "p.dlq".into(),
            partition: 0,
            generation: 0,
            next_offset: 3,
        };
        records::insert_batch(&pool, &batch, &[at], 5)
            .await
            .unwrap();
        let mut search_conn = search::connect(&pool).await.unwrap();
        search::catch_up(&pool, &mut search_conn, 100)
            .await
            .unwrap();
        let found = |term: &'static str| {
            let pool = pool.clone();
            async move {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT rowid FROM search.records_fts WHERE records_fts MATCH ? ORDER BY rowid",
                )
                .bind(term)
                .fetch_all(&pool)
                .await
                .unwrap();
                ids
            }
        };
        assert_eq!(found("payloadword").await.len(), 3);

        assert_eq!(drop_payloads(&pool, "p.dlq", 0, 0, 0, 2).await.unwrap(), 2);
        let kept: Vec<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT b.value FROM record_bodies b JOIN records r ON r.id = b.record_id ORDER BY r.\"offset\"",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(kept[..2], [None, None]);
        assert!(kept[2].is_some(), "outside the range, kept");
        assert_eq!(
            found("payloadword").await.len(),
            1,
            "the dropped text is not found"
        );
        assert_eq!(found("k0").await.len(), 1, "the key still is");
        sqlx::query("INSERT INTO records_fts (records_fts, rank) VALUES ('integrity-check', 1)")
            .execute(&mut search_conn)
            .await
            .unwrap();
        assert_eq!(
            drop_payloads(&pool, "p.dlq", 0, 0, 0, 2).await.unwrap(),
            0,
            "once"
        );
    }
}
