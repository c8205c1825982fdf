//! Running replay jobs: a scheduler that starts confirmed jobs (one at a time per DLQ
//! partition), and per job a sender paced at the job's rate plus a collector that records
//! each delivery report. Everything is recorded in SQLite before and after sending, so a
//! restarted dashboard resumes a job without re-sending what was confirmed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actions::replay::{rate_text, unknown_job, JobControl};
use crate::actions::{Actor, JobRunner};
use crate::error::{Error, Result};
use crate::index::record::decode_headers;
use crate::kafka::{Compression, KafkaSettings};
use crate::states::JobStatus;
use crate::store::audit::{self, NewEntry};
use crate::store::health::{WriteHealth, Writer};
use crate::store::items::{self, Delivery, SendItem};
use crate::store::jobs::{self, Job};

/// Headers every replayed message carries; copies of them in the original headers (from an
/// earlier replay) are dropped so each appears once.
pub const REPLAY_HEADERS: [&str; 5] = [
    "dlq-replay-id",
    "dlq-replay-action",
    "dlq-replay-count",
    "dlq-replayed-at",
    "dlq-source",
];

/// Items read and claimed at a time, at most: an unthrottled job claims 2,000 per
/// transaction (with 500 the fixed cost of each transaction held bulk replay near 30k msg/s).
const MAX_CHUNK: i64 = 2000;

/// Items read and claimed at a time for a job sending `rate` messages per second: about a
/// second's worth, so that records of a slow job do not sit `replaying` long before they
/// are sent.
fn chunk_size(rate: i64) -> i64 {
    if rate <= 0 {
        MAX_CHUNK
    } else {
        rate.clamp(100, MAX_CHUNK)
    }
}

/// Deliveries recorded per transaction at most (with 4,000 rather than 2,000, unthrottled
/// runs measured 33–40k msg/s instead of 30–35k: half the transactions, each of which
/// rewrites the same status index and counter pages).
const RESULTS_PER_COMMIT: usize = 4000;
/// A confirmed delivery is recorded within this long.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Messages handed to the producer whose delivery reports are not yet collected.
const MAX_IN_FLIGHT: usize = 5_000;

/// What the operator wants a running job to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Run,
    Pause,
    Cancel,
    Shutdown,
}

struct ActiveJob {
    control: watch::Sender<Control>,
    partitions: Vec<(String, i32)>,
}

/// The replay producer's configuration: idempotent, acks=all, keys partitioned with
/// murmur2 as Java clients do, never creating topics, batches compressed with
/// `compression`; `--kafka-config` wins over all but the compression, which
/// [`Compression::for_replay`] already resolved from it.
pub fn producer_config(kafka: &KafkaSettings, compression: Compression) -> ClientConfig {
    let mut config = kafka.producer_config();
    config
        .set("partitioner", "murmur2_random")
        .set("allow.auto.create.topics", "false")
        .set("queue.buffering.max.messages", "200000")
        .set("batch.num.messages", "10000")
        // A record the DLQ topic accepted is sent whatever its size; if the retry topic's
        // limit is smaller, the broker's refusal is the recorded reason.
        .set("message.max.bytes", "100000000");
    for (key, value) in &kafka.extra {
        config.set(key, value);
    }
    config
        .remove("compression.codec")
        .set("compression.type", compression.name());
    config
}

/// Runs replay jobs. One per dashboard, shared by the web handlers.
pub struct Replayer {
    pool: SqlitePool,
    kafka: KafkaSettings,
    // One producer per codec, made when a job first needs it: a job is sent with the codec
    // it was previewed with, even after a restart with another --replay-compression.
    producers: Mutex<HashMap<Compression, FutureProducer>>,
    active: Mutex<HashMap<String, ActiveJob>>,
    // Serialises job state changes (confirm, pause, resume, cancel, start, finish) so that a
    // job never runs twice and its row and its task agree.
    transitions: tokio::sync::Mutex<()>,
    wake: Notify,
}

/// One message handed to the producer.
struct InFlight {
    record_id: i64,
    target_topic: Arc<str>,
    replay_count: i64,
    delivery: std::result::Result<DeliveryFuture, String>,
}

