//! Snapshots of the JSON API's bodies (tests/it/snapshots/) on a fixed fixture: a change of
//! the API's shape (a field added, renamed, dropped or retyped) fails the suite until the
//! snapshot is reviewed and updated with it, so that the README's API section, which these
//! bodies must match, cannot drift silently. Values that differ from run to run (times the
//! dashboard stamps, job and preview ids, the mock cluster's port) are redacted; everything
//! else is fixed by the fixture, down to the records' timestamps.
//!
//! After a deliberate change: `INSTA_UPDATE=always cargo test --test it api_snapshots`, then
//! review the diff of the `.snap` files.

use std::time::Duration;

use axum::http::StatusCode;
use insta::internals::{Content, ContentPath, Redaction};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use crate::harness::in_process::{Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

/// 2024-05-01T12:00:00Z: the fixture's records are stamped from here, so that the times
/// derived from them (and their hourly counts: none in the last 24 hours) never change.
const T0: i64 = 1_714_564_800_000;

/// One record of the fixture.
struct Failed {
    topic: &'static str,
    partition: i32,
    key: Option<&'static str>,
    value: &'static [u8],
    headers: &'static [(&'static str, &'static str)],
}

const ORDER_HEADERS: &[(&str, &str)] = &[
    ("dlq-origin-topic", "orders"),
    ("dlq-origin-partition", "0"),
    ("dlq-origin-offset", "41"),
    ("dlq-origin-timestamp", "1714564740000"),
    ("dlq-consumer-group", "order-service"),
    ("dlq-error-class", "ValidationError"),
    ("dlq-error-message", "field amount must be positive, got -5"),
    ("dlq-error-stacktrace", "at validate (orders.rs:10)"),
    ("dlq-attempts", "3"),
];

/// Records on two DLQ topics in three failure groups: two of one group (same class, origin
/// and masked message), one without a key and with a binary value, and one whose replay
/// target does not exist (payments.retry.1), so a preview refuses it.
const FIXTURE: [Failed; 4] = [
    Failed {
        topic: "orders.dlq",
        partition: 0,
        key: Some("order-1"),
        value: br#"{"order":1,"amount":-5}"#,
        headers: ORDER_HEADERS,
    },
    Failed {
        topic: "orders.dlq",
        partition: 0,
        key: Some("order-2"),
        value: br#"{"order":2,"amount":-7}"#,
        headers: &[
            ("dlq-origin-topic", "orders"),
            ("dlq-consumer-group", "order-service"),
            ("dlq-error-class", "ValidationError"),
            ("dlq-error-message", "field amount must be positive, got -7"),
        ],
    },
    Failed {
        topic: "orders.dlq",
        partition: 1,
        key: None,
        value: &[0, 159, 146, 150],
        headers: &[
            ("dlq-origin-topic", "orders"),
            ("dlq-error-class", "TimeoutError"),
            ("dlq-error-message", "upstream timed out after 3000 ms"),
        ],
    },
    Failed {
        topic: "payments.dlq",
        partition: 0,
        key: Some("pay-1"),
        value: br#"{"payment":1}"#,
        headers: &[
            ("dlq-origin-topic", "payments"),
            ("dlq-error-class", "DeclinedError"),
            ("dlq-error-message", "card declined"),
        ],
    },
];

/// The fixture on a fresh mock cluster, indexed by a fresh dashboard. The records are
/// produced and indexed one at a time, so that their row ids (which order replay results)
/// are the same on every run.
async fn fixture() -> (Kafka, TestDashboard) {
    let kafka = Kafka::start(&[
        ("orders", 1),
        ("orders.retry.1", 1),
        ("orders.dlq", 2),
        ("payments.dlq", 1),
    ]);
    let d = TestDashboard::start(&kafka).await;
    for (i, r) in FIXTURE.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (name, value) in r.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(r.topic)
            .partition(r.partition)
            .payload(r.value)
            .timestamp(T0 + 1000 * i as i64)
            .headers(headers);
        if let Some(k) = r.key {
            record = record.key(k);
        }
        kafka
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
        d.wait_indexed(i as i64 + 1).await;
    }
    d.wait_searchable().await;
    (kafka, d)
}

/// GET a JSON body, expecting 200.
async fn body(d: &TestDashboard, uri: &str) -> Value {
    let (status, v) = d.get_json(uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {v}");
    v
}

/// The message detail once its replay target has been checked against the cluster (the
/// dashboard learns the cluster's topics shortly after it starts).
async fn checked_message(d: &TestDashboard, uri: &str) -> Value {
    wait_for("the replay target to be checked", DEADLINE, || async {
        let m = body(d, uri).await;
        (m["replay"]["checked"] == true).then_some(m)
    })
    .await
}

/// A time the dashboard stamps (now, not the fixture's): checked to be an RFC 3339 UTC
/// string, as the README promises, then redacted. A null stays null, so the snapshot still
/// shows which times are set.
fn stamped_time() -> Redaction {
    insta::dynamic_redaction(|value: Content, path: ContentPath<'_>| {
        let Some(s) = value.as_str() else {
            return value;
        };
        assert!(
            chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z'),
            "{path}: {s:?} is not an RFC 3339 UTC time"
        );
        Content::from("[time]")
    })
}

