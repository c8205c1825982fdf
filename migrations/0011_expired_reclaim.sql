-- Expired records and broker-side reclaim (src/store/expiry.rs, src/store/reclaim.rs).
--
-- A record is 'expired' once the broker's log start of its partition (the low watermark)
-- has moved past it: the broker no longer has it. The status needs no schema (statuses are
-- TEXT); what the index keeps per partition is where the log starts and how far the
-- dashboard itself has deleted it with DeleteRecords.

-- The partition's log start (low watermark) as last seen on the broker, for the generation
-- in `generation`; NULL until first seen. Records of that generation below it are expired
-- (or purged).
ALTER TABLE partition_positions ADD COLUMN log_start INTEGER;
-- A reclaim in flight: offsets below this are being deleted on the broker (set in the
-- transaction that checked they are all resolved, before DeleteRecords is called; cleared
-- when the broker answers). Non-NULL after a crash mid-call: the outcome is unknown, and the
-- records stay guarded.
ALTER TABLE partition_positions ADD COLUMN reclaiming_to INTEGER;
-- Offsets below this were deleted on the broker by a reclaim of this dashboard.
ALTER TABLE partition_positions ADD COLUMN reclaimed_to INTEGER;
-- When the last reclaim of the partition finished, ms.
ALTER TABLE partition_positions ADD COLUMN reclaimed_at INTEGER;
