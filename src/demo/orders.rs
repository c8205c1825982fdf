//! Order events and what order-service does with one: pure, so the failure mix and the
//! classification are unit-tested without a broker.
//!
//! The checks run in the order a real handler would meet them: the payload parses, the
//! event is not a poison one, it validates, the coupon code path (the deliberate bug until
//! the fix is deployed), then the database write (a simulated timeout on some attempts).

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::failure::Failure;

/// An order event as the live traffic producer writes it on `orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Unique per event; what order-service deduplicates on.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The customer, also the record key (so a customer's events keep their order).
    pub customer_id: u32,
    /// Total in EUR.
    pub amount: f64,
    /// A coupon code, which the deliberate bug cannot handle.
    pub coupon: Option<String>,
    /// Line items.
    pub items: Vec<LineItem>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Quantity; 0 makes the event a poison one (the pricing engine divides by it).
    pub qty: u32,
}

/// The largest amount the validation accepts.
const MAX_AMOUNT: f64 = 10_000.0;

/// The shares of the live traffic that fail by design, per ten thousand events.
const MALFORMED_PER_10K: u32 = 50;
const POISON_PER_10K: u32 = 50;
const INVALID_PER_10K: u32 = 100;

/// A live event: the record key and payload. Most are valid JSON order events; a few are
/// malformed, poison or invalid, and `coupon_percent` of them carry a coupon.
pub fn live_event(rng: &mut StdRng, coupon_percent: u8) -> (String, Vec<u8>, Option<String>) {
    let customer_id = rng.random_range(1000..10_000);
    let event_id = uuid_like(rng);
    let key = format!("customer-{customer_id}");
    let draw = rng.random_range(0..10_000);
    if draw < MALFORMED_PER_10K {
        // A producer bug upstream: the JSON is cut off.
        let payload = format!(
            r#"{{"event_id":"{event_id}","order_id":"ord-{}","amount":"#,
            rng.random_range(10_000..99_999)
        );
        return (key, payload.into_bytes(), None);
    }
    let mut event = OrderEvent {
        event_id: event_id.clone(),
        order_id: format!("ord-{}", rng.random_range(10_000..99_999)),
        customer_id,
        amount: rng.random_range(100..200_000) as f64 / 100.0,
        coupon: (rng.random_range(0..100) < u32::from(coupon_percent))
            .then(|| ["SPRING10", "WELCOME5", "FREESHIP"][rng.random_range(0..3)].to_string()),
        items: vec![LineItem {
            sku: format!("SKU-{}", rng.random_range(100..999)),
            qty: rng.random_range(1..5),
        }],
    };
    if draw < MALFORMED_PER_10K + POISON_PER_10K {
        event.items[0].qty = 0;
        event.coupon = None;
    } else if draw < MALFORMED_PER_10K + POISON_PER_10K + INVALID_PER_10K {
        event.amount = MAX_AMOUNT + rng.random_range(1..90_000) as f64;
        event.coupon = None;
    }
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    (key, payload, Some(event_id))
}

/// A random id in the shape of a UUID.
pub fn uuid_like(rng: &mut StdRng) -> String {
    let n: u128 = rng.random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The conditions an attempt runs under.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    /// Whether the fix of the coupon bug is deployed.
    pub bug_fixed: bool,
    /// The share of events whose database write times out at first, in percent.
    pub transient_percent: u8,
    /// Whether the event came back from a replay: by then the simulated database glitch is
    /// long over, so its write succeeds.
    pub replayed: bool,
}

/// The event a payload holds, or why it is not one.
pub fn parse(payload: &[u8]) -> Result<OrderEvent, Failure> {
    serde_json::from_slice(payload).map_err(|e| Failure {
        class: "JsonParseError",
        message: format!("order event is not valid JSON: {e}"),
        frames: &["OrderConsumer.decode(order-service/src/consumer.rs:41)"],
    })
}

/// Attempt `attempt` (1-based, counted across the live topic and the retry topics) of
/// processing `event`.
pub fn process(event: &OrderEvent, attempt: u32, conditions: Conditions) -> Result<(), Failure> {
    if event.items.iter().any(|i| i.qty == 0) {
        return Err(Failure {
            class: "PoisonEventError",
            message: format!(
                "order {} has a line item with quantity 0; the pricing engine cannot price it",
                event.order_id
            ),
            frames: &[
                "Pricing.unitPrice(order-service/src/pricing.rs:88)",
                "OrderConsumer.handle(order-service/src/consumer.rs:63)",
            ],
        });
    }
    if event.amount > MAX_AMOUNT {
        return Err(Failure {
            class: "ValidationError",
            message: format!(
                "field 'amount' must be at most 10000.00, got {:.2}",
                event.amount
            ),
            frames: &["Validator.check(order-service/src/validate.rs:17)"],
        });
    }
    if event.coupon.is_some() && !conditions.bug_fixed {
        return Err(Failure {
            class: "java.lang.NullPointerException",
            message: "Cannot invoke \"Discount.apply(Order)\" because the return value of \"CouponRepository.find(String)\" is null".into(),
            frames: &[
                "com.example.orders.CouponService.discountFor(CouponService.java:42)",
                "com.example.orders.OrderHandler.price(OrderHandler.java:118)",
                "com.example.orders.OrderHandler.handle(OrderHandler.java:57)",
            ],
        });
    }
    if !conditions.replayed
        && attempt <= transient_failures(&event.event_id, conditions.transient_percent)
    {
        return Err(Failure {
            class: "TimeoutError",
            message: "Database Connection Timeout!".into(),
            frames: &[
                "Db.insertOrder(order-service/src/db.rs:120)",
                "OrderConsumer.handle(order-service/src/consumer.rs:71)",
            ],
        });
    }
    Ok(())
}

