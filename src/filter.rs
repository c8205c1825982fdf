//! The message filter shared by the list page, the JSON API and (later) bulk actions:
//! parsed from a query string, validated with sentences that name the bad parameter.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::states::RecordStatus;

/// Which statuses a listing shows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Everything except purged records (the default: purged records are hidden, not gone).
    #[default]
    NotPurged,
    /// Every status, purged included.
    All,
    /// Exactly one status.
    Is(RecordStatus),
}

/// A position in a newest-first listing: the (ts, id) of a boundary row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Record time in ms.
    pub ts: i64,
    /// Row id, the tie-breaker.
    pub id: i64,
}

impl Cursor {
    /// Opaque text form used in URLs.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.ts, self.id)
    }

    /// Parse the text form; `param` names the parameter in the error.
    pub fn decode(s: &str, param: &str) -> Result<Self> {
        s.split_once('_')
            .and_then(|(ts, id)| Some(Cursor { ts: ts.parse().ok()?, id: id.parse().ok()? }))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "Parameter '{param}' is not a cursor this dashboard issued; follow the Newer/Older links or next_cursor."
                ))
            })
    }
}

/// Which page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Page {
    /// The newest rows.
    #[default]
    First,
    /// Rows older than the cursor.
    Older(Cursor),
    /// Rows newer than the cursor (listed newest first, like every page).
    Newer(Cursor),
}

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a request may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// A validated message filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// DLQ topic.
    pub topic: Option<String>,
    /// Status selection.
    pub status: StatusFilter,
    /// Exact error class.
    pub error_class: Option<String>,
    /// Exact origin topic.
    pub origin_topic: Option<String>,
    /// Exact record key (as text).
    pub key: Option<String>,
    /// Failure group fingerprint.
    pub group: Option<String>,
    /// Free text, matched against key, payload start and error text.
    pub q: Option<String>,
    /// Records at or after this time (ms).
    pub from: Option<i64>,
    /// Records before this time (ms).
    pub to: Option<i64>,
}

/// A filter with its page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQuery {
    /// What to match.
    pub filter: MessageFilter,
    /// Which page.
    pub page: Page,
    /// Page size.
    pub limit: u32,
}

const KNOWN_PARAMS: [&str; 13] = [
    "topic",
    "status",
    "error_class",
    "origin_topic",
    "key",
    "group",
    "q",
    "from",
    "to",
    "limit",
    "cursor",
    "before",
    "after",
];

impl MessageQuery {
    /// Parse a raw query string (`a=b&c=d`). Empty values count as absent, so a submitted
    /// form with blank fields means "no filter".
    pub fn parse(query: &str) -> Result<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| Error::BadRequest("The query string is not valid URL encoding.".into()))?;
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            if !KNOWN_PARAMS.contains(&k.as_str()) {
                return Err(Error::BadRequest(format!(
                    "Unknown parameter '{k}'; known ones are {}.",
                    KNOWN_PARAMS.join(", ")
                )));
            }
            let v = v.trim().to_string();
            if !v.is_empty() {
                params.insert(k, v);
            }
        }
        let take = |name: &str| params.get(name).cloned();
        let status = match take("status").as_deref() {
            None => StatusFilter::NotPurged,
            Some("all") => StatusFilter::All,
            Some(s) => match RecordStatus::parse(s) {
                Some(status) => StatusFilter::Is(status),
                None => {
                    return Err(Error::BadRequest(format!(
                        "Parameter 'status' is '{s}'; use one of {}, or all.",
                        RecordStatus::choices()
                    )))
                }
            },
        };
        let from = take("from").map(|v| parse_time(&v, "from")).transpose()?;
        let to = take("to").map(|v| parse_time(&v, "to")).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(Error::BadRequest(
                    "Parameter 'from' must be earlier than 'to'.".into(),
                ));
            }
        }
        let limit = match take("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(Error::BadRequest(format!(
                        "Parameter 'limit' is '{v}'; use a whole number from 1 to {MAX_LIMIT}."
                    )))
                }
            },
        };
        let older = take("cursor")
            .or_else(|| take("before"))
            .map(|c| Cursor::decode(&c, "cursor"))
            .transpose()?;
        let newer = take("after")
            .map(|c| Cursor::decode(&c, "after"))
            .transpose()?;
        let page = match (older, newer) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest(
                    "Parameters 'cursor' and 'after' cannot be combined; use one.".into(),
                ))
            }
            (Some(c), None) => Page::Older(c),
            (None, Some(c)) => Page::Newer(c),
            (None, None) => Page::First,
        };
        let q = take("q");
        if let Some(q) = &q {
            if search_terms(q).is_empty() {
                return Err(Error::BadRequest(
                    "Parameter 'q' has no letters or digits to search for.".into(),
                ));
            }
        }
        Ok(MessageQuery {
            filter: MessageFilter {
                topic: take("topic"),
                status,
                error_class: take("error_class"),
                origin_topic: take("origin_topic"),
                key: take("key"),
                group: take("group"),
                q,
                from,
                to,
            },
            page,
            limit,
        })
    }
}

