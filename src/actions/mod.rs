//! The operations core: what an operator can do to the index, shared by the pages, the JSON
//! API, the benchmark and (later) purge and the command line. An action goes selection →
//! preview → confirm → job, and leaves an audit entry; each step is here once.
//!
//! The core needs three things from outside, each behind a small trait so that it can be
//! tested with a real SQLite file and no broker: the cluster's topic names (to check replay
//! targets), the job runner (to start and steer confirmed jobs), and the broker's
//! DeleteRecords (to reclaim resolved prefixes).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::SqlitePool;

use crate::error::{Error, Result};
use crate::kafka::admin::{BrokerAdmin, PartitionDeletion};
use crate::kafka::{Compression, TopicCache};
use crate::replay::target::TargetRules;
use crate::store::jobs::Job;
use crate::topics::TopicSelection;
use rdkafka::error::RDKafkaErrorCode;

pub mod bench;
pub mod purge;
pub mod reclaim;
pub mod replay;
pub mod selection;

pub use reclaim::Reclaimer;
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

/// Who acts, as the operations core needs to know it: the name the audit log records, how
/// they proved who they are (the audit log's mode column), and the DLQ topics they may act
/// on.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The name the audit log records, e.g. `alice (password)`.
    pub name: String,
    /// The auth mode (`password`, `token`, `proxy`, `no auth`); none for the dashboard's
    /// own work and for tools such as the benchmark.
    pub mode: Option<String>,
    /// The DLQ topics this actor may act on.
    pub scope: TopicScope,
}

impl Actor {
    /// An actor that may act on every topic and has no auth mode (tests, benchmarks).
    pub fn unlimited(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            mode: None,
            scope: TopicScope::default(),
        }
    }

    /// The audit entry's mode.
    pub fn mode(&self) -> Option<&str> {
        self.mode.as_deref()
    }
}

/// The DLQ topics one actor may act on (`--role-topics ROLE=REGEX`): every topic, or
/// those a role's regex matches.
#[derive(Debug, Clone, Default)]
pub struct TopicScope {
    limit: Option<(String, regex::Regex)>,
}

impl TopicScope {
    /// Only the topics `pattern` matches, as the limit of `role`.
    pub fn limited(role: &str, pattern: regex::Regex) -> Self {
        TopicScope {
            limit: Some((role.to_string(), pattern)),
        }
    }

