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

#[test]
fn a_non_loopback_address_without_auth_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let args = [
        "--listen",
        "0.0.0.0:0",
        "--brokers",
        "127.0.0.1:1",
        "--database",
        db.to_str().unwrap(),
    ];
    exits_with_one_sentence(&args, "--insecure-no-auth");
    exits_with_one_sentence(&args, "--users FILE");
    assert!(!db.exists(), "refused before anything was opened");
}

/// Run `dlq-dashboard ARGS` with `stdin`; stdout, after asserting success.
fn run_with_stdin(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn users_and_tokens_added_with_the_cli_work_on_a_running_dashboard() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = crate::harness::process::DevCluster::start(1, &["orders.dlq:1"]);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    let users = users.to_str().unwrap();
    let d = crate::harness::process::DashboardProcess::start(
        &cluster.bootstrap,
        &dir.path().join("index.db"),
        &["--users", users],
    );
    // Nobody can sign in yet: only /healthz.
    wait_for_blocking("healthz", DEADLINE, || {
        (d.get("/healthz")?.0 == 200).then_some(())
    });
    let (status, body) = d.get("/api/cluster").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("user add"), "{body}");

    // The password comes from standard input, never a flag.
    let out = run_with_stdin(
        &[
            "user", "add", "alice", "--role", "operator", "--users", users,
        ],
        "a long enough password\n",
    );
    assert!(out.contains("Added alice"), "{out}");
    let mode = std::fs::metadata(users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(users).unwrap();
    assert!(text.contains("$argon2id$") && !text.contains("a long enough password"));
    assert!(run_with_stdin(&["user", "list", "--users", users], "").contains("alice\toperator"));
    let short = bin()
        .args(["user", "add", "bob", "--role", "viewer", "--users", users])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1), "an empty password is refused");

    // Signing in works without a restart.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", d.port);
    let login = |pw: &str| {
        client
            .post(url("/login"))
            .form(&[("name", "alice"), ("password", pw), ("next", "/messages")])
            .send()
            .unwrap()
    };
    assert_eq!(login("not the password").status(), 401);
    let response = login("a long enough password");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/messages");
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http without an https --public-url: {cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = client
        .get(url("/messages"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("alice · operator"));
    let stranger = client.get(url("/messages")).send().unwrap();
    assert_eq!(stranger.status(), 303);

    // A token is printed once, alone on the last line, and works until revoked.
    let out = run_with_stdin(
        &[
            "token",
            "create",
            "--role",
            "viewer",
            "--name",
            "ci",
            "--expires",
            "30d",
            "--users",
            users,
        ],
        "",
    );
    let secret = out.trim_end().lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("dlq_"), "{out}");
    assert!(
        !std::fs::read_to_string(users).unwrap().contains(&secret),
        "only its hash is kept"
    );
    let api = |token: &str| {
        client
            .get(url("/api/cluster"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(api(&secret), 200);
    let listed = run_with_stdin(&["token", "list", "--users", users], "");
    assert!(
        listed.contains("ci\tviewer") && !listed.contains(&secret),
        "{listed}"
    );
    run_with_stdin(&["token", "revoke", "ci", "--users", users], "");
    assert_eq!(api(&secret), 401);
    drop(d);
}
