//! The binary as a user runs it: configuration errors, dev-cluster, and the embedded demo.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::process::{http_get, DEADLINE};
use crate::poll::wait_for_blocking;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlq-dashboard"));
    c.env("RUST_LOG", "warn").env_remove("DLQ_BROKERS");
    c
}

fn exits_with_one_sentence(args: &[&str], needle: &str) {
    let out = bin().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(
        stderr.trim().lines().count() <= 2,
        "{args:?}: one plain sentence, got {stderr}"
    );
}

#[test]
fn bad_configuration_exits_1_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let db = db.to_str().unwrap();
    exits_with_one_sentence(
        &[
            "--dlq-topics",
            "^(",
            "--brokers",
            "127.0.0.1:1",
            "--database",
            db,
        ],
        "not a valid regex",
    );
    exits_with_one_sentence(
        &[
            "--database",
            "/no/such/folder/x.db",
            "--brokers",
            "127.0.0.1:1",
        ],
        "does not exist",
    );
    exits_with_one_sentence(
        &[
            "--kafka-config",
            "novalue",
            "--brokers",
            "127.0.0.1:1",
            "--database",
            db,
        ],
        "key=value",
    );
    exits_with_one_sentence(
        &[
            "--kafka-config",
            "no.such.property=1",
            "--brokers",
            "127.0.0.1:1",
            "--database",
            db,
        ],
        "no.such.property",
    );
    exits_with_one_sentence(
        &[
            "--replay-template",
            "{service}.retry",
            "--brokers",
            "127.0.0.1:1",
            "--database",
            db,
        ],
        "placeholders",
    );
    let out = bin().args(["--listen", "not-an-address"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn dev_cluster_prints_its_bootstrap_address_and_is_a_real_kafka() {
    let mut child = bin()
        .args([
            "dev-cluster",
            "--brokers-count",
            "1",
            "--topic",
            "svc.dlq:2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bootstrap = line
        .trim()
        .strip_prefix("bootstrap: ")
        .expect("bootstrap line")
        .to_string();
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(Some("svc.dlq"), Duration::from_secs(20))
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_default_run_serves_the_embedded_demo() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    // A previous demo's index is left behind (here: garbage): the demo starts afresh anyway.
    std::fs::write(dir.path().join("dlq-dashboard-demo.db"), b"not a database").unwrap();
    let mut child = bin()
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port: u16 = wait_for_blocking("the port file", DEADLINE, || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    // Real failed records in several conventions within seconds.
    let conventions = wait_for_blocking("demo records in six conventions", DEADLINE, || {
        let (200, body) = http_get(port, "/api/messages?limit=1000")? else {
            return None;
        };
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let set: std::collections::BTreeSet<String> = v["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["convention"].as_str().map(str::to_string))
            .collect();
        // Records arrive in no fixed order: wait for the two the assertions below name too.
        let named = set.contains("spring_dlt") && set.contains("kafka_connect");
        (set.len() >= 6 && named).then_some(set)
    });
    assert!(
        conventions.contains("spring_dlt") && conventions.contains("kafka_connect"),
        "{conventions:?}"
    );
    let (status, body) = http_get(port, "/api/cluster").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["embedded"], true);
    let (status, html) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("embedded demo cluster"));
    assert!(
        !html.contains("restarted"),
        "a fresh demo index reports no restarted offsets"
    );
    assert!(
        !dir.path().join("dlq-dashboard.db").exists(),
        "the demo keeps out of the real index file"
    );
    // SIGTERM stops it gracefully.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = wait_for_blocking("a graceful stop on SIGTERM", DEADLINE, || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "graceful exit, got {status}");
}

#[test]
fn tls_and_sasl_settings_are_accepted_by_the_kafka_client() {
    // librdkafka rejects security.protocol=SSL when built without OpenSSL; real clusters need
    // it, so the build links OpenSSL (rdkafka's ssl-vendored feature).
    let settings = dlq_dashboard::kafka::KafkaSettings {
        brokers: "127.0.0.1:1".into(),
        extra: vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
            ("sasl.username".into(), "dlq".into()),
            ("sasl.password".into(), "secret".into()),
        ],
        embedded: false,
        replay_compression: dlq_dashboard::kafka::Compression::DEFAULT_REPLAY,
    };
    let consumer: Result<rdkafka::consumer::BaseConsumer, _> = settings.client_config().create();
    assert!(consumer.is_ok(), "{:?}", consumer.err());
    let producer: Result<rdkafka::producer::BaseProducer, _> = settings.producer_config().create();
    assert!(producer.is_ok(), "{:?}", producer.err());
}
