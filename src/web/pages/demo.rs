//! `/demo`: the demo pipeline's live counters per stage, the "Deploy the fix" button, and
//! a short script of what to try. Only while a demo runs; 404 otherwise.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};

use super::{html, PageResult};
use crate::demo::{order_service, payments};
use crate::web::api::demo::running;
use crate::web::auth::Caller;
use crate::web::extract::CsrfForm;
use crate::web::frame::Frame;
use crate::web::links::messages_link;
use crate::web::routes::{Routes, OPERATOR, VIEWER};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/demo", VIEWER, demo_page)
        .post("/demo/fix", OPERATOR, fix)
        .post("/demo/break", OPERATOR, unfix)
}

/// The error class of the deliberate bug (the page links its messages).
const BUG_CLASS: &str = "java.lang.NullPointerException";

/// One stage of a pipeline as the page lists it.
struct StageRow {
    name: &'static str,
    field: String,
    count: String,
    note: &'static str,
}

#[derive(Template)]
#[template(path = "pages/demo.html")]
struct DemoPage {
    frame: Frame,
    bug_fixed: bool,
    orders: Vec<StageRow>,
    payments: Vec<StageRow>,
    latency: String,
    bug_link: String,
}

fn row(name: &'static str, field: impl Into<String>, n: u64, note: &'static str) -> StageRow {
    StageRow {
        name,
        field: field.into(),
        count: view::count(n as i64),
        note,
    }
}

async fn demo_page(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let s = running(&state)?.snapshot();
    let retried =
        |m: &std::collections::BTreeMap<String, u64>, t: &str| m.get(t).copied().unwrap_or(0);
    let orders = vec![
        row(
            "produced",
            "produced",
            s.produced,
            "new events on orders (3 partitions, keyed by customer)",
        ),
        row("processed", "processed", s.processed, "each event id once"),
        row(
            "duplicates skipped",
            "duplicates_skipped",
            s.duplicates_skipped,
            "the same event id or dlq-replay-id delivered again",
        ),
        row(
            "to orders.retry.1",
            "retried.orders.retry.1",
            retried(&s.retried, order_service::RETRIES[0]),
            "transient failures after 5 attempts in place",
        ),
        row(
            "to orders.retry.2",
            "retried.orders.retry.2",
            retried(&s.retried, order_service::RETRIES[1]),
            "failed again on orders.retry.1",
        ),
        row(
            "dead-lettered",
            "dead_lettered",
            s.dead_lettered,
            "sent to orders.dlq: not retriable, or out of retries",
        ),
        row(
            "replayed",
            "replayed",
            s.replayed,
            "arrived on orders.retry.1 from a replay",
        ),
        row(
            "processed after replay",
            "replayed_processed",
            s.replayed_processed,
            "replays that went through",
        ),
    ];
    let p = &s.payments;
    let payments = vec![
        row(
            "produced",
            "payments.produced",
            p.produced,
            "payment events on payments",
        ),
        row("processed", "payments.processed", p.processed, ""),
        row(
            "to payments-retry-0",
            format!("payments.retried.{}", payments::RETRY),
            retried(&p.retried, payments::RETRY),
            "Spring non-blocking retry",
        ),
        row(
            "dead-lettered",
            "payments.dead_lettered",
            p.dead_lettered,
            "sent to payments-dlt with kafka_dlt-* headers",
        ),
        row(
            "processed after replay",
            "payments.replayed_processed",
            p.replayed_processed,
            "",
        ),
    ];
    let l = s.live_latency_ms;
    html(DemoPage {
        frame: Frame::build(&state, who.as_ref(), "demo").await,
        bug_fixed: s.bug_fixed,
        orders,
        payments,
        latency: if l.samples == 0 {
            "no live event processed in the last 10 s".into()
        } else {
            format!(
                "p50 {} ms · p99 {} ms over {} live events in the last 10 s",
                l.p50,
                l.p99,
                view::count(l.samples as i64)
            )
        },
        bug_link: messages_link(&[("error_class", BUG_CLASS.to_string())]),
    })
}

/// `POST /demo/fix`: deploy the fix, back to the page.
async fn fix(State(state): State<AppState>, _form: CsrfForm) -> PageResult {
    running(&state)?.set_bug_fixed(true);
    tracing::info!("demo: coupon bug fix deployed");
    Ok(Redirect::to("/demo").into_response())
}

/// `POST /demo/break`: bring the bug back, back to the page.
async fn unfix(State(state): State<AppState>, _form: CsrfForm) -> PageResult {
    running(&state)?.set_bug_fixed(false);
    tracing::info!("demo: coupon bug fix rolled back");
    Ok(Redirect::to("/demo").into_response())
}
