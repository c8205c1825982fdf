//! Failure groups: records sharing error class, origin topic and masked error message.

use std::collections::HashMap;

use sqlx::SqlitePool;

use super::raw::Handle;
use super::stats::{self, HOUR_MS};
use crate::error::Result;
use crate::index::record::NewRecord;

/// Fold freshly inserted records into their groups and hourly group counts, in the
/// transaction of the connection `db` (stepped through the C API, as the rows are).
pub(crate) fn count_new_records(db: &Handle<'_>, rows: &[&NewRecord]) -> Result<()> {
    struct Acc<'a> {
        first: &'a NewRecord,
        count: i64,
        looping: i64,
        min_ts: i64,
        max_ts: i64,
    }
    let mut groups: HashMap<&str, Acc> = HashMap::new();
    let mut hourly: HashMap<(&str, i64), i64> = HashMap::new();
    for r in rows {
        let acc = groups.entry(&r.fingerprint).or_insert(Acc {
            first: r,
            count: 0,
            looping: 0,
            min_ts: r.ts,
            max_ts: r.ts,
        });
        acc.count += 1;
        acc.looping += i64::from(r.lineage_replays() >= super::outcomes::LOOP_REPLAYS);
        acc.min_ts = acc.min_ts.min(r.ts);
        acc.max_ts = acc.max_ts.max(r.ts);
        *hourly
            .entry((&r.fingerprint, r.ts.div_euclid(HOUR_MS)))
            .or_default() += 1;
    }
    let mut group = db.prepare("INSERT INTO failure_groups (fingerprint, error_class, origin_topic, masked_message, sample_message, count, first_seen, last_seen, looping)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (fingerprint) DO UPDATE SET count = count + excluded.count, looping = looping + excluded.looping,
                first_seen = MIN(first_seen, excluded.first_seen), last_seen = MAX(last_seen, excluded.last_seen)",)?;
    for (fingerprint, acc) in groups {
        let n = &acc.first.normalised;
        group.text(1, Some(fingerprint))?;
        group.text(2, n.error_class.as_deref())?;
        group.text(3, n.origin_topic.as_deref())?;
        group.text(4, acc.first.masked_message.as_deref())?;
        let sample: Option<String> = n
            .error_message
            .as_deref()
            .map(|m| m.chars().take(500).collect());
        group.text_copy(5, sample.as_deref())?;
        group.int(6, acc.count)?;
        group.int(7, acc.min_ts)?;
        group.int(8, acc.max_ts)?;
        group.int(9, acc.looping)?;
        group.execute()?;
    }
    stats::add_counts(
        db,
        "INSERT INTO group_hourly (fingerprint, hour, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (fingerprint, hour) DO UPDATE SET count = count + excluded.count",
        hourly,
    )
}

/// One failure group.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct FailureGroup {
    /// Group id.
    pub fingerprint: String,
    /// Error class.
    pub error_class: Option<String>,
    /// Origin topic.
    pub origin_topic: Option<String>,
    /// Error message with ids and numbers masked.
    pub masked_message: Option<String>,
    /// One real message of the group.
    pub sample_message: Option<String>,
    /// Records in the group, purged ones left out.
    pub count: i64,
    /// Purged records of the group (listed with `status=purged`).
    pub purged: i64,
    /// First record time, ms.
    #[serde(skip)]
    pub first_seen: i64,
    /// Last record time, ms.
    #[serde(skip)]
    pub last_seen: i64,
    /// Replayed records of the group delivered to their target.
    pub replayed: i64,
    /// Of those, seen consumed by the target's consumer group.
    pub consumed: i64,
    /// Of those, back in a DLQ.
    pub failed_again: i64,
    /// Records of the group that failed again after two or more replays.
    pub looping: i64,
}

/// The largest groups first, counting records that are not purged; a group whose every
/// record is purged is left out.
pub async fn list(pool: &SqlitePool, limit: i64) -> Result<Vec<FailureGroup>> {
    Ok(sqlx::query_as(
        "SELECT fingerprint, error_class, origin_topic, masked_message, sample_message, count - purged AS count, first_seen, last_seen,
                replayed, consumed, failed_again, looping, purged
         FROM failure_groups WHERE count > purged ORDER BY count - purged DESC, last_seen DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Hourly counts of a group over the 24 hours ending at `now`, oldest first.
pub async fn hourly(pool: &SqlitePool, fingerprint: &str, now: i64) -> Result<Vec<i64>> {
    let first_hour = now.div_euclid(HOUR_MS) - 23;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT hour, count FROM group_hourly WHERE fingerprint = ? AND hour >= ?")
            .bind(fingerprint)
            .bind(first_hour)
            .fetch_all(pool)
            .await?;
    let mut out = vec![0; 24];
    for (hour, n) in rows {
        if let Some(slot) = usize::try_from(hour - first_hour).ok().filter(|i| *i < 24) {
            out[slot] = n;
        }
    }
    Ok(out)
}

/// How many failure groups have records that are not purged.
pub async fn count(pool: &SqlitePool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM failure_groups WHERE count > purged")
            .fetch_one(pool)
            .await?,
    )
}
