//! Replay: failed records go back to their service's first retry topic (never the live
//! topic), as durable, paced, resumable jobs with a result per record.

pub mod plan;
pub mod runner;
pub mod target;
