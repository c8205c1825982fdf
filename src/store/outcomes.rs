//! What became of replayed records past the broker: consumed (the target's consumer group
//! committed past them) or failed again (they came back to a DLQ). The counters of jobs and
//! failure groups move in the same transactions as the items.

use sqlx::types::Json;
use sqlx::{SqliteConnection, SqlitePool};

use super::jobs::Job;
pub use super::jobs::{GroupSource, GroupTracking};
use crate::error::Result;
use crate::index::normalise::ReplayOrigin;

/// A record whose lineage failed again after this many replays is in a loop.
pub const LOOP_REPLAYS: i64 = 2;

/// Items marked consumed per transaction: a large jump of a committed offset is applied in
/// pieces, so the writer is never held long.
const CONSUMED_PER_COMMIT: i64 = 4000;

/// Link DLQ records that came back from a replay (just inserted, with their new row ids) to
/// the replays they came from, in the indexer's transaction. A replay id of another
/// dashboard's index, or of an item that is already linked, changes nothing.
pub async fn link_returned(
    conn: &mut SqliteConnection,
    returned: &[(i64, &ReplayOrigin)],
) -> Result<()> {
    for (new_id, origin) in returned {
        let linked = sqlx::query(
            "UPDATE replay_items SET failed_again_id = ?
             WHERE job_id = ? AND record_id = ? AND state = 'sent' AND failed_again_id IS NULL",
        )
        .bind(new_id)
        .bind(&origin.job_id)
        .bind(origin.record_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if linked == 0 {
            continue;
        }
        sqlx::query("UPDATE replay_jobs SET failed_again = failed_again + 1 WHERE id = ?")
            .bind(&origin.job_id)
            .execute(&mut *conn)
            .await?;
        let original: Option<(String, i64)> = sqlx::query_as(
            "UPDATE records SET failed_again_count = failed_again_count + 1 WHERE id = ?
             RETURNING fingerprint, failed_again_count",
        )
        .bind(origin.record_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((fingerprint, failed_again)) = original {
            sqlx::query(
                "UPDATE failure_groups SET failed_again = failed_again + 1, looping = looping + ?
                 WHERE fingerprint = ?",
            )
            .bind(i64::from(failed_again == LOOP_REPLAYS))
            .bind(fingerprint)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// How long after its delivery a record that comes back without a `dlq-replay-id` may still
/// be matched to its replay by key and value, ms.
pub const PROBABLE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A DLQ record just indexed that carries no `dlq-replay-id`: its row id, topic and key.
pub struct Unlabelled<'a> {
    /// Its row id.
    pub id: i64,
    /// DLQ topic.
    pub topic: &'a str,
    /// Key bytes.
    pub key: &'a [u8],
}

/// Link records that came back without a `dlq-replay-id` (a framework that drops headers)
/// to the replay they probably came from: a delivered item of a job, not linked yet, whose
/// record is on the same DLQ topic with the same key and the same value, delivered before
/// `now` and at most [`PROBABLE_WINDOW_MS`] earlier (a record indexed without its body, on a
/// low disk, has no value to compare and is not linked). Marked probable, counted apart, never
/// taken for certain (no loop is counted from it). Costs one query per batch while no job
/// delivered anything in the window.
pub async fn link_probable(
    conn: &mut SqliteConnection,
    returned: &[Unlabelled<'_>],
    now: i64,
) -> Result<()> {
    if returned.is_empty() {
        return Ok(());
    }
    let recent: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM replay_jobs
                        WHERE status <> 'preview' AND sent > 0 AND (finished_at IS NULL OR finished_at >= ?))",
    )
    .bind(now - PROBABLE_WINDOW_MS)
    .fetch_one(&mut *conn)
    .await?;
    if !recent {
        return Ok(());
    }
    for r in returned {
        let matched: Option<(String, i64)> = sqlx::query_as(
            "SELECT i.job_id, i.record_id
             FROM records o
             JOIN replay_items i ON i.record_id = o.id
             JOIN record_bodies ob ON ob.record_id = o.id
             JOIN record_bodies nb ON nb.record_id = ?1
             WHERE o.key = ?2 AND o.topic = ?3 AND o.id <> ?1
               AND i.state = 'sent' AND i.failed_again_id IS NULL
               AND i.finished_at <= ?4 AND i.finished_at >= ?5
               AND ob.value IS nb.value
               -- A body not stored (the disk was low) cannot be compared: no match.
               AND NOT EXISTS (SELECT 1 FROM deferred_bodies d WHERE d.record_id = ?1)
             ORDER BY i.finished_at DESC LIMIT 1",
        )
        .bind(r.id)
        .bind(r.key)
        .bind(r.topic)
        .bind(now)
        .bind(now - PROBABLE_WINDOW_MS)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((job_id, record_id)) = matched else {
            continue;
        };
        sqlx::query(
            "UPDATE replay_items SET failed_again_id = ?, failed_again_probable = 1
             WHERE job_id = ? AND record_id = ?",
        )
        .bind(r.id)
        .bind(&job_id)
        .bind(record_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE replay_jobs SET failed_again_probably = failed_again_probably + 1 WHERE id = ?",
        )
        .bind(&job_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Confirmed jobs with delivered items not yet seen consumed, that started sending after
/// `since` or are still unfinished, oldest first.
pub async fn jobs_awaiting(pool: &SqlitePool, since: i64) -> Result<Vec<Job>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM replay_jobs
         WHERE status NOT IN ('preview', 'queued') AND sent > consumed
           AND (finished_at IS NULL OR finished_at >= ?)
         ORDER BY created_at, id",
        super::jobs::JOB_COLUMNS
    ))
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// Where a job's delivered records came from and went: per DLQ topic and target topic, the
/// consumer group their headers name (the most frequent one) and how many there are.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRoute {
    /// DLQ topic.
    pub dlq_topic: String,
    /// Target (retry) topic.
    pub target_topic: String,
    /// The consumer group the records' headers name most often.
    pub header_group: Option<String>,
}

/// The routes of a job's delivered items (reads the job's items once; the tracker keeps the
/// answer).
pub async fn job_routes(pool: &SqlitePool, job_id: &str) -> Result<Vec<JobRoute>> {
    Ok(sqlx::query_as(
        "WITH counted AS (
           SELECT r.topic AS dlq_topic, i.target_topic, r.consumer_group, COUNT(*) AS n
           FROM replay_items i JOIN records r ON r.id = i.record_id
           WHERE i.job_id = ? AND i.state = 'sent' AND i.target_topic IS NOT NULL
           GROUP BY 1, 2, 3
         ), ranked AS (
           SELECT dlq_topic, target_topic, consumer_group,
                  ROW_NUMBER() OVER (PARTITION BY dlq_topic, target_topic
                                     ORDER BY consumer_group IS NULL, n DESC, consumer_group) AS rank
           FROM counted
         )
         SELECT dlq_topic, target_topic, consumer_group AS header_group FROM ranked WHERE rank = 1
         ORDER BY target_topic, dlq_topic",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await?)
}

/// The target partitions of a job that have items waiting to be consumed, with the lowest
/// waiting target offset of each, ordered by topic and partition. One index seek per
/// partition, however many items wait.
pub async fn awaiting_partitions(
    pool: &SqlitePool,
    job_id: &str,
) -> Result<Vec<(String, i32, i64)>> {
    let mut out: Vec<(String, i32, i64)> = Vec::new();
    loop {
        let (after_topic, after_partition) = out
            .last()
            .map(|(t, p, _)| (t.clone(), *p))
            .unwrap_or_default();
        let next: Option<(String, i32, i64)> = sqlx::query_as(
            "SELECT target_topic, target_partition, target_offset FROM replay_items
             WHERE job_id = ?1 AND state = 'sent' AND consumed_at IS NULL
               AND (target_topic, target_partition) > (?2, ?3)
             ORDER BY target_topic, target_partition, target_offset LIMIT 1",
        )
        .bind(job_id)
        .bind(&after_topic)
        .bind(if out.is_empty() {
            i32::MIN
        } else {
            after_partition
        })
        .fetch_optional(pool)
        .await?;
        match next {
            Some(row) => out.push(row),
            None => return Ok(out),
        }
    }
}

/// Mark the job's items delivered to `topic`/`partition` below `committed` (the consumer
/// group's committed offset: the next record it will read) as consumed at `now`. Returns
/// how many were newly marked.
pub async fn mark_consumed(
    pool: &SqlitePool,
    job_id: &str,
    topic: &str,
    partition: i32,
    committed: i64,
    now: i64,
) -> Result<i64> {
    let mut total = 0;
    loop {
        let mut tx = super::begin_write(pool).await?;
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS consumed_now (id INTEGER PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM consumed_now")
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query(
            "INSERT INTO consumed_now (id)
             SELECT record_id FROM replay_items
             WHERE job_id = ? AND state = 'sent' AND consumed_at IS NULL
               AND target_topic = ? AND target_partition = ? AND target_offset < ?
             LIMIT ?",
        )
        .bind(job_id)
        .bind(topic)
        .bind(partition)
        .bind(committed)
        .bind(CONSUMED_PER_COMMIT)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        if n > 0 {
            sqlx::query(
                "UPDATE replay_items SET consumed_at = ?
                 WHERE job_id = ? AND record_id IN (SELECT id FROM consumed_now)",
            )
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE replay_jobs SET consumed = consumed + ? WHERE id = ?")
                .bind(n)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE failure_groups SET consumed = consumed + c.n
                 FROM (SELECT r.fingerprint, COUNT(*) AS n FROM consumed_now t JOIN records r ON r.id = t.id
                       GROUP BY r.fingerprint) AS c
                 WHERE failure_groups.fingerprint = c.fingerprint",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        total += n;
        if n < CONSUMED_PER_COMMIT {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Store how a job's consumption is followed (JSON, see `replay::outcomes`).
pub async fn set_consumer_groups(
    pool: &SqlitePool,
    job_id: &str,
    tracking: &[GroupTracking],
) -> Result<()> {
    let mut tx = super::begin_write(pool).await?;
    sqlx::query("UPDATE replay_jobs SET consumer_groups = ? WHERE id = ?")
        .bind(Json(tracking))
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Of the records a preview would send, how many came back after an earlier replay, and how
/// many of those are in a loop.
pub async fn returned_in_preview(pool: &SqlitePool, job_id: &str) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(SUM(r.failed_again_count > 0), 0), COALESCE(SUM(r.failed_again_count >= ?), 0)
         FROM replay_items i JOIN records r ON r.id = i.record_id
         WHERE i.job_id = ? AND i.state = 'pending'",
    )
    .bind(LOOP_REPLAYS)
    .bind(job_id)
    .fetch_one(pool)
    .await?)
}
