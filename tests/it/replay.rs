//! Replay jobs end to end in process: the API, the mock cluster as the target, a separate
//! consumer reading what arrived, and the SQLite file holding the job.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::http::StatusCode;
use rdkafka::types::RDKafkaRespErr;
use serde_json::{json, Value};

use dlq_dashboard::config::ServeArgs;
use dlq_dashboard::kafka::Compression;

use crate::harness::in_process::{read_topic, serve_args, Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

fn failure(class: &str, origin: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("dlq-origin-topic".into(), origin.as_bytes().to_vec()),
        ("dlq-error-class".into(), class.as_bytes().to_vec()),
        ("dlq-error-message".into(), b"it broke".to_vec()),
    ]
}

/// Wait until a job reaches a final status; returns its JSON.
async fn finished(d: &TestDashboard, id: &str) -> Value {
    wait_for(&format!("replay job {id} to finish"), DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        ["completed", "completed_with_failures", "cancelled"]
            .contains(&job["status"].as_str().unwrap_or(""))
            .then_some(job)
    })
    .await
}

/// Wait until no item of the job is between claim and delivery report.
async fn settled(d: &TestDashboard, id: &str) -> Value {
    wait_for(&format!("replay job {id} to settle"), DEADLINE, || async {
        let (_, r) = d
            .get_json(&format!("/api/replays/{id}/results?limit=1"))
            .await;
        let job = d.get_json(&format!("/api/replays/{id}")).await.1;
        (r["counts"]["sending"].is_null() && job["status"] != "running").then_some(job)
    })
    .await
}

