//! The store on a real SQLite file: batch writes that overlap what is already indexed.

use dlq_dashboard::filter::MessageQuery;
use dlq_dashboard::index::normalise::RawHeader;
use dlq_dashboard::index::record::{NewRecord, RecordParts};
use dlq_dashboard::store::{self, positions::Position, records};

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
    let at = |n| {
        [Position {
            topic: "s.dlq".into(),
            partition: 0,
            generation: 0,
            next_offset: n,
        }]
    };
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
