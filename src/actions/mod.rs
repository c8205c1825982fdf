//! The operations core: what an operator can do to the index, shared by the pages, the JSON
//! API, the benchmark and (later) purge and the command line. An action goes selection →
//! preview → confirm → job, and leaves an audit entry; each step is here once.
//!
//! The core needs two things from outside, each behind a small trait so that it can be
//! tested with a real SQLite file and no broker: the cluster's topic names (to check replay
//! targets) and the job runner (to start and steer confirmed jobs).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::SqlitePool;

use crate::error::Result;
use crate::kafka::{Compression, TopicCache};
use crate::replay::target::TargetRules;
use crate::store::jobs::Job;
use crate::topics::TopicSelection;

pub mod purge;
pub mod replay;
pub mod selection;

pub use replay::JobControl;

/// Refusals listed in a preview; the count covers all of them.
pub const REFUSALS_LISTED: i64 = 1000;
/// How long an unconfirmed preview is kept, ms.
pub const PREVIEW_TTL_MS: i64 = 3_600_000;

/// A refused message in a preview, with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refusal {
    /// DLQ topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Generation of the partition's log (see the message API).
    pub generation: i64,
    /// Why, in a sentence with the fix.
    pub reason: String,
}

/// A new action id: a letter for its kind (`r` replay, `p` purge), then ten random
/// URL-safe characters.
pub(crate) fn new_action_id(kind: char) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let id: String = (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{kind}{id}")
}

/// The cluster's topic names, as far as the core needs to know them.
pub trait ClusterTopics: Send + Sync {
    /// Every topic name, or None while no broker answers.
    fn topic_names(&self) -> BoxFuture<'_, Option<Arc<BTreeSet<String>>>>;
}

impl ClusterTopics for TopicCache {
    fn topic_names(&self) -> BoxFuture<'_, Option<Arc<BTreeSet<String>>>> {
        Box::pin(self.topics())
    }
}

/// A fixed set of names: a cluster whose topics are known in advance (tests, benchmarks).
impl ClusterTopics for BTreeSet<String> {
    fn topic_names(&self) -> BoxFuture<'_, Option<Arc<BTreeSet<String>>>> {
        let names = Arc::new(self.clone());
        Box::pin(async move { Some(names) })
    }
}

/// What runs confirmed jobs (`replay::runner::Replayer`).
pub trait JobRunner: Send + Sync {
    /// Look for confirmed jobs to start, now rather than at the next poll.
    fn wake(&self);
    /// Pause, resume or cancel a job, audited as `actor`; the job as it stands after.
    fn control<'a>(
        &'a self,
        id: &'a str,
        action: JobControl,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<Job>>;
}

/// The operations core of one dashboard.
pub struct Actions {
    pool: SqlitePool,
    topics: TopicSelection,
    replay_rules: TargetRules,
    replay_compression: Compression,
    cluster: Arc<dyn ClusterTopics>,
    runner: Arc<dyn JobRunner>,
}

impl Actions {
    /// The core over an index, the DLQ topic selection, the replay rules and codec, and the
    /// two outside parts.
    pub fn new(
        pool: SqlitePool,
        topics: TopicSelection,
        replay_rules: TargetRules,
        replay_compression: Compression,
        cluster: Arc<dyn ClusterTopics>,
        runner: Arc<dyn JobRunner>,
    ) -> Self {
        Actions {
            pool,
            topics,
            replay_rules,
            replay_compression,
            cluster,
            runner,
        }
    }

    /// Which topics are DLQ topics.
    pub fn topics(&self) -> &TopicSelection {
        &self.topics
    }

    /// The index.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::actions::selection::Selection;
    use crate::error::Error;
    use crate::filter::MessageFilter;
    use crate::index::normalise::RawHeader;
    use crate::index::record::{NewRecord, RecordParts};
    use crate::states::JobStatus;
    use crate::store::positions::Position;
    use crate::store::{self, audit, records};

