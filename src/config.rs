//! Command line and environment configuration (clap), validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::auth::cli::{TokenCommand, UserCommand, UsersFileArg};

/// dlq-dashboard: index Kafka dead-letter topics into SQLite and browse, inspect and replay them.
#[derive(Debug, Parser)]
#[command(
    name = "dlq-dashboard",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand name as well.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
// Parsed once per run: boxing `Serve` to shrink the enum would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the dashboard (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Run only the embedded Kafka mock cluster, for developing consumer services against it.
    DevCluster(DevClusterArgs),
    /// Serve the dashboard with the demo pipeline (live traffic, order-service, payments,
    /// their retry and DLQ topics) on the embedded cluster, or with --brokers on a real
    /// cluster, where it creates its topics and touches no topic it did not create.
    Demo(ServeArgs),
    /// Measure index and query speed (or, with --suite replay, bulk replay speed and memory;
    /// with --suite purge, a large purge) side by side with baselines, and print the ratios.
    Bench(BenchArgs),
    /// Manage the local users of the users file (passwords are asked for, or read from
    /// standard input when it is not a terminal).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the API tokens of the users file.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is logged.
    #[arg(long, env = "DLQ_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// SQLite file holding the index; created if missing. With the embedded demo and this
    /// default, dlq-dashboard-demo.db is used instead, started afresh on every run.
    #[arg(long, env = "DLQ_DATABASE", default_value = "dlq-dashboard.db")]
    pub database: PathBuf,
    /// Kafka bootstrap servers (host:port,...). Absent: an embedded demo cluster is started.
    #[arg(long, env = "DLQ_BROKERS")]
    pub brokers: Option<String>,
    /// DLQ topics to index: comma-separated names and/or regexes starting with `^`.
    /// Default: names ending in .dlq, -dlq, _dlq, .dlt, -dlt or _dlt, any case.
    #[arg(long, env = "DLQ_TOPICS", value_delimiter = ',')]
    pub dlq_topics: Vec<String>,
    /// Group under which the indexer commits its offsets to Kafka, for lag tools only: the
    /// indexer joins no group (it reads every partition itself; positions live in SQLite).
    /// Default: dlq-dashboard-<id of the index file>, so no two index files share one.
    #[arg(long, env = "DLQ_GROUP_ID")]
    pub group_id: Option<String>,
    /// Extra librdkafka property, e.g. security.protocol=SASL_SSL (repeatable; values may
    /// contain commas, as librdkafka's lists do; in the env variable separate entries with ';').
    #[arg(long = "kafka-config", env = "DLQ_KAFKA_CONFIG", value_delimiter = ';', value_parser = parse_key_value)]
    pub kafka_config: Vec<(String, String)>,
    /// Replay target of one DLQ topic, DLQ_TOPIC=RETRY_TOPIC (repeatable; env: ';'-separated).
    /// Wins over --replay-template.
    #[arg(
        long = "replay-target",
        env = "DLQ_REPLAY_TARGET",
        value_delimiter = ';'
    )]
    pub replay_targets: Vec<String>,
    /// Naming template of the first retry topic: {base} is the DLQ topic without its DLQ
    /// suffix; {origin_topic} and {consumer_group} come from the record's headers.
    #[arg(long, env = "DLQ_REPLAY_TEMPLATE", default_value = crate::replay::target::DEFAULT_TEMPLATE)]
    pub replay_template: String,
    /// The consumer group that reads the retry topic a DLQ topic's records are replayed to,
    /// DLQ_TOPIC=GROUP (repeatable; env: ';'-separated), for following whether replayed
    /// records were consumed. Without it: the group the records' headers name, else the
    /// groups the broker lists with commits on the retry topic.
    #[arg(
        long = "replay-consumer-group",
        env = "DLQ_REPLAY_CONSUMER_GROUP",
        value_delimiter = ';'
    )]
    pub replay_consumer_groups: Vec<String>,
    /// Compression of replayed records: none, gzip, snappy, lz4 or zstd. Default: none, or
    /// the compression.type given with --kafka-config. Keep none or gzip unless every
    /// consumer of the retry topics reads the codec: KafkaJS reads no lz4, snappy or zstd
    /// without plugins, and a batch it cannot read stops its consumer group.
    #[arg(long, env = "DLQ_REPLAY_COMPRESSION", value_enum, ignore_case = true)]
    pub replay_compression: Option<crate::kafka::Compression>,
    /// Warn (the overview, the page header, /api/health) when the index's file system has
    /// less free space than this: a size (1GiB, 500MB) or a share of the file system (5%).
    /// Default: the smaller of 1 GiB and 5%.
    #[arg(long, env = "DLQ_MIN_FREE_SPACE", default_value = "default", value_parser = parse_min_free_space)]
    pub min_free_space: crate::store::space::MinFreeSpace,
    /// A write-ahead log that cannot be copied back past this size (a reader holds an old
    /// snapshot open) is reported; a log file left larger than this is truncated once
    /// everything in it was copied.
    #[arg(long, env = "DLQ_MAX_WAL_SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_wal_size: u64,
    /// Store payloads larger than this as zstd frames (512, 4KiB; 0 = never compress).
    /// Pages, the raw download, replay and search see the original bytes either way; rows
    /// already stored keep how they were stored.
    #[arg(long, env = "DLQ_COMPRESS_PAYLOADS_ABOVE", default_value = "512", value_parser = parse_size)]
    pub compress_payloads_above: u64,
    /// Write the bound port to this file once listening (for scripts and tests that use port 0).
    #[arg(long, env = "DLQ_PORT_FILE")]
    pub port_file: Option<PathBuf>,
    /// With the embedded cluster: do not run the demo producer (topics are still created).
    #[arg(long, env = "DLQ_NO_DEMO")]
    pub no_demo: bool,
    /// After a reclaim deleted records on the broker, keep their payloads in the index
    /// (true) or drop them (false; headers, stack trace, error and audit are kept either way).
    #[arg(
        long,
        env = "DLQ_RECLAIM_KEEPS_PAYLOAD",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub reclaim_keeps_payload: bool,
    /// What the index keeps, e.g. resolved=30d,payloads=14d,max-records=5000000 (each part
    /// optional; durations in d, h or m). resolved: records replayed and consumed, purged or
    /// expired are removed this long after that. payloads: payloads, headers and stack traces
    /// are removed this long after the record was indexed (coordinates, error and history
    /// stay). max-records: beyond it the oldest resolved records go first, then the oldest of
    /// any status, which the overview says. Default: keep everything.
    #[arg(long, env = "DLQ_RETAIN", default_value = "", value_parser = parse_retain)]
    pub retain: crate::retention::Retain,
    /// The users file (local users and API tokens, managed with `dlq-dashboard user` and
    /// `token`). With it, every page and API call needs a sign-in or a token; while it
    /// holds nobody, only /healthz is served.
    #[arg(long, env = "DLQ_USERS")]
    pub users: Option<PathBuf>,
    /// Serve without authentication on a non-loopback address, with a red banner on every
    /// page. Without it (and without --users), such an address refuses to start.
    #[arg(long, env = "DLQ_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// The address users open, e.g. https://dlq.example.com; https makes the session
    /// cookie Secure and adds HSTS.
    #[arg(long, env = "DLQ_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Addresses or CIDRs of the trusted reverse proxy (comma list). Only from these are the
    /// user and groups headers believed; from anywhere else they are ignored.
    #[arg(long, env = "DLQ_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// The header in which the trusted proxy names the user.
    #[arg(
        long,
        env = "DLQ_PROXY_USER_HEADER",
        default_value = "X-Forwarded-User"
    )]
    pub proxy_user_header: String,
    /// The header in which the trusted proxy lists the user's groups (comma-separated).
    #[arg(
        long,
        env = "DLQ_PROXY_GROUPS_HEADER",
        default_value = "X-Forwarded-Groups"
    )]
    pub proxy_groups_header: String,
    /// A proxy group's role, GROUP=ROLE (repeatable; env: ';'-separated); the highest of a
    /// user's groups wins, and a user in no listed group is not signed in.
    #[arg(
        long = "proxy-group-role",
        env = "DLQ_PROXY_GROUP_ROLE",
        value_delimiter = ';'
    )]
    pub proxy_group_roles: Vec<String>,
    /// A session unused this long ends (e.g. 30m, 1h).
    #[arg(long, env = "DLQ_SESSION_IDLE", default_value = "1h", value_parser = crate::auth::duration::parse)]
    pub session_idle: Duration,
    /// A session ends this long after signing in, used or not.
    #[arg(long, env = "DLQ_SESSION_LIFETIME", default_value = "12h", value_parser = crate::auth::duration::parse)]
    pub session_lifetime: Duration,
    /// The DLQ topics a role may act on (replay, purge, undo, erase, reclaim), ROLE=REGEX,
    /// e.g. operator=^shop\. (repeatable; env: ';'-separated). The regex is searched in the
    /// topic name (anchor it with ^ and $ to match the whole name). A role without one may
    /// act on every topic. Messages outside it are refused in previews; an action on them
    /// is refused as a whole.
    #[arg(long = "role-topics", env = "DLQ_ROLE_TOPICS", value_delimiter = ';')]
    pub role_topics: Vec<String>,
    /// What viewers see of a record: full, or hidden (metadata only: no payload, header
    /// values or stack trace, and no raw download).
    #[arg(long, env = "DLQ_VIEWER_PAYLOADS", value_enum, default_value_t = crate::redact::ViewerPayloads::Full)]
    pub viewer_payloads: crate::redact::ViewerPayloads,
    /// JSON fields masked at any depth in shown payloads (comma list, any case), for roles
    /// below admin (everyone with --redact-for-all). Replays send the original bytes.
    #[arg(long, env = "DLQ_REDACT_JSON_FIELDS", value_delimiter = ',')]
    pub redact_json_fields: Vec<String>,
    /// Headers whose values are masked (comma list, any case), like --redact-json-fields.
    #[arg(long, env = "DLQ_REDACT_HEADERS", value_delimiter = ',')]
    pub redact_headers: Vec<String>,
    /// Mask the redacted fields and headers for admins too (the raw download stays theirs).
    #[arg(long, env = "DLQ_REDACT_FOR_ALL")]
    pub redact_for_all: bool,
    /// The largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "DLQ_MAX_REQUEST_BODY", default_value_t = 4 * 1024 * 1024)]
    pub max_request_body: usize,
    /// How long a request may take before it is answered 408, except the action POSTs
    /// (replay, purge, undo, erase, reclaim), whose answer is their result: they run to
    /// their end (a million-message purge takes a minute or more) in tasks of their own.
    #[arg(long, env = "DLQ_REQUEST_TIMEOUT", default_value = "30s", value_parser = crate::auth::duration::parse)]
    pub request_timeout: Duration,
    /// Requests served at once for one client address; more get 429 until one finishes.
    #[arg(long, env = "DLQ_MAX_REQUESTS_PER_CLIENT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_per_client: u32,
    /// PEM certificate chain to serve HTTPS with (with --tls-key). Without it, plain HTTP,
    /// and a TLS-terminating reverse proxy is expected in front of a shared dashboard.
    #[arg(long, env = "DLQ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "DLQ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The demo's timings (used by `demo` and by the embedded default only).
    #[command(flatten)]
    pub demo: crate::demo::DemoArgs,
    /// Set by the `demo` subcommand: run the demo pipeline on --brokers too. `serve
    /// --brokers` never runs it.
    #[arg(skip)]
    pub demo_on_cluster: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            database: PathBuf::from("dlq-dashboard.db"),
            brokers: None,
            dlq_topics: Vec::new(),
            group_id: None,
            kafka_config: Vec::new(),
            port_file: None,
            min_free_space: crate::store::space::MinFreeSpace::Default,
            max_wal_size: 256 << 20,
            compress_payloads_above: crate::store::codec::DEFAULT_COMPRESS_ABOVE as u64,
            no_demo: false,
            replay_targets: Vec::new(),
            replay_template: crate::replay::target::DEFAULT_TEMPLATE.into(),
            replay_compression: None,
            replay_consumer_groups: Vec::new(),
            reclaim_keeps_payload: true,
            retain: Default::default(),
            users: None,
            insecure_no_auth: false,
            public_url: None,
            session_idle: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(12 * 3600),
            trusted_proxies: Vec::new(),
            proxy_user_header: "X-Forwarded-User".into(),
            proxy_groups_header: "X-Forwarded-Groups".into(),
            proxy_group_roles: Vec::new(),
            role_topics: Vec::new(),
            viewer_payloads: crate::redact::ViewerPayloads::Full,
            redact_json_fields: Vec::new(),
            redact_headers: Vec::new(),
            redact_for_all: false,
            max_request_body: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_requests_per_client: 32,
            tls_cert: None,
            tls_key: None,
            demo: Default::default(),
            demo_on_cluster: false,
        }
    }
}

