//! Prometheus text exposition: HTTP request counts and latencies (collected by a
//! middleware), plus index gauges read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Result;
use crate::store;
use crate::web::AppState;

/// Latency bucket upper bounds, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct HttpMetrics {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

static HTTP: LazyLock<Mutex<HttpMetrics>> = LazyLock::new(Default::default);

/// Middleware: count each request by route template, method and status, and time it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut m = HTTP.lock().unwrap_or_else(|e| e.into_inner());
    *m.requests
        .entry((route.clone(), method, response.status().as_u16()))
        .or_default() += 1;
    let h = m.latency.entry(route).or_default();
    h.count += 1;
    h.sum += elapsed;
    for (i, bound) in BUCKETS.iter().enumerate() {
        if elapsed <= *bound {
            h.buckets[i] += 1;
        }
    }
    response
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response> {
    let mut out = String::new();
    let snapshot = state.status.snapshot();
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_messages Records in the index per DLQ topic and status."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_messages gauge");
    for (topic, status, n) in store::stats::status_counts(&state.pool).await? {
        let _ = writeln!(
            out,
            "dlq_dashboard_messages{{topic=\"{}\",status=\"{}\"}} {n}",
            label(&topic),
            label(&status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_indexed_records_total Records indexed by this process."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_indexed_records_total counter");
    let _ = writeln!(
        out,
        "dlq_dashboard_indexed_records_total {}",
        snapshot.indexed
    );
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_indexer_lag Records on the broker not yet indexed, per partition."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_indexer_lag gauge");
    for (topic, partition, lag) in &snapshot.lag {
        let _ = writeln!(
            out,
            "dlq_dashboard_indexer_lag{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
            label(topic)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_indexer_connected 1 when the indexer reaches a broker."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_indexer_connected gauge");
    let _ = writeln!(
        out,
        "dlq_dashboard_indexer_connected {}",
        u8::from(snapshot.connected)
    );
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_index_size_bytes Size of the SQLite index."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_index_size_bytes gauge");
    let _ = writeln!(
        out,
        "dlq_dashboard_index_size_bytes {}",
        store::database_size(&state.pool).await?
    );
    let (jobs, totals) = store::jobs::totals(&state.pool).await?;
    let (sent, failed) = (totals.sent, totals.failed);
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_replay_jobs Replay jobs per status."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_replay_jobs gauge");
    for (status, n) in jobs {
        let _ = writeln!(
            out,
            "dlq_dashboard_replay_jobs{{status=\"{}\"}} {n}",
            label(&status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dlq_dashboard_replayed_messages_total Replayed messages by delivery outcome, over all jobs."
    );
    let _ = writeln!(out, "# TYPE dlq_dashboard_replayed_messages_total counter");
    let _ = writeln!(
        out,
        "dlq_dashboard_replayed_messages_total{{outcome=\"sent\"}} {sent}"
    );
    let _ = writeln!(
        out,
        "dlq_dashboard_replayed_messages_total{{outcome=\"failed\"}} {failed}"
    );
    for (name, help, n) in [
        (
            "dlq_replay_consumed_total",
            "Replayed messages seen consumed: the consumer group of the target topic committed past them.",
            totals.consumed,
        ),
        (
            "dlq_replay_failed_again_total",
            "Replayed messages that came back to a DLQ topic carrying their dlq-replay-id.",
            totals.failed_again,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {n}");
    }
    {
        let m = HTTP.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP dlq_dashboard_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE dlq_dashboard_http_requests_total counter");
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "dlq_dashboard_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP dlq_dashboard_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(
            out,
            "# TYPE dlq_dashboard_http_request_duration_seconds histogram"
        );
        for (route, h) in &m.latency {
            let route = label(route);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "dlq_dashboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(out, "dlq_dashboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "dlq_dashboard_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "dlq_dashboard_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
