-- The compression a job's records are sent with, chosen when it is previewed (so that what
-- the operator confirms is what is sent, even across a restart with another setting).
-- Jobs from before were sent with lz4, which the replay producer then hard-coded.
ALTER TABLE replay_jobs ADD COLUMN compression TEXT NOT NULL DEFAULT 'lz4';
