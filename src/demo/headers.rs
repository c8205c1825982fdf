//! The headers a service writes when it forwards a failed record, in two conventions:
//! this project's own (`dlq-*`, see `index::normalise`) for order-service, and Spring
//! Kafka's (`kafka_original-*` on retry topics, `kafka_dlt-*` on the DLT) for payments.
//! Pure functions of the incoming record, unit-tested.
//!
//! The origin (topic, partition, offset, timestamp) is the record's first consumption on
//! the live topic and is carried unchanged through the retry topics, so the dashboard
//! groups a failure by where it entered the service, not by the hop it died on. The
//! replay headers (`dlq-replay-*`) are copied, so a replayed record that fails again comes
//! back to the DLQ carrying its `dlq-replay-id` and the dashboard links the two.

use super::failure::Failure;

/// A header as the services handle it.
pub type RawHeader = (String, Vec<u8>);

/// The record's due time on a retry topic (ms since the epoch, decimal text).
pub const DUE_AT: &str = "retry-due-at";
/// The replay id the dashboard adds.
pub const REPLAY_ID: &str = "dlq-replay-id";

/// Which convention a service writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `dlq-*` text headers.
    Native,
    /// Spring Kafka's retry topic and DLT headers (binary big-endian numbers).
    Spring,
}

/// Where a record was first consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, ms.
    pub timestamp: i64,
}

/// What a forward says about the failure.
#[derive(Debug, Clone)]
pub struct Forward<'a> {
    /// The failure.
    pub failure: &'a Failure,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The consumer group of the service.
    pub group: &'a str,
    /// Due time on the next retry topic; None when the record goes to the DLQ.
    pub due_at: Option<i64>,
}

