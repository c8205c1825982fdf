//! The indexer's reading thread: it polls librdkafka (`BaseConsumer::poll`, no async receive
//! per message), copies and normalises each record, and hands whole batches to the writer
//! (`consumer::Indexer::run`) over a channel of one batch, so reading and normalising the
//! next batch overlap the SQLite write of the last one.
//!
//! Batches: once a batch holds [`BATCH_RECORDS`] records or [`BATCH_BYTES`] of payload, or
//! [`BATCH_LINGER`] has passed since its first record, it goes to the writer as soon as the
//! writer takes it. While the writer is busy (a backlog) the reader keeps reading into the
//! same batch, up to [`COALESCE_RECORDS`] / [`COALESCE_BYTES`]: the batch written is what was
//! fetched meanwhile, one transaction for it.
//!
//! Seeks and assignment changes go through this thread ([`Command`]), because records it has
//! already read (in the batch it is forming, or in one handed over) may be from before the
//! seek. Each partition has an epoch; a command carries the partition's next epoch, the
//! reader drops that partition's records from the batch it is forming before it seeks, and
//! every batch says the epoch of each of its partitions. The writer drops records of an
//! epoch older than the one it asked for last ([`Reading::current`]), so a record read
//! before a seek is never stored, and none read after it is lost: librdkafka itself drops
//! prefetched records older than a seek (its op version barrier, taken when `seek` is called).
//!
//! librdkafka serves its callbacks (statistics, errors, commit results) from `poll`, on this
//! thread. The thread stops polling only while it waits for the writer with a batch that is
//! at its cap, or with nothing more to read; it then waits at most one batch write.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;

use super::consumer::{parts_of, IndexerContext};
use super::record::NewRecord;
use super::IndexerStatus;

/// A batch is ready for the writer at this many records...
pub const BATCH_RECORDS: usize = 5000;
/// ...or this many payload bytes...
pub const BATCH_BYTES: usize = 32 * 1024 * 1024;
/// ...or this long after its first record.
pub const BATCH_LINGER: Duration = Duration::from_millis(50);
/// Most records one batch grows to while the writer is busy. One transaction holds the
/// index's write lock for its length: 20k records are ~0.5 s on a laptop.
pub const COALESCE_RECORDS: usize = 20_000;
/// Most payload bytes one batch grows to while the writer is busy (it is held in memory
/// twice at most: one batch being written, one being read).
pub const COALESCE_BYTES: usize = 64 * 1024 * 1024;
/// How long one poll waits when nothing is being batched: the longest a command waits.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// A partition, as the indexer names it.
pub type PartitionKey = (String, i32);

/// Records read together, ready to be written in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, in the order read.
    pub records: Vec<NewRecord>,
    /// The epoch of each partition of `records` when they were read.
    pub epochs: HashMap<PartitionKey, u64>,
}

/// What the writer asks of the reading thread.
#[derive(Debug)]
pub enum Command {
    /// Move a partition's position; records read before are dropped.
    Seek {
        /// Partition.
        key: PartitionKey,
        /// Where to read next.
        offset: Offset,
        /// The partition's epoch from now on.
        epoch: u64,
    },
    /// Change the assignment: add partitions (each from its start, with its new epoch) and
    /// drop others.
    Assign {
        /// Partitions to read, from where, in which epoch.
        add: Vec<(PartitionKey, Offset, u64)>,
        /// Partitions to stop reading.
        drop: Vec<PartitionKey>,
    },
}

/// The writer's side of the reading thread: commands, the epochs it asked for, and the
/// consumer (thread-safe) for commits and the partition states in its context.
pub struct Reading {
    /// The consumer the thread polls.
    pub consumer: Arc<BaseConsumer<IndexerContext>>,
    commands: Sender<Command>,
    wanted: Mutex<HashMap<PartitionKey, u64>>,
    assigning: Arc<AtomicBool>,
}

impl Reading {
    /// Seek a partition through the reading thread; records read before are dropped.
    pub fn seek(&self, topic: &str, partition: i32, offset: Offset) {
        let key = (topic.to_string(), partition);
        let epoch = self.bump(&key);
        // A closed channel means the thread is gone and the indexer is stopping.
        let _ = self.commands.send(Command::Seek { key, offset, epoch });
    }

