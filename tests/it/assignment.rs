//! The indexer reads every partition itself (no consumer group): a second dashboard on the
//! same cluster takes nothing from the first, and topics created later are found.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::in_process::{serve_args, Kafka, Outgoing, TestDashboard, DEADLINE};
use crate::poll::wait_for;

const TOPIC: &str = "shared.dlq";
const PARTITIONS: i32 = 4;

/// Records `from..to`, spread over every partition.
fn records(from: usize, to: usize) -> Vec<Outgoing> {
    (from..to)
        .map(|i| {
            (
                Some((i % PARTITIONS as usize) as i32),
                format!("k{i}").into_bytes(),
                b"{\"n\":1}".to_vec(),
                vec![("dlq-error-class".to_string(), b"E".to_vec())],
            )
        })
        .collect()
}

/// Records per partition of `topic` in the index, by partition.
async fn per_partition(d: &TestDashboard, topic: &str) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT partition, COUNT(DISTINCT \"offset\") FROM records WHERE topic = ? GROUP BY partition ORDER BY partition",
    )
    .bind(topic)
    .fetch_all(&d.d().state.pool)
    .await
    .unwrap()
}

/// What `/api/topics` counts for `topic`.
async fn api_count(d: &TestDashboard, topic: &str) -> i64 {
    let (_, v) = d.get_json("/api/topics").await;
    v.as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == topic)
        .and_then(|t| t["messages"].as_i64())
        .unwrap_or(0)
}

fn assigned(d: &TestDashboard, topic: &str) -> i64 {
    let snapshot = d.d().state.status.snapshot();
    snapshot
        .assigned_partitions
        .get(topic)
        .copied()
        .unwrap_or(0)
}

/// The offsets the broker holds for `consumer`'s group on `topic`, summed over partitions.
async fn committed_total(consumer: &Arc<BaseConsumer>, topic: &str, partitions: i32) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || {
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    })
    .await
    .unwrap()
}

async fn index_id(d: &TestDashboard) -> String {
    dlq_dashboard::store::identity::index_id(&d.d().state.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dashboard_with_the_default_group_takes_nothing_from_the_first() {
    let kafka = Kafka::start(&[(TOPIC, PARTITIONS)]);
    kafka.send_many(TOPIC, &records(0, 400)).await;
    let a = TestDashboard::start(&kafka).await;
    a.wait_indexed(400).await;
    assert_eq!(a.indexed().await, 400);

    // B: its own file, the default --group-id, the same cluster.
    let b = TestDashboard::start(&kafka).await;
    assert_ne!(index_id(&a).await, index_id(&b).await);
    kafka.send_many(TOPIC, &records(400, 800)).await;
    a.wait_indexed(800).await;
    b.wait_indexed(800).await;
    for d in [&a, &b] {
        assert_eq!(d.indexed().await, 800, "every record on the broker, once");
        assert_eq!(api_count(d, TOPIC).await, 800);
        assert_eq!(
            per_partition(d, TOPIC).await,
            (0..PARTITIONS).map(|p| (p, 200)).collect::<Vec<_>>()
        );
        assert_eq!(assigned(d, TOPIC), i64::from(PARTITIONS));
    }

    // Offsets reach Kafka for lag tools, under a group of A's own file, without membership.
    let group = format!("dlq-dashboard-{}", index_id(&a).await);
    let reader: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap())
            .set("group.id", &group)
            .create()
            .unwrap(),
    );
    wait_for("A's offsets committed to Kafka", DEADLINE, || async {
        let total = committed_total(&reader, TOPIC, PARTITIONS).await;
        (total == 800).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_after_start_are_indexed_and_deleted_ones_dropped() {
    // The mock cluster cannot add partitions to a topic (no CreatePartitions, no C call for
    // it), so a partition added later is covered by the unit tests of the plan alone.
    let kafka = Kafka::start(&[("team-a.orders", 2)]);
    let one = |i: usize| -> Outgoing {
        (
            None,
            format!("k{i}").into_bytes(),
            b"x".to_vec(),
            Vec::new(),
        )
    };
    kafka
        .send_many("team-a.orders", &(0..10).map(one).collect::<Vec<_>>())
        .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    args.dlq_topics = vec!["^team-a\\..*".into()];
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(10).await;

    // A topic that does not match comes first: whenever the matching one is found, this one
    // would have been found with it.
    kafka.cluster.create_topic("team-b.late", 1).unwrap();
    kafka
        .send_many("team-b.late", &(0..5).map(one).collect::<Vec<_>>())
        .await;
    kafka.cluster.create_topic("team-a.late", 3).unwrap();
    kafka
        .send_many("team-a.late", &(10..40).map(one).collect::<Vec<_>>())
        .await;
    d.wait_indexed(40).await;
    assert_eq!(api_count(&d, "team-a.late").await, 30);
    assert_eq!(api_count(&d, "team-a.orders").await, 10);
    assert_eq!(assigned(&d, "team-a.late"), 3);
    assert_eq!(assigned(&d, "team-b.late"), 0);
    assert_eq!(d.indexed().await, 40);

    // Deleted (the mock answers metadata for it as unknown): dropped from the assignment,
    // its rows and positions kept.
    kafka
        .cluster
        .set_topic_error(
            "team-a.orders",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    wait_for("the deleted topic to be unassigned", DEADLINE, || async {
        (assigned(&d, "team-a.orders") == 0).then_some(())
    })
    .await;
    assert_eq!(assigned(&d, "team-a.late"), 3);
    assert_eq!(api_count(&d, "team-a.orders").await, 10);
    let kept: i64 = sqlx::query_scalar(
        "SELECT SUM(next_offset) FROM partition_positions WHERE topic = 'team-a.orders'",
    )
    .fetch_one(&d.d().state.pool)
    .await
    .unwrap();
    assert_eq!(kept, 10);

    // Back again: read on from the stored positions, nothing twice, no log reset.
    kafka
        .cluster
        .set_topic_error("team-a.orders", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    kafka
        .send_many("team-a.orders", &(40..45).map(one).collect::<Vec<_>>())
        .await;
    d.wait_indexed(45).await;
    assert_eq!(api_count(&d, "team-a.orders").await, 15);
    assert_eq!(assigned(&d, "team-a.orders"), 2);
    let resets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM index_events")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(resets, 0);
    assert_eq!(d.indexed().await, 45);
    d.stop().await;
}
