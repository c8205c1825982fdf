//! The message list (filters, search, bulk bar) and one message (payload, headers, error,
//! replay history and outcomes).

use askama::Template;
use axum::extract::{Path, RawQuery, State};

use super::{html, PageResult};
use crate::actions::replay::TargetCheck;
use crate::filter::{encode_pairs, MessageQuery, StatusFilter};
use crate::index::normalise::Convention;
use crate::index::record::decode_headers;
use crate::states::{ItemState, RecordStatus};
use crate::store::{self, records, search, stats};
use crate::web::auth::Caller;
use crate::web::extract::{find_record, record_id};
use crate::web::frame::Frame;
use crate::web::links::*;
use crate::web::masking;
use crate::web::routes::{Routes, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/messages", VIEWER, messages).get(
        "/messages/{topic}/{partition}/{offset}",
        VIEWER,
        message,
    )
}

struct MessageRow {
    link: String,
    time_relative: String,
    time_exact: String,
    time_iso: String,
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    error_short: String,
    error_full: String,
    message: String,
    payload_preview: String,
    origin: String,
    status: RecordStatus,
    replay_count: i64,
    /// Replays of it or its lineage that came back to a DLQ.
    failed_again: i64,
    /// Whether that happened after two or more replays.
    replay_loop: bool,
    /// The checkbox value naming this record exactly (see [`selection_value`]).
    select_value: String,
}

/// One line of payload text for rows without an error message ("binary" when not text).
fn payload_preview(head: &[u8]) -> String {
    let text = crate::index::record::text_prefix(head);
    if text.is_empty() && !head.is_empty() {
        "(binary payload)".into()
    } else {
        view::truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "), 120)
    }
}

#[derive(Template)]
#[template(path = "pages/messages.html")]
struct MessagesPage {
    frame: Frame,
    topics: Vec<String>,
    statuses: Vec<&'static str>,
    error_classes: Vec<String>,
    f_topic: String,
    f_status: String,
    f_error_class: String,
    f_origin_topic: String,
    f_key: String,
    f_group: String,
    f_q: String,
    f_from: String,
    f_to: String,
    /// Page size when not the default, kept through the filter form.
    f_limit: Option<u32>,
    rows: Vec<MessageRow>,
    matching: String,
    /// The current filter as a query string, carried by "Replay all matching".
    filter_query: String,
    /// With free text while the search index is behind: records not searchable yet.
    search_pending: Option<String>,
    filtered: bool,
    older_link: Option<String>,
    newer_link: Option<String>,
    api_link: String,
    /// What the rows withhold from this caller, in a sentence.
    withheld: Option<String>,
}

/// Count matches, but stop at a cap so that a broad filter over a large index stays fast.
const COUNT_CAP: i64 = 1_000;

