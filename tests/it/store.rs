//! The store on a real SQLite file: batch writes that overlap what is already indexed.

use dlq_dashboard::filter::MessageQuery;
use dlq_dashboard::index::normalise::RawHeader;
use dlq_dashboard::index::record::{NewRecord, RecordParts};
use dlq_dashboard::store::{self, positions::Position, records, search};

use crate::harness::in_process::assert_intact;

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
    let mut s = search::connect(&pool).await.unwrap();
    assert_eq!(search::catch_up(&pool, &mut s, 100).await.unwrap(), 5);
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

/// Wait until the search index has every record, with the catch-up as the dashboard runs it.
async fn run_search_until_complete(pool: &sqlx::SqlitePool) {
    let stop = tokio_util::sync::CancellationToken::new();
    let health = std::sync::Arc::new(dlq_dashboard::store::health::WriteHealth::new(
        pool.connect_options().get_filename(),
    ));
    let task = tokio::spawn(dlq_dashboard::index::search::run(
        pool.clone(),
        health,
        stop.clone(),
    ));
    crate::poll::wait_for(
        "the catch-up to finish",
        crate::harness::in_process::DEADLINE,
        || async {
            search::progress(pool)
                .await
                .unwrap()
                .complete()
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
}

/// How many records a free-text filter counts (not capped at these sizes).
async fn search_count(pool: &sqlx::SqlitePool, q: &str) -> i64 {
    let q = MessageQuery::parse(&format!("q={q}")).unwrap();
    records::count_capped(pool, &q.filter, 10_000)
        .await
        .unwrap()
}

async fn insert_all(pool: &sqlx::SqlitePool, all: &[NewRecord], first: i64) {
    for (i, batch) in all.chunks(100).enumerate() {
        let end = first + (i * 100 + batch.len()) as i64;
        records::insert_batch(pool, batch, &at(end), 1)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn search_catches_up_on_every_record_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let pool = store::open(&path).await.unwrap();
    let all: Vec<NewRecord> = (0..250).map(record).collect();
    insert_all(&pool, &all, 0).await;
    // Stored and browsable at once; searchable only once the catch-up has run.
    assert!(search_offsets(&pool, "payload").await.is_empty());
    let p = search::progress(&pool).await.unwrap();
    assert_eq!((p.indexed_through, p.pending()), (0, 250));
    // Part of the way, then the process goes away.
    let mut s = search::connect(&pool).await.unwrap();
    assert_eq!(search::catch_up(&pool, &mut s, 60).await.unwrap(), 60);
    assert_eq!(search::catch_up(&pool, &mut s, 60).await.unwrap(), 60);
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..120).collect::<Vec<_>>()
    );
    drop(s);
    pool.close().await;

    let pool = store::open(&path).await.unwrap();
    let p = search::progress(&pool).await.unwrap();
    assert_eq!(
        (p.indexed_through, p.pending()),
        (120, 130),
        "resumes at the stored mark"
    );
    run_search_until_complete(&pool).await;
    // Every record exactly once, each found by its own words.
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..250).collect::<Vec<_>>()
    );
    assert_eq!(search_count(&pool, "payload").await, 250);
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
    let mut s = search::connect(&pool).await.unwrap();
    assert_eq!(search::catch_up(&pool, &mut s, 100).await.unwrap(), 0);
}

#[tokio::test]
async fn the_search_index_lives_in_its_own_file_next_to_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let pool = store::open(&path).await.unwrap();
    assert!(dir.path().join("s.search.db").is_file());
    let in_main: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE name IN ('records_fts', 'search_progress')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(in_main, 0, "the index file keeps no search tables");
    // The index's connections see the search file read-only: the catch-up's connection is
    // its only writer, and the indexer's write transactions never lock it.
    let write = sqlx::query("UPDATE search.search_progress SET indexed_through = 7")
        .execute(&pool)
        .await;
    assert!(write.is_err(), "the attached search file is read-only");
}

#[tokio::test]
async fn a_search_file_deleted_while_stopped_is_recreated_and_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let pool = store::open(&path).await.unwrap();
    let all: Vec<NewRecord> = (0..150).map(record).collect();
    insert_all(&pool, &all, 0).await;
    run_search_until_complete(&pool).await;
    assert_eq!(search_count(&pool, "payload").await, 150);
    pool.close().await;

    let search_file = dir.path().join("s.search.db");
    std::fs::remove_file(&search_file).unwrap();
    let pool = store::open(&path).await.unwrap();
    assert!(search_file.is_file(), "recreated");
    let p = search::progress(&pool).await.unwrap();
    assert_eq!((p.indexed_through, p.pending()), (0, 150));
    assert!(search_offsets(&pool, "payload").await.is_empty());
    run_search_until_complete(&pool).await;
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..150).collect::<Vec<_>>()
    );
    assert_eq!(search_count(&pool, "word42").await, 1);
}

