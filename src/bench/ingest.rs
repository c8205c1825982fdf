//! `dlq-dashboard bench --suite ingest`: the backlog path a user waits on (broker → consumer →
//! normaliser → store → search), next to each of its parts measured in the same run.
//!
//! The broker is `dlq-dashboard dev-cluster` in a child process, so its CPU and memory are
//! not this process's. `--ingest-records` records (the demo pipeline's header conventions and
//! error classes, values padded to `--payload-bytes` of JSON) are produced, lz4-compressed,
//! into `--ingest-partitions` partitions of 4 topics, in runs of one partition as a consumer
//! receives them. The mock cluster keeps at most 5 MiB of batches per partition and silently
//! drops the oldest beyond that (librdkafka, rdkafka_mock.c, `max_size`; it cannot be raised
//! from outside), so every partition's watermarks are checked after producing: a log that
//! does not start at 0 stops the bench with a sentence saying to add partitions.
//!
//! Then, in order, each timed on its own:
//! 1. a raw consume of every record through librdkafka, polled on a thread (no storage);
//! 2. the same through rdkafka's async `StreamConsumer::recv`, one await per message, as the
//!    indexer reads;
//! 3. consume and normalise (what the indexer does before storing), polled on a thread;
//! 4. a bare insert of the same rows (`bench --suite index`'s baseline);
//! 5. the store-level index (`records::insert_batch` in batches of 5000, search filled
//!    alongside), timed until stored and until searchable;
//! 6. the dashboard as `serve` runs it, on a fresh index file, timed from start until the
//!    indexer counts every record stored, and until the search index has caught up; the
//!    stored rows are then counted and must equal what was produced.
//!
//! Steps 4 and 5 write rows generated here from the same seed as the produced records, with
//! the coordinates the broker gave them, so both store exactly what the indexer stores.

