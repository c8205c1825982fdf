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

-- The counts the banner, /api/health and /metrics show on every page, kept by triggers:
-- counting the marks on each page view would cost milliseconds per 100k marks, and marks
-- are removed by several writers (the backfill, an erase, retention), each of which would
-- otherwise have to count what it removed.
CREATE TABLE deferred_counts (
    only    INTEGER PRIMARY KEY CHECK (only = 1),
    pending INTEGER NOT NULL,
    lost    INTEGER NOT NULL
);
INSERT INTO deferred_counts (only, pending, lost) VALUES (1, 0, 0);

CREATE TRIGGER deferred_bodies_added AFTER INSERT ON deferred_bodies BEGIN
    UPDATE deferred_counts SET pending = pending + (NEW.lost_at IS NULL),
                               lost = lost + (NEW.lost_at IS NOT NULL);
END;

CREATE TRIGGER deferred_bodies_removed AFTER DELETE ON deferred_bodies BEGIN
    UPDATE deferred_counts SET pending = pending - (OLD.lost_at IS NULL),
                               lost = lost - (OLD.lost_at IS NOT NULL);
END;

CREATE TRIGGER deferred_bodies_changed AFTER UPDATE OF lost_at ON deferred_bodies BEGIN
    UPDATE deferred_counts SET pending = pending - (OLD.lost_at IS NULL) + (NEW.lost_at IS NULL),
                               lost = lost - (OLD.lost_at IS NOT NULL) + (NEW.lost_at IS NOT NULL);
END;
