//! `dlq-dashboard bench --suite purge`: a purge of `--purge-records` messages through the
//! operations core of a running dashboard (preview, confirm, the chunked apply), timed, with
//! what others wait on while it runs, each next to the same measurement at rest in the same
//! run:
//! - the listing a `/messages` page runs (first page and its capped count), p50/p99/max;
//! - the writer's turn, as the indexer takes it for a batch (queue, `BEGIN IMMEDIATE`,
//!   commit), p99/max: the time the indexer would be held up by the purge's transactions.
//!
//! After the undo, the same two are measured while retention (`--retain max-records`, a cap
//! of a tenth of the messages) removes the other nine tenths: rows, bodies, counters and
//! search entries, in the cleanup's chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actions::purge::PurgeRequest;
use crate::actions::selection::Selection;
use crate::actions::Actor;
use crate::app::Dashboard;
use crate::bench::{percentile, remove_database_files};
use crate::config::{BenchArgs, ServeArgs};
use crate::error::Result;
use crate::filter::MessageQuery;
use crate::kafka::mock::EmbeddedCluster;
use crate::store::{self, records, search};

/// What one side of the comparison measured, in ms.
struct Waits {
    page: Vec<f64>,
    writer: Vec<f64>,
}

impl Waits {
    fn line(&mut self, label: &str) {
        self.page.sort_by(f64::total_cmp);
        self.writer.sort_by(f64::total_cmp);
        println!(
            "  {label:<14} /messages listing p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms ({} runs);  writer turn p99 {:>6.2} ms  max {:>7.2} ms ({} turns)",
            percentile(&self.page, 0.5),
            percentile(&self.page, 0.99),
            self.page.last().copied().unwrap_or(0.0),
            self.page.len(),
            percentile(&self.writer, 0.99),
            self.writer.last().copied().unwrap_or(0.0),
            self.writer.len(),
        );
    }
}

/// Measure page listings and writer turns until `done` is set (or for `at_rest` when given).
async fn measure(
    pool: sqlx::SqlitePool,
    done: Arc<AtomicBool>,
    at_rest: Option<Duration>,
) -> Result<Waits> {
    let query = MessageQuery::parse("")?;
    let started = Instant::now();
    let mut waits = Waits {
        page: Vec::new(),
        writer: Vec::new(),
    };
    let writers = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !done.load(Ordering::Relaxed) && at_rest.is_none_or(|d| started.elapsed() < d) {
                let t = Instant::now();
                // The turn ends with the commit, not after the sleep: held while sleeping,
                // it let the purge write only between two of these turns.
                store::begin_write(&pool).await?.commit().await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                // About as often as the indexer writes a batch under load.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, crate::error::Error>(times)
        })
    };
    while !done.load(Ordering::Relaxed) && at_rest.is_none_or(|d| started.elapsed() < d) {
        let t = Instant::now();
        let page = records::list(&pool, &query).await?;
        let count = records::count_capped(&pool, &query.filter, 10_001).await?;
        std::hint::black_box((page.rows.len(), count));
        waits.page.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waits.writer = writers
        .await
        .map_err(|e| crate::error::Error::Internal(e.to_string()))??;
    Ok(waits)
}

async fn joined(task: tokio::task::JoinHandle<Result<Waits>>) -> Result<Waits> {
    task.await
        .map_err(|e| crate::error::Error::Internal(e.to_string()))?
}

/// Run the purge benchmark and print a report.
pub async fn run(args: &BenchArgs) -> Result<()> {
    let n = args.purge_records;
    let dir = match &args.dir {
        Some(d) => d.join("purge"),
        None => std::env::temp_dir().join(format!("dlq-purge-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("purge.db");
    println!(
        "purge: {n} messages of ~{} B, every message purged by one filter, through the operations core of a running dashboard (librdkafka mock cluster in process)",
        args.payload_bytes
    );
    crate::replay::bench::fill(&db, n, args).await?;
    let cluster = EmbeddedCluster::start(1)?;
    let dashboard = Dashboard::start(ServeArgs {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        database: db.clone(),
        brokers: Some(cluster.bootstrap_servers().to_string()),
        ..ServeArgs::default()
    })
    .await?;
    let pool = dashboard.state.pool.clone();
    while !search::progress(&pool).await?.complete() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let result = purge_with(&dashboard, n).await;
    dashboard.shutdown().await;
    remove_database_files(&db);
    remove_database_files(&search::path_for(&db));
    result
}

async fn purge_with(dashboard: &Dashboard, n: usize) -> Result<()> {
    let pool = dashboard.state.pool.clone();
    let actions = dashboard.state.actions.clone();
    // Every message, as a filter (a time range that holds them all), so that no extra yes is
    // needed: the same path as "Purge all N matching" with a filter set.
    let filter = Selection::filter_from_json(
        &serde_json::json!({"to": "2999-01-01T00:00:00Z"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )?;

    let started = Instant::now();
    let mut rest = measure(
        pool.clone(),
        Arc::new(AtomicBool::new(false)),
        Some(Duration::from_secs(10)),
    )
    .await?;
    let rest_secs = started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicBool::new(false));
    let under = tokio::spawn(measure(pool.clone(), done.clone(), None));
    let started = Instant::now();
    let preview = actions
        .purge_preview(filter, PurgeRequest::default(), &Actor::unlimited("bench"))
        .await?;
    let preview_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut under_preview = joined(under).await?;
    let done = Arc::new(AtomicBool::new(false));
    let under = tokio::spawn(measure(pool.clone(), done.clone(), None));
    let confirmed = Instant::now();
    let purged = actions
        .purge_confirm(&preview.preview_id, false, None, &Actor::unlimited("bench"))
        .await?;
    let apply_secs = confirmed.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut under_apply = joined(under).await?;
    let total = preview_secs + apply_secs;
    println!(
        "  purged {} of {n} in {:.1} s ({:.0} messages/s): preview {:.1} s, apply {:.1} s",
        purged.purged,
        total,
        purged.purged as f64 / total,
        preview_secs,
        apply_secs
    );
    rest.line(&format!("at rest ({rest_secs:.0} s)"));
    under_preview.line("under preview");
    under_apply.line("under apply");
    let undo_started = Instant::now();
    let undone = actions
        .purge_undo(&purged.id, None, &Actor::unlimited("bench"))
        .await?;
    println!(
        "  undo of {} in {:.1} s",
        undone.changed,
        undo_started.elapsed().as_secs_f64()
    );
    let cap = (n / 10).max(1) as i64;
    let retention = crate::retention::Retention::new(
        pool.clone(),
        crate::retention::Retain {
            max_records: Some(cap),
            ..Default::default()
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let under = tokio::spawn(measure(pool.clone(), done.clone(), None));
    let started = Instant::now();
    let pass = retention.pass_now().await;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut under_retention = joined(under).await?;
    let pass = pass?;
    println!(
        "  retention max-records={cap}: removed {} in {secs:.1} s ({:.0} records/s)",
        pass.capped,
        pass.capped as f64 / secs
    );
    under_retention.line("under cleanup");
    Ok(())
}