    /// Ask the thread to change the assignment; it updates the status when done (see
    /// [`Reading::assigning`]).
    pub fn assign(&self, add: Vec<(PartitionKey, Offset)>, drop: Vec<PartitionKey>) {
        let add = add
            .into_iter()
            .map(|(key, offset)| {
                let epoch = self.bump(&key);
                (key, offset, epoch)
            })
            .collect();
        self.assigning.store(true, Ordering::SeqCst);
        if self.commands.send(Command::Assign { add, drop }).is_err() {
            self.assigning.store(false, Ordering::SeqCst);
        }
    }

    /// Whether an assignment change is still being made (the status does not show it yet).
    pub fn assigning(&self) -> bool {
        self.assigning.load(Ordering::SeqCst)
    }

    /// The records of a batch that were read in the epoch last asked for: none read before a
    /// later seek or assignment of their partition.
    pub fn current(&self, batch: Batch) -> Vec<NewRecord> {
        current(&lock(&self.wanted), batch)
    }

    fn bump(&self, key: &PartitionKey) -> u64 {
        let mut wanted = lock(&self.wanted);
        let e = wanted.entry(key.clone()).or_insert(0);
        *e += 1;
        *e
    }
}

/// The records of `batch` whose partition was read in the epoch `wanted` names (0 when
/// it names none).
fn current(wanted: &HashMap<PartitionKey, u64>, batch: Batch) -> Vec<NewRecord> {
    let stale: HashSet<(&str, i32)> = batch
        .epochs
        .iter()
        .filter(|(key, epoch)| wanted.get(*key).copied().unwrap_or(0) != **epoch)
        .map(|((t, p), _)| (t.as_str(), *p))
        .collect();
    if stale.is_empty() {
        return batch.records;
    }
    tracing::debug!(
        partitions = stale.len(),
        "records read before a seek are dropped"
    );
    let mut records = batch.records;
    records.retain(|r| !stale.contains(&(r.topic.as_str(), r.partition)));
    records
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the reading thread; batches arrive on the returned receiver. The thread ends when
/// the receiver or the [`Reading`] is dropped.
pub fn spawn(
    consumer: Arc<BaseConsumer<IndexerContext>>,
    status: Arc<IndexerStatus>,
) -> std::io::Result<(Reading, tokio::sync::mpsc::Receiver<Batch>, JoinHandle<()>)> {
    let (commands, command_rx) = std::sync::mpsc::channel();
    let (batch_tx, batches) = tokio::sync::mpsc::channel(1);
    let assigning = Arc::new(AtomicBool::new(false));
    let thread = Reader {
        consumer: consumer.clone(),
        status,
        commands: command_rx,
        out: batch_tx,
        assigning: assigning.clone(),
        epochs: HashMap::new(),
        forming: Forming::default(),
    };
    let handle = std::thread::Builder::new()
        .name("dlq-indexer-read".into())
        .spawn(move || thread.run())?;
    let reading = Reading {
        consumer,
        commands,
        wanted: Mutex::new(HashMap::new()),
        assigning,
    };
    Ok((reading, batches, handle))
}

/// The batch being read.
#[derive(Default)]
struct Forming {
    records: Vec<NewRecord>,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Forming {
    fn push(&mut self, r: NewRecord) {
        self.bytes += r.value.as_ref().map_or(0, Vec::len);
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        self.records.push(r);
    }

    fn lingered(&self) -> bool {
        self.first_at.is_some_and(|t| t.elapsed() >= BATCH_LINGER)
    }

    /// Ready to go to the writer as soon as it takes it.
    fn ready(&self) -> bool {
        self.records.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES || self.lingered()
    }

    /// At the cap: wait for the writer rather than read more.
    fn full(&self) -> bool {
        self.records.len() >= COALESCE_RECORDS || self.bytes >= COALESCE_BYTES
    }

    fn drop_partition(&mut self, key: &PartitionKey) {
        self.records
            .retain(|r| !(r.partition == key.1 && r.topic == key.0));
        self.bytes = self
            .records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .sum();
        if self.records.is_empty() {
            self.first_at = None;
        }
    }
}

struct Reader {
    consumer: Arc<BaseConsumer<IndexerContext>>,
    status: Arc<IndexerStatus>,
    commands: Receiver<Command>,
    out: tokio::sync::mpsc::Sender<Batch>,
    assigning: Arc<AtomicBool>,
    epochs: HashMap<PartitionKey, u64>,
    forming: Forming,
}

/// Whether the thread goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

impl Reader {
    fn run(mut self) {
        while self.step() == Flow::Go {}
        tracing::debug!("indexer reading thread stopped");
    }

    fn step(&mut self) -> Flow {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
        if self.forming.full() {
            return self.hand_over_waiting();
        }
        let timeout = match self.forming.first_at {
            None => IDLE_POLL,
            Some(t) => BATCH_LINGER.saturating_sub(t.elapsed()),
        };
        // The message borrows the consumer, not `self`.
        let consumer = self.consumer.clone();
        let read = match consumer.poll(timeout) {
            Some(Ok(m)) => {
                let record = NewRecord::from_parts(parts_of(&m), crate::clock::now_ms());
                self.forming.push(record);
                true
            }
            Some(Err(e)) => {
                self.report(e);
                false
            }
            None => false,
        };
        if self.forming.records.is_empty() || !self.forming.ready() {
            return Flow::Go;
        }
        if !read && self.forming.lingered() {
            // Nothing more to read for now: wait for the writer with what there is.
            return self.hand_over_waiting();
        }
        let batch = self.take();
        match self.out.try_send(batch) {
            Ok(()) => Flow::Go,
            Err(TrySendError::Full(batch)) => {
                // The writer is busy: keep reading into the same batch.
                self.put_back(batch);
                Flow::Go
            }
            Err(TrySendError::Closed(_)) => Flow::Stop,
        }
    }

    /// Give the batch to the writer, waiting until it takes it.
    fn hand_over_waiting(&mut self) -> Flow {
        let batch = self.take();
        match self.out.blocking_send(batch) {
            Ok(()) => Flow::Go,
            Err(_) => Flow::Stop,
        }
    }

    /// The forming batch as handed over, with its partitions' epochs.
    fn take(&mut self) -> Batch {
        let forming = std::mem::take(&mut self.forming);
        let mut epochs: HashMap<PartitionKey, u64> = HashMap::new();
        let mut last: Option<(i32, &str)> = None;
        for r in &forming.records {
            // Records come in runs of one partition: compare the number first.
            if last.is_some_and(|(p, t)| p == r.partition && t == r.topic) {
                continue;
            }
            last = Some((r.partition, r.topic.as_str()));
            let key = (r.topic.clone(), r.partition);
            let epoch = self.epochs.get(&key).copied().unwrap_or(0);
            epochs.insert(key, epoch);
        }
        Batch {
            records: forming.records,
            epochs,
        }
    }

    /// A batch the writer could not take yet becomes the forming batch again.
    fn put_back(&mut self, batch: Batch) {
        let bytes = batch
            .records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .sum();
        // It was ready, so it has lingered or is large: keep it ready.
        self.forming = Forming {
            records: batch.records,
            bytes,
            first_at: Some(Instant::now() - BATCH_LINGER),
        };
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Seek { key, offset, epoch } => {
                self.forming.drop_partition(&key);
                self.epochs.insert(key.clone(), epoch);
                // A zero timeout makes the seek asynchronous; librdkafka drops records it
                // prefetched before it.
                if let Err(e) = self.consumer.seek(&key.0, key.1, offset, Duration::ZERO) {
                    tracing::warn!(topic = key.0, partition = key.1, error = %e, "seek failed");
                }
            }
            Command::Assign { add, drop } => {
                self.change_assignment(add, drop);
                self.assigning.store(false, Ordering::SeqCst);
            }
        }
    }

    fn change_assignment(
        &mut self,
        add: Vec<(PartitionKey, Offset, u64)>,
        drop: Vec<PartitionKey>,
    ) {
        if !add.is_empty() {
            let mut tpl = TopicPartitionList::new();
            let mut keys = Vec::with_capacity(add.len());
            let mut failed = None;
            for (key, start, epoch) in add {
                self.forming.drop_partition(&key);
                self.epochs.insert(key.clone(), epoch);
                if let Err(e) = tpl.add_partition_offset(&key.0, key.1, start) {
                    failed = Some(e);
                }
                keys.push(key);
            }
            let result = match failed {
                Some(e) => Err(e),
                None => self.consumer.incremental_assign(&tpl),
            };
            match result {
                Ok(()) => {
                    // Per topic, a count and the range: a topic of hundreds of partitions
                    // listed one by one made a single log line of tens of kilobytes.
                    tracing::info!(partitions = %assigned_summary(&keys), "partitions assigned");
                    self.status.assign(&keys);
                }
                Err(e) => {
                    tracing::error!(error = %e, "partition assignment failed");
                    self.status
                        .set_error(format!("Partition assignment failed: {e}"));
                }
            }
        }
        if !drop.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &drop {
                tpl.add_partition(t, *p);
            }
            match self.consumer.incremental_unassign(&tpl) {
                Ok(()) => {
                    tracing::info!(partitions = ?drop, "partitions of deleted topics unassigned");
                    self.status.revoke(&drop);
                }
                Err(e) => tracing::warn!(error = %e, "unassigning partitions failed"),
            }
        }
    }

    fn report(&self, error: KafkaError) {
        match error {
            KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                self.status.set_error(
                    "Kafka answered that a DLQ topic being read does not exist (was it deleted?); check --dlq-topics.".into(),
                );
            }
            e => {
                tracing::warn!(error = %e, "consume error");
                self.status
                    .set_error(format!("Reading from Kafka failed: {e}"));
            }
        }
    }
}

