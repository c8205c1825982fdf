//! Following replayed records past the broker. A record is *consumed* once the consumer
//! group that reads its target retry topic has committed past its target offset (read with
//! OffsetFetch; the dashboard never joins the group). It *failed again* when the indexer
//! meets a DLQ record carrying its `dlq-replay-id` (see `store::outcomes::link_returned`).
//!
//! Which group reads a target topic is, in order: `--replay-consumer-group DLQ=GROUP`; the
//! group the records' headers name, once it has committed on the target topic; the groups
//! the broker lists (ListGroups) that have committed on it; else the header group, waiting
//! for its first commit. With none, the job says plainly that consumption is not tracked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::kafka::KafkaSettings;
use crate::store::jobs::Job;
use crate::store::outcomes::{self, JobRoute};
pub use crate::store::outcomes::{GroupSource, GroupTracking};

/// How often committed offsets are read while records wait (a commit shows on the job page
/// within about this long, plus one OffsetFetch).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long after a job finished its consumption is still followed.
pub const FOLLOW_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a target whose group is not known yet, or has not committed yet, is looked up
/// again (each look-up may ask the broker for its groups and each of those for commits).
const RESOLVE_AGAIN: Duration = Duration::from_secs(30);
/// How long one OffsetFetch or ListGroups may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
/// Groups listed by the broker that are checked for commits on a target topic, at most
/// (each check is a client of its own for the moment it takes).
const BROKER_GROUPS_CHECKED: usize = 20;

/// `--replay-consumer-group DLQ_TOPIC=GROUP`: the consumer group that reads the retry topic
/// a DLQ topic's records are replayed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerGroupRules(BTreeMap<String, String>);

impl ConsumerGroupRules {
    /// Validate the entries; errors are sentences.
    pub fn parse(entries: &[String]) -> std::result::Result<Self, String> {
        let mut rules = BTreeMap::new();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match e.split_once('=') {
                Some((dlq, group)) if !dlq.trim().is_empty() && !group.trim().is_empty() => {
                    rules.insert(dlq.trim().to_string(), group.trim().to_string());
                }
                _ => {
                    return Err(format!(
                        "--replay-consumer-group '{e}' must be DLQ_TOPIC=GROUP, e.g. orders.dlq=order-service"
                    ))
                }
            }
        }
        Ok(ConsumerGroupRules(rules))
    }

    fn group_of(&self, dlq_topic: &str) -> Option<&str> {
        self.0.get(dlq_topic).map(String::as_str)
    }
}

/// What the tracker learned from Kafka about a target topic's candidate groups.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Whether the header group has committed anything on the target topic.
    pub header_group_committed: bool,
    /// Groups listed by the broker with commits on the target topic, or why the broker's
    /// list could not be read.
    pub broker_groups: Option<std::result::Result<Vec<String>, String>>,
}

/// Choose the groups that read `target_topic`, from the job's routes there, the flag and what
/// Kafka showed. Pure, so that the order of the rules is unit-tested.
pub fn choose_groups(
    target_topic: &str,
    routes: &[&JobRoute],
    rules: &ConsumerGroupRules,
    evidence: &Evidence,
) -> GroupTracking {
    let mut dlq_topics: Vec<String> = routes.iter().map(|r| r.dlq_topic.clone()).collect();
    dlq_topics.sort();
    dlq_topics.dedup();
    let tracking =
        |groups: Vec<String>, source: Option<GroupSource>, note: Option<String>| GroupTracking {
            target_topic: target_topic.to_string(),
            dlq_topics: dlq_topics.clone(),
            tracked: !groups.is_empty(),
            groups,
            source,
            note,
        };
    let mut flagged: Vec<String> = dlq_topics
        .iter()
        .filter_map(|t| rules.group_of(t).map(str::to_string))
        .collect();
    flagged.dedup();
    if !flagged.is_empty() {
        return tracking(flagged, Some(GroupSource::Flag), None);
    }
    let header_group = routes.iter().find_map(|r| r.header_group.clone());
    if let Some(g) = &header_group {
        if evidence.header_group_committed {
            return tracking(vec![g.clone()], Some(GroupSource::Headers), None);
        }
    }
    if let Some(Ok(listed)) = &evidence.broker_groups {
        if !listed.is_empty() {
            return tracking(listed.clone(), Some(GroupSource::Broker), None);
        }
    }
    let dlqs = dlq_topics.join(", ");
    match header_group {
        Some(g) => tracking(
            vec![g.clone()],
            Some(GroupSource::Headers),
            Some(format!(
                "Group {g} has committed nothing on {target_topic} yet; if another group reads it, set --replay-consumer-group {}=GROUP.",
                dlq_topics.first().map_or("DLQ_TOPIC", String::as_str)
            )),
        ),
        None => {
            let why = match &evidence.broker_groups {
                Some(Err(e)) => format!(" (the broker's group list could not be read: {e})"),
                _ => String::new(),
            };
            tracking(
                Vec::new(),
                None,
                Some(format!(
                    "Consumption not tracked: no consumer group known for {dlqs}{why}; set --replay-consumer-group {}=GROUP.",
                    dlq_topics.first().map_or("DLQ_TOPIC", String::as_str)
                )),
            )
        }
    }
}