#[tokio::test]
async fn a_search_file_left_behind_by_another_index_file_is_emptied_and_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let pool = store::open(&path).await.unwrap();
    let old: Vec<NewRecord> = (0..120).map(record).collect();
    insert_all(&pool, &old, 0).await;
    run_search_until_complete(&pool).await;
    pool.close().await;
    // The index file goes, its search file stays; a new index starts over at id 1.
    std::fs::remove_file(&path).unwrap();
    let pool = store::open(&path).await.unwrap();
    let p = search::progress(&pool).await.unwrap();
    assert_eq!((p.indexed_through, p.newest), (0, 0));
    let new: Vec<NewRecord> = (500..530).map(record).collect();
    insert_all(&pool, &new, 500).await;
    run_search_until_complete(&pool).await;
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (500..530).collect::<Vec<_>>()
    );
    assert!(search_offsets(&pool, "word5").await.is_empty());
}

#[tokio::test]
async fn no_record_gets_an_id_at_or_below_the_search_mark() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("s.db")).await.unwrap();
    let first: Vec<NewRecord> = (0..3).map(record).collect();
    records::insert_batch(&pool, &first, &at(3), 1)
        .await
        .unwrap();
    let mut s = search::connect(&pool).await.unwrap();
    assert_eq!(search::catch_up(&pool, &mut s, 100).await.unwrap(), 3);
    // The newest row goes, with its search entry (a contentless index needs its text).
    // SQLite would hand its id out again; the search index would never look there.
    sqlx::query(
        "INSERT INTO records_fts (records_fts, rowid, key_text, body, error_text) VALUES ('delete', 3, 'key2', 'payload word2', 'E')",
    )
    .execute(&mut s)
    .await
    .unwrap();
    for table in ["records WHERE id", "record_bodies WHERE record_id"] {
        sqlx::query(&format!("DELETE FROM {table} = 3"))
            .execute(&pool)
            .await
            .unwrap();
    }
    // The first new row is already stored (ignored), the next two are new.
    let again = [record(1), record(7), record(8)];
    let outcome = records::insert_batch(&pool, &again, &at(9), 2)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.already_indexed), (2, 1));
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM records WHERE \"offset\" >= 7 ORDER BY \"offset\"")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ids, [4, 5], "ids continue after the search mark");
    assert_eq!(search::progress(&pool).await.unwrap().pending(), 2);
    assert_eq!(search::catch_up(&pool, &mut s, 100).await.unwrap(), 2);
    assert!(search::progress(&pool).await.unwrap().complete());
    assert_eq!(search_offsets(&pool, "word7").await, [7]);
    assert_eq!(search_offsets(&pool, "word8").await, [8]);
    assert!(search_offsets(&pool, "word2").await.is_empty());
    assert_eq!(search_count(&pool, "payload").await, 4);
}

