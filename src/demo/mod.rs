//! The embedded demo: topics on the in-process cluster and a producer of realistic failed
//! records, in several header conventions, with a backlog over the last day and a slow
//! trickle afterwards.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::error::Result;
use crate::kafka::mock::EmbeddedCluster;

/// Topics created on the embedded cluster: (name, partitions). Live topics and retry topics
/// are there too, so the demo shows where a replay goes.
pub const DEMO_TOPICS: &[(&str, i32)] = &[
    ("orders", 3),
    ("orders.retry.1", 3),
    ("orders.retry.2", 3),
    ("orders.dlq", 3),
    ("payments", 3),
    ("payments.retry.1", 3),
    ("payments-dlt", 3),
    ("inventory", 2),
    ("inventory.retry.1", 2),
    ("inventory.dlq", 2),
    ("shipping", 2),
    ("shipping.retry.1", 2),
    ("shipping_dlq", 2),
    ("clickstream", 2),
    ("clickstream.retry.1", 2),
    ("clickstream.DLQ", 2),
    ("notifications", 1),
    ("notifications.retry.1", 1),
    ("notifications-dlq", 1),
    ("raw-events", 1),
    ("raw-events.retry.1", 1),
    ("raw-events_dlt", 1),
];

/// Records in the initial backlog.
const BACKLOG: usize = 600;

/// Create the demo topics.
pub fn create_topics(cluster: &EmbeddedCluster) -> Result<()> {
    for (name, partitions) in DEMO_TOPICS {
        cluster.create_topic(name, *partitions)?;
    }
    Ok(())
}

/// One record the demo publishes.
#[derive(Debug, Clone)]
pub struct DemoRecord {
    /// DLQ topic.
    pub topic: &'static str,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Timestamp, ms.
    pub timestamp: i64,
}

fn text(name: &str, value: impl Into<String>) -> (String, Vec<u8>) {
    (name.to_string(), value.into().into_bytes())
}

