//! `dlq-dashboard bench`: index rate and query latency, each printed next to a bare
//! baseline measured in the same run, because absolute times on shared machines are noisy.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite};
use tokio_util::sync::CancellationToken;

use crate::config::{BenchArgs, BenchLayout};
use crate::error::{Error, Result};
use crate::filter::MessageQuery;
use crate::index::normalise::RawHeader;
use crate::index::record::{NewRecord, RecordParts};
use crate::store::health::WalFile;
use crate::store::positions::Position;
use crate::store::{self, records, search};

pub mod ingest;
mod ingest_scale;

/// Records per transaction, as the indexer writes them at full speed.
pub(crate) const BATCH: usize = 5000;

pub(crate) const WORDS: &[&str] = &[
    "order",
    "payment",
    "refund",
    "customer",
    "invoice",
    "shipment",
    "warehouse",
    "checkout",
    "timeout",
    "declined",
    "pending",
    "captured",
    "voided",
    "express",
    "standard",
    "priority",
];

/// Records of one partition in a row, in the `runs` layout: librdkafka hands a consumer what
/// one fetch returned for a partition (up to 1 MiB of it) before the next partition's.
const RUN: usize = 500;

/// One day in ms.
const DAY_MS: i64 = 86_400_000;

/// Where the `i`th synthetic record comes from: (topic, partition, offset, timestamp).
fn synthetic_coordinates(i: usize, now: i64, layout: BenchLayout) -> (&'static str, i32, i64, i64) {
    const TOPICS: [&str; 4] = [
        "orders.dlq",
        "payments.dlq",
        "shipping.dlq",
        "inventory.dlq",
    ];
    match layout {
        // 8 partitions (2 per topic) taking turns in runs, 12.5 records/s over the last day.
        BenchLayout::Runs => {
            let run = i / RUN;
            let slot = run % 8;
            let offset = (run / 8 * RUN + i % RUN) as i64;
            let ts = now - DAY_MS + (i as i64 * 80) % DAY_MS;
            (TOPICS[slot % 4], (slot / 4) as i32, offset, ts)
        }
        BenchLayout::Interleaved => (
            TOPICS[i % 4],
            (i % 8) as i32,
            (i / 4) as i64,
            now - (i as i64 % 86_400) * 1000,
        ),
    }
}

pub(crate) fn synthetic_record(
    rng: &mut StdRng,
    i: usize,
    payload_bytes: usize,
    now: i64,
    layout: BenchLayout,
) -> NewRecord {
    let (topic, partition, offset, ts) = synthetic_coordinates(i, now, layout);
    let mut value = format!(
        r#"{{"id":"ord-{i}","customer":{},"amount":{}.{:02},"note":""#,
        rng.random_range(1..100_000),
        rng.random_range(1..5000),
        rng.random_range(0..100)
    );
    while value.len() + 3 < payload_bytes {
        value.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        value.push(' ');
    }
    value.push_str("\"}");
    let class = [
        "TimeoutError",
        "ValidationError",
        "IllegalStateException",
        "DataException",
    ][rng.random_range(0..4)];
    let header = |n: &str, v: String| RawHeader {
        name: n.into(),
        value: Some(v.into_bytes()),
    };
    NewRecord::from_parts(
        RecordParts {
            topic: topic.into(),
            partition,
            offset,
            timestamp: Some((ts, "create")),
            key: Some(format!("ord-{i}").into_bytes()),
            value: Some(value.into_bytes()),
            headers: vec![
                header("dlq-origin-topic", topic.trim_end_matches(".dlq").into()),
                header("dlq-origin-partition", (i % 3).to_string()),
                header("dlq-origin-offset", (i * 7).to_string()),
                header("dlq-error-class", class.into()),
                header(
                    "dlq-error-message",
                    format!(
                        "{class} while handling order ord-{i} after {} ms",
                        rng.random_range(10..9000)
                    ),
                ),
            ],
        },
        now,
    )
}

/// Every field of a record, as one wide row of the bare baseline.
const BARE_COLUMNS: &str = "topic, partition, generation, \"offset\", ts, timestamp_type, indexed_at, key, value, value_size, headers, convention, origin_topic, origin_partition, origin_offset, origin_timestamp, consumer_group, error_class, error_message, stacktrace, attempts, problems, fingerprint, status";

