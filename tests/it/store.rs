//! The store on a real SQLite file: batch writes that overlap what is already indexed.

use dlq_dashboard::filter::MessageQuery;
use dlq_dashboard::index::normalise::RawHeader;
use dlq_dashboard::index::record::{NewRecord, RecordParts};
use dlq_dashboard::store::{self, positions::Position, records, search};

fn at(n: i64) -> [Position; 1] {
    [Position {
        topic: "s.dlq".into(),
        partition: 0,
        generation: 0,
        next_offset: n,
    }]
}

/// Search hits of `q` as offsets, each checked to be the row its text came from.
async fn search_offsets(pool: &sqlx::SqlitePool, q: &str) -> Vec<i64> {
    let q = MessageQuery::parse(&format!("q={q}&limit=1000")).unwrap();
    let page = records::list(pool, &q).await.unwrap();
    let mut offsets: Vec<i64> = page
        .rows
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            assert_eq!(key, format!("key{}", r.offset));
            r.offset
        })
        .collect();
    offsets.sort();
    offsets
}

fn record(offset: i64) -> NewRecord {
    NewRecord::from_parts(
        RecordParts {
            topic: "s.dlq".into(),
            partition: 0,
            offset,
            timestamp: Some((1_000 + offset, "create")),
            key: Some(format!("key{offset}").into_bytes()),
            value: Some(format!("payload word{offset}").into_bytes()),
            headers: vec![RawHeader {
                name: "dlq-error-class".into(),
                value: Some(b"E".to_vec()),
            }],
        },
        5,
    )
}

#[tokio::test]
async fn an_overlapping_batch_stores_only_new_rows_and_indexes_them_for_search() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("s.db")).await.unwrap();
    let first: Vec<NewRecord> = (0..3).map(record).collect();
    let outcome = records::insert_batch(&pool, &first, &at(3), 1)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.already_indexed), (3, 0));
    // Offsets 1 and 2 again, 3 and 4 new, in one statement.
    let overlap: Vec<NewRecord> = (1..5).map(record).collect();
    let outcome = records::insert_batch(&pool, &overlap, &at(5), 2)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.already_indexed), (2, 2));
    assert_eq!(search::catch_up(&pool, 100).await.unwrap(), 5);
    for (word, expected) in [("word4", 1), ("word2", 1), ("key3", 1), ("payload", 5)] {
        let q = MessageQuery::parse(&format!("q={word}&limit=100")).unwrap();
        let page = records::list(&pool, &q).await.unwrap();
        assert_eq!(page.rows.len(), expected, "search {word}");
        for r in &page.rows {
            // Each search hit is the row its text came from.
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            assert_eq!(key, format!("key{}", r.offset));
        }
    }
    let counted: i64 = sqlx::query_scalar("SELECT SUM(count) FROM topic_status_counts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(counted, 5, "counters count each row once");
}

#[tokio::test]
async fn search_catches_up_on_every_record_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let pool = store::open(&path).await.unwrap();
    let all: Vec<NewRecord> = (0..250).map(record).collect();
    for (i, batch) in all.chunks(100).enumerate() {
        let end = (i as i64 + 1) * 100;
        records::insert_batch(&pool, batch, &at(end.min(250)), 1)
            .await
            .unwrap();
    }
    // Stored and browsable at once; searchable only once the catch-up has run.
    assert!(search_offsets(&pool, "payload").await.is_empty());
    let p = search::progress(&pool).await.unwrap();
    assert_eq!((p.indexed_through, p.pending()), (0, 250));
    // Part of the way, then the process goes away.
    assert_eq!(search::catch_up(&pool, 60).await.unwrap(), 60);
    assert_eq!(search::catch_up(&pool, 60).await.unwrap(), 60);
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..120).collect::<Vec<_>>()
    );
    pool.close().await;

    let pool = store::open(&path).await.unwrap();
    assert_eq!(search::progress(&pool).await.unwrap().pending(), 130);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(search::run(pool.clone(), stop.clone()));
    crate::harness::wait_for("the catch-up to finish", || async {
        search::progress(&pool)
            .await
            .unwrap()
            .complete()
            .then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    // Every record exactly once, each found by its own words.
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..250).collect::<Vec<_>>()
    );
    for offset in [0, 119, 120, 249] {
        assert_eq!(
            search_offsets(&pool, &format!("word{offset}")).await,
            [offset]
        );
        assert_eq!(
            search_offsets(&pool, &format!("key{offset}")).await,
            [offset]
        );
    }
    assert_eq!(search::catch_up(&pool, 100).await.unwrap(), 0);
}

#[tokio::test]
async fn a_row_id_handed_out_again_below_the_search_mark_is_searchable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("s.db")).await.unwrap();
    let first: Vec<NewRecord> = (0..3).map(record).collect();
    records::insert_batch(&pool, &first, &at(3), 1)
        .await
        .unwrap();
    assert_eq!(search::catch_up(&pool, 100).await.unwrap(), 3);
    // The newest row goes, with its search entry (a contentless index needs its text), so
    // SQLite hands its id out again.
    sqlx::query(
        "INSERT INTO records_fts (records_fts, rowid, key_text, body, error_text) VALUES ('delete', 3, 'key2', 'payload word2', 'E')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for table in ["records WHERE id", "record_bodies WHERE record_id"] {
        sqlx::query(&format!("DELETE FROM {table} = 3"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let again = [record(7)];
    records::insert_batch(&pool, &again, &at(8), 2)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT id FROM records WHERE \"offset\" = 7")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(id, 3, "the id is reused, below the search mark");
    assert!(search::progress(&pool).await.unwrap().complete());
    assert_eq!(search_offsets(&pool, "word7").await, [7]);
    assert!(search_offsets(&pool, "word2").await.is_empty());
}