/// Flags of `dev-cluster`.
#[derive(Debug, Clone, Args)]
pub struct DevClusterArgs {
    /// Number of mock brokers.
    #[arg(long, env = "DLQ_BROKERS_COUNT", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub brokers_count: i32,
    /// Topic to create, as NAME or NAME:PARTITIONS (repeatable).
    #[arg(long = "topic", value_parser = parse_topic_spec)]
    pub topics: Vec<(String, i32)>,
}

/// Flags of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Which benchmarks to run: index (index rate and query latency), ingest (the indexer from
    /// a broker in another process, next to a raw consume, a bare insert and the store-level
    /// index rate), replay (bulk replay rate against a bare produce, and memory during a large
    /// job), purge (a purge of many messages, and what pages and the indexer wait meanwhile),
    /// or all.
    #[arg(long, value_enum, default_value_t = BenchSuite::Index)]
    pub suite: BenchSuite,
    /// Messages in the replay-rate benchmark (an unthrottled bulk replay).
    #[arg(long, default_value_t = 100_000)]
    pub replay_records: usize,
    /// Codecs of the replay-rate benchmark, each measured in turn in the same run (comma list).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,gzip,lz4"
    )]
    pub replay_compressions: Vec<crate::kafka::Compression>,
    /// Messages in the replay-memory benchmark (RSS growth during one job); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_memory_records: usize,
    /// Messages purged in the purge benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub purge_records: usize,
    /// Records produced to the mock cluster and indexed in the ingest benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub ingest_records: usize,
    /// Partitions of the ingest benchmark, spread over 4 topics: the mock cluster keeps at
    /// most 5 MiB of (compressed) batches per partition and drops the oldest beyond that, so
    /// 1M records of ~1 KiB need well over 50.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(4..=4000))]
    pub ingest_partitions: u32,
    /// In the ingest benchmark, produce and then run only the dashboard's indexer end to end:
    /// no raw consume, bare insert or store-level phase (at 10M each costs many minutes and
    /// GBs).
    #[arg(long)]
    pub ingest_e2e_only: bool,
    /// Seconds of a soak after the ingest benchmark's backlog is indexed: records go on being
    /// produced at 1,000/s while 8 HTTP clients request listings and searches from the
    /// dashboard's listener; reports page and search p99, the indexing rate and RSS growth.
    /// 0 (the default) skips it.
    #[arg(long, default_value_t = 0)]
    pub ingest_soak_secs: u64,
    /// Records to index in the index-rate benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Approximate payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// How the synthetic records arrive: in runs of one partition with rising timestamps, as
    /// a consumer hands them over (runs), or every record from another partition with
    /// timestamps falling through the day (interleaved, the worst case for the indexes).
    #[arg(long, value_enum, default_value_t = BenchLayout::Runs)]
    pub layout: BenchLayout,
    /// Rounds of the index-rate benchmark, each a bare insert then the index on fresh files;
    /// the report gives every round and the medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Where to put the benchmark databases (a temporary folder when absent).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The order of the benchmarks' synthetic records (see `BenchArgs::layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchLayout {
    /// Runs of 500 records of one partition, timestamps rising over the last day.
    Runs,
    /// Each record from the next of 8 partitions, timestamps falling through the day.
    Interleaved,
}