/// Bind one record as a row of `BARE_COLUMNS` in a multi-row INSERT through sqlx.
fn push_bare_row<'args>(mut b: Separated<'_, 'args, Sqlite, &'static str>, r: &'args NewRecord) {
    let n = &r.normalised;
    b.push_bind(&r.topic)
        .push_bind(r.partition)
        .push_bind(r.generation)
        .push_bind(r.offset)
        .push_bind(r.ts)
        .push_bind(r.timestamp_type)
        .push_bind(r.indexed_at)
        .push_bind(r.key.as_deref())
        .push_bind(r.value.as_deref())
        .push_bind(r.value.as_ref().map_or(0, |v| v.len() as i64))
        .push_bind(&r.headers_json)
        .push_bind(n.convention.as_str())
        .push_bind(n.origin_topic.as_deref())
        .push_bind(n.origin_partition)
        .push_bind(n.origin_offset)
        .push_bind(n.origin_timestamp)
        .push_bind(n.consumer_group.as_deref())
        .push_bind(n.error_class.as_deref())
        .push_bind(n.error_message.as_deref())
        .push_bind(n.stacktrace.as_deref())
        .push_bind(n.attempts)
        .push_bind((!n.problems.is_empty()).then(|| n.problems.join("\n")))
        .push_bind(&r.fingerprint)
        .push_bind("new");
}

