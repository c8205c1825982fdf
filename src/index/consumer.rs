//! The consumer loop: subscribe to the DLQ topics, batch records, write each batch and the
//! positions it advances in one SQLite transaction.
//!
//! Positions live in SQLite, not in Kafka: on every assignment the partition is started at
//! the position SQLite holds (or the beginning), so a new database file always indexes the
//! whole topic and a crash between the SQLite commit and the Kafka commit re-reads records
//! that the unique key then skips. Offsets are still committed to Kafka afterwards so that
//! the usual lag tooling sees the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use rdkafka_sys as rdsys;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::normalise::RawHeader;
use super::record::{NewRecord, RecordParts};
use super::IndexerStatus;
use crate::config::TopicSelection;
use crate::kafka::KafkaSettings;
use crate::store::positions::{self, Position};
use crate::store::{self, records};

/// Most records written in one transaction.
const MAX_BATCH_RECORDS: usize = 5000;
/// Most payload bytes written in one transaction.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// How long to wait for more records before writing a partial batch.
const BATCH_LINGER: Duration = Duration::from_millis(50);

type PositionMap = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Consumer callbacks: assignment from SQLite positions, connection state from statistics.
pub struct IndexerContext {
    status: Arc<IndexerStatus>,
    positions: PositionMap,
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
            _ => {
                tracing::warn!(%error, reason, "kafka client error");
                self.status.set_error(format!("{error}: {reason}"));
            }
        }
    }
}

impl ConsumerContext for IndexerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                {
                    let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                    for (topic, partition) in &parts {
                        let start = match positions.get(&(topic.clone(), *partition)) {
                            Some(next) => Offset::Offset(*next),
                            None => Offset::Beginning,
                        };
                        if let Err(e) = tpl.set_partition_offset(topic, *partition, start) {
                            tracing::error!(topic, partition, error = %e, "cannot set start offset");
                        }
                    }
                }
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "partition assignment failed");
                    self.status
                        .set_error(format!("Partition assignment failed: {e}"));
                }
                tracing::info!(partitions = ?parts, "partitions assigned");
                self.status.assign(&parts);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "partition revocation failed");
                }
                tracing::info!(partitions = ?parts, "partitions revoked");
                self.status.revoke(if cooperative { &parts } else { &[] });
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                self.status
                    .set_error(format!("Consumer group rebalance failed: {other:?}"));
                // librdkafka requires an assign call on error: drop the assignment and let the
                // group hand it out again.
                let _ = consumer.unassign();
                self.status.revoke(&[]);
            }
        }
    }
}

/// Everything the indexer needs.
pub struct Indexer {
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// Which topics.
    pub topics: TopicSelection,
    /// Consumer group.
    pub group_id: String,
    /// The index.
    pub pool: SqlitePool,
    /// Shared status.
    pub status: Arc<IndexerStatus>,
}