/// `orders.dlq: 3 (0-2), payments.dlq: 1 (4)`: the partitions of each topic in `keys`, by
/// count and lowest-highest.
fn assigned_summary(keys: &[(String, i32)]) -> String {
    let mut topics: std::collections::BTreeMap<&str, (usize, i32, i32)> = Default::default();
    for (topic, p) in keys {
        let e = topics.entry(topic).or_insert((0, *p, *p));
        *e = (e.0 + 1, e.1.min(*p), e.2.max(*p));
    }
    topics
        .iter()
        .map(|(t, (n, lo, hi))| match lo == hi {
            true => format!("{t}: {n} ({lo})"),
            false => format!("{t}: {n} ({lo}-{hi})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::index::record::RecordParts;

    fn record(topic: &str, partition: i32, offset: i64) -> NewRecord {
        NewRecord::from_parts(
            RecordParts {
                topic: topic.into(),
                partition,
                offset,
                ..Default::default()
            },
            0,
        )
    }

    fn batch(records: Vec<NewRecord>, epochs: &[(&str, i32, u64)]) -> Batch {
        Batch {
            records,
            epochs: epochs
                .iter()
                .map(|(t, p, e)| ((t.to_string(), *p), *e))
                .collect(),
        }
    }

    fn offsets(records: &[NewRecord]) -> Vec<(String, i32, i64)> {
        records
            .iter()
            .map(|r| (r.topic.clone(), r.partition, r.offset))
            .collect()
    }

    #[test]
    fn records_read_before_a_seek_of_their_partition_are_dropped_and_no_others() {
        let records = vec![record("a", 0, 5), record("a", 1, 7), record("b", 0, 1)];
        // a/0 was sought again (epoch 2) after the batch was read in epoch 1.
        let wanted: HashMap<PartitionKey, u64> = [(("a".into(), 0), 2), (("a".into(), 1), 1)]
            .into_iter()
            .collect();
        let kept = current(
            &wanted,
            batch(records, &[("a", 0, 1), ("a", 1, 1), ("b", 0, 0)]),
        );
        assert_eq!(offsets(&kept), vec![("a".into(), 1, 7), ("b".into(), 0, 1)]);
    }

    #[test]
    fn a_batch_read_in_the_current_epochs_is_kept_whole() {
        let wanted: HashMap<PartitionKey, u64> = [(("a".into(), 0), 3)].into_iter().collect();
        let kept = current(
            &wanted,
            batch(vec![record("a", 0, 1), record("a", 0, 2)], &[("a", 0, 3)]),
        );
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn a_partition_sought_while_a_batch_forms_loses_its_records_from_that_batch() {
        let mut forming = Forming::default();
        for (p, o) in [(0, 1), (1, 1), (0, 2)] {
            let mut r = record("a", p, o);
            r.value = Some(vec![0; 10]);
            forming.push(r);
        }
        forming.drop_partition(&("a".into(), 0));
        assert_eq!(offsets(&forming.records), vec![("a".into(), 1, 1)]);
        assert_eq!(forming.bytes, 10);
        forming.drop_partition(&("a".into(), 1));
        assert!(forming.first_at.is_none() && forming.bytes == 0);
    }

    #[test]
    fn assigned_partitions_are_logged_per_topic_as_a_count_and_a_range() {
        let keys: Vec<(String, i32)> = (0..320)
            .map(|p| ("b.dlq".to_string(), p))
            .chain([("a.dlq".to_string(), 4)])
            .collect();
        assert_eq!(assigned_summary(&keys), "a.dlq: 1 (4), b.dlq: 320 (0-319)");
    }
}
