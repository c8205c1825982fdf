//! The consumer loop: read every partition of the DLQ topics, batch records, write each
//! batch and the positions it advances in one SQLite transaction.
//!
//! Positions live in SQLite, not in Kafka, so the indexer joins no consumer group: it assigns
//! itself every partition of the matching topics (`incremental_assign`). A group would split
//! the partitions between two dashboards that each keep their own index file, and each would
//! silently show part of every topic. Every `DISCOVER_EVERY` the cluster's topic list
//! (metadata) is matched against the selection ([`TopicSelection`], names and patterns): new
//! topics and partitions are assigned, partitions the cluster no longer has are dropped from
//! the assignment, their SQLite positions kept for when the topic comes back.
//!
//! A partition starts at the position SQLite holds (or the beginning), so a new database file
//! always indexes the whole topic, and a crash between the SQLite commit and the Kafka commit
//! re-reads records that the unique key then skips. Offsets are still committed to Kafka
//! afterwards, for the usual lag tooling only, under `group_id` (by default unique to the
//! index file): librdkafka commits for a consumer that is not a group member (the broker
//! checks no membership for a group with no members; librdkafka's mock cluster accepts it
//! too). A broker that refuses (a group of that id with live members answers
//! UNKNOWN_MEMBER_ID) costs only the lag tools' view: the refusal is logged at debug.
//!
//! The broker's log can move under the index: retention deletes records not yet indexed, or
//! a topic is deleted and recreated and its offsets start again. Each batch's first record
//! per partition is checked against the stored position (and every assignment starts one
//! record early, so that this check always has an indexed record to compare): a record
//! below the position must be the same record as the one stored, else the log restarted
//! (it becomes a new generation of the partition, and the old rows stay); a record past the
//! position with the log start past it means records were deleted before they were indexed
//! (a gap, recorded and shown). Nothing is skipped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::metadata::Metadata;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::normalise::RawHeader;
use super::reader::{self, Reading};
use super::record::{NewRecord, RecordParts};
use super::IndexerStatus;
use crate::kafka::{native, KafkaSettings};
use crate::store::events::{self, IndexEvent, LOG_RESET, RETENTION_GAP};
use crate::store::expiry;
use crate::store::health::{Backoff, FaultKind, WriteHealth, Writer};
use crate::store::positions::{self, Position};
use crate::store::records;
use crate::topics::TopicSelection;

/// How often stored positions are compared with the brokers' watermarks: the high one (a
/// restarted log) and the low one (records the broker no longer has, see `expire`).
const AUDIT_EVERY: Duration = Duration::from_secs(5);
/// How often the cluster's topic list is read for new matching topics and partitions (and
/// for deleted ones): the longest a new DLQ topic waits before it is indexed.
const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// How long one metadata request may take; the loop does not read records meanwhile.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause after a failed batch write, doubled per failure up to
/// [`WRITE_RETRY_CAP`]: the longest the indexer stays idle after the cause (a full disk, a
/// read-only file, a held lock) is gone.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to write a batch.
const WRITE_RETRY_CAP: Duration = Duration::from_secs(5);

/// What the indexer knows about one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Generation of the partition's log.
    pub generation: i64,
    /// The offset after the last indexed record; None before the first.
    pub next_offset: Option<i64>,
}

impl PartitionState {
    /// Where to start reading on assignment: one record before the stored position, so that
    /// the first record read is one already indexed and proves the log is the same log.
    pub fn start(&self) -> Offset {
        match self.next_offset {
            Some(next) if next > 0 => Offset::Offset(next - 1),
            Some(next) => Offset::Offset(next),
            None => Offset::Beginning,
        }
    }
}

/// What the first record of a partition in a batch says about the partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    /// It follows the stored position: store everything.
    Continues,
    /// It re-reads records already indexed (after an assignment or a restart): drop those.
    Reread,
    /// Records from the stored position up to `low` were deleted before being indexed.
    Gap { low: i64 },
    /// The log restarted under the same name: a new generation from its beginning.
    Restarted,
}

