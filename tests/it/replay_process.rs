//! Replay against the real binary: a job killed mid-way (SIGKILL, twice) resumes on restart
//! and completes with every message sent and no message sent twice unless it was in flight
//! at a kill; and a replay onto tansu, an independent broker, arrives intact.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};

use crate::harness::process::{
    create_topics, produce_with_headers, producer, read_topic, replay_items_in, DashboardProcess,
    DevCluster, ReadUntil, Tansu, DEADLINE,
};
use crate::poll::wait_for_blocking;

/// The headers every DLQ record carries here, in this order.
pub(crate) const DLQ_HEADERS: [(&str, &str); 3] = [
    ("dlq-origin-topic", "orders"),
    ("dlq-error-class", "E2EError"),
    ("trace-id", "trace-7"),
];

/// The headers a replayed record carries: the original ones in order, then the replay ones.
const REPLAYED_HEADERS: [&str; 8] = [
    "dlq-origin-topic",
    "dlq-error-class",
    "trace-id",
    "dlq-replay-id",
    "dlq-replay-action",
    "dlq-replay-count",
    "dlq-replayed-at",
    "dlq-source",
];

/// The job as the API shows it, or None while the dashboard is not answering.
fn job_now(dashboard: &DashboardProcess, id: &str) -> Option<Value> {
    let (status, body) = dashboard.get(&format!("/api/replays/{id}"))?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_mid_job_resumes_and_sends_every_message_once_but_those_in_flight() {
    const N: usize = 20_000;
    const RATE: i64 = 4_000;
    let cluster = DevCluster::start(1, &["orders.dlq:3", "orders.retry.1:3", "orders:3"]);
    let coords = produce_with_headers(
        &producer(&cluster.bootstrap),
        "orders.dlq",
        "o",
        N,
        &DLQ_HEADERS,
    )
    .await;
    let previewed: BTreeSet<String> = coords.iter().cloned().collect();
    assert_eq!(previewed.len(), N);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let mut dashboard = DashboardProcess::start(&cluster.bootstrap, &db, &[]);
    dashboard.wait_indexed(N as i64);

    let id = dashboard.start_replay(json!({"filter": {"topic": "orders.dlq"}, "rate": RATE}));
    // Record ids whose items were 'sending' (claimed, delivery not recorded) in the SQLite
    // file right after a kill: the only messages allowed to arrive twice.
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut kills: Vec<(i64, usize)> = Vec::new();
    for threshold in [N as i64 / 4, N as i64 * 3 / 5] {
        let job = wait_for_blocking(
            &format!("replay {id} to send {threshold}"),
            DEADLINE,
            || {
                let job = job_now(&dashboard, &id)?;
                let finished = ["completed", "completed_with_failures", "cancelled"]
                    .contains(&job["status"].as_str()?);
                (job["sent"].as_i64()? >= threshold || finished).then_some(job)
            },
        );
        if job["status"] != "running" {
            // Finished before this kill could land; one kill mid-job is still asserted below.
            break;
        }
        dashboard.kill();
        let (sending, sent_at_kill) = replay_items_in(&db, &id, "sending").await;
        let (sent_items, _) = replay_items_in(&db, &id, "sent").await;
        assert_eq!(
            sent_items.len() as i64,
            sent_at_kill,
            "the job's sent counter agrees with its items"
        );
        assert!(
            (sent_at_kill as usize) < N,
            "the kill landed before the end ({sent_at_kill} of {N} sent)"
        );
        kills.push((sent_at_kill, sending.len()));
        in_flight.extend(sending);
        dashboard.restart();
    }
    assert!(!kills.is_empty(), "no kill landed mid-job");

    // The job resumes by itself and completes.
    let job = dashboard.wait_replay_finished(&id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["total"], N as i64, "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    let (left_sending, _) = replay_items_in(&db, &id, "sending").await;
    assert!(
        left_sending.is_empty(),
        "no item left between claim and report"
    );

    let got = read_topic(
        &cluster.bootstrap,
        "orders.retry.1",
        ReadUntil::End { at_least: N },
        &[],
    )
    .await;
    let mut times_seen: HashMap<String, usize> = HashMap::new();
    let mut ids_of_source: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &got {
        let replay_id = r.header("dlq-replay-id").expect("dlq-replay-id");
        let source = r.header("dlq-source").expect("dlq-source");
        assert_eq!(r.header("dlq-replay-action").as_deref(), Some(id.as_str()));
        let key = String::from_utf8(r.key.clone().expect("a key")).unwrap();
        let value = String::from_utf8(r.value.clone().expect("a value")).unwrap();
        assert!(value.contains(&format!("\"{key}\"")), "{key}: {value}");
        *times_seen.entry(replay_id.clone()).or_default() += 1;
        ids_of_source.entry(source).or_default().insert(replay_id);
    }
    // Every previewed message arrived at least once, and nothing else did.
    let arrived: BTreeSet<String> = ids_of_source.keys().cloned().collect();
    assert_eq!(arrived.len(), N, "distinct messages arrived");
    assert!(arrived == previewed, "exactly the previewed set arrived");
    // A message carries the same replay id on every attempt within the job.
    assert!(ids_of_source.values().all(|ids| ids.len() == 1));
    // No replay id twice unless its message was in flight at a kill.
    let prefix = format!("{id}-");
    let twice: Vec<(i64, usize)> = times_seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(rid, n)| {
            let record: i64 = rid
                .strip_prefix(&prefix)
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("replay id {rid} is not {prefix}<record id>"));
            (record, *n)
        })
        .collect();
    for (record, n) in &twice {
        assert!(
            in_flight.contains(record),
            "record {record} arrived {n} times but was not in flight at a kill"
        );
        assert!(*n <= 1 + kills.len(), "record {record} arrived {n} times");
    }
    // The job counts each message once.
    assert_eq!(job["sent"], times_seen.len() as i64, "{job}");
    // Nothing reached the live topic.
    let live = read_topic(
        &cluster.bootstrap,
        "orders",
        ReadUntil::End { at_least: 0 },
        &[],
    )
    .await;
    assert!(live.is_empty(), "{} records on the live topic", live.len());
    println!(
        "kills at (sent, in flight) {kills:?}; {} records read, {} distinct, {} sent again",
        got.len(),
        times_seen.len(),
        twice.len()
    );
}