async fn start(d: &TestDashboard, body: Value) -> String {
    let (status, v) = d.post_json("/api/replays", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_reaches_the_first_retry_topic_with_its_headers() {
    let kafka = Kafka::start(&[("orders", 3), ("orders.retry.1", 3), ("orders.dlq", 1)]);
    let headers: Vec<(&str, Option<&[u8]>)> = vec![
        ("dlq-origin-topic", Some(b"orders")),
        ("trace-id", Some(b"abc-123")),
        ("binary", Some(&[0, 159, 146, 150])),
        ("dlq-replay-id", Some(b"from-an-earlier-replay")),
    ];
    let value = br#"{"order":42,"note":"<b>"}"#;
    kafka
        .send("orders.dlq", Some(0), Some(b"k-42"), Some(value), &headers)
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(1).await;

    let id = start(
        &d,
        json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "rate": 0}),
    )
    .await;
    let job = finished(&d, &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["total"].as_i64(), job["sent"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(job["targets"], json!({"orders.retry.1": 1}));

    let got = read_topic(&kafka.bootstrap(), "orders.retry.1", 1).await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.key.as_deref(), Some(&b"k-42"[..]));
    assert_eq!(r.value.as_deref(), Some(&value[..]));
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "dlq-origin-topic",
            "trace-id",
            "binary",
            "dlq-replay-id",
            "dlq-replay-action",
            "dlq-replay-count",
            "dlq-replayed-at",
            "dlq-source"
        ],
        "original headers in order (an earlier replay id replaced), then the replay headers"
    );
    assert_eq!(r.headers[2].1.as_deref(), Some(&[0u8, 159, 146, 150][..]));
    assert_eq!(r.header("dlq-replay-action").as_deref(), Some(id.as_str()));
    assert_eq!(r.header("dlq-replay-count").as_deref(), Some("1"));
    assert_eq!(r.header("dlq-source").as_deref(), Some("orders.dlq/0/0"));
    let first_replay_id = r.header("dlq-replay-id").unwrap();
    assert!(first_replay_id.starts_with(&id), "{first_replay_id}");
    assert!(chrono::DateTime::parse_from_rfc3339(&r.header("dlq-replayed-at").unwrap()).is_ok());
    // Never the live topic.
    assert!(read_topic(&kafka.bootstrap(), "orders", 0).await.is_empty());

    // The message knows it was replayed, where to, and the results say the same.
    let (_, m) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(m["status"], "replayed");
    assert_eq!(m["replay_count"], 1);
    let (_, results) = d.get_json(&format!("/api/replays/{id}/results")).await;
    let result = &results["results"][0];
    assert_eq!(result["state"], "sent");
    assert_eq!(result["target_topic"], "orders.retry.1");
    assert_eq!(result["target_partition"], r.partition);
    assert_eq!(result["target_offset"], r.offset);
    assert_eq!(result["replay_id"], first_replay_id.as_str());

    // Replayed again: the count goes up and the replay id is new.
    let again = start(
        &d,
        json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}]}),
    )
    .await;
    finished(&d, &again).await;
    let got = read_topic(&kafka.bootstrap(), "orders.retry.1", 2).await;
    assert_eq!(got.len(), 2);
    let second = got
        .iter()
        .find(|g| g.header("dlq-replay-action").as_deref() == Some(&again))
        .unwrap();
    assert_eq!(second.header("dlq-replay-count").as_deref(), Some("2"));
    assert_ne!(second.header("dlq-replay-id"), Some(first_replay_id));
    assert_eq!(
        second.partition, r.partition,
        "the same key goes to the same partition"
    );

    // Each replay is in the audit log with who, what and how it ended.
    let (_, audit) = d.get_json("/api/audit").await;
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["job_id"].as_str().unwrap()))
        .collect();
    for expected in [
        ("replay.start", id.as_str()),
        ("replay.finish", id.as_str()),
        ("replay.start", again.as_str()),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    assert_eq!(audit["entries"][0]["actor"], "dashboard");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_naming_the_live_topic_is_refused_and_nothing_is_sent() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.dlq", 1)]);
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"k"),
            Some(b"{}"),
            &[("dlq-origin-topic", Some(b"orders"))],
        )
        .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("i.db"));
    args.replay_template = "{origin_topic}".into();
    let d = TestDashboard::start_with(args, dir.clone()).await;
    d.wait_indexed(1).await;
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"topic": "orders.dlq"}, "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 0);
    assert_eq!(preview["refused"][0]["offset"], 0);
    let reason = preview["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("orders is the live topic"), "{reason}");
    let (status, v) = d
        .post_json("/api/replays", json!({"filter": {"topic": "orders.dlq"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
    assert!(read_topic(&kafka.bootstrap(), "orders", 0).await.is_empty());
    let (_, m) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(m["status"], "new");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_replay_by_filter_sends_exactly_the_previewed_set_once_at_the_rate() {
    const MATCHING: usize = 10_000;
    const RATE: i64 = 2_000;
    let kafka = Kafka::start(&[("pay", 2), ("pay.retry.1", 2), ("pay.dlq", 2)]);
    let records: Vec<_> = (0..MATCHING + 500)
        .map(|i| {
            let class = if i % 21 == 20 {
                "Validation"
            } else {
                "Timeout"
            };
            (
                None,
                format!("key-{i}").into_bytes(),
                format!(r#"{{"payment":{i}}}"#).into_bytes(),
                failure(class, "pay"),
            )
        })
        .collect();
    let coords = kafka.send_many("pay.dlq", &records).await;
    let timeouts = records.iter().filter(|r| r.3[1].1 == b"Timeout").count();
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(records.len() as i64).await;

    let filter = json!({"topic": "pay.dlq", "error_class": "Timeout"});
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": filter, "dry_run": true, "rate": RATE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], timeouts);
    assert_eq!(preview["targets"], json!({"pay.retry.1": timeouts}));
    assert_eq!(preview["refused"], json!([]));
    assert_eq!(preview["estimated_seconds"], timeouts as f64 / RATE as f64);
    let previewed: BTreeSet<String> = records
        .iter()
        .zip(&coords)
        .filter(|(r, _)| r.3[1].1 == b"Timeout")
        .map(|(_, (p, o))| format!("pay.dlq/{p}/{o}"))
        .collect();

    // More matching failures arrive after the preview: they are not part of it.
    let late: Vec<_> = (0..100)
        .map(|i| {
            (
                None,
                format!("late-{i}").into_bytes(),
                b"{}".to_vec(),
                failure("Timeout", "pay"),
            )
        })
        .collect();
    kafka.send_many("pay.dlq", &late).await;
    d.wait_indexed((records.len() + late.len()) as i64).await;

    let id = start(&d, json!({"preview_id": preview["preview_id"]})).await;
    let job = finished(&d, &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["sent"], timeouts);
    assert_eq!(job["rate"], RATE);

    let got = read_topic(&kafka.bootstrap(), "pay.retry.1", timeouts).await;
    assert_eq!(got.len(), timeouts, "each previewed message arrives once");
    let sources: BTreeSet<String> = got
        .iter()
        .map(|g| g.header("dlq-source").unwrap())
        .collect();
    assert_eq!(sources, previewed, "exactly the previewed set");
    let ids: HashSet<String> = got
        .iter()
        .map(|g| g.header("dlq-replay-id").unwrap())
        .collect();
    assert_eq!(ids.len(), timeouts, "replay ids are unique");
    let (_, results) = d
        .get_json(&format!("/api/replays/{id}/results?limit=5"))
        .await;
    assert_eq!(results["counts"], json!({"sent": timeouts}));

    // The job keeps the rate it was given (`job["rate"]` above). How the pacer spaces the
    // sends at that rate is not measured here on the wall clock: on a shared 2-core CI
    // machine a loaded core stretches or bunches the sends and bounds on elapsed time were
    // flaky. The pacer's own unit test in src/replay/runner.rs (added with the src/ side of
    // issue 11) checks the spacing on tokio's paused clock instead.
    let (_, _, metrics) = d.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("dlq_dashboard_replay_jobs{status=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "dlq_dashboard_replayed_messages_total{{outcome=\"sent\"}} {timeouts}"
    )));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pauses_resumes_and_cancels_and_what_was_sent_stays_sent() {
    const TOTAL: usize = 3_000;
    let kafka = Kafka::start(&[("ship.retry.1", 1), ("ship.dlq", 1)]);
    let records: Vec<_> = (0..TOTAL)
        .map(|i| {
            (
                None,
                format!("k{i}").into_bytes(),
                b"{}".to_vec(),
                failure("Boom", "ship"),
            )
        })
        .collect();
    kafka.send_many("ship.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(TOTAL as i64).await;
    let id = start(&d, json!({"filter": {"topic": "ship.dlq"}, "rate": 300})).await;
    let sent_at_least = |n: i64| {
        let d = &d;
        let id = id.clone();
        async move {
            wait_for(&format!("{n} sent"), DEADLINE, || async {
                let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
                (job["sent"].as_i64().unwrap() >= n).then_some(job)
            })
            .await
        }
    };
    sent_at_least(50).await;

    let (status, job) = d
        .post_json(&format!("/api/replays/{id}/pause"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "paused");
    let paused = settled(&d, &id).await;
    let sent_when_paused = paused["sent"].as_i64().unwrap();
    assert!(sent_when_paused < TOTAL as i64);
    let (_, topics) = d.get_json("/api/topics").await;
    let ship = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "ship.dlq")
        .unwrap();
    assert_eq!(
        (ship["by_status"]["new"].as_i64(), ship["by_status"]["replayed"].as_i64()),
        (Some(TOTAL as i64 - sent_when_paused), Some(sent_when_paused)),
        "a paused job holds nothing in flight: every message it has not sent keeps its status: {ship}"
    );
    let (_, replaying) = d.get_json("/api/messages?status=replaying").await;
    assert_eq!(replaying["messages"], json!([]));

    let (status, job) = d
        .post_json(&format!("/api/replays/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    sent_at_least(sent_when_paused + 50).await;

    let (status, job) = d
        .post_json(&format!("/api/replays/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "cancelled");
    assert_eq!(
        job["remaining"], 0,
        "the answer to cancel carries settled counts: {job}"
    );
    let job = settled(&d, &id).await;
    let (sent, cancelled) = (
        job["sent"].as_i64().unwrap(),
        job["cancelled"].as_i64().unwrap(),
    );
    assert!(sent > sent_when_paused && cancelled > 0, "{job}");
    assert_eq!(
        sent + cancelled + job["failed"].as_i64().unwrap(),
        TOTAL as i64,
        "{job}"
    );
    assert_eq!(job["remaining"], 0);

    let got = read_topic(&kafka.bootstrap(), "ship.retry.1", sent as usize).await;
    assert_eq!(
        got.len() as i64,
        sent,
        "what was recorded as sent is exactly what arrived"
    );
    let (_, topics) = d.get_json("/api/topics").await;
    assert_eq!(topics[0]["by_status"]["replayed"], sent, "{topics}");
    assert_eq!(
        topics[0]["by_status"]["new"], cancelled,
        "cancelled messages are new again"
    );

    let (status, v) = d
        .post_json(&format!("/api/replays/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("is cancelled"), "{v}");
    let (_, audit) = d.get_json("/api/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "replay.cancel",
            "replay.resume",
            "replay.pause",
            "replay.start"
        ]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_deleted_mid_job_fails_its_messages_with_the_brokers_reason() {
    const TOTAL: usize = 400;
    let kafka = Kafka::start(&[("inv.retry.1", 1), ("inv.dlq", 1)]);
    let records: Vec<_> = (0..TOTAL)
        .map(|i| {
            (
                None,
                format!("k{i}").into_bytes(),
                b"{}".to_vec(),
                failure("Boom", "inv"),
            )
        })
        .collect();
    kafka.send_many("inv.dlq", &records).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("i.db"));
    args.kafka_config = vec![("message.timeout.ms".into(), "5000".into())];
    let d = TestDashboard::start_with(args, dir.clone()).await;
    d.wait_indexed(TOTAL as i64).await;
    let id = start(&d, json!({"filter": {"topic": "inv.dlq"}, "rate": 100})).await;
    wait_for("some sent", DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        (job["sent"].as_i64().unwrap() >= 20).then_some(())
    })
    .await;
    kafka
        .cluster
        .set_topic_error(
            "inv.retry.1",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .unwrap();
    // The mock cluster has no topic deletion: its metadata now says the topic is gone, and
    // its produce requests fail as a broker's would for a deleted topic.
    const PRODUCE: i16 = 0;
    kafka.cluster.push_request_errors(
        PRODUCE,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART; 10_000],
    );
    let job = finished(&d, &id).await;
    assert_eq!(job["status"], "completed_with_failures", "{job}");
    let (sent, failed) = (
        job["sent"].as_i64().unwrap(),
        job["failed"].as_i64().unwrap(),
    );
    assert!(failed > 0 && sent >= 20, "{job}");
    assert_eq!(sent + failed, TOTAL as i64);
    let (_, results) = d
        .get_json(&format!("/api/replays/{id}/results?limit=3"))
        .await;
    let first = &results["results"][0];
    assert_eq!(first["state"], "failed", "failures come first: {results}");
    let reason = first["reason"].as_str().unwrap();
    assert!(reason.to_lowercase().contains("unknown topic"), "{reason}");
    let (_, failed_list) = d
        .get_json("/api/messages?status=replay_failed&limit=1000")
        .await;
    assert_eq!(
        failed_list["messages"].as_array().unwrap().len() as i64,
        failed
    );

    // Failed messages can be replayed again once the topic is back.
    kafka
        .cluster
        .set_topic_error("inv.retry.1", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    kafka.cluster.clear_request_errors(PRODUCE);
    let again = start(
        &d,
        json!({"filter": {"status": "replay_failed"}, "rate": 0}),
    )
    .await;
    let job = finished(&d, &again).await;
    assert_eq!(
        (job["status"].as_str(), job["sent"].as_i64()),
        (Some("completed"), Some(failed)),
        "{job}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replay_requests_get_a_4xx_with_a_sentence() {
    let kafka = Kafka::start(&[("x.retry.1", 1), ("x.dlq", 1)]);
    kafka
        .send("x.dlq", Some(0), Some(b"k"), Some(b"{}"), &[])
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(1).await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"messages": [{"topic": "x.dlq", "partition": 0, "offset": 7}]}),
            StatusCode::NOT_FOUND,
            "not in the index (x.dlq/0/7)",
        ),
        (
            json!({"messages": []}),
            StatusCode::BAD_REQUEST,
            "selection is empty",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "selection is empty"),
        (
            json!({"filter": {"topic": "nope.dlq"}}),
            StatusCode::BAD_REQUEST,
            "no indexed message matches",
        ),
        (
            json!({"filter": {"topic": "x.dlq"}, "rate": -5}),
            StatusCode::BAD_REQUEST,
            "Rate '-5' is not a rate",
        ),
        (
            json!({"filter": {"topic": "x.dlq"}, "rate": "fast"}),
            StatusCode::BAD_REQUEST,
            "Rate 'fast'",
        ),
        (
            json!({"filter": {"colour": "red"}}),
            StatusCode::BAD_REQUEST,
            "Unknown parameter 'colour'",
        ),
        (
            json!({"filter": {"topic": "x.dlq"}, "messages": []}),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (
            json!({"filter": {"topic": "x.dlq"}, "speed": 1}),
            StatusCode::BAD_REQUEST,
            "Unknown field 'speed'",
        ),
        (
            json!({"preview_id": "rnothing"}),
            StatusCode::NOT_FOUND,
            "no replay job rnothing",
        ),
        (
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
    ];
    for (body, status, says) in cases {
        let (got, v) = d.post_json("/api/replays", body.clone()).await;
        assert_eq!(got, status, "{body} -> {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(says),
            "{body} -> {v}"
        );
    }
    let (status, v) = d
        .post("/api/replays", Some("text/plain"), r#"{"filter":{}}"#)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("application/json"));
    let (status, _) = d
        .post(
            "/api/replays",
            Some("application/x-www-form-urlencoded"),
            "filter=x",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a cross-site form cannot start a replay"
    );
    let (status, v) = d
        .post("/api/replays", Some("application/json"), "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = d.get_json("/api/replays/rnothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "There is no replay job rnothing.");
    for action in ["pause", "resume", "cancel"] {
        let (status, v) = d
            .post_json(&format!("/api/replays/rnothing/{action}"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {v}");
        let (status, _) = d
            .post(&format!("/api/replays/rnothing/{action}"), None, "")
            .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{action} without a content type"
        );
    }
    let (status, v) = d
        .post_json("/api/replays/rnothing/explode", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        v["error"].as_str().unwrap().contains("no action 'explode'"),
        "{v}"
    );
    let (status, _) = d.get_json("/api/replays/rnothing/results").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A preview is not a job until confirmed, and nothing was sent by any of this.
    let (_, jobs) = d.get_json("/api/replays").await;
    assert_eq!(jobs, json!([]));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_other_partitions_run_side_by_side_and_a_job_on_the_same_partition_waits() {
    let kafka = Kafka::start(&[
        ("a.retry.1", 1),
        ("a.dlq", 1),
        ("b.retry.1", 1),
        ("b.dlq", 1),
    ]);
    let records: Vec<_> = (0..700)
        .map(|i| {
            (
                None,
                format!("k{i}").into_bytes(),
                b"{}".to_vec(),
                failure("Boom", "x"),
            )
        })
        .collect();
    kafka.send_many("a.dlq", &records).await;
    kafka.send_many("b.dlq", &records[..100]).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(800).await;
    let first_600: Vec<Value> = (0..600)
        .map(|o| json!({"topic": "a.dlq", "partition": 0, "offset": o}))
        .collect();
    let first = start(&d, json!({"messages": first_600, "rate": 20})).await;
    let other = start(&d, json!({"filter": {"topic": "b.dlq"}, "rate": 20})).await;
    // A record the first job has yet to send cannot go into another job.
    let (_, preview) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "a.dlq", "partition": 0, "offset": 599}], "dry_run": true}),
        )
        .await;
    assert_eq!(preview["count"], 0, "{preview}");
    let reason = preview["refused"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("Replay job {first} has not sent this message yet")),
        "{reason}"
    );
    // A record outside the first job, on the same partition: its job waits.
    let same = start(
        &d,
        json!({"messages": [{"topic": "a.dlq", "partition": 0, "offset": 650}], "rate": 0}),
    )
    .await;
    let statuses = |ids: [String; 3]| {
        let d = &d;
        async move {
            let mut out = Vec::new();
            for id in ids {
                let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
                out.push(job["status"].as_str().unwrap().to_string());
            }
            out
        }
    };
    let seen = wait_for("both topics' jobs running at once", DEADLINE, || async {
        let s = statuses([first.clone(), other.clone(), same.clone()]).await;
        (s[0] == "running" && s[1] == "running").then_some(s)
    })
    .await;
    assert_eq!(
        seen[2], "queued",
        "a second job on a.dlq/0 waits for the first"
    );
    d.post_json(&format!("/api/replays/{first}/cancel"), json!({}))
        .await;
    let job = finished(&d, &same).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["sent"], 1);
    d.post_json(&format!("/api/replays/{other}/cancel"), json!({}))
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_replay_byte_for_byte() {
    let kafka = Kafka::start(&[("h.retry.1", 1), ("h.dlq", 1)]);
    let big = vec![b'x'; 10 * 1024 * 1024];
    let binary: Vec<u8> = (0..=255).collect();
    kafka.send("h.dlq", Some(0), None, None, &[]).await;
    kafka
        .send(
            "h.dlq",
            Some(0),
            Some(&binary),
            Some(&[0xff, 0xfe, 0x00, 0xc3, 0x28]),
            &[
                ("bad-utf8", Some(&[0xc3, 0x28])),
                ("null", None),
                ("", Some(b"")),
            ],
        )
        .await;
    kafka
        .send("h.dlq", Some(0), Some(b"big"), Some(&big), &[])
        .await;
    // gzip, not the default none: the mock cluster keeps about 5 MiB per partition and drops
    // the older batches when a larger one arrives, so an uncompressed 10 MiB record would
    // take the two before it with it (librdkafka's rdkafka_mock.c, the log append).
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let args = ServeArgs {
        replay_compression: Some(Compression::Gzip),
        ..serve_args(&kafka.bootstrap(), &dir.path().join("index.db"))
    };
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(3).await;
    let id = start(&d, json!({"filter": {"topic": "h.dlq"}, "rate": 0})).await;
    let job = finished(&d, &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let got = read_topic(&kafka.bootstrap(), "h.retry.1", 3).await;
    let by_source = |offset: i64| {
        got.iter()
            .find(|g| g.header("dlq-source") == Some(format!("h.dlq/0/{offset}")))
            .unwrap()
    };
    let empty = by_source(0);
    assert_eq!((empty.key.as_ref(), empty.value.as_ref()), (None, None));
    let odd = by_source(1);
    assert_eq!(odd.key.as_deref(), Some(&binary[..]));
    assert_eq!(
        odd.value.as_deref(),
        Some(&[0xff, 0xfe, 0x00, 0xc3, 0x28][..])
    );
    assert_eq!(
        odd.headers[..3],
        [
            ("bad-utf8".to_string(), Some(vec![0xc3, 0x28])),
            ("null".to_string(), None),
            (String::new(), Some(vec![])),
        ]
    );
    assert_eq!(by_source(2).value.as_ref().map(Vec::len), Some(big.len()));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_job_delays_it_and_loses_or_duplicates_nothing() {
    const TOTAL: usize = 600;
    let kafka = Kafka::start(&[("o.retry.1", 1), ("o.dlq", 1)]);
    let records: Vec<_> = (0..TOTAL)
        .map(|i| {
            (
                None,
                format!("k{i}").into_bytes(),
                b"{}".to_vec(),
                failure("Boom", "o"),
            )
        })
        .collect();
    kafka.send_many("o.dlq", &records).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(TOTAL as i64).await;
    let id = start(&d, json!({"filter": {"topic": "o.dlq"}, "rate": 200})).await;
    wait_for("some sent", DEADLINE, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{id}")).await;
        (job["sent"].as_i64().unwrap() >= 100).then_some(())
    })
    .await;
    kafka.cluster.all_brokers_down().unwrap();
    wait_for("the outage to be noticed", DEADLINE, || async {
        (d.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let (_, during) = d.get_json(&format!("/api/replays/{id}")).await;
    assert_eq!(
        during["status"], "running",
        "an outage does not end the job"
    );
    let refusal = wait_for("previews to say no broker answers", DEADLINE, || async {
        let (status, v) = d
            .post_json(
                "/api/replays",
                json!({"filter": {"topic": "o.dlq"}, "dry_run": true}),
            )
            .await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(v)
    })
    .await;
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("No broker answers"),
        "{refusal}"
    );
    kafka.cluster.all_brokers_up().unwrap();
    let job = finished(&d, &id).await;
    assert_eq!(
        (job["status"].as_str(), job["sent"].as_i64()),
        (Some("completed"), Some(TOTAL as i64)),
        "{job}"
    );
    let got = read_topic(&kafka.bootstrap(), "o.retry.1", TOTAL).await;
    let ids: HashSet<String> = got
        .iter()
        .map(|g| g.header("dlq-replay-id").unwrap())
        .collect();
    assert_eq!(
        (got.len(), ids.len()),
        (TOTAL, TOTAL),
        "each record exactly once (the idempotent producer's retries leave no duplicates)"
    );
    d.stop().await;
}
