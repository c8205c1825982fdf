//! The in-process harness: a real in-process Kafka (librdkafka's mock cluster), a real
//! SQLite file in a temporary folder, the real dashboard, and requests through its router.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dlq_dashboard::app::Dashboard;
use dlq_dashboard::config::ServeArgs;
use dlq_dashboard::kafka::mock::EmbeddedCluster;
use http_body_util::BodyExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tower::ServiceExt;

use crate::poll::wait_for;

/// How long any wait on the dashboard in process may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A Kafka cluster with a producer that shares no code with the dashboard's clients.
pub struct Kafka {
    pub cluster: Arc<EmbeddedCluster>,
    pub producer: FutureProducer,
}

impl Kafka {
    pub fn start(topics: &[(&str, i32)]) -> Self {
        let cluster = EmbeddedCluster::start(1).expect("mock cluster starts");
        for (t, p) in topics {
            cluster.create_topic(t, *p).expect("topic created");
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("message.max.bytes", "20000000")
            .set("compression.type", "lz4")
            .set("linger.ms", "1")
            .create()
            .expect("producer");
        Kafka {
            cluster: Arc::new(cluster),
            producer,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers().to_string()
    }

    /// Produce one record and wait for its delivery; returns (partition, offset).
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> (i32, i64) {
        let mut h = OwnedHeaders::new();
        for (name, value) in headers {
            h = h.insert(Header {
                key: name,
                value: *value,
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(h);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
        (delivery.partition, delivery.offset)
    }
}

/// A dashboard on a temporary SQLite file.
pub struct TestDashboard {
    pub dashboard: Option<Dashboard>,
    pub db: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

pub fn serve_args(bootstrap: &str, db: &std::path::Path) -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: db.to_path_buf(),
        brokers: Some(bootstrap.to_string()),
        ..ServeArgs::default()
    }
}

/// Log to the test output when RUST_LOG is set (e.g. RUST_LOG=dlq_dashboard=debug).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

impl TestDashboard {
    pub async fn start(kafka: &Kafka) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db = dir.path().join("index.db");
        Self::start_with(serve_args(&kafka.bootstrap(), &db), dir).await
    }

    pub async fn start_with(args: ServeArgs, dir: Arc<tempfile::TempDir>) -> Self {
        init_logging();
        let db = args.database.clone();
        let dashboard = Dashboard::start(args).await.expect("dashboard starts");
        TestDashboard {
            dashboard: Some(dashboard),
            db,
            _dir: dir,
        }
    }

    /// Stop this dashboard, run `meanwhile`, and start another on the same database file.
    pub async fn restart<F: Future<Output = ()>>(
        mut self,
        args: ServeArgs,
        meanwhile: impl FnOnce() -> F,
    ) -> Self {
        self.dashboard.take().unwrap().shutdown().await;
        meanwhile().await;
        let dir = self._dir.clone();
        Self::start_with(
            ServeArgs {
                database: self.db.clone(),
                ..args
            },
            dir,
        )
        .await
    }

    pub fn d(&self) -> &Dashboard {
        self.dashboard.as_ref().unwrap()
    }

    /// GET through the real router; returns status, content type and body.
    pub async fn get(&self, uri: &str) -> (StatusCode, String, Vec<u8>) {
        let app = dlq_dashboard::web::router(self.d().state.clone());
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let ctype = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ctype, body)
    }

    pub async fn get_json(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let (status, ctype, body) = self.get(uri).await;
        assert!(
            ctype.starts_with("application/json"),
            "{uri}: content type {ctype}"
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// The failure group of `error_class` as `GET /api/groups` shows it.
    pub async fn group_with_class(&self, error_class: &str) -> serde_json::Value {
        let (_, groups) = self.get_json("/api/groups").await;
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["error_class"] == error_class)
            .unwrap_or_else(|| panic!("no group of {error_class}: {groups}"))
            .clone()
    }

    pub async fn get_html(&self, uri: &str) -> (StatusCode, String) {
        let (status, ctype, body) = self.get(uri).await;
        assert!(
            ctype.starts_with("text/html"),
            "{uri}: content type {ctype}"
        );
        (status, String::from_utf8(body).unwrap())
    }

    /// Records in the index, counted straight from SQLite.
    pub async fn indexed(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM records")
            .fetch_one(&self.d().state.pool)
            .await
            .unwrap()
    }

    /// Wait until the index holds at least `n` records.
    pub async fn wait_indexed(&self, n: i64) -> i64 {
        wait_for(&format!("{n} records indexed"), DEADLINE, || async {
            let have = self.indexed().await;
            (have >= n).then_some(have)
        })
        .await
    }

    /// Wait until every indexed record is searchable (the search index is filled behind the
    /// indexer).
    pub async fn wait_searchable(&self) {
        wait_for("the search index to catch up", DEADLINE, || async {
            let p = dlq_dashboard::store::search::progress(&self.d().state.pool)
                .await
                .unwrap();
            p.complete().then_some(())
        })
        .await
    }

    pub async fn stop(mut self) {
        if let Some(d) = self.dashboard.take() {
            d.shutdown().await;
        }
    }
}

/// Text as the templates escape it (askama's HTML escaper uses numeric entities).
pub fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

impl TestDashboard {
    /// POST through the real router with a content type; returns status and body as JSON
    /// (null when the body is not JSON).
    pub async fn post(
        &self,
        uri: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let app = dlq_dashboard::web::router(self.d().state.clone());
        let mut request = Request::post(uri);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = app
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POST JSON through the real router.
    pub async fn post_json(
        &self,
        uri: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        self.post(uri, Some("application/json"), &body.to_string())
            .await
    }

    /// Purge through the API as an operator does, preview first and then its confirmation,
    /// each answered 200: `request` is the preview's body without `dry_run`. Returns the
    /// confirmation's answer.
    pub async fn purge_confirmed(&self, mut request: serde_json::Value) -> serde_json::Value {
        request["dry_run"] = serde_json::Value::Bool(true);
        let (status, preview) = self.post_json("/api/purges", request).await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        let (status, done) = self
            .post_json(
                "/api/purges",
                serde_json::json!({"preview_id": preview["preview_id"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{done}");
        done
    }
}

/// SQLite's integrity check of the index file `pool` is open on passes.
pub async fn assert_intact(pool: &sqlx::SqlitePool) {
    let check: String = sqlx::query_scalar("PRAGMA main.integrity_check")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

pub use crate::topic::Received;

/// Read every record of `topic` (all partitions, from the start) until `at_least` have
/// arrived and the topic has been read to its end.
pub async fn read_topic(bootstrap: &str, topic: &str, at_least: usize) -> Vec<Received> {
    crate::topic::read_topic(
        bootstrap,
        topic,
        crate::topic::ReadUntil::End { at_least },
        &[],
        DEADLINE,
    )
    .await
}

/// A record to produce: partition (None: by key), key, value, headers.
pub type Outgoing = (Option<i32>, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

impl Kafka {
    /// Produce many records at once and wait for all deliveries; returns their (partition,
    /// offset) in order.
    pub async fn send_many(&self, topic: &str, records: &[Outgoing]) -> Vec<(i32, i64)> {
        let mut deliveries = Vec::with_capacity(records.len());
        for (partition, key, value, headers) in records {
            let mut h = OwnedHeaders::new();
            for (name, value) in headers {
                h = h.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .key(key.as_slice())
                .payload(value.as_slice())
                .headers(h);
            if let Some(p) = partition {
                record = record.partition(*p);
            }
            deliveries.push(self.producer.send(record, Duration::from_secs(30)));
        }
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let d = d.await.expect("delivered");
            out.push((d.partition, d.offset));
        }
        out
    }
}

/// The host name form POSTs are addressed to (and the Origin a same-site form carries).
pub const FORM_HOST: &str = "dashboard.test";

impl TestDashboard {
    /// POST a URL-encoded form through the real router, as a browser sends it from a page
    /// at http://dashboard.test (pass `origin` to claim another); returns status, headers
    /// and body text. Nothing is followed: a 303 comes back as it is.
    pub async fn post_form(
        &self,
        uri: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let app = dlq_dashboard::web::router(self.d().state.clone());
        let body = serde_urlencoded::to_string(fields).unwrap();
        let mut request = Request::post(uri)
            .header("host", FORM_HOST)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        let response = app
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
}
