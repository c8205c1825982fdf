-- Replays followed past the broker: consumed once the consumer group reading the target
-- retry topic has committed past the record's target offset, failed again when a DLQ record
-- carrying the replay's dlq-replay-id comes back (src/replay/outcomes.rs).

-- When the item was first seen consumed, ms.
ALTER TABLE replay_items ADD COLUMN consumed_at INTEGER;
-- The records.id of the DLQ record that came back from this replay.
ALTER TABLE replay_items ADD COLUMN failed_again_id INTEGER;
-- 1 when that record carried no dlq-replay-id and was matched by DLQ topic, key and value
-- after the delivery: probably the same record, never certainly.
ALTER TABLE replay_items ADD COLUMN failed_again_probable INTEGER NOT NULL DEFAULT 0;

-- Items delivered and not yet seen consumed, by where they landed: the tracker seeks the
-- lowest waiting offset of each target partition, and marks those below a committed offset,
-- without reading the rest of a job. Consumed items leave the index.
CREATE INDEX replay_items_awaiting
    ON replay_items (job_id, target_topic, target_partition, target_offset)
    WHERE state = 'sent' AND consumed_at IS NULL;

ALTER TABLE replay_jobs ADD COLUMN consumed     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replay_jobs ADD COLUMN failed_again INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replay_jobs ADD COLUMN failed_again_probably INTEGER NOT NULL DEFAULT 0;
-- JSON array: per target topic, the consumer groups followed and how they were found, or
-- why consumption is not tracked.
ALTER TABLE replay_jobs ADD COLUMN consumer_groups TEXT NOT NULL DEFAULT '[]';

-- The dlq-replay-count a DLQ record carried when it was indexed: the replays its lineage
-- went through before it came back (0 for a first failure). The next replay of it sends
-- this plus its own replays plus one.
ALTER TABLE records ADD COLUMN lineage_replays INTEGER NOT NULL DEFAULT 0;
-- Replays of this record, or of its lineage, that came back to a DLQ. Two or more is a loop.
ALTER TABLE records ADD COLUMN failed_again_count INTEGER NOT NULL DEFAULT 0;

-- Per failure group: items delivered, consumed and failed again, and records in a loop.
ALTER TABLE failure_groups ADD COLUMN replayed     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE failure_groups ADD COLUMN consumed     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE failure_groups ADD COLUMN failed_again INTEGER NOT NULL DEFAULT 0;
ALTER TABLE failure_groups ADD COLUMN looping      INTEGER NOT NULL DEFAULT 0;

UPDATE failure_groups SET replayed = (
    SELECT COUNT(*) FROM records r JOIN replay_items i ON i.record_id = r.id
    WHERE r.fingerprint = failure_groups.fingerprint AND i.state = 'sent'
);
