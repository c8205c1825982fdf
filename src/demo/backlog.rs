//! The static backlog: failed records in the conventions the live services do not write
//! (Kafka Connect, Karafka, Kafka Streams, Spring Cloud Stream, none), spread over the last
//! day, then a slow trickle, so the dashboard shows mapping and normalisation of each.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::orders::uuid_like;
use crate::clock::now_ms;

/// Records in the initial backlog.
const BACKLOG: usize = 600;

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
    let origin_offset = rng.random_range(1_000..900_000_i64);
    // orders.dlq and payments-dlt are filled by the live pipeline, not here.
    match rng.random_range(50..100) {
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
            assert!(super::super::DEMO_TOPICS.iter().any(|(t, _)| *t == r.topic));
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
}
