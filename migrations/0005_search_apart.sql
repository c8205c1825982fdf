-- The search index moves into a file of its own next to this one (src/store/search.rs), so
-- that filling it never takes this file's writer lock. An existing index rebuilds it from
-- the first record, in the background, after the upgrade.
DROP TABLE main.records_fts;
DROP TABLE main.search_progress;

-- Which index this file is: the search file records the token of the file it was built
-- from, and is emptied and rebuilt when it finds another (this file deleted or replaced
-- while the search file stayed behind), instead of answering with another index's rows.
CREATE TABLE store_identity (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT    NOT NULL
);
INSERT INTO store_identity (id, token) VALUES (1, lower(hex(randomblob(16))));