impl Replayer {
    /// A replayer with its own idempotent producer (acks=all). Keys are partitioned with
    /// murmur2, as Java clients do, so a replayed message lands on the partition its key
    /// maps to for the consumer service.
    pub fn new(pool: SqlitePool, kafka: &KafkaSettings) -> Result<Self> {
        // The configured codec's producer is made now, so a bad setting fails at start.
        let default: FutureProducer = producer_config(kafka, kafka.replay_compression).create()?;
        Ok(Replayer {
            pool,
            kafka: kafka.clone(),
            producers: Mutex::new(HashMap::from([(kafka.replay_compression, default)])),
            active: Mutex::new(HashMap::new()),
            transitions: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        })
    }

    /// Ask the scheduler to look for jobs to start.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveJob>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The producer of a codec (a cheap handle on a shared client).
    fn producer(&self, compression: Compression) -> Result<FutureProducer> {
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = producers.get(&compression) {
            return Ok(p.clone());
        }
        let made: FutureProducer = producer_config(&self.kafka, compression).create()?;
        producers.insert(compression, made.clone());
        Ok(made)
    }

    /// The scheduler: starts queued jobs (and, after a restart, jobs that were running)
    /// whose partitions no running job holds. Stops the jobs' senders on shutdown, after
    /// their in-flight deliveries are recorded.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.clone().schedule().await {
                tracing::warn!(error = %e, "replay scheduling failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
        let senders: Vec<watch::Sender<Control>> =
            self.active().values().map(|a| a.control.clone()).collect();
        for s in &senders {
            let _ = s.send(Control::Shutdown);
        }
        for s in senders {
            s.closed().await;
        }
    }

    async fn schedule(self: Arc<Self>) -> Result<()> {
        let _t = self.transitions.lock().await;
        let mut busy: HashSet<(String, i32)> = self
            .active()
            .values()
            .flat_map(|a| a.partitions.iter().cloned())
            .collect();
        let mut candidates = jobs::jobs_in(&self.pool, JobStatus::Running).await?;
        candidates.extend(jobs::jobs_in(&self.pool, JobStatus::Queued).await?);
        for job in candidates {
            if self.active().contains_key(&job.id) {
                continue;
            }
            let partitions = items::job_partitions(&self.pool, &job.id).await?;
            if partitions.iter().any(|p| busy.contains(p)) {
                continue;
            }
            let now = crate::clock::now_ms();
            jobs::transition(
                &self.pool,
                &job.id,
                &[JobStatus::Queued, JobStatus::Running],
                JobStatus::Running,
                now,
            )
            .await?;
            busy.extend(partitions.iter().cloned());
            let (control, receiver) = watch::channel(Control::Run);
            self.active().insert(
                job.id.clone(),
                ActiveJob {
                    control,
                    partitions,
                },
            );
            tracing::info!(job = %job.id, total = job.total, rate = job.rate, "replay job started");
            tokio::spawn(self.clone().run_job(job, receiver));
        }
        Ok(())
    }

