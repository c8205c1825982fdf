//! Replay: failed records go back to their service's first retry topic (never the live
//! topic), as durable, paced, resumable jobs with a result per record.

/// `bench --suite replay`: bulk replay rate against a bare produce, and memory during a job.
pub mod bench;
pub mod outcomes;
pub mod runner;
pub mod target;
