//! The ingest benchmark at scale (issue 15, "Ten million"): progress of the dashboard's
//! indexer through a large backlog (rate, file sizes per million records, RSS), and a soak
//! after it, with records still arriving at 1,000/s while 8 HTTP clients read pages and
//! searches from the dashboard's real listener.
//!
//! RSS is this process's (`/proc/self/status`): the dashboard runs in the bench's process
//! (`Dashboard::start`), the broker in a child. During the soak the bench's producer and
//! HTTP clients are in it too; they hold little (a producer queue of at most 1,000 records
//! a second and 8 connections).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};

use crate::app::Dashboard;
use crate::bench::ingest::{client, send, Records, PHASE_TIMEOUT, TOPICS};
use crate::bench::{percentile, WORDS};
use crate::error::{Error, Result};
use crate::store::{records, search};

/// How often a progress line is printed during the backlog, at the latest.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Records a second produced during the soak (the "indexing continues at 1k/s").
const SOAK_RATE: u64 = 1000;

/// Concurrent HTTP clients of the soak; half list pages, half search.
const SOAK_CLIENTS: usize = 8;

/// How often the soak prints a line.
const SOAK_LINE_EVERY: Duration = Duration::from_secs(60);

/// How often RSS is sampled during the soak.
const SOAK_RSS_EVERY: Duration = Duration::from_secs(10);

const MIB: f64 = 1024.0 * 1024.0;

/// One progress sample of the backlog.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    stored: u64,
    index_bytes: u64,
    search_bytes: u64,
    rss_kib: Option<u64>,
}

