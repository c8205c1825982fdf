-- The search file (`<database stem>.search.db`, next to the index; see src/store/search.rs).
-- Its migrations are separate from the index's: sqlx reads only the files directly in
-- `migrations/`, not this folder.

-- Full-text search over the key, the start of the payload, and the error text. Contentless:
-- the text lives in the index's `records`; rowid = records.id. detail=none and columnsize=0
-- keep ingest fast (queries are AND-ed terms, not phrases, and results are not ranked).
-- Removing a row from it takes its original text.
CREATE VIRTUAL TABLE records_fts USING fts5 (
    key_text, body, error_text,
    content = '', detail = none, columnsize = 0
);

-- `indexed_through` is the highest records.id whose text is in records_fts: every record at
-- or below it is searchable, every record above it is not yet. It is advanced in the same
-- transaction as the search rows it covers, so a crash never skips or repeats a row.
-- `store_token` is the index file's `store_identity.token` these rows were made from (NULL
-- until first paired).
CREATE TABLE search_progress (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL,
    store_token     TEXT
);
INSERT INTO search_progress (id, indexed_through) VALUES (1, 0);
