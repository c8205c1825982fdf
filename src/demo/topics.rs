//! The demo's topics: created on the embedded cluster directly, and on a real cluster
//! (`dlq-dashboard demo --brokers ...`) through the Admin API, touching only topics the
//! demo created itself.
//!
//! Kafka keeps no owner of a topic and refuses unknown topic configs, so the demo keeps
//! its own record: [`REGISTRY`], a compacted topic with one record per topic it created.
//! A demo topic that exists without such a record belongs to someone else, and the demo
//! refuses to start rather than produce into it or consume from it.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{order_service as o, payments as p};
use crate::error::{Error, Result};
use crate::kafka::mock::EmbeddedCluster;
use crate::kafka::{native, KafkaSettings};

/// Topics of the demo: (name, partitions). The order and payments pipelines, then the
/// services of the static backlog, each with a live, a retry and a DLQ topic, so every DLQ
/// record has somewhere a replay could go.
pub const DEMO_TOPICS: &[(&str, i32)] = &[
    (o::LIVE, 3),
    (o::RETRIES[0], 3),
    (o::RETRIES[1], 3),
    (o::DLQ, 3),
    (p::LIVE, 3),
    (p::RETRY, 3),
    (p::DLT, 3),
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

/// The topic in which the demo records the topics it created on a real cluster.
pub const REGISTRY: &str = "dlq-dashboard-demo.topics";

/// How long the broker may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Create the demo topics on the embedded cluster.
pub fn create_topics(cluster: &EmbeddedCluster) -> Result<()> {
    for (name, partitions) in DEMO_TOPICS {
        cluster.create_topic(name, *partitions)?;
    }
    Ok(())
}

/// The demo topics that exist but are not the demo's, given the cluster's topics and the
/// ones the registry names.
pub fn foreign<'a>(existing: &BTreeSet<String>, owned: &BTreeSet<String>) -> Vec<&'a str> {
    DEMO_TOPICS
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| existing.contains(*t) && !owned.contains(*t))
        .collect()
}

/// The sentence refusing to touch `topics`.
pub fn refusal(topics: &[&str], brokers: &str) -> String {
    let (them, are) = if topics.len() == 1 {
        (format!("Topic {}", topics[0]), "exists")
    } else {
        (format!("Topics {}", topics.join(", ")), "exist")
    };
    format!(
        "{them} already {are} on {brokers} and the demo did not create {}, so it will not produce into or consume from {}; run the demo against a cluster without {}, or delete {} if {} only a test's.",
        if topics.len() == 1 { "it" } else { "them" },
        if topics.len() == 1 { "it" } else { "them" },
        if topics.len() == 1 { "that topic" } else { "those topics" },
        if topics.len() == 1 { "it" } else { "them" },
        if topics.len() == 1 { "it is" } else { "they are" },
    )
}

/// On a real cluster: create the demo topics that are missing, after checking that those
/// present are the demo's own; a refusal names the topic and why.
pub async fn create_on_cluster(kafka: &KafkaSettings) -> Result<()> {
    let mut config = kafka.client_config();
    // librdkafka assigns partitions only to a consumer with a group id (it refuses with
    // "Unknown group" otherwise); this one never joins its group nor commits.
    config
        .set("group.id", "dlq-dashboard-demo-registry")
        .set("enable.auto.commit", "false");
    let probe: BaseConsumer = config.create()?;
    let (existing, owned) = tokio::task::spawn_blocking(move || -> Result<_> {
        let md = probe.fetch_metadata(None, TIMEOUT).map_err(|e| {
            Error::Config(format!(
                "The demo cannot read the topics of the cluster ({e}); check --brokers."
            ))
        })?;
        let existing: BTreeSet<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
        let owned = if existing.contains(REGISTRY) {
            read_registry(&probe)?
        } else {
            BTreeSet::new()
        };
        Ok((existing, owned))
    })
    .await
    .map_err(|e| Error::Internal(format!("topic check stopped: {e}")))??;
    let refused = foreign(&existing, &owned);
    if !refused.is_empty() {
        return Err(Error::Config(refusal(&refused, &kafka.brokers)));
    }
    let mut missing: Vec<(&str, i32)> = DEMO_TOPICS
        .iter()
        .filter(|(t, _)| !existing.contains(*t))
        .copied()
        .collect();
    if !existing.contains(REGISTRY) {
        missing.insert(0, (REGISTRY, 1));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions)| {
            // -1: the broker's default replication factor (KIP-464).
            let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(-1));
            if *name == REGISTRY {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT));
    let answers = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| creation_refused(missing[0].0, &e.to_string(), &kafka.brokers))?;
    let created: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok().cloned())
        .collect();
    // Record what was created before giving up on a refusal, so the next run knows them.
    record_owned(kafka, &created).await?;
    if let Some(Err((topic, code))) = answers.into_iter().find(|a| a.is_err()) {
        return Err(creation_refused(&topic, &code.to_string(), &kafka.brokers));
    }
    tracing::info!(
        topics = created.len(),
        "demo topics created on {}",
        kafka.brokers
    );
    Ok(())
}

