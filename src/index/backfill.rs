//! The backfill of payload bodies the indexer did not store while the index's disk was low
//! (`store::deferred`): once free space is back above `--min-free-space`, the bodies are
//! read again from the broker by (topic, partition, offset) and stored exactly as the
//! indexer would have stored them, a small chunk per transaction.
//!
//! It reads with a consumer of its own that assigns itself the partitions at the offsets it
//! needs, like the indexer (no group membership, nothing committed). A record is only taken
//! as the same record if its key and timestamp match the stored ones; one the broker no
//! longer has (below the log start, compacted away, or the log restarted since) is marked
//! lost, and its page says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::consumer::parts_of;
use super::record::{NewRecord, RecordParts};
use crate::error::{Error, Result};
use crate::kafka::KafkaSettings;
use crate::store::deferred::{self, Body, Waiting};
use crate::store::health::{Backoff, WriteHealth, Writer};
use crate::store::{positions, search};

/// Records per pass: each pass is one transaction of the index, held for milliseconds.
pub const CHUNK: i64 = 200;
/// How often an idle backfill looks whether there is work and space for it.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long one partition's read may take before the pass goes on without it (its records
/// stay waiting for the next pass).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the backfill needs.
pub struct Backfill {
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// The index.
    pub pool: SqlitePool,
    /// Where it reports its writes, and the free space threshold.
    pub health: Arc<WriteHealth>,
}

/// What one pass found for one partition's waiting records.
#[derive(Debug, Default)]
struct Read {
    /// Records read again, by offset.
    found: HashMap<i64, RecordParts>,
    /// The partition's log start.
    low: i64,
    /// Its end (the offset after its last record).
    high: i64,
    /// Whether the read reached the last offset asked for (else it timed out).
    complete: bool,
}

