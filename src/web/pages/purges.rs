//! Purge pages: the preview to confirm (with the reason, the erasure and, for every
//! message, the extra yes), the purges list, one purge with its undo and erase forms, and
//! the forms that start them from the list, group and message pages.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};

use super::selection::{
    parse_message_ref, selection_from_form, selection_view, RefusalRow, SelectionView,
};
use super::{html, PageResult};
use crate::actions::purge::{self, PurgeRequest};
use crate::actions::selection::MessageRef;
use crate::error::{Error, Result};
use crate::states::PurgeStatus;
use crate::store::purges::{self as stored, Purge};
use crate::store::records;
use crate::web::auth::Caller;
use crate::web::extract::{Actor, CsrfForm};
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::routes::{Routes, ADMIN, OPERATOR, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// Page routes for purges.
pub fn router() -> Routes {
    Routes::new()
        .get("/purges", VIEWER, purges_page)
        .post("/purges/preview", OPERATOR, create_preview)
        .get("/purges/{id}", VIEWER, purge_page)
        .get("/purges/{id}/preview", OPERATOR, preview_page)
        .post("/purges/{id}/confirm", OPERATOR, confirm)
        .post("/purges/{id}/undo", OPERATOR, undo)
        .post("/purges/{id}/erase", ADMIN, erase)
}

/// Purges listed on /purges.
const PURGES_LISTED: i64 = 200;

fn purge_link(id: &str) -> String {
    format!("/purges/{}", path_segment(id))
}

/// The reason and erasure a form carries.
fn form_request(form: &CsrfForm) -> Result<PurgeRequest> {
    Ok(PurgeRequest {
        reason: purge::reason(
            form.get("reason")
                .map(|r| serde_json::Value::String(r.to_string()))
                .as_ref(),
        )?,
        erase: form.get("erase").is_some_and(|v| v == "1" || v == "on"),
    })
}

/// `POST /purges/preview`: freeze the selection as a purge preview (nothing is purged),
/// then show it.
async fn create_preview(
    State(state): State<AppState>,
    Actor(actor): Actor,
    crate::web::auth::Caller(who): crate::web::auth::Caller,
    form: CsrfForm,
) -> PageResult {
    let selection = selection_from_form(&form)?;
    crate::web::masking::refuse_selection(&state, who.as_ref(), &selection)?;
    let request = form_request(&form)?;
    let preview = state
        .actions
        .purge_preview(selection, request, &actor)
        .await?;
    Ok(Redirect::to(&format!("{}/preview", purge_link(&preview.preview_id))).into_response())
}

#[derive(Template)]
#[template(path = "pages/purge_preview.html")]
struct PreviewPage {
    frame: Frame,
    id: String,
    count: String,
    count_n: i64,
    by_topic: Vec<(String, String)>,
    by_status: Vec<(String, String)>,
    refused: Vec<RefusalRow>,
    refused_count: String,
    refused_n: i64,
    refused_partial: bool,
    refused_listed: usize,
    reason: String,
    erase: bool,
    everything: bool,
    expires: String,
    selection: SelectionView,
}

/// Refusals as page rows.
fn refusal_rows(
    refused: &[crate::actions::Refusal],
    reset: &[(String, i32, i64)],
) -> Vec<RefusalRow> {
    refused
        .iter()
        .map(|r| RefusalRow {
            label: format!("{}/{}/{}", r.topic, r.partition, r.offset),
            link: format!(
                "/messages/{}",
                message_path_of(&r.topic, r.partition, r.offset, r.generation, reset)
            ),
            reason: r.reason.clone(),
        })
        .collect()
}

fn counted(map: &std::collections::BTreeMap<String, i64>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, n)| (k.clone(), view::count(*n)))
        .collect()
}

fn expired_preview(id: &str) -> Error {
    Error::NotFound(format!(
        "There is no purge preview {id}: a preview expires an hour after it is made unless confirmed; preview the selection again from the messages list."
    ))
}

/// `GET /purges/{id}/preview`: what confirming would purge.
async fn preview_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> PageResult {
    let Some(p) = stored::purge(&state.pool, &id).await? else {
        return Err(expired_preview(&id).into());
    };
    if p.status != PurgeStatus::Preview {
        return Ok(Redirect::to(&purge_link(&id)).into_response());
    }
    let preview = state.actions.purge_preview_of(&id).await?;
    let reset = records::current_generations(&state.pool).await?;
    let refused = refusal_rows(&preview.refused, &reset);
    html(PreviewPage {
        frame: Frame::build(&state, who.as_ref(), "purges").await,
        count: view::count(preview.count),
        count_n: preview.count,
        by_topic: counted(&preview.by_topic),
        by_status: counted(&preview.by_status),
        refused_listed: refused.len(),
        refused_partial: preview.refused_count > refused.len() as i64,
        refused,
        refused_count: view::count(preview.refused_count),
        refused_n: preview.refused_count,
        reason: preview.reason.clone().unwrap_or_default(),
        erase: preview.erase,
        everything: preview.everything,
        expires: view::time(p.created_at + crate::actions::PREVIEW_TTL_MS),
        selection: selection_view(&p.selection),
        id: preview.preview_id,
    })
}

