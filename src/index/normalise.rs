//! Header normalisation: DLQ header conventions parsed into common fields (pure, no I/O).
//!
//! Every framework that writes dead-letter records describes the failed record's origin
//! and error in its own headers. [`normalise`] reads them through one table (`SPECS`)
//! so that adding or fixing a convention is a data change, not a new parser.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// One Kafka header as read off the record, order kept; `value` is None for a null header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawHeader {
    /// Header key, exactly as on the record.
    pub name: String,
    /// Header value bytes; None for a null header.
    pub value: Option<Vec<u8>>,
}

/// The header convention a dead-letter record was written with.
///
/// Serialises as the same snake_case name as [`Convention::as_str`], so JSON and the
/// database agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// Spring Kafka `DeadLetterPublishingRecoverer` (`kafka_dlt-*`).
    SpringDlt,
    /// Spring Kafka non-blocking retry topics (`kafka_original-*`, `retry_topic-attempts`).
    SpringRetry,
    /// Kafka Connect error reporter (`__connect.errors.*`).
    KafkaConnect,
    /// Karafka 2.5 and later (`source_*`).
    Karafka,
    /// Karafka before 2.5 (`original_*`).
    KarafkaLegacy,
    /// Kafka Streams dead-letter queue, KIP-1034 (`__streams.errors.*`).
    KafkaStreams,
    /// Spring Cloud Stream Kafka binder (`x-original-*`, `x-exception-*`).
    SpringCloudStream,
    /// This project's own headers (`dlq-*`).
    DlqDashboard,
    /// No known header was found.
    #[default]
    None,
}

impl Convention {
    /// Every convention, in declaration order (`None` last).
    pub const ALL: [Convention; 9] = [
        Convention::SpringDlt,
        Convention::SpringRetry,
        Convention::KafkaConnect,
        Convention::Karafka,
        Convention::KarafkaLegacy,
        Convention::KafkaStreams,
        Convention::SpringCloudStream,
        Convention::DlqDashboard,
        Convention::None,
    ];

    /// Stable snake_case name stored in the database and shown in the API:
    /// "spring_dlt", "spring_retry", "kafka_connect", "karafka", "karafka_legacy",
    /// "kafka_streams", "spring_cloud_stream", "dlq_dashboard", "none".
    pub fn as_str(self) -> &'static str {
        match self {
            Convention::SpringDlt => "spring_dlt",
            Convention::SpringRetry => "spring_retry",
            Convention::KafkaConnect => "kafka_connect",
            Convention::Karafka => "karafka",
            Convention::KarafkaLegacy => "karafka_legacy",
            Convention::KafkaStreams => "kafka_streams",
            Convention::SpringCloudStream => "spring_cloud_stream",
            Convention::DlqDashboard => "dlq_dashboard",
            Convention::None => "none",
        }
    }

    /// The convention whose [`as_str`](Convention::as_str) is `s`; None for anything else.
    pub fn parse(s: &str) -> Option<Convention> {
        Convention::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Human label for pages.
    pub fn label(self) -> &'static str {
        match self {
            Convention::SpringDlt => "Spring Kafka DLT",
            Convention::SpringRetry => "Spring Kafka retry topics",
            Convention::KafkaConnect => "Kafka Connect",
            Convention::Karafka => "Karafka (2.5+)",
            Convention::KarafkaLegacy => "Karafka (before 2.5)",
            Convention::KafkaStreams => "Kafka Streams (KIP-1034)",
            Convention::SpringCloudStream => "Spring Cloud Stream",
            Convention::DlqDashboard => "dlq-dashboard",
            Convention::None => "No known convention",
        }
    }
}

/// The common fields read from a record's headers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Normalised {
    /// The highest-priority convention whose headers were present.
    pub convention: Convention,
    /// Topic the failed record was originally consumed from.
    pub origin_topic: Option<String>,
    /// Partition of the original record.
    pub origin_partition: Option<i32>,
    /// Offset of the original record.
    pub origin_offset: Option<i64>,
    /// Timestamp of the original record, milliseconds since the Unix epoch.
    pub origin_timestamp: Option<i64>,
    /// Consumer group that failed to process the record.
    pub consumer_group: Option<String>,
    /// Fully qualified class (or type) name of the error.
    pub error_class: Option<String>,
    /// Error message as written by the framework.
    pub error_message: Option<String>,
    /// Stack trace as written by the framework.
    pub stacktrace: Option<String>,
    /// How many times processing was attempted.
    pub attempts: Option<i64>,
    /// Plain sentences about headers that could not be read, e.g.
    /// "Header kafka_dlt-original-partition has 3 bytes; expected a 4-byte big-endian integer or decimal text."
    pub problems: Vec<String>,
}

/// Which [`Normalised`] field a header fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `origin_topic`.
    Topic,
    /// `origin_partition`.
    Partition,
    /// `origin_offset`.
    Offset,
    /// `origin_timestamp`.
    Timestamp,
    /// `consumer_group`.
    Group,
    /// `error_class`.
    ErrorClass,
    /// `error_message`.
    ErrorMessage,
    /// `stacktrace`.
    Stacktrace,
    /// `attempts`.
    Attempts,
}

/// The fields the header `name` can fill in any convention (exact names, as the
/// conventions spell them: all lower case).
pub fn fields_fed_by(name: &str) -> impl Iterator<Item = Field> + '_ {
    SPECS
        .iter()
        .flat_map(|spec| spec.fields.iter())
        .filter(move |&&(_, header)| header == name)
        .map(|&(field, _)| field)
}

/// Why the dashboard cannot work with the header `name` masked, when it is one it needs:
/// the origin coordinates of every convention (replay targets, origin filters and failure
/// groups are built on them) and the `dlq-replay-id` that links a record back to its replay.
pub fn structural_reason(name: &str) -> Option<&'static str> {
    if name == "dlq-replay-id" {
        return Some("it links a record that failed again to the replay it came back from");
    }
    fields_fed_by(name).find_map(|field| match field {
        Topic => Some("it names the record's origin topic, which replay targets, filters and failure groups are built on"),
        Partition | Offset => Some("it gives the record's origin partition and offset, which identify the failed record"),
        _ => None,
    })
}

