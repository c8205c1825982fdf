-- The redaction the search index was built with (`redact::SearchMask::spec`: empty for none,
-- as every index built before this migration was). Search entries hold the masked text, so
-- that a viewer's search cannot find a masked value; when the configured redaction differs
-- from this, the index is emptied and refilled in the background (src/store/search.rs,
-- `prepare`), and every writer that removes an entry makes its text with this same mask.
ALTER TABLE search_progress ADD COLUMN redaction TEXT NOT NULL DEFAULT '';
