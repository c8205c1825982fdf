//! Expired records and broker-side reclaim, in process against the mock cluster: records
//! aged out of a partition's log become `expired` and are no longer replayed; the reclaimable
//! prefix of each partition, its API and page; and the mock cluster's answer to DeleteRecords.

use std::time::Duration;

use axum::http::StatusCode;
use rand::RngCore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::harness::in_process::{Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

/// The broker's (low, high) watermarks of a partition, asked by a client of the test's own.
fn broker_watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    client
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap()
}

fn origin(topic: &str) -> Vec<(&'static str, Option<&[u8]>)> {
    vec![
        ("dlq-origin-topic", Some(topic.as_bytes())),
        ("dlq-error-class", Some(b"BrokenError")),
    ]
}

/// Offsets of the records a listing returns.
fn offsets(page: &Value) -> Vec<i64> {
    let mut o: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect();
    o.sort();
    o
}

/// The reclaim preview of a topic, once the indexer has looked at every partition's log start.
async fn reclaim_view(d: &TestDashboard, topic: &str) -> Value {
    wait_for("every partition's log start", DEADLINE, || async {
        let (status, v) = d.get_json(&format!("/api/topics/{topic}/reclaim")).await;
        (status == StatusCode::OK
            && v.as_array()
                .unwrap()
                .iter()
                .all(|p| !p["low_watermark"].is_null()))
        .then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_aged_out_of_the_mock_clusters_log_become_expired_and_are_not_replayed() {
    // The mock cluster keeps at most 5 MiB (or 100,000 message sets) per partition and drops
    // the oldest message sets beyond that (rdkafka_mock.c, rd_kafka_mock_msgset_new): 16
    // records of 400 KiB, each its own set, leave 12.
    let kafka = Kafka::start(&[("aged.dlq", 1), ("aged", 1), ("aged.retry.1", 1)]);
    let mut payload = vec![0u8; 400 * 1024];
    let mut send = |n: usize| {
        let mut batch = Vec::new();
        for _ in 0..n {
            rand::rng().fill_bytes(&mut payload);
            batch.push(payload.clone());
        }
        batch
    };
    for value in send(6) {
        kafka
            .send(
                "aged.dlq",
                Some(0),
                Some(b"k"),
                Some(&value),
                &origin("aged"),
            )
            .await;
    }
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(6).await;
    for value in send(10) {
        kafka
            .send(
                "aged.dlq",
                Some(0),
                Some(b"k"),
                Some(&value),
                &origin("aged"),
            )
            .await;
    }
    d.wait_indexed(16).await;
    let (low, high) = broker_watermarks(&kafka.bootstrap(), "aged.dlq", 0);
    assert_eq!(high, 16);
    assert!(
        low > 0 && low < 16,
        "the mock cluster dropped the oldest records: {low}"
    );

    let expired = wait_for("the aged-out records to be expired", DEADLINE, || async {
        let (_, page) = d
            .get_json("/api/messages?topic=aged.dlq&status=expired&limit=100")
            .await;
        let o = offsets(&page);
        (o.len() as i64 == low).then_some(o)
    })
    .await;
    assert_eq!(
        expired,
        (0..low).collect::<Vec<_>>(),
        "exactly those below the log start"
    );

    // Visible by default, counted apart, and the log start is shown.
    let (_, all) = d.get_json("/api/messages?topic=aged.dlq&limit=100").await;
    assert_eq!(
        offsets(&all).len(),
        16,
        "expired records stay listed by default"
    );
    let (_, topics) = d.get_json("/api/topics").await;
    assert_eq!(
        topics[0]["by_status"],
        json!({"expired": low, "new": 16 - low})
    );
    let (_, view) = d.get_json("/api/topics/aged.dlq/reclaim").await;
    assert_eq!(view[0]["low_watermark"], low, "{view}");
    let (_, one) = d.get_json("/api/messages/aged.dlq/0/0").await;
    assert_eq!(one["status"], "expired");

    // Not offered for replay: refused in a preview with a sentence, and the page says so.
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"topic": "aged.dlq"}, "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 16 - low);
    assert_eq!(preview["refused_count"], low);
    assert_eq!(
        preview["refused"][0]["reason"],
        "The broker no longer has this message (its log start moved past offset 0); it can be seen here but not replayed."
    );
    let (_, html) = d.get_html("/messages/aged.dlq/0/0").await;
    assert!(html.contains("badge st-expired"), "{html}");
    assert!(html.contains("The broker no longer has this message"));
    assert!(
        !html.contains("Replay…"),
        "no replay button for an expired message"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolved_prefix_is_shown_and_the_mock_clusters_refusal_changes_nothing() {
    let kafka = Kafka::start(&[("orders.dlq", 2), ("orders", 1), ("orders.retry.1", 1)]);
    for i in 0..5 {
        let v = format!("{{\"n\":{i}}}");
        kafka
            .send(
                "orders.dlq",
                Some(0),
                Some(b"k"),
                Some(v.as_bytes()),
                &origin("orders"),
            )
            .await;
    }
    for _ in 0..3 {
        kafka
            .send(
                "orders.dlq",
                Some(1),
                Some(b"k"),
                Some(b"{}"),
                &origin("orders"),
            )
            .await;
    }
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(8).await;
    let view = reclaim_view(&d, "orders.dlq").await;
    assert_eq!(
        view[0]["reclaimable_to"],
        Value::Null,
        "nothing resolved yet"
    );

    // Replay the first three records of partition 0: the prefix 0..3 is resolved.
    let messages: Vec<Value> = (0..3)
        .map(|o| json!({"topic": "orders.dlq", "partition": 0, "offset": o}))
        .collect();
    let (status, job) = d
        .post_json("/api/replays", json!({"messages": messages, "rate": 0}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    wait_for("the replay to complete", DEADLINE, || async {
        let (_, j) = d.get_json(&format!("/api/replays/{id}")).await;
        (j["status"] == "completed").then_some(())
    })
    .await;
    let (_, view) = d.get_json("/api/topics/orders.dlq/reclaim").await;
    let bytes = "{\"n\":0}".len() * 3;
    assert_eq!(
        view,
        json!([
            {"partition": 0, "generation": 0, "indexed": 5, "low_watermark": 0, "reclaimed_to": null,
             "reclaimable_to": 3, "records": 3, "bytes": bytes},
            {"partition": 1, "generation": 0, "indexed": 3, "low_watermark": 0, "reclaimed_to": null,
             "reclaimable_to": null, "records": 0, "bytes": 0},
        ])
    );
    let (_, _, metrics) = d.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(r#"dlq_reclaimable_records{topic="orders.dlq",partition="0"} 3"#),
        "{metrics}"
    );

    // Bad requests get a sentence.
    let (status, _) = d.post("/api/topics/orders.dlq/reclaim", None, "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, e) = d
        .post_json("/api/topics/orders.dlq/reclaim", json!({"partitions": [7]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    let (status, e) = d
        .post_json(
            "/api/topics/orders.dlq/reclaim",
            json!({"everything": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, e) = d
        .post_json("/api/topics/orders.dlq/reclaim", json!({"partitions": [1]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]
        .as_str()
        .unwrap()
        .starts_with("Nothing of orders.dlq is reclaimable"));
    let (status, _) = d.get_json("/api/topics/nothing.dlq/reclaim").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The mock cluster has no DeleteRecords: a 409 with the sentence, and nothing changed.
    let (status, refused) = d
        .post_json("/api/topics/orders.dlq/reclaim", json!({}))
        .await;
    eprintln!("the mock cluster's answer to DeleteRecords: {status} {refused}");
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(
        refused["error"],
        "The broker does not support DeleteRecords, so nothing of orders.dlq was deleted on it: its records stay there until the topic's retention removes them, and the index is unchanged."
    );
    let (_, after) = d.get_json("/api/topics/orders.dlq/reclaim").await;
    assert_eq!(after, view, "the in-flight mark is cleared");
    assert_eq!(
        broker_watermarks(&kafka.bootstrap(), "orders.dlq", 0),
        (0, 5)
    );
    let (_, audit) = d.get_json("/api/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[..2], ["reclaim.finish", "reclaim"], "{audit}");

    // The page: linked from the overview, a preview per partition, then the refusal as a
    // banner on the page.
    let (_, overview) = d.get_html("/").await;
    assert!(overview.contains(r#"href="/topics/orders.dlq""#));
    let (status, page) = d.get_html("/topics/orders.dlq").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Reclaim…"), "{page}");
    let csrf = dlq_dashboard::web::csrf::token();
    let (status, _, preview) = d
        .post_form(
            "/topics/orders.dlq/reclaim/preview",
            &[("csrf", csrf), ("partition", "0")],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(
        preview.contains("Nothing has been deleted yet"),
        "{preview}"
    );
    assert!(
        preview.contains("Delete 3 messages on the broker"),
        "{preview}"
    );
    let (status, _, done) = d
        .post_form(
            "/topics/orders.dlq/reclaim",
            &[("csrf", csrf), ("partition", "0")],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(
        done.contains("The broker does not support DeleteRecords"),
        "{done}"
    );
    let (status, _, _) = d
        .post_form("/topics/orders.dlq/reclaim", &[("partition", "0")], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no reclaim");

    // After the refusal the mark is gone: the records can be previewed for replay again.
    let (status, again) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "dry_run": true}),
        )
        .await;
    assert_eq!(
        (status, &again["count"]),
        (StatusCode::OK, &json!(1)),
        "{again}"
    );
    // An unconfirmed preview may still send the record: it is not resolved until the
    // preview is confirmed and sent, or expires.
    let (_, blocked) = d.get_json("/api/topics/orders.dlq/reclaim").await;
    assert_eq!(blocked[0]["reclaimable_to"], Value::Null, "{blocked}");
    d.stop().await;
}
