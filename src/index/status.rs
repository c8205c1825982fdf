//! What the indexer is doing now, shared with the pages, /readyz and /metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::clock::now_ms;

/// Live indexer state. Cheap to read; every lock is held for a few field copies only.
#[derive(Debug, Default)]
pub struct IndexerStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    connected: bool,
    since: i64,
    ever_connected: bool,
    last_error: Option<String>,
    assigned: BTreeMap<String, BTreeSet<i32>>,
    high_watermarks: BTreeMap<(String, i32), i64>,
    low_watermarks: BTreeMap<(String, i32), i64>,
    positions: BTreeMap<(String, i32), i64>,
    indexed: u64,
    last_indexed_at: Option<i64>,
    disconnects: u64,
}

/// A copy of the state for rendering.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusSnapshot {
    /// Whether the indexer has a live connection to at least one broker.
    pub connected: bool,
    /// Since when the connection state holds, ms.
    pub since: i64,
    /// Whether it ever connected since start.
    pub ever_connected: bool,
    /// The last error Kafka reported, in words.
    pub last_error: Option<String>,
    /// Records indexed since start.
    pub indexed: u64,
    /// When the last batch was written, ms.
    pub last_indexed_at: Option<i64>,
    /// Partitions per topic assigned to this dashboard now.
    pub assigned_partitions: BTreeMap<String, i64>,
    /// Lag per (topic, partition): high watermark minus indexed position.
    pub lag: Vec<(String, i32, i64)>,
}

impl IndexerStatus {
    /// A fresh status: not connected yet, since now.
    pub fn new() -> Self {
        let status = Self::default();
        status.lock().since = now_ms();
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the connection state; `since` moves only when the state changes.
    pub fn set_connected(&self, connected: bool, error: Option<String>) {
        let mut s = self.lock();
        if s.connected != connected {
            s.connected = connected;
            s.since = now_ms();
            if !connected {
                s.disconnects += 1;
            }
        }
        if connected {
            s.ever_connected = true;
        }
        if error.is_some() || connected {
            s.last_error = error;
        }
    }

    /// How many times the indexer lost every broker since it started: after each, a
    /// partition's log is checked again before records past the stored position are taken.
    pub fn disconnects(&self) -> u64 {
        self.lock().disconnects
    }

    /// Note an error that does not change connectivity.
    pub fn set_error(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    /// Partitions were assigned.
    pub fn assign(&self, partitions: &[(String, i32)]) {
        let mut s = self.lock();
        for (t, p) in partitions {
            s.assigned.entry(t.clone()).or_default().insert(*p);
        }
    }

    /// Partitions were unassigned (an empty list unassigns all).
    pub fn revoke(&self, partitions: &[(String, i32)]) {
        let mut s = self.lock();
        if partitions.is_empty() {
            s.assigned.clear();
        }
        for (t, p) in partitions {
            if let Some(set) = s.assigned.get_mut(t) {
                set.remove(p);
                if set.is_empty() {
                    s.assigned.remove(t);
                }
            }
        }
    }

    /// A batch was made durable.
    pub fn indexed(&self, count: usize, positions: &[(String, i32, i64)]) {
        let mut s = self.lock();
        s.indexed += count as u64;
        s.last_indexed_at = Some(now_ms());
        for (t, p, next) in positions {
            s.positions.insert((t.clone(), *p), *next);
        }
    }

    /// Latest high watermark of a partition, from client statistics.
    pub fn set_high_watermark(&self, topic: &str, partition: i32, high: i64) {
        self.lock()
            .high_watermarks
            .insert((topic.to_string(), partition), high);
    }

    /// Latest log start (low watermark) of a partition, from client statistics (the fetch
    /// answers carry it).
    pub fn set_low_watermark(&self, topic: &str, partition: i32, low: i64) {
        self.lock()
            .low_watermarks
            .insert((topic.to_string(), partition), low);
    }

    /// The latest low watermark of every partition, from client statistics.
    pub fn low_watermarks(&self) -> Vec<(String, i32, i64)> {
        self.lock()
            .low_watermarks
            .iter()
            .map(|((t, p), l)| (t.clone(), *p, *l))
            .collect()
    }

    /// Partitions assigned now, as the indexer assigned them.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.lock()
            .assigned
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    }

    /// The latest high watermark of every partition, from client statistics.
    pub fn high_watermarks(&self) -> Vec<(String, i32, i64)> {
        self.lock()
            .high_watermarks
            .iter()
            .map(|((t, p), h)| (t.clone(), *p, *h))
            .collect()
    }

    /// Seed the positions known from SQLite (for lag before the first batch).
    pub fn seed_positions(&self, positions: &[(String, i32, i64)]) {
        let mut s = self.lock();
        for (t, p, next) in positions {
            s.positions.insert((t.clone(), *p), *next);
        }
    }

    /// Records indexed since start, without the copy [`IndexerStatus::snapshot`] makes (the
    /// ingest bench asks every few ms).
    pub fn indexed_count(&self) -> u64 {
        self.lock().indexed
    }

    /// Whether the indexer is connected now.
    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// A copy for rendering.
    pub fn snapshot(&self) -> StatusSnapshot {
        let s = self.lock().clone();
        let lag = s
            .high_watermarks
            .iter()
            .filter(|(tp, _)| s.assigned.get(&tp.0).is_some_and(|set| set.contains(&tp.1)))
            .map(|((t, p), high)| {
                let pos = s.positions.get(&(t.clone(), *p)).copied().unwrap_or(0);
                (t.clone(), *p, (high - pos).max(0))
            })
            .collect();
        StatusSnapshot {
            connected: s.connected,
            since: s.since,
            ever_connected: s.ever_connected,
            last_error: s.last_error,
            indexed: s.indexed,
            last_indexed_at: s.last_indexed_at,
            assigned_partitions: s
                .assigned
                .iter()
                .map(|(t, set)| (t.clone(), set.len() as i64))
                .collect(),
            lag,
        }
    }
}
