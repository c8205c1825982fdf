-- The index of DLQ records and the positions it has reached.

-- One row per DLQ record. `ts` is the record's timestamp in ms (the time it reached the DLQ),
-- falling back to the time it was indexed, so that every row sorts.
CREATE TABLE records (
    id               INTEGER PRIMARY KEY,
    topic            TEXT    NOT NULL,
    partition        INTEGER NOT NULL,
    -- Bumped when a partition's log restarts (topic deleted and recreated, cluster wiped),
    -- so records of the old log keep their rows next to the new log's records.
    generation       INTEGER NOT NULL DEFAULT 0,
    "offset"         INTEGER NOT NULL,
    ts               INTEGER NOT NULL,
    timestamp_type   TEXT,
    indexed_at       INTEGER NOT NULL,
    key              BLOB,
    value            BLOB,
    value_size       INTEGER NOT NULL,
    -- JSON array of [name, base64 value or null], order kept.
    headers          TEXT    NOT NULL,
    convention       TEXT    NOT NULL,
    origin_topic     TEXT,
    origin_partition INTEGER,
    origin_offset    INTEGER,
    origin_timestamp INTEGER,
    consumer_group   TEXT,
    error_class      TEXT,
    error_message    TEXT,
    stacktrace       TEXT,
    attempts         INTEGER,
    -- Newline-separated sentences about headers that could not be read.
    problems         TEXT,
    fingerprint      TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'new',
    replay_count     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (topic, partition, generation, "offset")
);

-- Keyset pagination is newest first on (ts, id); each filter has an index leading with it.
CREATE INDEX records_by_time        ON records (ts, id);
CREATE INDEX records_by_topic       ON records (topic, ts, id);
CREATE INDEX records_by_status      ON records (status, ts, id);
CREATE INDEX records_by_error_class ON records (error_class, ts, id);
CREATE INDEX records_by_origin      ON records (origin_topic, ts, id);
CREATE INDEX records_by_fingerprint ON records (fingerprint, ts, id);
CREATE INDEX records_by_key         ON records (key);
CREATE INDEX records_by_topic_status ON records (topic, status, ts);

-- Full-text search over the key, the start of the payload, and the error text. Contentless:
-- the text lives in `records`; rowid = records.id. detail=none and columnsize=0 keep ingest
-- fast (queries are AND-ed terms, not phrases, and results are not ranked). Removing a row
-- from it takes its original text, which `records` keeps.
CREATE VIRTUAL TABLE records_fts USING fts5 (
    key_text, body, error_text,
    content = '', detail = none, columnsize = 0
);

-- The next offset to index per partition, advanced in the same transaction as the rows.
CREATE TABLE partition_positions (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;

-- Counters kept in the write transaction so the overview never scans `records`.
CREATE TABLE topic_status_counts (
    topic  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (topic, status)
) WITHOUT ROWID;

-- Records per topic per hour of their timestamp (hour = ts / 3600000).
CREATE TABLE topic_hourly (
    topic TEXT    NOT NULL,
    hour  INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (topic, hour)
) WITHOUT ROWID;

-- Records per topic per error class.
CREATE TABLE topic_error_classes (
    topic       TEXT    NOT NULL,
    error_class TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (topic, error_class)
) WITHOUT ROWID;

-- Failure groups: records with the same error class, origin topic and masked message.
CREATE TABLE failure_groups (
    fingerprint    TEXT PRIMARY KEY,
    error_class    TEXT,
    origin_topic   TEXT,
    masked_message TEXT,
    sample_message TEXT,
    count          INTEGER NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX failure_groups_by_count ON failure_groups (count DESC);

-- Records per failure group per hour, for the groups page sparkline.
CREATE TABLE group_hourly (
    fingerprint TEXT    NOT NULL,
    hour        INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, hour)
) WITHOUT ROWID;

-- Things the indexer noticed about the broker's logs that a user must know: records deleted
-- by retention before they were indexed, and partitions whose offsets restarted.
CREATE TABLE index_events (
    id          INTEGER PRIMARY KEY,
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    from_offset INTEGER,
    to_offset   INTEGER,
    message     TEXT    NOT NULL,
    detected_at INTEGER NOT NULL
);

CREATE INDEX index_events_by_topic ON index_events (topic, detected_at);
