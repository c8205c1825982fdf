//! The demo behind the embedded default and `dlq-dashboard demo`: a reference retry
//! pipeline that fails safely (the seeds), so one run shows the whole story: live traffic,
//! retries with backoff, dead letters, a bug and its fix, a bulk replay through the first
//! retry topic, and every event processed exactly once in the end.
//!
//! It talks to the dashboard only through Kafka (its DLQ topics, which the indexer reads,
//! and the retry topics replays land on) and, for its own page, through [`DemoState`];
//! never through the index.
//!
//! - [`traffic`]: the live producer (`orders`, `payments`);
//! - [`service`]: the consumer loop both services share (commit after processing, in-place
//!   backoff and due times by pause/resume, forwarding to retry and DLQ topics);
//! - [`order_service`] with [`orders`] (its events and pure logic) and [`payments`] (Spring
//!   style), each a [`service::Handler`];
//! - [`failure`] (classification), [`schedule`] (backoff and due times), [`headers`] (the
//!   conventions the services write), [`recent`] (the services' bounded idempotency
//!   memory), [`state`] (counters), [`topics`] (creating the topics,
//!   on a real cluster only those the demo owns), [`backlog`] (failed records of the other
//!   conventions), [`settings`] (the flags).

pub mod backlog;
pub mod failure;
pub mod headers;
pub mod order_service;
pub mod orders;
pub mod payments;
pub mod recent;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod state;
pub mod topics;
pub mod traffic;

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use settings::DemoArgs;
pub use state::DemoState;
pub use topics::{create_topics, DEMO_TOPICS};

use crate::error::Result;
use crate::kafka::KafkaSettings;
use headers::HeaderStyle;
use schedule::Backoff;
use service::{Pipeline, Service};

/// Replay targets the default template would not find: Spring names its retry topic
/// `payments-retry-0`, not `payments.retry.1`.
pub const REPLAY_TARGETS: &[(&str, &str)] = &[(payments::DLT, payments::RETRY)];

/// The state the demo's tasks will share, before they start (the web state holds it).
pub fn new_state() -> Arc<DemoState> {
    Arc::new(DemoState::new(&order_service::RETRIES, &[payments::RETRY]))
}

/// Start the demo's tasks on `kafka`, whose topics exist: the live traffic, order-service,
/// the payments service and the static backlog.
pub fn spawn(
    args: &DemoArgs,
    kafka: &KafkaSettings,
    state: Arc<DemoState>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let orders = Pipeline {
        group: order_service::GROUP,
        live: order_service::LIVE,
        retries: vec![
            (order_service::RETRIES[0], args.demo_delays.first),
            (order_service::RETRIES[1], args.demo_delays.second),
        ],
        dlq: order_service::DLQ,
        backoff: Backoff {
            first: args.demo_backoff,
            ..Backoff::DEFAULT
        },
        style: HeaderStyle::Native,
    };
    let order_service = Service::connect(
        kafka,
        orders,
        order_service::OrderService::new(
            state.clone(),
            args.demo_transient_percent,
            args.demo_idempotency_window,
        ),
        state.clone(),
        |s| &s.orders,
    )?;
    let payments = Pipeline {
        group: payments::GROUP,
        live: payments::LIVE,
        retries: vec![(payments::RETRY, args.demo_delays.first)],
        dlq: payments::DLT,
        backoff: Backoff {
            first: args.demo_backoff,
            attempts: 1,
        },
        style: HeaderStyle::Spring,
    };
    let payment_service = Service::connect(
        kafka,
        payments,
        payments::PaymentService::new(state.clone(), args.demo_idempotency_window),
        state.clone(),
        |s| &s.payments,
    )?;
    tasks.spawn(order_service.run(shutdown.clone()));
    tasks.spawn(payment_service.run(shutdown.clone()));
    let producer: FutureProducer = kafka.producer_config().create()?;
    tasks.spawn(
        traffic::Traffic {
            producer,
            rate: args.demo_rate,
            coupon_percent: args.demo_coupon_percent,
            state,
        }
        .run(shutdown.clone()),
    );
    let backlog: FutureProducer = kafka.producer_config().create()?;
    tasks.spawn(backlog::run(backlog, shutdown.clone()));
    Ok(())
}
