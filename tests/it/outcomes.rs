//! Replays followed past the broker, in process: a consumer service in the test (a real
//! consumer group on the mock cluster) commits as it processes the retry topic, or
//! dead-letters the replayed records again with their headers copied, and the job, the
//! results, the message, the groups and the metrics say what became of each record.

use std::time::Duration;

use axum::http::StatusCode;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::harness::in_process::{escaped, Kafka, Outgoing, TestDashboard, DEADLINE};
use crate::poll::wait_for;

fn failed(i: usize, group: Option<&str>) -> Outgoing {
    let mut headers = vec![
        ("dlq-origin-topic".to_string(), b"orders".to_vec()),
        ("dlq-error-class".to_string(), b"PaymentDeclined".to_vec()),
        ("dlq-error-message".to_string(), b"card declined".to_vec()),
    ];
    if let Some(g) = group {
        headers.push(("dlq-consumer-group".to_string(), g.as_bytes().to_vec()));
    }
    (
        None,
        format!("customer-{}", i % 5).into_bytes(),
        format!("{{\"order\":{i}}}").into_bytes(),
        headers,
    )
}

async fn replay_all(d: &TestDashboard, filter: Value) -> Value {
    let (status, v) = d
        .post_json("/api/replays", json!({"filter": filter, "rate": 0}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &format!("replay job {id} to complete"),
        DEADLINE,
        || async {
            let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
            (job["status"] == "completed").then_some(job)
        },
    )
    .await
}

async fn job_where(
    d: &TestDashboard,
    id: &str,
    what: &str,
    test: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        test(&job).then_some(job)
    })
    .await
}

