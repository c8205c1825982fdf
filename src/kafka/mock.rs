//! The embedded Kafka: librdkafka's mock cluster, a real Kafka-protocol listener on 127.0.0.1
//! inside this process. Its data lives only as long as the process.
//!
//! rdkafka's own `MockCluster` hides the raw handle we need for
//! `rd_kafka_mock_group_initial_rebalance_delay_ms` (the 3 s default delays every group join)
//! and is not `Send`, so this is a small wrapper over the C API instead (its calls are in
//! [`super::native::MockCluster`]).

use std::ffi::CString;
use std::time::Duration;

use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::types::{RDKafkaRespErr, RDKafkaType};

use super::native::MockCluster;
use crate::error::{Error, Result};

/// The broker id the mock cluster names as its controller.
const CONTROLLER_ID: i32 = 0;

/// An in-process mock Kafka cluster. Dropping it stops every broker.
pub struct EmbeddedCluster {
    cluster: MockCluster,
    bootstrap: String,
    brokers: i32,
}

impl EmbeddedCluster {
    /// Start `brokers` mock brokers on free loopback ports.
    pub fn start(brokers: i32) -> Result<Self> {
        let mut config = ClientConfig::new();
        config.set_log_level(RDKafkaLogLevel::Error);
        let native = config.create_native_config()?;
        let client = Client::new(
            &config,
            native,
            RDKafkaType::RD_KAFKA_PRODUCER,
            DefaultClientContext,
        )?;
        let cluster = MockCluster::new(client, brokers).ok_or_else(|| {
            Error::Config(
                "The embedded Kafka cluster could not start; is the loopback interface up?".into(),
            )
        })?;
        let bootstrap = cluster.bootstraps();
        let cluster = Self {
            cluster,
            bootstrap,
            brokers,
        };
        // The mock cluster numbers its brokers from 1 but names broker 0 as the controller
        // in every metadata answer (its controller id is never set; librdkafka 2.12.1,
        // rdkafka_mock_handlers.c, and upstream's current code alike). Clients that go to
        // the controller cannot connect: a KafkaJS idempotent producer fails with
        // "KafkaJSBrokerNotFound: Broker 0 not found in the cached metadata". A broker with
        // id 0 makes the controller a real broker. It is not in the bootstrap list; clients
        // learn it from metadata like any other.
        check(
            cluster.cluster.broker_add(CONTROLLER_ID),
            "add the controller broker",
        )?;
        cluster.set_group_initial_rebalance_delay(Duration::from_millis(100));
        Ok(cluster)
    }

    /// The bootstrap servers, `127.0.0.1:PORT,...`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// How many brokers were asked for (ids 1..=n); the controller, broker 0, comes on top.
    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// Every broker's id, the controller's (0) included.
    pub fn broker_ids(&self) -> std::ops::RangeInclusive<i32> {
        CONTROLLER_ID..=self.brokers
    }

    /// Take every broker down: the cluster is unreachable.
    pub fn all_brokers_down(&self) -> Result<()> {
        self.broker_ids().try_for_each(|b| self.broker_down(b))
    }

    /// Bring every broker back up.
    pub fn all_brokers_up(&self) -> Result<()> {
        self.broker_ids().try_for_each(|b| self.broker_up(b))
    }

    /// Create a topic (the mock cluster does not implement CreateTopics through the Admin API).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let name = CString::new(topic)
            .map_err(|_| Error::BadRequest(format!("topic name {topic:?} contains a NUL byte")))?;
        let replication = (self.brokers + 1).min(3);
        check(
            self.cluster.topic_create(&name, partitions, replication),
            "create topic",
        )
    }

    /// How long the group coordinator waits for more members before the first assignment.
    pub fn set_group_initial_rebalance_delay(&self, delay: Duration) {
        let ms = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        self.cluster.group_initial_rebalance_delay_ms(ms);
    }

    /// Take a broker down (its listener closes connections); ids are 0 (the controller) to n.
    pub fn broker_down(&self, broker_id: i32) -> Result<()> {
        check(self.cluster.broker_set_down(broker_id), "broker down")
    }

    /// Bring a broker back up on the same port.
    pub fn broker_up(&self, broker_id: i32) -> Result<()> {
        check(self.cluster.broker_set_up(broker_id), "broker up")
    }

    /// Make the cluster answer metadata requests for `topic` with `error` (e.g.
    /// UNKNOWN_TOPIC_OR_PART, as if the topic were deleted), or normally again with
    /// NO_ERROR. The mock cluster has no topic deletion; this is how tests delete one.
    pub fn set_topic_error(&self, topic: &str, error: RDKafkaRespErr) -> Result<()> {
        let name = CString::new(topic)
            .map_err(|_| Error::BadRequest(format!("topic name {topic:?} contains a NUL byte")))?;
        self.cluster.topic_set_error(&name, error);
        Ok(())
    }

    /// Forget errors pushed for one API that have not been returned yet.
    pub fn clear_request_errors(&self, api_key: i16) {
        self.cluster.clear_request_errors(api_key);
    }

    /// Make the next `errors.len()` requests of one API (e.g. Fetch = 1) fail with these errors.
    pub fn push_request_errors(&self, api_key: i16, errors: &[RDKafkaRespErr]) {
        self.cluster.push_request_errors(api_key, errors);
    }
}

fn check(err: RDKafkaRespErr, what: &str) -> Result<()> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        let error = Error::Kafka(rdkafka::error::KafkaError::MockCluster(err.into()));
        tracing::warn!(operation = what, %error, "embedded cluster operation failed");
        Err(error)
    }
}