    /// Whether any topic is outside this scope at all.
    pub fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Whether an action may touch `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        self.limit.as_ref().is_none_or(|(_, re)| re.is_match(topic))
    }

    /// Why a message of `topic` is refused, in a sentence.
    pub fn refusal(&self, topic: &str) -> String {
        match &self.limit {
            Some((role, re)) => format!(
                "Role {role} may act only on DLQ topics matching {}, and {topic} is not one of them; ask someone whose role may.",
                re.as_str()
            ),
            None => String::new(),
        }
    }

    /// Refuse, as a whole, an action on any topic outside the scope: a Forbidden naming
    /// them, so that nothing is done to part of what was asked.
    pub fn check<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let Some((role, re)) = &self.limit else {
            return Ok(());
        };
        let mut outside: Vec<&str> = topics.into_iter().filter(|t| !re.is_match(t)).collect();
        outside.sort_unstable();
        outside.dedup();
        if outside.is_empty() {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "Role {role} may act only on DLQ topics matching {}, and this action touches {}; nothing was done. Narrow the selection to the topics your role may act on, or ask someone whose role may.",
            re.as_str(),
            outside.join(", ")
        )))
    }
}

/// `--role-topics`: per role, a regex of the DLQ topics it may act on; a role without one
/// may act on every topic.
#[derive(Debug, Clone, Default)]
pub struct RoleTopics {
    by_role: Vec<(String, regex::Regex)>,
}

impl RoleTopics {
    /// Parse `ROLE=REGEX` entries; `roles` names the roles that exist.
    pub fn parse(entries: &[String], roles: &[&str]) -> std::result::Result<Self, String> {
        let mut by_role: Vec<(String, regex::Regex)> = Vec::new();
        for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
            let Some((role, pattern)) = entry.split_once('=') else {
                return Err(format!(
                    "--role-topics '{entry}' is not ROLE=REGEX, e.g. operator=^shop\\."
                ));
            };
            let role = role.trim().to_ascii_lowercase();
            if !roles.contains(&role.as_str()) {
                return Err(format!(
                    "--role-topics '{entry}' names no role; roles are {}.",
                    roles.join(", ")
                ));
            }
            if by_role.iter().any(|(r, _)| *r == role) {
                return Err(format!(
                    "--role-topics gives role {role} twice; combine the patterns with |."
                ));
            }
            let re = regex::Regex::new(pattern).map_err(|e| {
                format!("--role-topics '{entry}': the pattern is not a regex ({e}).")
            })?;
            by_role.push((role, re));
        }
        Ok(RoleTopics { by_role })
    }

    /// The scope of `role`.
    pub fn scope(&self, role: &str) -> TopicScope {
        self.by_role
            .iter()
            .find(|(r, _)| r == role)
            .map(|(r, re)| TopicScope::limited(r, re.clone()))
            .unwrap_or_default()
    }
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

/// Deleting the start of a topic's partitions on the broker (DeleteRecords), for reclaim.
pub trait RecordDeleter: Send + Sync {
    /// Delete the records of `topic` below each `(partition, offset)`: per partition, the
    /// broker's new log start or its error code; `Err` when the request as a whole was
    /// refused or not answered.
    fn delete_records<'a>(
        &'a self,
        topic: &'a str,
        to: &'a [(i32, i64)],
    ) -> BoxFuture<'a, std::result::Result<Vec<PartitionDeletion>, RDKafkaErrorCode>>;
}

impl RecordDeleter for BrokerAdmin {
    fn delete_records<'a>(
        &'a self,
        topic: &'a str,
        to: &'a [(i32, i64)],
    ) -> BoxFuture<'a, std::result::Result<Vec<PartitionDeletion>, RDKafkaErrorCode>> {
        Box::pin(async move {
            BrokerAdmin::delete_records(self, topic, to)
                .await
                .map_err(|e| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail))
        })
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
        actor: &'a Actor,
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
    reclaim: Reclaimer,
}

impl Actions {
    /// The core over an index, the DLQ topic selection, the replay rules and codec, the two
    /// outside parts of replay, and reclaim's (the broker's DeleteRecords, and whether
    /// payloads stay).
    pub fn new(
        pool: SqlitePool,
        topics: TopicSelection,
        replay_rules: TargetRules,
        replay_compression: Compression,
        cluster: Arc<dyn ClusterTopics>,
        runner: Arc<dyn JobRunner>,
        reclaim: Reclaimer,
    ) -> Self {
        Actions {
            pool,
            topics,
            replay_rules,
            replay_compression,
            cluster,
            runner,
            reclaim,
        }
    }

    /// Audit an action refused because it touches topics outside the actor's scope, and
    /// hand back the refusal. Called outside any write transaction.
    pub(crate) async fn refused(
        &self,
        actor: &Actor,
        what: &str,
        id: Option<&str>,
        refusal: Error,
    ) -> Error {
        let summary = format!("Refused {what}: {refusal}");
        let entry = crate::store::audit::NewEntry {
            at: crate::clock::now_ms(),
            actor: &actor.name,
            mode: actor.mode(),
            action: "auth.refused",
            job_id: id,
            summary: &summary,
            detail: &serde_json::json!({ "action": what, "reason": refusal.to_string() }),
        };
        if let Err(e) = crate::store::audit::append(&self.pool, &entry).await {
            tracing::error!(error = %e, "the refusal could not be audited");
        }
        refusal
    }

    /// [`TopicScope::check`], audited when it refuses.
    pub(crate) async fn check_scope<'a>(
        &self,
        actor: &Actor,
        what: &str,
        id: Option<&str>,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        match actor.scope.check(topics) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.refused(actor, what, id, e).await),
        }
    }

    /// For a caller that confirms a preview it never showed (the one-step JSON API): refuse
    /// the whole action, audited, when the preview refused messages for lying outside the
    /// actor's topics, so that such a request is never carried out in part without anyone
    /// seeing what was left out. `purge` tells a purge preview from a replay one.
    pub async fn whole_in_scope(&self, preview_id: &str, purge: bool, actor: &Actor) -> Result<()> {
        if !actor.scope.is_limited() {
            return Ok(());
        }
        let refused = if purge {
            crate::store::purges::refused_topics(&self.pool, preview_id).await?
        } else {
            crate::store::jobs::refused_topics(&self.pool, preview_id).await?
        };
        let what = if purge { "purge" } else { "replay" };
        self.check_scope(
            actor,
            what,
            Some(preview_id),
            refused.iter().map(String::as_str),
        )
        .await
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

    fn tester() -> Actor {
        Actor::unlimited("tester")
    }

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
            _: &'a Actor,
        ) -> BoxFuture<'a, Result<Job>> {
            Box::pin(async move { Err(replay::unknown_job(id)) })
        }
    }

    /// A broker without DeleteRecords, as the mock cluster and tansu are.
    struct NoDeleteRecords;

    impl RecordDeleter for NoDeleteRecords {
        fn delete_records<'a>(
            &'a self,
            _: &'a str,
            _: &'a [(i32, i64)],
        ) -> BoxFuture<'a, std::result::Result<Vec<PartitionDeletion>, RDKafkaErrorCode>> {
            Box::pin(async { Err(RDKafkaErrorCode::UnsupportedFeature) })
        }
    }

    /// A broker that deletes what it is asked to: its new log start is the asked offset.
    struct DeletesRecords;

    impl RecordDeleter for DeletesRecords {
        fn delete_records<'a>(
            &'a self,
            _: &'a str,
            to: &'a [(i32, i64)],
        ) -> BoxFuture<'a, std::result::Result<Vec<PartitionDeletion>, RDKafkaErrorCode>> {
            Box::pin(async move { Ok(to.iter().map(|(p, o)| (*p, Ok(*o))).collect()) })
        }
    }

    /// Both records replayed: the whole partition is resolved.
    async fn replay_both(pool: &SqlitePool) {
        sqlx::query("UPDATE records SET status = 'replayed'")
            .execute(pool)
            .await
            .unwrap();
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
        core_with(dir, topics, Reclaimer::new(Arc::new(NoDeleteRecords), true)).await
    }

    /// [`core`] with a reclaim of its own.
    async fn core_with(
        dir: &tempfile::TempDir,
        topics: &[&str],
        reclaim: Reclaimer,
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
            reclaim,
        );
        (actions, runner, pool)
    }

    #[tokio::test]
    async fn a_preview_changes_nothing_and_its_confirmation_queues_and_audits_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, runner, pool) = core(&dir, &["orders", "orders.retry.1"]).await;
        let all = Selection::Filter(MessageFilter::default());
        let preview = actions.preview(all, 0, &tester()).await.unwrap();
        assert_eq!(preview.count, 2);
        assert_eq!(preview.targets.get("orders.retry.1"), Some(&2));
        assert_eq!(
            runner.wakes.load(Ordering::SeqCst),
            0,
            "nothing starts at preview"
        );
        assert!(audit::list(&pool, None, 10).await.unwrap().is_empty());

        let job = actions
            .confirm(&preview.preview_id, Some(50), &tester())
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

        let again = actions.confirm(&preview.preview_id, None, &tester()).await;
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
        assert_eq!(audit::list(&pool, None, 10).await.unwrap().len(), 1);
        assert_eq!(runner.wakes.load(Ordering::SeqCst), 1);
    }

    fn listed(offset: i64) -> Selection {
        Selection::Messages(vec![selection::MessageRef {
            topic: "orders.dlq".into(),
            partition: 0,
            offset,
            generation: None,
        }])
    }

    #[tokio::test]
    async fn purge_and_replay_never_both_take_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, _, pool) = core(&dir, &["orders", "orders.retry.1"]).await;
        // A replay previewed before a purge does not send what the purge took meanwhile.
        let all = Selection::Filter(MessageFilter::default());
        let replay = actions.preview(all, 0, &tester()).await.unwrap();
        let purge = actions
            .purge_preview(listed(0), purge::PurgeRequest::default(), &tester())
            .await
            .unwrap();
        assert_eq!(
            (purge.count, purge.refused_count),
            (1, 0),
            "a preview holds nothing"
        );
        let done = actions
            .purge_confirm(&purge.preview_id, false, None, &tester())
            .await
            .unwrap();
        assert_eq!((done.purged, done.refused), (1, 0));
        let job = actions
            .confirm(&replay.preview_id, None, &tester())
            .await
            .unwrap();
        assert_eq!((job.total, job.refused), (1, 1), "{job:?}");

        // A purge refuses what a confirmed job still has to send.
        let purge = actions
            .purge_preview(listed(1), purge::PurgeRequest::default(), &tester())
            .await
            .unwrap();
        assert_eq!((purge.count, purge.refused_count), (0, 1));
        assert!(purge.refused[0].reason.contains(&job.id), "{purge:?}");
        let refused = actions
            .purge_confirm(&purge.preview_id, false, None, &tester())
            .await;
        assert!(matches!(refused, Err(Error::BadRequest(_))), "{refused:?}");

        let actions_done: Vec<String> = audit::list(&pool, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions_done, ["replay.start", "purge.start"]);
    }

    /// A status count of the test index's topic.
    async fn status_count(pool: &SqlitePool, status: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(SUM(count), 0) FROM topic_status_counts WHERE topic = 'orders.dlq' AND status = ?",
        )
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_purge_refuses_when_applied_what_changed_since_its_preview_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, _, pool) = core(&dir, &["orders", "orders.retry.1"]).await;
        let all = Selection::Filter(MessageFilter::default());
        let purge = actions
            .purge_preview(all, purge::PurgeRequest::default(), &tester())
            .await
            .unwrap();
        assert_eq!((purge.count, purge.refused_count), (2, 0));
        let other = actions
            .purge_preview(listed(0), purge::PurgeRequest::default(), &tester())
            .await
            .unwrap();
        // After both previews, a replay job takes offset 1.
        let replay = actions.preview(listed(1), 0, &tester()).await.unwrap();
        let job = actions
            .confirm(&replay.preview_id, None, &tester())
            .await
            .unwrap();
        let done = actions
            .purge_confirm(&purge.preview_id, true, None, &tester())
            .await
            .unwrap();
        assert_eq!((done.purged, done.refused), (1, 1));
        let refusals = store::purges::refusals(&pool, &done.id, 10).await.unwrap();
        assert_eq!(refusals.len(), 1);
        let why = refusals[0].refusal.clone().unwrap_or_default();
        assert!(
            why.contains(&job.id) && why.contains("after the preview"),
            "{why}"
        );
        assert_eq!(
            (
                status_count(&pool, "purged").await,
                status_count(&pool, "new").await
            ),
            (1, 1)
        );
        let group_purged: i64 = sqlx::query_scalar("SELECT SUM(purged) FROM failure_groups")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(group_purged, 1);
        // The other purge previewed offset 0, which the first took since.
        let late = actions
            .purge_confirm(&other.preview_id, false, None, &tester())
            .await
            .unwrap();
        assert_eq!((late.purged, late.refused), (0, 1));
        let why = store::purges::refusals(&pool, &late.id, 10).await.unwrap()[0]
            .refusal
            .clone()
            .unwrap_or_default();
        assert!(why.contains(&done.id), "{why}");
        // The undo restores the status the record had when purged, and the counts.
        let undone = actions.purge_undo(&done.id, None, &tester()).await.unwrap();
        assert_eq!(undone.changed, 1);
        assert_eq!(
            (
                status_count(&pool, "purged").await,
                status_count(&pool, "new").await
            ),
            (0, 2)
        );
    }

    #[tokio::test]
    async fn a_missing_retry_topic_refuses_every_record_and_nothing_can_be_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, runner, pool) = core(&dir, &["orders"]).await;
        let all = Selection::Filter(MessageFilter::default());
        let preview = actions.preview(all, 0, &tester()).await.unwrap();
        assert_eq!((preview.count, preview.refused_count), (0, 2));
        assert!(
            preview.refused[0].reason.contains("orders.retry.1"),
            "{preview:?}"
        );
        let confirmed = actions.confirm(&preview.preview_id, None, &tester()).await;
        assert!(
            matches!(confirmed, Err(Error::BadRequest(_))),
            "{confirmed:?}"
        );
        assert_eq!(runner.wakes.load(Ordering::SeqCst), 0);
        assert!(audit::list(&pool, None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_broker_without_delete_records_refuses_a_reclaim_and_the_mark_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let (actions, _, pool) = core(&dir, &["orders", "orders.retry.1"]).await;
        let nothing = actions.reclaim("orders.dlq", None, &tester()).await;
        assert!(matches!(nothing, Err(Error::Conflict(_))), "{nothing:?}");
        assert!(audit::list(&pool, None, 10).await.unwrap().is_empty());

        replay_both(&pool).await;
        let refused = actions.reclaim("orders.dlq", None, &tester()).await;
        let Err(Error::Conflict(why)) = refused else {
            panic!("{refused:?}")
        };
        assert!(why.contains("does not support DeleteRecords"), "{why}");
        let plan = actions.reclaimable("orders.dlq").await.unwrap();
        assert_eq!(
            (plan[0].reclaiming_to, plan[0].reclaimed_to, plan[0].bound),
            (None, None, 2)
        );
        let entries = audit::list(&pool, None, 10).await.unwrap();
        let actions_done: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions_done, ["reclaim.finish", "reclaim"]);
        assert!(
            entries[0].summary.contains("refused"),
            "{}",
            entries[0].summary
        );
        let unknown = actions.reclaim("other.dlq", None, &tester()).await;
        assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
    }

    #[tokio::test]
    async fn a_role_limited_to_other_topics_reclaims_nothing_and_the_refusal_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let reclaim = Reclaimer::new(Arc::new(DeletesRecords), true);
        let (actions, _, pool) = core_with(&dir, &["orders", "orders.retry.1"], reclaim).await;
        replay_both(&pool).await;
        let roles = RoleTopics::parse(&["admin=^shop\\.".into()], &["viewer", "operator", "admin"])
            .unwrap();
        let limited = Actor {
            name: "root (token)".into(),
            mode: Some("token".into()),
            scope: roles.scope("admin"),
        };
        let refused = actions.reclaim("orders.dlq", None, &limited).await;
        let Err(Error::Forbidden(why)) = refused else {
            panic!("{refused:?}")
        };
        assert!(
            why.contains("orders.dlq") && why.contains("^shop\\."),
            "{why}"
        );
        let plan = actions.reclaimable("orders.dlq").await.unwrap();
        assert_eq!((plan[0].reclaimed_to, plan[0].reclaiming_to), (None, None));
        let entries = audit::list(&pool, None, 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].action.as_str(), entries[0].mode.as_deref()),
            ("auth.refused", Some("token"))
        );
        assert!(
            roles.scope("operator").allows("orders.dlq"),
            "no limit of its own"
        );
        assert!(RoleTopics::parse(&["root=x".into()], &["admin"]).is_err());
        assert!(RoleTopics::parse(&["admin=(".into()], &["admin"]).is_err());
    }

    #[tokio::test]
    async fn a_reclaim_the_broker_accepts_expires_the_prefix_and_can_drop_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let reclaim = Reclaimer::new(Arc::new(DeletesRecords), false);
        let (actions, _, pool) = core_with(&dir, &["orders", "orders.retry.1"], reclaim).await;
        replay_both(&pool).await;
        let done = actions
            .reclaim("orders.dlq", Some(&[0]), &tester())
            .await
            .unwrap();
        assert_eq!(done.reclaimed.len(), 1);
        let r = &done.reclaimed[0];
        assert_eq!(
            (r.deleted_to, r.low_watermark, r.records, r.payloads_dropped),
            (2, 2, 2, 2)
        );
        let plan = actions.reclaimable("orders.dlq").await.unwrap();
        assert_eq!(
            (
                plan[0].log_start,
                plan[0].reclaimed_to,
                plan[0].reclaiming_to
            ),
            (Some(2), Some(2), None)
        );
        assert_eq!(plan[0].reclaimable_to(), None, "nothing left to reclaim");
        for offset in 0..2 {
            let id = records::RecordId {
                topic: "orders.dlq".into(),
                partition: 0,
                offset,
                generation: None,
            };
            let d = records::get(&pool, &id).await.unwrap().unwrap();
            assert_eq!(d.summary.status, crate::states::RecordStatus::Expired);
            assert_eq!(d.value, None, "payload dropped");
            assert!(!d.headers.is_empty(), "headers kept");
        }
        // What was reclaimed is not replayed.
        let all = Selection::Filter(MessageFilter::default());
        let preview = actions.preview(all, 0, &tester()).await.unwrap();
        assert_eq!((preview.count, preview.refused_count), (0, 2));
        let entries = audit::list(&pool, None, 10).await.unwrap();
        assert_eq!(entries[0].action, "reclaim.finish");
        assert!(
            entries[0].summary.contains("2 messages deleted"),
            "{}",
            entries[0].summary
        );
    }
}