impl Indexer {
    /// Create the consumer and subscribe; errors here are configuration errors.
    pub async fn connect(&self) -> crate::error::Result<StreamConsumer<IndexerContext>> {
        let stored = positions::all(&self.pool).await?;
        self.status.seed_positions(
            &stored
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.next_offset))
                .collect::<Vec<_>>(),
        );
        let map: HashMap<(String, i32), i64> = stored
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.next_offset))
            .collect();
        let context = IndexerContext {
            status: self.status.clone(),
            positions: Arc::new(Mutex::new(map)),
        };
        let mut config = self.kafka.client_config();
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            // The default (5 minutes) would hide a new DLQ topic that long.
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("reconnect.backoff.max.ms", "2000");
        for (key, value) in &self.kafka.extra {
            config.set(key, value);
        }
        let consumer: StreamConsumer<IndexerContext> = config.create_with_context(context)?;
        let subs: Vec<&str> = self
            .topics
            .subscriptions
            .iter()
            .map(String::as_str)
            .collect();
        consumer.subscribe(&subs)?;
        Ok(consumer)
    }

    /// Index until `shutdown`; survives broker outages and bad records, retries failed writes.
    pub async fn run(self, consumer: StreamConsumer<IndexerContext>, shutdown: CancellationToken) {
        let consumer = Arc::new(consumer);
        let mut pending: Vec<NewRecord> = Vec::new();
        loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    msg = consumer.recv() => self.take(msg, &mut pending),
                }
            }
            let mut bytes: usize = pending
                .iter()
                .map(|r| r.value.as_ref().map_or(0, Vec::len))
                .sum();
            while pending.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
                match tokio::time::timeout(BATCH_LINGER, consumer.recv()).await {
                    Ok(msg) => {
                        self.take(msg, &mut pending);
                        bytes += pending
                            .last()
                            .and_then(|r| r.value.as_ref())
                            .map_or(0, Vec::len);
                    }
                    Err(_) => break,
                }
            }
            if pending.is_empty() {
                continue;
            }
            match self.write(&consumer, &pending).await {
                Ok(()) => pending.clear(),
                Err(e) => {
                    // Keep the batch and try again: the records are in memory, and dropping
                    // them would skip them for good once a later batch advances the position.
                    tracing::error!(error = %e, "writing a batch to the index failed; retrying");
                    self.status
                        .set_error(format!("Writing to the index failed: {e}"));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // Nothing is lost by stopping here: unwritten records are re-read from the stored
        // positions next time.
        consumer.unsubscribe();
        tracing::info!("indexer stopped");
    }

    fn take(&self, msg: Result<BorrowedMessage<'_>, KafkaError>, pending: &mut Vec<NewRecord>) {
        match msg {
            Ok(m) => pending.push(NewRecord::from_parts(parts_of(&m), store::now_ms())),
            Err(e) => {
                tracing::warn!(error = %e, "consume error");
                if let KafkaError::MessageConsumption(code) = &e {
                    if *code == RDKafkaErrorCode::UnknownTopicOrPartition {
                        self.status.set_error(
                            "A configured DLQ topic does not exist on the cluster (yet); check --dlq-topics.".into(),
                        );
                        return;
                    }
                }
                self.status
                    .set_error(format!("Reading from Kafka failed: {e}"));
            }
        }
    }

    async fn write(
        &self,
        consumer: &StreamConsumer<IndexerContext>,
        batch: &[NewRecord],
    ) -> crate::error::Result<()> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for r in batch {
            let e = next
                .entry((r.topic.as_str(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        let advance: Vec<Position> = next
            .iter()
            .map(|(&(t, p), &n)| Position {
                topic: t.to_string(),
                partition: p,
                next_offset: n,
            })
            .collect();
        let outcome = records::insert_batch(&self.pool, batch, &advance, store::now_ms()).await?;
        {
            let mut map = consumer
                .context()
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for p in &advance {
                let e = map
                    .entry((p.topic.clone(), p.partition))
                    .or_insert(p.next_offset);
                *e = (*e).max(p.next_offset);
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
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
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

/// Read a message's headers, with header names that are not UTF-8 decoded lossily.
///
/// rdkafka's `BorrowedHeaders::try_get` calls `CStr::to_str().unwrap()` on the header name
/// and so panics on a record whose header name is not UTF-8 (rust-rdkafka, message.rs); a
/// DLQ is exactly where such records end up, so the C API is read directly here.
pub fn read_headers(m: &BorrowedMessage<'_>) -> Vec<RawHeader> {
    let mut out = Vec::new();
    let mut hdrs: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the message pointer is valid while `m` is borrowed; the headers it yields are
    // owned by the message and only read here.
    let err = unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return out;
    }
    // SAFETY: hdrs is non-null and owned by the live message.
    let count = unsafe { rdsys::rd_kafka_header_cnt(hdrs) };
    for idx in 0..count {
        let mut name: *const std::os::raw::c_char = std::ptr::null();
        let mut value: *const std::os::raw::c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: idx < count; the out-pointers point at locals.
        let err =
            unsafe { rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka returns a NUL-terminated name and `size` bytes at `value`, both
        // alive as long as the message.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let value = (!value.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
        out.push(RawHeader { name, value });
    }
    out
}
