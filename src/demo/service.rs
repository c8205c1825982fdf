//! A consumer service done right (seeds 000, 001, 003, 004), shared by order-service and
//! the payments service: one consumer of the group reads the live topic and the service's
//! retry topics, and each partition is a lane of its own.
//!
//! - An offset is stored for commit only after its record is done: processed, skipped as a
//!   duplicate, or forwarded to a retry or DLQ topic with the broker's delivery report in
//!   hand. Auto-commit sends only stored offsets, so a crash re-delivers what was not done
//!   (at least once); the services' idempotency makes that harmless.
//! - A transient failure on the live topic is retried in place with exponential backoff. The
//!   lane waits by *pausing its partition* and the loop keeps polling: other partitions keep
//!   flowing, order within the partition is kept, and the consumer never misses
//!   `max.poll.interval.ms` (seed 003). Records the client had already fetched for a paused
//!   partition queue up behind the waiting one.
//! - After the attempts in place, the record moves to the first retry topic with a due time,
//!   then the next, then the DLQ. A retry lane whose head is not due yet pauses the same way
//!   until it is.
//! - A failure that is not retriable goes straight to the DLQ.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::failure::Failure;
use super::headers::{self, Forward, HeaderStyle, Origin, RawHeader};
use super::schedule::{self, Backoff};
use super::state::{bump, DemoState, ServiceCounters};
use crate::clock::now_ms;
use crate::error::Result;
use crate::kafka::KafkaSettings;

/// A service's topics and rules.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The consumer group (named in the DLQ records' headers, so the dashboard follows
    /// replays by its commits).
    pub group: &'static str,
    /// The live topic.
    pub live: &'static str,
    /// The retry topics in order, each with its delay.
    pub retries: Vec<(&'static str, Duration)>,
    /// The DLQ topic.
    pub dlq: &'static str,
    /// In-place retries on the live topic.
    pub backoff: Backoff,
    /// The header convention of the forwards.
    pub style: HeaderStyle,
}

/// Which topic of the pipeline a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The live topic.
    Live,
    /// Retry topic `n` (0-based).
    Retry(usize),
}

/// One record as a service sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, ms.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<RawHeader>,
}

impl Delivery {
    /// The `dlq-replay-id` the dashboard gave the record, if it is a replay.
    pub fn replay_id(&self) -> Option<&str> {
        headers::text(&self.headers, headers::REPLAY_ID)
    }
}

/// What the business logic made of one attempt.
#[derive(Debug)]
pub enum Handled {
    /// Done: the effect happened.
    Processed,
    /// Seen before (event id or replay id): skipped, not processed again.
    Duplicate,
    /// Failed; the pipeline decides by [`Failure::retriable`] what comes next.
    Failed(Failure),
}

/// A service's business logic.
pub trait Handler: Send {
    /// Attempt `attempt` (1-based, across the live topic and the retry topics) of `d`.
    fn handle(&mut self, d: &Delivery, stage: Stage, attempt: u32) -> Handled;
    /// `d`'s journey ended in the DLQ (so a later copy with its replay id is a duplicate).
    fn dead_lettered(&mut self, _d: &Delivery) {}
}

/// The partitions the group took away, for the loop to drop their lanes.
#[derive(Default)]
pub struct ServiceContext {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for ServiceContext {}

impl ConsumerContext for ServiceContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            r.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
        }
    }
}

/// One partition's records waiting their turn.
#[derive(Default)]
struct Lane {
    queue: VecDeque<Delivery>,
    /// Failed attempts of the head record in place (live topic only).
    attempts: u32,
    /// When the head may be tried again; the partition is paused until then.
    wake_at: Option<Instant>,
    paused: bool,
}

type LaneId = (String, i32);

/// A running service: its consumer, producer, rules and logic.
pub struct Service<H: Handler> {
    pipeline: Pipeline,
    consumer: StreamConsumer<ServiceContext>,
    producer: FutureProducer,
    handler: H,
    state: Arc<DemoState>,
    counters: fn(&DemoState) -> &ServiceCounters,
    lanes: HashMap<LaneId, Lane>,
}

