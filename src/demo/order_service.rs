//! order-service: the reference consumer of `orders`, with its retry topics
//! `orders.retry.1` and `orders.retry.2` and its DLQ `orders.dlq` (this project's `dlq-*`
//! headers). Processing is idempotent (seed 002): it remembers the event ids it processed
//! and the replay ids whose journey ended (for the idempotency window), so a duplicate
//! delivery is counted and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::orders::{self, Conditions};
use super::recent::RecentIds;
use super::service::{Delivery, Handled, Handler, Stage};
use super::state::{bump, DemoState};
use crate::clock::now_ms;

/// The consumer group.
pub const GROUP: &str = "order-service";
/// The live topic.
pub const LIVE: &str = "orders";
/// The retry topics, in order.
pub const RETRIES: [&str; 2] = ["orders.retry.1", "orders.retry.2"];
/// The DLQ topic.
pub const DLQ: &str = "orders.dlq";

/// order-service's business logic and idempotency memory.
pub struct OrderService {
    state: Arc<DemoState>,
    transient_percent: u8,
    processed: RecentIds,
    /// Replay ids of records whose journey ended (processed or dead-lettered again).
    replays_done: RecentIds,
}

impl OrderService {
    /// A service that remembers nothing yet.
    pub fn new(state: Arc<DemoState>, transient_percent: u8, remember: Duration) -> Self {
        OrderService {
            state,
            transient_percent,
            processed: RecentIds::new(remember),
            replays_done: RecentIds::new(remember),
        }
    }
}

impl Handler for OrderService {
    fn handle(&mut self, d: &Delivery, stage: Stage, attempt: u32) -> Handled {
        let counters = &self.state.orders;
        let replay_id = d.replay_id().map(str::to_string);
        // The dashboard replays to the first retry topic; nothing else puts a replay id there.
        if replay_id.is_some() && stage == Stage::Retry(0) {
            bump(&counters.replayed);
        }
        if replay_id
            .as_ref()
            .is_some_and(|r| self.replays_done.contains(r))
        {
            bump(&counters.duplicates_skipped);
            return Handled::Duplicate;
        }
        let event = match orders::parse(d.payload.as_deref().unwrap_or_default()) {
            Ok(e) => e,
            Err(f) => return Handled::Failed(f),
        };
        if self.processed.contains(&event.event_id) {
            bump(&counters.duplicates_skipped);
            if let Some(r) = replay_id {
                self.replays_done.insert(&r, Instant::now());
            }
            return Handled::Duplicate;
        }
        let conditions = Conditions {
            bug_fixed: self.state.bug_fixed(),
            transient_percent: self.transient_percent,
            replayed: replay_id.is_some(),
        };
        if let Err(f) = orders::process(&event, attempt, conditions) {
            return Handled::Failed(f);
        }
        self.state.record_processing(&event.event_id);
        self.processed.insert(&event.event_id, Instant::now());
        bump(&counters.processed);
        if stage == Stage::Live {
            let now = now_ms();
            self.state.record_latency(now, now - d.timestamp);
        }
        if let Some(r) = replay_id {
            bump(&counters.replayed_processed);
            self.replays_done.insert(&r, Instant::now());
        }
        Handled::Processed
    }

    fn dead_lettered(&mut self, d: &Delivery) {
        if let Some(r) = d.replay_id() {
            self.replays_done.insert(r, Instant::now());
        }
    }
}
