//! Kafka plumbing: client configuration, the embedded mock cluster, and cluster status.

pub mod mock;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

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
            // A broker outage is reported through the status banner; librdkafka's own
            // per-connection error logs would repeat it every second.
            .set_log_level(RDKafkaLogLevel::Critical);
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
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
            .set_log_level(RDKafkaLogLevel::Critical);
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}
