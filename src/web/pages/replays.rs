//! Replay pages: the jobs list, a preview to confirm, a job with its live funnel and
//! results, and the forms that start and steer jobs.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect};

use super::selection::{selection_from_form, selection_view, RefusalRow, SelectionView};
use super::ReplayAfter;
use super::{html, PageResult};
use crate::actions::replay::{self as plan};
use crate::actions::JobControl;
use crate::error::{Error, Result};
use crate::filter::encode_pairs;
use crate::replay::outcomes::GroupSource;
use crate::states::ItemState;
use crate::states::JobStatus;
use crate::store::items;
use crate::store::jobs::{self, Job};
use crate::store::records;
use crate::web::auth::Caller;
use crate::web::extract::{Actor, CsrfForm};
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::query::{results_query, ResultsQuery};
use crate::web::routes::{Routes, OPERATOR, VIEWER};
use crate::web::view::{self, duration, target_text};
use crate::web::AppState;

/// Page routes for replays and the audit log.
pub fn router() -> Routes {
    Routes::new()
        .get("/replays", VIEWER, jobs_page)
        .post("/replays/preview", OPERATOR, create_preview)
        .get("/replays/{id}", VIEWER, job_page)
        .get("/replays/{id}/preview", OPERATOR, preview_page)
        .post("/replays/{id}/start", OPERATOR, start)
        .post("/replays/{id}/{action}", OPERATOR, control)
}

/// Results listed per page on the job page.
const RESULTS_PER_PAGE: i64 = 100;
/// Jobs listed on /replays.
const JOBS_LISTED: i64 = 200;

/// A rate from a form field: blank keeps the default (or the previewed rate).
fn form_rate(form: &CsrfForm) -> Result<Option<i64>> {
    match form.get("rate").map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) => plan::rate(Some(&serde_json::Value::String(r.to_string()))).map(Some),
    }
}

/// `POST /replays/preview`: freeze the selection as a preview (nothing is sent), then show it.
async fn create_preview(
    State(state): State<AppState>,
    Actor(actor): Actor,
    form: CsrfForm,
) -> PageResult {
    let selection = selection_from_form(&form)?;
    let rate = form_rate(&form)?.unwrap_or(plan::DEFAULT_RATE);
    let preview = state.actions.preview(selection, rate, &actor).await?;
    // Post/redirect/get: reloading the preview page neither asks to resend the form nor
    // freezes a second preview.
    Ok(Redirect::to(&format!("{}/preview", job_link(&preview.preview_id))).into_response())
}

#[derive(Template)]
#[template(path = "pages/preview.html")]
struct PreviewPage {
    frame: Frame,
    id: String,
    count: String,
    count_n: i64,
    targets: Vec<(String, String)>,
    refused: Vec<RefusalRow>,
    refused_count: String,
    refused_n: i64,
    refused_listed: usize,
    refused_partial: bool,
    rate: i64,
    estimate: String,
    unlimited_seconds: f64,
    expires: String,
    selection: SelectionView,
    compression: CompressionView,
    /// "14 of these failed again after an earlier replay", when any did.
    failed_again_warning: Option<String>,
}

/// The preview's warning about messages that came back after earlier replays.
fn failed_again_warning(failed_again: i64, looping: i64) -> Option<String> {
    if failed_again == 0 {
        return None;
    }
    let these = if failed_again == 1 {
        "1 of these failed".to_string()
    } else {
        format!("{} of these failed", view::count(failed_again))
    };
    let loops = match looping {
        0 => String::new(),
        1 => "; 1 failed again after two or more replays, a loop that another replay is unlikely to break".to_string(),
        n => format!(
            "; {} failed again after two or more replays, a loop that another replay is unlikely to break",
            view::count(n)
        ),
    };
    Some(format!("{these} again after an earlier replay{loops}."))
}

/// The codec a job sends with, and a warning when some clients cannot read it.
struct CompressionView {
    name: &'static str,
    warning: Option<&'static str>,
}

