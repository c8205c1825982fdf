-- Purge: an operator takes records out of the way. Kafka cannot delete one record from the
-- middle of a partition, so a purge is a state in the index (src/actions/purge.rs). Like a
-- replay job, a purge is frozen at preview time (status 'preview') and confirmed by its id,
-- so what is purged is exactly what was previewed; it is then applied in chunks, each in a
-- transaction of its own, so a million-record purge never holds the writer for long.
CREATE TABLE purges (
    id              TEXT    PRIMARY KEY,
    -- preview | applying | applied
    status          TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    -- The selection as the operator gave it (JSON, as for replay jobs).
    selection       TEXT    NOT NULL,
    -- Why, in the operator's words (at most 500 characters).
    reason          TEXT,
    -- 1 when the payloads are erased once purged.
    erase           INTEGER NOT NULL DEFAULT 0,
    -- 1 when the selection was every message (no filter): confirmed with an extra yes.
    everything      INTEGER NOT NULL DEFAULT 0,
    -- Records to purge, as previewed, and refused at preview.
    total           INTEGER NOT NULL DEFAULT 0,
    refused         INTEGER NOT NULL DEFAULT 0,
    -- Records purged, refused when applied (changed since the preview), restored by an
    -- undo, and erased.
    purged          INTEGER NOT NULL DEFAULT 0,
    skipped         INTEGER NOT NULL DEFAULT 0,
    undone          INTEGER NOT NULL DEFAULT 0,
    erased          INTEGER NOT NULL DEFAULT 0,
    -- JSON objects {topic: records} and {status: records} of the preview.
    by_topic        TEXT    NOT NULL DEFAULT '{}',
    by_status       TEXT    NOT NULL DEFAULT '{}',
    -- Items are applied in record id order; every item at or below this one is applied.
    applied_through INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    finished_at     INTEGER
);

CREATE INDEX purges_by_status ON purges (status, created_at);

-- One row per selected record.
-- state: pending | purged | refused | undone.
CREATE TABLE purge_items (
    purge_id    TEXT    NOT NULL,
    record_id   INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    -- The record's status when previewed, then when purged: what an undo restores.
    prev_status TEXT    NOT NULL,
    -- Why it was refused, in a sentence.
    reason      TEXT,
    PRIMARY KEY (purge_id, record_id)
) WITHOUT ROWID;

-- A message's purge history, and the check that it is not in another purge.
CREATE INDEX purge_items_by_record ON purge_items (record_id);

-- The purge a record is purged by (NULL unless its status is 'purged').
ALTER TABLE records ADD COLUMN purge_id TEXT;
-- When its payload, headers and stack trace were erased, ms (NULL: not erased).
ALTER TABLE records ADD COLUMN erased_at INTEGER;

-- Purged records of each failure group: the groups page counts the others.
ALTER TABLE failure_groups ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
