//! `/api/health`: whether the dashboard can do its work, and if not why: Kafka, each writer
//! of the index (state, last error, seconds since its last write), search lag, the
//! write-ahead logs, and the free space of the index's file system.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::clock::iso;
use crate::store::health::Writer;
use crate::web::health::{index_health, wal_states, writer_json, WriterJson};
use crate::web::routes::{Routes, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/api/health", VIEWER, health)
}

#[derive(Serialize)]
struct HealthJson {
    ready: bool,
    problems: Vec<String>,
    kafka: KafkaJson,
    index: IndexJson,
    search: SearchJson,
    wal: Vec<WalJson>,
    disk: Option<DiskJson>,
}

#[derive(Serialize)]
struct KafkaJson {
    connected: bool,
    since: String,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct IndexJson {
    writable: bool,
    reason: Option<String>,
    database: String,
    writers: Vec<WriterJson>,
    /// When the index file was last written back after it was removed while running.
    written_back_at: Option<String>,
    /// Records stored without their payload body (the disk was low), still to be read
    /// again from Kafka.
    bodies_deferred: i64,
    /// Of those, the ones the broker no longer had when read again.
    bodies_lost: i64,
}

#[derive(Serialize)]
struct SearchJson {
    behind: i64,
    reason: Option<String>,
}

#[derive(Serialize)]
struct WalJson {
    file: &'static str,
    file_bytes: u64,
    uncopied_bytes: u64,
    held_since: Option<String>,
}

#[derive(Serialize)]
struct DiskJson {
    folder: String,
    free_bytes: u64,
    total_bytes: u64,
    read_only: bool,
    min_free_bytes: u64,
    low_space: bool,
}

async fn health(State(state): State<AppState>) -> Json<HealthJson> {
    let s = state.status.snapshot();
    let h = index_health(&state).await;
    let started = state.health.started();
    let writers = state.health.writers();
    let folder = crate::store::space::folder_of(state.health.database());
    Json(HealthJson {
        ready: s.connected && h.writable(),
        problems: h.banners(),
        kafka: KafkaJson {
            connected: s.connected,
            since: iso(s.since),
            last_error: s.last_error,
        },
        index: IndexJson {
            writable: h.writable(),
            reason: h.file_problem.clone().or(h.index_problem.clone()),
            database: state.health.database().display().to_string(),
            written_back_at: state.health.file().written_back_at.map(iso),
            bodies_deferred: h.deferred.pending,
            bodies_lost: h.deferred.lost,
            writers: Writer::ALL
                .iter()
                .map(|w| writer_json(*w, &writers[w], started))
                .collect(),
        },
        search: SearchJson {
            behind: h.search_behind,
            reason: h.search_problem.clone(),
        },
        wal: wal_states(&state)
            .into_iter()
            .map(|(file, w)| WalJson {
                file: file.as_str(),
                file_bytes: w.file_bytes,
                uncopied_bytes: w.uncopied_bytes,
                held_since: w.held_since.map(iso),
            })
            .collect(),
        disk: h.space.map(|space| DiskJson {
            folder: folder.display().to_string(),
            free_bytes: space.available,
            total_bytes: space.total,
            read_only: space.read_only,
            min_free_bytes: h.min_free_bytes.unwrap_or(0),
            low_space: h.space_warning.is_some(),
        }),
    })
}
