//! The index's own state, as `/readyz`, `/api/health`, the page header and the overview
//! show it: whether its writers can write, how far search is behind, the write-ahead logs,
//! and the free space of its file system. Read from `store::health` (what the writers
//! reported) and the file system now.

use serde::Serialize;

use crate::clock::{iso, now_ms};
use crate::store::health::{FaultKind, WalFile, Writer, WriterHealth};
use crate::store::space::{self, human, Space};
use crate::store::{self};
use crate::web::AppState;

/// Everything the pages and probes say about the index itself.
#[derive(Debug, Clone)]
pub(crate) struct IndexHealth {
    /// Why the indexer cannot write, in a sentence; None while it can.
    pub index_problem: Option<String>,
    /// "Search is N records behind: ..." while the catch-up cannot write.
    pub search_problem: Option<String>,
    /// A write-ahead log held above its bound by a reader.
    pub wal_problem: Option<String>,
    /// Replay jobs or a purge waiting on a write fault.
    pub action_problems: Vec<String>,
    /// The index file is gone from its folder (deleted while running).
    pub file_problem: Option<String>,
    /// Free space below `--min-free-space`, in a sentence.
    pub space_warning: Option<String>,
    /// The file system now; None when statvfs failed (the folder is gone).
    pub space: Option<Space>,
    /// The free space threshold on this file system, bytes.
    pub min_free_bytes: Option<u64>,
    /// Records stored but not searchable yet.
    pub search_behind: i64,
    /// Payload bodies not stored on a low disk: still to be read again, and lost.
    pub deferred: crate::store::deferred::DeferredCounts,
    /// "N payloads not stored: ..." while some wait.
    pub deferred_problem: Option<String>,
}

impl IndexHealth {
    /// Whether the index can take records now (the indexer writes, the file is there).
    pub fn writable(&self) -> bool {
        self.index_problem.is_none() && self.file_problem.is_none()
    }

    /// Every sentence a banner shows, most severe first.
    pub fn banners(&self) -> Vec<String> {
        [
            &self.file_problem,
            &self.index_problem,
            &self.search_problem,
        ]
        .into_iter()
        .flatten()
        .chain(&self.action_problems)
        .chain(
            [
                &self.deferred_problem,
                &self.wal_problem,
                &self.space_warning,
            ]
            .into_iter()
            .flatten(),
        )
        .map(|s| capitalised(s))
        .collect()
    }
}

/// The sentence with its first letter in upper case.
pub(crate) fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Read the index's state now.
pub(crate) async fn index_health(state: &AppState) -> IndexHealth {
    let health = &state.health;
    let database = health.database();
    let space = space::space_of(database).ok();
    let min_free_bytes = space.map(|s| state.min_free_space.bytes(s.total));
    let index_problem = health.sentence(Writer::Indexer, space.as_ref());
    let search_behind = store::search::progress(&state.pool)
        .await
        .map(|p| p.pending())
        .unwrap_or(0);
    let search_problem = health.sentence(Writer::Search, space.as_ref()).map(|why| {
        format!(
            "search is {} record{} behind: {why}",
            crate::web::view::count(search_behind),
            if search_behind == 1 { "" } else { "s" }
        )
    });
    let file = health.file();
    let file_problem = if file.removed_since.is_some() || !database.exists() {
        let why = file
            .write_back_error
            .map(|e| format!(" (writing it back failed: {e}; it is tried again every second)"))
            .unwrap_or_default();
        Some(format!(
            "the index file {} was removed while the dashboard runs: the dashboard writes it back from what it holds and goes on with it, nothing lost{why}",
            database.display()
        ))
    } else if file.replaced {
        Some(format!(
            "the index file {} was replaced by another file while the dashboard runs: the dashboard goes on with the file it opened, which is lost when it stops; move the new file away (the dashboard then writes its own back), or restart the dashboard to use the new one",
            database.display()
        ))
    } else {
        None
    };
    let space_warning = match (space, min_free_bytes) {
        (Some(s), Some(min)) if s.available < min && !s.read_only => Some(format!(
            "only {} free on {} (below --min-free-space {}); free some space or give the index a larger disk before it fills",
            human(s.available),
            space::folder_of(database).display(),
            human(min)
        )),
        _ => None,
    };
    let deferred = store::deferred::counts(&state.pool)
        .await
        .unwrap_or_default();
    let deferred_problem = (deferred.pending > 0).then(|| {
        let n = deferred.pending;
        let backfill = health
            .sentence(Writer::Backfill, space.as_ref())
            .map(|why| format!(" ({why})"))
            .unwrap_or_default();
        format!(
            "{} payload{} not stored: low disk space on {}; {} read again from Kafka once space is freed{backfill}",
            crate::web::view::count(n),
            if n == 1 { "" } else { "s" },
            space::folder_of(database).display(),
            if n == 1 { "it is" } else { "they are" },
        )
    });
    let action_problems = [Writer::Replay, Writer::Purge]
        .into_iter()
        .filter_map(|w| health.sentence(w, space.as_ref()))
        .collect();
    IndexHealth {
        action_problems,
        index_problem,
        search_problem,
        wal_problem: health.wal_sentence(),
        file_problem,
        space_warning,
        space,
        min_free_bytes,
        search_behind,
        deferred,
        deferred_problem,
    }
}

/// Why a job in `status` cannot go on now, in a sentence: a running job whose results
/// cannot be recorded waits (it sends nothing it could not record) and goes on by itself,
/// but its status stays `running`, so this says it; None while it can go on.
pub(crate) fn replay_waiting_on(
    state: &AppState,
    status: crate::states::JobStatus,
) -> Option<String> {
    if status != crate::states::JobStatus::Running {
        return None;
    }
    let space = space::space_of(state.health.database()).ok();
    state
        .health
        .sentence(Writer::Replay, space.as_ref())
        .map(|s| capitalised(&s))
}

/// One writer in `/api/health`.
#[derive(Serialize)]
pub(crate) struct WriterJson {
    writer: &'static str,
    state: &'static str,
    failing_since: Option<String>,
    last_ok_at: Option<String>,
    seconds_since_last_write: i64,
    last_error: Option<ErrorJson>,
    errors_total: u64,
}

#[derive(Serialize)]
pub(crate) struct ErrorJson {
    kind: &'static str,
    message: String,
    at: String,
}

/// A writer's state as JSON.
pub(crate) fn writer_json(writer: Writer, w: &WriterHealth, started: i64) -> WriterJson {
    WriterJson {
        writer: writer.as_str(),
        state: if w.failing() { "failing" } else { "ok" },
        failing_since: w.failing_since.map(iso),
        last_ok_at: w.last_ok_at.map(iso),
        seconds_since_last_write: w.seconds_since_ok(started, now_ms()),
        last_error: w.last_error.as_ref().map(|f| ErrorJson {
            kind: f.kind.as_str(),
            message: f.message.clone(),
            at: iso(f.at),
        }),
        errors_total: w.errors.values().sum(),
    }
}

/// Failed writes per (writer, kind) since start, every pair listed.
pub(crate) fn error_counts(state: &AppState) -> Vec<(Writer, FaultKind, u64)> {
    let writers = state.health.writers();
    Writer::ALL
        .iter()
        .flat_map(|w| {
            let counts = writers.get(w).map(|h| h.errors.clone()).unwrap_or_default();
            FaultKind::ALL
                .iter()
                .map(move |k| (*w, *k, counts.get(k).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The logs' state, per file.
pub(crate) fn wal_states(state: &AppState) -> Vec<(WalFile, crate::store::health::WalState)> {
    state.health.wal().into_iter().collect()
}
