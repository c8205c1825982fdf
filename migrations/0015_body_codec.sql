-- Stored payloads above `--compress-payloads-above` bytes are zstd frames (src/store/codec.rs).
-- `codec` says how `value` is to be read: 0 = the bytes as received, 1 = one zstd frame.
-- Rows written before this migration read as 0 through the default, without a rewrite
-- (adding a column with a constant default changes no row in SQLite).
ALTER TABLE record_bodies ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;

-- The threshold the writers of this index file compress above (0 = off), set from the flag
-- at every start; kept here so that every writer (indexer, benches, tests) follows one value.
CREATE TABLE body_codec (
    only           INTEGER PRIMARY KEY CHECK (only = 1),
    compress_above INTEGER NOT NULL
);
INSERT INTO body_codec (only, compress_above) VALUES (1, 512);