/// Bare baseline: the same rows and columns, multi-row inserts in transactions of the same
/// size, into a table with no secondary index, no search index and no counters.
async fn bare_insert(pool: &sqlx::SqlitePool, rows: &[NewRecord]) -> Result<f64> {
    create_bare_table(pool).await?;
    let started = Instant::now();
    for batch in rows.chunks(BATCH) {
        insert_bare_batch(pool, batch).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The bare baseline's table: every column of a record, no index, no constraint.
pub(crate) async fn create_bare_table(pool: &sqlx::SqlitePool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE bare (topic TEXT, partition INTEGER, generation INTEGER, \"offset\" INTEGER, ts INTEGER,
         timestamp_type TEXT, indexed_at INTEGER, key BLOB, value BLOB, value_size INTEGER, headers TEXT,
         convention TEXT, origin_topic TEXT, origin_partition INTEGER, origin_offset INTEGER,
         origin_timestamp INTEGER, consumer_group TEXT, error_class TEXT, error_message TEXT,
         stacktrace TEXT, attempts INTEGER, problems TEXT, fingerprint TEXT, status TEXT)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// One transaction of the bare baseline: `batch` as multi-row inserts of 400 rows.
pub(crate) async fn insert_bare_batch(pool: &sqlx::SqlitePool, batch: &[NewRecord]) -> Result<()> {
    let mut tx = crate::store::begin_write(pool).await?;
    // The same page cache as the index's batches (which need it more: each of their
    // records changes ten b-trees, not one).
    crate::store::batch_cache(&mut tx, true).await?;
    for chunk in batch.chunks(400) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO bare ({BARE_COLUMNS}) "));
        qb.push_values(chunk, push_bare_row);
        qb.build().execute(&mut *tx).await?;
    }
    crate::store::batch_cache(&mut tx, false).await?;
    tx.commit().await?;
    Ok(())
}

/// How long indexing took: until the last batch was stored (browsable), and until the
/// search index, filled alongside as the dashboard fills it, had caught up.
struct IndexTimes {
    stored_secs: f64,
    searchable_secs: f64,
}

/// The checkpoints' reports of a benchmark file, with the dashboard's default bound.
pub(crate) fn watch(pool: &sqlx::SqlitePool, file: WalFile) -> crate::checkpoints::Watch {
    crate::checkpoints::Watch {
        file,
        health: std::sync::Arc::new(crate::store::health::WriteHealth::new(
            pool.connect_options().get_filename(),
        )),
        max_wal_bytes: crate::config::ServeArgs::default().max_wal_size,
    }
}

async fn full_insert(pool: &sqlx::SqlitePool, rows: &[NewRecord]) -> Result<IndexTimes> {
    let stop = CancellationToken::new();
    let health = watch(pool, WalFile::Index);
    let search_task = tokio::spawn(crate::index::search::run(
        pool.clone(),
        health.health.clone(),
        stop.clone(),
    ));
    let wal_task = tokio::spawn(crate::checkpoints::run(
        pool.clone(),
        health.clone(),
        stop.clone(),
    ));
    let search_wal_task = tokio::spawn(crate::checkpoints::run_on(
        search::connect_options(&search::path_of(pool)),
        crate::checkpoints::Watch {
            file: WalFile::Search,
            ..health
        },
        stop.clone(),
    ));
    let started = Instant::now();
    for batch in rows.chunks(BATCH) {
        let last = batch.last().map(|r| Position {
            topic: r.topic.clone(),
            partition: r.partition,
            generation: 0,
            next_offset: r.offset + 1,
        });
        let outcome =
            records::insert_batch(pool, batch, last.as_slice(), crate::clock::now_ms()).await?;
        // A record skipped as already indexed would make the rate count work not done.
        if outcome.already_indexed > 0 {
            return Err(Error::Conflict(format!(
                "{} synthetic records shared coordinates with earlier ones",
                outcome.already_indexed
            )));
        }
    }
    let stored_secs = started.elapsed().as_secs_f64();
    while !search::progress(pool).await?.complete() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let searchable_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = search_task.await;
    let _ = wal_task.await;
    let _ = search_wal_task.await;
    Ok(IndexTimes {
        stored_secs,
        searchable_secs,
    })
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(pool: &sqlx::SqlitePool, query: &str, runs: usize) -> Result<(f64, f64)> {
    let q = MessageQuery::parse(query)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let page = records::list(pool, &q).await?;
        std::hint::black_box(page.rows.len());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

/// Resident memory of this process in MiB (Linux), for the report.
pub(crate) fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Delete an SQLite file with its log and shared-memory files, so a round starts afresh.
pub(crate) fn remove_database_files(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
}

/// One round of the index-rate benchmark: the bare insert, then the index with payloads
/// stored as received, then with them compressed (`--compress-payloads-above`'s default),
/// each on fresh files.
struct Round {
    bare_secs: f64,
    index: IndexTimes,
    /// The index file's size after the uncompressed index, bytes (log copied back).
    plain_bytes: u64,
    compressed: IndexTimes,
    /// The index file's size after the compressed index, bytes.
    compressed_bytes: u64,
}

impl Round {
    fn stored_ratio(&self) -> f64 {
        self.bare_secs / self.index.stored_secs
    }

    fn searchable_ratio(&self) -> f64 {
        self.bare_secs / self.index.searchable_secs
    }
}

/// The bare insert and then the index twice (payloads as received, then compressed), each
/// into fresh files in `dir`. Returns the round and the compressed index, open, for the
/// latency measurements.
async fn index_round(dir: &Path, rows: &[NewRecord]) -> Result<(Round, sqlx::SqlitePool)> {
    let bare_path = dir.join("bare.db");
    remove_database_files(&bare_path);
    let bare_pool = store::open(&bare_path).await?;
    // The bare table gets the same background checkpoints as the index: only the schema and
    // the work per row differ.
    let stop = CancellationToken::new();
    let wal_task = tokio::spawn(crate::checkpoints::run(
        bare_pool.clone(),
        watch(&bare_pool, WalFile::Index),
        stop.clone(),
    ));
    let bare_secs = bare_insert(&bare_pool, rows).await?;
    stop.cancel();
    let _ = wal_task.await;
    bare_pool.close().await;
    remove_database_files(&bare_path);
    remove_database_files(&search::path_for(&bare_path));
    // Files of their own: SQLite keeps per-process state by file, so a file deleted and made
    // again under the same name while this process had it open fails with an I/O error.
    let (index, plain_bytes, pool) = index_once(&dir.join("plain.db"), rows, 0).await?;
    pool.close().await;
    remove_database_files(&dir.join("plain.db"));
    remove_database_files(&search::path_for(&dir.join("plain.db")));
    let (compressed, compressed_bytes, pool) = index_once(
        &dir.join("index.db"),
        rows,
        store::codec::DEFAULT_COMPRESS_ABOVE,
    )
    .await?;
    Ok((
        Round {
            bare_secs,
            index,
            plain_bytes,
            compressed,
            compressed_bytes,
        },
        pool,
    ))
}

/// Index `rows` into a fresh index at `index_path`, compressing payloads above `compress_above`
/// bytes (0 = not at all); returns the times, the index file's size once its log is copied
/// back, and the index, open.
async fn index_once(
    index_path: &Path,
    rows: &[NewRecord],
    compress_above: usize,
) -> Result<(IndexTimes, u64, sqlx::SqlitePool)> {
    remove_database_files(index_path);
    remove_database_files(&search::path_for(index_path));
    let pool = store::open(index_path).await?;
    store::codec::set_compress_above(&pool, compress_above).await?;
    let times = full_insert(&pool, rows).await?;
    sqlx::query("PRAGMA main.wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    let bytes = std::fs::metadata(index_path)?.len();
    Ok((times, bytes, pool))
}

/// What a trained zstd dictionary would save on the payloads, measured on the rows
/// themselves: one dictionary per topic trained on its first `SAMPLE` payloads, then every
/// payload above the threshold compressed with and without it.
fn dictionary_trial(rows: &[NewRecord]) -> Result<()> {
    const SAMPLE: usize = 1000;
    const DICT_BYTES: usize = 16 * 1024;
    let above = store::codec::DEFAULT_COMPRESS_ABOVE;
    let payloads: Vec<(&str, &[u8])> = rows
        .iter()
        .filter_map(|r| r.value.as_deref().map(|v| (r.topic.as_str(), v)))
        .filter(|(_, v)| v.len() > above)
        .collect();
    if payloads.is_empty() {
        println!("dictionary trial: no payload above {above} B");
        return Ok(());
    }
    let zstd_err = |e: std::io::Error| Error::Internal(format!("zstd: {e}"));
    let mut topics: Vec<&str> = payloads.iter().map(|(t, _)| *t).collect();
    topics.sort_unstable();
    topics.dedup();
    let started = Instant::now();
    let mut dictionaries = std::collections::HashMap::new();
    for topic in &topics {
        let sample: Vec<&[u8]> = payloads
            .iter()
            .filter(|(t, _)| t == topic)
            .take(SAMPLE)
            .map(|(_, v)| *v)
            .collect();
        let dict = zstd::dict::from_samples(&sample, DICT_BYTES).map_err(zstd_err)?;
        dictionaries.insert(*topic, dict);
    }
    let train_secs = started.elapsed().as_secs_f64();
    let original: usize = payloads.iter().map(|(_, v)| v.len()).sum();
    let started = Instant::now();
    let plain: usize = payloads
        .iter()
        .map(|(_, v)| {
            store::codec::encode(Some(v), above)
                .compressed
                .map_or(v.len(), |f| f.len())
        })
        .sum();
    let plain_secs = started.elapsed().as_secs_f64();
    let mut compressors = std::collections::HashMap::new();
    for (topic, dict) in &dictionaries {
        let c = zstd::bulk::Compressor::with_dictionary(3, dict).map_err(zstd_err)?;
        compressors.insert(*topic, c);
    }
    let started = Instant::now();
    let mut with_dict = 0;
    for (topic, v) in &payloads {
        let c = compressors
            .get_mut(topic)
            .ok_or_else(|| Error::Internal("no dictionary".into()))?;
        with_dict += c.compress(v).map_err(zstd_err)?.len().min(v.len());
    }
    let dict_secs = started.elapsed().as_secs_f64();
    let n = payloads.len() as f64;
    println!(
        "dictionary trial over {} payloads above {above} B ({} topics, a {} KiB dictionary each from its first {SAMPLE}, trained in {:.2} s):",
        payloads.len(),
        topics.len(),
        DICT_BYTES / 1024,
        train_secs,
    );
    println!(
        "  as received {:>7.0} B/payload   zstd {:>7.0} B/payload ({:.2}x, {:.1} us each)   zstd + dictionary {:>7.0} B/payload ({:.2}x, {:.1} us each)",
        original as f64 / n,
        plain as f64 / n,
        original as f64 / plain as f64,
        plain_secs / n * 1e6,
        with_dict as f64 / n,
        original as f64 / with_dict as f64,
        dict_secs / n * 1e6,
    );
    Ok(())
}

/// A file size scaled to a million records, MiB.
fn per_million_mib(bytes: u64, records: f64) -> f64 {
    bytes as f64 / records * 1e6 / (1024.0 * 1024.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Run the benchmarks and print a report.
pub async fn run(args: BenchArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("dlq-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let now = crate::clock::now_ms();
    let mut rng = StdRng::seed_from_u64(42);
    println!(
        "generating {} records of ~{} B, {:?} layout ...",
        args.records, args.payload_bytes, args.layout
    );
    let rows: Vec<NewRecord> = (0..args.records)
        .map(|i| synthetic_record(&mut rng, i, args.payload_bytes, now, args.layout))
        .collect();
    let n = rows.len() as f64;
    println!(
        "index rate: {} rounds, each a bare multi-row insert of the rows into a table without indexes, then the index (rows, 8 indexes, counters, groups; search filled alongside) with payloads as received, then with payloads compressed",
        args.rounds
    );
    let mut rounds = Vec::new();
    let mut pool: Option<sqlx::SqlitePool> = None;
    for round_no in 1..=args.rounds {
        if let Some(p) = pool.take() {
            p.close().await;
        }
        let (round, p) = index_round(&dir, &rows).await?;
        println!(
            "  round {round_no}: bare {:>7.0}/s   index {:>7.0}/s stored, {:>7.0}/s searchable (+{:.1} s)   ratio {:.2}x stored, {:.2}x searchable",
            n / round.bare_secs,
            n / round.index.stored_secs,
            n / round.index.searchable_secs,
            round.index.searchable_secs - round.index.stored_secs,
            round.stored_ratio(),
            round.searchable_ratio(),
        );
        println!(
            "           payloads compressed above {} B: index {:>7.0}/s stored, {:>7.0}/s searchable ({:.2}x the uncompressed index stored)   index file {:.0} MiB per million records, {:.0} MiB uncompressed ({:.2}x)",
            store::codec::DEFAULT_COMPRESS_ABOVE,
            n / round.compressed.stored_secs,
            n / round.compressed.searchable_secs,
            round.index.stored_secs / round.compressed.stored_secs,
            per_million_mib(round.compressed_bytes, n),
            per_million_mib(round.plain_bytes, n),
            round.plain_bytes as f64 / round.compressed_bytes as f64,
        );
        rounds.push(round);
        pool = Some(p);
    }
    dictionary_trial(&rows)?;
    drop(rows);
    let pool = pool.expect("at least one round");
    println!(
        "index rate, median of {} rounds: {:.0} records/s stored, {:.0} records/s searchable; bare {:.0} records/s",
        rounds.len(),
        median(rounds.iter().map(|r| n / r.index.stored_secs).collect()),
        median(rounds.iter().map(|r| n / r.index.searchable_secs).collect()),
        median(rounds.iter().map(|r| n / r.bare_secs).collect()),
    );
    println!(
        "ratio index / bare, median of the rounds' ratios: {:.2}x stored, {:.2}x searchable",
        median(rounds.iter().map(Round::stored_ratio).collect()),
        median(rounds.iter().map(Round::searchable_ratio).collect()),
    );
    println!(
        "payloads compressed above {} B, median of {} rounds: {:.0} records/s stored, {:.0} records/s searchable; index file {:.0} MiB per million records against {:.0} MiB uncompressed",
        store::codec::DEFAULT_COMPRESS_ABOVE,
        rounds.len(),
        median(rounds.iter().map(|r| n / r.compressed.stored_secs).collect()),
        median(rounds.iter().map(|r| n / r.compressed.searchable_secs).collect()),
        median(rounds.iter().map(|r| per_million_mib(r.compressed_bytes, n)).collect()),
        median(rounds.iter().map(|r| per_million_mib(r.plain_bytes, n)).collect()),
    );
    let runs = 200;
    let cases = [
        ("first page, no filter", ""),
        ("first page, topic filter", "topic=payments.dlq"),
        ("first page, error class", "error_class=TimeoutError"),
        ("search, common word", "q=refund"),
        ("search, rare key", "q=ord-4242"),
        ("search + topic", "q=timeout&topic=orders.dlq"),
    ];
    println!(
        "query latency over {} records ({runs} runs each):",
        args.records
    );
    for (name, q) in cases {
        let (p50, p99) = latency(&pool, q, runs).await?;
        println!("  {name:<28} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms");
    }
    if let Some(rss) = rss_mib() {
        println!("resident memory after the run: {rss:.0} MiB (includes the generated batch allocator high-water mark)");
    }
    pool.close().await;
    if args.dir.is_none() {
        std::fs::remove_dir_all(&dir).map_err(Error::Io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every synthetic record has coordinates of its own in both layouts (the index would
    /// skip a repeat as already indexed), and in runs each partition's offsets follow on.
    #[test]
    fn synthetic_records_never_share_coordinates() {
        for layout in [BenchLayout::Runs, BenchLayout::Interleaved] {
            let mut seen = HashSet::new();
            let mut next_offset = std::collections::HashMap::new();
            for i in 0..20_000 {
                let (topic, partition, offset, _) = synthetic_coordinates(i, 0, layout);
                assert!(
                    seen.insert((topic, partition, offset)),
                    "{layout:?} repeats record {i}"
                );
                if layout == BenchLayout::Runs {
                    let next = next_offset.entry((topic, partition)).or_insert(0);
                    assert_eq!(offset, *next, "record {i} skips offsets");
                    *next += 1;
                }
            }
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
