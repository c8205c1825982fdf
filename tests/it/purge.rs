//! Purge end to end in process: preview, confirm, what leaves the lists and counts, undo,
//! erasure checked in the SQLite files on disk, the race with a replay job, and bad input.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::harness::in_process::{Kafka, Outgoing, TestDashboard, DEADLINE};
use crate::poll::wait_for;

const CLASSES: [&str; 4] = [
    "com.shop.PoisonEvent",
    "java.net.SocketTimeoutException",
    "com.shop.ValidationException",
    "java.lang.IllegalStateException",
];

/// `n` records on `orders.dlq`, error classes round-robin, each payload naming its class
/// and index so that free text can find one class.
fn records(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| {
            let class = CLASSES[i % CLASSES.len()];
            let word = class.rsplit('.').next().unwrap().to_lowercase();
            let headers = vec![
                ("dlq-origin-topic".to_string(), b"orders".to_vec()),
                ("dlq-error-class".to_string(), class.as_bytes().to_vec()),
                (
                    "dlq-error-message".to_string(),
                    format!("order {i} failed").into_bytes(),
                ),
            ];
            (
                Some((i % 4) as i32),
                format!("customer-{i}").into_bytes(),
                format!("{{\"order\":{i},\"kind\":\"{word}\"}}").into_bytes(),
                headers,
            )
        })
        .collect()
}

async fn topic(d: &TestDashboard) -> Value {
    let (_, topics) = d.get_json("/api/topics").await;
    topics
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "orders.dlq").cloned())
        .unwrap_or_else(|| panic!("orders.dlq in {topics}"))
}

async fn group_count(d: &TestDashboard, class: &str) -> Option<i64> {
    let (_, groups) = d.get_json("/api/groups").await;
    groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["error_class"] == class)
        .map(|g| g["count"].as_i64().unwrap())
}

/// Records a listing shows, walking every page.
async fn listed(d: &TestDashboard, query: &str) -> usize {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut parts: Vec<String> = vec!["limit=500".into()];
        if !query.is_empty() {
            parts.push(query.to_string());
        }
        if let Some(c) = &cursor {
            parts.push(format!("cursor={c}"));
        }
        let uri = format!("/api/messages?{}", parts.join("&"));
        let (status, page) = d.get_json(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        n += page["messages"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return n,
        }
    }
}

