//! What every request handler shares: the index, the indexer's live state, where Kafka is,
//! and the operations core. Built by `app`, which starts the tasks behind it.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::actions::{Actions, RoleTopics};
use crate::auth::Auth;
use crate::index::IndexerStatus;
use crate::kafka::KafkaSettings;
use crate::redact::Disclosure;
use crate::store::health::WriteHealth;
use crate::store::space::MinFreeSpace;
use crate::web::http_metrics::HttpMetrics;

/// Shared application state handed to every request handler.
pub struct App {
    /// The SQLite index.
    pub pool: SqlitePool,
    /// Live indexer state.
    pub status: Arc<IndexerStatus>,
    /// Where Kafka is.
    pub kafka: KafkaSettings,
    /// Previews, confirmations and job control.
    pub actions: Arc<Actions>,
    /// HTTP request counts and latencies of this dashboard.
    pub http: HttpMetrics,
    /// Users, tokens, sessions and the sign-in throttle.
    pub auth: Arc<Auth>,
    /// The DLQ topics each role may act on (`--role-topics`).
    pub role_topics: RoleTopics,
    /// What each role sees of payloads, headers and stack traces (`--viewer-payloads`, the
    /// redaction flags).
    pub disclosure: Disclosure,
    /// Request body limit, timeout and per-client concurrency (the web edge's layers).
    pub edge: crate::web::edge::EdgeLimits,
    /// Whether the index can be written (its writers report there).
    pub health: Arc<WriteHealth>,
    /// Below this much free space on the index's file system, the pages warn.
    pub min_free_space: MinFreeSpace,
    /// The bounded index's cleanup (`--retain`).
    pub retention: Arc<crate::retention::Retention>,
    /// The demo pipeline's counters and switch, when the demo runs (`/demo`, `/api/demo`).
    pub demo: Option<Arc<crate::demo::DemoState>>,
}

/// Cheap-to-clone handle on [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
