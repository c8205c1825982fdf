//! Redaction beyond the masked values themselves (issue 13): the search file holds the
//! redacted text, and is rebuilt when the redaction changes; the fields a redacted header
//! fills are masked on every surface; headers the dashboard needs are refused at start-up.
//! Real mock cluster, real SQLite files, requests through the real router. Without
//! authentication on loopback every caller is an admin, so the masking tests pass
//! `--redact-for-all` (tests/it/access.rs checks the roles).

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::in_process::{read_topic, serve_args, Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

/// The payload's secret (a JSON field) and the error message's (a header).
const PAYLOAD_SECRET: &str = "hunter2xyzzy";
const MESSAGE_SECRET: &str = "4111222233334444";

async fn send_failure(kafka: &Kafka, key: &[u8], class: &str, message: &str) {
    let value = format!(r#"{{"user":"annabel","password":"{PAYLOAD_SECRET}"}}"#);
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(key),
            Some(value.as_bytes()),
            &[
                ("dlq-origin-topic", Some(b"orders")),
                ("dlq-error-class", Some(class.as_bytes())),
                ("dlq-error-message", Some(message.as_bytes())),
                ("dlq-consumer-group", Some(b"grp-hidden-owner")),
                ("dlq-error-stacktrace", Some(b"at SecretTrace.java:12")),
                ("dlq-attempts", Some(b"7")),
            ],
        )
        .await;
}

/// How many records a search (or filter) lists, through the API, all pages.
async fn listed(d: &TestDashboard, query: &str) -> usize {
    let (status, v) = d
        .get_json(&format!("/api/messages?limit=500&{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {v}");
    assert!(v["next_cursor"].is_null(), "one page is enough here");
    v["messages"].as_array().unwrap().len()
}

async fn search_file_redaction(d: &TestDashboard) -> (String, i64) {
    sqlx::query_as("SELECT redaction, indexed_through FROM search.search_progress")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_holds_the_redacted_text_is_rebuilt_when_redaction_changes_and_erase_removes_it() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let message = format!("card {MESSAGE_SECRET} declined");
    send_failure(&kafka, b"cust-1", "com.acme.Boom", &message).await;
    send_failure(&kafka, b"cust-2", "com.acme.Boom", &message).await;

    // Without redaction, search finds both secrets: the checks below can fail.
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(2).await;
    d.wait_searchable().await;
    assert_eq!(listed(&d, &format!("q={PAYLOAD_SECRET}")).await, 2);
    assert_eq!(listed(&d, &format!("q={MESSAGE_SECRET}")).await, 2);
    assert_eq!(search_file_redaction(&d).await.0, "");

    // Redaction configured: the search file is refilled with the masked text.
    let mut args = serve_args(&kafka.bootstrap(), &d.db);
    args.redact_json_fields = vec!["Password".into()];
    args.redact_headers = vec!["dlq-error-message".into()];
    let d = d.restart(args.clone(), || async {}).await;
    let (spec, _) = search_file_redaction(&d).await;
    assert!(
        spec.contains("password") && spec.contains("error_message"),
        "{spec}"
    );
    d.wait_indexed(2).await;
    d.wait_searchable().await;
    for secret in [PAYLOAD_SECRET, MESSAGE_SECRET, "declined"] {
        assert_eq!(listed(&d, &format!("q={secret}")).await, 0, "{secret}");
    }
    assert_eq!(listed(&d, "q=annabel").await, 2, "the rest is searchable");
    assert_eq!(
        listed(&d, "q=boom").await,
        2,
        "the error class is not redacted"
    );

    // The same redaction again: nothing to rebuild.
    let d = d.restart(args.clone(), || async {}).await;
    let (again, through) = search_file_redaction(&d).await;
    assert_eq!(again, spec);
    assert!(through >= 2, "kept, not refilled: {through}");

    // Erase removes the entries made with the mask, and writes new ones with it: the
    // message a redacted header fills is not added back.
    let done = d
        .purge_confirmed(
            json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "erase": true}),
        )
        .await;
    assert_eq!(done["erased"].as_i64(), Some(1), "{done}");
    assert_eq!(listed(&d, "q=annabel&status=all").await, 1);
    assert_eq!(
        listed(&d, "q=boom&status=all").await,
        2,
        "kept: key and error"
    );
    assert_eq!(listed(&d, "q=declined&status=all").await, 0);
    let mut search = dlq_dashboard::store::search::connect(&d.d().state.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO records_fts (records_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&mut search)
        .await
        .expect("the search index is consistent after erase");
    d.stop().await;
}

/// Every surface that shows a record's fields, as one text per surface.
async fn surfaces(d: &TestDashboard, job: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in [
        "/",
        "/messages",
        "/messages?q=annabel",
        "/messages/orders.dlq/0/0",
        "/messages/orders.dlq/0/1",
        "/groups",
        "/replays",
        &format!("/replays/{job}"),
    ] {
        let (status, html) = d.get_html(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        out.push((path.to_string(), html));
    }
    for path in [
        "/api/messages",
        "/api/messages/orders.dlq/0/0",
        "/api/messages/orders.dlq/0/1",
        "/api/groups",
        "/api/replays",
        &format!("/api/replays/{job}"),
        &format!("/api/replays/{job}/results"),
    ] {
        let (status, v) = d.get_json(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        out.push((path.to_string(), v.to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_redacted_header_fills_are_masked_on_every_surface() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    send_failure(
        &kafka,
        b"cust-1",
        "com.acme.SecretBoomClass",
        &format!("card {MESSAGE_SECRET} declined"),
    )
    .await;
    let mut args = serve_args(&kafka.bootstrap(), &std::path::PathBuf::new());
    args.redact_headers = [
        "dlq-error-class",
        "DLQ-Error-Message",
        "dlq-consumer-group",
        "dlq-error-stacktrace",
        "dlq-attempts",
    ]
    .map(String::from)
    .to_vec();
    args.redact_for_all = true;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    args.database = dir.path().join("index.db");
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(1).await;

    // Replay it, and have it come back to the DLQ carrying its replay id and another secret
    // error: the replay's results show the record it came back as.
    let (status, job) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "rate": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = job["id"].as_str().unwrap().to_string();
    let sent = read_topic(&kafka.bootstrap(), "orders.retry.1", 1).await;
    let replay_id = sent[0].header("dlq-replay-id").unwrap();
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"cust-1"),
            Some(b"{}"),
            &[
                ("dlq-origin-topic", Some(b"orders")),
                ("dlq-error-class", Some(b"com.acme.SecretAgainClass")),
                ("dlq-error-message", Some(b"again 9999888877776666")),
                ("dlq-replay-id", Some(replay_id.as_bytes())),
            ],
        )
        .await;
    d.wait_indexed(2).await;
    wait_for(
        "the replay to be linked to its return",
        DEADLINE,
        || async {
            let (_, v) = d.get_json(&format!("/api/replays/{job}/results")).await;
            (!v["results"][0]["failed_again"].is_null()).then_some(())
        },
    )
    .await;

    // The job follows the consumer group read from the (redacted) header: named as masked.
    let tracking = wait_for("the job to follow a consumer group", DEADLINE, || async {
        let (_, v) = d.get_json(&format!("/api/replays/{job}")).await;
        let groups = v["consumer_groups"][0]["groups"].clone();
        (groups.as_array().is_some_and(|g| !g.is_empty())).then_some(groups)
    })
    .await;
    assert_eq!(tracking, json!(["***"]));

    let secrets = [
        "SecretBoomClass",
        MESSAGE_SECRET,
        "declined",
        "grp-hidden-owner",
        "SecretTrace",
        "SecretAgainClass",
        "9999888877776666",
    ];
    for (path, text) in surfaces(&d, &job).await {
        for secret in secrets {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
    }
    // Masked, not dropped: the API says so, and the rest is intact.
    let (_, m) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(m["error"]["class"], "***", "{m}");
    assert_eq!(m["error"]["message"], "***");
    assert_eq!(m["error"]["stacktrace"], "***");
    assert_eq!(m["origin"]["consumer_group"], "***");
    assert_eq!(m["origin"]["topic"], "orders");
    assert!(m["attempts"].is_null());
    assert!(
        m["withheld"].as_str().unwrap().contains("error class"),
        "{m}"
    );
    let (_, v) = d.get_json(&format!("/api/replays/{job}/results")).await;
    assert_eq!(v["results"][0]["failed_again"]["error_class"], "***", "{v}");
    let (_, groups) = d.get_json("/api/groups").await;
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["error_class"] == "***" && g["sample_message"] == "***"),
        "{groups}"
    );

    // A filter on a masked field would confirm a guess: refused with a sentence.
    let (status, v) = d
        .get_json("/api/messages?error_class=com.acme.SecretBoomClass")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v.to_string().contains("redacted"), "{v}");
    let (status, _) = d
        .get_html("/messages?error_class=com.acme.SecretBoomClass")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // So would the count of a replay or purge preview selected by that filter.
    for uri in ["/api/replays", "/api/purges"] {
        let (status, v) = d
            .post_json(
                uri,
                serde_json::json!({"filter": {"error_class": "com.acme.SecretBoomClass"}, "dry_run": true}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {v}");
        assert!(v.to_string().contains("redacted"), "{uri}: {v}");
    }
    d.stop().await;
}

#[tokio::test]
async fn headers_the_dashboard_needs_cannot_be_redacted() {
    let dir = tempfile::tempdir().unwrap();
    for header in [
        "kafka_dlt-original-topic",
        "DLQ-Replay-Id",
        "__connect.errors.offset",
    ] {
        let mut args = serve_args("127.0.0.1:1", &dir.path().join("index.db"));
        args.redact_headers = vec!["authorization".into(), header.into()];
        let err = dlq_dashboard::app::Dashboard::start(args)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(&header.to_lowercase()) && err.contains("needs that header"),
            "{header}: {err}"
        );
    }
    assert!(
        !dir.path().join("index.db").exists(),
        "refused before anything was opened"
    );
}