async fn started(kafka: &Kafka, n: usize) -> TestDashboard {
    kafka.send_many("orders.dlq", &records(n)).await;
    let d = TestDashboard::start(kafka).await;
    d.wait_indexed(n as i64).await;
    d.wait_searchable().await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_by_filter_hides_exactly_its_messages_everywhere_and_undo_brings_them_back() {
    let kafka = Kafka::start(&[("orders.dlq", 4), ("orders", 1), ("orders.retry.1", 1)]);
    let d = started(&kafka, 20_000).await;
    let poison = CLASSES[0];
    assert_eq!(group_count(&d, poison).await, Some(5_000));

    let (status, preview) = d
        .post_json(
            "/api/purges",
            json!({"filter": {"error_class": poison}, "reason": "poison events from the 2.3 deploy", "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 5_000);
    assert_eq!(preview["by_topic"]["orders.dlq"], 5_000);
    assert_eq!(preview["by_status"]["new"], 5_000);
    assert_eq!(
        (
            preview["refused_count"].as_i64(),
            preview["erase"].as_bool()
        ),
        (Some(0), Some(false))
    );
    assert_eq!(
        topic(&d).await["messages"],
        20_000,
        "a preview changes nothing"
    );

    let (status, done) = d
        .post_json("/api/purges", json!({"preview_id": preview["preview_id"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (done["purged"].as_i64(), done["refused"].as_i64()),
        (Some(5_000), Some(0))
    );
    let id = done["id"].as_str().unwrap().to_string();

    let t = topic(&d).await;
    assert_eq!(
        (t["messages"].as_i64(), t["purged"].as_i64()),
        (Some(15_000), Some(5_000)),
        "{t}"
    );
    assert_eq!(listed(&d, &format!("error_class={poison}")).await, 0);
    assert_eq!(listed(&d, "").await, 15_000);
    assert_eq!(listed(&d, "status=purged").await, 5_000);
    assert_eq!(
        group_count(&d, poison).await,
        None,
        "an all-purged group leaves the list"
    );
    assert_eq!(group_count(&d, CLASSES[1]).await, Some(5_000));
    assert_eq!(
        listed(&d, "q=poisonevent").await,
        0,
        "search hides purged messages"
    );
    assert_eq!(listed(&d, "q=poisonevent&status=purged").await, 5_000);

    let (_, one) = d.get_json("/api/messages?status=purged&limit=1").await;
    let m = &one["messages"][0];
    assert_eq!(m["purge"]["id"], id.as_str());
    assert_eq!(m["purge"]["reason"], "poison events from the 2.3 deploy");
    assert_eq!(m["purge"]["erased"], false);
    let (_, detail) = d
        .get_json(&format!(
            "/api/messages/orders.dlq/{}/{}",
            m["partition"], m["offset"]
        ))
        .await;
    assert_eq!(detail["purges"][0]["purge_id"], id.as_str());
    assert_eq!(detail["purges"][0]["status_before"], "new");

    let (_, audit) = d.get_json("/api/audit").await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "purge.start")
        .cloned()
        .unwrap_or_else(|| panic!("purge.start in {audit}"));
    assert_eq!(entry["detail"]["total"], 5_000, "{entry}");

    let (status, undo) = d
        .post_json(&format!("/api/purges/{id}/undo"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{undo}");
    assert_eq!(undo["changed"], 5_000);
    let t = topic(&d).await;
    assert_eq!(
        (t["messages"].as_i64(), t["purged"].as_i64()),
        (Some(20_000), Some(0)),
        "{t}"
    );
    assert_eq!(
        listed(&d, &format!("error_class={poison}&status=new")).await,
        5_000
    );
    assert_eq!(group_count(&d, poison).await, Some(5_000));
    let (_, audit) = d.get_json("/api/audit").await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "purge.undo"),
        "{audit}"
    );
    let (status, again) = d
        .post_json(&format!("/api/purges/{id}/undo"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_of_a_purge_can_be_restored_on_its_own() {
    let kafka = Kafka::start(&[("orders.dlq", 4)]);
    let d = started(&kafka, 40).await;
    let (status, done) = d
        .post_json(
            "/api/purges",
            json!({"filter": {"error_class": CLASSES[2]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["purged"], 10);
    let id = done["id"].as_str().unwrap();
    let (_, page) = d.get_json("/api/messages?status=purged&limit=1").await;
    let m = &page["messages"][0];
    let one = json!([{"topic": "orders.dlq", "partition": m["partition"], "offset": m["offset"]}]);
    let (status, undo) = d
        .post_json(&format!("/api/purges/{id}/undo"), json!({"messages": one}))
        .await;
    assert_eq!(status, StatusCode::OK, "{undo}");
    assert_eq!(undo["changed"], 1);
    assert_eq!(topic(&d).await["purged"], 9);
    let (_, purge) = d.get_json(&format!("/api/purges/{id}")).await;
    assert_eq!(
        (purge["undone"].as_i64(), purge["still_purged"].as_i64()),
        (Some(1), Some(9))
    );
    let (status, again) = d
        .post_json(&format!("/api/purges/{id}/undo"), json!({"messages": one}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("None of the listed messages"),
        "{again}"
    );
}

/// Whether `needle` occurs anywhere in the file.
fn file_holds(path: &std::path::Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn files_of(d: &TestDashboard) -> Vec<std::path::PathBuf> {
    let search = dlq_dashboard::store::search::path_for(&d.db);
    let mut files = Vec::new();
    for base in [d.db.clone(), search] {
        for suffix in ["", "-wal"] {
            let mut p = base.clone().into_os_string();
            p.push(suffix);
            files.push(p.into());
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_payload_is_gone_from_both_files_on_disk_and_from_search() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let secret = b"{\"email\":\"zebra-quokka-7731@example.org\",\"card\":\"4111-0000\"}";
    let header_secret = b"passport-XK99182";
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"cust-1"),
            Some(secret),
            &[
                ("dlq-error-class", Some(b"com.shop.PoisonEvent")),
                ("x-document", Some(header_secret)),
            ],
        )
        .await;
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"cust-2"),
            Some(b"{\"fine\":true}"),
            &[],
        )
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(2).await;
    d.wait_searchable().await;
    assert_eq!(listed(&d, "q=quokka").await, 1);
    // The same check that must pass after erasure fails before it: the bytes are on disk.
    checkpoint(&d).await;
    assert!(
        files_of(&d)
            .iter()
            .any(|f| file_holds(f, b"zebra-quokka-7731")),
        "the payload is in a file before erasure"
    );

    let target = json!([{"topic": "orders.dlq", "partition": 0, "offset": 0}]);
    let (status, preview) = d
        .post_json(
            "/api/purges",
            json!({"messages": target, "erase": true, "reason": "personal data", "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        (
            preview["erase"].as_bool(),
            preview["undo_possible"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let (status, done) = d
        .post_json("/api/purges", json!({"preview_id": preview["preview_id"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (done["purged"].as_i64(), done["erased"].as_i64()),
        (Some(1), Some(1))
    );
    let id = done["id"].as_str().unwrap();

    checkpoint(&d).await;
    for file in files_of(&d) {
        for needle in [&b"zebra-quokka-7731"[..], b"4111-0000", header_secret] {
            assert!(
                !file_holds(&file, needle),
                "{} still holds {}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert_eq!(
        listed(&d, "q=quokka&status=all").await,
        0,
        "search no longer finds it"
    );
    assert_eq!(
        listed(&d, "q=poisonevent&status=purged").await,
        1,
        "the error is kept"
    );
    let (status, detail) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["purge"]["erased"], true, "{detail}");
    assert_eq!(detail["value"], Value::Null);
    assert_eq!(detail["headers"], json!([]));
    assert_eq!(detail["error"]["class"], "com.shop.PoisonEvent");
    let (status, _, raw) = d.get("/api/messages/orders.dlq/0/0/raw").await;
    assert_eq!(status, StatusCode::GONE);
    assert!(String::from_utf8_lossy(&raw).contains("was erased"));
    let (status, undo) = d
        .post_json(&format!("/api/purges/{id}/undo"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{undo}");
    assert!(undo["error"].as_str().unwrap().contains("erased"), "{undo}");
    let (_, other) = d.get_json("/api/messages/orders.dlq/0/1").await;
    assert_eq!(
        other["value"], "{\"fine\":true}",
        "the other message is untouched"
    );
}

/// Copy both files' logs into the files, as the dashboard's checkpoints do.
async fn checkpoint(d: &TestDashboard) {
    use sqlx::ConnectOptions;
    for file in [d.db.clone(), dlq_dashboard::store::search::path_for(&d.db)] {
        wait_for("a full checkpoint", DEADLINE, || async {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .connect()
                .await
                .unwrap();
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            (busy == 0).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_refuses_what_a_running_replay_still_has_to_send_and_the_job_completes() {
    let kafka = Kafka::start(&[("orders.dlq", 4), ("orders", 1), ("orders.retry.1", 1)]);
    let d = started(&kafka, 200).await;
    // A slow job over one class: most of its messages are still to send when the purge
    // comes.
    let (status, job) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"error_class": CLASSES[1]}, "rate": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let (status, preview) = d
        .post_json(
            "/api/purges",
            json!({"filter": {"origin_topic": "orders"}, "dry_run": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let refused = preview["refused_count"].as_i64().unwrap();
    assert!(
        refused > 0,
        "the job's unsent messages are refused: {preview}"
    );
    assert!(
        preview["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&job_id),
        "{preview}"
    );
    let (status, done) = d
        .post_json("/api/purges", json!({"preview_id": preview["preview_id"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        done["purged"].as_i64().unwrap() + done["refused"].as_i64().unwrap(),
        200
    );
    let job = wait_for("the replay job to finish", DEADLINE * 3, || async {
        let (_, job) = d.get_json(&format!("/api/replays/{job_id}")).await;
        (job["status"] == "completed").then_some(job)
    })
    .await;
    assert_eq!(
        (job["sent"].as_i64(), job["failed"].as_i64()),
        (Some(50), Some(0)),
        "{job}"
    );
    // What the purge refused, the job sent: those end replayed. The job's messages sent
    // before the purge was previewed were purged after their delivery, which is allowed.
    let refused = done["refused"].as_i64().unwrap() as usize;
    assert_eq!(
        listed(&d, &format!("error_class={}&status=replayed", CLASSES[1])).await,
        refused
    );
    assert_eq!(
        listed(&d, &format!("error_class={}&status=purged", CLASSES[1])).await,
        50 - refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_purge_requests_get_a_sentence_and_change_nothing() {
    let kafka = Kafka::start(&[("orders.dlq", 4)]);
    let d = started(&kafka, 8).await;
    let long = "x".repeat(501);
    let cases = [
        (
            json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 999}]}),
            StatusCode::NOT_FOUND,
            "not in the index",
        ),
        (
            json!({"messages": []}),
            StatusCode::BAD_REQUEST,
            "selection is empty",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "selection is empty"),
        (
            json!({"filter": {"error_class": "no.such.Error"}}),
            StatusCode::BAD_REQUEST,
            "no indexed message matches",
        ),
        (
            json!({"filter": {}}),
            StatusCode::BAD_REQUEST,
            "selects every message",
        ),
        (
            json!({"filter": {"topic": "orders.dlq"}, "reason": long}),
            StatusCode::BAD_REQUEST,
            "at most 500",
        ),
        (
            json!({"filter": {"topic": "orders.dlq"}, "erase": "yes"}),
            StatusCode::BAD_REQUEST,
            "'erase' must be true or false",
        ),
        (
            json!({"filter": {"topic": "orders.dlq"}, "colour": 1}),
            StatusCode::BAD_REQUEST,
            "Unknown field 'colour'",
        ),
        (
            json!({"preview_id": "pnothing"}),
            StatusCode::NOT_FOUND,
            "no purge pnothing",
        ),
    ];
    for (body, want, says) in cases {
        let (status, v) = d.post_json("/api/purges", body.clone()).await;
        assert_eq!(status, want, "{body} -> {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(says),
            "{body} -> {v}"
        );
    }
    let (status, v) = d.post("/api/purges", Some("text/plain"), "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let (status, v) = d.post_json("/api/purges/pnothing/undo", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = d.post_json("/api/purges/pnothing/erase", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(topic(&d).await["purged"], 0, "nothing was purged");

    // Everything, with the extra yes.
    let (status, done) = d
        .post_json("/api/purges", json!({"filter": {}, "everything": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["purged"], 8);
    let (status, v) = d
        .post_json(
            "/api/purges",
            json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 1}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "already purged: nothing to purge {v}"
    );
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
}
