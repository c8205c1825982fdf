-- Erasing a purged record's payload (src/store/purges.rs) removes its search entries. With
-- FTS5's secure-delete option a removed entry is taken out of the index's pages at once,
-- instead of being masked by a delete marker until segments are merged, so the erased text
-- no longer exists in the file (together with PRAGMA secure_delete on the erasing
-- connection, which zeroes the freed space).
INSERT INTO records_fts (records_fts, rank) VALUES ('secure-delete', 1);
