-- A record's payload, headers and stack trace move out of `records` into a table of their
-- own, keyed by the record's id. `records` keeps what is filtered, sorted, listed and
-- changed (status, replay count), so a row is ~200 bytes instead of ~1.3 KB and more: a
-- replay rewrites a record's row twice (claimed, then delivered), and with the payload
-- inline that wrote every page of a bulk replay's records twice, which held bulk replay to
-- ~15k messages/s. The bodies are written once, when indexed, and only read afterwards.
CREATE TABLE record_bodies (
    -- = records.id
    record_id  INTEGER PRIMARY KEY,
    value      BLOB,
    -- JSON array of [name, base64 value or null], order kept.
    headers    TEXT NOT NULL,
    stacktrace TEXT
);

INSERT INTO record_bodies (record_id, value, headers, stacktrace)
SELECT id, value, headers, stacktrace FROM records;

ALTER TABLE records DROP COLUMN value;
ALTER TABLE records DROP COLUMN headers;
ALTER TABLE records DROP COLUMN stacktrace;
