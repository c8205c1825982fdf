-- The search index is filled behind the indexer (src/store/search.rs) instead of in the
-- indexer's write transaction, which spent a third of its time there. `indexed_through` is
-- the highest records.id whose text is in records_fts: every row at or below it is
-- searchable, every row above it is not yet. It is advanced in the same transaction as the
-- search rows it covers, so a crash never skips or repeats a row.
CREATE TABLE search_progress (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
);

-- Until now every row was put in the search index with the row itself.
INSERT INTO search_progress (id, indexed_through) SELECT 1, COALESCE(MAX(id), 0) FROM records;