impl CompressionView {
    fn of(compression: crate::kafka::Compression) -> Self {
        CompressionView {
            name: compression.name(),
            warning: (!compression.read_by_every_client()).then_some(
                "KafkaJS and kafka-python consumers cannot read this codec without plugins; a batch they cannot read stops their consumer group.",
            ),
        }
    }
}

/// `GET /replays/{id}/preview`: what confirming would do.
async fn preview_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> PageResult {
    let Some(job) = jobs::job(&state.pool, &id).await? else {
        return Err(expired_preview(&id).into());
    };
    if job.status != JobStatus::Preview {
        return Ok(Redirect::to(&job_link(&id)).into_response());
    }
    let preview = state.actions.preview_of(&id).await?;
    let reset = records::current_generations(&state.pool).await?;
    let refused = preview
        .refused
        .iter()
        .map(|r| RefusalRow {
            label: format!("{}/{}/{}", r.topic, r.partition, r.offset),
            link: format!(
                "/messages/{}",
                message_path_of(&r.topic, r.partition, r.offset, r.generation, &reset)
            ),
            reason: r.reason.clone(),
        })
        .collect::<Vec<_>>();
    html(PreviewPage {
        frame: Frame::build(&state, who.as_ref(), "replays").await,
        count: view::count(preview.count),
        count_n: preview.count,
        targets: preview
            .targets
            .iter()
            .map(|(t, n)| (t.clone(), view::count(*n)))
            .collect(),
        refused_listed: refused.len(),
        refused_partial: preview.refused_count > refused.len() as i64,
        refused,
        refused_count: view::count(preview.refused_count),
        refused_n: preview.refused_count,
        rate: preview.rate,
        estimate: duration(preview.estimated_seconds),
        unlimited_seconds: plan::estimated_seconds(preview.count, 0),
        expires: view::time(job.created_at + plan::PREVIEW_TTL_MS),
        selection: selection_view(&job.selection),
        compression: CompressionView::of(preview.replay.compression),
        failed_again_warning: failed_again_warning(preview.failed_again_before, preview.looping),
        id: preview.preview_id,
    })
}

fn expired_preview(id: &str) -> Error {
    Error::NotFound(format!(
        "There is no preview {id}: a preview expires an hour after it is made unless confirmed; preview the selection again from the messages list."
    ))
}