type States = Arc<Mutex<HashMap<(String, i32), PartitionState>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Consumer callbacks: assignment from SQLite positions, connection state from statistics.
pub struct IndexerContext {
    status: Arc<IndexerStatus>,
    states: States,
}

impl ClientContext for IndexerContext {
    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        if up {
            self.status.set_connected(true, None);
        }
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.hi_offset >= 0 {
                    self.status
                        .set_high_watermark(topic, *partition, p.hi_offset);
                }
                if *partition >= 0 && p.lo_offset >= 0 {
                    self.status
                        .set_low_watermark(topic, *partition, p.lo_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.status.set_connected(
                    false,
                    Some(format!("All Kafka brokers are unreachable ({reason}).")),
                );
            }
            // Repeated on every reconnect attempt while a broker is down; the banner and
            // /readyz already say so.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(%error, reason, "kafka connection failed");
                self.status.set_error(format!("{error}: {reason}"));
            }
            _ => {
                tracing::warn!(%error, reason, "kafka client error");
                self.status.set_error(format!("{error}: {reason}"));
            }
        }
    }
}

// No rebalance callback: the indexer is in no group, it assigns partitions itself
// (`Indexer::discover`).
impl ConsumerContext for IndexerContext {}

/// A topic as the cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClusterTopic {
    /// The topic exists with these partitions.
    Partitions(Vec<i32>),
    /// The broker answered with an error other than "unknown topic" (a leader election, a
    /// topic being created): keep the assignment as it is until the next look.
    Unsettled,
}

/// What the cluster's topic list changes in the assignment.
#[derive(Debug, Default, PartialEq, Eq)]
struct AssignmentChange {
    /// Matching partitions not assigned yet.
    add: Vec<(String, i32)>,
    /// Assigned partitions the cluster no longer has.
    drop: Vec<(String, i32)>,
    /// Topics named exactly in the selection that the cluster does not have.
    missing: Vec<String>,
}

/// Compare the cluster's topics with the selection and the current assignment. A topic
/// absent from the answer (or answered as unknown) is gone; its partitions are dropped.
fn plan_assignment(
    selection: &TopicSelection,
    cluster: &BTreeMap<String, ClusterTopic>,
    assigned: &BTreeSet<(String, i32)>,
) -> AssignmentChange {
    let mut change = AssignmentChange::default();
    for (topic, state) in cluster {
        let ClusterTopic::Partitions(partitions) = state else {
            continue;
        };
        if !selection.matches(topic) {
            continue;
        }
        for p in partitions {
            let key = (topic.clone(), *p);
            if !assigned.contains(&key) {
                change.add.push(key);
            }
        }
    }
    change.drop = assigned
        .iter()
        .filter(|(t, p)| match cluster.get(t) {
            None => true,
            Some(ClusterTopic::Unsettled) => false,
            Some(ClusterTopic::Partitions(ps)) => !ps.contains(p),
        })
        .cloned()
        .collect();
    change.missing = selection
        .names()
        .iter()
        .filter(|n| !matches!(cluster.get(*n), Some(ClusterTopic::Partitions(_))))
        .cloned()
        .collect();
    change
}

/// The topics of a metadata answer (of every topic), by name.
fn cluster_topics(metadata: &Metadata) -> BTreeMap<String, ClusterTopic> {
    metadata
        .topics()
        .iter()
        .filter_map(|t| {
            let state = match t.error() {
                None => ClusterTopic::Partitions(t.partitions().iter().map(|p| p.id()).collect()),
                Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return None,
                Some(_) => ClusterTopic::Unsettled,
            };
            Some((t.name().to_string(), state))
        })
        .collect()
}