async fn messages(
    State(state): State<AppState>,
    Caller(who): Caller,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let query = MessageQuery::parse(raw.as_deref().unwrap_or(""))?;
    let now = crate::clock::now_ms();
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    masking::refuse_filter(&sight, &query.filter)?;
    let mut page = records::list(&state.pool, &query).await?;
    for r in &mut page.rows {
        masking::summary(&sight, r);
    }
    let f = &query.filter;
    let pairs = f.to_pairs();
    let matching = records::count_capped(&state.pool, f, COUNT_CAP).await?;
    let search_pending = match f.q {
        Some(_) => Some(search::progress(&state.pool).await?)
            .filter(|p| !p.complete())
            .map(|p| view::count(p.pending())),
        None => None,
    };
    let reset = records::current_generations(&state.pool).await?;
    let page_link = |param: &str, cursor: crate::filter::Cursor| {
        let mut p = pairs.clone();
        if query.limit != crate::filter::DEFAULT_LIMIT {
            p.push(("limit", query.limit.to_string()));
        }
        p.push((
            if param == "after" { "after" } else { "cursor" },
            cursor.encode(),
        ));
        messages_link(&p)
    };
    let rows = page
        .rows
        .iter()
        .map(|r| MessageRow {
            link: format!("/messages/{}", message_path(r, &reset)),
            time_relative: view::relative(r.ts, now),
            time_exact: view::time(r.ts),
            time_iso: crate::clock::iso(r.ts),
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            key: r
                .key
                .as_deref()
                .map(|k| view::truncate(&view::bytes_label(k), 40))
                .unwrap_or_default(),
            error_short: r
                .error_class
                .as_deref()
                .map(view::short_class)
                .unwrap_or("")
                .to_string(),
            error_full: r.error_class.clone().unwrap_or_default(),
            message: r
                .error_message
                .as_deref()
                .map(|m| view::truncate(m.lines().next().unwrap_or(""), 140))
                .unwrap_or_default(),
            payload_preview: r
                .value_head
                .as_deref()
                .filter(|_| sight.payloads())
                .map(|head| payload_preview(&sight.payload(head)))
                .unwrap_or_default(),
            origin: r.origin_topic.clone().unwrap_or_default(),
            status: r.status,
            replay_count: r.replay_count,
            failed_again: r.failed_again_count,
            replay_loop: r.failed_again_count >= store::outcomes::LOOP_REPLAYS,
            select_value: selection_value(&r.topic, r.partition, r.offset, r.generation),
        })
        .collect();
    let mut topics = stats::topic_names(&state.pool).await?;
    for assigned in state.status.snapshot().assigned_partitions.into_keys() {
        if !topics.contains(&assigned) {
            topics.push(assigned);
        }
    }
    topics.sort();
    html(MessagesPage {
        frame: Frame::build(&state, who.as_ref(), "messages").await,
        topics,
        statuses: RecordStatus::ALL.iter().map(|s| s.as_str()).collect(),
        error_classes: match sight.masks(crate::index::normalise::Field::ErrorClass) {
            true => Vec::new(),
            false => records::distinct_error_classes(&state.pool).await?,
        },
        f_topic: f.topic.clone().unwrap_or_default(),
        f_status: match &f.status {
            StatusFilter::NotPurged => String::new(),
            StatusFilter::All => "all".into(),
            StatusFilter::Is(s) => s.to_string(),
        },
        f_error_class: f.error_class.clone().unwrap_or_default(),
        f_origin_topic: f.origin_topic.clone().unwrap_or_default(),
        f_key: f.key.clone().unwrap_or_default(),
        f_group: f.group.clone().unwrap_or_default(),
        f_q: f.q.clone().unwrap_or_default(),
        f_from: f.from.map(datetime_local).unwrap_or_default(),
        f_to: f.to.map(datetime_local).unwrap_or_default(),
        f_limit: (query.limit != crate::filter::DEFAULT_LIMIT).then_some(query.limit),
        rows,
        matching: if matching >= COUNT_CAP {
            format!("{}+", view::count(COUNT_CAP))
        } else {
            view::count(matching)
        },
        filter_query: encode_pairs(&pairs),
        search_pending,
        filtered: !f.is_empty(),
        older_link: page.older.map(|c| page_link("cursor", c)),
        newer_link: page.newer.map(|c| page_link("after", c)),
        withheld: sight.note(),
        api_link: if pairs.is_empty() {
            "/api/messages".into()
        } else {
            format!("/api/messages?{}", encode_pairs(&pairs))
        },
    })
}

/// `YYYY-MM-DDTHH:MM` for a datetime-local input (UTC).
fn datetime_local(ms: i64) -> String {
    crate::filter::format_time(ms)
        .trim_end_matches('Z')
        .chars()
        .take(16)
        .collect()
}

struct HeaderRow {
    name: String,
    value: String,
    binary: bool,
}

#[derive(Template)]
#[template(path = "pages/message.html")]
struct MessagePage {
    frame: Frame,
    topic: String,
    topic_link: String,
    partition: i32,
    offset: i64,
    status: RecordStatus,
    replay_count: i64,
    time_exact: String,
    time_relative: String,
    indexed_exact: String,
    key: Option<String>,
    key_binary: bool,
    value_size: String,
    payload_kind: &'static str,
    payload_body: String,
    payload_cut: bool,
    headers: Vec<HeaderRow>,
    problems: Vec<String>,
    convention: &'static str,
    error_class: Option<String>,
    error_message: Option<String>,
    stacktrace: Option<String>,
    attempts: Option<i64>,
    origin_topic: Option<String>,
    origin_partition: Option<i32>,
    origin_offset: Option<i64>,
    origin_time: Option<String>,
    consumer_group: Option<String>,
    group_link: String,
    raw_link: String,
    json_link: String,
    replay: TargetCheck,
    /// The Replay form's value naming this record.
    select_value: String,
    /// Every replay of this record, newest first.
    history: Vec<HistoryRow>,
    /// The purge that holds it, when purged.
    purged: Option<PurgedNote>,
    /// Every purge of this record, newest first.
    purges: Vec<PurgeHistoryRow>,
    /// This page's path, for forms that come back here.
    here: String,
    /// Whether the payload, header values and stack trace are shown to this caller.
    payloads_shown: bool,
    /// Whether this caller may download the raw payload.
    raw_allowed: bool,
    /// What the page withholds from this caller, in a sentence.
    /// When retention removed the payload, headers and stack trace (`--retain payloads`).
    retention_removed: Option<String>,
    /// Why its body is not in the index (the disk was low when it was indexed).
    payload_not_stored: Option<String>,
    withheld: Option<String>,
}

