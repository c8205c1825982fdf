-- Records indexed while the index's file system had less free space than
-- `--min-free-space`: their metadata (the `records` row, with the fields derived from their
-- headers) was stored, their body was not (their `record_bodies` row holds no value, no
-- headers, no stack trace). Written in the same transaction as the record, so a record is
-- either whole or marked here. The backfill (src/index/backfill.rs) reads the body again
-- from the broker once space is back and removes the mark; a record the broker no longer
-- has keeps its mark with `lost_at` and the reason, which its page shows.
CREATE TABLE deferred_bodies (
    -- = records.id
    record_id   INTEGER PRIMARY KEY,
    deferred_at INTEGER NOT NULL,
    -- When the backfill found that the broker no longer has the record, ms; NULL while it
    -- is still to be read again.
    lost_at     INTEGER,
    -- Why, in a sentence for the record's page.
    lost_reason TEXT
);