#[tokio::test]
async fn an_index_with_the_search_tables_inside_moves_them_out_and_rebuilds_them() {
    // An index file as the previous version left it: migrations up to 0003, its search
    // index inside, complete.
    let dir = tempfile::tempdir().unwrap();
    let old_migrations = dir.path().join("migrations");
    std::fs::create_dir(&old_migrations).unwrap();
    for m in ["0001_index.sql", "0002_replay.sql", "0003_ingest.sql"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        std::fs::copy(from.join(m), old_migrations.join(m)).unwrap();
    }
    let path = dir.path().join("old.db");
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(old_migrations.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        for offset in 0..40 {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO records (topic, partition, \"offset\", ts, indexed_at, key, value, value_size, headers, convention, fingerprint)
                 VALUES ('s.dlq', 0, ?1, 1, 1, ?2, ?3, 1, '[]', 'none', 'f') RETURNING id",
            )
            .bind(offset)
            .bind(format!("key{offset}").into_bytes())
            .bind(format!("payload word{offset}").into_bytes())
            .fetch_one(&mut conn)
            .await
            .unwrap();
            sqlx::query("INSERT INTO records_fts (rowid, key_text, body, error_text) VALUES (?1, ?2, ?3, '')")
                .bind(id)
                .bind(format!("key{offset}"))
                .bind(format!("payload word{offset}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query("UPDATE search_progress SET indexed_through = 40")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::Connection::close(conn).await.unwrap();
    }

    let pool = store::open(&path).await.unwrap();
    let p = search::progress(&pool).await.unwrap();
    assert_eq!(
        (p.indexed_through, p.newest),
        (0, 40),
        "rebuilt from the first record"
    );
    run_search_until_complete(&pool).await;
    assert_eq!(
        search_offsets(&pool, "payload").await,
        (0..40).collect::<Vec<_>>()
    );
    assert_eq!(search_offsets(&pool, "key17").await, [17]);
    // Migration 0004 moved every payload into record_bodies on the way.
    let at17 = records::RecordId {
        topic: "s.dlq".into(),
        partition: 0,
        offset: 17,
        generation: None,
    };
    assert_eq!(
        records::value(&pool, &at17).await.unwrap(),
        Some(records::StoredValue::Kept(Some(b"payload word17".to_vec())))
    );
    let detail = records::get(&pool, &at17).await.unwrap().unwrap();
    assert_eq!(detail.headers, "[]");
}

/// Every shape of listing pages through an index in the page's order and stops after the
/// page. A plan that sorts the matches (a temporary b-tree) or scans the table makes the
/// page's time grow with the index: seconds at a million records instead of milliseconds.
#[tokio::test]
async fn every_listing_walks_an_index_in_page_order() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("s.db")).await.unwrap();
    let cursor = dlq_dashboard::filter::Cursor { ts: 5, id: 9 }.encode();
    let filters = [
        "",
        "topic=s.dlq",
        "status=new",
        "status=all",
        "error_class=E",
        "origin_topic=s",
        "key=key1",
        "group=0123456789abcdef",
        "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
        "topic=s.dlq&status=new",
        "topic=s.dlq&error_class=E",
        "q=word",
        "q=word&topic=s.dlq",
    ];
    for filter in filters {
        for page in ["", "&cursor=", "&after="] {
            let cursor = if page.is_empty() { "" } else { &cursor };
            let query = format!("{filter}{page}{cursor}");
            let plan = records::listing_plan(&pool, &MessageQuery::parse(&query).unwrap())
                .await
                .unwrap();
            let text = plan.join(" / ");
            assert!(
                !text.contains("TEMP B-TREE"),
                "listing {query:?} sorts its matches: {text}"
            );
            assert!(
                plan.iter().any(|line| line.contains("INDEX")
                    || line.contains("VIRTUAL TABLE")
                    || line.contains("INTEGER PRIMARY KEY")),
                "listing {query:?} scans the table: {text}"
            );
        }
    }
}

/// A write run on the connection's handle that fails half-way leaves nothing behind, and
/// no connection it used stays inside a transaction: every later write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_handle_that_fails_rolls_back_and_the_next_writes_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("h.db")).await.unwrap();
    const ADD: &str =
        "INSERT INTO topic_status_counts (topic, status, count) VALUES ('h', 'new', 1)
         ON CONFLICT (topic, status) DO UPDATE SET count = count + 1";
    let failed = store::write_on_handle(&pool, |db| {
        db.run(ADD)?;
        Err::<(), _>(dlq_dashboard::error::Error::Internal(
            "fails after its first statement".into(),
        ))
    })
    .await;
    assert!(failed.is_err());
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(count), 0) FROM topic_status_counts WHERE topic = 'h'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(count().await, 0, "rolled back");
    // More writes than the pool has connections, mixed with the other kind of write.
    for _ in 0..6 {
        let (changed, _held) = store::write_on_handle(&pool, |db| db.run(ADD))
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let mut tx = store::begin_write(&pool).await.unwrap();
        sqlx::query(ADD).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(count().await, 12);
}

/// A record with a payload large enough to be stored compressed.
fn large_record(offset: i64) -> NewRecord {
    let mut r = record(offset);
    let text = format!("payload word{offset} ").repeat(100);
    r.value = Some(text.into_bytes());
    r
}