impl MessageFilter {
    /// The filter as query-string pairs (no paging), for links that keep the current view.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        };
        push("topic", &self.topic);
        push("error_class", &self.error_class);
        push("origin_topic", &self.origin_topic);
        push("key", &self.key);
        push("group", &self.group);
        push("q", &self.q);
        push("from", &self.from.map(format_time));
        push("to", &self.to.map(format_time));
        match &self.status {
            StatusFilter::NotPurged => {}
            StatusFilter::All => out.push(("status", "all".into())),
            StatusFilter::Is(s) => out.push(("status", s.to_string())),
        }
        out
    }

    /// Whether any filter is set (beyond the default status selection).
    pub fn is_empty(&self) -> bool {
        self.to_pairs().is_empty()
    }

    /// Whether the filter selects every message a listing shows, or more: no condition but
    /// the status selection `not purged` or `all` (an action on it needs an extra yes).
    pub fn selects_everything(&self) -> bool {
        !matches!(self.status, StatusFilter::Is(_))
            && self.to_pairs().iter().all(|(k, _)| *k == "status")
    }
}

/// Encode pairs as a query string.
pub fn encode_pairs(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Split free text into FTS5 terms: runs of letters and digits, as the unicode61 tokenizer
/// sees them. A trailing `*` on a word asks for a prefix match.
pub fn search_terms(q: &str) -> Vec<(String, bool)> {
    let mut terms = Vec::new();
    for word in q.split_whitespace() {
        let prefix = word.ends_with('*');
        let parts: Vec<&str> = word
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty())
            .collect();
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            terms.push((part.to_lowercase(), prefix && i + 1 == n));
        }
    }
    terms.truncate(16);
    terms
}