use crate::kafka::child::ChildCluster;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::app::Dashboard;
use crate::bench::{
    create_bare_table, ingest_scale, insert_bare_batch, remove_database_files, watch, BATCH, WORDS,
};
use crate::config::{BenchArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::filter::MessageFilter;
use crate::index::consumer::parts_of;
use crate::index::normalise::RawHeader;
use crate::index::record::{NewRecord, RecordParts};
use crate::store::health::WalFile;
use crate::store::positions::Position;
use crate::store::{self, records, search};

/// The topics records are produced to; partitions are spread evenly over them.
pub(super) const TOPICS: [&str; 4] = [
    "ingest-orders.dlq",
    "ingest-payments.dlq",
    "ingest-shipping.dlq",
    "ingest-inventory.dlq",
];

/// Records of one partition in a row, as they are produced (and so fetched).
const RUN: usize = 500;

/// The longest any one phase may take before the bench gives up.
pub(super) const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The bench's records, in production order, each time the same from the same seed.
pub(super) struct Records {
    rng: StdRng,
    now: i64,
    payload_bytes: usize,
    partitions: usize,
    next_offsets: Vec<i64>,
    i: usize,
}

impl Records {
    pub(super) fn new(partitions: usize, payload_bytes: usize, now: i64) -> Self {
        Records {
            rng: StdRng::seed_from_u64(15),
            now,
            payload_bytes,
            partitions,
            next_offsets: vec![0; partitions],
            i: 0,
        }
    }

    /// The partition slot `s` as (topic, partition).
    fn slot(&self, s: usize) -> (&'static str, i32) {
        (TOPICS[s % TOPICS.len()], (s / TOPICS.len()) as i32)
    }

    /// Go on as if `i` records had been made (partitions and timestamps follow on; the
    /// contents start again from the seed, which the soak does not mind).
    pub(super) fn skip(&mut self, i: usize) {
        self.i = i;
    }

    /// Every (topic, partition) the records go to.
    fn all_partitions(&self) -> Vec<(&'static str, i32)> {
        (0..self.partitions).map(|s| self.slot(s)).collect()
    }

    /// Partitions per topic.
    fn per_topic(&self) -> i32 {
        self.partitions.div_ceil(TOPICS.len()) as i32
    }

    /// The next record, with the coordinates the broker gives it (offsets follow on per
    /// partition from 0, as one idempotent producer's writes do).
    pub(super) fn next_parts(&mut self) -> RecordParts {
        let i = self.i;
        self.i += 1;
        let slot = (i / RUN) % self.partitions;
        let (topic, partition) = self.slot(slot);
        let offset = self.next_offsets[slot];
        self.next_offsets[slot] += 1;
        // Spread over the last day, rising.
        let at = self.now - 86_400_000 + (i as i64 * 37) % 86_400_000;
        let demo = crate::demo::backlog::demo_record(&mut self.rng, at);
        let value = demo.value.map(|v| self.padded(v));
        RecordParts {
            topic: topic.to_string(),
            partition,
            offset,
            timestamp: Some((at, "create")),
            key: demo.key,
            value,
            headers: demo
                .headers
                .into_iter()
                .map(|(name, value)| RawHeader {
                    name,
                    value: Some(value),
                })
                .collect(),
        }
    }

    /// A JSON object value grown to about the payload size with a note of words; other
    /// values (binary ones, as Kafka Connect's Avro) as they are.
    fn padded(&mut self, value: Vec<u8>) -> Vec<u8> {
        use rand::Rng;
        if value.last() != Some(&b'}') || value.len() + 16 >= self.payload_bytes {
            return value;
        }
        let mut v = value;
        v.pop();
        v.extend_from_slice(br#","note":""#);
        while v.len() + 2 < self.payload_bytes {
            v.extend_from_slice(WORDS[self.rng.random_range(0..WORDS.len())].as_bytes());
            v.push(b' ');
        }
        v.extend_from_slice(b"\"}");
        v
    }
}

/// Run the ingest benchmark and print a report.
pub async fn run(args: &BenchArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => d.join("ingest"),
        None => std::env::temp_dir().join(format!("dlq-ingest-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let outcome = measure(args, &dir).await;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

/// Seconds each phase took for all `n` records.
#[derive(Debug, Default)]
struct Times {
    raw_thread: f64,
    raw_stream: f64,
    normalise_thread: f64,
    bare: f64,
    store_stored: f64,
    store_searchable: f64,
    e2e_stored: f64,
    e2e_searchable: f64,
    cpu_bare: f64,
    cpu_store: f64,
    cpu_e2e: f64,
}

async fn measure(args: &BenchArgs, dir: &Path) -> Result<()> {
    let n = args.ingest_records;
    let partitions = args.ingest_partitions as usize;
    let now = crate::clock::now_ms();
    let layout = Records::new(partitions, args.payload_bytes, now);
    println!(
        "ingest: {n} records of ~{} B (the demo's header conventions and error classes), {} topics x {} partitions, lz4, in runs of {RUN} per partition; mock cluster in a child process (1 broker)",
        args.payload_bytes,
        TOPICS.len(),
        layout.per_topic()
    );
    print_load("at start");
    let mut broker = ChildCluster::start(TOPICS.iter().map(|t| (*t, layout.per_topic())))?;
    let result = async {
        let bootstrap = broker.bootstrap.clone();
        let started = Instant::now();
        let produced = produce(&bootstrap, n, partitions, args.payload_bytes, now).await?;
        println!(
            "  produced {produced} records in {:.1} s ({:.0}/s)",
            started.elapsed().as_secs_f64(),
            produced as f64 / started.elapsed().as_secs_f64()
        );
        check_logs_whole(&bootstrap, &layout, n).await?;
        let mut t = Times::default();
        if args.ingest_e2e_only {
            println!("  --ingest-e2e-only: no raw consume, bare insert or store-level phase");
            print_load("before the dashboard");
            let cpu = cpu_seconds();
            (t.e2e_stored, t.e2e_searchable) = end_to_end(dir, &bootstrap, args, now).await?;
            rate_line("dashboard end to end, stored", n, t.e2e_stored);
            rate_line("dashboard end to end, searchable", n, t.e2e_searchable);
            cpu_line(n, cpu);
            print_load("at the end");
            return Ok(());
        }
        let all = layout.all_partitions();
        let cpu = cpu_seconds();
        t.raw_thread = consume_on_thread(&bootstrap, &all, n, false).await?;
        rate_line(
            "raw consume, polled on a thread (no storage)",
            n,
            t.raw_thread,
        );
        cpu_line(n, cpu);
        t.raw_stream = consume_stream(&bootstrap, &all, n).await?;
        rate_line("raw consume, async StreamConsumer::recv", n, t.raw_stream);
        let cpu = cpu_seconds();
        t.normalise_thread = consume_on_thread(&bootstrap, &all, n, true).await?;
        rate_line(
            "consume + copy + normalise, on a thread (no storage)",
            n,
            t.normalise_thread,
        );
        cpu_line(n, cpu);
        print_load("before the store phases");
        let started = Instant::now();
        let rows = rows(n, partitions, args.payload_bytes, now);
        println!(
            "  generated the same {} rows in {:.1} s for the store phases",
            rows.len(),
            started.elapsed().as_secs_f64()
        );
        let cpu = cpu_seconds();
        t.bare = bare(dir, &rows).await?;
        rate_line("bare insert of the same rows", n, t.bare);
        t.cpu_bare = cpu_line(n, cpu);
        let cpu = cpu_seconds();
        (t.store_stored, t.store_searchable) = store_level(dir, &rows).await?;
        rate_line("store-level index, stored", n, t.store_stored);
        rate_line("store-level index, searchable", n, t.store_searchable);
        t.cpu_store = cpu_line(n, cpu);
        drop(rows);
        print_load("before the dashboard");
        let cpu = cpu_seconds();
        (t.e2e_stored, t.e2e_searchable) = end_to_end(dir, &bootstrap, args, now).await?;
        rate_line("dashboard end to end, stored", n, t.e2e_stored);
        rate_line("dashboard end to end, searchable", n, t.e2e_searchable);
        t.cpu_e2e = cpu_line(n, cpu);
        report(n, &t);
        print_load("at the end");
        Ok(())
    }
    .await;
    broker.stop();
    result
}

/// CPU seconds this process has used so far, all threads (user + system, from
/// /proc/self/stat; 0 where there is none). The broker is another process and not counted.
/// On a shared machine the wall-clock rates move with the load; the CPU per record much less.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces, in parentheses).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 a second
    // on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Print the CPU this process used since `since` for `n` records; returns µs per record.
fn cpu_line(n: usize, since: f64) -> f64 {
    let used = cpu_seconds() - since;
    let per = used * 1e6 / n as f64;
    println!("    CPU of this process: {used:.1} s, {per:.0} µs/record");
    per
}

fn rate_line(what: &str, n: usize, secs: f64) {
    println!(
        "  {what:<54} {:>8.0} records/s  ({secs:.1} s)",
        n as f64 / secs
    );
}

fn report(n: usize, t: &Times) {
    let rate = |s: f64| n as f64 / s;
    println!("ingest summary ({n} records):");
    println!(
        "  raw consume {:.0}/s (thread), {:.0}/s (async recv); consume+normalise {:.0}/s",
        rate(t.raw_thread),
        rate(t.raw_stream),
        rate(t.normalise_thread)
    );
    println!(
        "  bare insert {:.0}/s; store-level index {:.0}/s stored, {:.0}/s searchable",
        rate(t.bare),
        rate(t.store_stored),
        rate(t.store_searchable)
    );
    println!(
        "  end to end {:.0}/s stored, {:.0}/s searchable",
        rate(t.e2e_stored),
        rate(t.e2e_searchable)
    );
    println!(
        "  ratio end to end / store-level: {:.2}x stored, {:.2}x searchable (target >= 0.8x)",
        t.store_stored / t.e2e_stored,
        t.store_searchable / t.e2e_searchable
    );
    println!(
        "  ratio end to end / bare insert: {:.2}x stored, {:.2}x searchable (target >= 0.6x)",
        t.bare / t.e2e_stored,
        t.bare / t.e2e_searchable
    );
    println!(
        "  CPU per record: bare insert {:.0} µs, store-level {:.0} µs, end to end {:.0} µs (end to end / store-level {:.2}x)",
        t.cpu_bare,
        t.cpu_store,
        t.cpu_e2e,
        t.cpu_e2e / t.cpu_store
    );
    println!(
        "  ratio store-level / bare insert: {:.2}x stored; end to end / raw consume (thread): {:.2}x",
        t.bare / t.store_stored,
        t.raw_thread / t.e2e_stored
    );
}

/// The load average, for the report: figures of a loaded machine are not comparable.
fn print_load(when: &str) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let parts: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("  load average {when}: {}", parts.join(" "));
    }
}

pub(super) fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "dlq-ingest-bench")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
    config
}

/// Produce the bench's `n` records on a blocking thread; how many were produced.
async fn produce(
    bootstrap: &str,
    n: usize,
    partitions: usize,
    payload_bytes: usize,
    now: i64,
) -> Result<usize> {
    let producer: BaseProducer = client(bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()?;
    tokio::task::spawn_blocking(move || -> Result<usize> {
        let mut records = Records::new(partitions, payload_bytes, now);
        for _ in 0..n {
            send(&producer, &records.next_parts())?;
        }
        producer.flush(Duration::from_secs(300))?;
        Ok(n)
    })
    .await
    .map_err(|e| Error::Internal(format!("the producer thread failed: {e}")))?
}

/// Queue one record to its partition, waiting for room while the queue is full.
pub(super) fn send(producer: &BaseProducer, parts: &RecordParts) -> Result<()> {
    let mut headers = OwnedHeaders::new_with_capacity(parts.headers.len());
    for h in &parts.headers {
        headers = headers.insert(Header {
            key: &h.name,
            value: h.value.as_deref(),
        });
    }
    let mut record = BaseRecord::<[u8], [u8]>::to(&parts.topic)
        .partition(parts.partition)
        .headers(headers);
    if let Some(k) = parts.key.as_deref() {
        record = record.key(k);
    }
    if let Some(v) = parts.value.as_deref() {
        record = record.payload(v);
    }
    if let Some((ts, _)) = parts.timestamp {
        record = record.timestamp(ts);
    }
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// Every partition holds exactly its share, from offset 0: the mock cluster drops a
/// partition's oldest batches past 5 MiB, which would make every later figure wrong.
async fn check_logs_whole(bootstrap: &str, layout: &Records, n: usize) -> Result<()> {
    let consumer: BaseConsumer = client(bootstrap).create()?;
    let parts = layout.all_partitions();
    let partitions = layout.partitions;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut total = 0;
        for (topic, p) in parts {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if low != 0 {
                return Err(Error::Config(format!(
                    "The mock cluster dropped the first {low} records of {topic} partition {p} (it keeps 5 MiB per partition); run again with more than {partitions} --ingest-partitions."
                )));
            }
            total += high;
        }
        if total != n as i64 {
            return Err(Error::Conflict(format!(
                "the broker holds {total} records, {n} were produced"
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(format!("the watermark check failed: {e}")))?
}

/// Every partition from its start, for a consumer in no group.
fn assignment(all: &[(&'static str, i32)]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in all {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    Ok(tpl)
}

/// Consumer settings of the raw phases: the indexer's own, less what only it needs.
fn raw_consumer(bootstrap: &str) -> ClientConfig {
    let mut config = client(bootstrap);
    config
        .set("group.id", "dlq-ingest-bench-raw")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    config
}

/// Read every record with `BaseConsumer::poll` on a blocking thread; seconds taken. With
/// `normalise`, each message is also copied and normalised as the indexer does.
async fn consume_on_thread(
    bootstrap: &str,
    all: &[(&'static str, i32)],
    n: usize,
    normalise: bool,
) -> Result<f64> {
    let consumer: BaseConsumer = raw_consumer(bootstrap).create()?;
    consumer.assign(&assignment(all)?)?;
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        let mut seen = 0;
        let mut bytes = 0usize;
        while seen < n {
            if started.elapsed() > PHASE_TIMEOUT {
                return Err(Error::Conflict(format!("read {seen} of {n} records")));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    seen += 1;
                    if normalise {
                        let r = NewRecord::from_parts(parts_of(&m), crate::clock::now_ms());
                        bytes += r.headers_json.len();
                        std::hint::black_box(r);
                    } else {
                        bytes += m.payload_len();
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        std::hint::black_box(bytes);
        Ok(started.elapsed().as_secs_f64())
    })
    .await
    .map_err(|e| Error::Internal(format!("the consumer thread failed: {e}")))?
}

/// Read every record with one `StreamConsumer::recv().await` each; seconds taken.
async fn consume_stream(bootstrap: &str, all: &[(&'static str, i32)], n: usize) -> Result<f64> {
    let consumer: StreamConsumer = raw_consumer(bootstrap).create()?;
    consumer.assign(&assignment(all)?)?;
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..n {
        let m = tokio::time::timeout(PHASE_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| Error::Conflict("the async consumer stalled".into()))??;
        bytes += m.payload_len();
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}

/// The produced records as the indexer stores them.
fn rows(n: usize, partitions: usize, payload_bytes: usize, now: i64) -> Vec<NewRecord> {
    let mut records = Records::new(partitions, payload_bytes, now);
    (0..n)
        .map(|_| NewRecord::from_parts(records.next_parts(), now))
        .collect()
}

/// The bare baseline on a fresh file; seconds.
async fn bare(dir: &Path, rows: &[NewRecord]) -> Result<f64> {
    let path = dir.join("bare.db");
    remove_database_files(&path);
    let pool = store::open(&path).await?;
    let stop = CancellationToken::new();
    let wal_task = tokio::spawn(crate::checkpoints::run(
        pool.clone(),
        watch(&pool, WalFile::Index),
        stop.clone(),
    ));
    create_bare_table(&pool).await?;
    let started = Instant::now();
    for batch in rows.chunks(BATCH) {
        insert_bare_batch(&pool, batch).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = wal_task.await;
    pool.close().await;
    remove_database_files(&path);
    remove_database_files(&search::path_for(&path));
    Ok(secs)
}

/// The store-level index on a fresh file, search filled alongside as the dashboard fills
/// it; seconds until stored and until searchable.
async fn store_level(dir: &Path, rows: &[NewRecord]) -> Result<(f64, f64)> {
    let path = dir.join("store.db");
    remove_database_files(&path);
    remove_database_files(&search::path_for(&path));
    let pool = store::open(&path).await?;
    let stop = CancellationToken::new();
    let health = watch(&pool, WalFile::Index);
    let tasks = [
        tokio::spawn(crate::index::search::run(
            pool.clone(),
            health.health.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::checkpoints::run(
            pool.clone(),
            health.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::checkpoints::run_on(
            search::connect_options(&search::path_of(&pool)),
            crate::checkpoints::Watch {
                file: WalFile::Search,
                ..health
            },
            stop.clone(),
        )),
    ];
    let started = Instant::now();
    for batch in rows.chunks(BATCH) {
        let mut advance: Vec<Position> = Vec::new();
        for r in batch {
            match advance
                .iter_mut()
                .find(|p| p.partition == r.partition && p.topic == r.topic)
            {
                Some(p) => p.next_offset = p.next_offset.max(r.offset + 1),
                None => advance.push(Position {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    generation: 0,
                    next_offset: r.offset + 1,
                }),
            }
        }
        let outcome = records::insert_batch(&pool, batch, &advance, crate::clock::now_ms()).await?;
        if outcome.already_indexed > 0 {
            return Err(Error::Conflict(format!(
                "{} bench records shared coordinates with earlier ones",
                outcome.already_indexed
            )));
        }
    }
    let stored = started.elapsed().as_secs_f64();
    while !search::progress(&pool).await?.complete() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let searchable = started.elapsed().as_secs_f64();
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    pool.close().await;
    remove_database_files(&path);
    remove_database_files(&search::path_for(&path));
    Ok((stored, searchable))
}

/// The dashboard, started as `serve` starts it on a fresh index of the bench's topics;
/// seconds from start until every record is stored (with progress lines on the way), and
/// until searchable. The stored rows are counted: exactly the produced records, each once.
/// Then, with `--ingest-soak-secs`, the soak (src/bench/ingest_scale.rs).
async fn end_to_end(dir: &Path, bootstrap: &str, args: &BenchArgs, now: i64) -> Result<(f64, f64)> {
    let n = args.ingest_records;
    let path = dir.join("e2e.db");
    remove_database_files(&path);
    remove_database_files(&search::path_for(&path));
    let started = Instant::now();
    let dashboard = Dashboard::start(ServeArgs {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        database: path.clone(),
        brokers: Some(bootstrap.to_string()),
        dlq_topics: TOPICS.iter().map(|t| t.to_string()).collect(),
        // The indexer storing whole records is what is measured: on a machine low on
        // space it would otherwise store metadata only (see `store::deferred`).
        min_free_space: crate::store::space::MinFreeSpace::Bytes(0),
        ..ServeArgs::default()
    })
    .await?;
    let result = async {
        let status = &dashboard.state.status;
        let stored = ingest_scale::wait_stored(&dashboard, &path, n, started).await?;
        let pool = &dashboard.state.pool;
        while !search::progress(pool).await?.complete() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let searchable = started.elapsed().as_secs_f64();
        let count =
            records::count_capped(pool, &MessageFilter::default(), n as i64 + 1).await? as usize;
        if count != n || status.snapshot().indexed as usize != n {
            return Err(Error::Conflict(format!(
                "the dashboard stored {count} rows and counted {} indexed of {n} produced",
                status.snapshot().indexed
            )));
        }
        println!("  the dashboard's index holds exactly the {n} produced records");
        ingest_scale::print_sizes(&path, n);
        if args.ingest_soak_secs > 0 {
            ingest_scale::soak(
                &dashboard,
                bootstrap,
                ingest_scale::SoakPlan {
                    secs: args.ingest_soak_secs,
                    backlog: n,
                    partitions: args.ingest_partitions as usize,
                    payload_bytes: args.payload_bytes,
                    now,
                    deep_cursor: deep_cursor(n, now),
                },
            )
            .await?;
        }
        Ok((stored, searchable))
    }
    .await;
    dashboard.shutdown().await;
    remove_database_files(&path);
    remove_database_files(&search::path_for(&path));
    result
}

/// A listing cursor halfway down the records' time span (newest first), for a deep page:
/// record `i` is at `now - 1 day + (i * 37 ms mod 1 day)`.
fn deep_cursor(n: usize, now: i64) -> String {
    let span = (n as i64 * 37).min(86_400_000);
    crate::filter::Cursor {
        ts: now - 86_400_000 + span / 2,
        id: i64::MAX,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator gives every partition offsets from 0 with no gap, spreads records
    /// evenly, and repeats itself from the same seed (the store phases rely on it).
    #[test]
    fn records_follow_on_per_partition_and_repeat() {
        let mut a = Records::new(8, 1024, 0);
        let mut b = Records::new(8, 1024, 0);
        let mut next = std::collections::HashMap::new();
        for _ in 0..8 * RUN * 2 {
            let (x, y) = (a.next_parts(), b.next_parts());
            assert_eq!(
                (x.topic.as_str(), x.partition, x.offset),
                (y.topic.as_str(), y.partition, y.offset)
            );
            assert_eq!(x.value, y.value);
            let e = next.entry((x.topic.clone(), x.partition)).or_insert(0);
            assert_eq!(x.offset, *e);
            *e += 1;
        }
        assert_eq!(next.len(), 8);
        assert!(next.values().all(|&c| c == 2 * RUN as i64));
    }
}