/// A consumer service's consumer group on `topic`: it processes `n` records, committing
/// each one's offset after processing it (at least once), then leaves the group. Returns
/// the replay ids it processed.
fn process(bootstrap: &str, group: &str, topic: &str, n: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut processed = Vec::new();
    let started = std::time::Instant::now();
    while processed.len() < n {
        assert!(
            started.elapsed() < DEADLINE,
            "the service processed {} of {n}",
            processed.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let replay_id = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "dlq-replay-id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a replayed record carries dlq-replay-id");
        processed.push(replay_id);
        consumer.commit_message(&m, CommitMode::Sync).unwrap();
    }
    consumer.unsubscribe();
    processed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_consumed_once_the_services_group_commits_past_every_record() {
    let kafka = Kafka::start(&[("orders.dlq", 2), ("orders.retry.1", 2), ("orders", 2)]);
    let records: Vec<Outgoing> = (0..20).map(|i| failed(i, Some("order-service"))).collect();
    kafka.send_many("orders.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(20).await;

    let job = replay_all(&d, json!({"topic": "orders.dlq"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["sent"], 20);
    // The group comes from the records' headers; it has not committed on the retry topic.
    let job = job_where(&d, &id, "the job to name the group it follows", |j| {
        j["consumer_groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    })
    .await;
    let tracking = &job["consumer_groups"][0];
    assert_eq!(tracking["target_topic"], "orders.retry.1");
    assert_eq!(tracking["groups"], json!(["order-service"]));
    assert_eq!(tracking["source"], "headers");
    assert_eq!(tracking["tracked"], true);
    assert_eq!(
        (
            job["consumed"].as_i64(),
            job["awaiting_consumption"].as_i64()
        ),
        (Some(0), Some(20))
    );

    // The service processes half, committing as it goes, and stops.
    let bootstrap = kafka.bootstrap();
    let first = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || process(&b, "order-service", "orders.retry.1", 10)
    })
    .await
    .unwrap();
    assert_eq!(first.len(), 10);
    let job = job_where(&d, &id, "10 consumed", |j| j["consumed"] == 10).await;
    assert_eq!(job["awaiting_consumption"], 10, "{job}");
    assert_eq!(job["failed_again"], 0);
    let (_, results) = d
        .get_json(&format!("/api/replays/{id}/results?limit=100"))
        .await;
    let results = results["results"].as_array().unwrap().clone();
    let consumed: Vec<&Value> = results
        .iter()
        .filter(|r| !r["consumed_at"].is_null())
        .collect();
    assert_eq!(consumed.len(), 10);
    let mut consumed_ids: Vec<String> = consumed
        .iter()
        .map(|r| r["replay_id"].as_str().unwrap().to_string())
        .collect();
    let mut processed = first.clone();
    consumed_ids.sort();
    processed.sort();
    assert_eq!(
        consumed_ids, processed,
        "exactly the processed records are consumed"
    );
    assert!(results.iter().all(|r| r["failed_again"].is_null()));
    let (_, page) = d.get_html(&format!("/replays/{id}")).await;
    assert!(
        page.contains(
            "followed through consumer group <strong class=\"mono\">order-service</strong>"
        ),
        "{page}"
    );
    assert!(page.contains("waiting to be consumed"));

    // The service comes back and processes the rest.
    let rest = tokio::task::spawn_blocking(move || {
        process(&bootstrap, "order-service", "orders.retry.1", 10)
    })
    .await
    .unwrap();
    assert!(
        rest.iter().all(|r| !first.contains(r)),
        "the rest, not the first half again"
    );
    let job = job_where(&d, &id, "all 20 consumed", |j| j["consumed"] == 20).await;
    assert_eq!(job["awaiting_consumption"], 0);
    let metrics = String::from_utf8(d.get("/metrics").await.2).unwrap();
    assert!(
        metrics.contains("dlq_replay_consumed_total 20"),
        "{metrics}"
    );
    let (_, groups) = d.get_json("/api/groups").await;
    assert_eq!(groups[0]["replayed"], 20, "{groups}");
    assert_eq!(groups[0]["consumed"], 20);
    assert_eq!(groups[0]["failed_again"], 0);
    let (_, m) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert!(!m["replays"][0]["consumed_at"].is_null(), "{m}");
}

/// The service that dead-letters every replayed record it reads again, copying its headers
/// and adding its own error, as Spring, Karafka and most hand-written services do. Returns
/// the records it dead-lettered, as read from the retry topic.
async fn dead_letter_again(
    kafka: &Kafka,
    from: &str,
    n: usize,
    skip: usize,
) -> Vec<crate::topic::Received> {
    let got = crate::harness::in_process::read_topic(&kafka.bootstrap(), from, skip + n).await;
    let again: Vec<crate::topic::Received> = got.into_iter().skip(skip).take(n).collect();
    let outgoing: Vec<Outgoing> = again
        .iter()
        .map(|r| {
            let mut headers: Vec<(String, Vec<u8>)> = r
                .headers
                .iter()
                .filter(|(name, _)| name != "dlq-error-class")
                .map(|(name, v)| (name.clone(), v.clone().unwrap_or_default()))
                .collect();
            headers.push(("dlq-error-class".into(), b"StillDeclined".to_vec()));
            (
                Some(0),
                r.key.clone().unwrap_or_default(),
                r.value.clone().unwrap_or_default(),
                headers,
            )
        })
        .collect();
    kafka.send_many("orders.dlq", &outgoing).await;
    again
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_dead_lettered_again_are_linked_to_their_replay_and_a_second_failure_is_a_loop() {
    let kafka = Kafka::start(&[("orders.dlq", 1), ("orders.retry.1", 1), ("orders", 1)]);
    let records: Vec<Outgoing> = (0..3)
        .map(|i| failed(i, Some("order-service")))
        .map(|(_, k, v, h)| (Some(0), k, v, h))
        .collect();
    kafka.send_many("orders.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(3).await;

    let job = replay_all(&d, json!({"topic": "orders.dlq"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    dead_letter_again(&kafka, "orders.retry.1", 3, 0).await;
    d.wait_indexed(6).await;

    let job = job_where(&d, &id, "3 failed again", |j| j["failed_again"] == 3).await;
    assert_eq!(job["sent"], 3, "{job}");
    let (_, results) = d.get_json(&format!("/api/replays/{id}/results")).await;
    let mut back: Vec<(i64, i64)> = Vec::new();
    for r in results["results"].as_array().unwrap() {
        let f = &r["failed_again"];
        assert_eq!(f["topic"], "orders.dlq", "{r}");
        assert_eq!(f["partition"], 0);
        assert_eq!(f["generation"], 0);
        assert_eq!(f["error_class"], "StillDeclined");
        back.push((r["offset"].as_i64().unwrap(), f["offset"].as_i64().unwrap()));
    }
    back.sort();
    assert_eq!(
        back,
        vec![(0, 3), (1, 4), (2, 5)],
        "each original linked to the record it came back as"
    );

    // The original says it failed again after the replay, and links to the new record.
    let (_, m) = d.get_json("/api/messages/orders.dlq/0/1").await;
    assert_eq!(m["replays"][0]["failed_again"]["offset"], 4, "{m}");
    assert_eq!(m["failed_again_after_replays"], 1);
    assert_eq!(m["replay_loop"], false);
    let (_, page) = d.get_html("/messages/orders.dlq/0/1").await;
    assert!(page.contains("failed again after replay"), "{page}");
    assert!(page.contains("href=\"/messages/orders.dlq/0/4\""), "{page}");
    let (_, returned) = d.get_json("/api/messages/orders.dlq/0/4").await;
    assert_eq!(returned["failed_again_after_replays"], 1, "{returned}");
    let declined = d.group_with_class("PaymentDeclined").await;
    assert_eq!(
        (
            declined["replayed"].as_i64(),
            declined["failed_again"].as_i64()
        ),
        (Some(3), Some(3)),
        "{declined}"
    );

    // Replaying what came back: the preview warns, and the replay count follows the lineage.
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"topic": "orders.dlq", "error_class": "StillDeclined"}, "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 3);
    assert_eq!(preview["failed_again_before"], 3, "{preview}");
    assert_eq!(preview["looping"], 0);
    let preview_id = preview["preview_id"].as_str().unwrap();
    let (_, page) = d.get_html(&format!("/replays/{preview_id}/preview")).await;
    assert!(
        page.contains("3 of these failed again after an earlier replay."),
        "{page}"
    );
    let (status, second) = d
        .post_json("/api/replays", json!({"preview_id": preview_id}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let second_id = second["id"].as_str().unwrap().to_string();
    job_where(&d, &second_id, "the second replay to complete", |j| {
        j["status"] == "completed"
    })
    .await;
    let again = dead_letter_again(&kafka, "orders.retry.1", 3, 3).await;
    for r in &again {
        assert_eq!(
            r.header("dlq-replay-count").as_deref(),
            Some("2"),
            "the second replay of the lineage"
        );
    }
    d.wait_indexed(9).await;
    job_where(&d, &second_id, "the second replay's 3 failed again", |j| {
        j["failed_again"] == 3
    })
    .await;

    // Failed again after two replays: a loop, flagged in lists, groups and previews.
    let (_, listed) = d
        .get_json("/api/messages?topic=orders.dlq&error_class=StillDeclined&limit=100")
        .await;
    let looping: Vec<i64> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["replay_loop"] == true)
        .map(|m| m["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        looping.len(),
        6,
        "the 3 replayed twice in their lineage and the 3 that came back: {listed}"
    );
    let (_, page) = d.get_html("/messages?topic=orders.dlq").await;
    assert!(
        page.contains("<span class=\"badge loop\""),
        "the list flags loops"
    );
    let still = d.group_with_class("StillDeclined").await;
    assert_eq!(still["looping"], 6, "{still}");
    let (_, page) = d.get_html("/groups").await;
    assert!(page.contains("in a loop"), "{page}");
    assert!(page.contains("Replay group…"));
    let (_, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"topic": "orders.dlq", "error_class": "StillDeclined"}, "dry_run": true}),
        )
        .await;
    assert_eq!(preview["looping"], 6, "{preview}");
    let metrics = String::from_utf8(d.get("/metrics").await.2).unwrap();
    assert!(
        metrics.contains("dlq_replay_failed_again_total 6"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_consumer_group_cannot_be_found_completes_and_says_consumption_is_not_tracked(
) {
    let kafka = Kafka::start(&[("orders.dlq", 1), ("orders.retry.1", 1), ("orders", 1)]);
    let records: Vec<Outgoing> = (0..4).map(|i| failed(i, None)).collect();
    kafka.send_many("orders.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(4).await;

    let job = replay_all(&d, json!({"topic": "orders.dlq"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let job = job_where(&d, &id, "the job to say how consumption is followed", |j| {
        j["consumer_groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    })
    .await;
    assert_eq!(job["status"], "completed");
    let tracking = &job["consumer_groups"][0];
    assert_eq!(tracking["tracked"], false, "{job}");
    assert_eq!(tracking["groups"], json!([]));
    let note = tracking["note"].as_str().unwrap();
    assert!(
        note.starts_with("Consumption not tracked: no consumer group known for orders.dlq"),
        "{note}"
    );
    assert!(
        note.contains("set --replay-consumer-group orders.dlq=GROUP"),
        "{note}"
    );
    assert_eq!(job["awaiting_consumption"], 4);
    let (_, page) = d.get_html(&format!("/replays/{id}")).await;
    assert!(page.contains(&escaped(note)), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_back_without_its_replay_id_is_matched_by_key_and_payload_as_probable_only() {
    let kafka = Kafka::start(&[("orders.dlq", 1), ("orders.retry.1", 1), ("orders", 1)]);
    let records: Vec<Outgoing> = (0..2)
        .map(|i| failed(i, Some("order-service")))
        .map(|(_, k, v, h)| (Some(0), k, v, h))
        .collect();
    kafka.send_many("orders.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(2).await;
    let job = replay_all(&d, json!({"topic": "orders.dlq"})).await;
    let id = job["id"].as_str().unwrap().to_string();

    // A framework that drops headers: the same key and value come back with new headers
    // only; and an unrelated failure with the same key but another payload.
    let replayed =
        crate::harness::in_process::read_topic(&kafka.bootstrap(), "orders.retry.1", 2).await;
    let mut back: Vec<Outgoing> = replayed
        .iter()
        .map(|r| {
            (
                Some(0),
                r.key.clone().unwrap(),
                r.value.clone().unwrap(),
                vec![("dlq-error-class".to_string(), b"Dropped".to_vec())],
            )
        })
        .collect();
    back.push((
        Some(0),
        replayed[0].key.clone().unwrap(),
        b"{\"order\":999}".to_vec(),
        vec![("dlq-error-class".to_string(), b"Dropped".to_vec())],
    ));
    kafka.send_many("orders.dlq", &back).await;
    d.wait_indexed(5).await;

    let job = job_where(&d, &id, "2 probably failed again", |j| {
        j["failed_again_probably"] == 2
    })
    .await;
    assert_eq!(job["failed_again"], 0, "never counted as certain: {job}");
    let (_, results) = d.get_json(&format!("/api/replays/{id}/results")).await;
    let mut offsets: Vec<i64> = Vec::new();
    for r in results["results"].as_array().unwrap() {
        assert_eq!(r["failed_again"]["probable"], true, "{r}");
        offsets.push(r["failed_again"]["offset"].as_i64().unwrap());
    }
    offsets.sort();
    assert_eq!(
        offsets,
        vec![2, 3],
        "the same key and payload, not the other payload"
    );
    let (_, original) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(
        original["failed_again_after_replays"], 0,
        "no loop is counted from a guess"
    );
    let (_, page) = d.get_html("/messages/orders.dlq/0/0").await;
    assert!(
        page.contains("probably failed again after replay"),
        "{page}"
    );
    let (_, page) = d.get_html(&format!("/replays/{id}")).await;
    assert!(page.contains("+ 2 probably"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_group_flag_names_the_group_when_the_headers_name_none() {
    let kafka = Kafka::start(&[("orders.dlq", 1), ("orders.retry.1", 1), ("orders", 1)]);
    let records: Vec<Outgoing> = (0..6).map(|i| failed(i, None)).collect();
    kafka.send_many("orders.dlq", &records).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let args = dlq_dashboard::config::ServeArgs {
        replay_consumer_groups: vec!["orders.dlq=retry-worker".into()],
        ..crate::harness::in_process::serve_args(&kafka.bootstrap(), &dir.path().join("index.db"))
    };
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(6).await;
    let job = replay_all(&d, json!({"topic": "orders.dlq"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let bootstrap = kafka.bootstrap();
    tokio::task::spawn_blocking(move || process(&bootstrap, "retry-worker", "orders.retry.1", 6))
        .await
        .unwrap();
    let job = job_where(&d, &id, "all 6 consumed", |j| j["consumed"] == 6).await;
    let tracking = &job["consumer_groups"][0];
    assert_eq!(tracking["groups"], json!(["retry-worker"]), "{job}");
    assert_eq!(tracking["source"], "flag");
    assert!(tracking["note"].is_null());
}
