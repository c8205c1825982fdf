//! Authentication on: every route refuses strangers, roles are enforced from the same
//! table the router is built from, CSRF tokens belong to a session, sign-in is throttled,
//! and revoked or expired tokens are refused. The users file is written by the
//! dashboard's own code, as `dlq-dashboard user add` and `token create` write it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use dlq_dashboard::auth::role::Role;
use dlq_dashboard::auth::users::{Token, User, UsersFile};
use dlq_dashboard::auth::{password, token};
use dlq_dashboard::web::routes::Access;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::harness::in_process::{serve_args, Kafka, TestDashboard, FORM_HOST};

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const ORIGIN: &str = "http://dashboard.test";

/// A users file with one user and one token per role: `viewer`, `operator`, `admin`, and
/// tokens `viewer-token`, ...; returns the tokens by role.
pub(crate) fn users_file(path: &Path) -> Vec<(Role, String)> {
    let mut file = UsersFile::default();
    let hash = password::hash(PASSWORD).unwrap();
    let mut tokens = Vec::new();
    for role in Role::ALL {
        file.users.push(User {
            name: role.as_str().into(),
            role,
            password: hash.clone(),
        });
        let secret = token::generate();
        file.tokens.push(Token {
            name: format!("{role}-token"),
            role,
            digest: token::digest(&secret),
            created: dlq_dashboard::clock::now_ms(),
            expires: None,
        });
        tokens.push((role, secret));
    }
    file.save(path).unwrap();
    tokens
}

pub(crate) struct Secured {
    pub(crate) d: TestDashboard,
    pub(crate) users: PathBuf,
    pub(crate) tokens: Vec<(Role, String)>,
}

impl Secured {
    pub(crate) async fn start(kafka: &Kafka) -> Self {
        Self::start_configured(kafka, |_| {}).await
    }