/// Issue 14's low-space rule, in the store: a batch with its bodies deferred keeps every
/// record's metadata (derived fields, counts, positions) and marks the bodies in the same
/// transaction; filling them later stores exactly what the indexer would have (compressed
/// the same way), removes the marks and gives the search entries their payload text; a
/// record marked lost keeps no body and says why.
#[tokio::test]
async fn deferred_bodies_keep_the_metadata_and_are_filled_in_place_later() {
    use dlq_dashboard::store::deferred::{self, Body, Missing};
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("s.db")).await.unwrap();
    let all: Vec<NewRecord> = (0..4).map(large_record).collect();
    let outcome = records::insert_batch_deferring(&pool, &all[..3], &at(3), 7, true)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 3);
    records::insert_batch(&pool, &all[3..], &at(4), 8)
        .await
        .unwrap();
    assert_eq!(
        deferred::counts(&pool).await.unwrap(),
        deferred::DeferredCounts {
            pending: 3,
            lost: 0
        }
    );
    let id = |offset| records::RecordId {
        topic: "s.dlq".into(),
        partition: 0,
        offset,
        generation: None,
    };
    let d = records::get(&pool, &id(1)).await.unwrap().unwrap();
    assert_eq!(d.missing_body(), Some(Missing::Deferred));
    assert_eq!(d.value, None);
    assert_eq!(d.headers, "[]");
    assert_eq!(d.summary.error_class.as_deref(), Some("E"), "metadata kept");
    assert_eq!(
        d.summary.value_size,
        all[1].value.as_ref().unwrap().len() as i64
    );
    assert_eq!(
        records::value(&pool, &id(1)).await.unwrap(),
        Some(records::StoredValue::NotStored(Missing::Deferred))
    );
    let (_, key, value) = records::identity(&pool, "s.dlq", 0, 0, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        key, all[1].key,
        "a deferred record is still known by its key"
    );
    assert_eq!(value, None, "and its payload is not claimed to be empty");
    // The search entries are made without payload text meanwhile.
    let mut s = search::connect(&pool).await.unwrap();
    assert_eq!(search::catch_up(&pool, &mut s, 100).await.unwrap(), 4);
    assert_eq!(search_offsets(&pool, "key1").await, vec![1]);
    assert_eq!(search_offsets(&pool, "word1").await, Vec::<i64>::new());
    assert_eq!(search_offsets(&pool, "word3").await, vec![3]);

    let waiting = deferred::waiting(&pool, 0, 10).await.unwrap();
    assert_eq!(
        waiting.iter().map(|w| w.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let bodies: Vec<Body> = waiting[..2]
        .iter()
        .map(|w| {
            let r = &all[w.offset as usize];
            Body {
                id: w.id,
                value: r.value.clone(),
                headers_json: r.headers_json.clone(),
                stacktrace: r.normalised.stacktrace.clone(),
            }
        })
        .collect();
    let lost = vec![(
        waiting[2].id,
        deferred::lost_sentence("the broker no longer had it"),
    )];
    let filled = deferred::fill(&pool, &mut s, &bodies, &lost, 9)
        .await
        .unwrap();
    assert_eq!((filled.stored, filled.lost), (2, 1));
    assert_eq!(
        deferred::counts(&pool).await.unwrap(),
        deferred::DeferredCounts {
            pending: 0,
            lost: 1
        }
    );
    for offset in [0, 1] {
        let d = records::get(&pool, &id(offset)).await.unwrap().unwrap();
        assert_eq!(d.missing_body(), None);
        assert_eq!(d.value, all[offset as usize].value, "byte-exact");
        assert_eq!(d.headers, all[offset as usize].headers_json);
    }
    let codecs: Vec<i64> = sqlx::query_scalar("SELECT codec FROM record_bodies ORDER BY record_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        codecs,
        vec![1, 1, 0, 1],
        "compressed as the indexer compresses"
    );
    assert_eq!(search_offsets(&pool, "word1").await, vec![1]);
    assert_eq!(search_offsets(&pool, "word2").await, Vec::<i64>::new());
    assert_eq!(search_offsets(&pool, "key2").await, vec![2]);
    match records::value(&pool, &id(2)).await.unwrap() {
        Some(records::StoredValue::NotStored(Missing::Lost(why))) => assert_eq!(
            why,
            "payload not stored: the disk was low when it was indexed, and when space was freed the broker no longer had it; only its metadata is kept"
        ),
        other => panic!("{other:?}"),
    }
    // Filling again changes nothing: the records are no longer waiting.
    let again = deferred::fill(&pool, &mut s, &bodies, &lost, 10)
        .await
        .unwrap();
    assert_eq!((again.stored, again.lost), (0, 0));
    assert_eq!(search_offsets(&pool, "word0").await, vec![0]);
    assert_intact(&pool).await;
}