/// `POST /replays/{id}/start`: confirm a preview at the chosen rate and go to its job page.
async fn start(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let rate = form_rate(&form)?;
    match state.actions.confirm(&id, rate, &actor).await {
        Ok(job) => Ok(Redirect::to(&job_link(&job.id)).into_response()),
        Err(Error::NotFound(_)) => Err(expired_preview(&id).into()),
        // Pressed twice (or by two people): the job runs once; show it.
        Err(Error::Conflict(_))
            if jobs::job(&state.pool, &id)
                .await?
                .is_some_and(|j| j.status != JobStatus::Preview) =>
        {
            Ok(Redirect::to(&job_link(&id)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The job page's Pause, Resume and Cancel buttons.
async fn control(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path((id, action)): Path<(String, String)>,
    _form: CsrfForm,
) -> PageResult {
    let action = JobControl::parse(&action)?;
    let job = state.actions.control(&id, action, &actor).await?;
    Ok(Redirect::to(&job_link(&job.id)).into_response())
}

/// The figures of a job, as the job page and the jobs list show them (static/app.js
/// updates the same figures from `GET /api/replays/{id}`).
struct JobFigures {
    id: String,
    link: String,
    status: JobStatus,
    status_text: String,
    is_final: bool,
    total: String,
    sent: String,
    failed: String,
    remaining: String,
    refused: String,
    cancelled: String,
    /// Messages done (sent, failed or cancelled), for the progress bar.
    done: i64,
    /// The progress bar's maximum (never 0).
    max: i64,
    percent: String,
    rate: String,
    eta: String,
    targets: Vec<(String, String)>,
    actor: String,
    created: String,
    created_exact: String,
    created_iso: String,
    started: Option<String>,
    finished: Option<String>,
    compression: CompressionView,
    consumed: String,
    failed_again: String,
    failed_again_probably: String,
    failed_again_probably_n: i64,
    awaiting_consumption: String,
    tracking: Vec<TrackingRow>,
    sent_n: i64,
    /// Whether the page goes on polling for consumption after the job finished.
    following: bool,
    /// Why the running job waits (its results cannot be recorded), empty while it can go on.
    waiting_on: String,
}

/// How one target topic's consumption is followed, as the job page says it.
struct TrackingRow {
    target: String,
    groups: String,
    source: &'static str,
    note: Option<String>,
}

impl TrackingRow {
    fn all(job: &Job) -> Result<Vec<TrackingRow>> {
        Ok(job
            .consumer_groups
            .0
            .iter()
            .cloned()
            .map(|t| TrackingRow {
                groups: t.groups.join(", "),
                source: match t.source {
                    Some(GroupSource::Flag) => "from --replay-consumer-group",
                    Some(GroupSource::Headers) => "from the records' headers",
                    Some(GroupSource::Broker) => "listed by the broker, with commits on the topic",
                    None => "",
                },
                note: t.note,
                target: t.target_topic,
            })
            .collect())
    }
}

impl JobFigures {
    fn new(state: &AppState, job: &Job, now: i64) -> Result<Self> {
        let remaining = job.remaining();
        let done = job.total - remaining;
        let is_final = job.status.is_final();
        let eta = if !is_final && job.status != JobStatus::Paused && job.rate > 0 {
            duration(plan::estimated_seconds(remaining, job.rate))
        } else {
            "–".into()
        };
        let tracking = TrackingRow::all(job)?;
        Ok(JobFigures {
            following: job.awaiting_consumption() > 0
                && tracking.iter().any(|t| !t.groups.is_empty()),
            consumed: view::count(job.consumed),
            failed_again: view::count(job.failed_again),
            failed_again_probably: view::count(job.failed_again_probably),
            failed_again_probably_n: job.failed_again_probably,
            awaiting_consumption: view::count(job.awaiting_consumption()),
            tracking,
            sent_n: job.sent,
            waiting_on: crate::web::health::replay_waiting_on(state, job.status)
                .unwrap_or_default(),
            id: job.id.clone(),
            link: job_link(&job.id),
            status: job.status,
            status_text: job.status.words(),
            is_final,
            total: view::count(job.total),
            sent: view::count(job.sent),
            failed: view::count(job.failed),
            remaining: view::count(remaining),
            refused: view::count(job.refused),
            cancelled: view::count(job.cancelled),
            done,
            max: job.total.max(1),
            percent: format!("{}%", done * 100 / job.total.max(1)),
            rate: if job.rate == 0 {
                "unlimited".into()
            } else {
                format!("{}/s", view::count(job.rate))
            },
            eta,
            targets: job
                .target_counts()
                .into_iter()
                .map(|(t, n)| (t, view::count(n)))
                .collect(),
            actor: job.actor.clone(),
            created: view::relative(job.created_at, now),
            created_exact: view::time(job.created_at),
            created_iso: crate::clock::iso(job.created_at),
            compression: CompressionView::of(job.compression),
            started: job.started_at.map(view::time),
            finished: job.finished_at.map(view::time),
        })
    }
}

#[derive(Template)]
#[template(path = "pages/replays.html")]
struct JobsPage {
    frame: Frame,
    jobs: Vec<JobFigures>,
    capped: bool,
}

/// `GET /replays`: jobs, newest first.
async fn jobs_page(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let now = crate::clock::now_ms();
    let jobs: Vec<JobFigures> = jobs::jobs(&state.pool, JOBS_LISTED)
        .await?
        .iter()
        .map(|j| JobFigures::new(&state, j, now))
        .collect::<Result<_>>()?;
    html(JobsPage {
        frame: Frame::build(&state, who.as_ref(), "replays").await,
        capped: jobs.len() as i64 >= JOBS_LISTED,
        jobs,
    })
}

struct ResultRow {
    state: ItemState,
    label: String,
    link: String,
    target: String,
    replay_count: String,
    when: String,
    reason: String,
    after: ReplayAfter,
}

struct StateLink {
    state: ItemState,
    count: String,
    link: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/replay.html")]
struct JobPageView {
    frame: Frame,
    job: JobFigures,
    selection: SelectionView,
    can_pause: bool,
    can_resume: bool,
    can_cancel: bool,
    results: Vec<ResultRow>,
    states: Vec<StateLink>,
    only: Option<ItemState>,
    all_link: String,
    more_link: Option<String>,
    paged: bool,
}

/// `GET /replays/{id}`: a job's progress, controls and per-message results.
async fn job_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let Some(job) = jobs::job(&state.pool, &id).await? else {
        return Err(plan::unknown_job(&id).into());
    };
    if job.status == JobStatus::Preview {
        return Ok(Redirect::to(&format!("{}/preview", job_link(&id))).into_response());
    }
    let ResultsQuery { only, cursor, .. } = results_query(query.as_deref(), false, 0)?;
    let paged = cursor.is_some();
    let now = crate::clock::now_ms();
    let (mut items, next) =
        items::result_page(&state.pool, &id, only, cursor, RESULTS_PER_PAGE).await?;
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    for i in &mut items {
        crate::web::masking::item(&sight, i);
    }
    let reset = records::current_generations(&state.pool).await?;
    let link = job_link(&id);
    let with = |pairs: &[(&str, String)]| {
        if pairs.is_empty() {
            link.clone()
        } else {
            format!("{link}?{}", encode_pairs(pairs))
        }
    };
    let counts = items::item_counts(&state.pool, &id).await?;
    let states = ItemState::ALL
        .iter()
        .filter_map(|&s| {
            counts.get(s.as_str()).map(|n| StateLink {
                state: s,
                count: view::count(*n),
                link: with(&[("state", s.to_string())]),
                current: only == Some(s),
            })
        })
        .collect();
    let results = items
        .iter()
        .map(|r| ResultRow {
            after: ReplayAfter::of(r, now, &reset),
            state: r.state,
            label: format!("{}/{}/{}", r.topic, r.partition, r.offset),
            link: format!(
                "/messages/{}",
                message_path_of(&r.topic, r.partition, r.offset, r.generation, &reset)
            ),
            target: target_text(
                r.target_topic.as_deref(),
                r.target_partition,
                r.target_offset,
            ),
            replay_count: r.replay_count.map(|n| n.to_string()).unwrap_or_default(),
            when: r.finished_at.map(view::time).unwrap_or_default(),
            reason: r.reason.clone().unwrap_or_default(),
        })
        .collect();
    let more_link = next.map(|c| {
        let mut pairs = Vec::new();
        if let Some(s) = only {
            pairs.push(("state", s.to_string()));
        }
        pairs.push(("cursor", c));
        with(&pairs)
    });
    let s = job.status;
    html(JobPageView {
        frame: Frame::build(&state, who.as_ref(), "replays").await,
        can_pause: [JobStatus::Queued, JobStatus::Running].contains(&s),
        can_resume: s == JobStatus::Paused,
        can_cancel: [JobStatus::Queued, JobStatus::Running, JobStatus::Paused].contains(&s),
        selection: selection_view(&job.selection),
        job: JobFigures::new(&state, &job, now)?,
        results,
        states,
        only,
        all_link: link.clone(),
        more_link,
        paged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration(0.0), "under 1 s");
        assert_eq!(duration(0.4), "under 1 s");
        assert_eq!(duration(1.0), "1 s");
        assert_eq!(duration(41.2), "42 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(7500.0), "2 h 5 min");
        assert_eq!(duration(f64::INFINITY), "–");
    }
}
