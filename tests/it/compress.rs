//! Stored payload compression (`--compress-payloads-above`): what leaves the dashboard is the
//! original bytes, whatever the index stored them as.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::ConnectOptions;

use dlq_dashboard::config::ServeArgs;

use crate::harness::in_process::{read_topic, serve_args, Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

/// `record_bodies.codec` of each stored record of `topic`, by offset.
async fn codecs(db: &std::path::Path, topic: &str) -> Vec<(i64, i64)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT r.\"offset\", b.codec FROM records r JOIN record_bodies b ON b.record_id = r.id
         WHERE r.topic = ? ORDER BY r.\"offset\"",
    )
    .bind(topic)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Bytes that do not compress (as encrypted or already compressed payloads).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_payloads_leave_as_the_original_bytes_on_the_page_the_download_and_replay() {
    let kafka = Kafka::start(&[("z.retry.1", 1), ("z.dlq", 1)]);
    let mut text = String::from(r#"{"note":"zebracorn order","lines":["#);
    while text.len() < 6000 {
        text.push_str(r#"{"sku":"A-100","qty":2,"price":"9.99"},"#);
    }
    text.push_str("]}");
    // Invalid UTF-8 and NUL bytes, compressible.
    let binary: Vec<u8> = [0xff, 0xfe, 0x00, 0xc3, 0x28, b'a']
        .iter()
        .copied()
        .cycle()
        .take(3000)
        .collect();
    let small = br#"{"small":true}"#.to_vec();
    let random = noise(2048);
    let payloads: Vec<Vec<u8>> = vec![text.clone().into_bytes(), binary, small, random];
    for (i, p) in payloads.iter().enumerate() {
        kafka
            .send(
                "z.dlq",
                Some(0),
                Some(format!("k{i}").as_bytes()),
                Some(p),
                &[("dlq-error-class", Some(b"Boom"))],
            )
            .await;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("index.db");
    let args = ServeArgs {
        compress_payloads_above: 512,
        ..serve_args(&kafka.bootstrap(), &db)
    };
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(4).await;
    // The two compressible payloads above 512 B are stored as zstd frames; the small one
    // and the noise as they came.
    assert_eq!(
        codecs(&db, "z.dlq").await,
        vec![(0, 1), (1, 1), (2, 0), (3, 0)]
    );

    for (offset, p) in payloads.iter().enumerate() {
        let (status, _, raw) = d.get(&format!("/api/messages/z.dlq/0/{offset}/raw")).await;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(&raw, p, "raw download of offset {offset}");
        let (status, v) = d.get_json(&format!("/api/messages/z.dlq/0/{offset}")).await;
        assert_eq!(status.as_u16(), 200, "{v}");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(v["value_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&decoded, p, "detail JSON of offset {offset}");
    }
    let (_, v) = d.get_json("/api/messages/z.dlq/0/0").await;
    assert_eq!(v["value"].as_str(), Some(text.as_str()));
    let (_, v) = d.get_json("/api/messages/z.dlq/0/1").await;
    assert!(v["value"].is_null(), "invalid UTF-8 is not text: {v}");
    let (_, html) = d.get_html("/messages/z.dlq/0/0").await;
    assert!(html.contains("zebracorn order"), "the page shows the text");

    // Search indexes the decompressed text.
    d.wait_searchable().await;
    let (_, found) = d.get_json("/api/messages?q=zebracorn").await;
    let hits = found["messages"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["offset"], 0);

    // Replay sends the original bytes.
    let (status, job) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"topic": "z.dlq"}, "rate": 0}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    wait_for("the replay to finish", DEADLINE, || async {
        let (_, j) = d.get_json(&format!("/api/replays/{id}")).await;
        (j["status"] == "completed").then_some(())
    })
    .await;
    let got = read_topic(&kafka.bootstrap(), "z.retry.1", 4).await;
    for (offset, p) in payloads.iter().enumerate() {
        let sent = got
            .iter()
            .find(|g| g.header("dlq-source") == Some(format!("z.dlq/0/{offset}")))
            .unwrap();
        assert_eq!(sent.value.as_ref(), Some(p), "replay of offset {offset}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_compression_off_payloads_are_stored_as_they_came_and_compressed_rows_still_read() {
    let kafka = Kafka::start(&[("y.dlq", 1)]);
    let big = "yak ".repeat(1000).into_bytes();
    kafka.send("y.dlq", Some(0), None, Some(&big), &[]).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("index.db");
    let d = TestDashboard::start_with(serve_args(&kafka.bootstrap(), &db), dir).await;
    d.wait_indexed(1).await;
    // Restarted with compression off: the row stored compressed still reads, the new one is
    // stored as it came.
    let args = ServeArgs {
        compress_payloads_above: 0,
        ..serve_args(&kafka.bootstrap(), &db)
    };
    let d = d
        .restart(args, || async {
            kafka.send("y.dlq", Some(0), None, Some(&big), &[]).await;
        })
        .await;
    d.wait_indexed(2).await;
    assert_eq!(codecs(&db, "y.dlq").await, vec![(0, 1), (1, 0)]);
    for offset in 0..2 {
        let (status, _, raw) = d.get(&format!("/api/messages/y.dlq/0/{offset}/raw")).await;
        assert_eq!(
            (status.as_u16(), raw == big),
            (200, true),
            "offset {offset}"
        );
    }
    d.stop().await;
}
