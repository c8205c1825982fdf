-- A stable identity of this index file (src/store/identity.rs): the indexer commits offsets
-- to Kafka, for lag tools, under the group `dlq-dashboard-<index_id>` unless --group-id is
-- given. Two dashboards with their own files then never share a group, and one file keeps
-- its group across restarts. Created once, here, for new and existing files alike.
CREATE TABLE index_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    index_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

INSERT INTO index_identity (singleton, index_id, created_at)
VALUES (1, lower(hex(randomblob(6))), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
