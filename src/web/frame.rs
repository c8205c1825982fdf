//! The frame around every page: top bar, connection status, navigation counts, who is
//! signed in and what their role lets the page offer, and the CSRF token its forms carry.

use crate::auth::role::Role;
use crate::auth::{Identity, Mode};
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
    /// The CSRF token of this session (with auth off, of this process), carried by every
    /// form that changes something.
    pub csrf: String,
    /// The signed-in user, who gets a sign-out button.
    pub user: Option<String>,
    /// The signed-in user's role.
    pub role: &'static str,
    /// Whether the role may replay, purge and undo (the pages hide those buttons otherwise).
    pub can_act: bool,
    /// Whether the role may erase and reclaim.
    pub can_admin: bool,
    /// Nobody is signed in and authentication is on: no navigation, status or counts.
    pub signed_out: bool,
    /// Authentication is off on purpose (`--insecure-no-auth`): the red banner.
    pub insecure: bool,
    /// The hashed URLs of the stylesheet, script and icon.
    pub assets: &'static AssetUrls,
    /// The index's own troubles (it cannot be written, search is behind for a reason, a
    /// held write-ahead log, low space), one sentence each, shown as banners.
    pub index_banners: Vec<String>,
    /// Whether the demo pipeline runs (the navigation links `/demo`).
    pub demo: bool,
}

impl Frame {
    /// The frame for a page whose navigation entry is `active`, as `who` may see it.
    pub(crate) async fn build(
        state: &AppState,
        who: Option<&Identity>,
        active: &'static str,
    ) -> Frame {
        let Some(who) = who else {
            return Frame::signed_out(state);
        };
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
        let index_banners = super::health::index_health(state).await.banners();
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
            csrf: who.csrf.clone().unwrap_or_default(),
            user: (who.mode == Mode::Password).then(|| who.name.clone()),
            role: who.role.as_str(),
            can_act: who.role.allows(Role::Operator),
            can_admin: who.role.allows(Role::Admin),
            signed_out: false,
            insecure: state.auth.insecure,
            assets: super::assets::urls(),
            index_banners,
            demo: state.demo.is_some(),
        }
    }

    /// The frame of the sign-in page and of errors shown to a stranger: nothing about the
    /// cluster or the index.
    pub(crate) fn signed_out(state: &AppState) -> Frame {
        Frame {
            active: "",
            connected: true,
            status_text: String::new(),
            status_detail: None,
            embedded: false,
            brokers: String::new(),
            unresolved: String::new(),
            groups: String::new(),
            active_jobs: String::new(),
            csrf: String::new(),
            user: None,
            role: "",
            can_act: false,
            can_admin: false,
            signed_out: true,
            insecure: state.auth.insecure,
            assets: super::assets::urls(),
            index_banners: Vec::new(),
            demo: false,
        }
    }
}
