//! Integration tests, in one binary with one harness:
//!
//! - in process ([`harness::in_process`]): the real dashboard against a real in-process
//!   Kafka (librdkafka's mock cluster) and a real SQLite file, requests through its router;
//! - in child processes ([`harness::process`]): the real binary against brokers in other
//!   processes (librdkafka's mock cluster via `dev-cluster`, and tansu, a second Kafka
//!   implementation), with crashes and outages, and a consumer service written with KafkaJS.
//!
//! One binary means one link of the crate and its dependencies instead of one per binary,
//! and one place for the helpers both kinds of test share ([`poll`], [`topic`]).

mod harness;
mod poll;
mod topic;

// In process.
mod access;
mod api_snapshots;
mod assignment;
mod auth;
mod browse;
mod compress;
mod conventions;
mod demo;
mod hostile;
mod lifecycle;
mod logmoves;
mod low_space;
mod machine_faults;
mod outage;
mod outcomes;
mod purge;
mod reclaim;
mod redaction;
mod replay;
mod replay_pages;
mod replay_target;
mod retention;
mod store;

// The binary in its own process.
mod cli;
mod faults;
mod kafkajs;
mod replay_process;
mod tansu;
