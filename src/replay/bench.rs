//! `dlq-dashboard bench --suite replay`: the figures of the replay issue, each next to a
//! baseline measured in the same run.
//!
//! - Rate: an unthrottled bulk replay of `--replay-records` messages through the real engine
//!   (preview, confirm, the runner's paced sender and delivery recorder), timed from confirm
//!   until the job is completed, so it includes recording every result; next to a bare
//!   produce of the same records (same keys, values and headers, same producer settings) to
//!   the same topics, before and after the replay.
//! - Memory: RSS growth over idle while one job of `--replay-memory-records` messages runs.
//!   The broker runs in a child process (`dlq-dashboard dev-cluster`) for this one: the mock
//!   cluster keeps up to ~5 MiB per partition of what it receives, which in process would be
//!   counted as the dashboard's memory. The growth includes SQLite's page caches filling
//!   (up to 8 MiB per pooled connection, 4 connections; see `store::open`), which does
//!   not depend on the job's size; the preview's and the job's peaks are printed apart.

use crate::kafka::child::ChildCluster;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use sqlx::SqlitePool;

use super::runner::{producer_config, replay_record};
use crate::actions::replay as plan;
use crate::actions::selection::Selection;
use crate::app::Dashboard;
use crate::bench::{remove_database_files, rss_mib, synthetic_record};
use crate::config::{BenchArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::filter::MessageFilter;
use crate::kafka::mock::EmbeddedCluster;
use crate::kafka::{Compression, KafkaSettings};
use crate::store::items::{self, SendItem};
use crate::store::jobs;
use crate::store::{self, records};

/// The retry topics the synthetic records resolve to (`{base}.retry.1`), with partitions.
const TARGETS: [(&str, i32); 4] = [
    ("orders.retry.1", 4),
    ("payments.retry.1", 4),
    ("shipping.retry.1", 4),
    ("inventory.retry.1", 4),
];

/// Rows per insert transaction when filling the index.
const FILL_BATCH: usize = 5000;

/// Run the replay benchmarks and print a report.
pub async fn run(args: &BenchArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => d.join("replay"),
        None => std::env::temp_dir().join(format!("dlq-replay-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    // Memory first, so that its idle figure is not inflated by what the rate run leaves
    // in the allocator.
    let outcome = async {
        if args.replay_memory_records > 0 {
            memory(args, &dir).await?;
        }
        if args.replay_records > 0 {
            rate(args, &dir).await?;
        }
        Ok(())
    }
    .await;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

async fn rate(args: &BenchArgs, dir: &Path) -> Result<()> {
    let n = args.replay_records;
    println!(
        "replay rate: {n} messages of ~{} B, {:?} layout; librdkafka mock cluster in process (1 broker), {} retry topics x 4 partitions",
        args.payload_bytes,
        args.layout,
        TARGETS.len()
    );
    let cluster = EmbeddedCluster::start(1)?;
    for (topic, partitions) in TARGETS {
        cluster.create_topic(topic, partitions)?;
    }
    let mut rows = Vec::new();
    for (i, &compression) in args.replay_compressions.iter().enumerate() {
        println!("compression {compression}:");
        let db = dir.join(format!("rate-{i}.db"));
        fill(&db, n, args).await?;
        let dashboard = start(cluster.bootstrap_servers(), &db, compression).await?;
        let row = rate_with(&dashboard, n).await;
        dashboard.shutdown().await;
        remove_database_files(&db);
        rows.push((compression, row?));
    }
    drop(cluster);
    let per_sec = |secs: f64| n as f64 / secs;
    println!(
        "compression  bare produce msg/s (before, after)  wire B/msg  replay msg/s  replay/bare  commit→consumed"
    );
    for (compression, r) in &rows {
        // The faster of the two bare runs: the ratio errs against the engine.
        let bare = r.bare_before.min(r.bare_after);
        println!(
            "{:<11}  {:>9.0} {:>9.0}                     {:>10.0}  {:>12.0}  {:>10.2}x  {:>13.2} s",
            compression.name(),
            per_sec(r.bare_before),
            per_sec(r.bare_after),
            r.wire_bytes / n as f64,
            per_sec(r.replay_secs),
            bare / r.replay_secs,
            r.consumed_after
        );
    }
    if let Some((first, base)) = rows.first() {
        for (compression, r) in rows.iter().skip(1) {
            println!(
                "replay with {compression} / replay with {first}: {:.2}x the rate, {:.2}x the bytes on the wire",
                base.replay_secs / r.replay_secs,
                r.wire_bytes / base.wire_bytes.max(1.0)
            );
        }
    }
    Ok(())
}

/// One compression's figures, in seconds for all `n` messages and bytes sent to the broker.
struct RateRow {
    bare_before: f64,
    bare_after: f64,
    replay_secs: f64,
    wire_bytes: f64,
    /// Seconds from a consumer group's commit to the job counting every record consumed.
    consumed_after: f64,
}

/// CPU seconds this process has used, all threads (user and system), from /proc/self/stat:
/// on a loaded 2-core machine wall times of one run swing 2x, the CPU a phase costs much
/// less. /proc reports clock ticks of USER_HZ, 100 on Linux whatever the kernel's HZ.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it are plain numbers,
    // utime and stime being the 14th and 15th of the line.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The consumer group the bench's "service" commits under (`--replay-consumer-group`).
const BENCH_GROUP: &str = "bench-service";

/// As a consumer service that has processed everything would: commit the end of every
/// target partition under [`BENCH_GROUP`] (without joining, as a plain offset commit), then
/// time until the job counts every delivered record consumed, as its page would show.
async fn consumption_seen(dashboard: &Dashboard, job: &jobs::Job) -> Result<f64> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = dashboard
        .state
        .kafka
        .client_config()
        .set("group.id", BENCH_GROUP)
        .set("enable.auto.commit", "false")
        .create()?;
    let commit = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (topic, partitions) in TARGETS {
            for p in 0..partitions {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
                tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(high))?;
            }
        }
        consumer.commit(&tpl, CommitMode::Sync)?;
        Ok(())
    });
    commit
        .await
        .map_err(|e| Error::Internal(format!("committing failed: {e}")))??;
    let committed = Instant::now();
    loop {
        let now = jobs::job(&dashboard.state.pool, &job.id)
            .await?
            .ok_or_else(|| plan::unknown_job(&job.id))?;
        if now.consumed >= now.sent {
            return Ok(committed.elapsed().as_secs_f64());
        }
        if committed.elapsed() > Duration::from_secs(60) {
            return Err(Error::Conflict(format!(
                "after 60 s the job counts {} of {} consumed",
                now.consumed, now.sent
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rate_with(dashboard: &Dashboard, n: usize) -> Result<RateRow> {
    let preview = preview(dashboard, n).await?;
    let items = load_items(&dashboard.state.pool, &preview).await?;
    let kafka = dashboard.state.kafka.clone();
    let cpu_at_start = cpu_secs();
    let (bare_before, wire_bytes) = bare_produce(&kafka, &preview, &items).await?;
    let cpu_bare = cpu_secs() - cpu_at_start;
    let cpu_at_confirm = cpu_secs();
    let (replay_secs, job) = replay(dashboard, &preview).await?;
    let cpu_replay = cpu_secs() - cpu_at_confirm;
    if job.sent != n as i64 {
        return Err(Error::Conflict(format!(
            "the bench job sent {} of {n} messages ({} failed)",
            job.sent, job.failed
        )));
    }
    let (bare_after, _) = bare_produce(&kafka, &preview, &items).await?;
    println!(
        "  bare {:.2} s, replay {replay_secs:.2} s, bare again {bare_after:.2} s",
        bare_before
    );
    println!(
        "  CPU of the whole process (broker included): bare {cpu_bare:.2} s, replay {cpu_replay:.2} s ({:.1} and {:.1} µs per message; replay / bare {:.2}x)",
        cpu_bare * 1e6 / n as f64,
        cpu_replay * 1e6 / n as f64,
        cpu_replay / cpu_bare.max(1e-9)
    );
    let consumed_after = consumption_seen(dashboard, &job).await?;
    println!(
        "  a consumer group's commit past every replayed record, seen consumed on the job {consumed_after:.2} s later (target < 5 s)"
    );
    Ok(RateRow {
        bare_before,
        bare_after,
        replay_secs,
        wire_bytes,
        consumed_after,
    })
}

async fn memory(args: &BenchArgs, dir: &Path) -> Result<()> {
    let n = args.replay_memory_records;
    println!(
        "replay memory: one unthrottled job of {n} messages of ~{} B; mock cluster in a child process (1 broker)",
        args.payload_bytes
    );
    let mut broker = ChildCluster::start(TARGETS)?;
    let db = dir.join("memory.db");
    let result = async {
        fill(&db, n, args).await?;
        let dashboard = start(&broker.bootstrap, &db, Compression::DEFAULT_REPLAY).await?;
        let measured = async {
            // Idle: started, connected, nothing to do; a second for background tasks to
            // allocate what they keep.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let idle = rss_mib().ok_or_else(|| {
                Error::Config("VmRSS is not readable in /proc/self/status.".into())
            })?;
            let started = Instant::now();
            let (preview, preview_peak) = with_peak(preview(&dashboard, n)).await;
            let preview = preview?;
            let preview_secs = started.elapsed().as_secs_f64();
            let (replayed, job_peak) = with_peak(replay(&dashboard, &preview)).await;
            let (replay_secs, job) = replayed?;
            let after = rss_mib().unwrap_or(job_peak);
            println!(
                "  preview of {n} in {preview_secs:.1} s; job sent {} in {replay_secs:.1} s ({:.0} msg/s)",
                job.sent,
                job.sent as f64 / replay_secs
            );
            println!(
                "  RSS idle {idle:.1} MiB; peak during the preview {preview_peak:.1} MiB, during the job {job_peak:.1} MiB; after {after:.1} MiB"
            );
            println!(
                "RSS growth over idle during a {n}-message job (preview included): {:.1} MiB (target < 50)",
                preview_peak.max(job_peak) - idle
            );
            Ok(())
        }
        .await;
        dashboard.shutdown().await;
        measured
    }
    .await;
    broker.stop();
    result
}

/// Run `work` while sampling RSS every 20 ms; its output and the highest RSS seen, MiB.
async fn with_peak<T>(work: impl std::future::Future<Output = T>) -> (T, f64) {
    let start = rss_mib().unwrap_or(0.0);
    let peak = Arc::new(AtomicU64::new(start.to_bits()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample_peak(peak.clone(), stop.clone()));
    let out = work.await;
    stop.cancel();
    let _ = sampler.await;
    let end = rss_mib().unwrap_or(0.0);
    (out, f64::from_bits(peak.load(Ordering::Relaxed)).max(end))
}

/// Record the highest RSS seen (MiB, as f64 bits) every 20 ms until cancelled.
async fn sample_peak(peak: Arc<AtomicU64>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Some(now) = rss_mib() {
            let _ = peak.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (now > f64::from_bits(old)).then(|| now.to_bits())
            });
        }
    }
}

/// A fresh index of `n` synthetic records (the index benchmark's), written in batches so
/// that the records are never all in memory.
pub(crate) async fn fill(db: &Path, n: usize, args: &BenchArgs) -> Result<()> {
    remove_database_files(db);
    let pool = store::open(db).await?;
    let started = Instant::now();
    let now = crate::clock::now_ms();
    let mut rng = StdRng::seed_from_u64(7);
    let mut done = 0;
    while done < n {
        let end = (done + FILL_BATCH).min(n);
        let rows: Vec<_> = (done..end)
            .map(|i| synthetic_record(&mut rng, i, args.payload_bytes, now, args.layout))
            .collect();
        records::insert_batch(&pool, &rows, &[], now).await?;
        done = end;
    }
    pool.close().await;
    println!(
        "  index filled with {n} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The dashboard as `serve` runs it, on this index and cluster, once its search index has
/// caught up with the freshly filled records: a replay is measured on a dashboard at rest,
/// not next to a catch-up of the whole index.
async fn start(bootstrap: &str, db: &Path, compression: Compression) -> Result<Dashboard> {
    let dashboard = Dashboard::start(ServeArgs {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        database: db.to_path_buf(),
        brokers: Some(bootstrap.to_string()),
        replay_compression: Some(compression),
        replay_consumer_groups: TARGETS
            .iter()
            .map(|(t, _)| format!("{}.dlq={BENCH_GROUP}", t.trim_end_matches(".retry.1")))
            .collect(),
        ..ServeArgs::default()
    })
    .await?;
    let started = Instant::now();
    while !store::search::progress(&dashboard.state.pool)
        .await?
        .complete()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  search index caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(dashboard)
}

/// Preview everything in the index (a frozen job in 'preview'); its id.
async fn preview(dashboard: &Dashboard, n: usize) -> Result<String> {
    let preview = dashboard
        .state
        .actions
        .preview(
            Selection::Filter(MessageFilter::default()),
            0,
            &crate::actions::Actor::unlimited("bench"),
        )
        .await?;
    if preview.count != n as i64 {
        return Err(Error::Conflict(format!(
            "the bench preview covers {} of {n} messages ({} refused)",
            preview.count, preview.refused_count
        )));
    }
    Ok(preview.preview_id)
}

/// A previewed job's items with everything the producer needs, for the bare baseline.
async fn load_items(pool: &SqlitePool, job_id: &str) -> Result<Vec<SendItem>> {
    let mut items: Vec<SendItem> = Vec::new();
    let mut after = 0;
    loop {
        let chunk = items::next_items(pool, job_id, after, 5000).await?;
        let Some(last) = chunk.last() else { break };
        after = last.record_id;
        items.extend(chunk);
    }
    Ok(items)
}

/// librdkafka's statistics of the bare producer: bytes it sent to the brokers.
#[derive(Default)]
struct WireCounts {
    tx_bytes: AtomicU64,
    reports: AtomicU64,
}

#[derive(Default, Clone)]
struct WireBytes(Arc<WireCounts>);

impl rdkafka::ClientContext for WireBytes {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.0
            .tx_bytes
            .store(statistics.tx_bytes.max(0) as u64, Ordering::Relaxed);
        self.0.reports.fetch_add(1, Ordering::Release);
    }
}

/// Produce the items as the replay does (same producer settings, same headers) and wait
/// for every delivery report; seconds taken, and bytes sent to the broker (from
/// librdkafka's statistics, so compressed batches and protocol framing).
async fn bare_produce(
    kafka: &KafkaSettings,
    job_id: &str,
    items: &[SendItem],
) -> Result<(f64, f64)> {
    let wire = WireBytes::default();
    let producer: FutureProducer<WireBytes> = producer_config(kafka, kafka.replay_compression)
        .set("statistics.interval.ms", "100")
        .create_with_context(wire.clone())?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(items.len());
    for item in items {
        let mut record = replay_record(job_id, item, crate::clock::now_ms());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(Error::Conflict("the bare producer went away".into())),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Statistics come every 100 ms: two more reports include every sent batch.
    let stats = &wire.0;
    let seen = stats.reports.load(Ordering::Acquire);
    let waited = Instant::now();
    while stats.reports.load(Ordering::Acquire) < seen + 2
        && waited.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((secs, stats.tx_bytes.load(Ordering::Relaxed) as f64))
}

/// Confirm a preview and wait until the job has finished; seconds from confirm to the
/// finished job (every result recorded), and the job.
async fn replay(dashboard: &Dashboard, preview_id: &str) -> Result<(f64, jobs::Job)> {
    let pool = &dashboard.state.pool;
    let started = Instant::now();
    dashboard
        .state
        .actions
        .confirm(preview_id, None, &crate::actions::Actor::unlimited("bench"))
        .await?;
    loop {
        let job = jobs::job(pool, preview_id)
            .await?
            .ok_or_else(|| plan::unknown_job(preview_id))?;
        if job.status.is_final() {
            return Ok((started.elapsed().as_secs_f64(), job));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