/// How one convention spells its headers.
struct Spec {
    convention: Convention,
    /// Header per field. A field listed twice takes the first header that yields a value.
    fields: &'static [(Field, &'static str)],
    /// Headers that identify the convention but fill no field.
    markers: &'static [&'static str],
    /// Kafka Connect sends the connector name, and a sink's group id is "connect-" + that name.
    group_prefix: &'static str,
}

use Field::*;

/// Conventions in detection priority order.
static SPECS: [Spec; 8] = [
    Spec {
        convention: Convention::DlqDashboard,
        fields: &[
            (Topic, "dlq-origin-topic"),
            (Partition, "dlq-origin-partition"),
            (Offset, "dlq-origin-offset"),
            (Timestamp, "dlq-origin-timestamp"),
            (Group, "dlq-consumer-group"),
            (ErrorClass, "dlq-error-class"),
            (ErrorMessage, "dlq-error-message"),
            (Stacktrace, "dlq-error-stacktrace"),
            (Attempts, "dlq-attempts"),
        ],
        markers: &[],
        group_prefix: "",
    },
    Spec {
        convention: Convention::SpringDlt,
        fields: &[
            (Topic, "kafka_dlt-original-topic"),
            (Partition, "kafka_dlt-original-partition"),
            (Offset, "kafka_dlt-original-offset"),
            (Timestamp, "kafka_dlt-original-timestamp"),
            (Group, "kafka_dlt-original-consumer-group"),
            // The plain fqcn is usually Spring's ListenerExecutionFailedException wrapper;
            // the cause names what actually went wrong.
            (ErrorClass, "kafka_dlt-exception-cause-fqcn"),
            (ErrorClass, "kafka_dlt-exception-fqcn"),
            (ErrorMessage, "kafka_dlt-exception-message"),
            (Stacktrace, "kafka_dlt-exception-stacktrace"),
            // retry_topic-attempts belongs to SpringRetry, which fills it: listing it here
            // too would let that header alone make a retry-topic record look like a DLT one.
        ],
        markers: &["kafka_dlt-original-timestamp-type"],
        group_prefix: "",
    },
    Spec {
        convention: Convention::SpringRetry,
        fields: &[
            (Topic, "kafka_original-topic"),
            (Partition, "kafka_original-partition"),
            (Offset, "kafka_original-offset"),
            (Timestamp, "kafka_original-timestamp"),
            (Group, "kafka_original-consumer-group"),
            (ErrorClass, "kafka_exception-cause-fqcn"),
            (ErrorClass, "kafka_exception-fqcn"),
            (ErrorMessage, "kafka_exception-message"),
            (Stacktrace, "kafka_exception-stacktrace"),
            (Attempts, "retry_topic-attempts"),
        ],
        markers: &[],
        group_prefix: "",
    },
    Spec {
        convention: Convention::KafkaConnect,
        fields: &[
            (Topic, "__connect.errors.topic"),
            (Partition, "__connect.errors.partition"),
            (Offset, "__connect.errors.offset"),
            (Group, "__connect.errors.connector.name"),
            // __connect.errors.class.name is the converter or transform that ran, not the error.
            (ErrorClass, "__connect.errors.exception.class.name"),
            (ErrorMessage, "__connect.errors.exception.message"),
            (Stacktrace, "__connect.errors.exception.stacktrace"),
        ],
        markers: &[
            "__connect.errors.task.id",
            "__connect.errors.stage",
            "__connect.errors.class.name",
        ],
        group_prefix: "connect-",
    },
    Spec {
        convention: Convention::KafkaStreams,
        fields: &[
            (Topic, "__streams.errors.topic"),
            (Partition, "__streams.errors.partition"),
            (Offset, "__streams.errors.offset"),
            (ErrorClass, "__streams.errors.exception"),
            (ErrorMessage, "__streams.errors.message"),
            (Stacktrace, "__streams.errors.stacktrace"),
        ],
        markers: &[],
        group_prefix: "",
    },
    Spec {
        convention: Convention::Karafka,
        fields: &[
            (Topic, "source_topic"),
            (Partition, "source_partition"),
            (Offset, "source_offset"),
            (Group, "source_consumer_group"),
            (Attempts, "source_attempts"),
        ],
        markers: &[],
        group_prefix: "",
    },
    Spec {
        convention: Convention::KarafkaLegacy,
        fields: &[
            (Topic, "original_topic"),
            (Partition, "original_partition"),
            (Offset, "original_offset"),
            (Group, "original_consumer_group"),
            (Attempts, "original_attempts"),
        ],
        markers: &[],
        group_prefix: "",
    },
    Spec {
        convention: Convention::SpringCloudStream,
        fields: &[
            (Topic, "x-original-topic"),
            (Partition, "x-original-partition"),
            (Offset, "x-original-offset"),
            (Timestamp, "x-original-timestamp"),
            (ErrorClass, "x-exception-fqcn"),
            (ErrorMessage, "x-exception-message"),
            (Stacktrace, "x-exception-stacktrace"),
        ],
        markers: &[],
        group_prefix: "",
    },
];