/// The last value of a header.
pub fn last<'a>(headers: &'a [RawHeader], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// The last value of a text header.
pub fn text<'a>(headers: &'a [RawHeader], name: &str) -> Option<&'a str> {
    last(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// A number written as decimal text or as 4/8-byte big-endian binary (Spring).
fn number(v: &[u8]) -> Option<i64> {
    if let Some(n) = std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return Some(n);
    }
    match v.len() {
        4 => Some(i64::from(i32::from_be_bytes(v.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// The attempts an incoming record has been through (0 for a record on the live topic).
pub fn attempts(headers: &[RawHeader], style: HeaderStyle) -> u32 {
    let name = match style {
        HeaderStyle::Native => "dlq-attempts",
        HeaderStyle::Spring => "retry_topic-attempts",
    };
    last(headers, name)
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// When an incoming record on a retry topic is due (None: at once).
pub fn due_at(headers: &[RawHeader], style: HeaderStyle) -> Option<i64> {
    let name = match style {
        HeaderStyle::Native => DUE_AT,
        HeaderStyle::Spring => "retry_topic-backoff-timestamp",
    };
    last(headers, name).and_then(number)
}

/// The origin the record carries from an earlier hop, else `here` (its first consumption).
pub fn origin(headers: &[RawHeader], here: Origin) -> Origin {
    let names: [&str; 4] = [
        "dlq-origin-topic",
        "dlq-origin-partition",
        "dlq-origin-offset",
        "dlq-origin-timestamp",
    ];
    for prefix in ["", "spring:kafka_original-", "spring:kafka_dlt-original-"] {
        let get = |i: usize| -> Option<&[u8]> {
            match prefix.strip_prefix("spring:") {
                None => last(headers, names[i]),
                Some(p) => last(
                    headers,
                    &format!("{p}{}", ["topic", "partition", "offset", "timestamp"][i]),
                ),
            }
        };
        let topic = get(0).and_then(|v| std::str::from_utf8(v).ok());
        let partition = get(1).and_then(number);
        let offset = get(2).and_then(number);
        if let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) {
            return Origin {
                topic: topic.to_string(),
                partition: partition as i32,
                offset,
                timestamp: get(3).and_then(number).unwrap_or(here.timestamp),
            };
        }
    }
    here
}

/// Whether a header is one a forward rewrites (the failure, the attempts, the due time,
/// the origin): those are set afresh, every other header is copied in its order.
fn rewritten(name: &str) -> bool {
    name.starts_with("dlq-origin-")
        || name.starts_with("dlq-error-")
        || name == "dlq-attempts"
        || name == "dlq-consumer-group"
        || name == DUE_AT
        || name.starts_with("kafka_original-")
        || name.starts_with("kafka_exception-")
        || name.starts_with("kafka_dlt-")
        || name.starts_with("retry_topic-")
}

fn t(name: &str, value: impl Into<String>) -> RawHeader {
    (name.to_string(), value.into().into_bytes())
}

/// The headers of the forwarded copy of a record with `headers`, first consumed at `origin`.
pub fn forwarded(
    headers: &[RawHeader],
    origin: &Origin,
    forward: &Forward<'_>,
    style: HeaderStyle,
) -> Vec<RawHeader> {
    let mut out: Vec<RawHeader> = headers
        .iter()
        .filter(|(n, _)| !rewritten(n))
        .cloned()
        .collect();
    let f = forward.failure;
    match style {
        HeaderStyle::Native => {
            out.extend([
                t("dlq-origin-topic", origin.topic.clone()),
                t("dlq-origin-partition", origin.partition.to_string()),
                t("dlq-origin-offset", origin.offset.to_string()),
                t("dlq-origin-timestamp", origin.timestamp.to_string()),
                t("dlq-consumer-group", forward.group),
                t("dlq-error-class", f.class),
                t("dlq-error-message", f.message.clone()),
                t("dlq-error-stacktrace", f.stacktrace()),
                t("dlq-attempts", forward.attempts.to_string()),
            ]);
            if let Some(due) = forward.due_at {
                out.push(t(DUE_AT, due.to_string()));
            }
        }
        HeaderStyle::Spring => {
            // Spring names the listener's wrapper as the exception and the real one as
            // its cause; on a retry topic the same headers without `dlt-`.
            let p = if forward.due_at.is_some() {
                "kafka_"
            } else {
                "kafka_dlt-"
            };
            let wrapper = "org.springframework.kafka.listener.ListenerExecutionFailedException";
            out.extend([
                t(&format!("{p}original-topic"), origin.topic.clone()),
                (
                    format!("{p}original-partition"),
                    origin.partition.to_be_bytes().to_vec(),
                ),
                (
                    format!("{p}original-offset"),
                    origin.offset.to_be_bytes().to_vec(),
                ),
                (
                    format!("{p}original-timestamp"),
                    origin.timestamp.to_be_bytes().to_vec(),
                ),
                t(&format!("{p}original-timestamp-type"), "CreateTime"),
                t(&format!("{p}original-consumer-group"), forward.group),
                t(&format!("{p}exception-fqcn"), wrapper),
                t(&format!("{p}exception-cause-fqcn"), f.class),
                t(
                    &format!("{p}exception-message"),
                    format!(
                        "Listener method 'onPayment' threw exception; nested exception is {}: {}",
                        f.class, f.message
                    ),
                ),
                t(&format!("{p}exception-stacktrace"), f.stacktrace()),
                (
                    "retry_topic-attempts".to_string(),
                    (forward.attempts as i32).to_be_bytes().to_vec(),
                ),
            ]);
            if let Some(due) = forward.due_at {
                out.push((
                    "retry_topic-backoff-timestamp".to_string(),
                    due.to_be_bytes().to_vec(),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::normalise::{normalise, RawHeader as IndexHeader};

    fn failure() -> Failure {
        Failure {
            class: "TimeoutError",
            message: "Database Connection Timeout!".into(),
            frames: &["Db.insert(db.rs:1)"],
        }
    }

    fn here() -> Origin {
        Origin {
            topic: "orders".into(),
            partition: 2,
            offset: 40,
            timestamp: 1_700_000_000_000,
        }
    }

    fn index(headers: &[RawHeader]) -> crate::index::normalise::Normalised {
        let h: Vec<IndexHeader> = headers
            .iter()
            .map(|(n, v)| IndexHeader {
                name: n.clone(),
                value: Some(v.clone()),
            })
            .collect();
        normalise(&h)
    }

    #[test]
    fn native_forwards_keep_the_first_origin_and_the_replay_id_and_normalise() {
        let f = failure();
        let incoming = vec![t("traceparent", "00-abc"), t(REPLAY_ID, "r1-7")];
        let to_retry = forwarded(
            &incoming,
            &origin(&incoming, here()),
            &Forward {
                failure: &f,
                attempts: 5,
                group: "order-service",
                due_at: Some(99),
            },
            HeaderStyle::Native,
        );
        assert_eq!(due_at(&to_retry, HeaderStyle::Native), Some(99));
        assert_eq!(attempts(&to_retry, HeaderStyle::Native), 5);
        // The next hop, consumed from orders.retry.1 partition 0 offset 3.
        let elsewhere = Origin {
            topic: "orders.retry.1".into(),
            partition: 0,
            offset: 3,
            timestamp: 5,
        };
        let o = origin(&to_retry, elsewhere);
        assert_eq!(o, here(), "the origin is the first consumption");
        let to_dlq = forwarded(
            &to_retry,
            &o,
            &Forward {
                failure: &f,
                attempts: 7,
                group: "order-service",
                due_at: None,
            },
            HeaderStyle::Native,
        );
        assert_eq!(due_at(&to_dlq, HeaderStyle::Native), None);
        assert_eq!(text(&to_dlq, REPLAY_ID), Some("r1-7"));
        assert_eq!(
            to_dlq.iter().filter(|(n, _)| n == "dlq-attempts").count(),
            1,
            "rewritten, not appended"
        );
        let n = index(&to_dlq);
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        assert_eq!(n.convention.as_str(), "dlq_dashboard");
        assert_eq!(n.origin_topic.as_deref(), Some("orders"));
        assert_eq!(n.origin_offset, Some(40));
        assert_eq!(n.consumer_group.as_deref(), Some("order-service"));
        assert_eq!(n.attempts, Some(7));
    }

    #[test]
    fn spring_forwards_use_binary_numbers_and_the_dlt_prefix_at_the_end() {
        let f = Failure {
            class: "java.lang.IllegalStateException",
            message: "Account 7 is frozen".into(),
            frames: &[],
        };
        let here = Origin {
            topic: "payments".into(),
            ..here()
        };
        let to_retry = forwarded(
            &[],
            &here,
            &Forward {
                failure: &f,
                attempts: 1,
                group: "payment-service",
                due_at: Some(1234),
            },
            HeaderStyle::Spring,
        );
        assert_eq!(due_at(&to_retry, HeaderStyle::Spring), Some(1234));
        assert_eq!(attempts(&to_retry, HeaderStyle::Spring), 1);
        assert_eq!(index(&to_retry).convention.as_str(), "spring_retry");
        let back = origin(
            &to_retry,
            Origin {
                topic: "payments-retry-0".into(),
                partition: 1,
                offset: 1,
                timestamp: 1,
            },
        );
        assert_eq!(back, here);
        let to_dlt = forwarded(
            &to_retry,
            &back,
            &Forward {
                failure: &f,
                attempts: 2,
                group: "payment-service",
                due_at: None,
            },
            HeaderStyle::Spring,
        );
        let n = index(&to_dlt);
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        assert_eq!(n.convention.as_str(), "spring_dlt");
        assert_eq!(n.origin_topic.as_deref(), Some("payments"));
        assert_eq!(
            n.error_class.as_deref(),
            Some("java.lang.IllegalStateException")
        );
        assert!(!to_dlt.iter().any(|(n, _)| n.starts_with("kafka_original-")));
    }
}