/// Every result of a job, following the API's cursor.
pub(crate) fn all_results(dashboard: &DashboardProcess, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = dashboard.get_json(&format!(
            "/api/replays/{id}/results?limit=1000&cursor={cursor}"
        ));
        out.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_onto_tansu_arrives_with_key_value_original_and_replay_headers() {
    const N: usize = 200;
    let tansu = Tansu::start();
    create_topics(
        &tansu.bootstrap,
        &[("orders.dlq", 2), ("orders.retry.1", 3), ("orders", 2)],
    )
    .await;
    let coords = produce_with_headers(
        &producer(&tansu.bootstrap),
        "orders.dlq",
        "t",
        N,
        &DLQ_HEADERS,
    )
    .await;
    let key_of: HashMap<String, String> = coords
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), format!("t-{i}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // A fetch tansu never answers (one at the end of a log) is retried after librdkafka's
    // socket timeout; a short one is the workaround (see tansu.rs).
    let timeout = [("socket.timeout.ms", "5000")];
    let dashboard = DashboardProcess::start(
        &tansu.bootstrap,
        &dir.path().join("i.db"),
        &["--kafka-config", "socket.timeout.ms=5000"],
    );
    dashboard.wait_indexed(N as i64);

    let id = dashboard.start_replay(json!({"filter": {"topic": "orders.dlq"}, "rate": 0}));
    let job = dashboard.wait_replay_finished(&id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["total"].as_i64(), job["sent"].as_i64()),
        (Some(N as i64), Some(N as i64))
    );
    assert_eq!(job["targets"], json!({"orders.retry.1": N}));

    // tansu never reports the end of a log (it does not answer that fetch), so the topic is
    // read until the job's count; the results' target coordinates, one per message and all
    // different, show that nothing else was delivered.
    let got = read_topic(
        &tansu.bootstrap,
        "orders.retry.1",
        ReadUntil::Count(N),
        &timeout,
    )
    .await;
    let results: HashMap<String, Value> = all_results(&dashboard, &id)
        .into_iter()
        .map(|r| {
            (
                format!(
                    "{}/{}/{}",
                    r["topic"].as_str().unwrap(),
                    r["partition"],
                    r["offset"]
                ),
                r,
            )
        })
        .collect();
    assert_eq!(results.len(), N);
    let mut seen = BTreeSet::new();
    for r in &got {
        let source = r.header("dlq-source").expect("dlq-source");
        let key = key_of
            .get(&source)
            .unwrap_or_else(|| panic!("{source} was not replayed"));
        assert!(seen.insert(source.clone()), "{source} arrived twice");
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()), "key kept");
        let value = format!("{{\"id\":\"{key}\",\"payload\":\"{}\"}}", "y".repeat(48));
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "value kept");
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names, REPLAYED_HEADERS,
            "original headers, then the replay ones"
        );
        for (name, value) in DLQ_HEADERS {
            assert_eq!(r.header(name).as_deref(), Some(value));
        }
        assert_eq!(r.header("dlq-replay-action").as_deref(), Some(id.as_str()));
        assert_eq!(r.header("dlq-replay-count").as_deref(), Some("1"));
        let replayed_at = r.header("dlq-replayed-at").unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(&replayed_at).is_ok(),
            "{replayed_at}"
        );
        let result = &results[&source];
        assert_eq!(result["state"], "sent");
        assert_eq!(result["target_topic"], "orders.retry.1");
        assert_eq!(
            (
                result["target_partition"].as_i64(),
                result["target_offset"].as_i64()
            ),
            (Some(r.partition as i64), Some(r.offset)),
            "the recorded delivery is where {source} arrived"
        );
        assert_eq!(
            result["replay_id"].as_str(),
            r.header("dlq-replay-id").as_deref()
        );
    }
    assert_eq!(seen.len(), N);
}
