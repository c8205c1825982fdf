//! End-to-end tests: the real binary in its own process against brokers in other processes
//! (librdkafka's mock cluster via `dev-cluster`, and tansu, a second Kafka implementation),
//! with crashes and outages.

mod faults;
mod harness;
#[path = "../common/http.rs"]
mod http;
mod kafkajs;
#[path = "../common/poll.rs"]
mod poll;
mod replay;
mod tansu;
#[path = "../common/topic.rs"]
mod topic;
