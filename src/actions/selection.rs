//! What an action applies to: listed messages or everything matching a filter, frozen
//! against the index so that a confirmed action covers exactly what its preview showed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::error::{Error, Result};
use crate::filter::{MessageFilter, MessageQuery};
use crate::store::jobs::{self, Source};
use crate::store::records::RecordId;
use crate::store::search;

/// The most messages an explicit list may name.
pub const MAX_LISTED: usize = 10_000;

/// One message named by its coordinates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRef {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Log generation (the newest when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// What an action covers: listed messages or everything matching a filter.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These messages.
    Messages(Vec<MessageRef>),
    /// Every message matching the filter (frozen at preview time).
    Filter(MessageFilter),
}

impl MessageRef {
    /// The coordinates as the store looks them up.
    pub fn record_id(&self) -> RecordId {
        RecordId {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            generation: self.generation,
        }
    }
}

impl Selection {
    /// The selection as stored with the job and shown in the audit log.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Selection::Messages(m) => serde_json::json!({ "messages": m }),
            Selection::Filter(f) => {
                let pairs: BTreeMap<&str, String> = f.to_pairs().into_iter().collect();
                serde_json::json!({ "filter": pairs })
            }
        }
    }

    /// The selection of an action request: `messages` (a list of coordinates), `filter` (an
    /// object of the fields `GET /api/messages` takes) or `group` (a failure group's id), one
    /// of them.
    pub fn from_fields(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let given: Vec<&str> = ["messages", "filter", "group"]
            .into_iter()
            .filter(|k| fields.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        match given.as_slice() {
            [] => Err(Error::BadRequest(
                "The selection is empty: give 'messages' (a list), 'filter' (an object) or 'group' (a failure group id).".into(),
            )),
            ["messages"] => {
                let list: Vec<MessageRef> = serde_json::from_value(fields["messages"].clone())
                    .map_err(|e| {
                        Error::BadRequest(format!(
                            "Field 'messages' must be a list of {{\"topic\", \"partition\", \"offset\"}} ({e})."
                        ))
                    })?;
                Ok(Selection::Messages(list))
            }
            ["filter"] => match &fields["filter"] {
                serde_json::Value::Object(filter) => Selection::filter_from_json(filter),
                _ => Err(Error::BadRequest(
                    "Field 'filter' must be an object with the fields GET /api/messages takes.".into(),
                )),
            },
            ["group"] => match &fields["group"] {
                serde_json::Value::String(g) if !g.trim().is_empty() => {
                    let mut filter = serde_json::Map::new();
                    filter.insert("group".into(), g.trim().into());
                    Selection::filter_from_json(&filter)
                }
                _ => Err(Error::BadRequest(
                    "Field 'group' must be a failure group's id, as GET /api/groups lists them.".into(),
                )),
            },
            several => Err(Error::BadRequest(format!(
                "Give one of 'messages', 'filter' or 'group', not {} {}.",
                if several.len() == 2 { "both" } else { "all of" },
                several.join(" and ")
            ))),
        }
    }

    /// A filter from a JSON object of the same fields as `GET /api/messages` takes.
    pub fn filter_from_json(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let mut pairs = Vec::new();
        for (k, v) in fields {
            if ["limit", "cursor", "before", "after"].contains(&k.as_str()) {
                return Err(Error::BadRequest(format!(
                    "Filter field '{k}' is about paging; an action takes every matching message, so leave it out."
                )));
            }
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                _ => {
                    return Err(Error::BadRequest(format!(
                        "Filter field '{k}' must be a string or a number."
                    )))
                }
            };
            pairs.push((k.clone(), text));
        }
        let query = serde_urlencoded::to_string(&pairs)
            .map_err(|_| Error::BadRequest("The filter cannot be encoded.".into()))?;
        Ok(Selection::Filter(MessageQuery::parse(&query)?.filter))
    }
}

/// A selection bound to the index as it stands: rows indexed later are never part of it.
#[derive(Debug)]
pub struct Frozen {
    filter: Option<MessageFilter>,
    ids: Vec<i64>,
    /// A record row id below every row the selection covers.
    below: i64,
    /// The highest record row id the selection covers.
    pub max_id: i64,
    /// The newest record row id when it was frozen (above `max_id` when free text stopped
    /// at what the search index held).
    pub newest: i64,
}

impl Frozen {
    /// The record row ids the selection lies in, as `(below, through]`: an action that
    /// works through it a window at a time walks this range.
    pub fn id_range(&self) -> (i64, i64) {
        (self.below, self.max_id)
    }

    /// The error for a selection that turned out empty, saying whether records too new to be
    /// searchable may be why.
    pub fn nothing_matches(&self) -> Error {
        let behind = self.newest - self.max_id;
        Error::BadRequest(if behind > 0 {
            format!("The selection is empty: no searchable message matches it, and the {behind} newest messages are not searchable yet; try again in a moment.")
        } else {
            "The selection is empty: no indexed message matches it.".into()
        })
    }

    /// The row ids of a listed selection (empty for a filter).
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The selection as the store's job queries take it.
    pub fn source(&self) -> Source<'_> {
        match &self.filter {
            Some(f) => Source::Filter(f),
            None => Source::Ids(&self.ids),
        }
    }
}

/// Freeze a selection: a filter is bounded by the newest row, a list is checked against the
/// index and refused as a whole when a message is missing, so that nothing acts on part of
/// what the operator named.
pub async fn freeze(pool: &SqlitePool, selection: &Selection) -> Result<Frozen> {
    let newest = jobs::max_record_id(pool).await?;
    match selection {
        Selection::Filter(f) => {
            // Free text matches only what the search index holds, which trails the index a
            // little: the selection stops at the search mark, as it stops at the newest
            // record for every filter, so it never depends on how far the catch-up had got.
            let max_id = if f.q.is_some() {
                newest.min(search::progress(pool).await?.indexed_through)
            } else {
                newest
            };
            Ok(Frozen {
                filter: Some(f.clone()),
                ids: Vec::new(),
                below: jobs::min_record_id(pool).await? - 1,
                max_id,
                newest,
            })
        }
        Selection::Messages(list) => {
            if list.is_empty() {
                return Err(Error::BadRequest(
                    "The selection is empty: name at least one message.".into(),
                ));
            }
            if list.len() > MAX_LISTED {
                return Err(Error::BadRequest(format!(
                    "{} messages are listed; a list takes at most {MAX_LISTED}. Select by filter instead.",
                    list.len()
                )));
            }
            let coords: Vec<RecordId> = list.iter().map(MessageRef::record_id).collect();
            let found = jobs::record_ids(pool, &coords).await?;
            let missing: Vec<String> = coords
                .iter()
                .zip(&found)
                .filter(|(_, id)| id.is_none())
                .map(|(c, _)| format!("{}/{}/{}", c.topic, c.partition, c.offset))
                .collect();
            if !missing.is_empty() {
                let shown = missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::NotFound(format!(
                    "{} of the listed messages are not in the index ({shown}{}); nothing was done.",
                    missing.len(),
                    if missing.len() > 5 { ", ..." } else { "" }
                )));
            }
            let ids: Vec<i64> = found.into_iter().flatten().collect();
            Ok(Frozen {
                filter: None,
                below: ids.iter().min().map_or(0, |id| id - 1),
                max_id: ids.iter().max().copied().unwrap_or(0).min(newest),
                ids,
                newest,
            })
        }
    }
}
