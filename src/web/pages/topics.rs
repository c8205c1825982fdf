//! The topic page: each partition of a DLQ topic with what the index holds, where the
//! broker's log starts, and its reclaimable prefix; and the "Reclaim…" forms: a preview per
//! partition, then the confirmation that calls DeleteRecords.

use askama::Template;
use axum::extract::{Path, State};

use super::{html, PageResult};
use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::store::reclaim::Reclaimable;
use crate::web::auth::Caller;
use crate::web::extract::{Actor, CsrfForm};
use crate::web::frame::Frame;
use crate::web::links::{messages_link, path_segment};
use crate::web::routes::{Routes, ADMIN, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/topics/{topic}", VIEWER, topic_page)
        .post("/topics/{topic}/reclaim/preview", ADMIN, preview)
        .post("/topics/{topic}/reclaim", ADMIN, confirm)
}

/// One partition's row.
struct PartitionRow {
    partition: i32,
    generation: i64,
    indexed: String,
    log_start: String,
    reclaimed_to: String,
    in_flight: Option<String>,
    reclaimable_to: Option<String>,
    records: String,
    bytes: String,
}

impl PartitionRow {
    fn of(p: &Reclaimable) -> Self {
        let reclaimable = p.reclaimable_to().is_some();
        PartitionRow {
            partition: p.partition,
            generation: p.generation,
            indexed: view::count(p.indexed),
            log_start: p.log_start.map(view::count).unwrap_or_else(|| "–".into()),
            reclaimed_to: p.reclaimed_to.map(view::count).unwrap_or_default(),
            in_flight: p.reclaiming_to.map(view::count),
            reclaimable_to: p.reclaimable_to().map(view::count),
            records: view::count(if reclaimable { p.records } else { 0 }),
            bytes: view::bytes(if reclaimable { p.bytes } else { 0 }),
        }
    }
}

/// A banner under the top bar: a confirmation or why not.
struct Banner {
    warn: bool,
    text: String,
}

#[derive(Template)]
#[template(path = "pages/topic.html")]
struct TopicPage {
    frame: Frame,
    topic: String,
    topic_path: String,
    messages_link: String,
    rows: Vec<PartitionRow>,
    any_reclaimable: bool,
    /// Whether this is the preview of a reclaim.
    previewing: bool,
    /// The partitions the preview covers.
    preview: Vec<PartitionRow>,
    preview_records: String,
    preview_bytes: String,
    banner: Option<Banner>,
}

async fn render(
    state: &AppState,
    who: Option<&Identity>,
    topic: &str,
    preview_of: Option<&[i32]>,
    banner: Option<Banner>,
) -> PageResult {
    let plan = state.actions.reclaimable(topic).await?;
    let previewed: Vec<&Reclaimable> = match preview_of {
        None => Vec::new(),
        Some(asked) => plan
            .iter()
            .filter(|p| asked.contains(&p.partition) && p.reclaimable_to().is_some())
            .collect(),
    };
    html(TopicPage {
        frame: Frame::build(state, who, "overview").await,
        topic: topic.to_string(),
        topic_path: path_segment(topic),
        messages_link: messages_link(&[("topic", topic.to_string())]),
        previewing: preview_of.is_some(),
        any_reclaimable: plan.iter().any(|p| p.reclaimable_to().is_some()),
        rows: plan.iter().map(PartitionRow::of).collect(),
        preview_records: view::count(previewed.iter().map(|p| p.records).sum()),
        preview_bytes: view::bytes(previewed.iter().map(|p| p.bytes).sum()),
        preview: previewed.into_iter().map(PartitionRow::of).collect(),
        banner,
    })
}

/// `GET /topics/{topic}`.
async fn topic_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(topic): Path<String>,
) -> PageResult {
    render(&state, who.as_ref(), &topic, None, None).await
}

/// The partitions a reclaim form names (`partition` fields), refused when none.
fn form_partitions(form: &CsrfForm) -> Result<Vec<i32>> {
    if let Some((unknown, _)) = form.0.iter().find(|(k, _)| k != "partition") {
        return Err(Error::BadRequest(format!(
            "The form has an unknown field '{unknown}'; reload the page and try again."
        )));
    }
    let partitions: Vec<i32> = form
        .all("partition")
        .map(|p| {
            p.parse::<i32>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| Error::BadRequest(format!("'{p}' is not a partition number.")))
        })
        .collect::<Result<_>>()?;
    if partitions.is_empty() {
        return Err(Error::BadRequest(
            "No partition is ticked: tick the partitions to reclaim.".into(),
        ));
    }
    Ok(partitions)
}

/// `POST /topics/{topic}/reclaim/preview`: what confirming would delete, per partition.
/// Nothing is changed; the confirmation recomputes every prefix.
async fn preview(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(topic): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let partitions = form_partitions(&form)?;
    render(&state, who.as_ref(), &topic, Some(&partitions), None).await
}

/// `POST /topics/{topic}/reclaim`: reclaim on the broker, then the topic page with what
/// happened; a refusal (no DeleteRecords on the broker, no ACL, nothing reclaimable any
/// more) is a banner on the page, not an error page.
async fn confirm(
    State(state): State<AppState>,
    Caller(who): Caller,
    Actor(actor): Actor,
    Path(topic): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let partitions = form_partitions(&form)?;
    let banner = match state
        .actions
        .reclaim(&topic, Some(&partitions), &actor)
        .await
    {
        Ok(outcome) => {
            let records: i64 = outcome.reclaimed.iter().map(|r| r.records).sum();
            let mut text = format!(
                "Deleted {} message{} on the broker ({}), kept in the index.",
                view::count(records),
                if records == 1 { "" } else { "s" },
                outcome
                    .reclaimed
                    .iter()
                    .map(|r| format!(
                        "partition {} now starts at offset {}",
                        r.partition,
                        view::count(r.low_watermark)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(r) = outcome.refused.first() {
                text.push_str(&format!(" Partition {}: {}", r.partition, r.reason));
            }
            Banner {
                warn: !outcome.refused.is_empty(),
                text,
            }
        }
        Err(Error::Conflict(why) | Error::Unavailable(why)) => Banner {
            warn: true,
            text: why,
        },
        Err(e) => return Err(e.into()),
    };
    render(&state, who.as_ref(), &topic, None, Some(banner)).await
}