/// Parses a record's headers into the common fields.
///
/// The first convention in priority order (dlq-dashboard, Spring DLT, Spring retry,
/// Kafka Connect, Kafka Streams, Karafka, Karafka legacy, Spring Cloud Stream) whose headers
/// are present names the record; fields it lacks are filled from the other matched
/// conventions in that same order. For a repeated header the last occurrence is used, even
/// if it is null or empty. Never panics; unreadable headers are described in `problems`.
pub fn normalise(headers: &[RawHeader]) -> Normalised {
    // Frameworks append on each retry, so the newest value is the last one.
    let value = |name: &str| -> Option<&[u8]> {
        headers
            .iter()
            .rev()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
    };
    let present = |name: &str| value(name).is_some_and(|v| !v.is_empty());

    let matched: Vec<&Spec> = SPECS
        .iter()
        .filter(|spec| {
            spec.fields.iter().map(|&(_, name)| name).any(present)
                || spec.markers.iter().any(|name| present(name))
        })
        .collect();

    let mut out = Normalised {
        convention: matched.first().map_or(Convention::None, |s| s.convention),
        ..Normalised::default()
    };
    for spec in matched {
        for &(field, name) in spec.fields {
            // Decoding only what is still missing keeps problems to headers that mattered.
            if out.has(field) {
                continue;
            }
            let Some(bytes) = value(name) else { continue };
            let problems = &mut out.problems;
            match field {
                Topic => out.origin_topic = text(name, bytes, problems),
                Partition => {
                    out.origin_partition =
                        int(name, bytes, Width::I32, problems).and_then(|v| i32::try_from(v).ok());
                }
                Offset => out.origin_offset = int(name, bytes, Width::I64, problems),
                Timestamp => out.origin_timestamp = int(name, bytes, Width::I64, problems),
                Group => {
                    out.consumer_group = text(name, bytes, problems)
                        .map(|group| format!("{}{group}", spec.group_prefix));
                }
                ErrorClass => out.error_class = text(name, bytes, problems),
                ErrorMessage => out.error_message = text(name, bytes, problems),
                Stacktrace => out.stacktrace = text(name, bytes, problems),
                Attempts => out.attempts = int(name, bytes, Width::I64, problems),
            }
        }
    }
    out
}

impl Normalised {
    fn has(&self, field: Field) -> bool {
        match field {
            Topic => self.origin_topic.is_some(),
            Partition => self.origin_partition.is_some(),
            Offset => self.origin_offset.is_some(),
            Timestamp => self.origin_timestamp.is_some(),
            Group => self.consumer_group.is_some(),
            ErrorClass => self.error_class.is_some(),
            ErrorMessage => self.error_message.is_some(),
            Stacktrace => self.stacktrace.is_some(),
            Attempts => self.attempts.is_some(),
        }
    }
}

/// Decodes a text header; empty or whitespace-only values count as absent.
fn text(name: &str, bytes: &[u8], problems: &mut Vec<String>) -> Option<String> {
    if bytes.trim_ascii().is_empty() {
        return None;
    }
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => Some(s.to_owned()),
        Cow::Owned(s) => {
            problems.push(format!(
                "Header {name} is not valid UTF-8; unreadable bytes were replaced with \u{FFFD}."
            ));
            Some(s)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Width {
    I32,
    I64,
}

impl Width {
    fn expected(self) -> &'static str {
        match self {
            // 8-byte partitions are tolerated but not advertised: Java writes partitions as int.
            Width::I32 => "a 4-byte big-endian integer or decimal text",
            Width::I64 => "an 8-byte or 4-byte big-endian integer or decimal text",
        }
    }

    fn bits(self) -> u32 {
        match self {
            Width::I32 => 32,
            Width::I64 => 64,
        }
    }
}

/// Decodes a numeric header: decimal text first, then 4- or 8-byte big-endian binary.
///
/// Text wins because Karafka, Connect and dlq-dashboard write text, and a 4-byte binary int
/// made only of ASCII digits (e.g. 825373492 = "1234") is far less likely than text.
fn int(name: &str, bytes: &[u8], width: Width, problems: &mut Vec<String>) -> Option<i64> {
    let result = decode_int(bytes, width).map_err(|why| format!("Header {name} {why}."));
    result.map_err(|p| problems.push(p)).ok()
}

fn decode_int(bytes: &[u8], width: Width) -> Result<i64, String> {
    let trimmed = bytes.trim_ascii();
    let digits = trimmed.strip_prefix(b"-").unwrap_or(trimmed);
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        // All ASCII, so this never takes the lossy path.
        let s = String::from_utf8_lossy(trimmed);
        let parsed = match width {
            Width::I32 => s.parse::<i32>().ok().map(i64::from),
            Width::I64 => s.parse::<i64>().ok(),
        };
        return parsed.ok_or_else(|| {
            format!(
                "holds the decimal number {}, which does not fit a {}-bit integer",
                shorten(&s, 40),
                width.bits()
            )
        });
    }
    // Binary values are matched on the untrimmed bytes: 0x20 or 0x0A are valid int bytes.
    let value = match *bytes {
        [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
        [] => return Err(format!("is empty; expected {}", width.expected())),
        [_] => return Err(format!("has 1 byte; expected {}", width.expected())),
        _ => {
            return Err(format!(
                "has {} bytes; expected {}",
                bytes.len(),
                width.expected()
            ))
        }
    };
    match width {
        Width::I32 if i32::try_from(value).is_err() => Err(format!(
            "holds the 8-byte integer {value}, which does not fit a 32-bit integer"
        )),
        _ => Ok(value),
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Longest masked message kept, in characters.
const MASKED_MAX_CHARS: usize = 300;

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
        .expect("valid UUID regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("valid email regex")
});
// A single quote right after a letter is an apostrophe ("can't"), so an opening quote must
// start the text or follow a non-word character, which group 1 keeps.
static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(^|\W)'[^'\n]*'|"[^"\n]*""#).expect("valid quoted-text regex"));
static HEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]{8,})\b").expect("valid hex regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[-+]?[0-9]+(?:\.[0-9]+)?").expect("valid number regex"));

