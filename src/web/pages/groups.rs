//! Failure groups: records that failed the same way, with their replay outcomes.

use askama::Template;
use axum::extract::State;

use super::{html, PageResult};
use crate::filter::encode_pairs;
use crate::store::groups;
use crate::web::auth::Caller;
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::routes::{Routes, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/groups", VIEWER, failure_groups)
}

struct GroupRow {
    count: String,
    error_short: String,
    error_full: String,
    origin_topic: String,
    masked_message: String,
    sample_message: String,
    first_seen: String,
    first_seen_exact: String,
    last_seen: String,
    last_seen_exact: String,
    sparkline: String,
    link: String,
    /// The group as a replay selection (`group=<fingerprint>`).
    filter_query: String,
    replayed: String,
    consumed: String,
    failed_again: String,
    looping: String,
    looping_n: i64,
    replayed_n: i64,
}

#[derive(Template)]
#[template(path = "pages/groups.html")]
struct GroupsPage {
    frame: Frame,
    rows: Vec<GroupRow>,
}

async fn failure_groups(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let now = crate::clock::now_ms();
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    let mut rows = Vec::new();
    for mut g in groups::list(&state.pool, 200).await? {
        crate::web::masking::group(&sight, &mut g);
        rows.push(GroupRow {
            count: view::count(g.count),
            error_short: g
                .error_class
                .as_deref()
                .map(view::short_class)
                .unwrap_or("(no error class)")
                .to_string(),
            error_full: g.error_class.clone().unwrap_or_default(),
            origin_topic: g.origin_topic.clone().unwrap_or_default(),
            masked_message: g
                .masked_message
                .as_deref()
                .map(|m| view::truncate(m, 160))
                .unwrap_or_default(),
            sample_message: g.sample_message.clone().unwrap_or_default(),
            first_seen: view::relative(g.first_seen, now),
            first_seen_exact: view::time(g.first_seen),
            last_seen: view::relative(g.last_seen, now),
            last_seen_exact: view::time(g.last_seen),
            sparkline: view::sparkline(&groups::hourly(&state.pool, &g.fingerprint, now).await?),
            link: messages_link(&[("group", g.fingerprint.clone())]),
            filter_query: encode_pairs(&[("group", g.fingerprint.clone())]),
            replayed: view::count(g.replayed),
            consumed: view::count(g.consumed),
            failed_again: view::count(g.failed_again),
            looping: view::count(g.looping),
            looping_n: g.looping,
            replayed_n: g.replayed,
        });
    }
    html(GroupsPage {
        frame: Frame::build(&state, who.as_ref(), "groups").await,
        rows,
    })
}
