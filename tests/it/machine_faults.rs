//! Faults of the machine the dashboard runs on, injected for real: a full file system (a
//! small tmpfs, see `harness::small_disk`), a read-only one, a deleted search file, a second
//! process on the same index.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use dlq_dashboard::config::ServeArgs;
use dlq_dashboard::index::normalise::RawHeader;
use dlq_dashboard::index::record::{NewRecord, RecordParts};
use dlq_dashboard::store::{self, positions::Position, records};
use sqlx::ConnectOptions;

use crate::harness::in_process::{
    assert_intact, escaped, serve_args, Kafka, Outgoing, TestDashboard, DEADLINE,
};
use crate::harness::small_disk::SmallDisk;
use crate::poll::{wait_for, wait_for_or_none};

const MIB: u64 = 1024 * 1024;

fn big_record(offset: i64) -> NewRecord {
    NewRecord::from_parts(
        RecordParts {
            topic: "full.dlq".into(),
            partition: 0,
            offset,
            timestamp: Some((1_000 + offset, "create")),
            key: Some(format!("key{offset}").into_bytes()),
            // Incompressible enough that every record costs its size in pages.
            value: Some(
                (0..32 * 1024)
                    .map(|i| ((i as i64 * 7919 + offset * 104_729) % 251) as u8)
                    .collect(),
            ),
            headers: vec![RawHeader {
                name: "dlq-error-class".into(),
                value: Some(b"E".to_vec()),
            }],
        },
        5,
    )
}

fn batch(from: i64, n: i64) -> (Vec<NewRecord>, [Position; 1]) {
    (
        (from..from + n).map(big_record).collect(),
        [Position {
            topic: "full.dlq".into(),
            partition: 0,
            generation: 0,
            next_offset: from + n,
        }],
    )
}

/// The bug of issue 14: after the first "database or disk is full", every later write failed
/// with "attempted to call begin_with at non-zero transaction depth", for good. Each attempt
/// on a full disk must fail for the disk's reason only, and the first attempt after space is
/// freed must succeed, on whichever connection of the pool it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_on_a_full_disk_leaves_every_connection_clean() {
    let disk = SmallDisk::mount(3 * MIB);
    let pool = store::open(&disk.file("index.db")).await.unwrap();
    let mut next = 0;
    let failed = loop {
        let (b, at) = batch(next, 8);
        match records::insert_batch(&pool, &b, &at, 1).await {
            Ok(_) => next += 8,
            Err(e) => break e,
        }
        assert!(next < 10_000, "the small disk never filled");
    };
    assert!(
        failed.to_string().contains("full"),
        "the first failure is the full disk: {failed}"
    );
    // More attempts than the pool has connections, so every connection meets the error.
    for attempt in 0..12 {
        let (b, at) = batch(next, 8);
        let e = records::insert_batch(&pool, &b, &at, 1)
            .await
            .expect_err("the disk is still full");
        assert!(
            e.to_string().contains("full"),
            "attempt {attempt} on a full disk failed for another reason: {e}"
        );
    }
    disk.resize(64 * MIB);
    // As many successes in a row: no connection was left inside a transaction.
    for _ in 0..12 {
        let (b, at) = batch(next, 8);
        records::insert_batch(&pool, &b, &at, 1)
            .await
            .expect("writes succeed once space is freed");
        next += 8;
    }
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT \"offset\") FROM records")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (next, next), "every batch exactly once");
    assert_intact(&pool).await;
    pool.close().await;
}

/// `n` records for `topic` with keys `{prefix}-{i}` and `bytes` of payload each that lz4
/// cannot shrink (the producer compresses).
fn noisy_records(prefix: &str, from: usize, n: usize, bytes: usize) -> Vec<Outgoing> {
    (from..from + n)
        .map(|i| {
            let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let value: Vec<u8> = (0..bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let headers = vec![("dlq-error-class".to_string(), b"DiskTest".to_vec())];
            (None, format!("{prefix}-{i}").into_bytes(), value, headers)
        })
        .collect()
}

/// Rows and distinct coordinates in the index.
async fn exact_counts(d: &TestDashboard) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT topic || '/' || partition || '/' || generation || '/' || \"offset\") FROM records",
    )
    .fetch_one(&d.d().state.pool)
    .await
    .unwrap()
}

