//! Per-topic counters (status counts, hourly inflow, error classes), kept in the write
//! transaction so that the overview and /api/topics never scan `records`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{SqliteConnection, SqlitePool};

use super::raw::{Handle, Param};
use crate::error::Result;
use crate::index::record::NewRecord;
use crate::states::RecordStatus;

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// Count freshly inserted records (status `new`) into the per-topic counters, in the
/// transaction of the connection `db`. A handful of upserts per batch, stepped through the
/// C API like the rows themselves: through sqlx each was a round trip to its worker thread,
/// together a fifteenth of a batch's time.
pub(crate) fn count_new_records(db: &Handle<'_>, rows: &[&NewRecord]) -> Result<()> {
    let mut by_topic: HashMap<&str, i64> = HashMap::new();
    let mut hourly: HashMap<(&str, i64), i64> = HashMap::new();
    let mut classes: HashMap<(&str, &str), i64> = HashMap::new();
    for r in rows {
        *by_topic.entry(&r.topic).or_default() += 1;
        *hourly
            .entry((&r.topic, r.ts.div_euclid(HOUR_MS)))
            .or_default() += 1;
        if let Some(class) = r.normalised.error_class.as_deref() {
            *classes.entry((&r.topic, class)).or_default() += 1;
        }
    }
    add_counts(
        db,
        ADD_STATUS_COUNT_SQL,
        by_topic
            .into_iter()
            .map(|(topic, n)| ((topic, RecordStatus::New.as_str()), n)),
    )?;
    add_counts(
        db,
        "INSERT INTO topic_hourly (topic, hour, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, hour) DO UPDATE SET count = count + excluded.count",
        hourly,
    )?;
    add_counts(
        db,
        "INSERT INTO topic_error_classes (topic, error_class, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, error_class) DO UPDATE SET count = count + excluded.count",
        classes,
    )
}

