//! The indexer: a consumer that assigns itself every partition of the DLQ topics (no group)
//! and writes every record to SQLite together with the position it advances.

pub mod backfill;
pub mod consumer;
pub mod normalise;
pub mod reader;
pub mod record;
pub mod search;
pub mod status;

pub use status::IndexerStatus;
