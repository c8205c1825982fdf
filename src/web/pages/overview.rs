//! The overview: every DLQ topic with its unresolved count, age and trend, and the log
//! events (resets, moves) the indexer met.

use askama::Template;
use axum::extract::State;

use super::{html, PageResult};
use crate::store::{self, stats};
use crate::web::auth::Caller;
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::routes::{Routes, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/", VIEWER, overview)
}

struct ErrorClassLink {
    short: String,
    full: String,
    count: String,
    link: String,
}

struct TopicCard {
    topic: String,
    link: String,
    /// The topic page: partitions, log starts, reclaim.
    topic_link: String,
    partitions: i64,
    total: String,
    unresolved: String,
    has_unresolved: bool,
    oldest_unresolved_age: Option<String>,
    oldest_unresolved_exact: String,
    newest: Option<String>,
    newest_exact: String,
    sparkline: String,
    inflow_24h: String,
    by_status: Vec<(String, String)>,
    top_errors: Vec<ErrorClassLink>,
    notices: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/overview.html")]
struct OverviewPage {
    frame: Frame,
    cards: Vec<TopicCard>,
    total_unresolved: String,
    total_messages: String,
    topic_count: usize,
    looking_for: String,
    default_pattern: bool,
    indexed_since_start: String,
    /// Records on the brokers not indexed yet, across assigned partitions.
    behind: String,
    /// The index's size and the free space of its file system, in words.
    disk: String,
    /// Free space is below --min-free-space.
    disk_low: bool,
    /// What --retain max-records removed before it was resolved, per topic, in a sentence.
    retention_note: Option<String>,
}

async fn overview(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let now = crate::clock::now_ms();
    let snapshot = state.status.snapshot();
    let overviews = stats::topic_overviews(&state.pool, &snapshot.assigned_partitions, now).await?;
    let events = store::events::recent(&state.pool, None, 200).await?;
    let forced: Vec<store::retention::Removed> = store::retention::removed(&state.pool)
        .await?
        .into_iter()
        .filter(|r| r.kind == "capped_unresolved" && r.count > 0)
        .collect();
    let cap = state
        .retention
        .retain
        .max_records
        .map(|n| format!(" ({})", view::count(n)))
        .unwrap_or_default();
    let mut total_unresolved = 0;
    let mut total_messages = 0;
    // Top errors name error classes and link to a filter on them: left out where a redacted
    // header can fill the class.
    let classes_shown = !state
        .disclosure
        .sight(who.as_ref().map(|w| w.role))
        .masks(crate::index::normalise::Field::ErrorClass);
    let cards = overviews
        .into_iter()
        .map(|o| {
            total_unresolved += o.unresolved();
            total_messages += o.messages;
            TopicCard {
                link: messages_link(&[("topic", o.topic.clone())]),
                topic_link: format!("/topics/{}", path_segment(&o.topic)),
                partitions: o.partitions,
                total: view::count(o.messages),
                unresolved: view::count(o.unresolved()),
                has_unresolved: o.unresolved() > 0,
                oldest_unresolved_age: o.oldest_unresolved.map(|t| view::age(t, now)),
                oldest_unresolved_exact: o.oldest_unresolved.map(view::time).unwrap_or_default(),
                newest: o.newest.map(|t| view::relative(t, now)),
                newest_exact: o.newest.map(view::time).unwrap_or_default(),
                sparkline: view::sparkline(&o.hourly),
                inflow_24h: view::count(o.hourly.iter().sum()),
                by_status: o
                    .by_status
                    .iter()
                    .map(|(s, n)| (s.clone(), view::count(*n)))
                    .collect(),
                top_errors: o
                    .top_errors
                    .iter()
                    .filter(|_| classes_shown)
                    .map(|(class, n)| ErrorClassLink {
                        short: view::short_class(class).to_string(),
                        full: class.clone(),
                        count: view::count(*n),
                        link: messages_link(&[
                            ("topic", o.topic.clone()),
                            ("error_class", class.clone()),
                        ]),
                    })
                    .collect(),
                notices: forced
                    .iter()
                    .filter(|r| r.topic == o.topic)
                    .map(|r| {
                        format!(
                            "{} unresolved message{} removed by --retain max-records{cap}, the oldest first, last on {}.",
                            view::count(r.count),
                            if r.count == 1 { " was" } else { "s were" },
                            view::time(r.last_at)
                        )
                    })
                    .chain(
                        events
                            .iter()
                            .filter(|e| e.topic == o.topic)
                            .take(3)
                            .map(|e| format!("{} (noticed {})", e.message, view::time(e.detected_at))),
                    )
                    .collect(),
                topic: o.topic,
            }
        })
        .collect::<Vec<_>>();
    let health = crate::web::health::index_health(&state).await;
    let index_bytes = store::database_size(&state.pool).await.unwrap_or(0).max(0) as u64;
    let folder = store::space::folder_of(state.health.database());
    let disk = match health.space {
        Some(s) => format!(
            "index {} · {} free of {} on {}{}",
            store::space::human(index_bytes),
            store::space::human(s.available),
            store::space::human(s.total),
            folder.display(),
            if s.read_only { " (read-only)" } else { "" }
        ),
        None => format!(
            "index {} · the free space of {} cannot be read",
            store::space::human(index_bytes),
            folder.display()
        ),
    };
    let retention_note = (!forced.is_empty()).then(|| {
        let total: i64 = forced.iter().map(|r| r.count).sum();
        format!(
            "The index reached --retain max-records{cap}, so {} message{} that {} not resolved {} removed, the oldest first: {}.",
            view::count(total),
            if total == 1 { "" } else { "s" },
            if total == 1 { "was" } else { "were" },
            if total == 1 { "was" } else { "were" },
            forced
                .iter()
                .map(|r| format!("{} ({})", r.topic, view::count(r.count)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    html(OverviewPage {
        retention_note,
        disk,
        disk_low: health.space_warning.is_some(),
        frame: Frame::build(&state, who.as_ref(), "overview").await,
        topic_count: cards.len(),
        cards,
        total_unresolved: view::count(total_unresolved),
        total_messages: view::count(total_messages),
        looking_for: state.actions.topics().subscriptions.join(", "),
        default_pattern: state.actions.topics().subscriptions
            == [crate::topics::DEFAULT_DLQ_PATTERN],
        indexed_since_start: view::count(snapshot.indexed as i64),
        behind: view::count(snapshot.lag.iter().map(|(_, _, lag)| lag).sum()),
    })
}