impl Backfill {
    /// Backfill until `shutdown`: a pass whenever bodies wait and space allows, retried with
    /// a capped backoff when it fails.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut consumer: Option<Arc<BaseConsumer>> = None;
        let mut search_conn: Option<SqliteConnection> = None;
        let mut after = 0;
        let mut retry = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            let pause = if self.health.space_low() {
                IDLE_POLL
            } else {
                // A pass may wait seconds on a broker that does not answer; stopping drops
                // it, and its write transactions roll back.
                let passed = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    passed = self.pass(&mut consumer, &mut search_conn, &mut after) => passed,
                };
                match passed {
                    Ok(0) => {
                        retry.succeeded();
                        IDLE_POLL
                    }
                    Ok(_) => {
                        retry.succeeded();
                        Duration::ZERO
                    }
                    Err(e) => {
                        // A fresh connection next time: this one may be left in any state.
                        search_conn = None;
                        let pause = retry.failed();
                        tracing::warn!(error = %e, retry_in = ?pause, "backfilling payload bodies failed; retrying");
                        pause
                    }
                }
            };
            if !super::after_pass(pause, &shutdown).await {
                break;
            }
        }
        if let Some(c) = search_conn {
            let _ = c.close().await;
        }
    }

    /// One chunk, the waiting records after record id `after` (moved past them): read their
    /// bodies from the broker, store them (or mark the records lost). Returns how many
    /// records it settled.
    async fn pass(
        &self,
        consumer: &mut Option<Arc<BaseConsumer>>,
        search_conn: &mut Option<SqliteConnection>,
        after: &mut i64,
    ) -> Result<usize> {
        let mut waiting = deferred::waiting(&self.pool, *after, CHUNK).await?;
        if waiting.is_empty() && *after > 0 {
            // Past the last waiting record: start again from the first.
            *after = 0;
            waiting = deferred::waiting(&self.pool, 0, CHUNK).await?;
        }
        if let Some(last) = waiting.last() {
            // The next pass takes the records after this chunk, so that records that cannot
            // be settled now (a broker not answering for their partition) never hold up the
            // others.
            *after = last.id;
        }
        if waiting.is_empty() {
            // Nothing left to write (the records that waited were erased or removed): a
            // failure reported before is over.
            if self.health.writer(Writer::Backfill).failing() {
                self.health.ok(Writer::Backfill);
            }
            return Ok(0);
        }
        let consumer = match consumer {
            Some(c) => c.clone(),
            None => consumer.insert(Arc::new(self.consumer()?)).clone(),
        };
        let generations: HashMap<(String, i32), i64> = positions::all(&self.pool)
            .await?
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.generation))
            .collect();
        let mut by_partition: BTreeMap<(String, i32), Vec<&Waiting>> = BTreeMap::new();
        for w in &waiting {
            by_partition
                .entry((w.topic.clone(), w.partition))
                .or_default()
                .push(w);
        }
        let (mut bodies, mut lost) = (Vec::new(), Vec::new());
        for ((topic, partition), records) in by_partition {
            let current = generations.get(&(topic.clone(), partition)).copied();
            let (of_log, restarted): (Vec<&Waiting>, Vec<&Waiting>) = records
                .into_iter()
                .partition(|w| current == Some(w.generation));
            for w in restarted {
                lost.push((
                    w.id,
                    deferred::lost_sentence(
                        "the partition's log had restarted (the topic was deleted and recreated, or the cluster wiped), so Kafka no longer had it",
                    ),
                ));
            }
            if of_log.is_empty() {
                continue;
            }
            let mut offsets: Vec<i64> = of_log.iter().map(|w| w.offset).collect();
            offsets.sort_unstable();
            let read = match read(consumer.clone(), &topic, partition, offsets).await {
                Ok(r) => r,
                Err(e) => {
                    // The broker is not answering: these records wait for the next pass; the
                    // outage itself is the indexer's to report.
                    tracing::debug!(error = %e, topic, partition, "reading payload bodies again failed");
                    continue;
                }
            };
            for w in of_log {
                if w.offset < read.low {
                    lost.push((
                        w.id,
                        deferred::lost_sentence(&format!(
                            "the broker no longer had it (the partition's log start had moved past offset {} to {})",
                            w.offset, read.low
                        )),
                    ));
                    continue;
                }
                match read.found.get(&w.offset) {
                    Some(parts) if same_record(w, parts) => {
                        let r = NewRecord::from_parts(parts.clone(), crate::clock::now_ms());
                        bodies.push(Body {
                            id: w.id,
                            value: r.value,
                            headers_json: r.headers_json,
                            stacktrace: r.normalised.stacktrace,
                        });
                    }
                    Some(_) => lost.push((
                        w.id,
                        deferred::lost_sentence(&format!(
                            "offset {} of the partition held another record (the log was rewritten since)",
                            w.offset
                        )),
                    )),
                    // Past the log's end: the log restarted shorter, which the indexer finds
                    // and makes a new generation; these are then lost for that reason.
                    None if read.complete && w.offset < read.high => lost.push((
                        w.id,
                        deferred::lost_sentence(&format!(
                            "the broker no longer had offset {} (compacted away)",
                            w.offset
                        )),
                    )),
                    // Not reached in time: next pass.
                    None => {}
                }
            }
        }
        if bodies.is_empty() && lost.is_empty() {
            return Ok(0);
        }
        // Filling the disk back below the threshold would only make the indexer defer the
        // next records' bodies instead: wait for more space.
        let bytes: u64 = bodies
            .iter()
            .map(|b| (b.value.as_ref().map_or(0, Vec::len) + b.headers_json.len()) as u64)
            .sum();
        if self.health.space_low_after(bytes) {
            bodies.clear();
            if lost.is_empty() {
                return Ok(0);
            }
        }
        let conn = match search_conn {
            Some(c) => c,
            None => search_conn.insert(search::connect(&self.pool).await?),
        };
        match deferred::fill(&self.pool, conn, &bodies, &lost, crate::clock::now_ms()).await {
            Ok(outcome) => {
                self.health.ok(Writer::Backfill);
                if outcome.lost > 0 {
                    tracing::warn!(
                        records = outcome.lost,
                        "payload bodies not stored on a low disk could not be read again: the broker no longer has them"
                    );
                }
                tracing::info!(
                    stored = outcome.stored,
                    lost = outcome.lost,
                    "payload bodies not stored on a low disk were read again from Kafka"
                );
                Ok(outcome.stored + outcome.lost)
            }
            Err(e) => {
                self.health.failed(Writer::Backfill, &e);
                Err(e)
            }
        }
    }

    /// A consumer that reads where it is told, in no group, committing nothing.
    fn consumer(&self) -> Result<BaseConsumer> {
        let mut config = self.kafka.client_config();
        config
            .set("group.id", "dlq-dashboard-backfill")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // An offset the log no longer has: the log start, whose first record then shows
            // which offsets are gone.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        Ok(config.create()?)
    }
}