/// How many attempts of this event's database write time out: 0 for most events; for
/// `percent` of them mostly 1 or 2 (recovered in place), sometimes enough to move through
/// the retry topics, rarely all of them (the event ends in the DLQ as a timeout). Drawn from
/// the event id, so each attempt of one event sees the same glitch.
pub fn transient_failures(event_id: &str, percent: u8) -> u32 {
    let h = fnv1a(event_id.as_bytes());
    if (h % 100) as u8 >= percent {
        return 0;
    }
    match (h >> 16) % 1000 {
        0..=799 => 1,
        800..=919 => 2,
        920..=949 => 3,
        950..=969 => 4,
        // Past the five attempts in place: succeeds on orders.retry.1.
        970..=984 => 5,
        // Succeeds on orders.retry.2.
        985..=994 => 6,
        // Fails everywhere: dead-lettered as a timeout.
        _ => 8,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const BROKEN: Conditions = Conditions {
        bug_fixed: false,
        transient_percent: 10,
        replayed: false,
    };

    #[test]
    fn the_mix_has_every_kind_of_failure_and_the_bug_only_until_the_fix() {
        let mut rng = StdRng::seed_from_u64(16);
        let mut classes = std::collections::BTreeMap::<&str, u32>::new();
        let mut fixed = std::collections::BTreeMap::<&str, u32>::new();
        for _ in 0..20_000 {
            let (key, payload, id) = live_event(&mut rng, 15);
            assert!(key.starts_with("customer-"));
            let outcome = parse(&payload).and_then(|e| {
                assert_eq!(Some(&e.event_id), id.as_ref());
                process(&e, 1, BROKEN)
            });
            *classes
                .entry(outcome.as_ref().err().map_or("ok", |f| f.class))
                .or_default() += 1;
            let after_fix = parse(&payload).and_then(|e| {
                process(
                    &e,
                    99,
                    Conditions {
                        bug_fixed: true,
                        ..BROKEN
                    },
                )
            });
            *fixed
                .entry(after_fix.err().map_or("ok", |f| f.class))
                .or_default() += 1;
        }
        for class in [
            "JsonParseError",
            "PoisonEventError",
            "ValidationError",
            "java.lang.NullPointerException",
            "TimeoutError",
        ] {
            assert!(
                classes.contains_key(class),
                "{class} never happened: {classes:?}"
            );
        }
        let npe = classes["java.lang.NullPointerException"];
        assert!(
            (2_200..3_600).contains(&npe),
            "about 15% hit the bug: {npe}"
        );
        assert!(!fixed.contains_key("java.lang.NullPointerException"));
        assert!(
            !fixed.contains_key("TimeoutError"),
            "no event times out 99 times"
        );
        assert!(
            fixed.contains_key("PoisonEventError"),
            "the fix does not cure poison"
        );
    }

    #[test]
    fn transient_failures_are_rare_per_attempt_and_end_on_replay() {
        let ids: Vec<String> = (0..50_000).map(|i| format!("event-{i}")).collect();
        let failing: Vec<u32> = ids.iter().map(|id| transient_failures(id, 10)).collect();
        let first = failing.iter().filter(|&&k| k >= 1).count();
        assert!(
            (4_000..6_000).contains(&first),
            "~10% fail at first: {first}"
        );
        assert!(failing.contains(&5), "some reach orders.retry.1");
        assert!(failing.contains(&6), "some reach orders.retry.2");
        assert!(failing.iter().any(|&k| k > 7), "some are dead-lettered");
        assert!(ids.iter().all(|id| transient_failures(id, 0) == 0));
        let event = OrderEvent {
            event_id: ids[failing.iter().position(|&k| k > 7).unwrap()].clone(),
            order_id: "ord-1".into(),
            customer_id: 1,
            amount: 1.0,
            coupon: None,
            items: vec![],
        };
        assert_eq!(
            process(&event, 7, BROKEN).unwrap_err().class,
            "TimeoutError"
        );
        assert!(process(
            &event,
            7,
            Conditions {
                replayed: true,
                ..BROKEN
            }
        )
        .is_ok());
    }
}
