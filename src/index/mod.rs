//! The indexer: a consumer group over the DLQ topics that writes every record to SQLite
//! together with the position it advances.

pub mod consumer;
pub mod normalise;
pub mod record;
pub mod search;
pub mod status;

pub use status::IndexerStatus;
