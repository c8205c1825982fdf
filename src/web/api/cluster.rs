//! `/api/cluster`: where Kafka is and whether the indexer reaches it.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::clock::iso;
use crate::web::routes::{Routes, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/api/cluster", VIEWER, cluster)
}

#[derive(Serialize)]
struct ClusterJson {
    brokers: String,
    embedded: bool,
    connected: bool,
    since: String,
    last_error: Option<String>,
    indexed_since_start: u64,
}

async fn cluster(State(state): State<AppState>) -> Json<ClusterJson> {
    let s = state.status.snapshot();
    Json(ClusterJson {
        brokers: state.kafka.brokers.clone(),
        embedded: state.kafka.embedded,
        connected: s.connected,
        since: iso(s.since),
        last_error: s.last_error,
        indexed_since_start: s.indexed,
    })
}