fn creation_refused(topic: &str, reason: &str, brokers: &str) -> Error {
    Error::Config(format!(
        "The demo cannot create topic {topic} on {brokers}: the broker refused ({reason}); give the demo a cluster where it may create topics."
    ))
}

/// The topic names the registry holds, read from its start to its end.
fn read_registry(probe: &BaseConsumer) -> Result<BTreeSet<String>> {
    let (low, mut high) = probe.fetch_watermarks(REGISTRY, 0, TIMEOUT)?;
    let mut owned = BTreeSet::new();
    if high <= low {
        return Ok(owned);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(REGISTRY, 0, Offset::Beginning)?;
    probe.assign(&tpl)?;
    let started = std::time::Instant::now();
    while started.elapsed() < TIMEOUT {
        match probe.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    owned.insert(k.to_string());
                }
                // Some brokers (tansu) answer ListOffsets with a high watermark that is too
                // low; the fetch responses' own, which librdkafka caches, is the truth.
                if let Some((_, fetched)) = native::cached_watermarks(probe.client(), REGISTRY, 0) {
                    high = high.max(fetched);
                }
                if m.offset() + 1 >= high {
                    return Ok(owned);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Err(Error::Config(format!(
        "The demo could not read {REGISTRY} to its end within {}s; check the cluster.",
        TIMEOUT.as_secs()
    )))
}

async fn record_owned(kafka: &KafkaSettings, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let producer: FutureProducer = kafka.producer_config().create()?;
    let note = format!(
        "created by dlq-dashboard demo at {}",
        crate::clock::iso(crate::clock::now_ms())
    );
    for t in topics.iter().filter(|t| t.as_str() != REGISTRY) {
        let record = FutureRecord::to(REGISTRY)
            .key(t.as_str())
            .payload(note.as_str());
        producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(e, _)| Error::Config(format!("The demo created topic {t} but could not record that in {REGISTRY} ({e}); delete {t} before the next run.")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::TopicSelection;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_topics_the_registry_names_are_the_demos() {
        assert!(foreign(&set(&[]), &set(&[])).is_empty());
        assert!(foreign(&set(&["orders", "other"]), &set(&["orders"])).is_empty());
        assert_eq!(
            foreign(&set(&["orders", "payments"]), &set(&["payments"])),
            vec!["orders"]
        );
        let s = refusal(&["orders"], "k:9092");
        assert!(
            s.starts_with("Topic orders already exists on k:9092 and the demo did not create it"),
            "{s}"
        );
        assert!(refusal(&["a", "b"], "k").starts_with("Topics a, b already exist"));
    }

    #[test]
    fn every_dlq_topic_has_a_live_and_a_retry_topic() {
        let selection = TopicSelection::parse(&[]).unwrap();
        let rules = crate::replay::target::TargetRules::parse(
            &super::super::REPLAY_TARGETS
                .iter()
                .map(|(d, r)| format!("{d}={r}"))
                .collect::<Vec<_>>(),
            crate::replay::target::DEFAULT_TEMPLATE,
        )
        .unwrap();
        let has = |t: &str| DEMO_TOPICS.iter().any(|(n, _)| *n == t);
        for (dlq, _) in DEMO_TOPICS.iter().filter(|(t, _)| selection.matches(t)) {
            let base = &dlq[..dlq.len() - 4];
            assert!(has(base), "{dlq}: no live topic {base}");
            let retry = super::super::REPLAY_TARGETS
                .iter()
                .find(|(d, _)| d == dlq)
                .map(|(_, r)| r.to_string())
                .unwrap_or_else(|| format!("{base}.retry.1"));
            assert!(has(&retry), "{dlq}: no {retry}");
        }
        assert!(!selection.matches(REGISTRY), "the registry is no DLQ topic");
        let _ = rules;
    }
}