/// `POST /purges/{id}/confirm`: purge what the preview froze, then show the purge.
async fn confirm(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    let request = form_request(&form)?;
    let everything = form
        .get("everything")
        .is_some_and(|v| v == "1" || v == "on");
    match state
        .actions
        .purge_confirm(&id, everything, Some(request), &actor)
        .await
    {
        Ok(done) => Ok(Redirect::to(&purge_link(&done.id)).into_response()),
        Err(Error::NotFound(_)) => Err(expired_preview(&id).into()),
        Err(e) => Err(e.into()),
    }
}

/// The listed messages of an undo or erase form (`message` values), or None for all.
fn form_messages(form: &CsrfForm) -> Result<Option<Vec<MessageRef>>> {
    let list: Vec<MessageRef> = form
        .all("message")
        .map(parse_message_ref)
        .collect::<Result<_>>()?;
    Ok((!list.is_empty()).then_some(list))
}

/// Where an undo or erase form sends the operator back to: the message page it came from,
/// or the purge.
fn back_to(form: &CsrfForm, id: &str) -> String {
    match form.get("back") {
        Some(b) if b.starts_with("/messages/") => b.to_string(),
        _ => purge_link(id),
    }
}

/// `POST /purges/{id}/undo`: restore all of a purge's messages, or the listed one.
async fn undo(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    state
        .actions
        .purge_undo(&id, form_messages(&form)?, &actor)
        .await?;
    Ok(Redirect::to(&back_to(&form, &id)).into_response())
}

/// `POST /purges/{id}/erase`: erase the payloads of all of a purge's messages, or the
/// listed one.
async fn erase(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    form: CsrfForm,
) -> PageResult {
    if form.get("confirm") != Some("1") {
        return Err(Error::BadRequest(
            "Erasing cannot be undone: tick \"erase for good\" to confirm it.".into(),
        )
        .into());
    }
    state
        .actions
        .purge_erase(&id, form_messages(&form)?, &actor)
        .await?;
    Ok(Redirect::to(&back_to(&form, &id)).into_response())
}

/// One purge as a list row and page header.
struct PurgeRow {
    id: String,
    link: String,
    status: String,
    actor: String,
    reason: String,
    created: String,
    purged: String,
    still_purged: String,
    refused: String,
    undone: String,
    erased: String,
    erase: bool,
    undo_possible: bool,
    topics: String,
}

impl PurgeRow {
    fn of(p: &Purge) -> Self {
        let holdable = p.still_purged() - p.erased;
        PurgeRow {
            id: p.id.clone(),
            link: purge_link(&p.id),
            status: p.status.words(),
            actor: p.actor.clone(),
            reason: p.reason.clone().unwrap_or_default(),
            created: view::time(p.created_at),
            purged: view::count(p.purged),
            still_purged: view::count(p.still_purged()),
            refused: view::count(p.refused + p.skipped),
            undone: view::count(p.undone),
            erased: view::count(p.erased),
            erase: p.erase,
            undo_possible: p.status == PurgeStatus::Applied && holdable > 0,
            topics: p.by_topic.0.keys().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/purges.html")]
struct PurgesPage {
    frame: Frame,
    purges: Vec<PurgeRow>,
}

async fn purges_page(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let purges = stored::purges(&state.pool, PURGES_LISTED).await?;
    html(PurgesPage {
        frame: Frame::build(&state, who.as_ref(), "purges").await,
        purges: purges.iter().map(PurgeRow::of).collect(),
    })
}

#[derive(Template)]
#[template(path = "pages/purge.html")]
struct PurgePage {
    frame: Frame,
    p: PurgeRow,
    selection: SelectionView,
    purged_link: String,
    refused: Vec<RefusalRow>,
    refused_n: i64,
}

async fn purge_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> PageResult {
    let p = state.actions.find_purge(&id, false).await?;
    let reset = records::current_generations(&state.pool).await?;
    let refusals: Vec<crate::actions::Refusal> =
        stored::refusals(&state.pool, &id, crate::actions::REFUSALS_LISTED)
            .await?
            .into_iter()
            .map(crate::actions::Refusal::from)
            .collect();
    html(PurgePage {
        frame: Frame::build(&state, who.as_ref(), "purges").await,
        selection: selection_view(&p.selection),
        purged_link: messages_link(&[("status", "purged".into())]),
        refused: refusal_rows(&refusals, &reset),
        refused_n: stored::refused_count(&state.pool, &id).await?,
        p: PurgeRow::of(&p),
    })
}
