//! The broker's log moving under the index: a topic recreated (offsets restart) or records
//! deleted before they were indexed. Nothing is skipped silently and old rows stay.

use std::sync::Arc;

use crate::harness::in_process::{serve_args, Kafka, TestDashboard};

const TOPIC: &str = "moves.dlq";

async fn produce(kafka: &Kafka, prefix: &str, n: usize, value: &[u8]) {
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        kafka
            .send(TOPIC, Some(0), Some(key.as_bytes()), Some(value), &[])
            .await;
    }
}

async fn generations(d: &TestDashboard) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT generation, COUNT(*) FROM records GROUP BY generation ORDER BY generation",
    )
    .fetch_all(&d.d().state.pool)
    .await
    .unwrap()
}

/// Index `old` records from one cluster, then point the same database at a second cluster
/// whose topic of the same name holds `new` other records (as after the topic was deleted
/// and recreated, or the cluster wiped).
async fn recreated_topic(old: usize, new: usize) -> (TestDashboard, Kafka) {
    let first = Kafka::start(&[(TOPIC, 1)]);
    produce(&first, "old", old, b"old").await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("index.db");
    let d = TestDashboard::start_with(serve_args(&first.bootstrap(), &db), dir.clone()).await;
    d.wait_indexed(old as i64).await;
    d.stop().await;

    let second = Kafka::start(&[(TOPIC, 1)]);
    produce(&second, "new", new, b"new").await;
    let d = TestDashboard::start_with(serve_args(&second.bootstrap(), &db), dir).await;
    d.wait_indexed((old + new) as i64).await;
    (d, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_shorter_topic_becomes_a_new_generation() {
    let (d, _cluster) = recreated_topic(50, 20).await;
    assert_eq!(generations(&d).await, [(0, 50), (1, 20)]);
    let (_, topics) = d.get_json("/api/topics").await;
    let events = topics[0]["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "log_reset");
    assert!(events[0]["message"].as_str().unwrap().contains("restarted"));
    let (_, html) = d.get_html("/").await;
    assert!(html.contains("restarted"), "the overview says so");
    // Offset 5 now names the new record; the old one is still there as generation 0.
    let (_, v) = d.get_json(&format!("/api/messages/{TOPIC}/0/5")).await;
    assert_eq!(
        (v["key"].as_str(), v["generation"].as_i64()),
        (Some("new-5"), Some(1))
    );
    let (_, v) = d
        .get_json(&format!("/api/messages/{TOPIC}/0/5?generation=0"))
        .await;
    assert_eq!(v["key"], "old-5");
    let (_, html) = d
        .get_html(&format!("/messages?topic={TOPIC}&key=old-5"))
        .await;
    assert!(
        html.contains(&format!("/messages/{TOPIC}/0/5?generation=0")),
        "links keep naming the old record"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_longer_topic_is_noticed_by_rereading_the_last_record() {
    // The new log already has more records than the stored position: only the identity check
    // of the last indexed record can tell; without it records 0..49 would be skipped.
    let (d, _cluster) = recreated_topic(50, 80).await;
    assert_eq!(generations(&d).await, [(0, 50), (1, 80)]);
    let keys: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT key) FROM records WHERE generation = 1")
            .fetch_one(&d.d().state.pool)
            .await
            .unwrap();
    assert_eq!(keys, 80);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_an_unchanged_log_is_not_mistaken_for_a_reset() {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    produce(&kafka, "a", 30, b"same").await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(30).await;
    let args = serve_args(&kafka.bootstrap(), &d.db);
    let d = d.restart(args, || produce(&kafka, "b", 10, b"same")).await;
    d.wait_indexed(40).await;
    produce(&kafka, "c", 1, b"same").await;
    d.wait_indexed(41).await;
    assert_eq!(generations(&d).await, [(0, 41)]);
    let (_, topics) = d.get_json("/api/topics").await;
    assert_eq!(topics[0]["events"], serde_json::json!([]));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_indexing_are_reported_as_a_gap() {
    // librdkafka's mock partition keeps about 5 MiB; older records are dropped, which moves
    // the log start like retention does.
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    produce(&kafka, "early", 5, b"small").await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(5).await;
    let args = serve_args(&kafka.bootstrap(), &d.db);
    // Incompressible, so that lz4 does not shrink it below the mock's limit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let d = d.restart(args, || produce(&kafka, "bulk", 60, &big)).await;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    let (low, high) = consumer
        .fetch_watermarks(TOPIC, 0, std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        low > 5,
        "the mock dropped old records (low watermark {low})"
    );
    d.wait_indexed(5 + (high - low)).await;
    let (_, topics) = d.get_json("/api/topics").await;
    let event = &topics[0]["events"][0];
    assert_eq!(event["kind"], "retention_gap");
    assert_eq!(
        (event["from_offset"].as_i64(), event["to_offset"].as_i64()),
        (Some(5), Some(low))
    );
    assert_eq!(generations(&d).await, [(0, 5 + high - low)]);
    d.stop().await;
}
