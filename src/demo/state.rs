//! What the demo counts, shared by its tasks and read by `/demo` and `GET /api/demo`: the
//! order pipeline's counters per stage, the payments service's, whether the fix is
//! deployed, a ledger of the last hour's processings (so tests can check that each event
//! was processed once), and the live traffic's recent processing latencies.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::recent::RecentIds;

/// Counters of one service's pipeline.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Events produced on its live topic (each a new event id; deliberate duplicates apart).
    pub produced: AtomicU64,
    /// Events processed (the business effect happened).
    pub processed: AtomicU64,
    /// Deliveries recognised as duplicates (by event id or `dlq-replay-id`) and skipped.
    pub duplicates_skipped: AtomicU64,
    /// Records sent to each retry topic.
    pub retried: Mutex<BTreeMap<String, u64>>,
    /// Records sent to the DLQ topic.
    pub dead_lettered: AtomicU64,
    /// Records that arrived from a replay (carrying `dlq-replay-id`).
    pub replayed: AtomicU64,
    /// Of those, processed.
    pub replayed_processed: AtomicU64,
}

impl ServiceCounters {
    /// Counters with every retry topic at 0 (so the API lists them before the first retry).
    pub fn new(retry_topics: &[&str]) -> Self {
        let counters = ServiceCounters::default();
        *lock(&counters.retried) = retry_topics.iter().map(|t| (t.to_string(), 0)).collect();
        counters
    }

    /// One more record sent to `topic`.
    pub fn retried_to(&self, topic: &str) {
        *lock(&self.retried).entry(topic.to_string()).or_default() += 1;
    }
}

/// Latencies of live events kept for the summary.
const LATENCIES_KEPT: usize = 4096;

/// The demo's shared state.
#[derive(Debug)]
pub struct DemoState {
    bug_fixed: AtomicBool,
    /// order-service's pipeline.
    pub orders: ServiceCounters,
    /// The payments service's pipeline.
    pub payments: ServiceCounters,
    /// Processings per event id, over the last hour (the ledger would otherwise grow with
    /// every event of a demo left running).
    ledger: Mutex<RecentIds<u32>>,
    latencies: Mutex<VecDeque<(i64, i64)>>,
}

impl DemoState {
    /// A fresh state with the bug present.
    pub fn new(order_retries: &[&str], payment_retries: &[&str]) -> Self {
        DemoState {
            bug_fixed: AtomicBool::new(false),
            orders: ServiceCounters::new(order_retries),
            payments: ServiceCounters::new(payment_retries),
            ledger: Mutex::new(RecentIds::new(super::recent::DEFAULT_KEEP)),
            latencies: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether "Deploy the fix" was pressed (and not undone by `break`).
    pub fn bug_fixed(&self) -> bool {
        self.bug_fixed.load(Ordering::SeqCst)
    }

    /// Deploy the fix (true) or bring the bug back (false).
    pub fn set_bug_fixed(&self, fixed: bool) {
        self.bug_fixed.store(fixed, Ordering::SeqCst);
    }

    /// order-service processed `event_id` (its business effect happened once more).
    pub fn record_processing(&self, event_id: &str) {
        *lock(&self.ledger).entry(event_id, Instant::now()) += 1;
    }

    /// How many times each event id first processed in the last hour was processed by
    /// order-service, by [`super::recent::key`].
    pub fn processings(&self) -> HashMap<u64, u32> {
        lock(&self.ledger).values().clone()
    }

    /// A live event processed at `at_ms`, `latency_ms` after it was produced.
    pub fn record_latency(&self, at_ms: i64, latency_ms: i64) {
        let mut l = lock(&self.latencies);
        if l.len() == LATENCIES_KEPT {
            l.pop_front();
        }
        l.push_back((at_ms, latency_ms.max(0)));
    }

    /// The live traffic's processing latency over the events processed since `since_ms`.
    pub fn latency_since(&self, since_ms: i64) -> Latency {
        let mut v: Vec<i64> = lock(&self.latencies)
            .iter()
            .filter(|(at, _)| *at >= since_ms)
            .map(|(_, l)| *l)
            .collect();
        v.sort_unstable();
        Latency::of(&v)
    }

    /// The figures `GET /api/demo` answers with.
    pub fn snapshot(&self) -> DemoSnapshot {
        let c = &self.orders;
        let p = &self.payments;
        let now = crate::clock::now_ms();
        DemoSnapshot {
            bug_fixed: self.bug_fixed(),
            produced: get(&c.produced),
            processed: get(&c.processed),
            duplicates_skipped: get(&c.duplicates_skipped),
            retried: lock(&c.retried).clone(),
            dead_lettered: get(&c.dead_lettered),
            replayed: get(&c.replayed),
            replayed_processed: get(&c.replayed_processed),
            live_latency_ms: self.latency_since(now - 10_000),
            payments: PaymentsSnapshot {
                produced: get(&p.produced),
                processed: get(&p.processed),
                retried: lock(&p.retried).clone(),
                dead_lettered: get(&p.dead_lettered),
                replayed_processed: get(&p.replayed_processed),
            },
        }
    }
}

/// Percentiles of the live traffic's processing latency (ms from produce to processed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Events measured.
    pub samples: usize,
    /// Median, ms.
    pub p50: i64,
    /// 99th percentile, ms.
    pub p99: i64,
    /// Slowest, ms.
    pub max: i64,
}

impl Latency {
    /// The percentiles of sorted latencies (all 0 without samples).
    pub fn of(sorted: &[i64]) -> Latency {
        let at = |q: f64| {
            if sorted.is_empty() {
                0
            } else {
                sorted[((sorted.len() - 1) as f64 * q).round() as usize]
            }
        };
        Latency {
            samples: sorted.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// The demo's counters as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSnapshot {
    /// Whether the fix of the coupon bug is deployed.
    pub bug_fixed: bool,
    /// Order events produced on `orders`.
    pub produced: u64,
    /// Order events processed by order-service.
    pub processed: u64,
    /// Duplicate deliveries skipped.
    pub duplicates_skipped: u64,
    /// Records sent to each retry topic.
    pub retried: BTreeMap<String, u64>,
    /// Records sent to `orders.dlq`.
    pub dead_lettered: u64,
    /// Records that arrived on `orders.retry.1` from a replay.
    pub replayed: u64,
    /// Replayed records processed.
    pub replayed_processed: u64,
    /// Processing latency of live events over the last 10 s.
    pub live_latency_ms: Latency,
    /// The payments service.
    pub payments: PaymentsSnapshot,
}

/// The payments service's counters.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentsSnapshot {
    /// Payment events produced on `payments`.
    pub produced: u64,
    /// Processed.
    pub processed: u64,
    /// Sent to `payments-retry-0`.
    pub retried: BTreeMap<String, u64>,
    /// Sent to `payments-dlt`.
    pub dead_lettered: u64,
    /// Replayed records processed.
    pub replayed_processed: u64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Add one.
pub fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_cover_the_window_only() {
        let s = DemoState::new(&["orders.retry.1"], &[]);
        for i in 0..100 {
            s.record_latency(1_000 + i, i);
        }
        s.record_latency(10, 99_999);
        let l = s.latency_since(1_000);
        assert_eq!(l.samples, 100);
        assert_eq!((l.p50, l.p99, l.max), (50, 98, 99));
        assert_eq!(Latency::of(&[]).p99, 0);
        assert_eq!(s.snapshot().retried["orders.retry.1"], 0);
    }
}
