//! The services' idempotency memory (seed 002), bounded in time like a real service's
//! de-duplication table with a TTL: an id is remembered for [`RecentIds::keep`] after it was
//! first seen, then forgotten, so a demo left running for days holds an hour of ids, not all
//! of them. Duplicates from at-least-once delivery arrive within seconds, and a replay
//! carries an id that failed (was never processed), so the window loses nothing the story
//! relies on.
//!
//! Ids are kept as 64-bit hashes: ~40 bytes an entry with its place in the expiry order,
//! where the strings cost three times that. A false "seen before" needs a hash collision
//! among the window's ids (about 1 in 10^8 for 100k ids).

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// How long the services remember an id, unless told otherwise.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(3600);

/// The key an id is remembered by.
pub fn key(id: &str) -> u64 {
    // Fixed keys (DefaultHasher::new), so the same id hashes the same within the process.
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Ids seen in the last `keep`, each with a value (a count, or nothing).
#[derive(Debug)]
pub struct RecentIds<V = ()> {
    keep: Duration,
    values: HashMap<u64, V>,
    /// First sightings in time order, for expiry.
    order: VecDeque<(Instant, u64)>,
}

impl<V: Default> RecentIds<V> {
    /// An empty memory that forgets an id `keep` after its first sighting.
    pub fn new(keep: Duration) -> Self {
        RecentIds {
            keep,
            values: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` was seen in the window.
    pub fn contains(&self, id: &str) -> bool {
        self.values.contains_key(&key(id))
    }

    /// The value of `id`, remembered from `now` on if it was not.
    pub fn entry(&mut self, id: &str, now: Instant) -> &mut V {
        self.forget_before(now);
        let k = key(id);
        match self.values.entry(k) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.order.push_back((now, k));
                v.insert(V::default())
            }
        }
    }

    /// Remember `id` from `now` on.
    pub fn insert(&mut self, id: &str, now: Instant) {
        self.entry(id, now);
    }

    /// The ids in the window with their values, by key.
    pub fn values(&self) -> &HashMap<u64, V> {
        &self.values
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, k)) = self.order.front() {
            if now.saturating_duration_since(at) < self.keep {
                break;
            }
            self.order.pop_front();
            self.values.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_remembered_for_the_window_then_forgotten() {
        let start = Instant::now();
        let mut ids: RecentIds = RecentIds::new(Duration::from_secs(60));
        ids.insert("a", start);
        ids.insert("b", start + Duration::from_secs(30));
        assert!(ids.contains("a") && ids.contains("b") && !ids.contains("c"));
        // Seeing "a" again does not extend its window: it expires from its first sighting.
        ids.insert("a", start + Duration::from_secs(59));
        ids.insert("c", start + Duration::from_secs(60));
        assert!(
            !ids.contains("a"),
            "a expired 60 s after its first sighting"
        );
        assert!(ids.contains("b") && ids.contains("c"));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_under_steady_traffic() {
        let start = Instant::now();
        let mut ids: RecentIds<u32> = RecentIds::new(Duration::from_secs(10));
        // 20 ids a second for ten minutes: the window holds ten seconds of them.
        for n in 0..12_000u64 {
            let at = start + Duration::from_millis(n * 50);
            *ids.entry(&format!("event-{n}"), at) += 1;
        }
        assert_eq!(ids.len(), 200);
        assert!(ids.values().values().all(|&c| c == 1));
    }
}