/// What the tracker needs from Kafka: committed offsets of any group, and the broker's
/// group list. Blocking calls; the tracker runs them off the runtime's threads.
pub trait GroupOffsets: Send + Sync + 'static {
    /// The committed offset of `group` on each partition (None: nothing committed).
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>>;
    /// Consumer groups the broker knows, or an error when it cannot list them.
    fn list_groups(&self) -> Result<Vec<String>>;
    /// The tracker follows only these groups now: resources held for others may go.
    fn following(&self, _groups: &std::collections::HashSet<String>) {}
}

/// [`GroupOffsets`] through librdkafka: one client per group, with that group id, that never
/// subscribes (so never joins the group) and never commits.
pub struct KafkaGroupOffsets {
    settings: KafkaSettings,
    clients: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl KafkaGroupOffsets {
    /// Clients of `settings`' cluster, made as groups are asked about.
    pub fn new(settings: &KafkaSettings) -> Self {
        KafkaGroupOffsets {
            settings: settings.clone(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Let go of the clients of groups no longer asked about.
    pub fn keep_only(&self, groups: &std::collections::HashSet<String>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g, _| groups.contains(g));
    }

    fn client(&self, group: &str) -> Result<Arc<BaseConsumer>> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(group) {
            return Ok(c.clone());
        }
        let made: BaseConsumer = self
            .settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?;
        let made = Arc::new(made);
        clients.insert(group.to_string(), made.clone());
        Ok(made)
    }
}

impl GroupOffsets for KafkaGroupOffsets {
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let client = self.client(group)?;
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(topic, p);
        }
        let got = client.committed_offsets(tpl, KAFKA_TIMEOUT);
        // The client never subscribes, so nothing but errors and logs reach its queue:
        // drain them so they do not pile up.
        let _ = client.poll(Duration::ZERO);
        let got = got?;
        Ok(got
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) if e.error().is_ok() => Some(o),
                    _ => None,
                };
                (e.partition(), offset)
            })
            .collect())
    }

    fn following(&self, groups: &std::collections::HashSet<String>) {
        self.keep_only(groups);
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        let client = self.client(GROUP_LISTER)?;
        let list = client.fetch_group_list(None, KAFKA_TIMEOUT);
        let _ = client.poll(Duration::ZERO);
        Ok(list?
            .groups()
            .iter()
            .filter(|g| g.protocol_type() == "consumer" || g.protocol_type().is_empty())
            .map(|g| g.name().to_string())
            .collect())
    }
}

/// The group id of the client that lists the broker's groups (it never joins it).
const GROUP_LISTER: &str = "dlq-dashboard-group-list";

/// What the tracker keeps about a job between polls.
struct Followed {
    routes: Vec<JobRoute>,
    tracking: Vec<GroupTracking>,
    resolved_at: Instant,
    /// Whether the job was finished when its routes were read (then they no longer change).
    final_routes: bool,
}

/// Follows the consumption of replayed records. One per dashboard.
pub struct OutcomeTracker {
    pool: SqlitePool,
    offsets: Arc<dyn GroupOffsets>,
    rules: ConsumerGroupRules,
    followed: HashMap<String, Followed>,
}

impl OutcomeTracker {
    /// A tracker over the index, reading Kafka through `offsets`.
    pub fn new(
        pool: SqlitePool,
        offsets: Arc<dyn GroupOffsets>,
        rules: ConsumerGroupRules,
    ) -> Self {
        OutcomeTracker {
            pool,
            offsets,
            rules,
            followed: HashMap::new(),
        }
    }

    /// Poll until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // A broker outage fails every poll the same way: said once, and once when it ends.
        let mut failing: Option<String> = None;
        loop {
            match self.poll().await {
                Err(e) => {
                    let e = e.to_string();
                    if failing.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "following replay consumption failed; retrying every second");
                    }
                    failing = Some(e);
                }
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("following replay consumption again");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// One round over every job with records waiting to be consumed.
    pub async fn poll(&mut self) -> Result<()> {
        let since = crate::clock::now_ms() - FOLLOW_FOR.as_millis() as i64;
        let jobs = outcomes::jobs_awaiting(&self.pool, since).await?;
        self.followed
            .retain(|id, _| jobs.iter().any(|j| &j.id == id));
        for job in jobs {
            self.follow(&job).await?;
        }
        Ok(())
    }

