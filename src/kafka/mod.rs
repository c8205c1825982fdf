//! Kafka plumbing: client configuration, the embedded mock cluster, and cluster status.

pub mod mock;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Where the dashboard's Kafka is and how to reach it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Extra librdkafka properties from `--kafka-config`, applied last so they win.
    pub extra: Vec<(String, String)>,
    /// Whether `brokers` is the embedded mock cluster.
    pub embedded: bool,
}

impl KafkaSettings {
    /// Base client configuration shared by every client the dashboard creates.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "dlq-dashboard")
            .set_log_level(self.log_level());
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    /// librdkafka's own log level: quiet by default (a broker outage is reported through the
    /// status banner; librdkafka would repeat it every second), or what `log_level=N` asks
    /// for, e.g. with `debug=cgrp,fetch` when chasing a broker's behaviour.
    fn log_level(&self) -> RDKafkaLogLevel {
        let asked = self
            .extra
            .iter()
            .rev()
            .find(|(k, _)| k == "log_level")
            .and_then(|(_, v)| v.parse::<u8>().ok());
        match asked {
            Some(0) => RDKafkaLogLevel::Emerg,
            Some(1) => RDKafkaLogLevel::Alert,
            Some(2) => RDKafkaLogLevel::Critical,
            Some(3) => RDKafkaLogLevel::Error,
            Some(4) => RDKafkaLogLevel::Warning,
            Some(5) => RDKafkaLogLevel::Notice,
            Some(6) => RDKafkaLogLevel::Info,
            Some(_) => RDKafkaLogLevel::Debug,
            None => RDKafkaLogLevel::Critical,
        }
    }

    /// Configuration of a producer whose every delivery is confirmed by all in-sync replicas.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "dlq-dashboard")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set_log_level(self.log_level());
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// The cluster's topic names, fetched at most every few seconds, for checks shown on pages
/// (such as whether a replay target exists).
pub struct TopicCache {
    client: Arc<BaseConsumer>,
    cached: Mutex<Option<(Instant, Arc<BTreeSet<String>>)>>,
}

impl TopicCache {
    /// How long a fetched list is reused.
    const FRESH: Duration = Duration::from_secs(5);

    /// A cache over a plain client of `settings` (no group; it only asks for metadata).
    pub fn new(settings: &KafkaSettings) -> crate::error::Result<Self> {
        Ok(TopicCache {
            client: Arc::new(settings.client_config().create()?),
            cached: Mutex::new(None),
        })
    }

    /// The topic names, or None when no broker answered.
    pub async fn topics(&self) -> Option<Arc<BTreeSet<String>>> {
        if let Some((at, topics)) = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < Self::FRESH {
                return Some(topics.clone());
            }
        }
        let client = self.client.clone();
        // fetch_metadata blocks on a broker round trip.
        let fetched = tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|md| {
                    md.topics()
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect::<BTreeSet<_>>()
                })
        })
        .await
        .ok()?
        .ok()?;
        let topics = Arc::new(fetched);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), topics.clone()));
        Some(topics)
    }
}
