//! Kafka plumbing: client configuration, the embedded mock cluster, and cluster status.

pub mod admin;
pub mod child;
pub mod mock;
/// The crate's C calls outside the store (librdkafka's headers and mock cluster, glibc's
/// `malloc_trim`) behind safe functions and types.
pub mod native;

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
    /// Compression of replayed records.
    pub replay_compression: Compression,
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
            .set("linger.ms", "5")
            .set_log_level(self.log_level());
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// A codec of Kafka record batches, as librdkafka's `compression.type` names it.
///
/// Replays default to [`Compression::DEFAULT_REPLAY`] because a replayed record is read by
/// the consumer service, whatever its client: Java, librdkafka-based clients, Sarama and
/// franz-go read every codec, but KafkaJS reads only gzip without codec plugins (and
/// kafka-python needs extra packages for lz4, snappy and zstd), so an lz4 batch stops a
/// KafkaJS consumer group with `KafkaJSNotImplemented`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, sqlx::Type, serde::Serialize,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed batches: every client reads them.
    None,
    /// gzip: every mainstream client reads it without plugins.
    Gzip,
    /// Snappy: not readable by KafkaJS or kafka-python without plugins.
    Snappy,
    /// LZ4: not readable by KafkaJS or kafka-python without plugins.
    Lz4,
    /// Zstandard: not readable by KafkaJS or kafka-python without plugins.
    Zstd,
}

impl Compression {
    /// The replay default (see the README's "Replay compatibility" for the measurement
    /// behind it).
    pub const DEFAULT_REPLAY: Compression = Compression::None;

    /// librdkafka's name of the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec librdkafka calls `name` (any case).
    pub fn from_name(name: &str) -> Option<Compression> {
        <Compression as clap::ValueEnum>::from_str(name.trim(), true).ok()
    }

    /// Whether every mainstream client (Java, librdkafka-based, KafkaJS, Sarama, franz-go,
    /// kafka-python) reads it without plugins.
    pub fn read_by_every_client(self) -> bool {
        matches!(self, Compression::None | Compression::Gzip)
    }

    /// The compression replays use: `--replay-compression` when given, else a
    /// `compression.type` (or its alias `compression.codec`) given with `--kafka-config`,
    /// else the default. A `--kafka-config` value librdkafka would not take is an error.
    pub fn for_replay(
        flag: Option<Compression>,
        extra: &[(String, String)],
    ) -> std::result::Result<Compression, String> {
        if let Some(c) = flag {
            return Ok(c);
        }
        let configured = extra
            .iter()
            .rev()
            .find(|(k, _)| k == "compression.type" || k == "compression.codec");
        match configured {
            None => Ok(Compression::DEFAULT_REPLAY),
            Some((key, value)) => Compression::from_name(value).ok_or_else(|| {
                format!(
                    "--kafka-config {key}={value} names no codec; use none, gzip, snappy, lz4 or zstd (or --replay-compression)."
                )
            }),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replays_default_to_a_codec_every_client_reads() {
        let c = Compression::for_replay(None, &[]).unwrap();
        assert_eq!(c, Compression::DEFAULT_REPLAY);
        assert!(c.read_by_every_client());
        assert!(!Compression::Lz4.read_by_every_client());
    }

    #[test]
    fn the_flag_wins_then_kafka_config_then_the_default() {
        let lz4 = extra(&[("compression.type", "lz4")]);
        assert_eq!(
            Compression::for_replay(Some(Compression::Gzip), &lz4).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::for_replay(None, &lz4).unwrap(),
            Compression::Lz4
        );
        assert_eq!(
            Compression::for_replay(None, &extra(&[("compression.codec", "ZSTD")])).unwrap(),
            Compression::Zstd
        );
        let bad = Compression::for_replay(None, &extra(&[("compression.type", "brotli")]));
        assert!(bad.unwrap_err().contains("brotli"));
    }
}