    async fn follow(&mut self, job: &Job) -> Result<()> {
        let mut waiting: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (topic, partition, lowest) in outcomes::awaiting_partitions(&self.pool, &job.id).await?
        {
            waiting.entry(topic).or_default().push((partition, lowest));
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let tracking = self.tracking(job, &waiting).await?;
        for (topic, partitions) in &waiting {
            let Some(t) = tracking
                .iter()
                .find(|t| &t.target_topic == topic && t.tracked)
            else {
                continue;
            };
            let ids: Vec<i32> = partitions.iter().map(|(p, _)| *p).collect();
            // Consumed once every group followed has committed past it.
            let mut passed: HashMap<i32, i64> = ids.iter().map(|p| (*p, i64::MAX)).collect();
            for group in &t.groups {
                let got = self.committed(group, topic, &ids).await?;
                for (p, offset) in got {
                    if let Some(slot) = passed.get_mut(&p) {
                        *slot = (*slot).min(offset.unwrap_or(-1));
                    }
                }
            }
            for (p, lowest) in partitions {
                let committed = passed.get(p).copied().unwrap_or(-1);
                if committed != i64::MAX && committed > *lowest {
                    let n = outcomes::mark_consumed(
                        &self.pool,
                        &job.id,
                        topic,
                        *p,
                        committed,
                        crate::clock::now_ms(),
                    )
                    .await?;
                    if n > 0 {
                        tracing::debug!(job = %job.id, topic, partition = p, committed, consumed = n, "replayed records consumed");
                    }
                }
            }
        }
        Ok(())
    }

    /// The job's tracking, resolved now or kept from an earlier poll; stored with the job
    /// whenever it changes.
    async fn tracking(
        &mut self,
        job: &Job,
        waiting: &BTreeMap<String, Vec<(i32, i64)>>,
    ) -> Result<Vec<GroupTracking>> {
        let finished = job.finished_at.is_some();
        if let Some(f) = self.followed.get(&job.id) {
            let settled = f.tracking.iter().all(|t| t.tracked && t.note.is_none());
            let routes_current = f.final_routes || !finished;
            let covers = waiting
                .keys()
                .all(|t| f.tracking.iter().any(|x| &x.target_topic == t));
            if covers && routes_current && (settled || f.resolved_at.elapsed() < RESOLVE_AGAIN) {
                return Ok(f.tracking.clone());
            }
        }
        let routes = match self.followed.remove(&job.id) {
            Some(f) if f.final_routes || (!finished && f.resolved_at.elapsed() < RESOLVE_AGAIN) => {
                f.routes
            }
            _ => outcomes::job_routes(&self.pool, &job.id).await?,
        };
        let mut tracking = Vec::new();
        let mut broker_groups: Option<std::result::Result<Vec<String>, String>> = None;
        let mut targets: Vec<&str> = routes.iter().map(|r| r.target_topic.as_str()).collect();
        targets.dedup();
        for target in targets {
            let here: Vec<&JobRoute> = routes.iter().filter(|r| r.target_topic == target).collect();
            let partitions: Vec<i32> = waiting
                .get(target)
                .map(|ps| ps.iter().map(|(p, _)| *p).collect())
                .unwrap_or_default();
            let mut evidence = Evidence::default();
            let flagged = here
                .iter()
                .any(|r| self.rules.group_of(&r.dlq_topic).is_some());
            if !flagged && !partitions.is_empty() {
                if let Some(g) = here.iter().find_map(|r| r.header_group.clone()) {
                    evidence.header_group_committed = self
                        .committed(&g, target, &partitions)
                        .await
                        .map(|got| got.iter().any(|(_, o)| o.is_some()))
                        .unwrap_or(false);
                }
                if !evidence.header_group_committed {
                    if broker_groups.is_none() {
                        broker_groups = Some(self.list_groups().await.map_err(|e| e.to_string()));
                    }
                    evidence.broker_groups = Some(match broker_groups.as_ref() {
                        Some(Ok(all)) => {
                            Ok(self.groups_with_commits(all, target, &partitions).await)
                        }
                        Some(Err(e)) => Err(e.clone()),
                        None => Ok(Vec::new()),
                    });
                }
            }
            tracking.push(choose_groups(target, &here, &self.rules, &evidence));
        }
        if tracking != job.consumer_groups.0 {
            outcomes::set_consumer_groups(&self.pool, &job.id, &tracking).await?;
        }
        self.followed.insert(
            job.id.clone(),
            Followed {
                routes,
                tracking: tracking.clone(),
                resolved_at: Instant::now(),
                final_routes: finished,
            },
        );
        Ok(tracking)
    }

    async fn groups_with_commits(
        &self,
        groups: &[String],
        topic: &str,
        partitions: &[i32],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for g in groups
            .iter()
            .filter(|g| !g.starts_with("dlq-dashboard"))
            .take(BROKER_GROUPS_CHECKED)
        {
            if let Ok(got) = self.committed(g, topic, partitions).await {
                if got.iter().any(|(_, o)| o.is_some()) {
                    out.push(g.clone());
                }
            }
        }
        out
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let offsets = self.offsets.clone();
        let (group, topic, partitions) =
            (group.to_string(), topic.to_string(), partitions.to_vec());
        tokio::task::spawn_blocking(move || offsets.committed(&group, &topic, &partitions))
            .await
            .map_err(|e| Error::Internal(format!("reading committed offsets failed: {e}")))?
    }

    async fn list_groups(&self) -> Result<Vec<String>> {
        let offsets = self.offsets.clone();
        tokio::task::spawn_blocking(move || offsets.list_groups())
            .await
            .map_err(|e| Error::Internal(format!("listing consumer groups failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dlq: &str, target: &str, group: Option<&str>) -> JobRoute {
        JobRoute {
            dlq_topic: dlq.into(),
            target_topic: target.into(),
            header_group: group.map(Into::into),
        }
    }

    #[test]
    fn the_flag_wins_over_headers_and_the_broker() {
        let r = route("orders.dlq", "orders.retry.1", Some("from-headers"));
        let rules = ConsumerGroupRules::parse(&["orders.dlq=order-service".into()]).unwrap();
        let evidence = Evidence {
            header_group_committed: true,
            broker_groups: Some(Ok(vec!["listed".into()])),
        };
        let t = choose_groups("orders.retry.1", &[&r], &rules, &evidence);
        assert_eq!(t.groups, vec!["order-service"]);
        assert_eq!(t.source, Some(GroupSource::Flag));
        assert!(t.tracked && t.note.is_none());
    }

    #[test]
    fn a_header_group_that_committed_wins_over_the_broker_list() {
        let r = route("orders.dlq", "orders.retry.1", Some("order-service"));
        let rules = ConsumerGroupRules::default();
        let evidence = Evidence {
            header_group_committed: true,
            broker_groups: Some(Ok(vec!["other".into()])),
        };
        let t = choose_groups("orders.retry.1", &[&r], &rules, &evidence);
        assert_eq!(
            (t.groups, t.source),
            (
                vec!["order-service".to_string()],
                Some(GroupSource::Headers)
            )
        );
    }

    #[test]
    fn groups_the_broker_lists_with_commits_come_next() {
        let r = route("orders.dlq", "orders.retry.1", Some("order-service"));
        let evidence = Evidence {
            header_group_committed: false,
            broker_groups: Some(Ok(vec!["order-retry-1".into()])),
        };
        let t = choose_groups(
            "orders.retry.1",
            &[&r],
            &ConsumerGroupRules::default(),
            &evidence,
        );
        assert_eq!(
            (t.groups, t.source),
            (vec!["order-retry-1".to_string()], Some(GroupSource::Broker))
        );
    }

    #[test]
    fn a_header_group_without_commits_is_followed_with_a_note() {
        let r = route("orders.dlq", "orders.retry.1", Some("order-service"));
        let evidence = Evidence {
            header_group_committed: false,
            broker_groups: Some(Err("not supported".into())),
        };
        let t = choose_groups(
            "orders.retry.1",
            &[&r],
            &ConsumerGroupRules::default(),
            &evidence,
        );
        assert!(t.tracked);
        assert!(t
            .note
            .unwrap()
            .contains("has committed nothing on orders.retry.1 yet"));
    }

    #[test]
    fn no_group_at_all_says_so_and_how_to_fix_it() {
        let r = route("orders.dlq", "orders.retry.1", None);
        let evidence = Evidence {
            header_group_committed: false,
            broker_groups: Some(Err("the broker does not support ListGroups".into())),
        };
        let t = choose_groups(
            "orders.retry.1",
            &[&r],
            &ConsumerGroupRules::default(),
            &evidence,
        );
        assert!(!t.tracked && t.groups.is_empty());
        let note = t.note.unwrap();
        assert!(
            note.starts_with("Consumption not tracked: no consumer group known for orders.dlq"),
            "{note}"
        );
        assert!(
            note.contains("set --replay-consumer-group orders.dlq=GROUP"),
            "{note}"
        );
    }

    #[test]
    fn bad_flag_entries_are_refused_with_an_example() {
        let e = ConsumerGroupRules::parse(&["orders.dlq".into()]).unwrap_err();
        assert!(e.contains("orders.dlq=order-service"), "{e}");
    }
}
