//! The live traffic: order events on `orders` (keyed by customer, so a customer's events
//! keep their order) at `--demo-rate` events a second, and payment events on `payments` at
//! a quarter of it. About 2% of order events are sent twice, as an upstream producer
//! retrying without idempotence would; order-service must notice.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::state::{bump, DemoState};
use super::{order_service, payments};
use crate::clock::now_ms;

/// How often a batch of events goes out.
const TICK: Duration = Duration::from_millis(50);
/// Order events sent twice, per thousand.
const DUPLICATES_PER_1000: u32 = 20;

/// What the producer needs.
pub struct Traffic {
    /// The producer (the demo's own, not the dashboard's replay producer).
    pub producer: FutureProducer,
    /// Order events per second.
    pub rate: u32,
    /// Share of order events with a coupon code, in percent.
    pub coupon_percent: u8,
    /// Where the counters go.
    pub state: Arc<DemoState>,
}

impl Traffic {
    /// Produce until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut rng = StdRng::seed_from_u64(now_ms() as u64 ^ 0x0516);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_tick = f64::from(self.rate) * TICK.as_secs_f64();
        let (mut orders_owed, mut payments_owed) = (0.0, 0.0);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            orders_owed += per_tick;
            payments_owed += per_tick / 4.0;
            let mut sends = Vec::new();
            while orders_owed >= 1.0 {
                orders_owed -= 1.0;
                let (key, payload, _) = super::orders::live_event(&mut rng, self.coupon_percent);
                let twice = rng.random_range(0..1000) < DUPLICATES_PER_1000;
                sends.push((order_service::LIVE, key.clone(), payload.clone(), true));
                if twice {
                    sends.push((order_service::LIVE, key, payload, false));
                }
            }
            while payments_owed >= 1.0 {
                payments_owed -= 1.0;
                let (key, payload) = payments::live_event(&mut rng);
                sends.push((payments::LIVE, key, payload, true));
            }
            let deliveries = sends.iter().map(|(topic, key, payload, new)| {
                let record = FutureRecord::to(topic).key(key).payload(payload);
                let producer = &self.producer;
                async move {
                    let sent = producer.send(record, Duration::from_secs(10)).await;
                    (*topic, *new, sent.is_ok())
                }
            });
            for (topic, new, sent) in futures::future::join_all(deliveries).await {
                if !(sent && new) {
                    continue;
                }
                if topic == order_service::LIVE {
                    bump(&self.state.orders.produced);
                } else {
                    bump(&self.state.payments.produced);
                }
            }
        }
    }
}
