//! The payments service, smaller and in Spring Kafka's style: `payments`, one non-blocking
//! retry topic `payments-retry-0`, the DLT `payments-dlt`, and Spring's headers
//! (`kafka_original-*` and `retry_topic-*` on the retry topic, `kafka_dlt-*` on the DLT,
//! numbers as big-endian binary). Like Spring's `@RetryableTopic` it does not retry in
//! place: a retriable failure goes to the retry topic at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::failure::Failure;
use super::orders::uuid_like;
use super::recent::RecentIds;
use super::service::{Delivery, Handled, Handler, Stage};
use super::state::{bump, DemoState};

/// The consumer group.
pub const GROUP: &str = "payment-service";
/// The live topic.
pub const LIVE: &str = "payments";
/// The retry topic (Spring's naming: `-retry-0`).
pub const RETRY: &str = "payments-retry-0";
/// The dead-letter topic.
pub const DLT: &str = "payments-dlt";

/// A payment event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// Unique per event.
    pub payment_id: String,
    /// The account charged.
    pub account: u32,
    /// Amount in EUR.
    pub amount: f64,
}

/// A live payment event: key and payload (1% cut off, as a broken producer would).
pub fn live_event(rng: &mut StdRng) -> (String, Vec<u8>) {
    let event = PaymentEvent {
        payment_id: uuid_like(rng),
        account: rng.random_range(1000..10_000),
        amount: rng.random_range(100..50_000) as f64 / 100.0,
    };
    let mut payload = serde_json::to_vec(&event).unwrap_or_default();
    if rng.random_range(0..100) == 0 {
        payload.truncate(payload.len() / 2);
    }
    (format!("account-{}", event.account), payload)
}

/// Attempt `attempt` of a payment: a frozen account is refused for good, a query timeout
/// (5% of payments, one in five of them twice) may pass later.
pub fn process(payload: &[u8], attempt: u32, replayed: bool) -> Result<PaymentEvent, Failure> {
    let event: PaymentEvent = serde_json::from_slice(payload).map_err(|e| Failure {
        class: "org.springframework.kafka.support.serializer.DeserializationException",
        message: format!("failed to deserialize; nested exception is com.fasterxml.jackson.core.JsonParseException: {e}"),
        frames: &["org.springframework.kafka.support.serializer.ErrorHandlingDeserializer.deserialize(ErrorHandlingDeserializer.java:194)"],
    })?;
    if event.account % 37 == 0 {
        return Err(Failure {
            class: "java.lang.IllegalStateException",
            message: format!("Account {} is frozen", event.account),
            frames: &["com.example.payments.PaymentListener.onPayment(PaymentListener.java:57)"],
        });
    }
    let h = event
        .payment_id
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let failing = if h % 100 < 5 {
        1 + u32::from(h % 5 == 0)
    } else {
        0
    };
    if !replayed && attempt <= failing {
        return Err(Failure {
            class: "org.springframework.dao.QueryTimeoutException",
            message: "PreparedStatementCallback; SQL [insert into payments ...]; Query timed out"
                .into(),
            frames: &["com.example.payments.PaymentRepository.save(PaymentRepository.java:33)"],
        });
    }
    Ok(event)
}

/// The payments service's logic and idempotency memory.
pub struct PaymentService {
    state: Arc<DemoState>,
    processed: RecentIds,
}

impl PaymentService {
    /// A service that remembers nothing yet, and ids for `remember` once seen.
    pub fn new(state: Arc<DemoState>, remember: Duration) -> Self {
        PaymentService {
            state,
            processed: RecentIds::new(remember),
        }
    }
}

impl Handler for PaymentService {
    fn handle(&mut self, d: &Delivery, _stage: Stage, attempt: u32) -> Handled {
        let counters = &self.state.payments;
        let replayed = d.replay_id().is_some();
        match process(d.payload.as_deref().unwrap_or_default(), attempt, replayed) {
            Err(f) => Handled::Failed(f),
            Ok(e) if self.processed.contains(&e.payment_id) => {
                bump(&counters.duplicates_skipped);
                Handled::Duplicate
            }
            Ok(e) => {
                self.processed.insert(&e.payment_id, Instant::now());
                bump(&counters.processed);
                if replayed {
                    bump(&counters.replayed_processed);
                }
                Handled::Processed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn payments_fail_in_three_ways_and_replays_pass_unless_refused_for_good() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut classes = std::collections::BTreeSet::new();
        for _ in 0..5_000 {
            let (_, payload) = live_event(&mut rng);
            if let Err(f) = process(&payload, 1, false) {
                classes.insert(f.class);
                if f.retriable() {
                    assert!(process(&payload, 9, false).is_ok());
                    assert!(process(&payload, 1, true).is_ok());
                }
            }
        }
        assert_eq!(classes.len(), 3, "{classes:?}");
    }
}
