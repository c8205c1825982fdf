//! Mapping a consumed Kafka record to the row the index stores. Pure, so it is unit-tested
//! without a broker.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::normalise::{self, Normalised, RawHeader, ReplayOrigin};

/// How much of a payload goes into the search index.
pub const SEARCH_PREFIX_BYTES: usize = 2048;

/// One DLQ record ready to be written.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// DLQ topic.
    pub topic: String,
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Generation of the partition's log the record belongs to (set by the indexer).
    pub generation: i64,
    /// Record time in ms (the broker's or producer's timestamp, else the time indexed).
    pub ts: i64,
    /// "create" or "log_append" when the record carried a timestamp.
    pub timestamp_type: Option<&'static str>,
    /// When the dashboard indexed it, ms.
    pub indexed_at: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes, kept whole.
    pub value: Option<Vec<u8>>,
    /// Headers as stored: JSON `[[name, base64 | null], ...]`.
    pub headers_json: String,
    /// Fields parsed from the header conventions.
    pub normalised: Normalised,
    /// Failure group.
    pub fingerprint: String,
    /// The error message with variable parts masked.
    pub masked_message: Option<String>,
    /// The replay it came back from, when it carries a `dlq-replay-id`.
    pub replay_origin: Option<ReplayOrigin>,
}

impl NewRecord {
    /// Replays its lineage went through before it came back (0 for a first failure).
    pub fn lineage_replays(&self) -> i64 {
        self.replay_origin.as_ref().map_or(0, |o| o.replays)
    }
}

/// What the search index holds for one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchText {
    /// Searchable key text.
    pub key_text: String,
    /// Searchable start of the payload (empty for binary payloads).
    pub body_text: String,
    /// Searchable error text: class and message.
    pub error_text: String,
}

/// The search text of a record from its key, value and normalised error fields. The search
/// index is filled from stored rows (see `store::search`), so this takes what `records`
/// keeps rather than a consumed message.
pub fn search_text(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    error_class: Option<&str>,
    error_message: Option<&str>,
) -> SearchText {
    SearchText {
        key_text: key.map(text_prefix).unwrap_or_default(),
        body_text: value.map(text_prefix).unwrap_or_default(),
        error_text: [error_class, error_message]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The parts of a Kafka record the index needs, independent of the client library.
#[derive(Debug, Clone, Default)]
pub struct RecordParts {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms and its type, when the record has one.
    pub timestamp: Option<(i64, &'static str)>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<RawHeader>,
}

impl NewRecord {
    /// Build the stored row from a record; never fails, whatever the bytes.
    pub fn from_parts(parts: RecordParts, now_ms: i64) -> Self {
        let normalised = normalise::normalise(&parts.headers);
        // Masked once, for both the stored masked message and the fingerprint.
        let masked_message = normalised
            .error_message
            .as_deref()
            .map(normalise::mask_message);
        let fingerprint = normalise::fingerprint_of_masked(
            normalised.error_class.as_deref(),
            normalised.origin_topic.as_deref(),
            masked_message.as_deref().unwrap_or(""),
        );
        NewRecord {
            ts: parts.timestamp.map(|(t, _)| t).unwrap_or(now_ms),
            timestamp_type: parts.timestamp.map(|(_, kind)| kind),
            indexed_at: now_ms,
            headers_json: encode_headers(&parts.headers),
            replay_origin: normalise::replay_origin(&parts.headers),
            topic: parts.topic,
            partition: parts.partition,
            offset: parts.offset,
            generation: 0,
            key: parts.key,
            value: parts.value,
            normalised,
            fingerprint,
            masked_message,
        }
    }
}

/// Searchable text from the start of some bytes: the valid UTF-8 prefix of the first
/// `SEARCH_PREFIX_BYTES`, or nothing when the bytes are not text.
pub fn text_prefix(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(SEARCH_PREFIX_BYTES)];
    match std::str::from_utf8(head) {
        Ok(s) => s.to_string(),
        // Cut in the middle of a character by the prefix limit: keep what is whole.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// Headers as stored: a JSON array of `[name, base64 value or null]`, order kept.
pub fn encode_headers(headers: &[RawHeader]) -> String {
    let items: Vec<(&str, Option<String>)> = headers
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.value.as_deref().map(|v| BASE64.encode(v)),
            )
        })
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

/// Read stored headers back; a damaged column yields no headers rather than an error.
pub fn decode_headers(json: &str) -> Vec<RawHeader> {
    let items: Vec<(String, Option<String>)> = serde_json::from_str(json).unwrap_or_default();
    items
        .into_iter()
        .map(|(name, value)| RawHeader {
            name,
            value: value.and_then(|v| BASE64.decode(v).ok()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &[u8]) -> RawHeader {
        RawHeader {
            name: name.into(),
            value: Some(value.to_vec()),
        }
    }

    #[test]
    fn headers_round_trip_with_binary_and_null_values() {
        let headers = vec![
            header("kafka_dlt-original-partition", &[0, 0, 0, 2]),
            RawHeader {
                name: "empty".into(),
                value: None,
            },
            header("text", b"hello"),
            header("text", b"again"),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)), headers);
    }

    #[test]
    fn a_record_without_key_value_or_headers_still_maps() {
        let r = NewRecord::from_parts(
            RecordParts {
                topic: "t.dlq".into(),
                partition: 0,
                offset: 9,
                ..Default::default()
            },
            1234,
        );
        assert_eq!(r.ts, 1234);
        assert_eq!(r.timestamp_type, None);
        assert_eq!(r.normalised.convention.as_str(), "none");
        assert_eq!(search_text(None, None, None, None), SearchText::default());
        assert_eq!(r.headers_json, "[]");
    }

    #[test]
    fn binary_payloads_are_not_searched_and_long_text_is_cut_on_a_char_boundary() {
        assert_eq!(text_prefix(&[0xff, 0xfe, 0x00, 0x41]), "");
        let long = "é".repeat(SEARCH_PREFIX_BYTES);
        let prefix = text_prefix(long.as_bytes());
        assert!(prefix.len() <= SEARCH_PREFIX_BYTES && prefix.chars().all(|c| c == 'é'));
        assert_eq!(prefix.len(), SEARCH_PREFIX_BYTES);
    }

    #[test]
    fn error_text_and_fingerprint_come_from_headers() {
        let r = NewRecord::from_parts(
            RecordParts {
                topic: "orders.dlq".into(),
                timestamp: Some((1000, "create")),
                headers: vec![
                    header("dlq-error-class", b"TimeoutError"),
                    header("dlq-error-message", b"db timed out after 3000 ms"),
                    header("dlq-origin-topic", b"orders"),
                ],
                ..Default::default()
            },
            5,
        );
        assert_eq!(r.ts, 1000);
        let n = &r.normalised;
        let text = search_text(
            None,
            None,
            n.error_class.as_deref(),
            n.error_message.as_deref(),
        );
        assert_eq!(text.error_text, "TimeoutError db timed out after 3000 ms");
        assert_eq!(
            r.masked_message.as_deref(),
            Some("db timed out after <n> ms")
        );
        assert_eq!(r.fingerprint.len(), 16);
    }
}