/// The benchmark suites of `bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSuite {
    /// Index rate and query latency.
    Index,
    /// Bulk replay rate and memory.
    Replay,
    /// A purge of many messages: its time, and the page and writer waits while it runs.
    Purge,
    /// The backlog path: broker → consumer → normaliser → store → search, side by side with
    /// its parts.
    Ingest,
    /// All of them.
    All,
}

impl BenchSuite {
    /// Whether the index benchmarks run.
    pub fn index(self) -> bool {
        matches!(self, BenchSuite::Index | BenchSuite::All)
    }

    /// Whether the replay benchmarks run.
    pub fn replay(self) -> bool {
        matches!(self, BenchSuite::Replay | BenchSuite::All)
    }

    /// Whether the purge benchmark runs.
    pub fn purge(self) -> bool {
        matches!(self, BenchSuite::Purge | BenchSuite::All)
    }

    /// Whether the ingest benchmark runs.
    pub fn ingest(self) -> bool {
        matches!(self, BenchSuite::Ingest | BenchSuite::All)
    }
}

fn parse_retain(s: &str) -> Result<crate::retention::Retain, String> {
    s.parse()
}

fn parse_min_free_space(s: &str) -> Result<crate::store::space::MinFreeSpace, String> {
    s.parse()
}

/// A size such as 256MiB, 1GB or 1048576 (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    match s.parse::<crate::store::space::MinFreeSpace>() {
        Ok(crate::store::space::MinFreeSpace::Bytes(b)) => Ok(b),
        _ => Err(format!("{s:?}: give a size such as 256MiB, 1GB or 1048576")),
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "'{s}' is not key=value, e.g. security.protocol=SSL"
        )),
    }
}

