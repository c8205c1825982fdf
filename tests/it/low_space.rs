//! Issue 14's low-space rule on a real small file system (a tmpfs, `harness::small_disk`):
//! below `--min-free-space` the indexer keeps indexing metadata and defers payload bodies,
//! says so everywhere a body is read, and once space is freed reads every deferred body
//! again from the broker.

use std::sync::Arc;

use axum::http::StatusCode;
use dlq_dashboard::store::space::MinFreeSpace;
use serde_json::json;

use crate::harness::in_process::{
    assert_intact, escaped, serve_args, Kafka, Outgoing, TestDashboard, DEADLINE,
};
use crate::harness::small_disk::SmallDisk;
use crate::poll::wait_for;

const MIB: u64 = 1024 * 1024;

/// The payload of record `i`: a searchable word first, then `bytes` of text that zstd
/// cannot shrink much (hex of pseudo-random bytes), so every record costs space.
fn payload(i: usize, bytes: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = format!("tok{i}x ").into_bytes();
    while out.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("{:016x}", x).as_bytes());
    }
    out
}

fn records(from: usize, n: usize, bytes: usize) -> Vec<Outgoing> {
    (from..from + n)
        .map(|i| {
            let headers = vec![
                ("dlq-error-class".to_string(), b"LowDiskTest".to_vec()),
                ("dlq-origin-topic".to_string(), b"low".to_vec()),
                ("trace".to_string(), format!("t-{i}").into_bytes()),
            ];
            (
                Some(0),
                format!("k-{i}").into_bytes(),
                payload(i, bytes),
                headers,
            )
        })
        .collect()
}

