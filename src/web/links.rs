//! The URLs pages link to, built in one place so that every link to a record names the
//! same record (generation included) and every topic is encoded the same way.

use crate::filter::encode_pairs;
use crate::store::records;

/// `/messages` with these filter pairs.
pub(crate) fn messages_link(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        "/messages".into()
    } else {
        format!("/messages?{}", encode_pairs(pairs))
    }
}

/// `topic/partition/offset`, with `?generation=N` when the partition's log was ever reset,
/// so the link keeps naming this record and not the one now at that offset.
pub(crate) fn message_path(r: &records::RecordSummary, reset: &[(String, i32, i64)]) -> String {
    message_path_of(&r.topic, r.partition, r.offset, r.generation, reset)
}

/// [`message_path`] from coordinates; `reset` is [`records::current_generations`].
pub(crate) fn message_path_of(
    topic: &str,
    partition: i32,
    offset: i64,
    generation: i64,
    reset: &[(String, i32, i64)],
) -> String {
    let base = format!("{}/{}/{}", path_segment(topic), partition, offset);
    let partition_was_reset = reset.iter().any(|(t, p, _)| *t == topic && *p == partition);
    if generation > 0 || partition_was_reset {
        format!("{base}?generation={generation}")
    } else {
        base
    }
}

/// How a form names one record for a replay: `topic/partition/offset?generation=N`. The
/// generation is always given, so the value keeps naming this record even if the partition's
/// log restarts before the form is sent. (Kafka topic names hold no `/` or `?`.)
pub(crate) fn selection_value(topic: &str, partition: i32, offset: i64, generation: i64) -> String {
    format!("{topic}/{partition}/{offset}?generation={generation}")
}

/// The raw download path for a message path (the query, if any, goes after `/raw`).
pub(crate) fn raw_path(message_path: &str) -> String {
    match message_path.split_once('?') {
        Some((path, query)) => format!("/api/messages/{path}/raw?{query}"),
        None => format!("/api/messages/{message_path}/raw"),
    }
}

/// Percent-encode a topic name for a URL path segment.
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
}

/// The link of a job page.
pub(crate) fn job_link(id: &str) -> String {
    format!("/replays/{}", path_segment(id))
}
