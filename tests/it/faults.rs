//! Faults against the real binary: a crash mid-indexing and a broker outage.

use crate::harness::process::{
    index_counts, produce, producer, DashboardProcess, DevCluster, DEADLINE,
};
use crate::poll::wait_for_blocking;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_indexing_50k_records_loses_and_duplicates_nothing() {
    let cluster = DevCluster::start(1, &["crash.dlq:4"]);
    produce(&producer(&cluster.bootstrap), "crash.dlq", "r", 50_000).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    // No session to time out: the indexer is in no group, so a restart reads its partitions
    // at once instead of waiting for a killed member's session to end.
    let mut dashboard = DashboardProcess::start(&cluster.bootstrap, &db, &[]);
    // Kill it as soon as indexing has visibly started, then again later, so that at least
    // one crash lands in the middle of the work.
    let first = wait_for_blocking("indexing to start", DEADLINE, || {
        let n = dashboard
            .get("/api/topics")
            .map(|_| dashboard.indexed())
            .unwrap_or(0);
        (n > 0).then_some(n)
    });
    dashboard.kill();
    let (after_kill, _) = index_counts(&db).await;
    assert!(after_kill >= first, "committed batches survive a crash");
    dashboard.restart();
    wait_for_blocking("more indexing", DEADLINE, || {
        (dashboard.get("/api/topics").is_some() && dashboard.indexed() > after_kill).then_some(())
    });
    dashboard.kill();
    dashboard.restart();
    dashboard.wait_indexed(50_000);
    assert!(dashboard.terminate(), "graceful stop exits 0");
    let (rows, distinct) = index_counts(&db).await;
    assert_eq!(
        (rows, distinct),
        (50_000, 50_000),
        "every record exactly once after two crashes"
    );
    println!("crashed at {first} and {after_kill}+ records indexed; final {rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_shown_and_indexing_resumes() {
    let mut cluster = DevCluster::start(2, &["outage.dlq:2"]);
    let p = producer(&cluster.bootstrap);
    produce(&p, "outage.dlq", "before", 10).await;
    let dir = tempfile::tempdir().unwrap();
    let dashboard = DashboardProcess::start(&cluster.bootstrap, &dir.path().join("i.db"), &[]);
    dashboard.wait_ready();
    dashboard.wait_indexed(10);

    cluster.command("down");
    wait_for_blocking("readyz to fail", DEADLINE, || {
        (dashboard.get("/readyz")?.0 == 503).then_some(())
    });
    let (status, html) = dashboard.get("/messages").unwrap();
    assert_eq!(status, 200, "the index keeps serving");
    assert!(html.contains("disconnected since"));
    assert!(html.contains("before-3"));

    cluster.command("up");
    produce(&p, "outage.dlq", "after", 10).await;
    dashboard.wait_indexed(20);
    dashboard.wait_ready();
    let (_, html) = dashboard.get("/").unwrap();
    assert!(!html.contains("disconnected since"));
}