/// Offsets of the records whose bodies wait, and how many the broker no longer had.
async fn deferred(d: &TestDashboard) -> (Vec<i64>, i64) {
    let pool = &d.d().state.pool;
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT r.\"offset\" FROM deferred_bodies b JOIN records r ON r.id = b.record_id WHERE b.lost_at IS NULL ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let lost: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deferred_bodies WHERE lost_at IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    (waiting, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_free_space_bodies_are_deferred_and_read_again_once_space_is_freed() {
    // 3.3 MB in all: librdkafka's mock cluster keeps about 5 MB of a partition's log and
    // moves the log start past older records beyond that.
    const N: usize = 200;
    const BYTES: usize = 16 * 1024;
    let kafka = Kafka::start(&[("low.dlq", 1), ("low.retry.1", 1)]);
    let disk = SmallDisk::mount(8 * MIB);
    let mut args = serve_args(&kafka.bootstrap(), &disk.file("index.db"));
    args.min_free_space = MinFreeSpace::Bytes(6 * MIB);
    let d = TestDashboard::start_with(args, Arc::new(tempfile::tempdir().unwrap())).await;
    wait_for("the first assignment", DEADLINE, || async {
        (d.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    // In small batches, so that the threshold is crossed part-way through the backlog.
    for from in (0..N).step_by(20) {
        kafka.send_many("low.dlq", &records(from, 20, BYTES)).await;
        d.wait_indexed((from + 20) as i64).await;
    }
    let (waiting, lost) = deferred(&d).await;
    assert_eq!(lost, 0);
    assert!(
        !waiting.is_empty() && waiting.len() < N,
        "the threshold was crossed during the backlog: {} of {N} deferred",
        waiting.len()
    );
    let first = waiting[0];
    assert!(first > 0, "the first records were stored whole");
    let missing = waiting.len() as i64;
    let pool = &d.d().state.pool;
    let without_body: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM record_bodies WHERE value IS NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        without_body, missing,
        "exactly the marked records lack a body"
    );

    // Said so: /api/health, the banner, the metric.
    let folder = disk.path().display().to_string();
    let (_, health) = d.get_json("/api/health").await;
    assert_eq!(health["index"]["bodies_deferred"], missing);
    assert_eq!(health["index"]["bodies_lost"], 0);
    assert_eq!(health["ready"], true, "indexing goes on: {health}");
    assert_eq!(health["disk"]["low_space"], true);
    let banner = format!(
        "{missing} payloads not stored: low disk space on {folder}; they are read again from Kafka once space is freed"
    );
    let (_, html) = d.get_html("/").await;
    assert!(html.contains(&escaped(&banner)), "the banner: {banner}");
    let (_, _, metrics) = d.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(&format!("\ndlq_index_bodies_deferred {missing}\n")),
        "{metrics}"
    );

    // The message page, its JSON and its raw download say so.
    let last = N as i64 - 1;
    let sentence = "Payload not stored yet: the disk was low when it was indexed; it is read again from Kafka once space is freed";
    let (_, m) = d.get_json(&format!("/api/messages/low.dlq/0/{last}")).await;
    assert_eq!(m["payload_not_stored"], sentence, "{m}");
    assert_eq!(m["payload_state"], "deferred");
    assert_eq!(m["error"]["class"], "LowDiskTest", "the metadata is kept");
    assert_eq!(m["value_size"], payload(last as usize, BYTES).len());
    let (_, page) = d.get_html(&format!("/messages/low.dlq/0/{last}")).await;
    assert!(page.contains(&escaped(sentence)), "the page says so");
    let (status, _, body) = d.get(&format!("/api/messages/low.dlq/0/{last}/raw")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        String::from_utf8_lossy(&body).contains("payload not stored yet"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, stored) = d.get_json("/api/messages/low.dlq/0/0").await;
    assert!(stored["payload_not_stored"].is_null());

    // A replay of a deferred record and a stored one: the deferred one is refused with the
    // reason, per item; nothing is sent with an empty payload.
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"messages": [
                {"topic": "low.dlq", "partition": 0, "offset": 0},
                {"topic": "low.dlq", "partition": 0, "offset": last}
            ], "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["refused"][0]["offset"], last);
    assert_eq!(
        preview["refused"][0]["reason"],
        "The payload of this message is not stored yet: the disk was low when it was indexed; it is read again from Kafka once space is freed, and can be replayed then."
    );
    // Search finds the key of a deferred record, not its payload text yet.
    d.wait_searchable().await;
    let hits = |q: String| {
        let d = &d;
        async move {
            let (_, v) = d.get_json(&format!("/api/messages?q={q}")).await;
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["offset"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(hits(format!("tok{last}x")).await, Vec::<i64>::new());
    assert_eq!(hits("tok0x".into()).await, vec![0]);

    // A deferred record purged with its payload erased is never read back.
    let erased = last - 1;
    let done = d
        .purge_confirmed(
            json!({"messages": [{"topic": "low.dlq", "partition": 0, "offset": erased}], "erase": true, "reason": "personal data"}),
        )
        .await;
    assert_eq!(done["erased"], 1, "{done}");
    let (_, health) = d.get_json("/api/health").await;
    assert_eq!(health["index"]["bodies_deferred"], missing - 1);

    // Space is freed: every deferred body is read again from the broker.
    disk.resize(128 * MIB);
    wait_for("every deferred body read again", DEADLINE, || async {
        let (_, h) = d.get_json("/api/health").await;
        (h["index"]["bodies_deferred"] == 0).then_some(())
    })
    .await;
    assert_eq!(deferred(&d).await, (vec![], 0), "no mark left, none lost");
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT \"offset\") FROM records")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        (rows, distinct),
        (N as i64, N as i64),
        "the record set is exact"
    );
    let (status, _, body) = d
        .get(&format!("/api/messages/low.dlq/0/{erased}/raw"))
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert!(String::from_utf8_lossy(&body).contains("was erased"));
    let erased_value: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT b.value FROM record_bodies b JOIN records r ON r.id = b.record_id WHERE r.\"offset\" = ?",
    )
    .bind(erased)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(erased_value, None, "the erased payload was not read back");
    for offset in waiting.iter().copied().filter(|o| *o != erased).chain([0]) {
        let i = offset as usize;
        let (status, _, body) = d
            .get(&format!("/api/messages/low.dlq/0/{offset}/raw"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body == payload(i, BYTES),
            "offset {offset}: the broker's bytes exactly"
        );
        let (_, m) = d
            .get_json(&format!("/api/messages/low.dlq/0/{offset}"))
            .await;
        assert!(m["payload_not_stored"].is_null(), "{m}");
        let trace = m["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "trace")
            .map(|h| h["value"].clone());
        assert_eq!(
            trace,
            Some(json!(format!("t-{i}"))),
            "headers back in place"
        );
    }
    d.wait_searchable().await;
    for offset in [first, last] {
        assert_eq!(
            hits(format!("tok{offset}x")).await,
            vec![offset],
            "search finds it"
        );
    }
    let (_, html) = d.get_html("/").await;
    assert!(!html.contains("payloads not stored"), "the banner is gone");
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "low.dlq", "partition": 0, "offset": last}], "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview["count"], 1,
        "replayable once its body is back: {preview}"
    );
    assert_intact(pool).await;
    d.stop().await;
}

/// Index the `n` records of `kafka` with their bodies deferred (a threshold of the
/// whole file system is never met), then stop.
async fn index_deferred(kafka: &Kafka, n: usize, dir: &Arc<tempfile::TempDir>) {
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    args.min_free_space = MinFreeSpace::Percent(100.0);
    let d = TestDashboard::start_with(args, dir.clone()).await;
    d.wait_indexed(n as i64).await;
    assert_eq!(deferred(&d).await.0.len(), n, "every body deferred");
    d.stop().await;
}

/// A restart on the same log, with the last indexed record's body deferred: the log is the
/// same (its key and time match; there is no payload to compare), so no new generation, and
/// the backfill reads every body once space allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_bodies_are_read_again_after_a_restart_on_the_same_log() {
    let kafka = Kafka::start(&[("same.dlq", 1)]);
    kafka.send_many("same.dlq", &records(0, 30, 600)).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    index_deferred(&kafka, 30, &dir).await;
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    args.min_free_space = MinFreeSpace::Bytes(0);
    let d = TestDashboard::start_with(args, dir.clone()).await;
    wait_for("every deferred body read again", DEADLINE, || async {
        (deferred(&d).await == (vec![], 0)).then_some(())
    })
    .await;
    let generations: Vec<(i64, i64)> =
        sqlx::query_as("SELECT generation, COUNT(*) FROM records GROUP BY generation")
            .fetch_all(&d.d().state.pool)
            .await
            .unwrap();
    assert_eq!(generations, [(0, 30)], "not mistaken for a restarted log");
    for offset in [0usize, 29] {
        let (status, _, body) = d
            .get(&format!("/api/messages/same.dlq/0/{offset}/raw"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == payload(offset, 600));
    }
    d.stop().await;
}

/// The lost case: the bodies were deferred, then the topic was deleted and recreated (here:
/// the same index pointed at a cluster whose topic of that name holds other records). The
/// backfill takes none of the new records for the old ones: each old record keeps no body and
/// says so, on its page, in its JSON, its raw download and a replay preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_body_the_broker_no_longer_has_is_marked_lost_and_says_so() {
    let first = Kafka::start(&[("gone.dlq", 1)]);
    first.send_many("gone.dlq", &records(0, 20, 600)).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    index_deferred(&first, 20, &dir).await;
    drop(first);
    let second = Kafka::start(&[("gone.dlq", 1), ("low.retry.1", 1)]);
    // Other records at the same offsets (other keys), and more of them.
    second.send_many("gone.dlq", &records(100, 30, 600)).await;
    let mut args = serve_args(&second.bootstrap(), &dir.path().join("index.db"));
    args.min_free_space = MinFreeSpace::Bytes(0);
    let d = TestDashboard::start_with(args, dir.clone()).await;
    d.wait_indexed(50).await;
    wait_for("the old records marked lost", DEADLINE, || async {
        (deferred(&d).await == (vec![], 20)).then_some(())
    })
    .await;
    let (_, health) = d.get_json("/api/health").await;
    assert_eq!(
        (
            health["index"]["bodies_deferred"].as_i64(),
            health["index"]["bodies_lost"].as_i64()
        ),
        (Some(0), Some(20))
    );
    let (_, m) = d.get_json("/api/messages/gone.dlq/0/5?generation=0").await;
    assert_eq!(m["key"], "k-5");
    assert_eq!(m["payload_state"], "lost", "{m}");
    let why = m["payload_not_stored"].as_str().unwrap().to_string();
    assert!(
        why.starts_with(
            "Payload not stored: the disk was low when it was indexed, and when space was freed "
        ) && why.ends_with("; only its metadata is kept"),
        "{why}"
    );
    let (_, page) = d.get_html("/messages/gone.dlq/0/5?generation=0").await;
    assert!(page.contains(&escaped(&why)), "the page says so");
    let (status, _, _) = d.get("/api/messages/gone.dlq/0/5/raw?generation=0").await;
    assert_eq!(status, StatusCode::GONE);
    // The new record at that offset is whole: nothing of it was taken for the old one.
    let (_, new) = d.get_json("/api/messages/gone.dlq/0/5").await;
    assert_eq!(
        (new["key"].as_str(), new["generation"].as_i64()),
        (Some("k-105"), Some(1))
    );
    assert!(new["payload_state"].is_null());
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "gone.dlq", "partition": 0, "offset": 5, "generation": 0}], "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 0);
    assert_eq!(
        preview["refused"][0]["reason"],
        "The payload of this message was not stored (the disk was low when it was indexed) and the broker no longer had it when space was freed; it can be seen here but not replayed."
    );
    d.stop().await;
}
