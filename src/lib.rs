//! dlq-dashboard: index Kafka dead-letter topics into SQLite and serve pages to list,
//! inspect and replay failed records.
//!
//! Unsafe code is denied everywhere but in two modules, which allow it at their top:
//! `store::raw` (SQLite's C API) and `kafka::native` (librdkafka's C API and glibc's
//! `malloc_trim`).
#![deny(unsafe_code)]

/// The operations core: selection, preview, confirm, job control, audit.
pub mod actions;
/// Startup, background tasks, graceful shutdown.
pub mod app;
/// Users, passwords, API tokens, sessions and roles.
pub mod auth;
/// Side-by-side benchmarks (`dlq-dashboard bench`).
pub mod bench;
/// Background WAL checkpoints of the index files.
pub mod checkpoints;
/// Wall-clock time as stored and shown in the API.
pub mod clock;
/// Command line and environment configuration.
pub mod config;
/// The embedded demo's topics and failure producer.
pub mod demo;
/// The crate's one error type.
pub mod error;
/// Message filters parsed from query strings.
pub mod filter;
/// The DLQ indexer and header normalisation.
pub mod index;
/// Kafka client settings and the embedded mock cluster.
pub mod kafka;
/// Freed memory given back to the operating system after bursts of work.
pub mod memory;
/// What each role sees of payloads, headers and stack traces (hiding and redaction).
pub mod redact;
/// Replay: targets, previews, jobs, and what became of each replayed record.
pub mod replay;
/// The bounded index (`--retain`): the background cleanup of resolved records and payloads.
pub mod retention;
/// Lifecycle states of records, jobs and items.
pub mod states;
/// All SQL.
pub mod store;
/// Which topics are DLQ topics.
pub mod topics;
/// Pages, JSON API, metrics.
pub mod web;
