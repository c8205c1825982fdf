//! The bounded index (`--retain`): a background task that, every few minutes and at start,
//! removes resolved records past their age, payloads past theirs and, with `max-records`,
//! the oldest records beyond the cap, in chunks that each hold the writer a few ms (the SQL
//! and the rules are in `store::retention`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Result;
use crate::store::purges::{ChunkSizer, CHUNK_HOLD};
use crate::store::retention::{self as sql, Sweep, START};

/// How long the cleanup waits between two passes.
pub const PASS_INTERVAL: Duration = Duration::from_secs(60);

/// `--retain`: what the index keeps. Each part is optional; none keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retain {
    /// Resolved records are removed this long after they became resolved.
    pub resolved: Option<Duration>,
    /// Payloads, headers and stack traces are removed this long after the record was indexed.
    pub payloads: Option<Duration>,
    /// At most this many records are kept: the oldest resolved go first, then, only if the
    /// index is still above it, the oldest of any status (said on the overview).
    pub max_records: Option<i64>,
}

impl Retain {
    /// Whether anything is ever removed.
    pub fn is_set(&self) -> bool {
        self.resolved.is_some() || self.payloads.is_some() || self.max_records.is_some()
    }
}

impl std::str::FromStr for Retain {
    type Err = String;

    /// `resolved=30d,payloads=14d,max-records=5000000`, each part optional, in any order;
    /// durations in d, h or m (or s); an empty text keeps everything.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut retain = Retain::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                format!("'{part}' is not NAME=VALUE; write e.g. resolved=30d,payloads=14d,max-records=5000000")
            })?;
            let duration = |v: &str| crate::auth::duration::parse(v).map(Some);
            match name.trim() {
                "resolved" => retain.resolved = duration(value)?,
                "payloads" => retain.payloads = duration(value)?,
                "max-records" => {
                    let n: i64 = value.trim().replace('_', "").parse().map_err(|_| {
                        format!("max-records={value} is not a whole number of records")
                    })?;
                    if n < 1 {
                        return Err(format!("max-records={value}: keep at least one record"));
                    }
                    retain.max_records = Some(n);
                }
                other => {
                    return Err(format!(
                        "'{other}' is not a part of --retain; use resolved, payloads or max-records"
                    ))
                }
            }
        }
        Ok(retain)
    }
}

/// The cleanup: its settings, its clock, and how many passes it has finished.
#[derive(Debug)]
pub struct Retention {
    pool: SqlitePool,
    /// What the index keeps.
    pub retain: Retain,
    /// The time ages are counted to (the wall clock, or a test's).
    pub clock: Clock,
    wake: Notify,
    passes: AtomicU64,
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Resolved records past their age.
    pub resolved: i64,
    /// Payloads past their age.
    pub payloads: i64,
    /// Records removed for max-records.
    pub capped: i64,
    /// Of those, records that were not resolved.
    pub capped_unresolved: i64,
}

impl Retention {
    /// The cleanup of the index `pool`.
    pub fn new(pool: SqlitePool, retain: Retain) -> Self {
        Retention {
            pool,
            retain,
            clock: Clock::default(),
            wake: Notify::new(),
            passes: AtomicU64::new(0),
        }
    }

    /// Start a pass now instead of at the next interval.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Passes finished since the process started.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Acquire)
    }

    /// Run passes until `shutdown`: one at start, then every [`PASS_INTERVAL`] or when woken.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.retain.is_set() {
            return;
        }
        loop {
            match self.pass(&shutdown).await {
                Ok(p) if p != Pass::default() => tracing::info!(
                    resolved = p.resolved,
                    payloads = p.payloads,
                    capped = p.capped,
                    capped_unresolved = p.capped_unresolved,
                    "retention removed records and payloads"
                ),
                Ok(_) => {}
                // A write fault (full disk, a damaged file) is reported by the writers that
                // the pages watch; the next pass tries again.
                Err(e) => {
                    tracing::warn!(error = %e, "a retention pass stopped; the next one goes on")
                }
            }
            self.passes.fetch_add(1, Ordering::AcqRel);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(PASS_INTERVAL) => {}
            }
        }
    }

    /// One pass to its end, now (tests, and a caller that wants the figures).
    pub async fn pass_now(&self) -> Result<Pass> {
        self.pass(&CancellationToken::new()).await
    }

    /// One pass of every sweep the settings ask for, each to its end (or to `shutdown`).
    pub async fn pass(&self, shutdown: &CancellationToken) -> Result<Pass> {
        let mut search = crate::store::search::connect(&self.pool).await?;
        let mut out = Pass::default();
        let now = self.clock.now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if let Some(age) = self.retain.payloads {
            let cutoff = now.saturating_sub(ms(age));
            let mut sizer = ChunkSizer::items();
            while !shutdown.is_cancelled() {
                let c =
                    sql::payload_chunk(&self.pool, &mut search, cutoff, sizer.size(), now).await?;
                out.payloads += c.removed;
                sizer.held(c.scanned, c.held);
                if c.next.is_none() {
                    break;
                }
                pause().await;
            }
        }
        let mut sweeps = Vec::new();
        if let Some(age) = self.retain.resolved {
            sweeps.push(Sweep::Resolved {
                cutoff: now.saturating_sub(ms(age)),
            });
        }
        if let Some(cap) = self.retain.max_records {
            sweeps.extend([Sweep::CapResolved { cap }, Sweep::CapAny { cap }]);
        }
        for sweep in sweeps {
            let mut sizer = ChunkSizer::items();
            let mut at = START;
            while !shutdown.is_cancelled() {
                let c = sql::remove_chunk(
                    &self.pool,
                    &mut search,
                    sweep,
                    at,
                    sizer.size(),
                    self.clock.now_ms(),
                )
                .await?;
                match sweep {
                    Sweep::Resolved { .. } => out.resolved += c.removed,
                    _ => out.capped += c.removed,
                }
                out.capped_unresolved += c.unresolved;
                sizer.held(c.scanned, c.held);
                match c.next {
                    Some(next) => at = next,
                    None => break,
                }
                pause().await;
            }
        }
        Ok(out)
    }
}

/// Between two chunks: as long as a chunk holds the writer, so that the cleanup takes at
/// most about half of the writer's time and the indexer, replays and purges go first.
async fn pause() {
    tokio::time::sleep(CHUNK_HOLD).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_parses_each_part_optional() {
        let r: Retain = "resolved=30d,payloads=14d,max-records=5000000"
            .parse()
            .unwrap();
        assert_eq!(r.resolved, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(r.payloads, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(r.max_records, Some(5_000_000));
        let r: Retain = "payloads=12h".parse().unwrap();
        assert_eq!(
            r,
            Retain {
                payloads: Some(Duration::from_secs(12 * 3600)),
                ..Retain::default()
            }
        );
        assert!(!"".parse::<Retain>().unwrap().is_set());
        for bad in [
            "resolved",
            "resolved=30",
            "kept=3d",
            "max-records=0",
            "max-records=many",
        ] {
            assert!(bad.parse::<Retain>().is_err(), "{bad}");
        }
    }
}