/// The error message with variable parts masked, whitespace collapsed, trimmed, cut to 300 chars.
///
/// UUIDs become `<uuid>`, e-mail addresses `<email>`, quoted text `<str>`, `0x` numbers and
/// hex runs of 8+ characters mixing digits and letters `<hex>`, other numbers `<n>`.
/// Example: `Timeout after 3000ms talking to db-7` → `Timeout after <n>ms talking to db-<n>`.
pub fn mask_message(message: &str) -> String {
    let s = UUID.replace_all(message, "<uuid>");
    let s = EMAIL.replace_all(&s, "<email>");
    let s = QUOTED.replace_all(&s, |c: &Captures| {
        format!("{}<str>", c.get(1).map_or("", |m| m.as_str()))
    });
    let s = HEX.replace_all(&s, |c: &Captures| {
        let run = c.get(0).map_or("", |m| m.as_str());
        let is_0x = run.starts_with("0x") || run.starts_with("0X");
        // All-digit runs are ordinary numbers (offsets, ids) and must mask like shorter ones;
        // all-letter runs are mostly words ("acceded", "defaced").
        let mixed =
            run.bytes().any(|b| b.is_ascii_digit()) && run.bytes().any(|b| b.is_ascii_alphabetic());
        if is_0x || mixed {
            "<hex>".to_owned()
        } else {
            run.to_owned()
        }
    });
    let s = NUMBER.replace_all(&s, |c: &Captures| {
        let Some(m) = c.get(0) else {
            return String::new();
        };
        // In "db-7" the dash joins a name to a number; in "offset -7" it is the sign.
        let joined = s[..m.start()]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_');
        match m.as_str().chars().next() {
            Some(sign @ ('-' | '+')) if joined => format!("{sign}<n>"),
            _ => "<n>".to_owned(),
        }
    });
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = collapsed.chars().take(MASKED_MAX_CHARS).collect();
    cut.trim_end().to_owned()
}

/// Stable 16-hex-char fingerprint of error class + origin topic + masked message.
///
/// FNV-1a 64 is implemented here because std's `DefaultHasher` may change between Rust
/// releases and fingerprints are stored. Each part is followed by a 0xFF byte, which never
/// occurs in UTF-8, so parts cannot run into each other; None hashes like an empty part.
pub fn fingerprint(
    error_class: Option<&str>,
    origin_topic: Option<&str>,
    error_message: Option<&str>,
) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let masked = mask_message(error_message.unwrap_or(""));
    let mut hash = OFFSET_BASIS;
    for part in [
        error_class.unwrap_or(""),
        origin_topic.unwrap_or(""),
        &masked,
    ] {
        for &byte in part.as_bytes().iter().chain(&[0xFF]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:016x}")
}

/// The replay a DLQ record came back from: a consumer that dead-letters a replayed record
/// and copies its headers (Spring, Karafka and most hand-written services do) keeps the
/// `dlq-replay-id` the dashboard sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOrigin {
    /// The replay job (`dlq-replay-id` is `<job id>-<record id>`).
    pub job_id: String,
    /// The index row id of the record that was replayed, in the dashboard that replayed it.
    pub record_id: i64,
    /// `dlq-replay-count`: the replays the record's lineage had been through (1 when the
    /// header is missing or unreadable: it came back from at least one).
    pub replays: i64,
}