fn uuid_like(rng: &mut StdRng) -> String {
    let n: u128 = rng.random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn stack(class: &str, message: &str, frames: &[&str]) -> String {
    let mut s = format!("{class}: {message}\n");
    for f in frames {
        s.push_str(&format!("\tat {f}\n"));
    }
    s
}

/// A realistic failed record at time `at`; which service failed is drawn from `rng`.
pub fn demo_record(rng: &mut StdRng, at: i64) -> DemoRecord {
    let order = format!("ord-{}", rng.random_range(10_000..99_999));
    let customer = rng.random_range(1000..9999);
    let amount = rng.random_range(1..50_000) as f64 / 100.0;
    let origin_partition: i32 = rng.random_range(0..3);
    let origin_offset = rng.random_range(1_000..900_000_i64);
    let order_json = format!(
        r#"{{"order_id":"{order}","customer_id":{customer},"amount":{amount:.2},"currency":"EUR","items":[{{"sku":"SKU-{}","qty":{}}}],"created_at":"{}"}}"#,
        rng.random_range(100..999),
        rng.random_range(1..5),
        crate::filter::format_time(at - 5_000)
    );
    match rng.random_range(0..100) {
        // The seed scenario: transient database timeouts that exhausted their retries.
        0..=29 => {
            let (class, message) = match rng.random_range(0..3) {
                0 => ("TimeoutError", "Database Connection Timeout!".to_string()),
                1 => ("ValidationError", format!("field 'amount' must be at most 10000.00, got {amount:.2}")),
                _ => ("PaymentGatewayError", format!("upstream returned 503 for order {order} after 5 attempts")),
            };
            DemoRecord {
                topic: "orders.dlq",
                key: Some(order.clone().into_bytes()),
                value: Some(order_json.into_bytes()),
                headers: vec![
                    text("dlq-origin-topic", "orders"),
                    text("dlq-origin-partition", origin_partition.to_string()),
                    text("dlq-origin-offset", origin_offset.to_string()),
                    text("dlq-origin-timestamp", (at - 4_000).to_string()),
                    text("dlq-consumer-group", "order-service"),
                    text("dlq-error-class", class),
                    text("dlq-error-message", message.clone()),
                    text(
                        "dlq-error-stacktrace",
                        stack(class, &message, &["Runner.eachMessage (order-service/consumer.js:24:15)", "Runner.processEachMessage (node_modules/kafkajs/src/consumer/runner.js:231:20)"]),
                    ),
                    text("dlq-attempts", "5"),
                    text("traceparent", format!("00-{:032x}-{:016x}-01", rng.random::<u128>(), rng.random::<u64>())),
                ],
                timestamp: at,
            }
        }
        // Spring Kafka DeadLetterPublishingRecoverer, with binary big-endian coordinates.
        30..=49 => {
            let (cause, message) = match rng.random_range(0..3) {
                0 => (
                    "com.fasterxml.jackson.core.JsonParseException",
                    format!("Unexpected character ('}}' (code 125)): was expecting double-quote to start field name at [Source: (byte[]); line: 1, column: {}]", rng.random_range(20..90)),
                ),
                1 => ("java.lang.IllegalStateException", format!("Account {customer} is frozen")),
                _ => (
                    "org.springframework.dao.DataIntegrityViolationException",
                    format!("duplicate key value violates unique constraint \"payments_pkey\" Detail: Key (id)=({}) already exists.", rng.random_range(1..99999)),
                ),
            };
            let value = if cause.ends_with("JsonParseException") {
                format!(r#"{{"payment_id":"{}","amount":{amount:.2},}}"#, uuid_like(rng))
            } else {
                format!(r#"{{"payment_id":"{}","order_id":"{order}","amount":{amount:.2},"status":"CAPTURE"}}"#, uuid_like(rng))
            };
            let wrapper = "org.springframework.kafka.listener.ListenerExecutionFailedException";
            DemoRecord {
                topic: "payments-dlt",
                key: Some(order.clone().into_bytes()),
                value: Some(value.into_bytes()),
                headers: vec![
                    ("kafka_dlt-original-topic".into(), b"payments".to_vec()),
                    ("kafka_dlt-original-partition".into(), origin_partition.to_be_bytes().to_vec()),
                    ("kafka_dlt-original-offset".into(), origin_offset.to_be_bytes().to_vec()),
                    ("kafka_dlt-original-timestamp".into(), (at - 9_000).to_be_bytes().to_vec()),
                    text("kafka_dlt-original-timestamp-type", "CreateTime"),
                    text("kafka_dlt-original-consumer-group", "payment-service"),
                    text("kafka_dlt-exception-fqcn", wrapper),
                    text("kafka_dlt-exception-cause-fqcn", cause),
                    text("kafka_dlt-exception-message", format!("Listener method 'onPayment' threw exception; nested exception is {cause}: {message}")),
                    text(
                        "kafka_dlt-exception-stacktrace",
                        stack(wrapper, &message, &["org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer.decorateException(KafkaMessageListenerContainer.java:2927)", "com.example.payments.PaymentListener.onPayment(PaymentListener.java:57)"]),
                    ),
                    ("retry_topic-attempts".into(), 3_i32.to_be_bytes().to_vec()),
                ],
                timestamp: at,
            }
        }
        // Kafka Connect sink with errors.deadletterqueue.context.headers.enable=true.
        50..=61 => DemoRecord {
            topic: "inventory.dlq",
            key: Some(format!("SKU-{}", rng.random_range(100..999)).into_bytes()),
            value: Some(vec![0x00, 0x00, 0x00, 0x00, 0x07, 0x02, 0x0c, b'w', b'i', b'd', b'g', b'e', b't', 0xff, 0xfe]),
            headers: vec![
                text("__connect.errors.topic", "inventory"),
                text("__connect.errors.partition", rng.random_range(0..2).to_string()),
                text("__connect.errors.offset", origin_offset.to_string()),
                text("__connect.errors.connector.name", "inventory-jdbc-sink"),
                text("__connect.errors.task.id", "0"),
                text("__connect.errors.stage", "VALUE_CONVERTER"),
                text("__connect.errors.class.name", "io.confluent.connect.avro.AvroConverter"),
                text("__connect.errors.exception.class.name", "org.apache.kafka.connect.errors.DataException"),
                text("__connect.errors.exception.message", "Failed to deserialize data for topic inventory to Avro: Unknown magic byte!"),
                text("__connect.errors.exception.stacktrace", stack("org.apache.kafka.connect.errors.DataException", "Failed to deserialize data for topic inventory to Avro", &["io.confluent.connect.avro.AvroConverter.toConnectData(AvroConverter.java:148)"])),
            ],
            timestamp: at,
        },
        // Karafka, both the 2.5+ and the older header names.
        62..=73 => {
            let prefix = if rng.random_bool(0.5) { "source" } else { "original" };
            DemoRecord {
                topic: "shipping_dlq",
                key: Some(order.clone().into_bytes()),
                value: Some(format!(r#"{{"shipment":"{}","order_id":"{order}","carrier":"DHL","weight_kg":{}}}"#, uuid_like(rng), rng.random_range(1..40)).into_bytes()),
                headers: vec![
                    text(&format!("{prefix}_topic"), "shipping"),
                    text(&format!("{prefix}_partition"), rng.random_range(0..2).to_string()),
                    text(&format!("{prefix}_offset"), origin_offset.to_string()),
                    text(&format!("{prefix}_consumer_group"), "shipping-consumers"),
                    text(&format!("{prefix}_attempts"), rng.random_range(2..6).to_string()),
                ],
                timestamp: at,
            }
        }
        // Kafka Streams (KIP-1034).
        74..=83 => DemoRecord {
            topic: "clickstream.DLQ",
            key: Some(vec![0, 0, 0x30, 0x39]),
            value: Some(b"page=/checkout&session=\xc3\x28broken".to_vec()),
            headers: vec![
                text("__streams.errors.exception", "org.apache.kafka.common.errors.SerializationException"),
                text("__streams.errors.message", format!("Size of data received by IntegerDeserializer is not 4 (got {})", rng.random_range(5..40))),
                text("__streams.errors.stacktrace", stack("org.apache.kafka.common.errors.SerializationException", "Size of data received by IntegerDeserializer is not 4", &["org.apache.kafka.common.serialization.IntegerDeserializer.deserialize(IntegerDeserializer.java:40)"])),
                text("__streams.errors.topic", "clickstream"),
                text("__streams.errors.partition", rng.random_range(0..2).to_string()),
                text("__streams.errors.offset", origin_offset.to_string()),
            ],
            timestamp: at,
        },
        // Spring Cloud Stream Kafka binder.
        84..=91 => DemoRecord {
            topic: "notifications-dlq",
            key: None,
            value: Some(format!(r#"{{"to":"user{customer}@example.com","template":"order-shipped","order_id":"{order}"}}"#).into_bytes()),
            headers: vec![
                text("x-original-topic", "notifications"),
                ("x-original-partition".into(), 0_i32.to_be_bytes().to_vec()),
                ("x-original-offset".into(), origin_offset.to_be_bytes().to_vec()),
                ("x-original-timestamp".into(), (at - 2_000).to_be_bytes().to_vec()),
                text("x-exception-fqcn", "org.springframework.messaging.MessageDeliveryException"),
                text("x-exception-message", format!("SMTP server refused recipient user{customer}@example.com: 550 mailbox unavailable")),
                text("x-exception-stacktrace", stack("org.springframework.messaging.MessageDeliveryException", "SMTP server refused recipient", &["com.example.notify.Mailer.send(Mailer.java:88)"])),
            ],
            timestamp: at,
        },
        // No convention at all, some of it binary, with a hostile payload now and then.
        _ => {
            let value: Vec<u8> = match rng.random_range(0..3) {
                0 => b"<script>alert('xss from a payload')</script>".to_vec(),
                1 => (0..64).map(|_| rng.random::<u8>()).collect(),
                _ => format!("legacy,csv,{order},{amount:.2}").into_bytes(),
            };
            DemoRecord { topic: "raw-events_dlt", key: None, value: Some(value), headers: vec![], timestamp: at }
        }
    }
}

/// Publish the backlog, then a few records a second until `shutdown`.
pub async fn run(producer: FutureProducer, shutdown: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(now_ms() as u64);
    let now = now_ms();
    let backlog: Vec<DemoRecord> = (0..BACKLOG)
        .map(|i| {
            // Spread over the last day, denser recently, as an incident would look.
            let age = ((BACKLOG - i) as f64 / BACKLOG as f64).powi(2) * 86_400_000.0;
            demo_record(&mut rng, now - age as i64)
        })
        .collect();
    let sends = backlog.iter().map(|r| send(&producer, r));
    let failed = futures::future::join_all(sends)
        .await
        .into_iter()
        .filter(|ok| !ok)
        .count();
    if failed > 0 {
        tracing::warn!(failed, "some demo records could not be published");
    }
    tracing::info!(
        records = BACKLOG,
        "demo backlog published; trickling new failures"
    );
    loop {
        let pause = Duration::from_millis(rng.random_range(150..600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
        let record = demo_record(&mut rng, now_ms());
        send(&producer, &record).await;
    }
}

async fn send(producer: &FutureProducer, r: &DemoRecord) -> bool {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(r.topic)
        .headers(headers)
        .timestamp(r.timestamp);
    if let Some(k) = &r.key {
        record = record.key(k);
    }
    if let Some(v) = &r.value {
        record = record.payload(v);
    }
    match producer.send(record, Duration::from_secs(10)).await {
        Ok(_) => true,
        Err((e, _)) => {
            tracing::debug!(error = %e, topic = r.topic, "demo record not published");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::normalise::{normalise, RawHeader};
    use crate::topics::TopicSelection;

    #[test]
    fn demo_records_land_on_dlq_topics_and_cover_every_convention() {
        let mut rng = StdRng::seed_from_u64(7);
        let selection = TopicSelection::parse(&[]).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let r = demo_record(&mut rng, 1_700_000_000_000);
            assert!(
                selection.matches(r.topic),
                "{} is not matched by the default pattern",
                r.topic
            );
            assert!(DEMO_TOPICS.iter().any(|(t, _)| *t == r.topic));
            let headers: Vec<RawHeader> = r
                .headers
                .iter()
                .map(|(n, v)| RawHeader {
                    name: n.clone(),
                    value: Some(v.clone()),
                })
                .collect();
            let n = normalise(&headers);
            assert!(n.problems.is_empty(), "{:?}", n.problems);
            seen.insert(n.convention.as_str());
        }
        for c in [
            "dlq_dashboard",
            "spring_dlt",
            "kafka_connect",
            "karafka",
            "karafka_legacy",
            "kafka_streams",
            "spring_cloud_stream",
            "none",
        ] {
            assert!(seen.contains(c), "demo never produced convention {c}");
        }
    }

    #[test]
    fn every_dlq_topic_has_a_live_and_a_retry_topic() {
        let selection = TopicSelection::parse(&[]).unwrap();
        for (dlq, _) in DEMO_TOPICS.iter().filter(|(t, _)| selection.matches(t)) {
            let base = &dlq[..dlq.len() - 4];
            assert!(
                DEMO_TOPICS.iter().any(|(t, _)| *t == base),
                "{dlq}: no live topic {base}"
            );
            let retry = format!("{base}.retry.1");
            assert!(
                DEMO_TOPICS.iter().any(|(t, _)| *t == retry),
                "{dlq}: no {retry}"
            );
        }
    }
}