    /// [`Secured::start`] with flags of its own.
    pub(crate) async fn start_configured(
        kafka: &Kafka,
        configure: impl FnOnce(&mut dlq_dashboard::config::ServeArgs),
    ) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let users = dir.path().join("users.json");
        let tokens = users_file(&users);
        let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
        args.users = Some(users.clone());
        args.public_url = Some("https://dashboard.test".into());
        configure(&mut args);
        let d = TestDashboard::start_with(args, dir).await;
        Secured { d, users, tokens }
    }

    pub(crate) fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Send a request through the real router from `client`; status, headers, body.
    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        self.send_from(request, "10.0.0.1:5000").await
    }

    /// GET `path` with a session cookie.
    pub(crate) async fn get_with(
        &self,
        path: &str,
        cookie: &str,
    ) -> (StatusCode, HeaderMap, String) {
        self.send(
            Request::get(path)
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn send_from(
        &self,
        mut request: Request<Body>,
        client: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let addr: SocketAddr = client.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
        let app = dlq_dashboard::web::router(self.d.d().state.clone());
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// Sign in; the session cookie (`name=value`).
    pub(crate) async fn sign_in(&self, name: &str) -> String {
        let (status, headers, body) = self.login(name, PASSWORD, "10.0.0.1:5000").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let set = headers[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("Secure") && set.contains("HttpOnly"),
            "https --public-url: {set}"
        );
        cookie_of(&headers).expect("a session cookie")
    }

    pub(crate) async fn login(
        &self,
        name: &str,
        pw: &str,
        client: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let body =
            serde_urlencoded::to_string([("name", name), ("password", pw), ("next", "/messages")])
                .unwrap();
        let request = Request::post("/login")
            .header("host", FORM_HOST)
            .header("origin", ORIGIN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send_from(request, client).await
    }

    /// The CSRF token the pages give this session.
    pub(crate) async fn csrf(&self, cookie: &str) -> String {
        let (status, _, html) = self.get_with("/messages", cookie).await;
        assert_eq!(status, StatusCode::OK);
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a csrf field")
            .to_string()
    }

    pub(crate) async fn form(
        &self,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::post(path)
            .header("host", FORM_HOST)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        self.send(
            request
                .body(Body::from(serde_urlencoded::to_string(fields).unwrap()))
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn audit_actions(&self) -> Vec<(String, String)> {
        let (status, _, body) = self
            .send(
                Request::get("/api/audit")
                    .header(
                        "authorization",
                        format!("Bearer {}", self.token(Role::Viewer)),
                    )
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["entries"]
            .as_array()
            .or_else(|| v.as_array())
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["actor"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub(crate) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("dlq_session=") && !v.starts_with("dlq_session=;"))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// A concrete address for a declared path: every `{param}` filled in.
fn concrete(path: &str) -> String {
    path.replace("{topic}", "orders.dlq")
        .replace("{partition}", "0")
        .replace("{offset}", "0")
        .replace("{id}", "no-such-id")
        .replace("{action}", "pause")
        .replace("{version}", "0")
        .replace("{file}", "app.css")
}

fn request(method: &Method, path: &str) -> axum::http::request::Builder {
    let b = Request::builder()
        .method(method.clone())
        .uri(concrete(path));
    if method == Method::POST {
        b.header("host", FORM_HOST).header("origin", ORIGIN)
    } else {
        b
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_strangers_and_each_role_gets_exactly_its_routes() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let s = Secured::start(&kafka).await;
    let table = dlq_dashboard::web::access_table(&s.d.d().state);
    let rules = table.rules();
    // The table holds the rules (it is what the router is built from).
    let access = |m: Method, p: &str| {
        rules
            .iter()
            .find(|r| r.method == m && r.path == p)
            .unwrap_or_else(|| panic!("no route {m} {p}"))
            .access
    };
    let viewer = Access::Role(Role::Viewer);
    let operator = Access::Role(Role::Operator);
    let admin = Access::Role(Role::Admin);
    for p in [
        "/api/replays",
        "/api/purges",
        "/replays/preview",
        "/purges/preview",
        "/purges/{id}/undo",
        "/api/purges/{id}/undo",
        "/replays/{id}/{action}",
    ] {
        assert_eq!(access(Method::POST, p), operator, "{p}");
    }
    for p in [
        "/purges/{id}/erase",
        "/api/purges/{id}/erase",
        "/topics/{topic}/reclaim",
        "/api/topics/{topic}/reclaim",
    ] {
        assert_eq!(access(Method::POST, p), admin, "{p}");
    }
    assert_eq!(access(Method::GET, "/users"), admin);
    assert_eq!(access(Method::GET, "/messages"), viewer);
    assert_eq!(access(Method::GET, "/api/messages"), viewer);
    assert_eq!(access(Method::GET, "/healthz"), Access::Public);

    for rule in rules {
        let Access::Role(needed) = rule.access else {
            continue;
        };
        let what = format!("{} {}", rule.method, rule.path);
        // No credentials: 401 from the API, a redirect to the sign-in page from pages.
        let (status, headers, body) = s
            .send(
                request(&rule.method, rule.path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        if rule.is_api() {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert!(headers.contains_key(header::WWW_AUTHENTICATE), "{what}");
        } else {
            assert_eq!(status, StatusCode::SEE_OTHER, "{what}");
            let to = headers[header::LOCATION].to_str().unwrap();
            assert!(to.starts_with("/login"), "{what}: {to}");
        }
        // A garbage token: 401 everywhere.
        let (status, _, _) = s
            .send(
                request(&rule.method, rule.path)
                    .header("authorization", "Bearer dlq_nope")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what} with a wrong token"
        );
        // Each role: 403 below the rule, past the gate at or above it.
        for role in Role::ALL {
            let (status, _, body) = s
                .send(
                    request(&rule.method, rule.path)
                        .header("authorization", format!("Bearer {}", s.token(role)))
                        .header(
                            "content-type",
                            if rule.is_api() {
                                "application/json"
                            } else {
                                "application/x-www-form-urlencoded"
                            },
                        )
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            if role.allows(needed) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what} as {role}: {status} {body}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} as {role}: {body}");
                assert!(
                    body.contains("needs"),
                    "{what}: a sentence naming the role needed: {body}"
                );
            }
        }
    }
    // Refused actions are audited with who asked and how.
    let audit = s.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(a, who)| a == "auth.refused" && who == "viewer-token (token)"),
        "{audit:?}"
    );
    // An unknown address does not tell strangers whether it exists.
    let (status, _, _) = s
        .send(Request::get("/no/such/page").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = s
        .send(Request::get("/api/no/such").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Public routes stay public; every response carries the security headers, HSTS
    // included since --public-url is https.
    let (status, headers, _) = s
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let (status, _, html) = s
        .send(Request::get("/login").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Sign in") && !html.contains("href=\"/messages\""),
        "no navigation for strangers"
    );
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carry_identity_role_and_their_own_csrf_token() {
    let kafka = Kafka::start(&[("orders.dlq", 1), ("orders.retry.1", 1)]);
    kafka
        .send("orders.dlq", Some(0), Some(b"k"), Some(b"{\"a\":1}"), &[])
        .await;
    let s = Secured::start(&kafka).await;
    s.d.wait_indexed(1).await;
    s.d.wait_searchable().await;

    // A viewer sees no action buttons; an operator sees replay and purge, not reclaim.
    let viewer = s.sign_in("viewer").await;
    let (status, _, html) = s.get_with("/messages", &viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("viewer · viewer") && html.contains("Sign out"),
        "who is signed in"
    );
    assert!(
        !html.contains("Replay selected") && !html.contains("data-action=\"purge-selected\""),
        "viewer sees no actions"
    );
    assert!(
        !html.contains("action=\"/replays/preview\""),
        "viewer: no action form around the table"
    );
    let (_, _, html) = s.get_with("/messages/orders.dlq/0/0", &viewer).await;
    assert!(
        !html.contains("Replay…") && !html.contains("Purge…"),
        "viewer: no buttons on the message page"
    );
    let (_, _, html) = s.get_with("/groups", &viewer).await;
    assert!(!html.contains("Replay group"), "viewer: no group actions");

    let operator = s.sign_in("operator").await;
    let (_, _, html) = s.get_with("/messages", &operator).await;
    assert!(html.contains("Replay selected") && html.contains("data-action=\"purge-selected\""));
    assert!(
        !html.contains("href=\"/users\""),
        "operators have no users page"
    );
    let (_, _, html) = s.get_with("/messages/orders.dlq/0/0", &operator).await;
    assert!(
        html.contains("Replay…") && html.contains("Purge…"),
        "operator: the message's actions"
    );
    let (_, _, html) = s.get_with("/groups", &operator).await;
    assert!(html.contains("Replay group"), "operator: group actions");

    // CSRF: the session's own token, from the dashboard's own origin.
    let token = s.csrf(&operator).await;
    let viewer_token = s.csrf(&viewer).await;
    assert_ne!(token, viewer_token, "one token per session");
    assert_ne!(
        token,
        dlq_dashboard::web::csrf::token(),
        "not the process token"
    );
    let fields = |csrf: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("selection".to_string(), "messages".to_string()),
            ("message".to_string(), "orders.dlq/0/0".to_string()),
        ]
    };
    let process_token = dlq_dashboard::web::csrf::token();
    let cases = [
        ("no token", fields(&token)[1..].to_vec(), ORIGIN),
        ("another session's token", fields(&viewer_token), ORIGIN),
        ("the process token", fields(process_token), ORIGIN),
        (
            "a cross-site origin",
            fields(&token),
            "https://evil.example",
        ),
        ("the right token from our origin", fields(&token), ORIGIN),
    ];
    for (i, (why, f, origin)) in cases.iter().enumerate() {
        let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (status, headers, body) = s
            .form("/purges/preview", &operator, &refs, Some(origin))
            .await;
        if i + 1 < cases.len() {
            assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {body}");
        } else {
            assert_eq!(status, StatusCode::SEE_OTHER, "{why}: {body}");
            assert!(headers[header::LOCATION]
                .to_str()
                .unwrap()
                .starts_with("/purges/"));
        }
    }

    // A signed-in JSON POST needs JSON and our Origin.
    let json_post = |origin: Option<&'static str>, ctype: &'static str, body: serde_json::Value| {
        let mut r = Request::post("/api/purges")
            .header("host", FORM_HOST)
            .header("cookie", operator.clone())
            .header("content-type", ctype);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    let dry_run = || json!({"messages": [{"topic": "orders.dlq", "partition": 0, "offset": 0}], "dry_run": true});
    let (status, _, body) = s.send(json_post(None, "application/json", dry_run())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no Origin: {body}");
    let (status, _, body) = s
        .send(json_post(
            Some("https://evil.example"),
            "application/json",
            dry_run(),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "cross-site: {body}");
    let (status, _, body) = s
        .send(json_post(Some(ORIGIN), "text/plain", dry_run()))
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not JSON: {body}"
    );
    let (status, _, body) = s
        .send(json_post(Some(ORIGIN), "application/json", dry_run()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let preview: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, _, body) = s
        .send(json_post(
            Some(ORIGIN),
            "application/json",
            json!({"preview_id": preview["preview_id"]}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "the purge confirmed: {body}");

    // The audit log names the authenticated user and how they signed in.
    let audit = s.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(a, who)| a == "purge.start" && who == "operator (password)"),
        "{audit:?}"
    );
    assert!(
        !audit.iter().any(|(_, who)| who.starts_with("anonymous")),
        "{audit:?}"
    );

    // Signing out clears the cookie; removing a user or changing the password ends
    // their sessions without a restart.
    let (status, headers, _) = s
        .form("/logout", &operator, &[("csrf", &token)], Some(ORIGIN))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("dlq_session=") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let mut file = UsersFile::load(&s.users).unwrap();
    file.users.retain(|u| u.name != "viewer");
    file.save(&s.users).unwrap();
    let (status, headers, _) = s.get_with("/messages", &viewer).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a removed user's session has ended"
    );
    assert!(headers[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/login?next=%2Fmessages"));
    let admin = s.sign_in("admin").await;
    let mut file = UsersFile::load(&s.users).unwrap();
    file.users
        .iter_mut()
        .find(|u| u.name == "admin")
        .unwrap()
        .password = password::hash("another password").unwrap();
    file.save(&s.users).unwrap();
    let (status, _, _) = s.get_with("/users", &admin).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a changed password ends older sessions"
    );
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_wrong_password_in_a_minute_is_refused_unchecked_and_audited() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let s = Secured::start(&kafka).await;
    for i in 1..=10 {
        let (status, headers, body) = s.login("operator", "wrong password", "10.0.0.7:1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
        assert!(cookie_of(&headers).is_none());
        assert!(body.contains("do not match"), "{body}");
    }
    // The right password now: refused all the same, so it was not checked.
    let (status, headers, body) = s.login("operator", PASSWORD, "10.0.0.8:1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "per user: {body}");
    assert!(cookie_of(&headers).is_none());
    assert!(body.contains("refused unchecked"), "{body}");
    // From the same address, another user is held back too; from another, they are not.
    let (status, _, _) = s.login("admin", PASSWORD, "10.0.0.7:2").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "per address");
    let (status, headers, _) = s.login("admin", PASSWORD, "10.0.0.9:1").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie_of(&headers).is_some());
    let refusals: Vec<_> = s
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "auth.login_refused")
        .collect();
    assert_eq!(
        refusals.len(),
        2,
        "one entry per throttled name and address: {refusals:?}"
    );
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_get_401_without_a_restart() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let s = Secured::start(&kafka).await;
    let get = |token: String| {
        Request::get("/api/cluster")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let operator = s.token(Role::Operator).to_string();
    let (status, _, _) = s.send(get(operator.clone())).await;
    assert_eq!(status, StatusCode::OK);
    dlq_dashboard::auth::cli::token(dlq_dashboard::config::TokenCommand::Revoke {
        name: "operator-token".into(),
        file: dlq_dashboard::config::UsersFileArg {
            users: s.users.clone(),
        },
    })
    .unwrap();
    let (status, _, body) = s.send(get(operator)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked: {body}");

    let mut file = UsersFile::load(&s.users).unwrap();
    let secret = token::generate();
    file.tokens.push(Token {
        name: "old".into(),
        role: Role::Admin,
        digest: token::digest(&secret),
        created: 0,
        expires: Some(dlq_dashboard::clock::now_ms() - 1),
    });
    file.save(&s.users).unwrap();
    let (status, _, body) = s.send(get(secret)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
    let (status, _, _) = s.send(get(s.token(Role::Viewer).to_string())).await;
    assert_eq!(status, StatusCode::OK, "the others still work");
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_users_file_serves_only_healthz_and_insecure_mode_shows_a_banner() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    let users = dir.path().join("users.json");
    args.users = Some(users.clone());
    let d = TestDashboard::start_with(args.clone(), dir.clone()).await;
    let (status, _, _) = d.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/", "/login", "/api/messages", "/static/app.css"] {
        let (status, _, body) = d.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("user add"),
            "{path}"
        );
    }
    let app = dlq_dashboard::web::router(d.d().state.clone());
    let response = app
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        !response.headers().contains_key("strict-transport-security"),
        "no HSTS over http"
    );
    // The first user is picked up without a restart.
    users_file(&users);
    let (status, _, _) = d.get("/login").await;
    assert_eq!(status, StatusCode::OK);
    d.stop().await;

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    args.insecure_no_auth = true;
    let d = TestDashboard::start_with(args, dir).await;
    let (status, html) = d.get_html("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("banner insecure") && html.contains("--insecure-no-auth"),
        "the red banner"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_are_believed_only_from_the_trusted_addresses() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("index.db"));
    args.listen = "0.0.0.0:0".parse().unwrap();
    args.trusted_proxies = vec!["10.0.0.0/8".into()];
    args.proxy_group_roles = vec!["dlq-ops=operator".into(), "dlq-admins=admin".into()];
    let s = Secured {
        d: TestDashboard::start_with(args, dir.clone()).await,
        users: dir.path().join("unused.json"),
        tokens: Vec::new(),
    };
    let proxied = |path: &str, groups: &str| {
        Request::get(path)
            .header("x-forwarded-user", "pat")
            .header("x-forwarded-groups", groups)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = s
        .send_from(proxied("/messages", "staff, dlq-ops"), "10.1.2.3:4000")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "from the proxy, a signed-in operator: {body}"
    );
    assert!(
        body.contains("<form id=\"bulk\""),
        "the operator's action form"
    );
    let (status, _, _) = s
        .send_from(proxied("/users", "dlq-ops"), "10.1.2.3:4000")
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an operator has no users page"
    );
    let (status, headers, _) = s
        .send_from(proxied("/messages", "dlq-admins"), "192.168.0.9:4000")
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "headers from another address are ignored"
    );
    assert!(headers[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    let (status, _, _) = s
        .send_from(proxied("/api/messages", "dlq-admins"), "192.168.0.9:4000")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = s
        .send_from(proxied("/messages", "staff"), "10.1.2.3:4000")
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "no mapped group: not signed in"
    );
    // A proxied browser's JSON POST needs our Origin, as a signed-in one does.
    let post = |origin: Option<&str>| {
        let mut r = Request::post("/api/purges")
            .header("host", FORM_HOST)
            .header("content-type", "application/json")
            .header("x-forwarded-user", "pat")
            .header("x-forwarded-groups", "dlq-ops");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.body(Body::from(
            json!({"everything": true, "dry_run": true}).to_string(),
        ))
        .unwrap()
    };
    let (status, _, _) = s
        .send_from(post(Some("https://evil.example")), "10.1.2.3:4000")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "cross-site");
    let (status, _, body) = s.send_from(post(Some(ORIGIN)), "10.1.2.3:4000").await;
    assert!(
        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
        "{status} {body}"
    );
    s.d.stop().await;
}