/// Who purged a message, when and why, as its page says it.
struct PurgedNote {
    purge_id: String,
    purge_link: String,
    actor: String,
    when: String,
    reason: String,
    erased: Option<String>,
    /// Whether its undo is possible (not erased).
    restorable: bool,
}

/// One purge of a message, in its history.
struct PurgeHistoryRow {
    purge_id: String,
    purge_link: String,
    when: String,
    actor: String,
    state: String,
    before: String,
    reason: String,
}

/// One replay of a message, on its page.
struct HistoryRow {
    job_id: String,
    job_link: String,
    when: Option<String>,
    when_iso: String,
    when_exact: String,
    actor: String,
    state: ItemState,
    target: String,
    reason: String,
    after: ReplayAfter,
}

/// What became of one delivered replay, as a page shows it.
pub(crate) struct ReplayAfter {
    /// "consumed 3 min ago", "waiting to be consumed", or empty when not delivered.
    pub text: String,
    /// Exact time of the consumption, for the hover.
    pub exact: String,
    /// The DLQ record it came back as: (label, link, its error).
    pub failed_again: Option<(String, String, String)>,
    /// Whether that record was matched by key and value, without its dlq-replay-id.
    pub probable: bool,
}

impl ReplayAfter {
    /// The outcome of an item past the broker.
    pub(crate) fn of(
        item: &store::items::ItemResult,
        now: i64,
        reset: &[(String, i32, i64)],
    ) -> Self {
        let back = &item.failed_again;
        let failed_again = match (&back.topic, back.partition, back.offset) {
            (Some(t), Some(p), Some(o)) => Some((
                format!("{t}/{p}/{o}"),
                format!(
                    "/messages/{}",
                    message_path_of(t, p, o, back.generation.unwrap_or(0), reset)
                ),
                [back.error_class.as_deref(), back.error_message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": "),
            )),
            _ => None,
        };
        let text = match (item.state, item.consumed_at) {
            (_, Some(at)) => format!("consumed {}", view::relative(at, now)),
            (ItemState::Sent, None) => "waiting to be consumed".to_string(),
            _ => String::new(),
        };
        ReplayAfter {
            probable: back.probable,
            text,
            exact: item.consumed_at.map(view::time).unwrap_or_default(),
            failed_again,
        }
    }
}

