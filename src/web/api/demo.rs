//! `/api/demo`: the demo pipeline's counters, and the switch of its deliberate bug. Every
//! route answers 404 when no demo runs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use crate::demo::state::DemoSnapshot;
use crate::demo::DemoState;
use crate::error::{Error, Result};
use crate::web::extract::json_fields;
use crate::web::routes::{Routes, OPERATOR, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/api/demo", VIEWER, counters)
        .post("/api/demo/fix", OPERATOR, fix)
        .post("/api/demo/break", OPERATOR, unfix)
}

/// The demo's state, or the 404 sentence of a dashboard without one.
pub fn running(state: &AppState) -> Result<&DemoState> {
    state.demo.as_deref().ok_or_else(|| {
        Error::NotFound(
            "No demo runs here: it runs on the embedded cluster (no --brokers) and with `dlq-dashboard demo`.".into(),
        )
    })
}

async fn counters(State(state): State<AppState>) -> Result<Json<DemoSnapshot>> {
    Ok(Json(running(&state)?.snapshot()))
}

/// `POST /api/demo/fix`: deploy the fix of the coupon bug.
async fn fix(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DemoSnapshot>> {
    switch(&state, &headers, &body, true)
}

/// `POST /api/demo/break`: bring the bug back.
async fn unfix(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DemoSnapshot>> {
    switch(&state, &headers, &body, false)
}

fn switch(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    fixed: bool,
) -> Result<Json<DemoSnapshot>> {
    let demo = running(state)?;
    json_fields(headers, body, &[], true)?;
    demo.set_bug_fixed(fixed);
    tracing::info!(
        fixed,
        "demo: coupon bug fix {}",
        if fixed { "deployed" } else { "rolled back" }
    );
    Ok(Json(demo.snapshot()))
}
