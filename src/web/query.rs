//! Query strings shared by a page and its API twin: a job's results and the audit log.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::states::ItemState;

/// The query of a results listing: `state`, `cursor` and (in the API) `limit`.
pub struct ResultsQuery {
    /// Only this state.
    pub only: Option<ItemState>,
    /// After this (state, record id).
    pub cursor: Option<(ItemState, i64)>,
    /// Page size.
    pub limit: i64,
}

/// A `limit` parameter: 1 to 1000.
pub(crate) fn limit_param(v: &str) -> Result<i64> {
    v.parse::<i64>()
        .ok()
        .filter(|l| (1..=1000).contains(l))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "Parameter 'limit' is '{v}'; use a whole number from 1 to 1000."
            ))
        })
}

/// Parse a results query; `with_limit` says whether `limit` is accepted.
pub fn results_query(
    query: Option<&str>,
    with_limit: bool,
    default_limit: i64,
) -> Result<ResultsQuery> {
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Error::BadRequest("The query string is not valid URL encoding.".into()))?;
    let mut out = ResultsQuery {
        only: None,
        cursor: None,
        limit: default_limit,
    };
    for (k, v) in &params {
        match k.as_str() {
            "state" | "cursor" if v.is_empty() => {}
            "state" => {
                out.only = Some(ItemState::parse(v).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "Parameter 'state' is '{v}'; use one of {}.",
                        ItemState::choices()
                    ))
                })?)
            }
            "cursor" => {
                out.cursor = Some(
                    v.split_once(':')
                        .and_then(|(s, a)| Some((ItemState::parse(s)?, a.parse::<i64>().ok()?)))
                        .ok_or_else(|| {
                            Error::BadRequest(
                                "Parameter 'cursor' is not one this dashboard issued; follow next_cursor or the \"More results\" link.".into(),
                            )
                        })?,
                )
            }
            "limit" if with_limit => out.limit = limit_param(v)?,
            other => {
                return Err(Error::BadRequest(format!(
                    "Unknown parameter '{other}'; known ones are state, cursor{}.",
                    if with_limit { ", limit" } else { "" }
                )))
            }
        }
    }
    Ok(out)
}

/// Parse `before` and `limit` for the audit list.
pub fn audit_params(query: Option<&str>) -> Result<(Option<i64>, i64)> {
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Error::BadRequest("The query string is not valid URL encoding.".into()))?;
    let mut before = None;
    let mut limit = 100;
    for (k, v) in params {
        match k.as_str() {
            "cursor" | "before" if v.is_empty() => {}
            "cursor" | "before" => {
                before = Some(v.parse::<i64>().map_err(|_| {
                    Error::BadRequest(format!(
                        "Parameter '{k}' is not a cursor this dashboard issued; follow next_cursor."
                    ))
                })?)
            }
            "limit" => limit = limit_param(&v)?,
            other => {
                return Err(Error::BadRequest(format!(
                    "Unknown parameter '{other}'; known ones are cursor, limit."
                )))
            }
        }
    }
    Ok((before, limit))
}
