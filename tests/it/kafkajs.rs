//! Replays read by a consumer service written with KafkaJS (tests/kafkajs/consumer.mjs), the
//! most used Node.js client, which reads no lz4, snappy or zstd batches without plugins: a
//! replay with the default compression, and with gzip, is processed in full; one with lz4
//! stops that consumer group, which is why lz4 is no longer the default.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::process::{
    produce_with_headers, producer, DashboardProcess, DevCluster, DEADLINE,
};
use crate::replay_process::{all_results, DLQ_HEADERS};

const N: usize = 300;

/// What the KafkaJS service printed: the replay ids it processed and how it ended.
struct ServiceRun {
    processed: BTreeSet<String>,
    last: Value,
    exit: Option<i32>,
}

/// `node tests/kafkajs/SCRIPT ARGS...` to its end (the deadline is the backstop): its exit
/// code, and its stdout as JSON lines.
fn run_node(script: &str, args: &[&str]) -> (Option<i32>, Vec<Value>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafkajs");
    assert!(
        dir.join("node_modules/kafkajs").is_dir(),
        "kafkajs is not installed in {}: run scripts/test, which installs it (npm ci)",
        dir.display()
    );
    let node = std::env::var("DLQ_TEST_NODE").unwrap_or_else(|_| "node".into());
    let output = Command::new("timeout")
        .arg(DEADLINE.as_secs().to_string())
        .arg(&node)
        .arg(dir.join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {node} (Node.js, installed by scripts/test): {e}"));
    if output.status.code() != Some(0) {
        eprintln!(
            "{script} exited with {:?}; stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    (output.status.code(), lines)
}

/// The KafkaJS consumer service, run to its end (it stops once it processed `expected`
/// records, or on a crash; the deadline is the backstop).
fn run_kafkajs_service(bootstrap: &str, topic: &str, group: &str, expected: usize) -> ServiceRun {
    let (exit, lines) = run_node(
        "consumer.mjs",
        &[bootstrap, topic, group, &expected.to_string()],
    );
    let processed = lines
        .iter()
        .filter_map(|v| v["processed"]["replay_id"].as_str().map(str::to_string))
        .collect();
    ServiceRun {
        processed,
        last: lines.last().cloned().unwrap_or(Value::Null),
        exit,
    }
}

/// A DLQ topic of N records and its retry topic on a dev-cluster, indexed by a dashboard
/// started with `flags`, all N replayed to the retry topic: the cluster, the dashboard and
/// the replay ids the job's results name.
fn replay_all(
    flags: &[&str],
) -> (
    DevCluster,
    DashboardProcess,
    tempfile::TempDir,
    String,
    BTreeSet<String>,
) {
    let cluster = DevCluster::start(3, &["orders.dlq:2", "orders.retry.1:3", "orders:3"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(produce_with_headers(
        &producer(&cluster.bootstrap),
        "orders.dlq",
        "js",
        N,
        &DLQ_HEADERS,
    ));
    let dir = tempfile::tempdir().unwrap();
    let dashboard = DashboardProcess::start(&cluster.bootstrap, &dir.path().join("i.db"), flags);
    dashboard.wait_indexed(N as i64);
    let id = dashboard.start_replay(json!({"filter": {"topic": "orders.dlq"}, "rate": 0}));
    let job = dashboard.wait_replay_finished(&id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["sent"], N as i64, "{job}");
    let replay_ids: BTreeSet<String> = all_results(&dashboard, &id)
        .iter()
        .map(|r| r["replay_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replay_ids.len(), N);
    (cluster, dashboard, dir, id, replay_ids)
}

fn assert_processed_every_record(flags: &[&str], compression: &str) {
    let (cluster, dashboard, _dir, id, replay_ids) = replay_all(flags);
    let job = dashboard.get_json(&format!("/api/replays/{id}"));
    assert_eq!(job["replay"]["compression"], compression, "{job}");
    let run = run_kafkajs_service(&cluster.bootstrap, "orders.retry.1", "order-service", N);
    assert_eq!(
        run.exit,
        Some(0),
        "the KafkaJS service ended with {}",
        run.last
    );
    assert_eq!(run.last, json!({"done": N}));
    assert!(
        run.processed == replay_ids,
        "the KafkaJS service processed exactly the replayed records ({} of {N})",
        run.processed.len()
    );
}

#[test]
fn a_kafkajs_service_processes_every_record_of_a_replay_with_the_default_compression() {
    assert_processed_every_record(&[], "none");
}

#[test]
fn a_kafkajs_service_processes_every_record_of_a_gzip_replay() {
    assert_processed_every_record(&["--replay-compression", "gzip"], "gzip");
}

#[test]
fn an_lz4_replay_stops_a_kafkajs_service_which_is_why_it_is_not_the_default() {
    // The bug this guards against: lz4 was hard-coded, and the first replayed batch stopped
    // a KafkaJS consumer group. With the codec asked for explicitly the dashboard still
    // sends it, and says so on the job.
    let (cluster, dashboard, _dir, id, _) = replay_all(&["--replay-compression", "lz4"]);
    let job = dashboard.get_json(&format!("/api/replays/{id}"));
    assert_eq!(job["replay"]["compression"], "lz4", "{job}");
    assert_eq!(job["replay"]["compression_read_by_every_client"], false);
    let run = run_kafkajs_service(&cluster.bootstrap, "orders.retry.1", "order-service", N);
    assert_eq!(
        run.exit,
        Some(2),
        "the KafkaJS service ended with {}",
        run.last
    );
    let crash = run.last["crashed"].as_str().unwrap_or_default();
    assert!(crash.contains("LZ4"), "{crash}");
    assert!(
        run.processed.is_empty(),
        "nothing of an lz4 batch is readable"
    );
}

#[test]
fn a_kafkajs_idempotent_producer_writes_to_the_dev_cluster() {
    // The mock cluster named a controller (broker 0) that was not a broker, and a KafkaJS
    // idempotent producer, which asks the controller for its producer id, could not
    // connect ("Broker 0 not found in the cached metadata").
    for brokers in [1, 3] {
        let cluster = DevCluster::start(brokers, &["orders:3"]);
        let (exit, lines) = run_node("producer.mjs", &[&cluster.bootstrap, "orders", "50"]);
        assert_eq!(exit, Some(0), "with {brokers} brokers: {lines:?}");
        assert_eq!(lines.last(), Some(&json!({"sent": 50})));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = rt.block_on(crate::harness::process::read_topic(
            &cluster.bootstrap,
            "orders",
            crate::harness::process::ReadUntil::End { at_least: 50 },
            &[],
        ));
        assert_eq!(got.len(), 50, "with {brokers} brokers");
    }
}
