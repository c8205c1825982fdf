//! The web edge: router, JSON API, pages, static assets, metrics, security headers.

mod api;
mod assets;
pub mod auth;
pub mod csrf;
pub mod edge;
mod error;
mod extract;
mod frame;
mod health;
mod http_metrics;
pub mod links;
mod masking;
pub mod metrics;
mod pages;
mod query;
pub mod routes;
mod state;
pub mod view;

pub use state::{App, AppState};

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Json, Router};
use routes::{Access, AccessTable, Routes, VIEWER};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};

/// Content security policy: scripts and styles only from our own static files, nothing inline,
/// so a payload that slips into markup still cannot run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every route with its access rule: pages, API, health, metrics, static files.
pub fn routes(state: &AppState) -> Routes {
    let framed = middleware::from_fn_with_state(state.clone(), error::framed);
    Routes::new()
        .merge(pages::router().map(|r| r.layer(framed.clone())))
        .merge(api::router())
        .get("/healthz", Access::Public, healthz)
        // Public: orchestrators probe it without credentials; it tells only whether the
        // index and Kafka answer.
        .get("/readyz", Access::Public, readyz)
        .get("/metrics", VIEWER, metrics::metrics)
        .merge(assets::router())
}

/// The access rules of every route, as [`router`] enforces them (for tests and docs).
pub fn access_table(state: &AppState) -> AccessTable {
    routes(state).into_parts().table
}

/// The whole application: pages, API, health, metrics, static files.
pub fn router(state: AppState) -> Router {
    let routes::Parts {
        timed,
        actions,
        table,
    } = routes(&state).into_parts();
    // Only when users reach the dashboard over https: over plain http a browser ignores it,
    // and sent by mistake it would lock a host out of http for a year.
    let hsts = state
        .auth
        .https
        .then(|| HeaderValue::from_static("max-age=31536000"));
    let gate = auth::Gate {
        state: state.clone(),
        table: std::sync::Arc::new(table),
    };
    let limits = state.edge.clone();
    Router::new()
        .merge(timed.layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        )))
        // Exempt from the timeout (see `routes::Routes`).
        .merge(actions)
        .route_layer(middleware::from_fn_with_state(gate, auth::authorize))
        .fallback(error::not_found)
        // Outside the routes (so the fallback has an identity too), inside the metrics
        // and the trace span.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        // The limits come before anything reads the body or the index: a body over the
        // limit is 413 before authentication, and a client over its share is 429.
        .layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(edge::PerClient::new(
                limits.per_client,
                state.auth.proxy.clone(),
            )),
            edge::per_client,
        ))
        .layer(middleware::from_fn_with_state(
            state.http.clone(),
            http_metrics::track,
        ))
        // Each request runs in a span (method, URI) at info level, so that an error logged
        // while serving it says which request it was.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO)),
        )
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            move |_: &Response| hsts.clone(),
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(serde::Serialize)]
struct Readiness {
    ready: bool,
    index: bool,
    indexer_connected: bool,
    index_writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Ready when the index answers, can be written, and the indexer reaches Kafka; else 503
/// with the reason in one sentence.
async fn readyz(State(state): State<AppState>) -> Response {
    let index = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let s = state.status.snapshot();
    let h = health::index_health(&state).await;
    let writable = h.writable();
    let ready = index && s.connected && writable;
    let error = if !index {
        Some("The SQLite index does not answer.".to_string())
    } else if let Some(why) = h.file_problem.or(h.index_problem) {
        let mut c = why.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>() + ".")
    } else if !s.connected {
        Some(format!(
            "The indexer is disconnected from Kafka since {}{}",
            view::time(s.since),
            s.last_error
                .map(|e| format!(": {e}"))
                .unwrap_or_else(|| ".".into())
        ))
    } else {
        None
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readiness {
            ready,
            index,
            indexer_connected: s.connected,
            index_writable: writable,
            error,
        }),
    )
        .into_response()
}
