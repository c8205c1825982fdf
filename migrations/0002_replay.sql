-- Replay jobs, the frozen selection of each with a result per record, and the audit log.

-- One replay job: an action with an actor, a selection and counts. A job is created frozen
-- at preview time (status 'preview'), so that what the operator confirms is exactly what was
-- previewed.
CREATE TABLE replay_jobs (
    id          TEXT    PRIMARY KEY,
    -- preview | queued | running | paused | cancelled | completed | completed_with_failures
    status      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    -- The selection as the operator gave it (JSON: {"messages": [...]} or {"filter": {...}}).
    selection   TEXT    NOT NULL,
    -- Messages per second; 0 means unlimited.
    rate        INTEGER NOT NULL,
    -- Messages to send (refused ones are not counted here).
    total       INTEGER NOT NULL,
    sent        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    refused     INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    -- JSON object {target topic: messages}.
    targets     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);

CREATE INDEX replay_jobs_by_status ON replay_jobs (status, created_at);
CREATE INDEX replay_jobs_by_created ON replay_jobs (created_at);

-- One row per record of a job, in record id order (per partition, that is offset order).
-- state: pending | sending | sent | failed | refused | cancelled. 'sending' rows may have
-- reached the broker; after a crash they are sent again with the same replay id.
CREATE TABLE replay_items (
    job_id           TEXT    NOT NULL,
    record_id        INTEGER NOT NULL,
    target_topic     TEXT,
    state            TEXT    NOT NULL,
    -- Why it was refused or failed, in a sentence (the broker's error for a failed delivery).
    reason           TEXT,
    -- The record's status before this job claimed it, restored if the job stops first.
    prev_status      TEXT,
    -- The dlq-replay-count header sent.
    replay_count     INTEGER,
    target_partition INTEGER,
    target_offset    INTEGER,
    finished_at      INTEGER,
    PRIMARY KEY (job_id, record_id)
) WITHOUT ROWID;

-- A message's replay history.
CREATE INDEX replay_items_by_record ON replay_items (record_id);

-- Who did what, when, to which selection, and how it ended. Newest first.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    -- replay.start | replay.pause | replay.resume | replay.cancel | replay.finish
    action  TEXT    NOT NULL,
    job_id  TEXT,
    -- One sentence a person reads.
    summary TEXT    NOT NULL,
    -- JSON with the selection and the counts at that moment.
    detail  TEXT    NOT NULL
);

CREATE INDEX audit_log_by_job ON audit_log (job_id);
