//! Integration tests: the real dashboard against a real in-process Kafka (librdkafka's mock
//! cluster) and a real SQLite file.

mod browse;
mod cli;
mod conventions;
mod harness;
mod hostile;
#[path = "../common/http.rs"]
mod http;
mod lifecycle;
mod logmoves;
mod outage;
mod outcomes;
#[path = "../common/poll.rs"]
mod poll;
mod replay;
mod replay_pages;
mod replay_target;
mod store;
#[path = "../common/topic.rs"]
mod topic;