async fn metric(d: &TestDashboard, line_start: &str) -> Option<f64> {
    let (_, _, body) = d.get("/metrics").await;
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Issue 14 as a new user met it, on a real full file system: indexing stops, the
/// dashboard says why (readyz, banner, /api/health, metrics) while records keep arriving,
/// and once the file system is grown it resumes by itself, every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_indexing_resumes_by_itself_when_space_is_freed() {
    let kafka = Kafka::start(&[("disk.dlq", 2)]);
    let disk = SmallDisk::mount(4 * MIB);
    let db = disk.file("index.db");
    let mut args = serve_args(&kafka.bootstrap(), &db);
    // No threshold: with one, the bodies would be deferred before the disk filled (that is
    // `low_space`'s test); this one is about the disk filling all the same.
    args.min_free_space = dlq_dashboard::store::space::MinFreeSpace::Bytes(0);
    let d = TestDashboard::start_with(args, Arc::new(tempfile::tempdir().unwrap())).await;
    wait_for("the first assignment", DEADLINE, || async {
        (d.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;

    // Records arrive until the disk is full.
    let mut sent = 0;
    let reason = loop {
        kafka
            .send_many("disk.dlq", &noisy_records("r", sent, 20, 16 * 1024))
            .await;
        sent += 20;
        assert!(sent < 2_000, "4 MiB never filled");
        let stalled = wait_for_or_none(Duration::from_secs(3), || async {
            let (status, body) = d.get_json("/readyz").await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then(|| body["error"].clone())
        })
        .await;
        if let Some(reason) = stalled {
            break reason;
        }
    };
    let folder = disk.path().display().to_string();
    let reason = reason.as_str().unwrap().to_string();
    assert!(
        reason.starts_with(&format!(
            "The index cannot be written: disk full on {folder} ("
        )) && reason.ends_with("free); indexing resumes by itself when space is freed."),
        "{reason}"
    );
    // Records keep arriving while it is full.
    kafka
        .send_many("disk.dlq", &noisy_records("r", sent, 40, 16 * 1024))
        .await;
    sent += 40;
    let (status, html) = d.get_html("/").await;
    assert_eq!(status, StatusCode::OK, "the pages keep serving");
    assert!(
        html.contains(&escaped("The index cannot be written: disk full on")),
        "the banner says why"
    );
    let (_, health) = d.get_json("/api/health").await;
    assert_eq!(health["ready"], false);
    assert_eq!(health["index"]["writable"], false);
    let indexer = &health["index"]["writers"][0];
    assert_eq!(indexer["writer"], "indexer");
    assert_eq!(indexer["state"], "failing");
    assert_eq!(indexer["last_error"]["kind"], "disk_full");
    assert!(health["disk"]["free_bytes"].as_u64().unwrap() < MIB);
    // Without a threshold nothing warns of low space (`low_space` tests the warning).
    assert_eq!(health["disk"]["low_space"], false);
    let errors = metric(
        &d,
        "dlq_index_write_errors_total{writer=\"indexer\",kind=\"disk_full\"}",
    )
    .await
    .unwrap();
    assert!(errors >= 1.0, "errors counted: {errors}");
    // Retries keep failing for the disk's reason only (no wedged transaction).
    let failures_before = indexer["errors_total"].as_u64().unwrap();
    wait_for("another attempt on the full disk", DEADLINE, || async {
        let (_, h) = d.get_json("/api/health").await;
        let w = &h["index"]["writers"][0];
        (w["errors_total"].as_u64().unwrap() > failures_before).then(|| {
            assert_eq!(w["last_error"]["kind"], "disk_full", "{w}");
        })
    })
    .await;

    disk.resize(256 * MIB);
    d.wait_indexed(sent as i64).await;
    wait_for("readyz to answer 200 again", DEADLINE, || async {
        (d.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    d.wait_searchable().await;
    assert_eq!(
        exact_counts(&d).await,
        (sent as i64, sent as i64),
        "every record exactly once"
    );
    let (_, html) = d.get_html("/").await;
    assert!(!html.contains("data-index-banner"), "the banner is gone");
    let (_, health) = d.get_json("/api/health").await;
    assert_eq!(health["index"]["writers"][0]["state"], "ok");
    assert_eq!(health["search"]["behind"], 0);
    assert_intact(&d.d().state.pool).await;
    d.stop().await;
}

/// A second dashboard on the same index file is refused at start, naming the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dashboard_on_the_same_index_is_refused_with_a_sentence() {
    let kafka = Kafka::start(&[("two.dlq", 1)]);
    let first = TestDashboard::start(&kafka).await;
    let second = dlq_dashboard::app::Dashboard::start(serve_args(&kafka.bootstrap(), &first.db))
        .await
        .err()
        .expect("the second dashboard is refused");
    let sentence = second.to_string();
    assert!(
        sentence.starts_with(&format!(
            "The index {} is in use by another dashboard (process {}",
            first.db.display(),
            std::process::id()
        )) && sentence.ends_with("stop that one first, or give this one its own --database."),
        "{sentence}"
    );
    first.stop().await;
}

/// An index on a read-only file system is refused at start with a sentence that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_on_a_read_only_file_system_is_refused_at_start_with_a_sentence() {
    let kafka = Kafka::start(&[("ro.dlq", 1)]);
    let disk = SmallDisk::mount(16 * MIB);
    let args = serve_args(&kafka.bootstrap(), &disk.file("index.db"));
    let d = TestDashboard::start_with(args.clone(), Arc::new(tempfile::tempdir().unwrap())).await;
    d.stop().await;
    disk.read_only(true);
    let e = dlq_dashboard::app::Dashboard::start(args.clone())
        .await
        .err()
        .expect("refused on a read-only file system");
    assert_eq!(
        e.to_string(),
        format!(
            "The index folder {} is on a read-only file system; remount it read-write or pass another --database.",
            disk.path().display()
        )
    );
    disk.read_only(false);
    let d = TestDashboard::start_with(args, Arc::new(tempfile::tempdir().unwrap())).await;
    d.stop().await;
}

/// Files marked immutable (`chattr +i`) for as long as it lives: the one way to make a file
/// read-only that stops root too, and stops writes through descriptors already open (as a
/// file system remounted read-only after an error would). Dropping it clears the mark, also
/// when a test fails, so that its temporary folder can be removed.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: &[std::path::PathBuf]) -> Immutable {
        for file in files {
            chattr("+i", file);
        }
        Immutable(files.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.0 {
            chattr("-i", file);
        }
    }
}

fn chattr(flag: &str, file: &std::path::Path) {
    let status = std::process::Command::new("chattr")
        .arg(flag)
        .arg(file)
        .status()
        .expect("chattr (e2fsprogs) runs");
    assert!(
        status.success(),
        "chattr {flag} {} failed: the fault suite needs root on a file system with the immutable attribute (ext4, tmpfs)",
        file.display()
    );
}

/// The index file made read-only while the dashboard runs: indexing stops and says which
/// file and why (readyz, banner, /api/health), the pages keep serving, and once the file is
/// writable again indexing resumes by itself, every record once. Made read-only while
/// stopped, the next start is refused with a sentence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_file_made_read_only_while_running_is_reported_and_indexing_resumes() {
    let kafka = Kafka::start(&[("ro.dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let args = serve_args(&kafka.bootstrap(), &db);
    let d = TestDashboard::start_with(args.clone(), Arc::new(tempfile::tempdir().unwrap())).await;
    kafka
        .send_many("ro.dlq", &noisy_records("r", 0, 10, 512))
        .await;
    d.wait_indexed(10).await;

    let wal = db.with_file_name("index.db-wal");
    assert!(wal.exists(), "the index is in WAL mode");
    let immutable = Immutable::set(&[db.clone(), wal]);
    kafka
        .send_many("ro.dlq", &noisy_records("r", 10, 10, 512))
        .await;
    let reason = wait_for("readyz to say why indexing stopped", DEADLINE, || async {
        let (status, body) = d.get_json("/readyz").await;
        (status == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| body["error"].as_str().unwrap().to_string())
    })
    .await;
    assert!(
        reason.starts_with(&format!(
            "The index cannot be written: {} was made read-only (",
            db.display()
        )) && reason.ends_with("; indexing resumes by itself when it is writable again."),
        "{reason}"
    );
    let (status, html) = d.get_html("/").await;
    assert_eq!(status, StatusCode::OK, "the pages keep serving");
    assert!(html.contains(&escaped(&reason)), "the banner says why");
    let (_, health) = d.get_json("/api/health").await;
    let indexer = &health["index"]["writers"][0];
    assert_eq!(indexer["writer"], "indexer");
    assert_eq!(indexer["state"], "failing");

    drop(immutable);
    d.wait_indexed(20).await;
    wait_for("readyz to answer 200 again", DEADLINE, || async {
        (d.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        exact_counts(&d).await,
        (20, 20),
        "every record exactly once"
    );
    assert_intact(&d.d().state.pool).await;
    d.stop().await;

    let immutable = Immutable::set(std::slice::from_ref(&db));
    let e = dlq_dashboard::app::Dashboard::start(args.clone())
        .await
        .err()
        .expect("refused on a read-only index file");
    assert!(
        e.to_string().starts_with(&format!(
            "The index {} cannot be written (Operation not permitted",
            db.display()
        )),
        "{e}"
    );
    drop(immutable);
    let d = TestDashboard::start_with(args, Arc::new(tempfile::tempdir().unwrap())).await;
    assert_eq!(exact_counts(&d).await, (20, 20));
    d.stop().await;
}

/// The search file deleted while the dashboard runs: made anew and refilled in the
/// background, new and old records searchable again, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_file_deleted_while_running_is_rebuilt_in_the_background() {
    let kafka = Kafka::start(&[("s.dlq", 1)]);
    let d = TestDashboard::start(&kafka).await;
    kafka
        .send_many("s.dlq", &noisy_records("before", 0, 30, 64))
        .await;
    d.wait_indexed(30).await;
    d.wait_searchable().await;
    let search_file = dlq_dashboard::store::search::path_for(&d.db);
    std::fs::remove_file(&search_file).unwrap();
    kafka
        .send_many("s.dlq", &noisy_records("after", 0, 10, 64))
        .await;
    d.wait_indexed(40).await;
    for key in ["before-7", "after-3"] {
        wait_for(&format!("{key} searchable again"), DEADLINE, || async {
            let (status, v) = d.get_json(&format!("/api/messages?q={key}")).await;
            (status == StatusCode::OK && v["messages"].as_array().unwrap().len() == 1).then_some(())
        })
        .await;
    }
    d.wait_searchable().await;
    // The file now in its place holds every record: the catch-up wrote the new file, not
    // the deleted one that open connections could still reach.
    let fresh = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&search_file)
                .read_only(true),
        )
        .await
        .unwrap();
    let (through, entries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT indexed_through FROM search_progress), (SELECT COUNT(*) FROM records_fts WHERE records_fts MATCH 'before OR after')",
    )
    .fetch_one(&fresh)
    .await
    .unwrap();
    fresh.close().await;
    let newest: i64 = sqlx::query_scalar("SELECT MAX(id) FROM records")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(
        (through, entries),
        (newest, 40),
        "the new file holds all 40"
    );
    let (status, _) = d.get_html("/messages?q=before").await;
    assert_eq!(status, StatusCode::OK);
    d.stop().await;
}

/// An operator's `sqlite3` shell holding a read transaction during a backlog: the log cannot
/// be copied back past the reader's snapshot. The dashboard says so while the reader holds,
/// and once it ends the log is copied back and its file truncated to within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_holding_a_snapshot_is_reported_and_the_log_shrinks_once_it_goes() {
    let kafka = Kafka::start(&[("wal.dlq", 2)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("index.db");
    let bound = 2 * MIB;
    let d = TestDashboard::start_with(
        ServeArgs {
            max_wal_size: bound,
            ..serve_args(&kafka.bootstrap(), &db)
        },
        dir,
    )
    .await;
    kafka
        .send_many("wal.dlq", &noisy_records("early", 0, 10, 256))
        .await;
    d.wait_indexed(10).await;
    // The reader: its own connection, as a sqlite3 shell has, holding one snapshot.
    let mut shell = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    let mut reading = sqlx::Connection::begin(&mut shell).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
        .fetch_one(&mut *reading)
        .await
        .unwrap();
    assert_eq!(seen, 10);
    let mut sent = 10;
    let sentence = loop {
        kafka
            .send_many("wal.dlq", &noisy_records("backlog", sent, 200, 4 * 1024))
            .await;
        sent += 200;
        assert!(sent < 20_000, "the log never outgrew {bound} bytes");
        let held = wait_for_or_none(Duration::from_secs(2), || async {
            let (_, html) = d.get_html("/").await;
            html.contains("write-ahead log holds").then_some(html)
        })
        .await;
        if let Some(html) = held {
            break html;
        }
    };
    assert!(sentence.contains("a reader (a sqlite3 shell, a backup) keeps an old snapshot"));
    let (_, health) = d.get_json("/api/health").await;
    let index_wal = health["wal"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["file"] == "index")
        .unwrap()
        .clone();
    assert!(index_wal["held_since"].is_string(), "{index_wal}");
    assert!(index_wal["uncopied_bytes"].as_u64().unwrap() > bound);
    assert_eq!(
        metric(&d, "dlq_index_wal_held{file=\"index\"}").await,
        Some(1.0)
    );

    reading.commit().await.unwrap();
    sqlx::Connection::close(shell).await.unwrap();
    d.wait_indexed(sent as i64).await;
    let wal = {
        let mut p = db.clone().into_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    wait_for("the log copied back and truncated", DEADLINE, || async {
        let (_, html) = d.get_html("/").await;
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        (!html.contains("write-ahead log holds") && size <= bound).then_some(())
    })
    .await;
    assert_eq!(exact_counts(&d).await, (sent as i64, sent as i64));
    d.stop().await;
}

/// The index's folder taken away while the dashboard runs (moved aside, then removed): the
/// banner and /readyz say so while it cannot be written back, and once it can, the
/// dashboard writes the index back and goes on with it, no restart. Everything indexed
/// before and after is in the file a restart opens, and search finds both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_folder_removed_while_running_is_written_back_and_nothing_is_lost() {
    let kafka = Kafka::start(&[("gone.dlq", 1)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let folder = dir.path().join("data");
    std::fs::create_dir(&folder).unwrap();
    let db = folder.join("index.db");
    let d = TestDashboard::start_with(serve_args(&kafka.bootstrap(), &db), dir.clone()).await;
    kafka
        .send_many("gone.dlq", &noisy_records("before", 0, 3, 64))
        .await;
    d.wait_indexed(3).await;

    // In one step the folder's path becomes a plain file: the index cannot be written back
    // there until that file goes.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &folder,
        rustix::fs::CWD,
        &blocker,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    let removed = format!(
        "The index file {} was removed while the dashboard runs: the dashboard writes it back from what it holds and goes on with it, nothing lost (writing it back failed: ",
        db.display()
    );
    let reason = wait_for("the failed write-back reported", DEADLINE, || async {
        let (status, body) = d.get_json("/readyz").await;
        let reason = body["error"].as_str().unwrap_or("").to_string();
        (status == StatusCode::SERVICE_UNAVAILABLE && reason.starts_with(&removed))
            .then_some(reason)
    })
    .await;
    assert!(
        reason.ends_with("it is tried again every second)."),
        "{reason}"
    );
    let (_, html) = d.get_html("/messages").await;
    assert!(html.contains(&escaped("was removed while the dashboard runs")));
    // The old folder, moved aside, goes for good.
    std::fs::remove_dir_all(&blocker).unwrap();
    std::fs::remove_file(&folder).unwrap();

    wait_for("the index written back", DEADLINE, || async {
        let (_, h) = d.get_json("/api/health").await;
        h["index"]["written_back_at"].as_str().map(|_| ())
    })
    .await;
    wait_for("ready again", DEADLINE, || async {
        (d.get_json("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    kafka
        .send_many("gone.dlq", &noisy_records("after", 0, 5, 64))
        .await;
    d.wait_indexed(8).await;
    for key in ["before-1", "after-4"] {
        wait_for(&format!("{key} searchable"), DEADLINE, || async {
            let (status, v) = d.get_json(&format!("/api/messages?q={key}")).await;
            (status == StatusCode::OK && v["messages"].as_array().unwrap().len() == 1).then_some(())
        })
        .await;
    }
    assert_eq!(exact_counts(&d).await, (8, 8));

    // What a restart opens is the file written back, holding all of it.
    let d = d
        .restart(serve_args(&kafka.bootstrap(), &db), || async {})
        .await;
    assert_eq!(exact_counts(&d).await, (8, 8));
    d.stop().await;
}

/// Another file put at the index's path while the dashboard runs (a backup copied over it):
/// not overwritten, and the pages say that the dashboard goes on with the file it opened;
/// once that file is moved away, the dashboard writes its own back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_file_replaced_while_running_is_not_overwritten_and_is_reported() {
    let kafka = Kafka::start(&[("swap.dlq", 1)]);
    let d = TestDashboard::start(&kafka).await;
    kafka
        .send_many("swap.dlq", &noisy_records("r", 0, 4, 64))
        .await;
    d.wait_indexed(4).await;
    let other = d.db.with_extension("other");
    std::fs::write(&other, b"someone else's file").unwrap();
    std::fs::rename(&other, &d.db).unwrap();
    let replaced = format!(
        "The index file {} was replaced by another file while the dashboard runs",
        d.db.display()
    );
    wait_for("the replacement reported", DEADLINE, || async {
        let (status, body) = d.get_json("/readyz").await;
        (status == StatusCode::SERVICE_UNAVAILABLE
            && body["error"].as_str().unwrap_or("").starts_with(&replaced))
        .then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&d.db).unwrap(), b"someone else's file");
    std::fs::remove_file(&d.db).unwrap();
    wait_for("its own file written back", DEADLINE, || async {
        (d.get_json("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(exact_counts(&d).await, (4, 4));
    d.stop().await;
}

/// A replay job that meets a full disk mid-way: it waits while its results cannot be
/// recorded, goes on by itself once space is freed, and every record reaches the retry
/// topic exactly once, each result recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_job_meeting_a_full_disk_resumes_and_loses_or_doubles_nothing() {
    const TOTAL: usize = 600;
    let kafka = Kafka::start(&[("o.retry.1", 1), ("o.dlq", 1)]);
    let records: Vec<Outgoing> = (0..TOTAL)
        .map(|i| {
            let headers = vec![
                ("dlq-origin-topic".to_string(), b"o".to_vec()),
                ("dlq-error-class".to_string(), b"Boom".to_vec()),
            ];
            (None, format!("k{i}").into_bytes(), b"{}".to_vec(), headers)
        })
        .collect();
    kafka.send_many("o.dlq", &records).await;
    let disk = SmallDisk::mount(64 * MIB);
    let d = TestDashboard::start_with(
        serve_args(&kafka.bootstrap(), &disk.file("index.db")),
        Arc::new(tempfile::tempdir().unwrap()),
    )
    .await;
    d.wait_indexed(TOTAL as i64).await;
    let (status, v) = d
        .post_json(
            "/api/replays",
            serde_json::json!({"filter": {"topic": "o.dlq"}, "rate": 200}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for("some sent", DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        (job["sent"].as_i64().unwrap() >= 100).then_some(())
    })
    .await;
    disk.fill();
    // The job cannot record what it sends: its count stops.
    let stuck = wait_for("the job to stop advancing", DEADLINE, || async {
        let (_, a) = d.get_json(&format!("/api/replays/{id}")).await;
        let first = a["sent"].as_i64().unwrap();
        // Two looks a second apart (the job sends 200 a second when it can).
        let still = wait_for_or_none(Duration::from_secs(1), || async {
            let (_, b) = d.get_json(&format!("/api/replays/{id}")).await;
            (b["sent"].as_i64().unwrap() != first).then_some(())
        })
        .await;
        still.is_none().then_some(first)
    })
    .await;
    assert!(
        (stuck as usize) < TOTAL,
        "the disk filled before the job ended"
    );
    wait_for("the banner to say why the job waits", DEADLINE, || async {
        let (_, html) = d.get_html(&format!("/replays/{id}")).await;
        html.contains(&escaped(&format!(
            "Replay jobs cannot record their results: disk full on {}",
            disk.path().display()
        )))
        .then_some(())
    })
    .await;
    // Longer than the recorder once retried before it gave up (5 attempts), after which it
    // stopped the job and the reports not recorded were sent again.
    wait_for(
        "the recorder to keep trying past 5 attempts",
        DEADLINE,
        || async {
            let (_, h) = d.get_json("/api/health").await;
            let replay = h["index"]["writers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["writer"] == "replay")
                .unwrap()
                .clone();
            (replay["errors_total"].as_u64().unwrap() >= 7).then_some(())
        },
    )
    .await;
    let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
    assert_eq!(job["status"], "running", "the job waits, it does not end");
    let waiting = format!(
        "Replay jobs cannot record their results: disk full on {}",
        disk.path().display()
    );
    assert!(
        job["waiting_on"]
            .as_str()
            .unwrap_or("")
            .starts_with(&waiting),
        "the job says why it waits: {job}"
    );
    let (_, html) = d.get_html(&format!("/replays/{id}")).await;
    assert_eq!(
        html.matches(&escaped(&waiting)).count(),
        2,
        "the job page says it beside its status, as well as in the banner"
    );
    disk.free();
    let job = wait_for("the job to finish", DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        ["completed", "completed_with_failures", "cancelled"]
            .contains(&job["status"].as_str().unwrap_or(""))
            .then_some(job)
    })
    .await;
    assert_eq!(
        (job["status"].as_str(), job["sent"].as_i64()),
        (Some("completed"), Some(TOTAL as i64)),
        "{job}"
    );
    assert!(job["waiting_on"].is_null(), "{job}");
    let got = crate::harness::in_process::read_topic(&kafka.bootstrap(), "o.retry.1", TOTAL).await;
    let ids: std::collections::HashSet<String> = got
        .iter()
        .map(|g| g.header("dlq-replay-id").unwrap())
        .collect();
    let keys: std::collections::HashSet<Vec<u8>> =
        got.iter().filter_map(|g| g.key.clone()).collect();
    assert_eq!(
        (got.len(), ids.len(), keys.len()),
        (TOTAL, TOTAL, TOTAL),
        "each record sent exactly once"
    );
    d.stop().await;
}

/// The search file overwritten with garbage while the dashboard runs: found damaged, made
/// anew and refilled, and indexing (which reads the search mark through it) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_file_damaged_while_running_is_rebuilt_and_indexing_goes_on() {
    let kafka = Kafka::start(&[("c.dlq", 1)]);
    let d = TestDashboard::start(&kafka).await;
    kafka
        .send_many("c.dlq", &noisy_records("before", 0, 30, 64))
        .await;
    d.wait_indexed(30).await;
    d.wait_searchable().await;
    let search_file = dlq_dashboard::store::search::path_for(&d.db);
    let size = std::fs::metadata(&search_file).unwrap().len() as usize;
    std::fs::write(&search_file, vec![0xA5_u8; size.max(4096)]).unwrap();
    kafka
        .send_many("c.dlq", &noisy_records("after", 0, 10, 64))
        .await;
    d.wait_indexed(40).await;
    for key in ["before-7", "after-3"] {
        wait_for(&format!("{key} searchable again"), DEADLINE, || async {
            let (status, v) = d.get_json(&format!("/api/messages?q={key}")).await;
            (status == StatusCode::OK && v["messages"].as_array().unwrap().len() == 1).then_some(())
        })
        .await;
    }
    d.wait_searchable().await;
    assert_eq!(exact_counts(&d).await, (40, 40));
    d.stop().await;
}

async fn purged(d: &TestDashboard) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE status = 'purged'")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap()
}

/// A purge asked while the disk is full is refused with a sentence and changes nothing; a
/// purge that meets a full disk mid-way waits, and finishes by itself once space is freed,
/// each record purged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_meeting_a_full_disk_waits_and_finishes_once_space_is_freed() {
    const TOTAL: i64 = 30_000;
    let kafka = Kafka::start(&[("p.dlq", 2)]);
    let disk = SmallDisk::mount(96 * MIB);
    let d = TestDashboard::start_with(
        serve_args(&kafka.bootstrap(), &disk.file("index.db")),
        Arc::new(tempfile::tempdir().unwrap()),
    )
    .await;
    for from in (0..TOTAL as usize).step_by(5_000) {
        kafka
            .send_many("p.dlq", &noisy_records("r", from, 5_000, 64))
            .await;
    }
    d.wait_indexed(TOTAL).await;
    let ask =
        serde_json::json!({"filter": {"topic": "p.dlq"}, "reason": "disk test", "dry_run": true});

    disk.fill();
    let (status, refused) = d.post_json("/api/purges", ask.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(
        refused["error"],
        "The index cannot be written right now (its disk is full); what was asked was not done: try again once the cause is gone (the page header says why)."
    );
    disk.free();

    let (status, preview) = d.post_json("/api/purges", ask).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], TOTAL);
    let state = d.d().state.clone();
    let body = serde_json::json!({"preview_id": preview["preview_id"]}).to_string();
    let confirm = tokio::spawn(async move {
        use tower::ServiceExt;
        let response = dlq_dashboard::web::router(state)
            .oneshot(
                axum::http::Request::post("/api/purges")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        )
    });
    wait_for("the purge to begin", DEADLINE, || async {
        (purged(&d).await > 0).then_some(())
    })
    .await;
    disk.fill();
    let at_fill = purged(&d).await;
    assert!(
        at_fill < TOTAL,
        "the purge ended before the disk filled; make it larger"
    );
    let stalled = wait_for("the purge to stall on the full disk", DEADLINE, || async {
        let first = purged(&d).await;
        let moved = wait_for_or_none(Duration::from_secs(1), || async {
            (purged(&d).await != first).then_some(())
        })
        .await;
        moved.is_none().then_some(first)
    })
    .await;
    assert!(stalled < TOTAL, "stalled at {stalled}");
    assert!(
        !confirm.is_finished(),
        "the purge waits, it does not give up"
    );
    let (_, html) = d.get_html("/purges").await;
    assert!(
        html.contains(&escaped(&format!(
            "A purge cannot be applied: disk full on {}",
            disk.path().display()
        ))),
        "the banner says why the purge waits"
    );
    disk.free();
    let (status, done) = confirm.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["purged"], TOTAL, "{done}");
    assert_eq!(purged(&d).await, TOTAL);
    let starts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'purge.start'")
            .fetch_one(&d.d().state.pool)
            .await
            .unwrap();
    assert_eq!(starts, 1, "one purge, confirmed once");
    d.stop().await;
}
