//! A broker that goes away: pages keep serving, readiness and the header say so, and
//! indexing resumes by itself.

use rdkafka::types::RDKafkaRespErr;

use crate::harness::in_process::{Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

const TOPIC: &str = "outage.dlq";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_reported_and_indexing_resumes() {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    kafka
        .send(TOPIC, Some(0), Some(b"before"), Some(b"1"), &[])
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(1).await;
    wait_for("ready", DEADLINE, || async {
        (d.get("/readyz").await.0 == 200).then_some(())
    })
    .await;

    kafka.cluster.all_brokers_down().unwrap();
    wait_for("readyz to fail", DEADLINE, || async {
        (d.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let (_, v) = d.get_json("/readyz").await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("disconnected from Kafka since"),
        "{v}"
    );
    let (status, html) = d.get_html("/messages").await;
    assert_eq!(status, 200, "pages keep serving the index");
    assert!(html.contains("disconnected since"), "the header says so");
    assert!(html.contains("before"));
    let (_, v) = d.get_json("/api/cluster").await;
    assert_eq!(v["connected"], false);

    kafka.cluster.all_brokers_up().unwrap();
    kafka
        .send(TOPIC, Some(0), Some(b"after"), Some(b"2"), &[])
        .await;
    d.wait_indexed(2).await;
    wait_for("readyz to pass again", DEADLINE, || async {
        (d.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (_, html) = d.get_html("/").await;
    assert!(!html.contains("disconnected since"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_from_the_broker_do_not_lose_records() {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    let d = TestDashboard::start(&kafka).await;
    for i in 0..20 {
        kafka
            .send(
                TOPIC,
                Some(0),
                Some(format!("a{i}").as_bytes()),
                Some(b"x"),
                &[],
            )
            .await;
    }
    d.wait_indexed(20).await;
    // Fetch (api key 1) fails several times with retriable and fatal-looking errors.
    kafka.cluster.push_request_errors(
        1,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    for i in 0..20 {
        kafka
            .send(
                TOPIC,
                Some(0),
                Some(format!("b{i}").as_bytes()),
                Some(b"x"),
                &[],
            )
            .await;
    }
    d.wait_indexed(40).await;
    let distinct: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT \"offset\") FROM records")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 40);
    d.stop().await;
}
