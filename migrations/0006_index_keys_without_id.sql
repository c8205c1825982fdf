-- Every index of a rowid table ends with the rowid already, so `id` named as a last column
-- was stored twice in each entry: (ts, id) held ts, id, id. Without it the entries are a
-- fifth smaller, which the indexer writes for every record, eight times. The order is the
-- same ((ts) is ordered by ts, then rowid), so listings newest first and their keyset
-- cursors use these indexes as before.
--
-- The key index gains the time, like every other filter's index: a key filter sorted all
-- the key's records for a page, which for a hot key (a tenant id, a constant) was a sort
-- of a large part of the index.
DROP INDEX records_by_time;
DROP INDEX records_by_topic;
DROP INDEX records_by_status;
DROP INDEX records_by_error_class;
DROP INDEX records_by_origin;
DROP INDEX records_by_fingerprint;
DROP INDEX records_by_key;
CREATE INDEX records_by_time        ON records (ts);
CREATE INDEX records_by_topic       ON records (topic, ts);
CREATE INDEX records_by_status      ON records (status, ts);
CREATE INDEX records_by_error_class ON records (error_class, ts);
CREATE INDEX records_by_origin      ON records (origin_topic, ts);
CREATE INDEX records_by_fingerprint ON records (fingerprint, ts);
CREATE INDEX records_by_key         ON records (key, ts);
