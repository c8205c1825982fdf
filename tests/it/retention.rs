//! The bounded index (`--retain`): resolved records and payloads removed exactly when past
//! their age (the cleanup's clock set by hand, no waiting), unresolved records kept, search in
//! step, max-records removing unresolved records only when forced and saying so on the
//! overview, and a cleanup killed with SIGKILL going on after a restart.

use axum::http::StatusCode;
use dlq_dashboard::config::ServeArgs;
use serde_json::{json, Value};

use crate::harness::in_process::{serve_args, Kafka, Outgoing, TestDashboard, DEADLINE};
use crate::harness::process::{produce, producer, DashboardProcess, DevCluster};
use crate::poll::{wait_for, wait_for_count};

const DAY_MS: i64 = 86_400_000;

/// `n` records from `first` on, each payload with a word of its own (`tagword{i}`) and the
/// key `key{i}`, on partition 0.
fn records(first: usize, n: usize) -> Vec<Outgoing> {
    (first..first + n)
        .map(|i| {
            (
                Some(0),
                format!("key{i}").into_bytes(),
                format!("{{\"tag\":\"tagword{i}\"}}").into_bytes(),
                vec![
                    ("dlq-error-class".to_string(), b"com.shop.Boom".to_vec()),
                    ("x-secret".to_string(), format!("secret{i}").into_bytes()),
                ],
            )
        })
        .collect()
}

fn args_with(d_args: ServeArgs, retain: &str) -> ServeArgs {
    ServeArgs {
        retain: retain.parse().unwrap(),
        ..d_args
    }
}

async fn start(kafka: &Kafka, retain: &str) -> TestDashboard {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("index.db");
    TestDashboard::start_with(args_with(serve_args(&kafka.bootstrap(), &db), retain), dir).await
}

/// Purge the listed offsets of `topic` partition 0; returns the purge's confirmation time.
async fn purge(d: &TestDashboard, topic: &str, offsets: std::ops::Range<i64>) -> i64 {
    let messages: Vec<Value> = offsets
        .map(|o| json!({"topic": topic, "partition": 0, "offset": o}))
        .collect();
    let done = d
        .purge_confirmed(json!({"messages": messages, "reason": "done with them"}))
        .await;
    sqlx::query_scalar("SELECT confirmed_at FROM purges WHERE id = ?")
        .bind(done["id"].as_str().unwrap())
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap()
}

/// Wait until the wall clock has moved past `ms`, so that what happens next is later.
async fn after(ms: i64) {
    wait_for("the clock to move on", DEADLINE, || async {
        (dlq_dashboard::clock::now_ms() > ms).then_some(())
    })
    .await;
}

/// Offsets of `topic` still in the index, ascending.
async fn offsets(d: &TestDashboard, topic: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT \"offset\" FROM records WHERE topic = ? ORDER BY 1")
        .bind(topic)
        .fetch_all(&d.d().state.pool)
        .await
        .unwrap()
}

