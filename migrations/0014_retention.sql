-- Retention (`--retain`, src/retention.rs and src/store/retention.rs): a background cleanup
-- removes resolved records past their age, payloads past theirs, and, with a cap on the
-- number of records, the oldest records beyond it.

-- 1 when the payload, headers and stack trace were removed by retention (erased_at then
-- says when), 0 when an operator erased them (or nothing was erased).
ALTER TABLE records ADD COLUMN erased_by_retention INTEGER NOT NULL DEFAULT 0;

-- Payloads are removed in record id order (ids follow the time records were indexed): every
-- record at or below `payloads_through` has been looked at. Advanced in the transaction of
-- each chunk, so a restart goes on where the last chunk ended.
CREATE TABLE retention_progress (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    payloads_through INTEGER NOT NULL
);
INSERT INTO retention_progress (id, payloads_through) VALUES (1, 0);

-- What retention removed, per DLQ topic: kind 'resolved' (resolved records past their age),
-- 'payload' (payloads past theirs), 'capped_resolved' (resolved records removed for
-- max-records) and 'capped_unresolved' (records removed for max-records before they were
-- resolved: what the overview says plainly). Counted in the transaction of each chunk.
CREATE TABLE retention_removed (
    topic    TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (topic, kind)
) WITHOUT ROWID;