async fn message(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let mut d = find_record(
        &state,
        &record_id(&topic, &partition, &offset, query.as_deref())?,
    )
    .await?;
    let now = crate::clock::now_ms();
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    // The replay target is resolved from the stored fields, before any is masked.
    let mut replay = state.actions.target_for(&d.summary).await;
    if let Some(missing) = d.missing_body() {
        replay = replay.without_body(&missing);
    }
    masking::detail(&sight, &mut d);
    let s = &d.summary;
    let shown = d
        .value
        .as_deref()
        .filter(|_| sight.payloads())
        .map(|v| sight.payload(v).into_owned());
    let (payload, payload_cut) = view::payload(shown.as_deref());
    let reset = records::current_generations(&state.pool).await?;
    let coordinates = message_path(s, &reset);
    let history = store::items::history(&state.pool, s.id)
        .await?
        .into_iter()
        .map(|mut h| {
            masking::item(&sight, &mut h);
            h
        })
        .map(|h| HistoryRow {
            after: ReplayAfter::of(&h, now, &reset),
            job_link: format!("/replays/{}", path_segment(&h.job_id)),
            when: h.finished_at.map(|t| view::relative(t, now)),
            when_iso: h.finished_at.map(crate::clock::iso).unwrap_or_default(),
            when_exact: h.finished_at.map(view::time).unwrap_or_default(),
            actor: h.actor,
            state: h.state,
            target: view::target_text(
                h.target_topic.as_deref(),
                h.target_partition,
                h.target_offset,
            ),
            reason: h.reason.unwrap_or_default(),
            job_id: h.job_id,
        })
        .collect();
    let headers = decode_headers(&d.headers)
        .into_iter()
        .map(|h| {
            let (value, binary) = match h.value.as_deref() {
                _ if !sight.payloads() => ("(hidden)".to_string(), false),
                _ if sight.header_masked(&h.name) => (crate::redact::MASK.to_string(), false),
                None => ("(null)".to_string(), false),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(t) if !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                        (view::truncate(t, 4000), false)
                    }
                    _ => (view::hex(&v[..v.len().min(2048)]), true),
                },
            };
            HeaderRow {
                name: h.name,
                value,
                binary,
            }
        })
        .collect();
    html(MessagePage {
        frame: Frame::build(&state, who.as_ref(), "messages").await,
        topic_link: messages_link(&[("topic", s.topic.clone())]),
        topic: s.topic.clone(),
        partition: s.partition,
        offset: s.offset,
        status: s.status,
        replay_count: s.replay_count,
        time_exact: view::time(s.ts),
        time_relative: view::relative(s.ts, now),
        indexed_exact: view::time(d.indexed_at),
        key_binary: s
            .key
            .as_deref()
            .is_some_and(|k| std::str::from_utf8(k).is_err()),
        key: s.key.as_deref().map(view::bytes_label),
        value_size: view::bytes(s.value_size),
        payload_kind: payload.kind(),
        payload_body: payload.body().to_string(),
        payload_cut,
        headers,
        problems: d
            .problems
            .as_deref()
            .map(|p| p.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        convention: Convention::parse(&s.convention).unwrap_or_default().label(),
        error_class: s.error_class.clone(),
        error_message: d.full_error_message.clone(),
        stacktrace: d.stacktrace.clone().filter(|_| sight.payloads()),
        payloads_shown: sight.payloads(),
        raw_allowed: sight.raw_refusal().is_none() && d.missing_body().is_none(),
        payload_not_stored: d
            .missing_body()
            .map(|m| crate::web::health::capitalised(m.sentence())),
        withheld: sight.note(),
        attempts: d.attempts,
        origin_topic: s.origin_topic.clone(),
        origin_partition: s.origin_partition,
        origin_offset: s.origin_offset,
        origin_time: s.origin_timestamp.map(view::time),
        consumer_group: s.consumer_group.clone(),
        group_link: messages_link(&[("group", s.fingerprint.clone())]),
        raw_link: raw_path(&coordinates),
        json_link: format!("/api/messages/{coordinates}"),
        replay,
        select_value: selection_value(&s.topic, s.partition, s.offset, s.generation),
        history,
        retention_removed: s
            .erased_at
            .filter(|_| s.erased_by_retention)
            .map(view::time),
        purged: s.purge_id.as_ref().map(|id| PurgedNote {
            purge_link: format!("/purges/{}", path_segment(id)),
            purge_id: id.clone(),
            actor: s.purge_actor.clone().unwrap_or_default(),
            when: s.purge_at.map(view::time).unwrap_or_default(),
            reason: s.purge_reason.clone().unwrap_or_default(),
            erased: s
                .erased_at
                .filter(|_| !s.erased_by_retention)
                .map(view::time),
            restorable: s.erased_at.is_none(),
        }),
        purges: store::purges::history(&state.pool, s.id)
            .await?
            .into_iter()
            .map(|p| PurgeHistoryRow {
                purge_link: format!("/purges/{}", path_segment(&p.purge_id)),
                purge_id: p.purge_id,
                when: p.at.map(view::time).unwrap_or_default(),
                actor: p.actor,
                state: p.state.words(),
                before: p.prev_status.words(),
                reason: p.refusal.or(p.reason).unwrap_or_default(),
            })
            .collect(),
        here: format!("/messages/{coordinates}"),
    })
}
