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

pub mod replay;
pub mod selection;

pub use replay::JobControl;

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
