//! The frame around every page: top bar, connection status, navigation counts, and the
//! CSRF token its forms carry.

use crate::states::RecordStatus;
use crate::store::{self, groups, stats};
use crate::web::assets::AssetUrls;
use crate::web::view;
use crate::web::AppState;

/// The frame around every page: top bar, status, navigation.
pub struct Frame {
    /// Which navigation entry is current.
    pub active: &'static str,
    /// Whether the indexer reaches Kafka.
    pub connected: bool,
    /// "connected" or "disconnected since 10:42 UTC".
    pub status_text: String,
    /// The last Kafka error, shown in the banner when disconnected.
    pub status_detail: Option<String>,
    /// Whether this is the embedded demo cluster.
    pub embedded: bool,
    /// Bootstrap servers.
    pub brokers: String,
    /// Unresolved records across topics, formatted.
    pub unresolved: String,
    /// Groups count, formatted.
    pub groups: String,
    /// Confirmed replay jobs not finished yet, formatted; empty when there are none.
    pub active_jobs: String,
    /// This process's CSRF token, carried by every form that changes something.
    pub csrf: &'static str,
    /// The hashed URLs of the stylesheet, script and icon.
    pub assets: &'static AssetUrls,
}

impl Frame {
    /// The frame for a page whose navigation entry is `active`.
    pub(crate) async fn build(state: &AppState, active: &'static str) -> Frame {
        let s = state.status.snapshot();
        let status_text = if s.connected {
            "connected".to_string()
        } else if !s.ever_connected {
            format!("connecting since {}", view::time(s.since))
        } else {
            format!("disconnected since {}", view::time(s.since))
        };
        let counts = stats::status_counts(&state.pool).await.unwrap_or_default();
        let unresolved: i64 = counts
            .iter()
            .filter(|(_, status, _)| RecordStatus::is_unresolved(status))
            .map(|(_, _, n)| n)
            .sum();
        let groups = groups::count(&state.pool).await.unwrap_or(0);
        let active_jobs = store::jobs::active_count(&state.pool).await.unwrap_or(0);
        Frame {
            active,
            connected: s.connected,
            status_detail: if s.connected { None } else { s.last_error },
            status_text,
            embedded: state.kafka.embedded,
            brokers: state.kafka.brokers.clone(),
            unresolved: view::count(unresolved),
            groups: view::count(groups),
            active_jobs: if active_jobs > 0 {
                view::count(active_jobs)
            } else {
                String::new()
            },
            csrf: super::csrf::token(),
            assets: super::assets::urls(),
        }
    }
}
