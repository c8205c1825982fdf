//! The demo pipeline's story (issue 16), against the embedded cluster with compressed
//! timings: the bug dead-letters events, the fix is deployed, the bug's failure group is
//! bulk-replayed through `orders.retry.1`, and in the end every produced event was processed
//! exactly once, which the replay's outcome tracking confirms. Also the demo's refusals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlq_dashboard::app::Dashboard;
use dlq_dashboard::config::ServeArgs;
use dlq_dashboard::demo::{recent, DemoArgs, DemoState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::harness::in_process::{serve_args, Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;
use crate::topic::Received;

const BUG: &str = "java.lang.NullPointerException";

fn compressed() -> DemoArgs {
    DemoArgs {
        demo_rate: 100,
        demo_delays: dlq_dashboard::demo::settings::parse_delays("200ms,500ms").unwrap(),
        demo_backoff: Duration::from_millis(10),
        demo_transient_percent: 10,
        demo_coupon_percent: 30,
        demo_idempotency_window: Duration::from_secs(3600),
    }
}

async fn start_demo() -> TestDashboard {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let args = ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: dir.path().join("demo.db"),
        brokers: None,
        demo: compressed(),
        ..ServeArgs::default()
    };
    TestDashboard::start_with(args, dir).await
}

fn demo_state(d: &TestDashboard) -> Arc<DemoState> {
    d.d().state.demo.clone().expect("the demo runs")
}

fn bootstrap(d: &TestDashboard) -> String {
    d.d()
        .cluster
        .as_ref()
        .expect("embedded")
        .bootstrap_servers()
        .to_string()
}

/// Every record of `topic` below the high watermarks of this moment.
async fn read_now(bootstrap: &str, topic: &str) -> Vec<Received> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "demo-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in md.topics()[0].partitions() {
            let (_, high) = consumer
                .fetch_watermarks(&topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(&topic, p.id(), Offset::Offset(0))
                    .unwrap();
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        let mut done = HashSet::new();
        while done.len() < ends.len() {
            assert!(started.elapsed() < DEADLINE, "timed out reading {topic}");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.offset() + 1 >= ends[&m.partition()] {
                        done.insert(m.partition());
                    }
                    if m.offset() < ends[&m.partition()] {
                        out.push(Received {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec),
                            headers: m
                                .headers()
                                .map(|h| {
                                    h.iter()
                                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        });
                    }
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

fn event_id(r: &Received) -> Option<String> {
    let v: Value = serde_json::from_slice(r.value.as_deref()?).ok()?;
    v["event_id"].as_str().map(str::to_string)
}

async fn demo_json(d: &TestDashboard) -> Value {
    let (status, body) = d.get_json("/api/demo").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until the index holds every record `orders.dlq` has now.
async fn wait_dlq_indexed(d: &TestDashboard) {
    let dlq = read_now(&bootstrap(d), "orders.dlq").await;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for r in &dlq {
        let e = ends.entry(r.partition).or_default();
        *e = (*e).max(r.offset);
    }
    wait_for("orders.dlq indexed up to now", DEADLINE, || async {
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition, MAX(offset) FROM records WHERE topic = 'orders.dlq' GROUP BY partition",
        )
        .fetch_all(&d.d().state.pool)
        .await
        .unwrap();
        let have: HashMap<i32, i64> = rows.into_iter().collect();
        ends.iter()
            .all(|(p, o)| have.get(p).is_some_and(|h| h >= o))
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_story_bug_fix_replay_through_the_retry_topic_and_every_event_processed_once() {
    let started = Instant::now();
    let d = start_demo().await;
    let state = demo_state(&d);
    let brokers = bootstrap(&d);

    // 1. The bug dead-letters coupon orders.
    let bug_group = wait_for("150 events dead-lettered by the bug", DEADLINE, || async {
        let (_, groups) = d.get_json("/api/groups").await;
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| {
                g["error_class"] == BUG
                    && g["origin_topic"] == "orders"
                    && g["count"].as_i64().unwrap() >= 150
            })
            .cloned()
    })
    .await;
    let api = demo_json(&d).await;
    assert_eq!(api["bug_fixed"], false);
    assert!(
        api["produced"].as_u64().unwrap() > 0 && api["processed"].as_u64().unwrap() > 0,
        "{api}"
    );
    assert!(
        api["retried"]["orders.retry.1"].is_u64() && api["retried"]["orders.retry.2"].is_u64(),
        "{api}"
    );
    let before = state.latency_since(dlq_dashboard::clock::now_ms() - 3_000);
    assert!(before.samples > 50, "live traffic flows: {before:?}");

    // 2. Deploy the fix; once every failure from before it is indexed, replay the group.
    let (status, fixed) = d.post_json("/api/demo/fix", json!({})).await;
    assert_eq!(status, 200, "{fixed}");
    assert_eq!(fixed["bug_fixed"], true);
    let processed_at_fix = fixed["processed"].as_u64().unwrap();
    wait_for("orders processed after the fix", DEADLINE, || async {
        (state
            .orders
            .processed
            .load(std::sync::atomic::Ordering::Relaxed)
            > processed_at_fix + 100)
            .then_some(())
    })
    .await;
    wait_dlq_indexed(&d).await;
    let fingerprint = bug_group["fingerprint"].as_str().unwrap();
    let (status, preview) = d
        .post_json(
            "/api/replays",
            json!({"filter": {"group": fingerprint}, "dry_run": true, "rate": 150}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let count = preview["count"].as_i64().unwrap();
    assert!(count >= 150, "{preview}");
    assert_eq!(
        preview["targets"],
        json!({"orders.retry.1": count}),
        "replays go to the first retry topic"
    );
    let (status, job) = d
        .post_json("/api/replays", json!({"preview_id": preview["preview_id"]}))
        .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let replay_started = dlq_dashboard::clock::now_ms();

    // 3. Live traffic keeps flowing during the replay.
    let job = wait_for("the replay job to finish sending", DEADLINE, || async {
        let (_, j) = d.get_json(&format!("/api/replays/{job_id}")).await;
        (j["status"] == "completed").then_some(j)
    })
    .await;
    let during = state.latency_since(replay_started);
    eprintln!(
        "demo story: live processing latency before the replay p50 {} ms p99 {} ms ({} events); during it p50 {} ms p99 {} ms ({} events); {} records replayed",
        before.p50, before.p99, before.samples, during.p50, during.p99, during.samples, count
    );
    assert!(
        during.samples > 20,
        "live events were processed during the replay: {during:?}"
    );
    assert_eq!(job["sent"].as_i64(), Some(count), "{job}");

    // 5. The job shows every replayed record consumed by order-service, none failed again.
    let job = wait_for("every replayed record consumed", DEADLINE, || async {
        let (_, j) = d.get_json(&format!("/api/replays/{job_id}")).await;
        (j["consumed"].as_i64() == Some(count)).then_some(j)
    })
    .await;
    assert_eq!(job["failed_again"], 0, "{job}");
    assert_eq!(
        job["consumer_groups"][0]["groups"],
        json!(["order-service"]),
        "{job}"
    );
    // A replayed copy of an event whose other copy (the producer sent it twice) was
    // already processed is a duplicate, so "processed after replay" may be a little less.
    let api = wait_for("order-service received the replays", DEADLINE, || async {
        let api = demo_json(&d).await;
        (api["replayed"].as_i64() >= Some(count)).then_some(api)
    })
    .await;
    assert!(
        api["replayed_processed"].as_i64().unwrap() > count * 9 / 10,
        "{api}"
    );

    // Replayed records are on orders.retry.1, never on orders.
    let orders = read_now(&brokers, "orders").await;
    assert!(
        orders.iter().all(|r| r.header("dlq-replay-id").is_none()),
        "a replay reached the live topic"
    );
    let retry1 = read_now(&brokers, "orders.retry.1").await;
    let replayed_there = retry1
        .iter()
        .filter(|r| r.header("dlq-replay-action").as_deref() == Some(job_id.as_str()))
        .count();
    assert_eq!(replayed_there as i64, count);

    // 4. Every event produced so far is processed exactly once, or sits in orders.dlq with
    // a failure the fix does not cure; duplicates were skipped.
    let produced: Vec<Option<String>> = orders.iter().map(event_id).collect();
    let distinct: HashSet<&String> = produced.iter().flatten().collect();
    let duplicates_sent = produced.iter().flatten().count() - distinct.len();
    wait_for(
        "every produced event processed once or dead-lettered for good",
        DEADLINE,
        || async {
            let processings = state.processings();
            assert!(
                processings.values().all(|&n| n == 1),
                "an event was processed twice"
            );
            let dlq = read_now(&brokers, "orders.dlq").await;
            let for_good: HashSet<String> = dlq
                .iter()
                .filter(|r| r.header("dlq-error-class").as_deref() != Some(BUG))
                .filter_map(event_id)
                .collect();
            let unaccounted: Vec<&&String> = distinct
                .iter()
                .filter(|id| {
                    !processings.contains_key(&recent::key(id)) && !for_good.contains(id.as_str())
                })
                .collect();
            unaccounted.is_empty().then_some(())
        },
    )
    .await;
    let unparsable = produced.iter().filter(|p| p.is_none()).count();
    let dlq = read_now(&brokers, "orders.dlq").await;
    let malformed_dead = dlq
        .iter()
        .filter(|r| r.header("dlq-error-class").as_deref() == Some("JsonParseError"))
        .count();
    assert!(
        malformed_dead <= unparsable + duplicates_sent,
        "malformed ones in the DLQ come from orders"
    );
    let api = demo_json(&d).await;
    assert!(duplicates_sent > 0, "the producer sends some events twice");
    assert!(api["duplicates_skipped"].as_u64().unwrap() > 0, "{api}");

    // 5b. A poison event replayed fails again, linked to its new DLQ record.
    let (_, poison) = d
        .get_json("/api/messages?topic=orders.dlq&error_class=PoisonEventError&limit=1")
        .await;
    let p = &poison["messages"][0];
    assert!(p.is_object(), "no poison event dead-lettered yet: {poison}");
    let (status, job) = d
        .post_json(
            "/api/replays",
            json!({"messages": [{"topic": "orders.dlq", "partition": p["partition"], "offset": p["offset"]}]}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let poison_job = job["id"].as_str().unwrap().to_string();
    wait_for("the poison event to fail again", DEADLINE, || async {
        let (_, j) = d.get_json(&format!("/api/replays/{poison_job}")).await;
        (j["failed_again"] == 1).then_some(())
    })
    .await;
    let (_, results) = d
        .get_json(&format!("/api/replays/{poison_job}/results"))
        .await;
    let again = &results["results"][0]["failed_again"];
    assert_eq!(again["error_class"], "PoisonEventError", "{results}");
    assert_eq!(again["topic"], "orders.dlq");
    assert_ne!(again["offset"], p["offset"], "linked to the new DLQ record");

    // The page tells the same story.
    let (status, page) = d.get_html("/demo").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("The fix is deployed")
            && page.contains("data-demo-field=\"replayed_processed\""),
        "{page}"
    );
    let (_, overview) = d.get_html("/").await;
    assert!(
        overview.contains("href=\"/demo\""),
        "the navigation links the demo"
    );
    eprintln!("demo story took {:?}", started.elapsed());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_fix_and_break_are_json_posts_and_the_page_form_needs_its_token() {
    let d = start_demo().await;
    let (status, _) = d.post("/api/demo/fix", Some("text/plain"), "").await;
    assert_eq!(status, 415);
    let (status, body) = d.post_json("/api/demo/fix", json!({"now": true})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = d.post("/api/demo/fix", Some("application/json"), "").await;
    assert_eq!(
        (status.as_u16(), body["bug_fixed"].as_bool()),
        (200, Some(true))
    );
    let (status, body) = d.post_json("/api/demo/break", json!({})).await;
    assert_eq!(
        (status.as_u16(), body["bug_fixed"].as_bool()),
        (200, Some(false))
    );
    let (status, _, _) = d.post_form("/demo/fix", &[], None).await;
    assert_eq!(status, 403, "a form without the token is refused");
    assert!(!demo_state(&d).bug_fixed());
    let (_, page) = d.get_html("/demo").await;
    assert!(page.contains("Deploy the fix"));
    let csrf = dlq_dashboard::web::csrf::token();
    let (status, headers, _) = d
        .post_form(
            "/demo/fix",
            &[("csrf", csrf)],
            Some(&format!("http://{}", crate::harness::in_process::FORM_HOST)),
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/demo");
    assert!(demo_state(&d).bug_fixed());
    d.stop().await;
}

#[tokio::test]
async fn no_demo_no_demo_routes_and_serve_with_brokers_never_starts_it() {
    let kafka = Kafka::start(&[("orders", 3)]);
    let d = TestDashboard::start(&kafka).await;
    assert!(d.d().state.demo.is_none());
    let (status, body) = d.get_json("/api/demo").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("No demo runs here"));
    for uri in ["/api/demo/fix", "/api/demo/break"] {
        let (status, _) = d.post_json(uri, json!({})).await;
        assert_eq!(status, 404, "{uri}");
    }
    let (status, _) = d.get_html("/demo").await;
    assert_eq!(status, 404);
    let (_, overview) = d.get_html("/").await;
    assert!(!overview.contains("href=\"/demo\""));
    d.stop().await;
}

async fn demo_on(kafka: &Kafka) -> String {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        demo_on_cluster: true,
        ..serve_args(&kafka.bootstrap(), &dir.path().join("i.db"))
    };
    match Dashboard::start(args).await {
        Ok(d) => {
            d.shutdown().await;
            panic!("the demo started");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn demo_on_a_cluster_refuses_a_topic_it_did_not_create() {
    let kafka = Kafka::start(&[("orders", 3), ("payments-dlt", 1)]);
    let sentence = demo_on(&kafka).await;
    assert!(
        sentence.starts_with(&format!(
            "Topics orders, payments-dlt already exist on {} and the demo did not create them",
            kafka.bootstrap()
        )),
        "{sentence}"
    );
}

#[tokio::test]
async fn demo_on_a_cluster_that_refuses_topic_creation_names_the_topic_and_the_reason() {
    // librdkafka's mock cluster does not implement CreateTopics.
    let kafka = Kafka::start(&[]);
    let sentence = demo_on(&kafka).await;
    assert!(
        sentence.starts_with("The demo cannot create topic "),
        "{sentence}"
    );
    assert!(sentence.contains("the broker refused ("), "{sentence}");
}

/// The topic names of the cluster at `bootstrap`.
fn topic_names(bootstrap: &str) -> HashSet<String> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = probe.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_tansu_creates_its_topics_and_knows_them_as_its_own_on_the_next_run() {
    // tansu accepts CreateTopics, unlike the mock cluster: the creation path end to end on an
    // independent broker.
    let tansu = crate::harness::process::Tansu::start();
    for run in ["first", "second"] {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            demo_on_cluster: true,
            ..serve_args(&tansu.bootstrap, &dir.path().join("i.db"))
        };
        match Dashboard::start(args).await {
            Ok(d) => d.shutdown().await,
            Err(e) => panic!("the demo's {run} run on tansu did not start: {e}"),
        }
        let names = topic_names(&tansu.bootstrap);
        for (topic, _) in dlq_dashboard::demo::DEMO_TOPICS {
            assert!(names.contains(*topic), "{run} run: no {topic} in {names:?}");
        }
        assert!(names.contains(dlq_dashboard::demo::topics::REGISTRY));
    }
}
