//! Who may act on which topics (`--role-topics`), what each role sees of a record
//! (`--viewer-payloads`, redaction), the audit log's auth mode, and the web edge's limits
//! (body size, timeout, requests per client) and HTTPS. Real mock cluster, real SQLite
//! file, requests through the real router or over real sockets.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dlq_dashboard::auth::role::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::{cookie_of, Secured, ORIGIN, PASSWORD};
use crate::harness::in_process::{read_topic, Kafka, DEADLINE, FORM_HOST};
use crate::poll::wait_for;

impl Secured {
    /// A JSON request with `role`'s bearer token; status and body as JSON.
    async fn api(
        &self,
        role: Role,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token(role)));
        if body.is_some() {
            r = r.header("content-type", "application/json");
        }
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let (status, _, text) = self.send(r.body(body).unwrap()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The audit log's entries, newest first.
    async fn audit(&self) -> Vec<Value> {
        let (status, v) = self.api(Role::Viewer, "GET", "/api/audit", None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["entries"]
            .as_array()
            .or_else(|| v.as_array())
            .unwrap()
            .clone()
    }
}

fn origin(topic: &str) -> Vec<(&'static str, Option<&[u8]>)> {
    vec![
        ("dlq-origin-topic", Some(topic.as_bytes())),
        ("dlq-error-class", Some(b"com.acme.Boom")),
        ("dlq-error-message", Some(b"it broke")),
    ]
}

fn message(topic: &str) -> Value {
    json!({"messages": [{"topic": topic, "partition": 0, "offset": 0}]})
}

async fn job_done(s: &Secured, id: &str) -> Value {
    wait_for(&format!("replay job {id} to finish"), DEADLINE, || async {
        let (_, job) = s
            .api(Role::Viewer, "GET", &format!("/api/replays/{id}"), None)
            .await;
        ["completed", "completed_with_failures", "cancelled"]
            .contains(&job["status"].as_str().unwrap_or(""))
            .then_some(job)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_topics_refuse_what_a_role_may_not_touch_and_never_act_in_part() {
    let kafka = Kafka::start(&[
        ("shop", 1),
        ("shop.retry.1", 1),
        ("shop.dlq", 1),
        ("orders", 1),
        ("orders.retry.1", 1),
        ("orders.dlq", 1),
    ]);
    for (dlq, from) in [("shop.dlq", "shop"), ("orders.dlq", "orders")] {
        kafka
            .send(dlq, Some(0), Some(b"k"), Some(b"{\"n\":1}"), &origin(from))
            .await;
    }
    let s = Secured::start_configured(&kafka, |a| {
        a.role_topics = vec!["operator=^shop\\.".into()];
    })
    .await;
    s.d.wait_indexed(2).await;
    let all = json!({"filter": {}, "dry_run": true});

    // The operator's preview of everything refuses the other topic's message, saying why.
    let (status, preview) = s
        .api(Role::Operator, "POST", "/api/replays", Some(all.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        (preview["count"].as_i64(), preview["refused_count"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(preview["targets"], json!({"shop.retry.1": 1}));
    let refusal = &preview["refused"][0];
    assert_eq!(refusal["topic"], "orders.dlq");
    let reason = refusal["reason"].as_str().unwrap();
    assert!(
        reason.contains("Role operator may act only on DLQ topics matching ^shop\\."),
        "{reason}"
    );

    // In one step (no preview shown to anyone), the same request is refused as a whole.
    let (status, v) = s
        .api(
            Role::Operator,
            "POST",
            "/api/replays",
            Some(json!({"filter": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let sentence = v["error"].as_str().unwrap();
    assert!(
        sentence.contains("orders.dlq") && sentence.contains("nothing was done"),
        "{sentence}"
    );
    let (_, m) = s
        .api(Role::Viewer, "GET", "/api/messages/shop.dlq/0/0", None)
        .await;
    assert_eq!(m["status"], "new", "nothing replayed in part");

    // An admin's preview of both cannot be confirmed by the operator.
    let (_, admin_preview) = s
        .api(Role::Admin, "POST", "/api/replays", Some(all.clone()))
        .await;
    assert_eq!(admin_preview["count"], 2, "{admin_preview}");
    let (status, v) = s
        .api(
            Role::Operator,
            "POST",
            "/api/replays",
            Some(json!({"preview_id": admin_preview["preview_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // The operator's own preview, which showed the refusal, confirms what it may.
    let (status, job) = s
        .api(
            Role::Operator,
            "POST",
            "/api/replays",
            Some(json!({"preview_id": preview["preview_id"], "rate": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = job_done(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(
        (job["total"].as_i64(), job["sent"].as_i64()),
        (Some(1), Some(1)),
        "{job}"
    );
    assert_eq!(
        read_topic(&kafka.bootstrap(), "shop.retry.1", 1)
            .await
            .len(),
        1
    );
    assert!(read_topic(&kafka.bootstrap(), "orders.retry.1", 0)
        .await
        .is_empty());

    // Purge: the preview refuses the other topic; a one-step purge of it is refused whole;
    // an undo of an admin's purge there too.
    let (status, p) = s
        .api(Role::Operator, "POST", "/api/purges", Some(all.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (p["count"].as_i64(), p["refused_count"].as_i64()),
        (Some(1), Some(1)),
        "{p}"
    );
    assert!(
        p["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("^shop\\."),
        "{p}"
    );
    let (status, v) = s
        .api(
            Role::Operator,
            "POST",
            "/api/purges",
            Some(message("orders.dlq")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .api(
            Role::Operator,
            "POST",
            "/api/purges",
            Some(message("shop.dlq")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, admin_purge) = s
        .api(
            Role::Admin,
            "POST",
            "/api/purges",
            Some(message("orders.dlq")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{admin_purge}");
    let undo = format!("/api/purges/{}/undo", admin_purge["id"].as_str().unwrap());
    let (status, v) = s.api(Role::Operator, "POST", &undo, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, m) = s
        .api(Role::Viewer, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    assert_eq!(m["status"], "purged", "the undo did nothing");
    let (status, _) = s.api(Role::Admin, "POST", &undo, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "admins have no limit");

    // The page's preview lists the refusal too.
    let operator = s.sign_in("operator").await;
    let csrf = s.csrf(&operator).await;
    let (status, headers, body) = s
        .form(
            "/replays/preview",
            &operator,
            &[("csrf", &csrf), ("selection", "filter"), ("filter", "")],
            Some(ORIGIN),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = headers[header::LOCATION].to_str().unwrap().to_string();
    let (_, _, html) = s.get_with(&to, &operator).await;
    assert!(
        html.contains("may act only on DLQ topics matching"),
        "{html}"
    );

    // Every refusal is audited with who, and the auth mode in its own column.
    let audit = s.audit().await;
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "auth.refused")
        .collect();
    assert_eq!(refused.len(), 4, "{audit:#?}");
    for e in &refused {
        assert_eq!(e["actor"], "operator-token (token)", "{e}");
        assert_eq!(e["mode"], "token", "{e}");
    }
    let started = audit
        .iter()
        .find(|e| e["action"] == "replay.start")
        .unwrap();
    assert_eq!(started["mode"], "token");
    let finished = audit
        .iter()
        .find(|e| e["action"] == "replay.finish")
        .unwrap();
    assert!(
        finished["mode"].is_null(),
        "the dashboard's own entry: {finished}"
    );
    let (_, _, html) = s.get_with("/audit", &operator).await;
    assert!(
        html.contains("Auth mode")
            && html.contains("<td class=\"nowrap\" data-field=\"mode\">token</td>")
    );

    // An admin's job on the other topic cannot be steered by the operator.
    let (status, job) = s
        .api(
            Role::Admin,
            "POST",
            "/api/replays",
            Some(message("orders.dlq")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let pause = format!("/api/replays/{}/pause", job["id"].as_str().unwrap());
    let (status, v) = s.api(Role::Operator, "POST", &pause, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("orders.dlq"), "{v}");
    s.d.stop().await;
}

const SECRET_PAYLOAD: &str = r#"{"user":"ann","password":"hunter2","payment":{"Card_Number":"4111111111111111","items":[{"iban":"DE89370400440532013000"}]}}"#;

/// A record with secrets in its payload and headers, and a stack trace.
async fn send_secret(kafka: &Kafka, with_error: bool) {
    let mut headers: Vec<(&str, Option<&[u8]>)> = vec![
        ("dlq-origin-topic", Some(b"orders")),
        ("Authorization", Some(b"Bearer s3cret-token")),
        ("trace-id", Some(b"t-1")),
    ];
    if with_error {
        headers.push(("dlq-error-class", Some(b"com.acme.Boom")));
        headers.push((
            "dlq-error-stacktrace",
            Some(b"at com.acme.Secret.line(Secret.java:42)"),
        ));
    }
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"k-1"),
            Some(SECRET_PAYLOAD.as_bytes()),
            &headers,
        )
        .await;
}

fn no_secret(what: &str, text: &str) {
    for secret in [
        "hunter2",
        "4111111111111111",
        "DE89370400440532013000",
        "s3cret-token",
    ] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_metadata_only_and_redacted_fields_are_masked_but_replayed_intact() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    send_secret(&kafka, true).await;
    send_secret(&kafka, false).await;
    let s = Secured::start_configured(&kafka, |a| {
        a.viewer_payloads = dlq_dashboard::redact::ViewerPayloads::Hidden;
        a.redact_json_fields = vec!["password".into(), "CARD_NUMBER".into(), "iban".into()];
        a.redact_headers = vec!["authorization".into()];
    })
    .await;
    s.d.wait_indexed(2).await;
    s.d.wait_searchable().await;

    // A viewer: metadata only, in the API, the pages and the search listing; no raw.
    let (status, m) = s
        .api(Role::Viewer, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(m["value"].is_null() && m["value_base64"].is_null(), "{m}");
    assert!(m["error"]["stacktrace"].is_null(), "{m}");
    assert_eq!(m["error"]["class"], "com.acme.Boom", "metadata stays");
    assert!(
        m["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["value"].is_null() && h["withheld"] == "hidden"),
        "{m}"
    );
    assert!(
        m["withheld"]
            .as_str()
            .unwrap()
            .contains("hidden from viewers"),
        "{m}"
    );
    no_secret("viewer API", &m.to_string());
    let (status, v) = s
        .api(
            Role::Viewer,
            "GET",
            "/api/messages/orders.dlq/0/0/raw",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let viewer = s.sign_in("viewer").await;
    let (_, _, html) = s.get_with("/messages/orders.dlq/0/0", &viewer).await;
    no_secret("viewer page", &html);
    assert!(
        !html.contains("Secret.java") && !html.contains("Download raw"),
        "{html}"
    );
    assert!(html.contains("The payload is hidden from viewers on this dashboard"));
    let (_, _, html) = s.get_with("/messages?q=ann", &viewer).await;
    no_secret("viewer search", &html);
    assert!(
        html.contains("hidden from viewers") && html.contains("orders.dlq"),
        "{html}"
    );

    // An operator: the fields and the header masked; the rest intact; raw is admin-only.
    let (_, m) = s
        .api(Role::Operator, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    no_secret("operator API", &m.to_string());
    let value: Value = serde_json::from_str(m["value"].as_str().unwrap()).unwrap();
    assert_eq!(value["user"], "ann");
    assert_eq!(value["password"], "***");
    assert_eq!(value["payment"]["Card_Number"], "***");
    assert_eq!(value["payment"]["items"][0]["iban"], "***");
    assert!(m["error"]["stacktrace"]
        .as_str()
        .unwrap()
        .contains("Secret.java"));
    let header = |name: &str| {
        m["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(header("Authorization")["value"], "***");
    assert_eq!(header("Authorization")["withheld"], "redacted");
    assert_eq!(header("trace-id")["value"], "t-1");
    assert!(
        m["withheld"].as_str().unwrap().starts_with("Redacted:"),
        "{m}"
    );
    let (status, _) = s
        .api(
            Role::Operator,
            "GET",
            "/api/messages/orders.dlq/0/0/raw",
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "raw is admin-only while redacting"
    );
    let operator = s.sign_in("operator").await;
    let (_, _, html) = s.get_with("/messages/orders.dlq/0/0", &operator).await;
    no_secret("operator page", &html);
    assert!(
        html.contains("&#34;password&#34;: &#34;***&#34;") && html.contains("Redacted:"),
        "{html}"
    );
    assert!(!html.contains("Download raw"));
    // The listing's payload snippet (a record without an error shows its payload's start).
    let (_, _, html) = s.get_with("/messages?q=ann", &operator).await;
    no_secret("operator search", &html);
    assert!(
        html.contains("&#34;password&#34;:&#34;***&#34;"),
        "the snippet, masked: {html}"
    );

    // An admin sees everything and downloads the original bytes.
    let (_, m) = s
        .api(Role::Admin, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    assert_eq!(m["value"], SECRET_PAYLOAD);
    assert!(m["withheld"].is_null());
    let (status, _, raw) = s
        .send(
            Request::get("/api/messages/orders.dlq/0/0/raw")
                .header("authorization", format!("Bearer {}", s.token(Role::Admin)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((status, raw.as_str()), (StatusCode::OK, SECRET_PAYLOAD));

    // The operator's replay sends the original bytes: read back from the broker.
    let (status, job) = s
        .api(Role::Operator, "POST", "/api/replays", Some(json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "rate": 0})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job_done(&s, job["id"].as_str().unwrap()).await;
    let got = read_topic(&kafka.bootstrap(), "orders.retry.1", 1).await;
    assert_eq!(got[0].value.as_deref(), Some(SECRET_PAYLOAD.as_bytes()));
    assert_eq!(
        got[0].header("Authorization").as_deref(),
        Some("Bearer s3cret-token")
    );
    s.d.stop().await;

    // --redact-for-all: admins see the masks too, and keep the raw download.
    let s = Secured::start_configured(&kafka, |a| {
        a.redact_json_fields = vec!["password".into()];
        a.redact_for_all = true;
    })
    .await;
    s.d.wait_indexed(2).await;
    let (_, m) = s
        .api(Role::Admin, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    assert!(!m["value"].as_str().unwrap().contains("hunter2"), "{m}");
    let (status, _) = s
        .api(Role::Admin, "GET", "/api/messages/orders.dlq/0/0/raw", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, m) = s
        .api(Role::Viewer, "GET", "/api/messages/orders.dlq/0/0", None)
        .await;
    assert!(
        m["value"].as_str().unwrap().contains("4111111111111111"),
        "only the listed fields"
    );
    s.d.stop().await;
}

/// Send raw HTTP/1.1 over a socket and return the status code of the answer.
async fn status_of(stream: &mut tokio::net::TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_limits_body_size_time_and_requests_per_client() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let s = Secured::start_configured(&kafka, |a| {
        a.max_request_body = 1024;
        a.max_requests_per_client = 2;
        a.request_timeout = Duration::from_secs(1);
    })
    .await;
    // Too large a body: 413 before anything reads it.
    let big = "x".repeat(2000);
    let (status, _, _) = s
        .send(
            Request::post("/api/replays")
                .header(
                    "authorization",
                    format!("Bearer {}", s.token(Role::Operator)),
                )
                .header("content-type", "application/json")
                .header("content-length", big.len())
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Over a real socket: two action POSTs whose bodies never finish hold this address's
    // two places; they are exempt from the timeout, so they still hold them after it.
    let addr = s.d.d().addr;
    let stalled = format!(
        "POST /api/replays HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"filter\":",
        s.token(Role::Operator)
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(stalled.as_bytes()).await.unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(health.as_bytes()).await.unwrap();
    assert_eq!(
        status_of(&mut third).await,
        429,
        "a third request from the same address"
    );
    // One finishes (its client goes away): the address has a place again.
    drop(held.pop());
    let got = wait_for("a place to come free", DEADLINE, || async {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(health.as_bytes()).await.unwrap();
        let code = status_of(&mut c).await;
        (code == 200).then_some(code)
    })
    .await;
    assert_eq!(got, 200);
    // A request other than an action is answered 408 once it takes longer than the timeout
    // (the sign-in form, whose body never comes).
    drop(held);
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!("POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=").as_bytes(),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(status_of(&mut slow).await, 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_dashboard_serves_https_with_secure_cookies_and_hsts() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let s = Secured::start_configured(&kafka, |a| {
        a.public_url = None;
        a.tls_cert = Some(cert_path.clone());
        a.tls_key = Some(key_path.clone());
    })
    .await;
    let port = s.d.d().addr.port();
    let pem = cert.pem();
    let (health, login) = tokio::task::spawn_blocking(move || {
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = format!("https://localhost:{port}");
        let health = client.get(format!("{base}/healthz")).send().unwrap();
        let login = client
            .post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[
                ("name", "viewer"),
                ("password", PASSWORD),
                ("next", "/messages"),
            ])
            .send()
            .unwrap();
        // Plain HTTP to the HTTPS port gets no answer.
        let plain = reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz"));
        assert!(plain.is_err() || !plain.unwrap().status().is_success());
        (
            (
                health.status(),
                health.headers().clone(),
                health.text().unwrap(),
            ),
            (login.status(), login.headers().clone()),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (health.0, health.2.as_str()),
        (reqwest::StatusCode::OK, "ok\n")
    );
    assert_eq!(health.1["strict-transport-security"], "max-age=31536000");
    assert_eq!(login.0, reqwest::StatusCode::SEE_OTHER);
    let set = login
        .1
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("dlq_session="))
        .expect("a session cookie");
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_form_posts_need_the_users_csrf_token_and_our_origin() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"k"),
            Some(b"{}"),
            &origin("orders"),
        )
        .await;
    let s = Secured::start_configured(&kafka, |a| {
        a.users = None;
        a.public_url = None;
        a.listen = "0.0.0.0:0".parse().unwrap();
        a.trusted_proxies = vec!["10.0.0.0/8".into()];
        a.proxy_group_roles = vec!["dlq-ops=operator".into()];
    })
    .await;
    s.d.wait_indexed(1).await;
    let proxied = |method: &str, path: &str, user: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", FORM_HOST)
            .header("x-forwarded-user", user)
            .header("x-forwarded-groups", "dlq-ops")
    };
    let (status, _, html) = s
        .send_from(
            proxied("GET", "/messages", "pat")
                .body(Body::empty())
                .unwrap(),
            "10.1.2.3:4000",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let form = |user: &str, csrf: Option<&str>, from: &str| {
        let mut fields = vec![("selection", "messages"), ("message", "orders.dlq/0/0")];
        if let Some(t) = csrf {
            fields.push(("csrf", t));
        }
        proxied("POST", "/replays/preview", user)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", from)
            .body(Body::from(serde_urlencoded::to_string(&fields).unwrap()))
            .unwrap()
    };
    let cases = [
        ("no token", form("pat", None, ORIGIN)),
        ("a wrong token", form("pat", Some("0000"), ORIGIN)),
        ("another user's token", form("sam", Some(&token), ORIGIN)),
        (
            "a cross-site origin",
            form("pat", Some(&token), "https://evil.example"),
        ),
    ];
    for (what, request) in cases {
        let (status, _, body) = s.send_from(request, "10.1.2.3:4000").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    let (status, headers, body) = s
        .send_from(form("pat", Some(&token), ORIGIN), "10.1.2.3:4000")
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the user's own token: {body}"
    );
    assert!(headers[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/replays/"));
    assert!(
        cookie_of(&headers).is_none(),
        "no session of ours behind a proxy"
    );
    s.d.stop().await;
}