/// Messages a search finds, in every status.
async fn found(d: &TestDashboard, term: &str) -> usize {
    let (status, page) = d
        .get_json(&format!("/api/messages?q={term}&status=all&limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_records_leave_index_and_search_exactly_past_their_age_and_unresolved_stay() {
    let kafka = Kafka::start(&[("ret.dlq", 1)]);
    kafka.send_many("ret.dlq", &records(0, 30)).await;
    let d = start(&kafka, "resolved=1d").await;
    d.wait_indexed(30).await;
    d.wait_searchable().await;
    let retention = d.d().state.retention.clone();

    let purged_a = purge(&d, "ret.dlq", 0..10).await;
    after(purged_a).await;
    let purged_b = purge(&d, "ret.dlq", 10..20).await;
    assert!(purged_a < purged_b);
    assert_eq!(found(&d, "tagword3").await, 1, "found before");

    // A day after the second purge: the first is past a day, the second exactly a day old.
    retention.clock.set_ms(purged_b + DAY_MS);
    let pass = retention.pass_now().await.unwrap();
    assert_eq!(pass.resolved, 10, "{pass:?}");
    assert_eq!(offsets(&d, "ret.dlq").await, (10..30).collect::<Vec<_>>());
    assert_eq!(
        found(&d, "tagword3").await,
        0,
        "removed records are not found"
    );
    assert_eq!(found(&d, "key3").await, 0);
    assert_eq!(found(&d, "tagword13").await, 1, "kept records are");
    let (status, _) = d.get_json("/api/messages/ret.dlq/0/3").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, topics) = d.get_json("/api/topics").await;
    let t = &topics.as_array().unwrap()[0];
    assert_eq!(
        (t["messages"].as_i64(), t["purged"].as_i64()),
        (Some(10), Some(10)),
        "the counters follow: {t}"
    );
    let group: (i64, i64) = sqlx::query_as("SELECT count, purged FROM failure_groups")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(group, (20, 10), "the failure group's counts follow");

    retention.clock.set_ms(purged_b + DAY_MS + 1);
    assert_eq!(retention.pass_now().await.unwrap().resolved, 10);
    // Years later, the unresolved records are all still there.
    retention.clock.set_ms(purged_b + 1000 * DAY_MS);
    assert_eq!(retention.pass_now().await.unwrap().resolved, 0);
    assert_eq!(offsets(&d, "ret.dlq").await, (20..30).collect::<Vec<_>>());
    assert_eq!(found(&d, "tagword25").await, 1);
    let removed = dlq_dashboard::store::retention::removed(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(
        removed
            .iter()
            .map(|r| (r.topic.as_str(), r.kind.as_str(), r.count))
            .collect::<Vec<_>>(),
        [("ret.dlq", "resolved", 20)]
    );
    // The search file holds no entry of a removed record.
    let mut search = dlq_dashboard::store::search::connect(&d.d().state.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO records_fts (records_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&mut search)
        .await
        .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_past_their_age_are_removed_and_pages_say_so() {
    let kafka = Kafka::start(&[("pay.dlq", 1)]);
    kafka.send_many("pay.dlq", &records(0, 3)).await;
    let d = start(&kafka, "payloads=1d").await;
    d.wait_indexed(3).await;
    let pool = d.d().state.pool.clone();
    let first: i64 = sqlx::query_scalar("SELECT MAX(indexed_at) FROM records")
        .fetch_one(&pool)
        .await
        .unwrap();
    after(first).await;
    kafka.send_many("pay.dlq", &records(3, 3)).await;
    d.wait_indexed(6).await;
    d.wait_searchable().await;
    assert_eq!(found(&d, "tagword1").await, 1);

    let retention = d.d().state.retention.clone();
    retention.clock.set_ms(first + DAY_MS + 1);
    let pass = retention.pass_now().await.unwrap();
    assert_eq!(pass.payloads, 3, "{pass:?}");
    assert_eq!(retention.pass_now().await.unwrap().payloads, 0, "not twice");

    let (status, _, body) = d.get("/api/messages/pay.dlq/0/1/raw").await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        String::from_utf8_lossy(&body).contains("removed by retention"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = d.get("/api/messages/pay.dlq/0/4/raw").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"{\"tag\":\"tagword4\"}");
    let (status, page) = d.get_html("/messages/pay.dlq/0/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Payload removed by retention"), "{page}");
    let (_, page) = d.get_html("/messages/pay.dlq/0/4").await;
    assert!(!page.contains("Payload removed by retention"));
    // Coordinates, key and error stay; payload text and headers go.
    assert_eq!(
        found(&d, "tagword1").await,
        0,
        "the payload text is not found"
    );
    assert_eq!(found(&d, "key1").await, 1, "the key still is");
    assert_eq!(found(&d, "tagword4").await, 1);
    let bodies: Vec<(i64, Option<Vec<u8>>, String)> = sqlx::query_as(
        "SELECT r.\"offset\", b.value, b.headers FROM records r JOIN record_bodies b ON b.record_id = r.id ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (offset, value, headers) in bodies {
        if offset < 3 {
            assert_eq!((value, headers.as_str()), (None, "[]"), "offset {offset}");
        } else {
            assert!(value.is_some() && headers.contains("x-secret"));
        }
    }
    let (_, topics) = d.get_json("/api/topics").await;
    assert_eq!(topics[0]["messages"], 6, "the records stay");
    d.stop().await;
}

/// Restart `d` with `--retain retain` and wait for the cleanup's first pass.
async fn restart(d: TestDashboard, bootstrap: &str, retain: &str) -> TestDashboard {
    let args = args_with(serve_args(bootstrap, &d.db), retain);
    let d = d.restart(args, || async {}).await;
    let retention = d.d().state.retention.clone();
    wait_for("the first retention pass", DEADLINE, || async {
        (retention.passes() >= 1).then_some(())
    })
    .await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_records_removes_the_oldest_resolved_first_and_unresolved_only_when_forced() {
    let kafka = Kafka::start(&[("a.dlq", 1), ("b.dlq", 1)]);
    kafka.send_many("a.dlq", &records(0, 10)).await;
    after(dlq_dashboard::clock::now_ms()).await;
    kafka.send_many("b.dlq", &records(100, 10)).await;
    let d = start(&kafka, "").await;
    d.wait_indexed(20).await;
    d.wait_searchable().await;
    // The newest five of b are resolved; every record of a is older and unresolved.
    purge(&d, "b.dlq", 5..10).await;

    let bootstrap = kafka.bootstrap();
    let d = restart(d, &bootstrap, "max-records=17").await;
    assert_eq!(offsets(&d, "a.dlq").await, (0..10).collect::<Vec<_>>());
    assert_eq!(offsets(&d, "b.dlq").await, [0, 1, 2, 3, 4, 8, 9]);
    let (_, page) = d.get_html("/").await;
    assert!(
        !page.contains("data-field=\"retention-note\""),
        "nothing unresolved was removed, so nothing is said"
    );

    let d = restart(d, &bootstrap, "max-records=12").await;
    assert_eq!(offsets(&d, "a.dlq").await, (3..10).collect::<Vec<_>>());
    assert_eq!(offsets(&d, "b.dlq").await, [0, 1, 2, 3, 4]);
    let (_, page) = d.get_html("/").await;
    assert!(
        page.contains(
            "3 messages that were not resolved were removed, the oldest first: a.dlq (3)."
        ),
        "{page}"
    );
    assert!(page.contains("3 unresolved messages were removed by --retain max-records (12)"));
    assert!(!page.contains("b.dlq ("));
    let (_, topics) = d.get_json("/api/topics").await;
    let total: i64 = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["messages"].as_i64().unwrap() + t["purged"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 12);
    assert_eq!(found(&d, "tagword1").await, 0);
    assert_eq!(found(&d, "tagword3").await, 1);
    // The cleanup removes its entries without scrubbing them, inside its own transactions:
    // the table's scrubbing stays on for the erasures that rely on it.
    let secure: i64 =
        sqlx::query_scalar("SELECT v FROM search.records_fts_config WHERE k = 'secure-delete'")
            .fetch_one(&d.d().state.pool)
            .await
            .unwrap();
    assert_eq!(secure, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_killed_with_sigkill_goes_on_after_a_restart_counting_nothing_twice() {
    const N: i64 = 40_000;
    const CAP: i64 = 2_000;
    let cluster = DevCluster::start(1, &["kill.dlq:1"]);
    produce(&producer(&cluster.bootstrap), "kill.dlq", "r", N as usize).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let mut first = DashboardProcess::start(&cluster.bootstrap, &db, &[]);
    first.wait_indexed(N);
    assert!(first.terminate());

    let retain = format!("max-records={CAP}");
    let args = ["--retain", retain.as_str()];
    let mut d = DashboardProcess::start(&cluster.bootstrap, &db, &args);
    let removed = || async {
        let pool = read_only(&db).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(count), 0) FROM retention_removed WHERE kind = 'capped_unresolved'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    };
    let at_kill = wait_for("the cleanup under way", DEADLINE, || async {
        let n = removed().await;
        (n > 0).then_some(n)
    })
    .await;
    d.kill();
    let after_kill = removed().await;
    assert!(
        after_kill < N - CAP,
        "killed in the middle ({at_kill} then {after_kill} of {})",
        N - CAP
    );
    d.restart();
    wait_for_count(
        "the cleanup to go on after the restart",
        N - CAP,
        DEADLINE,
        removed,
    )
    .await;
    assert!(d.terminate());
    assert_eq!(removed().await, N - CAP, "each removal counted once");
    let pool = read_only(&db).await;
    let (rows, low, high): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MIN(\"offset\"), MAX(\"offset\") FROM records")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (rows, low, high),
        (CAP, N - CAP, N - 1),
        "the newest are kept"
    );
    let counted: i64 = sqlx::query_scalar("SELECT SUM(count) FROM topic_status_counts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(counted, CAP);
    let bodies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_bodies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bodies, CAP);
    pool.close().await;
    println!("killed after {after_kill} of {} removals", N - CAP);
}

async fn read_only(db: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db)
                .read_only(true),
        )
        .await
        .unwrap()
}
