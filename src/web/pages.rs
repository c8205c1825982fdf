//! Server-rendered pages (askama). Every page works without JavaScript.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::api::{find, record_id, replay_target, ReplayTargetJson};
use super::view;
use crate::app::AppState;
use crate::error::Error;
use crate::filter::{encode_pairs, MessageQuery, StatusFilter, STATUSES};
use crate::index::normalise::Convention;
use crate::index::record::decode_headers;
use crate::store::{self, groups, records, search, stats};

/// Page routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/messages", get(messages))
        .route("/messages/{topic}/{partition}/{offset}", get(message))
        .route("/groups", get(failure_groups))
}

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
            .filter(|(_, status, _)| status == "new" || status == "replay_failed")
            .map(|(_, _, n)| n)
            .sum();
        let groups = groups::count(&state.pool).await.unwrap_or(0);
        let active_jobs = store::replays::active_count(&state.pool).await.unwrap_or(0);
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
        }
    }
}

/// An error shown as a page (the API shows the same errors as JSON).
pub struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage {
    frame: Frame,
    code: u16,
    title: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "page failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "That request cannot be shown",
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::CONFLICT => "That cannot be done now",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "That request cannot be read",
            _ => "Something went wrong",
        };
        let page = ErrorPage {
            frame: Frame {
                active: "",
                connected: true,
                status_text: String::new(),
                status_detail: None,
                embedded: false,
                brokers: String::new(),
                unresolved: String::new(),
                groups: String::new(),
                active_jobs: String::new(),
                csrf: "",
            },
            code: status.as_u16(),
            title: title.into(),
            message: self.0.public_message(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.0.public_message()).into_response(),
        }
    }
}

/// What a page handler returns.
pub(crate) type PageResult = Result<Response, PageError>;

/// Render a page.
pub(crate) fn html(t: impl Template) -> PageResult {
    Ok(Html(t.render().map_err(Error::Render)?).into_response())
}