    /// A runner that only counts how often it was asked to start jobs.
    #[derive(Default)]
    struct CountingRunner {
        wakes: AtomicUsize,
    }

    impl JobRunner for CountingRunner {
        fn wake(&self) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }

        fn control<'a>(
            &'a self,
            id: &'a str,
            _: JobControl,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Job>> {
            Box::pin(async move { Err(replay::unknown_job(id)) })
        }
    }

    fn record(offset: i64) -> NewRecord {
        NewRecord::from_parts(
            RecordParts {
                topic: "orders.dlq".into(),
                partition: 0,
                offset,
                timestamp: Some((1_000 + offset, "create")),
                key: Some(format!("k{offset}").into_bytes()),
                value: Some(b"{}".to_vec()),
                headers: vec![RawHeader {
                    name: "kafka_dlt-original-topic".into(),
                    value: Some(b"orders".to_vec()),
                }],
            },
            5,
        )
    }

    /// The core over a real index of two records, with the cluster's topics given.
    async fn core(
        dir: &tempfile::TempDir,
        topics: &[&str],
    ) -> (Actions, Arc<CountingRunner>, SqlitePool) {
        let pool = store::open(&dir.path().join("a.db")).await.unwrap();
        let batch = [record(0), record(1)];
        let at = [Position {
            topic: "orders.dlq".into(),
            partition: 0,
            generation: 0,
            next_offset: 2,
        }];
        records::insert_batch(&pool, &batch, &at, 5).await.unwrap();
        let runner = Arc::new(CountingRunner::default());
        let names: BTreeSet<String> = topics.iter().map(|t| t.to_string()).collect();
        let actions = Actions::new(
            pool.clone(),
            TopicSelection::parse(&[]).unwrap(),
            TargetRules::parse(&[], crate::replay::target::DEFAULT_TEMPLATE).unwrap(),
            Compression::DEFAULT_REPLAY,
            Arc::new(names),
            runner.clone(),
        );
        (actions, runner, pool)
    }

    #[tokio::test]
    async fn a_preview_changes_nothing_and_its_confirmation_queues_and_audits_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, runner, pool) = core(&dir, &["orders", "orders.retry.1"]).await;
        let all = Selection::Filter(MessageFilter::default());
        let preview = actions.preview(all, 0, "tester").await.unwrap();
        assert_eq!(preview.count, 2);
        assert_eq!(preview.targets.get("orders.retry.1"), Some(&2));
        assert_eq!(
            runner.wakes.load(Ordering::SeqCst),
            0,
            "nothing starts at preview"
        );
        assert!(audit::list(&pool, None, 10).await.unwrap().is_empty());

        let job = actions
            .confirm(&preview.preview_id, Some(50), "tester")
            .await
            .unwrap();
        assert_eq!((job.status, job.rate), (JobStatus::Queued, 50));
        assert_eq!(runner.wakes.load(Ordering::SeqCst), 1);
        let entries = audit::list(&pool, None, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].action.as_str(), entries[0].actor.as_str()),
            ("replay.start", "tester")
        );

        let again = actions.confirm(&preview.preview_id, None, "tester").await;
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
        assert_eq!(audit::list(&pool, None, 10).await.unwrap().len(), 1);
        assert_eq!(runner.wakes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_missing_retry_topic_refuses_every_record_and_nothing_can_be_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, runner, pool) = core(&dir, &["orders"]).await;
        let all = Selection::Filter(MessageFilter::default());
        let preview = actions.preview(all, 0, "tester").await.unwrap();
        assert_eq!((preview.count, preview.refused_count), (0, 2));
        assert!(
            preview.refused[0].reason.contains("orders.retry.1"),
            "{preview:?}"
        );
        let confirmed = actions.confirm(&preview.preview_id, None, "tester").await;
        assert!(
            matches!(confirmed, Err(Error::BadRequest(_))),
            "{confirmed:?}"
        );
        assert_eq!(runner.wakes.load(Ordering::SeqCst), 0);
        assert!(audit::list(&pool, None, 10).await.unwrap().is_empty());
    }
}