/// Whether a record read again is the one indexed at its offset: the same key, and the same
/// timestamp when it had one.
fn same_record(w: &Waiting, parts: &RecordParts) -> bool {
    w.key == parts.key
        && w.ts
            .is_none_or(|t| parts.timestamp.map(|(ts, _)| ts) == Some(t))
}

/// Read the records at `offsets` (ascending) of one partition, on a blocking thread (the
/// consumer's calls block).
async fn read(
    consumer: Arc<BaseConsumer>,
    topic: &str,
    partition: i32,
    offsets: Vec<i64>,
) -> Result<Read> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_blocking(&consumer, &topic, partition, &offsets))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

fn read_blocking(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offsets: &[i64],
) -> Result<Read> {
    let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
        return Ok(Read::default());
    };
    let (low, high) = consumer.fetch_watermarks(topic, partition, FETCH_TIMEOUT)?;
    let mut read = Read {
        low,
        high,
        ..Read::default()
    };
    // The last offset there is to read: past the log's end, nothing more comes.
    let end = last.min(high - 1);
    if last < low || end < first.max(low) {
        read.complete = true;
        return Ok(read);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(first.max(low)))?;
    consumer.assign(&tpl)?;
    let wanted: std::collections::HashSet<i64> = offsets.iter().copied().collect();
    let started = Instant::now();
    while started.elapsed() < FETCH_TIMEOUT {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, topic, partition, "fetch while reading payload bodies again");
                continue;
            }
        };
        if m.topic() != topic || m.partition() != partition {
            continue;
        }
        let offset = m.offset();
        if wanted.contains(&offset) {
            read.found.insert(offset, parts_of(&m));
        }
        if offset >= end {
            read.complete = true;
            break;
        }
    }
    consumer.unassign()?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(key: Option<&[u8]>, ts: Option<i64>) -> Waiting {
        Waiting {
            id: 1,
            topic: "t.dlq".into(),
            partition: 0,
            generation: 0,
            offset: 7,
            key: key.map(<[u8]>::to_vec),
            ts,
        }
    }

    fn parts(key: Option<&[u8]>, ts: Option<i64>) -> RecordParts {
        RecordParts {
            topic: "t.dlq".into(),
            partition: 0,
            offset: 7,
            timestamp: ts.map(|t| (t, "create")),
            key: key.map(<[u8]>::to_vec),
            ..RecordParts::default()
        }
    }

    #[test]
    fn a_record_read_again_is_the_same_only_with_the_same_key_and_time() {
        assert!(same_record(
            &waiting(Some(b"k"), Some(5)),
            &parts(Some(b"k"), Some(5))
        ));
        assert!(!same_record(
            &waiting(Some(b"k"), Some(5)),
            &parts(Some(b"other"), Some(5))
        ));
        assert!(!same_record(
            &waiting(Some(b"k"), Some(5)),
            &parts(Some(b"k"), Some(6))
        ));
        assert!(!same_record(
            &waiting(None, Some(5)),
            &parts(Some(b"k"), Some(5))
        ));
        // Indexed without a timestamp: only the key can be compared.
        assert!(same_record(
            &waiting(Some(b"k"), None),
            &parts(Some(b"k"), Some(9))
        ));
    }
}