/// The FTS5 MATCH expression for free text: every term must occur. Terms are quoted, so
/// FTS5 operators typed by the user are searched as words, never interpreted.
pub fn fts_expression(q: &str) -> Option<String> {
    let terms = search_terms(q);
    if terms.is_empty() {
        return None;
    }
    Some(
        terms
            .iter()
            .map(|(t, prefix)| {
                format!(
                    "\"{}\"{}",
                    t.replace('"', ""),
                    if *prefix { "*" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(" AND "),
    )
}

/// Parse a time parameter: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (UTC, as a datetime-local
/// input sends it), `YYYY-MM-DD`, or milliseconds since the epoch.
pub fn parse_time(v: &str, param: &str) -> Result<i64> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    Err(Error::BadRequest(format!(
        "Parameter '{param}' is '{v}'; use a UTC time like 2026-11-22T09:30:00Z or 2026-11-22."
    )))
}

/// Format ms as the `YYYY-MM-DDTHH:MM:SSZ` form that `parse_time` reads back, with the
/// milliseconds when there are any, so that a link keeps the exact bound it was made from.
pub fn format_time(ms: i64) -> String {
    let format = if ms % 1000 == 0 {
        "%Y-%m-%dT%H:%M:%SZ"
    } else {
        "%Y-%m-%dT%H:%M:%S%.3fZ"
    };
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format(format).to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_is_the_default_view() {
        let q = MessageQuery::parse("").unwrap();
        assert_eq!(q.filter, MessageFilter::default());
        assert_eq!(q.page, Page::First);
        assert_eq!(q.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn blank_form_fields_mean_no_filter() {
        let q = MessageQuery::parse("topic=&status=&q=+&from=").unwrap();
        assert_eq!(q.filter, MessageFilter::default());
    }

    #[test]
    fn every_filter_parses() {
        let q = MessageQuery::parse(
            "topic=orders.dlq&status=replay_failed&error_class=java.lang.NPE&origin_topic=orders&key=k%201&q=timeout&from=2026-01-01&to=2026-01-02T10:00&limit=10&cursor=5_7",
        )
        .unwrap();
        let f = &q.filter;
        assert_eq!(f.topic.as_deref(), Some("orders.dlq"));
        assert_eq!(f.status, StatusFilter::Is(RecordStatus::ReplayFailed));
        assert_eq!(f.error_class.as_deref(), Some("java.lang.NPE"));
        assert_eq!(f.key.as_deref(), Some("k 1"));
        assert_eq!(f.from, Some(1_767_225_600_000));
        assert_eq!(format_time(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(format_time(1_767_225_600_001), "2026-01-01T00:00:00.001Z");
        assert_eq!(parse_time(&format_time(-1), "from").unwrap(), -1);
        assert_eq!(f.to, Some(1_767_225_600_000 + 34 * 3_600_000));
        assert_eq!(q.limit, 10);
        assert_eq!(q.page, Page::Older(Cursor { ts: 5, id: 7 }));
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (query, needle) in [
            ("status=bogus", "'status'"),
            ("limit=0", "'limit'"),
            ("limit=abc", "'limit'"),
            ("from=yesterday", "'from'"),
            ("cursor=xyz", "'cursor'"),
            ("from=2026-01-02&to=2026-01-01", "'from'"),
            ("colour=red", "'colour'"),
            ("q=%21%21%21", "'q'"),
            ("cursor=1_2&after=3_4", "'after'"),
        ] {
            let err = MessageQuery::parse(query).unwrap_err().to_string();
            assert!(err.contains(needle), "{query}: {err}");
        }
    }

    #[test]
    fn filter_round_trips_through_pairs() {
        let q = MessageQuery::parse("topic=a.dlq&status=all&q=hello&from=2026-01-01T00:00:00Z")
            .unwrap();
        let again = MessageQuery::parse(&encode_pairs(&q.filter.to_pairs())).unwrap();
        assert_eq!(q.filter, again.filter);
    }

    #[test]
    fn search_terms_are_quoted_and_split_like_the_tokenizer() {
        assert_eq!(
            fts_expression("order-123 Timeout").unwrap(),
            "\"order\" AND \"123\" AND \"timeout\""
        );
        assert_eq!(fts_expression("pay*").unwrap(), "\"pay\"*");
        // FTS5 syntax typed by a user is searched for, not executed.
        assert_eq!(
            fts_expression("a OR NEAR(b)").unwrap(),
            "\"a\" AND \"or\" AND \"near\" AND \"b\""
        );
        assert_eq!(fts_expression("\"\"*"), None);
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            ts: 1_700_000_000_000,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode(), "cursor").unwrap(), c);
    }

    /// Fuzzing the parser: any query string gives a filter or a 400 sentence, never a panic,
    /// and a parsed filter survives its own link. More cases: PROPTEST_CASES=100000.
    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn param() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("topic".to_string()),
                Just("status".to_string()),
                Just("q".to_string()),
                Just("from".to_string()),
                Just("to".to_string()),
                Just("limit".to_string()),
                Just("cursor".to_string()),
                Just("after".to_string()),
                Just("key".to_string()),
                Just("group".to_string()),
                "[a-z_]{1,12}",
            ]
        }

        proptest! {
            #[test]
            fn any_raw_query_parses_or_explains(raw in ".{0,200}") {
                if let Err(e) = MessageQuery::parse(&raw) {
                    prop_assert!(matches!(e, Error::BadRequest(_)));
                }
            }

            #[test]
            fn parsed_filters_round_trip(pairs in proptest::collection::vec((param(), ".{0,30}"), 0..8)) {
                let raw = serde_urlencoded::to_string(&pairs).unwrap();
                if let Ok(q) = MessageQuery::parse(&raw) {
                    let again = MessageQuery::parse(&encode_pairs(&q.filter.to_pairs()));
                    prop_assert_eq!(again.map(|a| a.filter).ok(), Some(q.filter));
                }
            }

            #[test]
            fn fts_expressions_are_always_quoted_terms(q in ".{0,100}") {
                if let Some(expr) = fts_expression(&q) {
                    for term in expr.split(" AND ") {
                        let inner = term.trim_end_matches('*');
                        prop_assert!(inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 3, "{}", term);
                        prop_assert!(!inner[1..inner.len() - 1].contains('"'));
                    }
                }
            }
        }
    }
}
