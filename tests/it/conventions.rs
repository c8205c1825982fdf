//! Each DLQ header convention, produced to a real broker, normalised through the JSON API.

use serde_json::Value;

use crate::harness::in_process::{Kafka, TestDashboard};

/// Header name and value pairs.
type HeaderList<'a> = Vec<(&'a str, Vec<u8>)>;

const TOPIC: &str = "conventions.dlq";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_header_convention_is_normalised() {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    let d = TestDashboard::start(&kafka).await;
    let be32 = |n: i32| n.to_be_bytes().to_vec();
    let be64 = |n: i64| n.to_be_bytes().to_vec();
    let cases: Vec<(&str, HeaderList)> = vec![
        (
            "spring_dlt",
            vec![
                ("kafka_dlt-original-topic", b"payments".to_vec()),
                ("kafka_dlt-original-partition", be32(2)),
                ("kafka_dlt-original-offset", be64(1_234_567)),
                ("kafka_dlt-original-timestamp", be64(1_700_000_000_123)),
                (
                    "kafka_dlt-original-consumer-group",
                    b"payment-service".to_vec(),
                ),
                (
                    "kafka_dlt-exception-fqcn",
                    b"org.springframework.kafka.listener.ListenerExecutionFailedException".to_vec(),
                ),
                (
                    "kafka_dlt-exception-cause-fqcn",
                    b"java.lang.IllegalStateException".to_vec(),
                ),
                (
                    "kafka_dlt-exception-message",
                    b"Account 42 is frozen".to_vec(),
                ),
                (
                    "kafka_dlt-exception-stacktrace",
                    b"java.lang.IllegalStateException: Account 42 is frozen\n\tat A.b(A.java:1)"
                        .to_vec(),
                ),
                ("retry_topic-attempts", be32(3)),
            ],
        ),
        (
            "spring_retry",
            vec![
                ("kafka_original-topic", b"orders".to_vec()),
                ("kafka_original-partition", be32(1)),
                ("kafka_original-offset", be64(77)),
                (
                    "kafka_exception-fqcn",
                    b"java.net.SocketTimeoutException".to_vec(),
                ),
                ("kafka_exception-message", b"Read timed out".to_vec()),
                ("retry_topic-attempts", be32(2)),
            ],
        ),
        (
            "kafka_connect",
            vec![
                ("__connect.errors.topic", b"inventory".to_vec()),
                ("__connect.errors.partition", b"1".to_vec()),
                ("__connect.errors.offset", b"900".to_vec()),
                ("__connect.errors.connector.name", b"jdbc-sink".to_vec()),
                ("__connect.errors.stage", b"VALUE_CONVERTER".to_vec()),
                (
                    "__connect.errors.exception.class.name",
                    b"org.apache.kafka.connect.errors.DataException".to_vec(),
                ),
                (
                    "__connect.errors.exception.message",
                    b"Unknown magic byte!".to_vec(),
                ),
            ],
        ),
        (
            "karafka",
            vec![
                ("source_topic", b"shipping".to_vec()),
                ("source_partition", b"0".to_vec()),
                ("source_offset", b"31".to_vec()),
                ("source_consumer_group", b"shippers".to_vec()),
                ("source_attempts", b"4".to_vec()),
            ],
        ),
        (
            "karafka_legacy",
            vec![
                ("original_topic", b"shipping".to_vec()),
                ("original_partition", b"1".to_vec()),
                ("original_offset", b"32".to_vec()),
                ("original_consumer_group", b"shippers-old".to_vec()),
            ],
        ),
        (
            "kafka_streams",
            vec![
                (
                    "__streams.errors.exception",
                    b"org.apache.kafka.common.errors.SerializationException".to_vec(),
                ),
                (
                    "__streams.errors.message",
                    b"Size of data received by IntegerDeserializer is not 4".to_vec(),
                ),
                ("__streams.errors.topic", b"clicks".to_vec()),
                ("__streams.errors.partition", b"0".to_vec()),
                ("__streams.errors.offset", b"5".to_vec()),
            ],
        ),
        (
            "spring_cloud_stream",
            vec![
                ("x-original-topic", b"notifications".to_vec()),
                ("x-original-partition", be32(0)),
                ("x-original-offset", be64(8)),
                (
                    "x-exception-fqcn",
                    b"org.springframework.messaging.MessageDeliveryException".to_vec(),
                ),
                ("x-exception-message", b"SMTP refused".to_vec()),
            ],
        ),
        (
            "dlq_dashboard",
            vec![
                ("dlq-origin-topic", b"orders".to_vec()),
                ("dlq-origin-partition", b"2".to_vec()),
                ("dlq-origin-offset", b"11".to_vec()),
                ("dlq-consumer-group", b"order-service".to_vec()),
                ("dlq-error-class", b"TimeoutError".to_vec()),
                (
                    "dlq-error-message",
                    b"Database Connection Timeout!".to_vec(),
                ),
                ("dlq-attempts", b"5".to_vec()),
            ],
        ),
        ("none", vec![("traceparent", b"00-abc-def-01".to_vec())]),
    ];
    let mut offsets = Vec::new();
    for (name, headers) in &cases {
        let hs: Vec<(&str, Option<&[u8]>)> = headers
            .iter()
            .map(|(n, v)| (*n, Some(v.as_slice())))
            .collect();
        offsets.push(
            kafka
                .send(TOPIC, Some(0), Some(name.as_bytes()), Some(b"{}"), &hs)
                .await,
        );
    }
    d.wait_indexed(cases.len() as i64).await;

    let get = |i: usize| {
        let (p, o) = offsets[i];
        let d = &d;
        async move {
            let (status, v) = d.get_json(&format!("/api/messages/{TOPIC}/{p}/{o}")).await;
            assert_eq!(status, 200);
            v
        }
    };
    for (i, (name, _)) in cases.iter().enumerate() {
        let v = get(i).await;
        assert_eq!(v["convention"], *name, "record {i}");
        assert_eq!(v["key"], *name);
    }

    let v: Value = get(0).await;
    assert_eq!(v["origin"]["topic"], "payments");
    assert_eq!(
        v["origin"]["partition"], 2,
        "Spring's binary partition is decoded"
    );
    assert_eq!(
        v["origin"]["offset"], 1_234_567,
        "Spring's binary offset is decoded"
    );
    assert_eq!(v["origin"]["timestamp"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["origin"]["consumer_group"], "payment-service");
    assert_eq!(
        v["error"]["class"], "java.lang.IllegalStateException",
        "the cause, not Spring's wrapper"
    );
    assert_eq!(v["error"]["message"], "Account 42 is frozen");
    assert!(v["error"]["stacktrace"]
        .as_str()
        .unwrap()
        .contains("A.java:1"));
    assert_eq!(v["attempts"], 3);

    let v = get(1).await;
    assert_eq!(
        (
            v["origin"]["topic"].as_str(),
            v["origin"]["offset"].as_i64()
        ),
        (Some("orders"), Some(77))
    );
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["error"]["class"], "java.net.SocketTimeoutException");

    let v = get(2).await;
    assert_eq!(v["origin"]["topic"], "inventory");
    assert_eq!(v["origin"]["partition"], 1);
    assert_eq!(v["origin"]["offset"], 900);
    assert_eq!(v["origin"]["consumer_group"], "connect-jdbc-sink");
    assert_eq!(
        v["error"]["class"],
        "org.apache.kafka.connect.errors.DataException"
    );

    let v = get(3).await;
    assert_eq!(v["origin"]["consumer_group"], "shippers");
    assert_eq!(v["attempts"], 4);
    assert_eq!(v["origin"]["offset"], 31);

    let v = get(4).await;
    assert_eq!(v["origin"]["consumer_group"], "shippers-old");
    assert_eq!(v["origin"]["partition"], 1);

    let v = get(5).await;
    assert_eq!(v["origin"]["topic"], "clicks");
    assert_eq!(
        v["error"]["class"],
        "org.apache.kafka.common.errors.SerializationException"
    );

    let v = get(6).await;
    assert_eq!(v["origin"]["offset"], 8);
    assert_eq!(v["error"]["message"], "SMTP refused");

    let v = get(7).await;
    assert_eq!(v["error"]["class"], "TimeoutError");
    assert_eq!(v["attempts"], 5);

    let v = get(8).await;
    assert!(v["origin"]["topic"].is_null() && v["error"]["class"].is_null());
    assert_eq!(v["headers"][0]["name"], "traceparent");
    assert_eq!(v["headers"][0]["value"], "00-abc-def-01");

    // Filters over normalised fields.
    let (_, page) = d
        .get_json(&format!(
            "/api/messages?origin_topic=shipping&topic={TOPIC}"
        ))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    let (_, page) = d.get_json("/api/messages?error_class=TimeoutError").await;
    assert_eq!(page["messages"][0]["key"], "dlq_dashboard");
    d.stop().await;
}