impl<H: Handler> Service<H> {
    /// Connect the service's consumer (subscribed to its live and retry topics) and
    /// producer.
    pub fn connect(
        kafka: &KafkaSettings,
        pipeline: Pipeline,
        handler: H,
        state: Arc<DemoState>,
        counters: fn(&DemoState) -> &ServiceCounters,
    ) -> Result<Self> {
        let mut config = kafka.client_config();
        config
            .set("client.id", pipeline.group)
            .set("group.id", pipeline.group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            // Only offsets of records that are done are stored, and only stored ones are
            // committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "200")
            // librdkafka's mock cluster answers a fetch that found nothing only after the
            // whole wait, even when records arrive meanwhile (a real broker answers as soon
            // as they do), so the default 500 ms showed on the embedded demo as seconds of
            // live latency at every hop; on a real cluster a short wait costs a few idle
            // fetches a second.
            .set("fetch.wait.max.ms", "20")
            .set("topic.metadata.refresh.interval.ms", "2000");
        let consumer: StreamConsumer<ServiceContext> =
            config.create_with_context(ServiceContext::default())?;
        let mut topics = vec![pipeline.live];
        topics.extend(pipeline.retries.iter().map(|(t, _)| *t));
        consumer.subscribe(&topics)?;
        let mut producer = kafka.producer_config();
        producer
            .set("client.id", pipeline.group)
            .set("linger.ms", "0");
        Ok(Service {
            pipeline,
            consumer,
            producer: producer.create()?,
            handler,
            state,
            counters,
            lanes: HashMap::new(),
        })
    }

    /// Consume until `shutdown`, then commit what is done.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let wake = self.lanes.values().filter_map(|l| l.wake_at).min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => match received {
                    Ok(m) => {
                        let d = delivery(&m);
                        self.drop_revoked();
                        self.arrive(d).await;
                    }
                    Err(e) => tracing::debug!(group = self.pipeline.group, error = %e, "demo service poll"),
                },
                _ = sleep => self.wake_due().await,
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(group = self.pipeline.group, error = %e, "final commit");
        }
    }

    fn drop_revoked(&mut self) {
        let revoked: Vec<LaneId> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for id in revoked {
            // Not done, so not committed: the partition's next owner reads these again.
            self.lanes.remove(&id);
        }
    }

    async fn arrive(&mut self, d: Delivery) {
        let id = (d.topic.clone(), d.partition);
        let lane = self.lanes.entry(id.clone()).or_default();
        lane.queue.push_back(d);
        if lane.wake_at.is_none() {
            self.drain(&id).await;
        }
    }

    async fn wake_due(&mut self) {
        let now = Instant::now();
        let due: Vec<LaneId> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.wake_at.is_some_and(|w| w <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.wake_at = None;
            }
            self.drain(&id).await;
        }
    }

    fn stage_of(&self, topic: &str) -> Stage {
        self.pipeline
            .retries
            .iter()
            .position(|(t, _)| *t == topic)
            .map_or(Stage::Live, Stage::Retry)
    }

    /// Work through a lane's records until it is empty or its head must wait.
    async fn drain(&mut self, id: &LaneId) {
        loop {
            let Some(lane) = self.lanes.get_mut(id) else {
                return;
            };
            let Some(head) = lane.queue.front().cloned() else {
                break;
            };
            let stage = self.stage_of(&head.topic);
            let style = self.pipeline.style;
            if stage != Stage::Live {
                if let Some(wait) =
                    schedule::wait_until_due(headers::due_at(&head.headers, style), now_ms())
                {
                    self.wait(id, wait);
                    return;
                }
            }
            let attempt = match stage {
                Stage::Live => self.lanes.get(id).map_or(0, |l| l.attempts) + 1,
                Stage::Retry(_) => headers::attempts(&head.headers, style) + 1,
            };
            let next = match self.handler.handle(&head, stage, attempt) {
                Handled::Processed | Handled::Duplicate => None,
                Handled::Failed(f) => {
                    if f.retriable() && stage == Stage::Live {
                        if let Some(wait) = self.pipeline.backoff.after(attempt) {
                            if let Some(lane) = self.lanes.get_mut(id) {
                                lane.attempts = attempt;
                            }
                            self.wait(id, wait);
                            return;
                        }
                    }
                    Some((f, attempt))
                }
            };
            if let Some((failure, attempts)) = next {
                if !self.forward(&head, stage, &failure, attempts).await {
                    // The broker did not take the forward: not done, so not committed;
                    // try the record again in a second.
                    self.wait(id, Duration::from_secs(1));
                    return;
                }
            }
            if let Err(e) = self
                .consumer
                .store_offset(&head.topic, head.partition, head.offset)
            {
                tracing::debug!(error = %e, "offset not stored (partition revoked?)");
            }
            if let Some(lane) = self.lanes.get_mut(id) {
                lane.queue.pop_front();
                lane.attempts = 0;
            }
        }
        // The lane is empty or its head is done: let the partition flow again.
        if let Some(lane) = self.lanes.get_mut(id) {
            if lane.paused && lane.wake_at.is_none() {
                lane.paused = false;
                if let Err(e) = self.consumer.resume(&one(id)) {
                    tracing::debug!(error = %e, "resume");
                }
            }
        }
    }

    fn wait(&mut self, id: &LaneId, wait: Duration) {
        let Some(lane) = self.lanes.get_mut(id) else {
            return;
        };
        lane.wake_at = Some(Instant::now() + wait);
        if !lane.paused {
            lane.paused = true;
            if let Err(e) = self.consumer.pause(&one(id)) {
                tracing::debug!(error = %e, "pause");
            }
        }
    }

    /// Send the failed record on to the next retry topic, or to the DLQ; true once the
    /// broker confirmed it.
    async fn forward(
        &mut self,
        d: &Delivery,
        stage: Stage,
        failure: &Failure,
        attempts: u32,
    ) -> bool {
        let next_retry = match stage {
            _ if !failure.retriable() => None,
            Stage::Live => self.pipeline.retries.first(),
            Stage::Retry(n) => self.pipeline.retries.get(n + 1),
        };
        let now = now_ms();
        let (topic, due_at) = match next_retry {
            Some((topic, delay)) => (*topic, Some(schedule::due_at(now, *delay))),
            None => (self.pipeline.dlq, None),
        };
        let here = Origin {
            topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            timestamp: d.timestamp,
        };
        let origin = match stage {
            // A record on the live topic is at its origin, whatever headers it came with.
            Stage::Live => here,
            Stage::Retry(_) => headers::origin(&d.headers, here),
        };
        let out = headers::forwarded(
            &d.headers,
            &origin,
            &Forward {
                failure,
                attempts,
                group: self.pipeline.group,
                due_at,
            },
            self.pipeline.style,
        );
        let mut h = OwnedHeaders::new_with_capacity(out.len());
        for (name, value) in &out {
            h = h.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(h);
        if let Some(k) = &d.key {
            record = record.key(k);
        }
        if let Some(v) = &d.payload {
            record = record.payload(v);
        }
        match self.producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => {
                let counters = (self.counters)(&self.state);
                if due_at.is_some() {
                    counters.retried_to(topic);
                } else {
                    bump(&counters.dead_lettered);
                    self.handler.dead_lettered(d);
                }
                true
            }
            Err((e, _)) => {
                tracing::warn!(topic, error = %e, "the demo service could not forward a failed record");
                false
            }
        }
    }
}

fn one((topic, partition): &LaneId) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, *partition);
    tpl
}

fn delivery(m: &impl Message) -> Delivery {
    Delivery {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or_else(now_ms),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
