//! Which records a filter, a list or a job covers, as SQL conditions: shared by listings,
//! counts and the frozen selections of jobs.

use sqlx::{QueryBuilder, Sqlite};

use crate::filter::{fts_expression, MessageFilter, StatusFilter};

/// Where a record is: topic, partition, offset, and the log generation (None: the newest
/// generation that has a record at that offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Generation, when asked for explicitly.
    pub generation: Option<i64>,
}

/// The whole filter as a WHERE clause, free text as a subquery of the search index (fine for
/// a count; a listing is driven from the search index instead, see `list`).
pub fn push_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &MessageFilter) {
    qb.push(" WHERE 1=1");
    push_filter_conditions(qb, f);
    if let Some(expr) = f.q.as_deref().and_then(fts_expression) {
        qb.push(" AND id IN (SELECT rowid FROM search.records_fts WHERE records_fts MATCH ")
            .push_bind(expr)
            .push(")");
    }
}

/// Every filter but free text, as `AND ...` conditions after a WHERE.
pub(super) fn push_filter_conditions(qb: &mut QueryBuilder<'_, Sqlite>, f: &MessageFilter) {
    if let Some(t) = &f.topic {
        qb.push(" AND topic = ").push_bind(t.clone());
    }
    match &f.status {
        StatusFilter::NotPurged => {
            qb.push(" AND status <> 'purged'");
        }
        StatusFilter::All => {}
        StatusFilter::Is(s) => {
            qb.push(" AND status = ").push_bind(*s);
        }
    }
    if let Some(v) = &f.error_class {
        qb.push(" AND error_class = ").push_bind(v.clone());
    }
    if let Some(v) = &f.origin_topic {
        qb.push(" AND origin_topic = ").push_bind(v.clone());
    }
    if let Some(v) = &f.key {
        qb.push(" AND key = ").push_bind(v.as_bytes().to_vec());
    }
    if let Some(v) = &f.group {
        qb.push(" AND fingerprint = ").push_bind(v.clone());
    }
    if let Some(v) = f.from {
        qb.push(" AND ts >= ").push_bind(v);
    }
    if let Some(v) = f.to {
        qb.push(" AND ts < ").push_bind(v);
    }
}

/// Which records a new job covers.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Every record matching a filter.
    Filter(&'a MessageFilter),
    /// These record row ids.
    Ids(&'a [i64]),
}

pub(super) fn push_source(qb: &mut QueryBuilder<'_, Sqlite>, source: Source<'_>, max_id: i64) {
    match source {
        Source::Filter(f) => push_filter(qb, f),
        Source::Ids(ids) => {
            qb.push(" WHERE id IN (SELECT value FROM json_each(")
                .push_bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
                .push("))");
        }
    }
    // Rows indexed after the preview started are not part of it.
    qb.push(" AND id <= ").push_bind(max_id);
}
