//! The replay target each record would go to, shown before anything is sent.

use std::sync::Arc;

use crate::harness::in_process::{escaped, serve_args, Kafka, TestDashboard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_shows_its_first_retry_topic_or_why_it_is_refused() {
    let kafka = Kafka::start(&[
        ("orders", 1),
        ("orders.retry.1", 1),
        ("orders.dlq", 1),
        ("payments.dlq", 1),
        ("billing-dlt", 1),
        ("billing.retry", 1),
    ]);
    let origin = |t: &'static str| [("dlq-origin-topic", Some(t.as_bytes()))];
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"o"),
            Some(b"{}"),
            &origin("orders"),
        )
        .await;
    kafka
        .send(
            "payments.dlq",
            Some(0),
            Some(b"p"),
            Some(b"{}"),
            &origin("payments"),
        )
        .await;
    kafka
        .send(
            "billing-dlt",
            Some(0),
            Some(b"b"),
            Some(b"{}"),
            &origin("billing"),
        )
        .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("i.db"));
    args.replay_targets = vec!["billing-dlt=billing.retry".into()];
    let d = TestDashboard::start_with(args, dir.clone()).await;
    d.wait_indexed(3).await;

    let (_, v) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert_eq!(v["replay"]["target"], "orders.retry.1", "{v}");
    assert_eq!(v["replay"]["rule"], "template {base}.retry.1");
    assert_eq!(v["replay"]["checked"], true);
    let (_, html) = d.get_html("/messages/orders.dlq/0/0").await;
    assert!(html.contains("Replay target:") && html.contains("<code>orders.retry.1</code>"));

    let (_, v) = d.get_json("/api/messages/payments.dlq/0/0").await;
    assert!(v["replay"]["target"].is_null());
    assert!(
        v["replay"]["refused"]
            .as_str()
            .unwrap()
            .contains("payments.retry.1 does not exist"),
        "{v}"
    );
    let (_, html) = d.get_html("/messages/payments.dlq/0/0").await;
    assert!(html.contains("Replay would be refused:"));

    let (_, v) = d.get_json("/api/messages/billing-dlt/0/0").await;
    assert_eq!(
        v["replay"]["target"], "billing.retry",
        "a mapping wins over the template"
    );
    d.stop().await;

    // A template that lands on the live topic is refused, never used.
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("i2.db"));
    args.replay_template = "{origin_topic}".into();
    let d = TestDashboard::start_with(args, dir).await;
    d.wait_indexed(3).await;
    let (_, v) = d.get_json("/api/messages/orders.dlq/0/0").await;
    assert!(
        v["replay"]["refused"]
            .as_str()
            .unwrap()
            .contains("orders is the live topic"),
        "{v}"
    );
    let (_, html) = d.get_html("/messages/orders.dlq/0/0").await;
    assert!(html.contains(&escaped("orders is the live topic")));
    d.stop().await;
}