/// The 404 page for any unknown path.
pub async fn not_found(State(state): State<AppState>) -> Response {
    let page = ErrorPage {
        frame: Frame::build(&state, "").await,
        code: 404,
        title: "Not found".into(),
        message: "There is no page at this address. The overview lists every DLQ topic.".into(),
    };
    match page.render() {
        Ok(h) => (StatusCode::NOT_FOUND, Html(h)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
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
}

/// `/messages` with these filter pairs.
pub(crate) fn messages_link(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        "/messages".into()
    } else {
        format!("/messages?{}", encode_pairs(pairs))
    }
}

async fn overview(State(state): State<AppState>) -> PageResult {
    let now = store::now_ms();
    let snapshot = state.status.snapshot();
    let overviews = stats::topic_overviews(&state.pool, &snapshot.assigned_partitions, now).await?;
    let events = store::events::recent(&state.pool, None, 200).await?;
    let mut total_unresolved = 0;
    let mut total_messages = 0;
    let cards = overviews
        .into_iter()
        .map(|o| {
            total_unresolved += o.unresolved();
            total_messages += o.messages;
            TopicCard {
                link: messages_link(&[("topic", o.topic.clone())]),
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
                notices: events
                    .iter()
                    .filter(|e| e.topic == o.topic)
                    .take(3)
                    .map(|e| format!("{} (noticed {})", e.message, view::time(e.detected_at)))
                    .collect(),
                topic: o.topic,
            }
        })
        .collect::<Vec<_>>();
    html(OverviewPage {
        frame: Frame::build(&state, "overview").await,
        topic_count: cards.len(),
        cards,
        total_unresolved: view::count(total_unresolved),
        total_messages: view::count(total_messages),
        looking_for: state.topics.subscriptions.join(", "),
        default_pattern: state.topics.subscriptions == [crate::config::DEFAULT_DLQ_PATTERN],
        indexed_since_start: view::count(snapshot.indexed as i64),
        behind: view::count(snapshot.lag.iter().map(|(_, _, lag)| lag).sum()),
    })
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
    status: String,
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
}

/// Count matches, but stop at a cap so that a broad filter over a large index stays fast.
const COUNT_CAP: i64 = 1_000;

async fn messages(State(state): State<AppState>, RawQuery(raw): RawQuery) -> PageResult {
    let query = MessageQuery::parse(raw.as_deref().unwrap_or(""))?;
    let now = store::now_ms();
    let page = records::list(&state.pool, &query).await?;
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
            time_iso: view::iso(r.ts),
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
                .map(payload_preview)
                .unwrap_or_default(),
            origin: r.origin_topic.clone().unwrap_or_default(),
            status: r.status.clone(),
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
        frame: Frame::build(&state, "messages").await,
        topics,
        statuses: STATUSES.to_vec(),
        error_classes: records::distinct_error_classes(&state.pool).await?,
        f_topic: f.topic.clone().unwrap_or_default(),
        f_status: match &f.status {
            StatusFilter::NotPurged => String::new(),
            StatusFilter::All => "all".into(),
            StatusFilter::Is(s) => s.clone(),
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

/// `topic/partition/offset`, with `?generation=N` when the partition's log was ever reset,
/// so the link keeps naming this record and not the one now at that offset.
fn message_path(r: &records::RecordSummary, reset: &[(String, i32, i64)]) -> String {
    message_path_of(&r.topic, r.partition, r.offset, r.generation, reset)
}

/// [`message_path`] from coordinates; `reset` is [`records::current_generations`].
pub(crate) fn message_path_of(
    topic: &str,
    partition: i32,
    offset: i64,
    generation: i64,
    reset: &[(String, i32, i64)],
) -> String {
    let base = format!("{}/{}/{}", path_segment(topic), partition, offset);
    let partition_was_reset = reset.iter().any(|(t, p, _)| *t == topic && *p == partition);
    if generation > 0 || partition_was_reset {
        format!("{base}?generation={generation}")
    } else {
        base
    }
}

/// How a form names one record for a replay: `topic/partition/offset?generation=N`. The
/// generation is always given, so the value keeps naming this record even if the partition's
/// log restarts before the form is sent. (Kafka topic names hold no `/` or `?`.)
pub(crate) fn selection_value(topic: &str, partition: i32, offset: i64, generation: i64) -> String {
    format!("{topic}/{partition}/{offset}?generation={generation}")
}

/// The raw download path for a message path (the query, if any, goes after `/raw`).
fn raw_path(message_path: &str) -> String {
    match message_path.split_once('?') {
        Some((path, query)) => format!("/api/messages/{path}/raw?{query}"),
        None => format!("/api/messages/{message_path}/raw"),
    }
}

/// Percent-encode a topic name for a URL path segment.
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
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
    status: String,
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
    replay: ReplayTargetJson,
    /// The Replay form's value naming this record.
    select_value: String,
    /// Every replay of this record, newest first.
    history: Vec<HistoryRow>,
}

/// One replay of a message, on its page.
struct HistoryRow {
    job_id: String,
    job_link: String,
    when: Option<String>,
    when_iso: String,
    when_exact: String,
    actor: String,
    state: String,
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
        item: &store::replays::ItemResult,
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
        let text = match (item.state.as_str(), item.consumed_at) {
            (_, Some(at)) => format!("consumed {}", view::relative(at, now)),
            ("sent", None) => "waiting to be consumed".to_string(),
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
    Path((topic, partition, offset)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let d = find(
        &state,
        &record_id(&topic, &partition, &offset, query.as_deref())?,
    )
    .await?;
    let now = store::now_ms();
    let s = &d.summary;
    let (payload, payload_cut) = view::payload(d.value.as_deref());
    let reset = records::current_generations(&state.pool).await?;
    let coordinates = message_path(s, &reset);
    let replay = replay_target(&state, s).await;
    let history = store::replays::history(&state.pool, s.id)
        .await?
        .into_iter()
        .map(|h| HistoryRow {
            after: ReplayAfter::of(&h, now, &reset),
            job_link: format!("/replays/{}", path_segment(&h.job_id)),
            when: h.finished_at.map(|t| view::relative(t, now)),
            when_iso: h.finished_at.map(view::iso).unwrap_or_default(),
            when_exact: h.finished_at.map(view::time).unwrap_or_default(),
            actor: h.actor,
            state: h.state,
            target: super::replay_pages::target_text(
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
        frame: Frame::build(&state, "messages").await,
        topic_link: messages_link(&[("topic", s.topic.clone())]),
        topic: s.topic.clone(),
        partition: s.partition,
        offset: s.offset,
        status: s.status.clone(),
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
        stacktrace: d.stacktrace.clone(),
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
    })
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

async fn failure_groups(State(state): State<AppState>) -> PageResult {
    let now = store::now_ms();
    let mut rows = Vec::new();
    for g in groups::list(&state.pool, 200).await? {
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
        frame: Frame::build(&state, "groups").await,
        rows,
    })
}