/// Parse `NAME` or `NAME:PARTITIONS` (3 partitions when absent).
pub fn parse_topic_spec(s: &str) -> Result<(String, i32), String> {
    let (name, partitions) = match s.rsplit_once(':') {
        Some((name, p)) => {
            let p: i32 = p
                .parse()
                .map_err(|_| format!("'{p}' in '{s}' is not a partition count"))?;
            (name, p)
        }
        None => (s, 3),
    };
    if name.is_empty() || !(1..=1000).contains(&partitions) {
        return Err(format!(
            "'{s}' must be NAME or NAME:PARTITIONS with 1 to 1000 partitions"
        ));
    }
    Ok((name.to_string(), partitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_and_topic_specs_parse() {
        assert_eq!(
            parse_key_value("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_topic_spec("t:5").unwrap(), ("t".into(), 5));
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".into(), 3));
        assert!(parse_topic_spec("t:0").is_err());
    }

    #[test]
    fn cli_accepts_serve_flags_without_subcommand() {
        let cli = Cli::try_parse_from(["dlq-dashboard", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.port(), 0);
        let cli = Cli::try_parse_from(["dlq-dashboard", "serve", "--brokers", "k:9092"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Serve(a)) if a.brokers.as_deref() == Some("k:9092"))
        );
        assert!(
            cli_serve(&[]).reclaim_keeps_payload,
            "payloads kept by default"
        );
        assert!(!cli_serve(&["--reclaim-keeps-payload", "false"]).reclaim_keeps_payload);
    }

    #[test]
    fn demo_flags_parse_on_the_default_and_on_demo() {
        let d = cli_serve(&["--demo-rate", "5", "--demo-delays", "200ms,500ms"]).demo;
        assert_eq!(d.demo_rate, 5);
        assert_eq!(d.demo_delays.second, Duration::from_millis(500));
        assert_eq!(
            cli_serve(&[]).demo.demo_delays.first,
            Duration::from_secs(5)
        );
        let cli = Cli::try_parse_from([
            "dlq-dashboard",
            "demo",
            "--brokers",
            "k:9092",
            "--demo-rate",
            "7",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Demo(a)) if a.demo.demo_rate == 7 && a.brokers.is_some())
        );
        assert!(Cli::try_parse_from(["dlq-dashboard", "--demo-delays", "5s"]).is_err());
    }

    fn cli_serve(flags: &[&str]) -> ServeArgs {
        let args = ["dlq-dashboard"].iter().chain(flags).copied();
        Cli::try_parse_from(args).unwrap().serve
    }
}
