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
