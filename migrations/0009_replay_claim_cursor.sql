-- Replay claims become one cursor per job instead of a write per record (src/store/replays.rs,
-- `claim`): items are sent in record id order, so a pending item at or below
-- `claimed_through` may have reached the broker (shown as 'sending') and one above it has
-- not. Records no longer pass through 'replaying'; they keep their status until their
-- delivery is recorded. A claim wrote each item and each record once more than its outcome
-- does, which held bulk replay to about a third of a bare produce.
ALTER TABLE replay_jobs ADD COLUMN claimed_through INTEGER NOT NULL DEFAULT 0;

-- Items a job had claimed when this version arrived: the cursor covers them.
UPDATE replay_jobs SET claimed_through = COALESCE(
    (SELECT MAX(record_id) FROM replay_items i WHERE i.job_id = replay_jobs.id AND i.state = 'sending'), 0);

-- Their records get back the status they had before the claim, with the per-topic counters.
CREATE TEMP TABLE restored AS
SELECT r.id, r.topic,
       COALESCE((SELECT i.prev_status FROM replay_items i
                 WHERE i.record_id = r.id AND i.state = 'sending' LIMIT 1), 'new') AS status
FROM records r WHERE r.status = 'replaying';

INSERT INTO topic_status_counts (topic, status, count)
SELECT topic, 'replaying', -COUNT(*) FROM restored GROUP BY topic
UNION ALL SELECT topic, status, COUNT(*) FROM restored GROUP BY topic, status
ON CONFLICT (topic, status) DO UPDATE SET count = count + excluded.count;

UPDATE records SET status = (SELECT status FROM restored WHERE restored.id = records.id)
WHERE id IN (SELECT id FROM restored);

DROP TABLE restored;

UPDATE replay_items SET state = 'pending', prev_status = NULL WHERE state = 'sending';