/// The replay a record came back from, if it carries a well-formed `dlq-replay-id` (the
/// last one, as frameworks append). A malformed id is no link, never an error: the record
/// is indexed as any other.
pub fn replay_origin(headers: &[RawHeader]) -> Option<ReplayOrigin> {
    let last = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    };
    let (job_id, record_id) = last("dlq-replay-id")?.rsplit_once('-')?;
    let record_id: i64 = record_id.parse().ok().filter(|id| *id > 0)?;
    if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let replays = last("dlq-replay-count")
        .and_then(|c| c.parse::<i64>().ok())
        .filter(|c| *c >= 1)
        .unwrap_or(1);
    Some(ReplayOrigin {
        job_id: job_id.to_string(),
        record_id,
        replays,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_that_came_back_from_a_replay_names_it() {
        let hs = |pairs: &[(&str, &str)]| -> Vec<RawHeader> {
            pairs
                .iter()
                .map(|(n, v)| RawHeader {
                    name: n.to_string(),
                    value: Some(v.as_bytes().to_vec()),
                })
                .collect()
        };
        assert_eq!(
            replay_origin(&hs(&[
                ("dlq-replay-id", "rab12cd34ef-77"),
                ("dlq-replay-count", "2")
            ])),
            Some(ReplayOrigin {
                job_id: "rab12cd34ef".into(),
                record_id: 77,
                replays: 2
            })
        );
        // The last id wins; a missing or unreadable count means one replay.
        let both = hs(&[
            ("dlq-replay-id", "rold-1"),
            ("dlq-replay-id", "rnew-5"),
            ("dlq-replay-count", "x"),
        ]);
        assert_eq!(
            replay_origin(&both).map(|o| (o.job_id, o.record_id, o.replays)),
            Some(("rnew".into(), 5, 1))
        );
        for bad in ["", "r1", "-5", "r1-", "r1-x", "r 1-5", "r1-0", "r1--5"] {
            assert_eq!(
                replay_origin(&hs(&[("dlq-replay-id", bad)])),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(replay_origin(&hs(&[("trace-id", "r1-5")])), None);
    }

    use super::*;

    fn h(name: &str, value: impl AsRef<[u8]>) -> RawHeader {
        RawHeader {
            name: name.to_owned(),
            value: Some(value.as_ref().to_vec()),
        }
    }

    fn null(name: &str) -> RawHeader {
        RawHeader {
            name: name.to_owned(),
            value: None,
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn spring_dlt_with_binary_ints() {
        let headers = [
            h("kafka_dlt-exception-fqcn", "org.springframework.kafka.listener.ListenerExecutionFailedException"),
            h("kafka_dlt-exception-cause-fqcn", "com.example.orders.InvalidOrderException"),
            h("kafka_dlt-exception-message", "Listener failed; nested exception is InvalidOrderException: order 42 has no lines"),
            h("kafka_dlt-exception-stacktrace", "com.example.orders.InvalidOrderException: order 42 has no lines\n\tat com.example.orders.Listener.on(Listener.java:31)"),
            h("kafka_dlt-original-topic", "orders"),
            h("kafka_dlt-original-partition", [0, 0, 0, 2]),
            h("kafka_dlt-original-offset", 1_234_567i64.to_be_bytes()),
            h("kafka_dlt-original-timestamp", 1_714_000_000_123i64.to_be_bytes()),
            h("kafka_dlt-original-timestamp-type", "CreateTime"),
            h("kafka_dlt-original-consumer-group", "order-service"),
        ];
        let n = normalise(&headers);
        assert_eq!(
            n,
            Normalised {
                convention: Convention::SpringDlt,
                origin_topic: s("orders"),
                origin_partition: Some(2),
                origin_offset: Some(1_234_567),
                origin_timestamp: Some(1_714_000_000_123),
                consumer_group: s("order-service"),
                error_class: s("com.example.orders.InvalidOrderException"),
                error_message: s("Listener failed; nested exception is InvalidOrderException: order 42 has no lines"),
                stacktrace: s("com.example.orders.InvalidOrderException: order 42 has no lines\n\tat com.example.orders.Listener.on(Listener.java:31)"),
                attempts: None,
                problems: vec![],
            }
        );
    }

    #[test]
    fn spring_dlt_falls_back_to_fqcn_without_cause() {
        let n = normalise(&[
            h("kafka_dlt-original-topic", "orders"),
            h(
                "kafka_dlt-exception-fqcn",
                "java.lang.IllegalStateException",
            ),
        ]);
        assert_eq!(n.error_class, s("java.lang.IllegalStateException"));
    }

    #[test]
    fn spring_retry_with_attempts() {
        let n = normalise(&[
            h("kafka_original-topic", "payments"),
            h("kafka_original-partition", 5i32.to_be_bytes()),
            h("kafka_original-offset", 99i64.to_be_bytes()),
            h(
                "kafka_original-timestamp",
                1_700_000_000_000i64.to_be_bytes(),
            ),
            h("kafka_original-consumer-group", "payment-service"),
            h(
                "kafka_exception-fqcn",
                "org.springframework.kafka.listener.ListenerExecutionFailedException",
            ),
            h(
                "kafka_exception-cause-fqcn",
                "java.net.SocketTimeoutException",
            ),
            h("kafka_exception-message", "Read timed out"),
            h("retry_topic-attempts", 3i32.to_be_bytes()),
        ]);
        assert_eq!(n.convention, Convention::SpringRetry);
        assert_eq!(n.origin_topic, s("payments"));
        assert_eq!(n.origin_partition, Some(5));
        assert_eq!(n.origin_offset, Some(99));
        assert_eq!(n.origin_timestamp, Some(1_700_000_000_000));
        assert_eq!(n.consumer_group, s("payment-service"));
        assert_eq!(n.error_class, s("java.net.SocketTimeoutException"));
        assert_eq!(n.error_message, s("Read timed out"));
        assert_eq!(n.attempts, Some(3));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
    }

    #[test]
    fn kafka_connect() {
        let n = normalise(&[
            h("__connect.errors.topic", "crm.contacts"),
            h("__connect.errors.partition", "7"),
            h("__connect.errors.offset", "88231"),
            h("__connect.errors.connector.name", "jdbc-sink-contacts"),
            h("__connect.errors.task.id", "0"),
            h("__connect.errors.stage", "VALUE_CONVERTER"),
            h(
                "__connect.errors.class.name",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
            h(
                "__connect.errors.exception.class.name",
                "org.apache.kafka.connect.errors.DataException",
            ),
            h(
                "__connect.errors.exception.message",
                "Converting byte[] to Kafka Connect data failed due to serialization error",
            ),
            h(
                "__connect.errors.exception.stacktrace",
                "org.apache.kafka.connect.errors.DataException: ...\n\tat ...",
            ),
        ]);
        assert_eq!(n.convention, Convention::KafkaConnect);
        assert_eq!(n.origin_topic, s("crm.contacts"));
        assert_eq!(n.origin_partition, Some(7));
        assert_eq!(n.origin_offset, Some(88231));
        assert_eq!(n.origin_timestamp, None);
        assert_eq!(n.consumer_group, s("connect-jdbc-sink-contacts"));
        assert_eq!(
            n.error_class,
            s("org.apache.kafka.connect.errors.DataException")
        );
        assert_eq!(
            n.error_message,
            s("Converting byte[] to Kafka Connect data failed due to serialization error")
        );
        assert!(n
            .stacktrace
            .is_some_and(|t| t.starts_with("org.apache.kafka.connect.errors.DataException")));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
    }

    #[test]
    fn connect_marker_alone_detects_convention() {
        let n = normalise(&[h("__connect.errors.stage", "TRANSFORMATION")]);
        assert_eq!(n.convention, Convention::KafkaConnect);
    }

    #[test]
    fn karafka_new() {
        let n = normalise(&[
            h("source_topic", "events"),
            h("source_partition", "1"),
            h("source_offset", "4501"),
            h("source_consumer_group", "example_app_consumer"),
            h("source_attempts", "4"),
        ]);
        assert_eq!(n.convention, Convention::Karafka);
        assert_eq!(n.origin_topic, s("events"));
        assert_eq!(n.origin_partition, Some(1));
        assert_eq!(n.origin_offset, Some(4501));
        assert_eq!(n.consumer_group, s("example_app_consumer"));
        assert_eq!(n.attempts, Some(4));
        assert_eq!(n.error_class, None);
        assert_eq!(n.error_message, None);
    }

    #[test]
    fn karafka_legacy() {
        let n = normalise(&[
            h("original_topic", "events"),
            h("original_partition", "0"),
            h("original_offset", "17"),
            h("original_consumer_group", "example_app_consumer"),
            h("original_attempts", "2"),
        ]);
        assert_eq!(n.convention, Convention::KarafkaLegacy);
        assert_eq!(n.origin_topic, s("events"));
        assert_eq!(n.origin_partition, Some(0));
        assert_eq!(n.origin_offset, Some(17));
        assert_eq!(n.consumer_group, s("example_app_consumer"));
        assert_eq!(n.attempts, Some(2));
    }

    #[test]
    fn kafka_streams() {
        let n = normalise(&[
            h(
                "__streams.errors.exception",
                "org.apache.kafka.common.errors.SerializationException",
            ),
            h(
                "__streams.errors.message",
                "Size of data received by IntegerDeserializer is not 4",
            ),
            h(
                "__streams.errors.stacktrace",
                "org.apache.kafka.common.errors.SerializationException: ...",
            ),
            h("__streams.errors.topic", "clicks"),
            h("__streams.errors.partition", "3"),
            h("__streams.errors.offset", "1029"),
        ]);
        assert_eq!(n.convention, Convention::KafkaStreams);
        assert_eq!(
            n.error_class,
            s("org.apache.kafka.common.errors.SerializationException")
        );
        assert_eq!(
            n.error_message,
            s("Size of data received by IntegerDeserializer is not 4")
        );
        assert!(n.stacktrace.is_some());
        assert_eq!(n.origin_topic, s("clicks"));
        assert_eq!(n.origin_partition, Some(3));
        assert_eq!(n.origin_offset, Some(1029));
        assert_eq!(n.consumer_group, None);
    }

    #[test]
    fn spring_cloud_stream() {
        let n = normalise(&[
            h("x-original-topic", "invoices"),
            h("x-original-partition", 4i32.to_be_bytes()),
            h("x-original-offset", 31_337i64.to_be_bytes()),
            h("x-original-timestamp", 1_690_000_000_000i64.to_be_bytes()),
            h(
                "x-exception-fqcn",
                "org.springframework.messaging.MessagingException",
            ),
            h("x-exception-message", "Failed to convert message"),
            h(
                "x-exception-stacktrace",
                "org.springframework.messaging.MessagingException: ...",
            ),
        ]);
        assert_eq!(n.convention, Convention::SpringCloudStream);
        assert_eq!(n.origin_topic, s("invoices"));
        assert_eq!(n.origin_partition, Some(4));
        assert_eq!(n.origin_offset, Some(31_337));
        assert_eq!(n.origin_timestamp, Some(1_690_000_000_000));
        assert_eq!(
            n.error_class,
            s("org.springframework.messaging.MessagingException")
        );
        assert_eq!(n.error_message, s("Failed to convert message"));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
    }

    #[test]
    fn dlq_dashboard() {
        let n = normalise(&[
            h("dlq-origin-topic", "shipments"),
            h("dlq-origin-partition", "2"),
            h("dlq-origin-offset", "400"),
            h("dlq-origin-timestamp", "1714000000000"),
            h("dlq-consumer-group", "shipping"),
            h("dlq-error-class", "ValidationError"),
            h("dlq-error-message", "missing field address.zip"),
            h("dlq-error-stacktrace", "at validate (shipping.rs:10)"),
            h("dlq-attempts", "5"),
        ]);
        assert_eq!(
            n,
            Normalised {
                convention: Convention::DlqDashboard,
                origin_topic: s("shipments"),
                origin_partition: Some(2),
                origin_offset: Some(400),
                origin_timestamp: Some(1_714_000_000_000),
                consumer_group: s("shipping"),
                error_class: s("ValidationError"),
                error_message: s("missing field address.zip"),
                stacktrace: s("at validate (shipping.rs:10)"),
                attempts: Some(5),
                problems: vec![],
            }
        );
    }

    #[test]
    fn no_known_convention() {
        let n = normalise(&[
            h("traceparent", "00-abc-def-01"),
            h("content-type", "application/json"),
        ]);
        assert_eq!(n, Normalised::default());
        assert_eq!(n.convention, Convention::None);
        assert_eq!(normalise(&[]), Normalised::default());
    }

    #[test]
    fn null_and_empty_headers_are_absent() {
        let n = normalise(&[
            null("kafka_dlt-original-topic"),
            h("x-exception-message", ""),
        ]);
        assert_eq!(n, Normalised::default());
    }

    #[test]
    fn last_occurrence_wins() {
        let n = normalise(&[
            h("kafka_dlt-exception-message", "first failure"),
            h("kafka_dlt-original-partition", [0, 0, 0, 1]),
            h("kafka_dlt-exception-message", "second failure"),
            h("kafka_dlt-original-partition", [0, 0, 0, 9]),
        ]);
        assert_eq!(n.error_message, s("second failure"));
        assert_eq!(n.origin_partition, Some(9));
        // A null last occurrence hides earlier values, as Kafka's Headers::lastHeader does.
        let n = normalise(&[
            h("dlq-origin-topic", "a"),
            null("dlq-origin-topic"),
            h("dlq-attempts", "1"),
        ]);
        assert_eq!(n.origin_topic, None);
    }

    #[test]
    fn decimal_text_accepted_for_spring_ints() {
        let n = normalise(&[
            h("kafka_dlt-original-partition", " 12 "),
            h("kafka_dlt-original-offset", "-1"),
            h("kafka_dlt-original-timestamp", "1714000000000"),
            h("retry_topic-attempts", "3"),
        ]);
        assert_eq!(n.origin_partition, Some(12));
        assert_eq!(n.origin_offset, Some(-1));
        assert_eq!(n.origin_timestamp, Some(1_714_000_000_000));
        assert_eq!(n.attempts, Some(3));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
    }

    #[test]
    fn binary_bytes_that_look_like_whitespace_are_binary() {
        // Partition 32 is [0, 0, 0, b' ']; trimming must not turn it into garbage.
        let n = normalise(&[h("kafka_dlt-original-partition", 32i32.to_be_bytes())]);
        assert_eq!(n.origin_partition, Some(32));
        let n = normalise(&[h("kafka_dlt-original-offset", 4i32.to_be_bytes())]);
        assert_eq!(n.origin_offset, Some(4));
        let n = normalise(&[h("x-original-partition", 6i64.to_be_bytes())]);
        assert_eq!(n.origin_partition, Some(6));
    }

    #[test]
    fn wrong_length_binary_is_a_problem() {
        let n = normalise(&[
            h("kafka_dlt-original-topic", "orders"),
            h("kafka_dlt-original-partition", [0, 0, 2]),
            h("kafka_dlt-original-offset", [1, 2, 3, 4, 5]),
            h("kafka_dlt-original-timestamp", [7]),
        ]);
        assert_eq!(n.origin_topic, s("orders"));
        assert_eq!(
            (n.origin_partition, n.origin_offset, n.origin_timestamp),
            (None, None, None)
        );
        assert_eq!(
            n.problems,
            vec![
                "Header kafka_dlt-original-partition has 3 bytes; expected a 4-byte big-endian integer or decimal text.",
                "Header kafka_dlt-original-offset has 5 bytes; expected an 8-byte or 4-byte big-endian integer or decimal text.",
                "Header kafka_dlt-original-timestamp has 1 byte; expected an 8-byte or 4-byte big-endian integer or decimal text.",
            ]
        );
    }

    #[test]
    fn overflow_and_empty_ints_are_problems() {
        let n = normalise(&[
            h("dlq-origin-partition", "99999999999"),
            h("dlq-origin-offset", "99999999999999999999"),
            h("x-original-partition", i64::MAX.to_be_bytes()),
            h("dlq-attempts", ""),
        ]);
        assert_eq!(n.origin_partition, None);
        assert_eq!(n.origin_offset, None);
        assert_eq!(n.attempts, None);
        assert_eq!(
            n.problems,
            vec![
                "Header dlq-origin-partition holds the decimal number 99999999999, which does not fit a 32-bit integer.",
                "Header dlq-origin-offset holds the decimal number 99999999999999999999, which does not fit a 64-bit integer.",
                "Header dlq-attempts is empty; expected an 8-byte or 4-byte big-endian integer or decimal text.",
                "Header x-original-partition holds the 8-byte integer 9223372036854775807, which does not fit a 32-bit integer.",
            ]
        );
    }

    #[test]
    fn invalid_utf8_message_is_lossy_with_problem() {
        let n = normalise(&[h("kafka_dlt-exception-message", b"bad \xff\xfe byte")]);
        assert_eq!(n.convention, Convention::SpringDlt);
        assert_eq!(n.error_message, s("bad \u{FFFD}\u{FFFD} byte"));
        assert_eq!(
            n.problems,
            vec!["Header kafka_dlt-exception-message is not valid UTF-8; unreadable bytes were replaced with \u{FFFD}."]
        );
    }

    #[test]
    fn spring_retry_and_dlt_mixed_fills_from_both() {
        let n = normalise(&[
            h("kafka_original-topic", "orders"),
            h("kafka_original-partition", [0, 0, 0, 1]),
            h("kafka_original-offset", 10i64.to_be_bytes()),
            h("kafka_original-consumer-group", "order-service"),
            h("kafka_exception-message", "retry failure"),
            h("retry_topic-attempts", [0, 0, 0, 4]),
            h("kafka_dlt-original-topic", "orders-retry-1"),
            h("kafka_dlt-original-partition", [0, 0, 0, 0]),
            h("kafka_dlt-original-offset", 3i64.to_be_bytes()),
            h("kafka_dlt-exception-message", "final failure"),
        ]);
        assert_eq!(n.convention, Convention::SpringDlt);
        assert_eq!(n.origin_topic, s("orders-retry-1"));
        assert_eq!(n.origin_offset, Some(3));
        assert_eq!(n.error_message, s("final failure"));
        assert_eq!(n.consumer_group, s("order-service"));
        assert_eq!(n.attempts, Some(4));
    }

    #[test]
    fn priority_order_decides_convention() {
        let n = normalise(&[
            h("x-original-topic", "scs"),
            h("source_topic", "karafka"),
            h("dlq-error-class", "Mine"),
        ]);
        assert_eq!(n.convention, Convention::DlqDashboard);
        assert_eq!(n.error_class, s("Mine"));
        assert_eq!(n.origin_topic, s("karafka"));
        // Streams outranks Karafka even though Karafka comes first in the enum.
        let n = normalise(&[h("source_topic", "k"), h("__streams.errors.topic", "s")]);
        assert_eq!(n.convention, Convention::KafkaStreams);
        // retry_topic-attempts alone is a retry-topic record, not a DLT one.
        let n = normalise(&[h("retry_topic-attempts", "2")]);
        assert_eq!(n.convention, Convention::SpringRetry);
    }

    #[test]
    fn convention_names_round_trip() {
        for c in Convention::ALL {
            assert_eq!(Convention::parse(c.as_str()), Some(c));
            assert!(!c.label().is_empty());
        }
        assert_eq!(Convention::parse("SpringDlt"), None);
        assert_eq!(Convention::default(), Convention::None);
        assert_eq!(Convention::KafkaStreams.label(), "Kafka Streams (KIP-1034)");
        let mut names: Vec<_> = Convention::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Convention::ALL.len());
    }

    #[test]
    fn mask_message_examples() {
        assert_eq!(
            mask_message("Timeout after 3000ms talking to db-7 for order 9f1c2e4a-1b2c-4d5e-8f90-123456789abc"),
            "Timeout after <n>ms talking to db-<n> for order <uuid>"
        );
        assert_eq!(
            mask_message("User 'alice' (alice.smith@example.com) can't pay \"EUR 12.50\""),
            "User <str> (<email>) can't pay <str>"
        );
        assert_eq!(
            mask_message("ptr 0xDEADBEEF commit 3f9a2b7c1d offset -42 at 1.5s, id 123456789"),
            "ptr <hex> commit <hex> offset <n> at <n>s, id <n>"
        );
        assert_eq!(
            mask_message("  line one\n\tline   two  "),
            "line one line two"
        );
        assert_eq!(
            mask_message("accessed deadbeefcafe"),
            "accessed deadbeefcafe"
        );
        assert_eq!(mask_message(&"x ".repeat(400)).chars().count(), 299);
        assert_eq!(mask_message(&"é".repeat(500)).chars().count(), 300);
        assert_eq!(mask_message(""), "");
    }

    #[test]
    fn fingerprint_is_stable_and_discriminating() {
        let a = fingerprint(
            Some("E"),
            Some("orders"),
            Some("order 42 failed after 3 tries (id 9f1c2e4a-1b2c-4d5e-8f90-123456789abc)"),
        );
        let b = fingerprint(
            Some("E"),
            Some("orders"),
            Some("order 7 failed after 5 tries (id 00000000-1111-2222-3333-444444444444)"),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(
            a,
            fingerprint(
                Some("F"),
                Some("orders"),
                Some("order 42 failed after 3 tries")
            )
        );
        assert_ne!(
            a,
            fingerprint(
                Some("E"),
                Some("payments"),
                Some("order 42 failed after 3 tries (id 9f1c2e4a-1b2c-4d5e-8f90-123456789abc)")
            )
        );
        assert_ne!(
            a,
            fingerprint(Some("E"), Some("orders"), Some("customer 42 failed"))
        );
        assert_ne!(
            fingerprint(Some("a"), None, None),
            fingerprint(None, Some("a"), None)
        );
        assert_ne!(
            fingerprint(Some("ab"), None, None),
            fingerprint(Some("a"), Some("b"), None)
        );
        assert_eq!(
            fingerprint(None, None, None),
            fingerprint(Some(""), Some(""), Some(""))
        );
        // Pinned so an accidental change of algorithm or framing shows up: stored fingerprints depend on it.
        assert_eq!(
            fingerprint(None, None, None),
            fingerprint_reference(&[0xFF, 0xFF, 0xFF])
        );
        // Cross-checked with an independent FNV-1a implementation.
        assert_eq!(
            fingerprint(
                Some("com.example.orders.InvalidOrderException"),
                Some("orders"),
                Some("order 42 has no lines")
            ),
            "2620e2c0e45eb6dd"
        );
        assert_eq!(fnv1a_reference(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_reference(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_reference(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn fnv1a_reference(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn fingerprint_reference(bytes: &[u8]) -> String {
        format!("{:016x}", fnv1a_reference(bytes))
    }

    /// xorshift64: deterministic pseudo-random numbers without extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    #[test]
    fn random_headers_never_panic() {
        let names: Vec<&str> = SPECS
            .iter()
            .flat_map(|s| {
                s.fields
                    .iter()
                    .map(|&(_, n)| n)
                    .chain(s.markers.iter().copied())
            })
            .chain(["retry_topic-attempts", "traceparent", ""])
            .collect();
        let mut recognised = 0;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let count = rng.below(12);
            let headers: Vec<RawHeader> = (0..count)
                .map(|_| {
                    let name = names[rng.below(names.len())].to_owned();
                    let value = match rng.below(6) {
                        0 => None,
                        1 => Some(format!("{}", rng.next() as i64 >> rng.below(64)).into_bytes()),
                        2 => Some(if rng.below(2) == 0 {
                            vec![0; 4]
                        } else {
                            rng.next().to_be_bytes().to_vec()
                        }),
                        _ => {
                            let len = [0, 1, 3, 4, 5, 8, 9, 40, 300][rng.below(9)];
                            Some((0..len).map(|_| rng.next() as u8).collect())
                        }
                    };
                    RawHeader { name, value }
                })
                .collect();
            let n = normalise(&headers);
            // Every problem names a header that is on the record.
            for p in &n.problems {
                assert!(
                    headers
                        .iter()
                        .any(|h| p.starts_with(&format!("Header {} ", h.name))),
                    "{p}"
                );
            }
            // A convention is reported exactly when a known header has a non-empty value.
            let known = headers.iter().any(|h| {
                names[..names.len() - 2].contains(&h.name.as_str())
                    && h.value.as_ref().is_some_and(|v| !v.is_empty())
            });
            let nulls_hide = headers
                .iter()
                .any(|h| h.value.as_ref().is_none_or(|v| v.is_empty()));
            if !nulls_hide {
                assert_eq!(n.convention != Convention::None, known);
            }
            recognised += usize::from(n.convention != Convention::None);
            let fp = fingerprint(
                n.error_class.as_deref(),
                n.origin_topic.as_deref(),
                n.error_message.as_deref(),
            );
            assert_eq!(fp.len(), 16);
            let garbage: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            assert!(
                mask_message(&String::from_utf8_lossy(&garbage))
                    .chars()
                    .count()
                    <= MASKED_MAX_CHARS
            );
        }
        // The generator must actually reach the parsing code, not just miss every convention.
        assert!(
            recognised > 2000,
            "only {recognised} sets matched a convention"
        );
    }

    /// Fuzzing normalisation with convention header names and arbitrary bytes: it never
    /// panics and every problem is a sentence naming its header. More cases:
    /// PROPTEST_CASES=100000.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("kafka_dlt-original-partition".to_string()),
                Just("kafka_dlt-original-offset".to_string()),
                Just("kafka_dlt-original-timestamp".to_string()),
                Just("kafka_dlt-exception-message".to_string()),
                Just("retry_topic-attempts".to_string()),
                Just("__connect.errors.partition".to_string()),
                Just("__streams.errors.offset".to_string()),
                Just("source_partition".to_string()),
                Just("original_offset".to_string()),
                Just("x-original-partition".to_string()),
                Just("dlq-origin-offset".to_string()),
                Just("dlq-error-class".to_string()),
                ".{0,20}",
            ]
        }

        proptest! {
            #[test]
            fn any_headers_normalise_without_panicking(
                headers in proptest::collection::vec((name(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))), 0..12)
            ) {
                let raw: Vec<RawHeader> = headers.into_iter().map(|(name, value)| RawHeader { name, value }).collect();
                let n = normalise(&raw);
                for p in &n.problems {
                    prop_assert!(p.starts_with("Header "), "{}", p);
                }
                let fp = fingerprint(n.error_class.as_deref(), n.origin_topic.as_deref(), n.error_message.as_deref());
                prop_assert_eq!(fp.len(), 16);
            }

            #[test]
            fn masking_is_total_and_idempotent(message in ".{0,200}") {
                let once = mask_message(&message);
                prop_assert!(once.chars().count() <= 300);
                let twice = mask_message(&once);
                prop_assert_eq!(mask_message(&twice), twice.clone());
            }
        }
    }
}