/// Everything the indexer needs.
pub struct Indexer {
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// Which topics.
    pub topics: TopicSelection,
    /// The group offsets are committed under, for lag tools; never joined.
    pub group_id: String,
    /// The index.
    pub pool: SqlitePool,
    /// Shared status.
    pub status: Arc<IndexerStatus>,
    /// Whether the index can be written, for /readyz, the banner and metrics.
    pub health: Arc<WriteHealth>,
    /// A plain client for watermark and metadata queries, created on first use.
    pub probe: std::sync::OnceLock<Arc<rdkafka::consumer::BaseConsumer>>,
    /// Per partition, the count of broker outages (`IndexerStatus::disconnects`) through
    /// which its log was last seen to be the stored one. Missing means before the first.
    pub verified: Mutex<HashMap<(String, i32), u64>>,
}

impl Indexer {
    /// Create the consumer (it reads nothing until `run` assigns partitions); errors here are
    /// configuration errors.
    pub async fn connect(&self) -> crate::error::Result<BaseConsumer<IndexerContext>> {
        let stored = positions::all(&self.pool).await?;
        self.status.seed_positions(
            &stored
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.next_offset))
                .collect::<Vec<_>>(),
        );
        let states: HashMap<(String, i32), PartitionState> = stored
            .into_iter()
            .map(|p| {
                let state = PartitionState {
                    generation: p.generation,
                    next_offset: Some(p.next_offset),
                };
                ((p.topic, p.partition), state)
            })
            .collect();
        let context = IndexerContext {
            status: self.status.clone(),
            states: Arc::new(Mutex::new(states)),
        };
        let mut config = self.kafka.client_config();
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A stored position the log no longer has falls back to the log's start; the first
            // record read then shows the jump, which is examined and reported, never silent
            // (see `check_continuity`).
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            // Leaders of the assigned partitions are looked up again this often (the default
            // is 5 minutes). New topics are found by `discover`.
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in &self.kafka.extra {
            config.set(key, value);
        }
        let consumer: BaseConsumer<IndexerContext> = config.create_with_context(context)?;
        Ok(consumer)
    }

    /// Index until `shutdown`; survives broker outages and bad records, retries failed writes.
    /// Records are read and normalised on a thread of their own ([`reader`]); this task
    /// writes the batches it hands over.
    pub async fn run(self, consumer: BaseConsumer<IndexerContext>, shutdown: CancellationToken) {
        let consumer = Arc::new(consumer);
        let (reading, mut batches, thread) = match reader::spawn(consumer, self.status.clone()) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "the indexer's reading thread could not start");
                self.status.set_error(format!(
                    "The indexer could not start ({e}); restart the dashboard."
                ));
                return;
            }
        };
        let mut pending: Vec<NewRecord> = Vec::new();
        let mut audit = tokio::time::interval(AUDIT_EVERY);
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first tick is immediate: the first assignment is made on start.
        let mut discover = tokio::time::interval(DISCOVER_EVERY);
        discover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut was_connected = false;
        let mut retry = Backoff::new(WRITE_RETRY_FIRST, WRITE_RETRY_CAP);
        loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    batch = batches.recv() => match batch {
                        Some(batch) => pending = reading.current(batch),
                        None => {
                            tracing::error!("the indexer's reading thread stopped");
                            break;
                        }
                    },
                    _ = discover.tick() => {
                        // An assignment change the reading thread is still making is not in
                        // the status yet: looking again now would ask for it twice.
                        if reading.assigning() {
                            continue;
                        }
                        // Unreachable brokers keep the assignment as it is; the outage is
                        // reported by the statistics and error callbacks.
                        if let Err(e) = self.discover(&reading).await {
                            tracing::debug!(error = %e, "reading the cluster's topic list failed");
                        }
                        continue;
                    }
                    _ = audit.tick() => {
                        let connected = self.status.is_connected();
                        if connected && !was_connected {
                            self.reverify(&reading);
                        }
                        was_connected = connected;
                        if let Err(e) = self.audit(&reading).await {
                            tracing::warn!(error = %e, "checking positions against the brokers failed");
                        }
                        continue;
                    }
                }
            }
            if pending.is_empty() {
                continue;
            }
            match self.write(&reading, &mut pending).await {
                Ok(()) => {
                    pending.clear();
                    self.health.ok(Writer::Indexer);
                    retry.succeeded();
                }
                Err(e) => {
                    // Keep the batch and try again, with neither the stored positions nor the
                    // consumer's moved: the records are in memory (the reading thread holds
                    // at most one more batch meanwhile), and dropping them would skip them
                    // for good once a later batch advances the position. A batch that did
                    // reach SQLite before failing was rolled back whole, so the retry
                    // doubles nothing.
                    let kind = self.health.failed(Writer::Indexer, &e);
                    let pause = retry.failed();
                    tracing::error!(error = %e, kind = kind.as_str(), retry_in = ?pause, "writing to the index failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        // Nothing is lost by stopping here: unwritten records are re-read from the stored
        // positions next time. No group to leave. Dropping both ends of the thread's
        // channels stops it within one poll.
        drop(batches);
        drop(reading);
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_or(true, |joined| joined.is_err())
        {
            tracing::warn!("the indexer's reading thread did not stop cleanly");
        }
        tracing::info!("indexer stopped");
    }

    /// Read the cluster's topic list and bring the assignment in line with it: matching
    /// partitions not read yet are assigned, each from its stored position exactly as on
    /// start (one record early, see [`PartitionState::start`]); partitions the cluster no
    /// longer has are unassigned, their state kept here and in SQLite.
    async fn discover(&self, reading: &Reading) -> crate::error::Result<()> {
        let probe = self.probe()?;
        let metadata =
            tokio::task::spawn_blocking(move || probe.fetch_metadata(None, METADATA_TIMEOUT))
                .await
                .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))??;
        let cluster = cluster_topics(&metadata);
        let assigned: BTreeSet<(String, i32)> = self.status.assigned().into_iter().collect();
        let change = plan_assignment(&self.topics, &cluster, &assigned);
        if !change.missing.is_empty() {
            self.status.set_error(format!(
                "The DLQ topic {} does not exist on the cluster (yet); check --dlq-topics.",
                change.missing.join(", ")
            ));
        }
        if change.add.is_empty() && change.drop.is_empty() {
            return Ok(());
        }
        let starts: Vec<((String, i32), Offset)> = {
            let mut states = lock(&reading.consumer.context().states);
            change
                .add
                .iter()
                .map(|(t, p)| {
                    let start = states.entry((t.clone(), *p)).or_default().start();
                    ((t.clone(), *p), start)
                })
                .collect()
        };
        // The reading thread assigns (librdkafka waits on its main thread there, which can
        // be busy reconnecting) and then updates the status.
        reading.assign(starts, change.drop);
        Ok(())
    }

    /// Check each partition's first record in the batch against the stored position: the
    /// log must continue where the index stands. A re-read of indexed records is dropped, a
    /// gap is recorded, a restarted log becomes a new generation. Removes from the batch what
    /// must not be stored.
    async fn check_continuity(
        &self,
        reading: &Reading,
        batch: &mut Vec<NewRecord>,
    ) -> crate::error::Result<()> {
        let mut firsts: Vec<(usize, PartitionState)> = Vec::new();
        {
            let states = lock(&reading.consumer.context().states);
            let mut seen = std::collections::HashSet::new();
            for (i, r) in batch.iter().enumerate() {
                if seen.insert((r.topic.as_str(), r.partition)) {
                    let state = states
                        .get(&(r.topic.clone(), r.partition))
                        .copied()
                        .unwrap_or_default();
                    firsts.push((i, state));
                }
            }
        }
        let mut drops: Vec<(String, i32, i64)> = Vec::new();
        let disconnects = self.status.disconnects();
        for (i, state) in firsts {
            let (topic, partition, first) =
                (batch[i].topic.clone(), batch[i].partition, batch[i].offset);
            let Some(next) = state.next_offset else {
                continue;
            };
            let key = (topic.clone(), partition);
            let checked = lock(&self.verified).get(&key).copied().unwrap_or(0) >= disconnects;
            if first >= next && next > 0 && !checked {
                // The brokers were gone since this partition's log was last compared: a
                // wiped cluster refilled past the stored position looks like a
                // continuation. Nothing past the position is taken until the last indexed
                // record has been read again and compared (`reverify` seeks there too, but
                // records fetched before it did would slip through).
                drops.push((topic.clone(), partition, i64::MAX));
                reading.seek(&topic, partition, Offset::Offset(next - 1));
                continue;
            }
            if first < next {
                lock(&self.verified).insert(key, disconnects);
            }
            let verdict = if first < next {
                let r = &batch[i];
                match records::identity(&self.pool, &topic, partition, state.generation, first)
                    .await?
                {
                    Some((ts, key, value)) => {
                        let same_time = ts.is_none_or(|t| r.timestamp_type.is_none() || t == r.ts);
                        // A payload the index does not hold (erased, or deferred on a low
                        // disk) cannot be compared; the time and key still are.
                        let same_value = value.is_none_or(|v| v == r.value);
                        if same_time && key == r.key && same_value {
                            Continuity::Reread
                        } else {
                            Continuity::Restarted
                        }
                    }
                    // Nothing stored there (compacted away before): nothing to compare.
                    None => Continuity::Reread,
                }
            } else if first > next {
                // Offsets also jump over transaction markers and compacted records; only a log
                // start past the stored position means records were deleted unread.
                let low = self.low_watermark(&topic, partition).await?;
                if low > next {
                    Continuity::Gap { low }
                } else {
                    Continuity::Continues
                }
            } else {
                Continuity::Continues
            };
            match verdict {
                Continuity::Continues => {}
                Continuity::Reread => drops.push((topic, partition, next)),
                Continuity::Gap { low } => {
                    let event = IndexEvent {
                        topic: topic.clone(),
                        partition,
                        kind: RETENTION_GAP.into(),
                        generation: state.generation,
                        from_offset: Some(next),
                        to_offset: Some(low),
                        message: format!(
                            "Records at offsets {next} to {} of {topic} partition {partition} were deleted by the broker (retention) before the dashboard indexed them.",
                            low - 1
                        ),
                        detected_at: crate::clock::now_ms(),
                    };
                    tracing::warn!(
                        topic,
                        partition,
                        from = next,
                        to = low,
                        "records deleted before they were indexed"
                    );
                    let position = Position {
                        topic: topic.clone(),
                        partition,
                        generation: state.generation,
                        next_offset: low,
                    };
                    events::record(&self.pool, &event, &position).await?;
                    self.set_state(reading, &topic, partition, state.generation, Some(low));
                }
                Continuity::Restarted => {
                    self.restart_log(&topic, partition, state.generation, next)
                        .await?;
                    self.set_state(reading, &topic, partition, state.generation + 1, None);
                    // What was read may start mid-log: read the new generation from its start.
                    drops.push((topic.clone(), partition, i64::MAX));
                    reading.seek(&topic, partition, Offset::Beginning);
                }
            }
        }
        for (topic, partition, below) in drops {
            batch.retain(|r| !(r.topic == topic && r.partition == partition && r.offset < below));
        }
        Ok(())
    }

    /// After the brokers were unreachable the cluster may have come back wiped and refilled,
    /// with offsets that look like a continuation. Re-reading the last indexed record of every
    /// assigned partition lets `check_continuity` compare it with the stored one.
    fn reverify(&self, reading: &Reading) {
        // The status's copy of the assignment: rd_kafka_assignment() would block this async
        // thread on librdkafka's main thread, which can be busy reconnecting.
        for (topic, partition) in self.status.assigned() {
            let state = lock(&reading.consumer.context().states)
                .get(&(topic.clone(), partition))
                .copied();
            if let Some(Offset::Offset(o)) = state.map(|s| s.start()) {
                reading.seek(&topic, partition, Offset::Offset(o));
            }
        }
    }

    /// A log that restarted while it was being read may never say so: a broker can answer a
    /// fetch past its end with no records and no error (tansu does), and the consumer then
    /// waits there. A high watermark below the stored position is the sign; it is confirmed
    /// with the broker before the partition starts a new generation.
    async fn audit(&self, reading: &Reading) -> crate::error::Result<()> {
        // A partition no longer read (its topic was deleted) has stale statistics, and the
        // broker cannot confirm them: asking would fail the audit of every other partition.
        let assigned: BTreeSet<(String, i32)> = self.status.assigned().into_iter().collect();
        for (topic, partition, high) in self.status.high_watermarks() {
            if !assigned.contains(&(topic.clone(), partition)) {
                continue;
            }
            let state = lock(&reading.consumer.context().states)
                .get(&(topic.clone(), partition))
                .copied();
            let Some(PartitionState {
                generation,
                next_offset: Some(next),
            }) = state
            else {
                continue;
            };
            if high >= next {
                continue;
            }
            let (_, confirmed_high) = self.watermarks(&topic, partition).await?;
            if confirmed_high < next {
                self.restart_log(&topic, partition, generation, next)
                    .await?;
                self.set_state(reading, &topic, partition, generation + 1, None);
                reading.seek(&topic, partition, Offset::Beginning);
            }
        }
        self.expire(reading).await
    }

    /// Records the broker no longer has: a log start in the fetch answers (the client's
    /// statistics) past the stored one is confirmed with the broker (ListOffsets), then the
    /// indexed records of the generation below it become `expired`. Like the high watermark
    /// above, a watermark alone is never acted on: tansu's ListOffsets answers (0, 1) for a
    /// partition of 40 records, and a fetch answer may carry none.
    async fn expire(&self, reading: &Reading) -> crate::error::Result<()> {
        let assigned: BTreeSet<(String, i32)> = self.status.assigned().into_iter().collect();
        let lows: Vec<_> = self
            .status
            .low_watermarks()
            .into_iter()
            .filter(|(t, p, _)| assigned.contains(&(t.clone(), *p)))
            .collect();
        if lows.is_empty() {
            return Ok(());
        }
        let stored = expiry::log_starts(&self.pool).await?;
        for (topic, partition, low) in lows {
            let key = (topic.clone(), partition);
            let Some(known) = stored.get(&key) else {
                continue;
            };
            let reading = lock(&reading.consumer.context().states)
                .get(&key)
                .map(|s| s.generation);
            // The first look at a partition stores its log start even at 0, for the topic page.
            let moved = |l: i64| known.log_start.is_none_or(|k| l > k);
            if reading != Some(known.generation) || !moved(low) {
                continue;
            }
            let (confirmed, _) = self.watermarks(&topic, partition).await?;
            if !moved(confirmed) {
                continue;
            }
            let n =
                expiry::expire_below(&self.pool, &topic, partition, known.generation, confirmed)
                    .await?;
            if n > 0 {
                tracing::info!(
                    topic,
                    partition,
                    log_start = confirmed,
                    records = n,
                    "records the broker no longer has are marked expired"
                );
            }
        }
        Ok(())
    }

    /// The first offset the broker still has for a partition. A long-lived client on a
    /// blocking thread: the round trip blocks, and it must not disturb the indexing consumer.
    async fn low_watermark(&self, topic: &str, partition: i32) -> crate::error::Result<i64> {
        Ok(self.watermarks(topic, partition).await?.0)
    }

    /// The low and high watermarks of a partition, asked of the broker.
    async fn watermarks(&self, topic: &str, partition: i32) -> crate::error::Result<(i64, i64)> {
        let probe = self.probe()?;
        let topic = topic.to_string();
        let watermarks = tokio::task::spawn_blocking(move || {
            probe.fetch_watermarks(&topic, partition, Duration::from_secs(10))
        })
        .await
        .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))??;
        Ok(watermarks)
    }

    /// The plain client for watermark and metadata queries, created on first use.
    fn probe(&self) -> crate::error::Result<Arc<rdkafka::consumer::BaseConsumer>> {
        Ok(match self.probe.get() {
            Some(p) => p.clone(),
            None => {
                let p: Arc<rdkafka::consumer::BaseConsumer> =
                    Arc::new(self.kafka.client_config().create()?);
                self.probe.get_or_init(|| p).clone()
            }
        })
    }

    /// Record that a partition's log restarted: generation + 1, old rows kept.
    async fn restart_log(
        &self,
        topic: &str,
        partition: i32,
        generation: i64,
        next: i64,
    ) -> crate::error::Result<()> {
        let event = IndexEvent {
            topic: topic.to_string(),
            partition,
            kind: LOG_RESET.into(),
            generation: generation + 1,
            from_offset: Some(next),
            to_offset: None,
            message: format!(
                "Offsets of {topic} partition {partition} restarted (the topic was deleted and recreated, or the cluster was wiped). Records indexed before are kept as generation {generation}; new records are indexed as generation {}.",
                generation + 1
            ),
            detected_at: crate::clock::now_ms(),
        };
        tracing::warn!(
            topic,
            partition,
            generation = generation + 1,
            "partition log restarted"
        );
        let position = Position {
            topic: topic.to_string(),
            partition,
            generation: generation + 1,
            next_offset: 0,
        };
        events::record(&self.pool, &event, &position).await?;
        Ok(())
    }

    fn set_state(
        &self,
        reading: &Reading,
        topic: &str,
        partition: i32,
        generation: i64,
        next_offset: Option<i64>,
    ) {
        lock(&reading.consumer.context().states).insert(
            (topic.to_string(), partition),
            PartitionState {
                generation,
                next_offset,
            },
        );
    }

    /// Check first records, stamp generations, and store the batch with its positions.
    async fn write(
        &self,
        reading: &Reading,
        batch: &mut Vec<NewRecord>,
    ) -> crate::error::Result<()> {
        self.check_continuity(reading, batch).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut next: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        {
            let states = lock(&reading.consumer.context().states);
            for r in batch.iter_mut() {
                let key = (r.topic.clone(), r.partition);
                r.generation = states.get(&key).map_or(0, |s| s.generation);
                let e = next.entry(key).or_insert((r.generation, r.offset + 1));
                e.1 = e.1.max(r.offset + 1);
            }
        }
        let advance: Vec<Position> = next
            .iter()
            .map(|((t, p), &(generation, n))| Position {
                topic: t.clone(),
                partition: *p,
                generation,
                next_offset: n,
            })
            .collect();
        // Below --min-free-space the metadata goes on being stored and the bodies wait (see
        // `store::deferred`): the index keeps up with the topic and says what it lacks,
        // instead of filling the disk with payloads and then storing nothing at all.
        // A batch that met a full disk last time is written without its bodies too
        // (unless deferring is off): its metadata may still fit.
        let body_bytes: u64 = batch
            .iter()
            .map(|r| (r.value.as_ref().map_or(0, Vec::len) + r.headers_json.len()) as u64)
            .sum();
        let met_full_disk = self
            .health
            .writer(Writer::Indexer)
            .current()
            .is_some_and(|f| f.kind == FaultKind::DiskFull);
        let defer_bodies = self.health.space_low_after(body_bytes)
            || (met_full_disk && self.health.defers_bodies());
        let outcome = records::insert_batch_deferring(
            &self.pool,
            batch,
            &advance,
            crate::clock::now_ms(),
            defer_bodies,
        )
        .await?;
        if defer_bodies && outcome.inserted > 0 {
            tracing::warn!(
                records = outcome.inserted,
                "the index's disk is below --min-free-space: records stored without their payload bodies, which are read again from Kafka once space is freed"
            );
        }
        {
            let mut states = lock(&reading.consumer.context().states);
            for p in &advance {
                let s = states.entry((p.topic.clone(), p.partition)).or_default();
                if s.generation == p.generation {
                    s.next_offset = Some(
                        s.next_offset
                            .map_or(p.next_offset, |n| n.max(p.next_offset)),
                    );
                }
            }
        }
        let positions: Vec<(String, i32, i64)> = advance
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.next_offset))
            .collect();
        self.status.indexed(outcome.inserted, &positions);
        // Records arrived, so a broker answers, whatever the last statistics said.
        self.status.set_connected(true, None);
        if outcome.already_indexed > 0 {
            tracing::debug!(
                skipped = outcome.already_indexed,
                "records already indexed were skipped"
            );
        }
        let mut tpl = TopicPartitionList::new();
        for p in &advance {
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
        }
        // Best effort, for external lag tools only; SQLite holds the truth.
        if let Err(e) = reading.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "offset commit to Kafka failed");
        }
        Ok(())
    }
}

