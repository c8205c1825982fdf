//! `/metrics` (prometheus-client, OpenMetrics text): the HTTP families of `http_metrics`,
//! and index gauges and totals read from the store at scrape time.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::store;
use crate::web::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicStatus {
    topic: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterKind {
    writer: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterLabel {
    writer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// A gauge family for one scrape.
fn gauges<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) {
    let family = Family::<L, Gauge>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    registry.register(name, help, family);
}

/// A counter of a total the store keeps (read at scrape time).
fn total(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value.max(0) as u64);
    registry.register(name, help, counter);
}

/// The index's own state: write errors, time since each writer's last success, search
/// lag, the write-ahead logs, free space.
async fn index_health(registry: &mut Registry, state: &AppState) {
    let errors = Family::<WriterKind, Counter>::default();
    for (writer, kind, n) in crate::web::health::error_counts(state) {
        errors
            .get_or_create(&WriterKind {
                writer: writer.as_str(),
                kind: kind.as_str(),
            })
            .inc_by(n);
    }
    registry.register(
        "dlq_index_write_errors",
        "Failed writes to the index files by writer (indexer, search, checkpoint) and kind (disk_full, read_only, io, busy, corrupt, cant_open, other)",
        errors,
    );
    let started = state.health.started();
    let now = crate::clock::now_ms();
    let writers = state.health.writers();
    gauges(
        registry,
        "dlq_index_seconds_since_last_write",
        "Seconds since the writer's last successful write (since start before the first); grows on a quiet index too, so alert on it together with dlq_index_write_failing or lag",
        writers.iter().map(|(w, h)| {
            (
                WriterLabel {
                    writer: w.as_str(),
                },
                h.seconds_since_ok(started, now),
            )
        }),
    );
    gauges(
        registry,
        "dlq_index_write_failing",
        "1 while the writer's writes fail (since its first failure after its last success)",
        writers
            .iter()
            .map(|(w, h)| (WriterLabel { writer: w.as_str() }, i64::from(h.failing()))),
    );
    let h = crate::web::health::index_health(state).await;
    let behind = Gauge::<i64>::default();
    behind.set(h.search_behind);
    registry.register(
        "dlq_search_behind_records",
        "Records stored in the index but not searchable yet",
        behind,
    );
    for (name, help, v) in [
        (
            "dlq_index_bodies_deferred",
            "Records stored without their payload body because the disk was below --min-free-space, still to be read again from Kafka",
            h.deferred.pending,
        ),
        (
            "dlq_index_bodies_lost",
            "Records stored without their payload body whose body the broker no longer had when read again",
            h.deferred.lost,
        ),
    ] {
        let g = Gauge::<i64>::default();
        g.set(v);
        registry.register(name, help, g);
    }
    let wal = crate::web::health::wal_states(state);
    gauges(
        registry,
        "dlq_index_wal_bytes",
        "Size of the write-ahead log file",
        wal.iter()
            .map(|(f, w)| (FileLabel { file: f.as_str() }, w.file_bytes as i64)),
    );
    gauges(
        registry,
        "dlq_index_wal_uncopied_bytes",
        "Bytes of the write-ahead log the last checkpoint could not copy back (a reader holds an old snapshot)",
        wal.iter()
            .map(|(f, w)| (FileLabel { file: f.as_str() }, w.uncopied_bytes as i64)),
    );
    gauges(
        registry,
        "dlq_index_wal_held",
        "1 while more than --max-wal-size of the log cannot be copied back",
        wal.iter().map(|(f, w)| {
            (
                FileLabel { file: f.as_str() },
                i64::from(w.held_since.is_some()),
            )
        }),
    );
    if let Some(space) = h.space {
        for (name, help, v) in [
            (
                "dlq_index_filesystem_free_bytes",
                "Free bytes on the index's file system",
                space.available as i64,
            ),
            (
                "dlq_index_filesystem_size_bytes",
                "Size of the index's file system",
                space.total as i64,
            ),
            (
                "dlq_index_filesystem_min_free_bytes",
                "Free space below which the dashboard warns (--min-free-space)",
                h.min_free_bytes.unwrap_or(0) as i64,
            ),
        ] {
            let g = Gauge::<i64>::default();
            g.set(v);
            registry.register(name, help, g);
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response> {
    let http = &state.http;
    let snapshot = state.status.snapshot();
    let mut registry = Registry::default();
    gauges(
        &mut registry,
        "dlq_dashboard_messages",
        "Records in the index per DLQ topic and status",
        store::stats::status_counts(&state.pool)
            .await?
            .into_iter()
            .map(|(topic, status, n)| (TopicStatus { topic, status }, n)),
    );
    total(
        &mut registry,
        "dlq_dashboard_indexed_records",
        "Records indexed by this process",
        snapshot.indexed as i64,
    );
    gauges(
        &mut registry,
        "dlq_dashboard_indexer_lag",
        "Records on the broker not yet indexed, per partition",
        snapshot.lag.iter().map(|(topic, partition, lag)| {
            (
                TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                },
                *lag,
            )
        }),
    );
    gauges(
        &mut registry,
        "dlq_reclaimable_records",
        "Indexed records in the prefix of a DLQ partition that is all resolved (replayed and not failed again, purged or expired), which a reclaim may delete on the broker",
        store::reclaim::reclaimable_records(&state.pool)
            .await?
            .into_iter()
            .map(|(topic, partition, n)| (TopicPartition { topic, partition }, n)),
    );
    let connected = Gauge::<i64>::default();
    connected.set(i64::from(snapshot.connected));
    registry.register(
        "dlq_dashboard_indexer_connected",
        "1 when the indexer reaches a broker",
        connected,
    );
    let size = Gauge::<i64>::default();
    size.set(store::database_size(&state.pool).await?);
    registry.register(
        "dlq_dashboard_index_size_bytes",
        "Size of the SQLite index",
        size,
    );
    let (jobs, totals) = store::jobs::totals(&state.pool).await?;
    gauges(
        &mut registry,
        "dlq_dashboard_replay_jobs",
        "Replay jobs per status",
        jobs.into_iter()
            .map(|(status, n)| (JobStatusLabel { status }, n)),
    );
    let replayed = Family::<Outcome, Counter>::default();
    for (outcome, n) in [("sent", totals.sent), ("failed", totals.failed)] {
        replayed
            .get_or_create(&Outcome { outcome })
            .inc_by(n.max(0) as u64);
    }
    registry.register(
        "dlq_dashboard_replayed_messages",
        "Replayed messages by delivery outcome, over all jobs",
        replayed,
    );
    total(
        &mut registry,
        "dlq_replay_consumed",
        "Replayed messages seen consumed: the consumer group of the target topic committed past them",
        totals.consumed,
    );
    total(
        &mut registry,
        "dlq_replay_failed_again",
        "Replayed messages that came back to a DLQ topic carrying their dlq-replay-id",
        totals.failed_again,
    );
    total(
        &mut registry,
        "dlq_purged",
        "Messages purged, over all purges (an undo does not take them back out of this count)",
        store::purges::purged_total(&state.pool).await?,
    );
    index_health(&mut registry, &state).await;
    registry.register(
        "dlq_dashboard_http_requests",
        "HTTP requests by route, method and status",
        http.requests.clone(),
    );
    registry.register(
        "dlq_dashboard_http_request_duration_seconds",
        "HTTP request latency by route",
        http.latency.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &registry)
        .map_err(|e| Error::Internal(format!("encoding the metrics failed: {e}")))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