/// `id` (a job's or a preview's, new on every run) replaced by `[name]` wherever it occurs
/// in a string: alone, in a replay id (`{job id}-{record id}`) or in a sentence.
fn id_as(id: &str, name: &str) -> Redaction {
    let (id, name) = (id.to_string(), format!("[{name}]"));
    insta::dynamic_redaction(
        move |value: Content, _: ContentPath<'_>| match value.as_str() {
            Some(s) => Content::from(s.replace(&id, &name)),
            None => value,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsing_api_answers_in_its_documented_shape() {
    let (_kafka, d) = fixture().await;

    insta::assert_json_snapshot!("topics", body(&d, "/api/topics").await);
    insta::assert_json_snapshot!("messages", body(&d, "/api/messages?topic=orders.dlq").await);
    insta::assert_json_snapshot!(
        "messages_search",
        body(&d, "/api/messages?q=amount&limit=1").await
    );
    insta::assert_json_snapshot!(
        "message",
        checked_message(&d, "/api/messages/orders.dlq/0/0").await,
        { ".indexed_at" => stamped_time() }
    );
    insta::assert_json_snapshot!("groups", body(&d, "/api/groups").await);
    insta::assert_json_snapshot!("cluster", body(&d, "/api/cluster").await, {
        ".brokers" => "[mock cluster bootstrap]",
        ".since" => stamped_time(),
    });
    d.wait_searchable().await;
    insta::assert_json_snapshot!("health", body(&d, "/api/health").await, {
        ".kafka.since" => stamped_time(),
        ".index.database" => "[index file]",
        ".index.writers[].last_ok_at" => "[time, or null before the first write]",
        ".index.writers[].seconds_since_last_write" => "[seconds]",
        ".wal" => "[the logs as the last checkpoints found them]",
        ".disk.folder" => "[index folder]",
        ".disk.free_bytes" => "[bytes]",
        ".disk.total_bytes" => "[bytes]",
        ".disk.min_free_bytes" => "[bytes]",
        ".disk.low_space" => "[depends on the machine]",
        ".problems" => "[sentences: the low-space warning depends on the machine]",
    });
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_api_answers_in_its_documented_shape() {
    let (_kafka, d) = fixture().await;
    checked_message(&d, "/api/messages/orders.dlq/0/0").await;
    let selection = json!([
        {"topic": "orders.dlq", "partition": 0, "offset": 0},
        {"topic": "orders.dlq", "partition": 0, "offset": 1},
        {"topic": "orders.dlq", "partition": 1, "offset": 0},
        {"topic": "payments.dlq", "partition": 0, "offset": 0},
    ]);

    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"messages": selection, "dry_run": true, "rate": 100}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let preview_id = preview["preview_id"].as_str().unwrap().to_string();
    insta::assert_json_snapshot!("replay_preview", preview, {
        ".preview_id" => id_as(&preview_id, "preview id"),
        ".expires_at" => stamped_time(),
    });

    let (status, started) = d
        .post_json("/api/replays", json!({"preview_id": preview_id}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    insta::assert_json_snapshot!("replay_started", started, { ".id" => id_as(&id, "job id") });

    // Finished, and following the consumer group the records' headers name (which the
    // dashboard works out after the job starts).
    let job = wait_for(&format!("replay job {id} to finish"), DEADLINE, || async {
        let job = body(&d, &format!("/api/replays/{id}")).await;
        let tracked = job["consumer_groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty());
        (job["status"] == "completed" && tracked).then_some(job)
    })
    .await;
    insta::assert_json_snapshot!("replay_job", job, {
        ".id" => id_as(&id, "job id"),
        ".created_at" => stamped_time(),
        ".started_at" => stamped_time(),
        ".finished_at" => stamped_time(),
    });
    insta::assert_json_snapshot!("replays", body(&d, "/api/replays").await, {
        "[].id" => id_as(&id, "job id"),
        "[].created_at" => stamped_time(),
        "[].started_at" => stamped_time(),
        "[].finished_at" => stamped_time(),
    });
    insta::assert_json_snapshot!(
        "replay_results",
        body(&d, &format!("/api/replays/{id}/results")).await,
        {
            ".results[].job_id" => id_as(&id, "job id"),
            ".results[].replay_id" => id_as(&id, "job id"),
            ".results[].finished_at" => stamped_time(),
            ".results[].consumed_at" => stamped_time(),
        }
    );
    insta::assert_json_snapshot!(
        "message_replayed",
        checked_message(&d, "/api/messages/orders.dlq/0/0").await,
        {
            ".indexed_at" => stamped_time(),
            ".replays[].job_id" => id_as(&id, "job id"),
            ".replays[].replay_id" => id_as(&id, "job id"),
            ".replays[].finished_at" => stamped_time(),
            ".replays[].consumed_at" => stamped_time(),
        }
    );
    insta::assert_json_snapshot!("audit", body(&d, "/api/audit").await, {
        ".entries[].at" => stamped_time(),
        ".entries[].job_id" => id_as(&id, "job id"),
        ".entries[].summary" => id_as(&id, "job id"),
    });
    d.stop().await;
}