/// Copy what the index needs out of a consumed message.
pub fn parts_of(m: &BorrowedMessage<'_>) -> RecordParts {
    let timestamp = match m.timestamp() {
        Timestamp::CreateTime(t) => Some((t, "create")),
        Timestamp::LogAppendTime(t) => Some((t, "log_append")),
        Timestamp::NotAvailable => None,
    };
    let headers = read_headers(m);
    RecordParts {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp,
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Read a message's headers, with header names that are not UTF-8 decoded lossily (through
/// librdkafka's C API: rdkafka's own accessor panics on such a name, see
/// [`native::for_each_header`]).
pub fn read_headers(m: &BorrowedMessage<'_>) -> Vec<RawHeader> {
    let mut out = Vec::new();
    native::for_each_header(m, |name, value| {
        out.push(RawHeader {
            name: name.into_owned(),
            value: value.map(<[u8]>::to_vec),
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(topics: &[(&str, Option<&[i32]>)]) -> BTreeMap<String, ClusterTopic> {
        topics
            .iter()
            .map(|(t, ps)| {
                let state = match ps {
                    Some(ps) => ClusterTopic::Partitions(ps.to_vec()),
                    None => ClusterTopic::Unsettled,
                };
                (t.to_string(), state)
            })
            .collect()
    }

    fn parts(items: &[(&str, i32)]) -> Vec<(String, i32)> {
        items.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn new_topics_and_partitions_are_added_and_gone_ones_dropped() {
        let selection = TopicSelection::parse(&["^.*\\.dlq$".into(), "named".into()]).unwrap();
        let assigned: BTreeSet<(String, i32)> = parts(&[
            ("a.dlq", 0),
            ("a.dlq", 1),
            ("gone.dlq", 0),
            ("shrunk.dlq", 1),
        ])
        .into_iter()
        .collect();
        let now = cluster(&[
            ("a.dlq", Some(&[0, 1, 2])),
            ("b.dlq", Some(&[0])),
            ("shrunk.dlq", Some(&[0])),
            ("orders", Some(&[0, 1])),
        ]);
        let change = plan_assignment(&selection, &now, &assigned);
        assert_eq!(
            change.add,
            parts(&[("a.dlq", 2), ("b.dlq", 0), ("shrunk.dlq", 0)])
        );
        assert_eq!(change.drop, parts(&[("gone.dlq", 0), ("shrunk.dlq", 1)]));
        assert_eq!(change.missing, vec!["named".to_string()]);
    }

    #[test]
    fn an_unsettled_topic_keeps_its_assignment_and_gains_nothing() {
        let selection = TopicSelection::parse(&[]).unwrap();
        let assigned: BTreeSet<(String, i32)> = parts(&[("a.dlq", 0)]).into_iter().collect();
        let change = plan_assignment(&selection, &cluster(&[("a.dlq", None)]), &assigned);
        assert_eq!(change, AssignmentChange::default());
    }

    #[test]
    fn start_rereads_the_last_indexed_record() {
        let s = PartitionState {
            generation: 0,
            next_offset: Some(10),
        };
        assert_eq!(s.start(), Offset::Offset(9));
        assert_eq!(
            PartitionState {
                generation: 0,
                next_offset: Some(0)
            }
            .start(),
            Offset::Offset(0)
        );
        assert_eq!(PartitionState::default().start(), Offset::Beginning);
    }
}
