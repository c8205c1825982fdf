//! Exactly-once indexing across restarts: positions live in SQLite with the rows.

use crate::harness::in_process::{serve_args, Kafka, TestDashboard};

const TOPIC: &str = "life.dlq";

async fn produce(kafka: &Kafka, from: usize, to: usize) {
    for i in from..to {
        let key = format!("k{i}");
        let headers = [("dlq-error-class", Some(b"E".as_slice()))];
        kafka
            .send(
                TOPIC,
                Some((i % 3) as i32),
                Some(key.as_bytes()),
                Some(b"{\"n\":1}"),
                &headers,
            )
            .await;
    }
}

async fn assert_exactly_once(d: &TestDashboard, expected: i64) {
    let pool = &d.d().state.pool;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT topic || '/' || partition || '/' || \"offset\") FROM records")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(rows, expected, "every record indexed");
    assert_eq!(distinct, expected, "no record twice");
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT key) FROM records")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(keys, expected);
    // The overview counters agree with the rows.
    let counted: i64 = sqlx::query_scalar("SELECT SUM(count) FROM topic_status_counts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(counted, expected, "status counters match the rows");
    // Positions are the next offset of each partition.
    let positions: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM partition_positions WHERE topic = ? ORDER BY partition",
    )
    .bind(TOPIC)
    .fetch_all(pool)
    .await
    .unwrap();
    let total: i64 = positions.iter().map(|(_, n)| n).sum();
    assert_eq!(total, expected, "positions {positions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_database_neither_loses_nor_duplicates() {
    let kafka = Kafka::start(&[(TOPIC, 3)]);
    produce(&kafka, 0, 90).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(90).await;
    assert_exactly_once(&d, 90).await;

    // Records arrive while the dashboard is down; the next one resumes where SQLite says.
    let args = serve_args(&kafka.bootstrap(), &d.db);
    let d = d.restart(args, || produce(&kafka, 90, 150)).await;
    d.wait_indexed(150).await;
    produce(&kafka, 150, 160).await;
    d.wait_indexed(160).await;
    assert_exactly_once(&d, 160).await;
    let (_, v) = d.get_json("/api/topics").await;
    assert_eq!(v[0]["topic"], TOPIC);
    assert_eq!(v[0]["messages"], 160);
    assert_eq!(v[0]["partitions"], 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_with_the_same_group_indexes_everything_again() {
    // Kafka's committed offsets for the group are ahead; SQLite's (absent) positions win, so
    // a fresh index file never starts in the middle of a topic.
    let kafka = Kafka::start(&[(TOPIC, 3)]);
    produce(&kafka, 0, 40).await;
    let first = TestDashboard::start(&kafka).await;
    first.wait_indexed(40).await;
    first.stop().await;
    let second = TestDashboard::start(&kafka).await;
    second.wait_indexed(40).await;
    assert_exactly_once(&second, 40).await;
    second.stop().await;
}

/// Free-text matches through the API (one page holds them all here).
async fn search_hits(d: &TestDashboard, q: &str) -> usize {
    let (_, v) = d.get_json(&format!("/api/messages?q={q}&limit=1000")).await;
    v["messages"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_file_deleted_while_stopped_is_rebuilt_on_start() {
    let kafka = Kafka::start(&[(TOPIC, 3)]);
    produce(&kafka, 0, 60).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(60).await;
    d.wait_searchable().await;
    assert_eq!(search_hits(&d, "n").await, 60);

    // The search file goes while the dashboard is stopped: it comes back and is refilled.
    let search_file = dlq_dashboard::store::search::path_for(&d.db);
    let args = serve_args(&kafka.bootstrap(), &d.db);
    let d = d
        .restart(args, || async {
            std::fs::remove_file(&search_file).unwrap();
            produce(&kafka, 60, 90).await;
        })
        .await;
    assert!(search_file.is_file());
    d.wait_indexed(90).await;
    d.wait_searchable().await;
    assert_eq!(search_hits(&d, "n").await, 90);
    assert_eq!(search_hits(&d, "k85").await, 1);
    let (_, v) = d.get_json("/api/messages?q=n&limit=1000").await;
    assert_eq!(v["search_pending"], 0);
    d.stop().await;
}

/// A backlog over many partitions is indexed in batches that grow while the writer is busy
/// (`index::reader`): every record on the broker is stored exactly once, with positions
/// that match, across a restart in the middle of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_many_partitions_is_indexed_exactly_once_across_a_restart() {
    const TOPICS: [&str; 2] = ["backlog-a.dlq", "backlog-b.dlq"];
    const PARTITIONS: i32 = 12;
    const PER_PARTITION: usize = 700;
    let kafka = Kafka::start(&[(TOPICS[0], PARTITIONS), (TOPICS[1], PARTITIONS)]);
    let records = |round: usize| -> Vec<crate::harness::in_process::Outgoing> {
        (0..PARTITIONS as usize * PER_PARTITION)
            .map(|i| {
                (
                    Some((i % PARTITIONS as usize) as i32),
                    format!("r{round}-{i}").into_bytes(),
                    format!("{{\"n\":{i},\"note\":\"{}\"}}", "x".repeat(200)).into_bytes(),
                    vec![
                        ("dlq-error-class".into(), b"E".to_vec()),
                        (
                            "dlq-error-message".into(),
                            format!("failed {i}").into_bytes(),
                        ),
                    ],
                )
            })
            .collect()
    };
    let mut on_broker: std::collections::BTreeSet<(String, i32, i64)> = Default::default();
    for topic in TOPICS {
        for (p, o) in kafka.send_many(topic, &records(0)).await {
            on_broker.insert((topic.to_string(), p, o));
        }
    }
    let first_round = on_broker.len() as i64;
    let d = TestDashboard::start(&kafka).await;
    // Stopped as soon as part of the backlog is stored: the rest is re-read from SQLite's
    // positions, partly from batches that were being read when it stopped.
    let part = d.wait_indexed(1).await;
    let args = serve_args(&kafka.bootstrap(), &d.db);
    let mut more = Vec::new();
    let (kafka_ref, more_ref) = (&kafka, &mut more);
    let d = d
        .restart(args, move || async move {
            for topic in TOPICS {
                more_ref.push((topic, kafka_ref.send_many(topic, &records(1)).await));
            }
        })
        .await;
    for (topic, delivered) in more {
        for (p, o) in delivered {
            on_broker.insert((topic.to_string(), p, o));
        }
    }
    let total = on_broker.len() as i64;
    assert!(part < total && first_round < total);
    d.wait_indexed(total).await;
    d.wait_searchable().await;
    let pool = &d.d().state.pool;
    let stored: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, \"offset\" FROM records")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(stored.len() as i64, total, "no record stored twice");
    let stored: std::collections::BTreeSet<_> = stored.into_iter().collect();
    assert_eq!(stored, on_broker, "exactly the broker's records");
    let positions: i64 = sqlx::query_scalar("SELECT SUM(next_offset) FROM partition_positions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(positions, total, "every partition's position is its end");
    let counted: i64 = sqlx::query_scalar("SELECT SUM(count) FROM topic_status_counts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(counted, total, "status counters match the rows");
    d.stop().await;
}