/// Add each `((name, key), delta)` through `upsert`, which takes them as ?1, ?2 and ?3: the
/// shape of every counter table (topic or failure group, then status, hour or error class).
pub(crate) fn add_counts<'a, K: Param<'a>>(
    db: &'a Handle<'_>,
    upsert: &str,
    deltas: impl IntoIterator<Item = ((&'a str, K), i64)>,
) -> Result<()> {
    let mut s = db.prepare(upsert)?;
    for ((name, key), delta) in deltas {
        s.text(1, Some(name))?;
        key.bind_to(&mut s, 2)?;
        s.int(3, delta)?;
        s.execute()?;
    }
    Ok(())
}

/// Add ?3 (may be negative) to the count of topic ?1's records in status ?2.
const ADD_STATUS_COUNT_SQL: &str =
    "INSERT INTO topic_status_counts (topic, status, count) VALUES (?1, ?2, ?3)
     ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count";

/// Add `delta` (may be negative) to a topic's count of records in `status`.
pub async fn add_status_count(
    conn: &mut SqliteConnection,
    topic: &str,
    status: &str,
    delta: i64,
) -> Result<()> {
    sqlx::query(ADD_STATUS_COUNT_SQL)
        .bind(topic)
        .bind(status)
        .bind(delta)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What the overview shows for one DLQ topic.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TopicOverview {
    /// Topic name.
    pub topic: String,
    /// Partitions seen (assigned now or indexed before).
    pub partitions: i64,
    /// Records indexed, purged ones left out.
    pub messages: i64,
    /// Purged records (hidden from listings unless asked for).
    pub purged: i64,
    /// Records per status.
    pub by_status: BTreeMap<String, i64>,
    /// Oldest record time, ms.
    pub oldest: Option<i64>,
    /// Newest record time, ms.
    pub newest: Option<i64>,
    /// Oldest record still `new` or `replay_failed`, ms: what on-call watches.
    pub oldest_unresolved: Option<i64>,
    /// Records per hour over the last 24 hours, oldest first.
    pub hourly: Vec<i64>,
    /// The most frequent error classes with their counts.
    pub top_errors: Vec<(String, i64)>,
}

impl TopicOverview {
    /// Records that still need attention (new or failed replays).
    pub fn unresolved(&self) -> i64 {
        self.by_status
            .iter()
            .filter(|(status, _)| RecordStatus::is_unresolved(status))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Overview of every topic known to the index plus `assigned` (topic, partitions) pairs the
/// indexer reads now, so an empty DLQ topic is listed too.
pub async fn topic_overviews(
    pool: &SqlitePool,
    assigned: &BTreeMap<String, i64>,
    now: i64,
) -> Result<Vec<TopicOverview>> {
    let counts: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT topic, status, count FROM topic_status_counts WHERE count <> 0")
            .fetch_all(pool)
            .await?;
    let partitions: Vec<(String, i64)> =
        sqlx::query_as("SELECT topic, COUNT(*) FROM partition_positions GROUP BY topic")
            .fetch_all(pool)
            .await?;
    let mut topics: BTreeSet<String> = assigned.keys().cloned().collect();
    topics.extend(counts.iter().map(|(t, _, _)| t.clone()));
    topics.extend(partitions.iter().map(|(t, _)| t.clone()));
    let first_hour = now.div_euclid(HOUR_MS) - 23;
    let mut out = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut o = TopicOverview {
            topic: topic.clone(),
            ..Default::default()
        };
        for (t, status, n) in &counts {
            if *t == topic {
                o.by_status.insert(status.clone(), *n);
                if status == RecordStatus::Purged.as_str() {
                    o.purged += n;
                } else {
                    o.messages += n;
                }
            }
        }
        let stored = partitions
            .iter()
            .find(|(t, _)| *t == topic)
            .map_or(0, |(_, n)| *n);
        o.partitions = stored.max(assigned.get(&topic).copied().unwrap_or(0));
        // Two single-row index seeks: MIN and MAX in one statement would scan every entry of
        // the topic (SQLite optimises only a lone MIN or MAX).
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT ts FROM records WHERE topic = ? ORDER BY ts ASC LIMIT 1")
                .bind(&topic)
                .fetch_optional(pool)
                .await?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT ts FROM records WHERE topic = ? ORDER BY ts DESC LIMIT 1")
                .bind(&topic)
                .fetch_optional(pool)
                .await?;
        o.oldest = oldest;
        o.newest = newest;
        o.oldest_unresolved = sqlx::query_scalar(
            "SELECT MIN(m) FROM (SELECT MIN(ts) AS m FROM records WHERE topic = ? AND status = 'new'
                               UNION ALL SELECT MIN(ts) FROM records WHERE topic = ? AND status = 'replay_failed')",
        )
        .bind(&topic)
        .bind(&topic)
        .fetch_one(pool)
        .await?;
        let hourly: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT hour, count FROM topic_hourly WHERE topic = ? AND hour >= ? ORDER BY hour",
        )
        .bind(&topic)
        .bind(first_hour)
        .fetch_all(pool)
        .await?;
        o.hourly = vec![0; 24];
        for (hour, n) in hourly {
            if let Some(slot) = usize::try_from(hour - first_hour).ok().filter(|i| *i < 24) {
                o.hourly[slot] = n;
            }
        }
        o.top_errors = sqlx::query_as(
            "SELECT error_class, count FROM topic_error_classes WHERE topic = ? ORDER BY count DESC LIMIT 3",
        )
        .bind(&topic)
        .fetch_all(pool)
        .await?;
        out.push(o);
    }
    Ok(out)
}

/// Every topic the index has counted, for filter drop-downs.
pub async fn topic_names(pool: &SqlitePool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT topic FROM topic_status_counts ORDER BY topic")
            .fetch_all(pool)
            .await?,
    )
}

/// Records per topic per status, for /metrics.
pub async fn status_counts(pool: &SqlitePool) -> Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT topic, status, count FROM topic_status_counts ORDER BY topic, status",
    )
    .fetch_all(pool)
    .await?)
}
