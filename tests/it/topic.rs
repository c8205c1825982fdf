//! Reading a topic back with a plain consumer that shares no code with the dashboard: what
//! a replay really put on the broker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Received {
    /// The value of the last header with this name (Kafka's "last header wins"), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// How far [`read_topic`] reads.
#[derive(Debug, Clone, Copy)]
pub enum ReadUntil {
    /// At least this many records, and the end of every partition: the whole topic.
    End { at_least: usize },
    /// Exactly this many records, without waiting for the end (tansu never answers a fetch
    /// at the end of a log, so the end is never reported there).
    Count(usize),
}

/// Read a topic from offset 0 of every partition (assigned partitions, no group join),
/// failing the test after `deadline`. `extra` adds librdkafka properties.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    until: ReadUntil,
    extra: &[(&str, &str)],
    deadline: Duration,
) -> Vec<Received> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("reader");
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = md.topics()[0].partitions().len();
        assert!(partitions > 0, "{topic} has no partitions");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            // An explicit offset: tansu answers ListOffsets (which Offset::Beginning asks)
            // with wrong watermarks.
            tpl.add_partition_offset(&topic, p as i32, Offset::Offset(0))
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let mut at_end = HashSet::new();
        loop {
            assert!(
                started.elapsed() < deadline,
                "timed out reading {topic}: {} records so far, {until:?}",
                out.len()
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.push(Received {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
            let done = match until {
                ReadUntil::End { at_least } => out.len() >= at_least && at_end.len() == partitions,
                ReadUntil::Count(n) => out.len() >= n,
            };
            if done {
                return out;
            }
        }
    })
    .await
    .unwrap()
}