    async fn run_job(self: Arc<Self>, job: Job, control: watch::Receiver<Control>) {
        let (outcome, handed_through) = self.send_all(&job, control.clone()).await;
        let failed = outcome.is_err();
        let wanted = *control.borrow();
        {
            let _t = self.transitions.lock().await;
            if let Err(e) = self.finish(&job, wanted, outcome, handed_through).await {
                tracing::error!(job = %job.id, error = %e, "recording the end of a replay job failed");
            }
        }
        if failed && wanted == Control::Run {
            // Still listed as active, so the scheduler does not restart it at once.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        self.active().remove(&job.id);
        self.wake();
    }

    async fn finish(
        &self,
        job: &Job,
        wanted: Control,
        outcome: Result<()>,
        handed_through: Option<i64>,
    ) -> Result<()> {
        let now = crate::clock::now_ms();
        match (wanted, outcome) {
            (Control::Cancel, _) => {
                items::release(&self.pool, &job.id, true, None, now).await?;
            }
            (Control::Pause | Control::Shutdown, _) => {
                items::release(&self.pool, &job.id, false, handed_through, now).await?;
            }
            (Control::Run, Err(e)) => {
                // The job stays 'running' and the scheduler tries again; nothing confirmed
                // is lost because results are recorded as they arrive.
                tracing::error!(job = %job.id, error = %e, "replay job stopped; it will be retried");
                if e.write_fault().is_some() {
                    WriteHealth::of(&self.pool).failed(Writer::Replay, &e);
                }
                items::release(&self.pool, &job.id, false, handed_through, now).await?;
            }
            (Control::Run, Ok(())) => {
                if items::has_unsent(&self.pool, &job.id).await? {
                    return Ok(());
                }
                let done = jobs::job(&self.pool, &job.id)
                    .await?
                    .ok_or_else(|| unknown_job(&job.id))?;
                let final_status = if done.failed > 0 {
                    JobStatus::CompletedWithFailures
                } else {
                    JobStatus::Completed
                };
                if jobs::transition(
                    &self.pool,
                    &job.id,
                    &[JobStatus::Running],
                    final_status,
                    now,
                )
                .await?
                {
                    tracing::info!(job = %job.id, sent = done.sent, failed = done.failed, "replay job finished");
                    let summary = if done.failed > 0 {
                        format!(
                            "Replay {} completed with failures: {} sent, {} failed.",
                            job.id, done.sent, done.failed
                        )
                    } else {
                        format!("Replay {} completed: {} sent.", job.id, done.sent)
                    };
                    audit::append(
                        &self.pool,
                        &NewEntry {
                            at: now,
                            actor: "dashboard",
                            mode: None,
                            action: "replay.finish",
                            job_id: Some(&job.id),
                            summary: &summary,
                            detail: &counts_json(&done),
                        },
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Send every unsent item of the job, paced, until done or told to stop. Returns how it
    /// ended, and the claim cursor to leave behind: the last record id handed to the
    /// producer, never below where the cursor stood when this run began (None when the run
    /// could not even read it).
    async fn send_all(
        &self,
        job: &Job,
        control: watch::Receiver<Control>,
    ) -> (Result<()>, Option<i64>) {
        let floor = match items::claimed_through(&self.pool, &job.id).await {
            Ok(c) => c,
            Err(e) => return (Err(e), None),
        };
        let mut handed = floor;
        let outcome = self.send_from(job, control, &mut handed).await;
        (outcome, Some(handed))
    }

    async fn send_from(
        &self,
        job: &Job,
        mut control: watch::Receiver<Control>,
        handed: &mut i64,
    ) -> Result<()> {
        let producer = self.producer(job.compression)?;
        let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT);
        let mut collector = tokio::spawn(collect(
            self.pool.clone(),
            producer.clone(),
            job.id.clone(),
            rx,
        ));
        let mut pacer = Pacer::new(job.rate);
        // Chunks are read and claimed by a feeder running ahead of the sender (reading the
        // next chunk while claiming this one), so claims never hold up the paced sender;
        // nothing is sent before its claim is committed.
        let (chunks_tx, mut chunks) = mpsc::channel::<Vec<SendItem>>(1);
        let feeder = tokio::spawn(feed(
            self.pool.clone(),
            job.id.clone(),
            chunk_size(job.rate),
            chunks_tx,
        ));
        let sent: Result<()> = async {
            while let Some(chunk) = chunks.recv().await {
                if send_chunk(
                    &producer,
                    &job.id,
                    chunk,
                    &mut pacer,
                    &mut control,
                    &tx,
                    handed,
                )
                .await?
                {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // The feeder stops at its next hand-over; its claim in progress finishes first, so
        // that what the job gives back when it stops includes it.
        drop(chunks);
        let fed = feeder
            .await
            .map_err(|e| Error::Internal(format!("claiming messages failed: {e}")))
            .and_then(|r| r);
        let sent = sent.and(fed);
        drop(tx);
        // On shutdown, reports still missing after a few seconds (a broker that went away)
        // are not waited for: those items stay unconfirmed and are sent again, with the same
        // replay id, when the dashboard next runs.
        let limit = if *control.borrow() == Control::Shutdown {
            Duration::from_secs(5)
        } else {
            Duration::MAX
        };
        let recorded = match tokio::time::timeout(limit, &mut collector).await {
            Ok(joined) => {
                joined.map_err(|e| Error::Internal(format!("the delivery recorder failed: {e}")))?
            }
            Err(_) => {
                collector.abort();
                Ok(())
            }
        };
        sent.and(recorded)
    }

    /// Apply an operator's pause, resume or cancel.
    pub async fn apply(&self, id: &str, action: JobControl, actor: &Actor) -> Result<Job> {
        match action {
            JobControl::Pause => self.pause(id, actor).await,
            JobControl::Resume => self.resume(id, actor).await,
            JobControl::Cancel => self.cancel(id, actor).await,
        }
    }

    /// Pause a queued or running job; its in-flight messages finish and are recorded.
    pub async fn pause(&self, id: &str, actor: &Actor) -> Result<Job> {
        self.control(
            id,
            actor,
            &[JobStatus::Queued, JobStatus::Running],
            JobStatus::Paused,
            Control::Pause,
            "replay.pause",
            "paused",
        )
        .await
    }

    /// Resume a paused job: it queues and starts when its partitions are free.
    pub async fn resume(&self, id: &str, actor: &Actor) -> Result<Job> {
        let job = self
            .control(
                id,
                actor,
                &[JobStatus::Paused],
                JobStatus::Queued,
                Control::Run,
                "replay.resume",
                "resumed",
            )
            .await?;
        self.wake();
        Ok(job)
    }

    /// Cancel a job that has not finished: nothing more is sent; what was sent stays sent.
    pub async fn cancel(&self, id: &str, actor: &Actor) -> Result<Job> {
        let job = self
            .control(
                id,
                actor,
                &[JobStatus::Queued, JobStatus::Running, JobStatus::Paused],
                JobStatus::Cancelled,
                Control::Cancel,
                "replay.cancel",
                "cancelled",
            )
            .await?;
        Ok(job)
    }

    #[allow(clippy::too_many_arguments)]
    async fn control(
        &self,
        id: &str,
        actor: &Actor,
        from: &[JobStatus],
        to: JobStatus,
        signal: Control,
        action: &str,
        verb: &str,
    ) -> Result<Job> {
        let _t = self.transitions.lock().await;
        let job = jobs::job(&self.pool, id)
            .await?
            .filter(|j| j.status != JobStatus::Preview)
            .ok_or_else(|| unknown_job(id))?;
        let now = crate::clock::now_ms();
        // A job resumed before its sender noticed the pause goes on running in place.
        let to = if signal == Control::Run && self.active().contains_key(id) {
            JobStatus::Running
        } else {
            to
        };
        if !jobs::transition(&self.pool, id, from, to, now).await? {
            return Err(Error::Conflict(format!(
                "Replay job {id} is {}, so it cannot be {verb}.",
                job.status.words()
            )));
        }
        let running = self.active().get(id).map(|a| a.control.clone());
        match &running {
            Some(control) => {
                let _ = control.send(signal);
            }
            None if signal == Control::Cancel => {
                items::release(&self.pool, id, true, None, now).await?;
            }
            None => {}
        }
        drop(_t);
        if let Some(control) = running.filter(|_| signal != Control::Run) {
            // The sender stops at once; waiting for it to record its last reports and give
            // back what it had not sent (it needs the transitions lock, released above) lets
            // the answer carry settled counts. A broker that does not answer only delays it.
            let _ = tokio::time::timeout(Duration::from_secs(5), control.closed()).await;
        }
        let job = jobs::job(&self.pool, id)
            .await?
            .ok_or_else(|| unknown_job(id))?;
        let summary = format!(
            "Replay {id} {verb} with {} sent, {} failed, {} remaining ({}).",
            job.sent,
            job.failed,
            job.remaining(),
            rate_text(job.rate)
        );
        audit::append(
            &self.pool,
            &NewEntry {
                at: now,
                actor: &actor.name,
                mode: actor.mode(),
                action,
                job_id: Some(id),
                summary: &summary,
                detail: &counts_json(&job),
            },
        )
        .await?;
        Ok(job)
    }
}

impl JobRunner for Replayer {
    fn wake(&self) {
        Replayer::wake(self);
    }

    fn control<'a>(
        &'a self,
        id: &'a str,
        action: JobControl,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<Job>> {
        Box::pin(self.apply(id, action, actor))
    }
}

/// Send one claimed chunk at the job's pace, noting the last record id handed over; true
/// when told to stop.
async fn send_chunk(
    producer: &FutureProducer,
    job_id: &str,
    chunk: Vec<SendItem>,
    pacer: &mut Pacer,
    control: &mut watch::Receiver<Control>,
    tx: &mpsc::Sender<InFlight>,
    handed: &mut i64,
) -> Result<bool> {
    for item in chunk {
        if !pacer.wait(control).await {
            return Ok(true);
        }
        let Some(delivery) = send_one(producer, job_id, &item, control).await else {
            return Ok(true);
        };
        *handed = (*handed).max(item.record_id);
        let in_flight = InFlight {
            record_id: item.record_id,
            target_topic: item.target_topic.clone(),
            replay_count: item.replay_count + 1,
            delivery,
        };
        if tx.send(in_flight).await.is_err() {
            return Err(Error::Internal("the delivery recorder stopped".into()));
        }
    }
    Ok(false)
}

/// Hand one message to the producer. None when told to stop while the producer's queue
/// was full.
async fn send_one(
    producer: &FutureProducer,
    job_id: &str,
    item: &SendItem,
    control: &mut watch::Receiver<Control>,
) -> Option<std::result::Result<DeliveryFuture, String>> {
    let mut record = replay_record(job_id, item, crate::clock::now_ms());
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Some(Ok(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                // The producer drains as deliveries complete; a stop request wins.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    _ = control.changed() => {}
                }
                if *control.borrow() != Control::Run {
                    return None;
                }
            }
            Err((e, _)) => return Some(Err(e.to_string())),
        }
    }
}

/// Read and claim a job's unsent items chunk by chunk, in record id order, handing each
/// claimed chunk to the sender; the next chunk is read while this one is claimed (a read and
/// a write on two connections, which WAL lets overlap). Ends when all are handed over or the
/// sender stops listening.
async fn feed(
    pool: SqlitePool,
    job_id: String,
    chunk_size: i64,
    to_sender: mpsc::Sender<Vec<SendItem>>,
) -> Result<()> {
    let mut chunk = items::next_items(&pool, &job_id, 0, chunk_size).await?;
    while let Some(last) = chunk.last().map(|i| i.record_id) {
        let (claimed, next) = tokio::join!(
            items::claim(&pool, &job_id, last),
            items::next_items(&pool, &job_id, last, chunk_size)
        );
        claimed?;
        if to_sender.send(chunk).await.is_err() {
            return Ok(());
        }
        chunk = next?;
    }
    Ok(())
}

fn counts_json(job: &Job) -> serde_json::Value {
    serde_json::json!({
        "total": job.total,
        "sent": job.sent,
        "failed": job.failed,
        "refused": job.refused,
        "cancelled": job.cancelled,
        "remaining": job.remaining(),
        "targets": job.target_counts(),
    })
}

/// The record a replay sends for `item`: its key and value unchanged, to its target topic,
/// with [`replay_headers`].
pub fn replay_record<'a>(
    job_id: &str,
    item: &'a SendItem,
    now_ms: i64,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'a, [u8], [u8]> =
        FutureRecord::to(&item.target_topic).headers(replay_headers(job_id, item, now_ms));
    if let Some(k) = item.key.as_deref() {
        record = record.key(k);
    }
    if let Some(v) = item.value.as_deref() {
        record = record.payload(v);
    }
    record
}

/// The replayed message's headers: the original ones in order (minus earlier replay
/// headers), then the replay headers.
pub fn replay_headers(job_id: &str, item: &SendItem, now_ms: i64) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for h in decode_headers(item.headers_json()) {
        if REPLAY_HEADERS.contains(&h.name.as_str()) {
            continue;
        }
        headers = headers.insert(Header {
            key: &h.name,
            value: h.value.as_deref(),
        });
    }
    let replayed_at = crate::clock::iso(now_ms);
    let replay_id = replay_id(job_id, item.record_id);
    let count = (item.replay_count + 1).to_string();
    let source = format!("{}/{}/{}", item.topic, item.partition, item.offset);
    for (key, value) in [
        ("dlq-replay-id", replay_id.as_str()),
        ("dlq-replay-action", job_id),
        ("dlq-replay-count", count.as_str()),
        ("dlq-replayed-at", replayed_at.as_str()),
        ("dlq-source", source.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The replay id of a record in a job: the same on every attempt of that job (so a message
/// re-sent after a crash carries the id it had), different in another job.
pub fn replay_id(job_id: &str, record_id: i64) -> String {
    format!("{job_id}-{record_id}")
}

/// Record delivery reports as they arrive, in transactions of up to RESULTS_PER_COMMIT,
/// at least every COMMIT_INTERVAL while results wait.
async fn collect(
    pool: SqlitePool,
    producer: FutureProducer,
    job_id: String,
    mut rx: mpsc::Receiver<InFlight>,
) -> Result<()> {
    let mut explainer = FailureExplainer::new(producer);
    let mut pending: Vec<Delivery> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let flush = |pending: &mut Vec<Delivery>| {
        let batch = std::mem::take(pending);
        let pool = pool.clone();
        let job_id = job_id.clone();
        async move {
            // A report that is not recorded would be sent again after a restart, so a
            // transient failure (the index busy for longer than its timeout) is retried
            // before the job gives up and stops, and a write fault the machine recovers
            // from (a full disk, a read-only or locked file) until it is gone: the sender
            // waits meanwhile (its in-flight queue is full), and nothing is sent twice.
            let mut attempt = 0;
            loop {
                match items::record_deliveries(&pool, &job_id, &batch, crate::clock::now_ms()).await
                {
                    Ok(()) => {
                        WriteHealth::of(&pool).ok(Writer::Replay);
                        return Ok(());
                    }
                    Err(e) if attempt < 5 || e.write_fault().is_some() => {
                        attempt += 1;
                        if e.write_fault().is_some() {
                            WriteHealth::of(&pool).failed(Writer::Replay, &e);
                        }
                        tracing::warn!(job = %job_id, error = %e, attempt, "recording delivery reports failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt.min(25))).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    loop {
        let deadline = oldest.map(|t| t + COMMIT_INTERVAL);
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = sleep_until(deadline) => {
                flush(&mut pending).await?;
                oldest = None;
                continue;
            }
        };
        let Some(in_flight) = next else { break };
        let outcome = match in_flight.delivery {
            Err(e) => Some(Err(e)),
            Ok(mut future) => loop {
                let deadline = oldest.map(|t| t + COMMIT_INTERVAL);
                tokio::select! {
                    report = &mut future => break match report {
                        Ok(Ok(d)) => Some(Ok((d.partition, d.offset))),
                        Ok(Err((e, _))) => Some(Err(explainer.explain(&in_flight.target_topic, &e).await)),
                        // The producer went away without a report: leave the item 'sending',
                        // so it is sent again (same replay id) rather than guessed at.
                        Err(_) => None,
                    },
                    _ = sleep_until(deadline) => {
                        flush(&mut pending).await?;
                        oldest = None;
                    }
                }
            },
        };
        let Some(outcome) = outcome else { continue };
        pending.push(match outcome {
            Ok((partition, offset)) => Delivery {
                record_id: in_flight.record_id,
                replay_count: in_flight.replay_count,
                partition: Some(partition),
                offset: Some(offset),
                error: None,
            },
            Err(e) => Delivery {
                record_id: in_flight.record_id,
                replay_count: in_flight.replay_count,
                partition: None,
                offset: None,
                error: Some(e),
            },
        });
        oldest.get_or_insert_with(Instant::now);
        if pending.len() >= RESULTS_PER_COMMIT {
            flush(&mut pending).await?;
            oldest = None;
        }
    }
    flush(&mut pending).await
}

/// Turns a failed delivery into the sentence recorded with it. librdkafka retries a
/// produce to a vanished topic until the message times out, so "Message timed out" alone
/// would hide the cause: the broker's metadata answer for the topic is added.
struct FailureExplainer {
    producer: FutureProducer,
    // Per topic: when it was asked and what the broker said, reused for a few seconds so a
    // batch of failures costs one metadata request.
    asked: HashMap<String, (Instant, Option<String>)>,
}

impl FailureExplainer {
    fn new(producer: FutureProducer) -> Self {
        FailureExplainer {
            producer,
            asked: HashMap::new(),
        }
    }

    async fn explain(&mut self, topic: &str, error: &KafkaError) -> String {
        let Some(code) = error.rdkafka_error_code() else {
            return error.to_string();
        };
        if !matches!(
            code,
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
        ) {
            return error.to_string();
        }
        let fresh = self
            .asked
            .get(topic)
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(5))
            .map(|(_, said)| said.clone());
        let said = match fresh {
            Some(said) => said,
            None => {
                let producer = self.producer.clone();
                let name = topic.to_string();
                let said = tokio::task::spawn_blocking(move || {
                    use rdkafka::producer::Producer;
                    let md = producer
                        .client()
                        .fetch_metadata(Some(&name), Duration::from_secs(5))
                        .ok()?;
                    let err = md.topics().first()?.error()?;
                    Some(RDKafkaErrorCode::from(err).to_string())
                })
                .await
                .ok()
                .flatten();
                self.asked
                    .insert(topic.to_string(), (Instant::now(), said.clone()));
                said
            }
        };
        match said {
            Some(broker) => format!(
                "The broker says topic {topic} is unavailable ({broker}); the message was not delivered ({error})."
            ),
            None => error.to_string(),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Spaces sends evenly at a rate: message n goes at start + n / rate (a tokio interval,
/// whose missed ticks fire at once, so that sleeps coarser than one message's slot still
/// average out to the rate). After a stall (a full producer queue, a slow disk) it does not
/// catch up in a burst: the schedule restarts.
struct Pacer {
    interval: Option<tokio::time::Interval>,
    last: Option<Instant>,
}

/// A gap between two sends longer than this is a stall, after which the schedule restarts.
const STALL: Duration = Duration::from_millis(100);

impl Pacer {
    fn new(rate: i64) -> Self {
        Pacer {
            interval: (rate > 0).then(|| {
                let mut interval =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                interval
            }),
            last: None,
        }
    }

    /// Wait for the next slot; false when told to stop meanwhile.
    async fn wait(&mut self, control: &mut watch::Receiver<Control>) -> bool {
        if *control.borrow() != Control::Run {
            return false;
        }
        let Some(interval) = self.interval.as_mut() else {
            return true;
        };
        if self.last.is_some_and(|last| last.elapsed() > STALL) {
            interval.reset_immediately();
        }
        tokio::select! {
            _ = interval.tick() => {}
            _ = control.changed() => {}
        }
        self.last = Some(Instant::now());
        *control.borrow() == Control::Run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_claims_about_a_seconds_worth_at_a_time() {
        assert_eq!(chunk_size(0), MAX_CHUNK, "unthrottled");
        assert_eq!(chunk_size(500), 500);
        assert_eq!(chunk_size(5), 100, "never fewer than 100 per transaction");
        assert_eq!(chunk_size(1_000_000), MAX_CHUNK);
    }

    /// Waits `n` slots and returns the (paused, so exact) time they took.
    async fn paced(
        pacer: &mut Pacer,
        control: &mut watch::Receiver<Control>,
        n: usize,
    ) -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            assert!(pacer.wait(control).await);
        }
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_keeps_the_rate_and_does_not_burst_after_a_stall() {
        let (_control, mut receiver) = watch::channel(Control::Run);
        let mut pacer = Pacer::new(10);
        // The first message goes at once, then one every 100 ms.
        assert_eq!(
            paced(&mut pacer, &mut receiver, 11).await,
            Duration::from_secs(1)
        );
        // A stall of 5 s: the next messages are spaced again, not sent in a catch-up burst.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            paced(&mut pacer, &mut receiver, 4).await,
            Duration::from_millis(300)
        );
        // At 100/s, a send 50 ms late (short of a stall) is made up: the five slots it
        // missed go at once, so the average rate holds with sleeps coarser than a slot.
        let mut fast = Pacer::new(100);
        assert!(fast.wait(&mut receiver).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            paced(&mut fast, &mut receiver, 6).await,
            Duration::from_millis(10)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_pacer_never_waits_and_a_pause_wakes_a_waiting_one() {
        let (control, mut receiver) = watch::channel(Control::Run);
        let mut unlimited = Pacer::new(0);
        assert_eq!(
            paced(&mut unlimited, &mut receiver, 1000).await,
            Duration::ZERO
        );
        let mut slow = Pacer::new(1);
        assert!(slow.wait(&mut receiver).await, "the first slot is now");
        let waiting = tokio::spawn(async move { slow.wait(&mut receiver).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        control.send(Control::Pause).unwrap();
        assert!(!waiting.await.unwrap(), "told to stop while waiting");
    }
}