/// A file's bytes on disk with its write-ahead log (what the index costs while it runs).
fn file_with_wal(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.as_os_str().to_owned(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// This process's resident memory in KiB (VmRSS), or its peak (VmHWM).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Bytes per million records as MiB, 0 before the first record.
fn per_million_mib(bytes: u64, records: u64) -> f64 {
    if records == 0 {
        return 0.0;
    }
    bytes as f64 / MIB * 1e6 / records as f64
}

/// When the stored count reached `count`, from `(seconds, stored)` points in time order,
/// interpolated between the two points around it; `None` if it never did.
pub(crate) fn time_at(points: &[(f64, u64)], count: u64) -> Option<f64> {
    if count == 0 {
        return Some(0.0);
    }
    let i = points.iter().position(|&(_, c)| c >= count)?;
    let (t1, c1) = points[i];
    let (t0, c0) = if i == 0 { (0.0, 0) } else { points[i - 1] };
    if c1 == c0 {
        return Some(t1);
    }
    Some(t0 + (t1 - t0) * (count - c0) as f64 / (c1 - c0) as f64)
}

/// Records a second over the first, middle and last tenth of `n` records (0-10%, 45-55%,
/// 90-100%), from `(seconds, stored)` points; `None` where the points do not reach it.
pub(crate) fn tenth_rates(points: &[(f64, u64)], n: u64) -> [Option<f64>; 3] {
    let tenth = n / 10;
    [
        (0, tenth),
        (n / 2 - tenth / 2, n / 2 - tenth / 2 + tenth),
        (n - tenth, n),
    ]
    .map(|(lo, hi)| {
        let secs = time_at(points, hi)? - time_at(points, lo)?;
        (secs > 0.0).then(|| (hi - lo) as f64 / secs)
    })
}

/// The steady value of samples in time order: the median of their last third (at least the
/// last sample); `None` for no samples.
pub(crate) fn steady(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let third = (samples.len() / 3).max(1);
    let mut last: Vec<f64> = samples[samples.len() - third..].to_vec();
    last.sort_by(|a, b| a.total_cmp(b));
    let mid = last.len() / 2;
    Some(if last.len() % 2 == 0 {
        (last[mid - 1] + last[mid]) / 2.0
    } else {
        last[mid]
    })
}

fn rate_text(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{r:.0}/s"))
}

/// Wait until the dashboard has stored `n` records, printing a progress line every 10 s or
/// every 5% of `n`, whichever comes first, and the summary of the rate over time and RSS at
/// the end; seconds from `started` until stored.
pub(super) async fn wait_stored(
    dashboard: &Dashboard,
    path: &Path,
    n: usize,
    started: Instant,
) -> Result<f64> {
    let status = &dashboard.state.status;
    let search_path = search::path_for(path);
    let n = n as u64;
    let step = (n / 20).max(1);
    let mut points: Vec<(f64, u64)> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last = Sample {
        secs: 0.0,
        stored: 0,
        index_bytes: 0,
        search_bytes: 0,
        rss_kib: rss_kib(),
    };
    println!(
        "  end to end progress (every {} s or {step} records; RSS is this process's, which runs the dashboard):",
        PROGRESS_EVERY.as_secs()
    );
    loop {
        let stored = status.indexed_count();
        let secs = started.elapsed().as_secs_f64();
        if points.last().is_none_or(|&(_, c)| c != stored) {
            points.push((secs, stored));
        }
        if stored >= n
            || secs - last.secs >= PROGRESS_EVERY.as_secs_f64()
            || stored >= last.stored + step
        {
            let s = Sample {
                secs,
                stored,
                index_bytes: file_with_wal(path),
                search_bytes: file_with_wal(&search_path),
                rss_kib: rss_kib(),
            };
            let interval = s.secs - last.secs;
            println!(
                "    {:>7.1} s: {:>9} stored ({:>5.1}%), {:>7.0}/s over the last {interval:.1} s; index {:.0} MiB ({:.0} MiB/M), search {:.0} MiB ({:.0} MiB/M); RSS {}",
                s.secs,
                s.stored,
                s.stored as f64 * 100.0 / n as f64,
                s.stored.saturating_sub(last.stored) as f64 / interval.max(1e-9),
                s.index_bytes as f64 / MIB,
                per_million_mib(s.index_bytes, s.stored),
                s.search_bytes as f64 / MIB,
                per_million_mib(s.search_bytes, s.stored),
                s.rss_kib.map_or("-".into(), |k| format!("{:.0} MiB", mib(k))),
            );
            samples.push(s);
            last = s;
        }
        if stored >= n {
            break;
        }
        if started.elapsed() > PHASE_TIMEOUT {
            return Err(Error::Conflict(format!(
                "the dashboard indexed {stored} of {n} records"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored_secs = started.elapsed().as_secs_f64();
    let [first, middle, end] = tenth_rates(&points, n);
    println!(
        "  rate over time: first tenth {} (from the dashboard's start), middle tenth {}, last tenth {}{}",
        rate_text(first),
        rate_text(middle),
        rate_text(end),
        match (first, end) {
            (Some(f), Some(l)) => format!(" (last / first {:.2}x)", l / f),
            _ => String::new(),
        }
    );
    let rss: Vec<f64> = samples.iter().filter_map(|s| s.rss_kib.map(mib)).collect();
    println!(
        "  RSS during the backlog: peak {} of {} samples, steady {} (median of the last third); VmHWM {} (the whole run, producing included)",
        rss.iter()
            .copied()
            .reduce(f64::max)
            .map_or("-".into(), |m| format!("{m:.0} MiB")),
        rss.len(),
        steady(&rss).map_or("-".into(), |m| format!("{m:.0} MiB")),
        status_kib("VmHWM:").map_or("-".into(), |k| format!("{:.0} MiB", mib(k))),
    );
    Ok(stored_secs)
}

/// The size of the index and the search file per million records, once searchable: the
/// files alone, then with the write-ahead log each holds at that moment.
pub(super) fn print_sizes(path: &Path, n: usize) {
    let search_path = search::path_for(path);
    let alone = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let (index, search) = (alone(path), alone(&search_path));
    let (index_wal, search_wal) = (
        file_with_wal(path).saturating_sub(index),
        file_with_wal(&search_path).saturating_sub(search),
    );
    println!(
        "  size per million records: index file {:.0} MiB, search file {:.0} MiB ({:.0} + {:.0} MiB for {n}; their WAL now {:.0} + {:.0} MiB)",
        per_million_mib(index, n as u64),
        per_million_mib(search, n as u64),
        index as f64 / MIB,
        search as f64 / MIB,
        index_wal as f64 / MIB,
        search_wal as f64 / MIB,
    );
}

/// Latencies of the soak's requests, ms, with the second of the soak each ended at.
#[derive(Default)]
struct Latencies {
    pages: Vec<(f64, f64)>,
    searches: Vec<(f64, f64)>,
    /// Each request's latencies by its path and query, to say which one sets the p99.
    by_request: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    errors: u64,
    first_error: Option<String>,
}

/// p50, p99 and max of the latencies after `since` seconds, and how many there were.
fn stats(all: &[(f64, f64)], since: f64) -> (usize, f64, f64, f64) {
    let mut ms: Vec<f64> = all
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(_, ms)| *ms)
        .collect();
    if ms.is_empty() {
        return (0, 0.0, 0.0, 0.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    )
}

/// What the soak needs to know of the backlog.
pub(super) struct SoakPlan {
    pub secs: u64,
    pub backlog: usize,
    pub partitions: usize,
    pub payload_bytes: usize,
    pub now: i64,
    /// A cursor halfway down the backlog's time span, for a deep page.
    pub deep_cursor: String,
}

/// The soak: produce at 1,000 records/s to the bench's topics while 8 clients request
/// pages (4) and searches (4) for `plan.secs` seconds, then report latencies, the indexing
/// rate and RSS growth.
pub(super) async fn soak(dashboard: &Dashboard, bootstrap: &str, plan: SoakPlan) -> Result<()> {
    let status = dashboard.state.status.clone();
    let classes = records::distinct_error_classes(&dashboard.state.pool).await?;
    let base = format!("http://{}", dashboard.addr);
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut pages: Vec<String> = vec![
        "/messages".into(),
        format!("/messages?topic={}", enc(TOPICS[0])),
        "/messages?status=new".into(),
        format!("/messages?cursor={}", plan.deep_cursor),
        format!(
            "/messages?topic={}&cursor={}",
            enc(TOPICS[1]),
            plan.deep_cursor
        ),
    ];
    for class in classes.iter().take(3) {
        pages.push(format!("/messages?error_class={}", enc(class)));
    }
    if let Some(class) = classes.first() {
        pages.push(format!(
            "/messages?topic={}&status=new&error_class={}",
            enc(TOPICS[2]),
            enc(class)
        ));
    }
    let searches: Vec<String> = WORDS
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, w)| {
            if i % 2 == 0 {
                format!("/api/messages?q={w}")
            } else {
                format!("/messages?q={w}")
            }
        })
        .collect();
    println!(
        "  soak: {} s, producing {SOAK_RATE} records/s to the same topics; {SOAK_CLIENTS} HTTP clients on {base}: {} on {} listings (topic, status, error class, first and deep pages), {} on {} searches",
        plan.secs,
        SOAK_CLIENTS / 2,
        pages.len(),
        SOAK_CLIENTS - SOAK_CLIENTS / 2,
        searches.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer_task = {
        let producer: BaseProducer = client(bootstrap)
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .create()?;
        let (stop, produced) = (stop.clone(), produced.clone());
        let mut records = Records::new(plan.partitions, plan.payload_bytes, plan.now);
        records.skip(plan.backlog);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * SOAK_RATE as f64) as u64;
                while sent < due {
                    let mut parts = records.next_parts();
                    // Records arriving now, as a live DLQ's do, so the first page shows them.
                    parts.timestamp = Some((crate::clock::now_ms(), "create"));
                    send(&producer, &parts)?;
                    sent += 1;
                    produced.store(sent, Ordering::Relaxed);
                }
                // Serves delivery reports and paces the loop (waits up to 5 ms).
                producer.poll(Duration::from_millis(5));
            }
            producer.flush(Duration::from_secs(60))?;
            Ok(())
        })
    };

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(SOAK_CLIENTS)
        .build()
        .map_err(|e| Error::Internal(format!("the soak's HTTP client: {e}")))?;
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.secs);
    let mut clients = Vec::new();
    for c in 0..SOAK_CLIENTS {
        let search = c % 2 == 1;
        let urls: Vec<String> = if search { &searches } else { &pages }
            .iter()
            .map(|u| format!("{base}{u}"))
            .collect();
        let (http, latencies, base_of_urls) = (http.clone(), latencies.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            // Each client starts at another request, so the mix is spread at every moment.
            let mut i = c;
            while Instant::now() < deadline {
                let url = &urls[i % urls.len()];
                i += 1;
                let t0 = Instant::now();
                let outcome = match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("{url}: HTTP {}", r.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let at = started.elapsed().as_secs_f64();
                let mut l = latencies.lock().expect("latencies lock");
                if outcome.is_ok() {
                    let request = url.strip_prefix(&base_of_urls).unwrap_or(url);
                    l.by_request
                        .entry(request.to_string())
                        .or_default()
                        .push((at, ms));
                }
                match outcome {
                    Ok(()) if search => l.searches.push((at, ms)),
                    Ok(()) => l.pages.push((at, ms)),
                    Err(e) => {
                        l.errors += 1;
                        l.first_error.get_or_insert(e);
                    }
                }
            }
        }));
    }

    let indexed_start = status.indexed_count();
    let rss_start = rss_kib();
    let mut rss = vec![rss_start.map(mib).unwrap_or(0.0)];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut last_line, mut last_rss) = (0.0f64, 0.0f64);
    let mut indexed_at_line = indexed_start;
    loop {
        tick.tick().await;
        let secs = started.elapsed().as_secs_f64();
        let done = Instant::now() >= deadline;
        if secs - last_rss >= SOAK_RSS_EVERY.as_secs_f64() || done {
            rss.push(rss_kib().map(mib).unwrap_or(0.0));
            last_rss = secs;
        }
        if secs - last_line >= SOAK_LINE_EVERY.as_secs_f64() || done {
            let indexed = status.indexed_count();
            let (pages, searches) = {
                let l = latencies.lock().expect("latencies lock");
                (stats(&l.pages, last_line), stats(&l.searches, last_line))
            };
            println!(
                "    soak {secs:>5.0} s: pages {} (p99 {:.1} ms), searches {} (p99 {:.1} ms) in the last {:.0} s; indexed {:.0}/s, {} produced; RSS {:.0} MiB",
                pages.0,
                pages.2,
                searches.0,
                searches.2,
                secs - last_line,
                indexed.saturating_sub(indexed_at_line) as f64 / (secs - last_line).max(1e-9),
                produced.load(Ordering::Relaxed),
                rss.last().copied().unwrap_or(0.0),
            );
            indexed_at_line = indexed;
            last_line = secs;
        }
        if done {
            break;
        }
    }
    for c in clients {
        let _ = c.await;
    }
    let soak_secs = started.elapsed().as_secs_f64();
    let indexed_end = status.indexed_count();
    let rss_end = rss_kib();
    stop.store(true, Ordering::Relaxed);
    producer_task
        .await
        .map_err(|e| Error::Internal(format!("the soak's producer thread failed: {e}")))??;
    let produced = produced.load(Ordering::Relaxed);
    let total = plan.backlog as u64 + produced;
    let caught_up_from = Instant::now();
    while status.indexed_count() < total {
        if caught_up_from.elapsed() > Duration::from_secs(120) {
            return Err(Error::Conflict(format!(
                "the dashboard indexed {} of {total} records two minutes after the soak",
                status.indexed_count()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = caught_up_from.elapsed().as_secs_f64();

    let l = latencies.lock().expect("latencies lock");
    let (pn, p50, p99, pmax) = stats(&l.pages, 0.0);
    let (sn, s50, s99, smax) = stats(&l.searches, 0.0);
    println!(
        "soak summary ({:.0} s on {} records):",
        soak_secs, plan.backlog
    );
    println!(
        "  pages: {pn} requests, p50 {p50:.1} ms, p99 {p99:.1} ms, max {pmax:.1} ms (target p99 < 20 ms at 10M)"
    );
    println!(
        "  searches: {sn} requests, p50 {s50:.1} ms, p99 {s99:.1} ms, max {smax:.1} ms (target p99 < 50 ms at 10M)"
    );
    for (request, all) in &l.by_request {
        let (n, p50, p99, max) = stats(all, 0.0);
        println!("    {request:<70} {n:>6} requests, p50 {p50:>6.1} ms, p99 {p99:>6.1} ms, max {max:>6.1} ms");
    }
    if l.errors > 0 {
        println!(
            "  FAILED requests: {} (first: {})",
            l.errors,
            l.first_error.as_deref().unwrap_or("-")
        );
    }
    let indexed_during = indexed_end.saturating_sub(indexed_start);
    let index_rate = indexed_during as f64 / soak_secs;
    println!(
        "  indexing: {produced} produced ({:.0}/s), {} indexed during the soak ({index_rate:.0}/s, {}); every one indexed {caught_up:.2} s after producing stopped",
        produced as f64 / soak_secs,
        indexed_during,
        if index_rate >= 0.95 * SOAK_RATE as f64 { "kept up with 1k/s" } else { "did NOT keep up with 1k/s" },
    );
    let start = rss_start.map(mib).unwrap_or(0.0);
    let end = rss_end.map(mib).unwrap_or(0.0);
    println!(
        "  RSS: {start:.0} MiB at the start, {end:.0} MiB at the end ({:+.0} MiB), peak {:.0} MiB of {} samples (target < 150 MiB steady, no growth over 10 min)",
        end - start,
        rss.iter().copied().fold(0.0, f64::max),
        rss.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_at_interpolates_between_the_points_around_a_count() {
        let points = [(1.0, 100), (2.0, 300), (4.0, 300), (5.0, 400)];
        assert_eq!(time_at(&points, 0), Some(0.0));
        // Before the first point: from (0 s, 0 records).
        assert_eq!(time_at(&points, 50), Some(0.5));
        assert_eq!(time_at(&points, 200), Some(1.5));
        assert_eq!(time_at(&points, 300), Some(2.0));
        assert_eq!(time_at(&points, 350), Some(4.5));
        assert_eq!(time_at(&points, 401), None);
    }

    #[test]
    fn tenth_rates_take_the_first_middle_and_last_tenth() {
        // 1000 records: 100/s for the first 500, then 50/s.
        let mut points = Vec::new();
        for s in 1..=5 {
            points.push((s as f64, s * 100));
        }
        for s in 1..=10 {
            points.push((5.0 + s as f64, 500 + s * 50));
        }
        let [first, middle, last] = tenth_rates(&points, 1000);
        assert_eq!(first, Some(100.0));
        // 450-550: 50 records at 100/s (0.5 s), 50 at 50/s (1 s).
        assert!((middle.unwrap() - 100.0 / 1.5).abs() < 1e-9);
        assert_eq!(last, Some(50.0));
        // Points that stop short of the end give no last tenth.
        assert_eq!(tenth_rates(&points[..5], 1000)[2], None);
    }

    #[test]
    fn steady_is_the_median_of_the_last_third() {
        assert_eq!(steady(&[]), None);
        assert_eq!(steady(&[7.0]), Some(7.0));
        // Last third of 9: 30, 10, 20 -> 20; the early peak does not count.
        assert_eq!(
            steady(&[500.0, 5.0, 5.0, 5.0, 5.0, 5.0, 30.0, 10.0, 20.0]),
            Some(20.0)
        );
        // Last third of 6: 40, 10 -> 25.
        assert_eq!(steady(&[1.0, 1.0, 1.0, 1.0, 40.0, 10.0]), Some(25.0));
    }

    #[test]
    fn stats_count_only_latencies_since_a_moment() {
        let all: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, i as f64)).collect();
        let (n, p50, p99, max) = stats(&all, 100.0);
        assert_eq!(n, 100);
        assert_eq!(max, 199.0);
        assert!((149.0..=150.0).contains(&p50));
        assert!((197.0..=199.0).contains(&p99));
        assert_eq!(stats(&all, 500.0), (0, 0.0, 0.0, 0.0));
    }
}
