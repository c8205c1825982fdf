//! All SQL lives here, one file per table family. Everything else talks to these functions.

pub mod audit;
pub mod codec;
pub mod deferred;
pub mod events;
pub mod expiry;
pub mod groups;
pub mod health;
pub mod identity;
pub mod items;
pub mod jobs;
pub mod outcomes;
pub mod positions;
pub mod purges;
pub mod raw;
pub mod reclaim;
pub mod records;
pub mod restore;
pub mod retention;
pub mod search;
pub mod selection;
pub mod space;
pub mod stats;
pub mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{
    ConnectOptions, Connection, Database, Sqlite, SqliteConnection, SqlitePool, Transaction,
    TransactionManager,
};
use tokio::sync::OwnedMutexGuard;

use crate::error::{Error, Result};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Open (creating if missing) the SQLite index at `path`, in WAL mode, and migrate it, with
/// its search file next to it (see [`search`]) attached read-only as schema `search` on
/// every connection; its search entries unmasked (see [`open_with`]).
pub async fn open(path: &Path) -> Result<SqlitePool> {
    open_with(path, &crate::redact::SearchMask::default()).await
}

/// [`open`], with the search file's entries masked by `mask` (the configured redaction; a
/// search file built with another is refilled in the background, see [`search`]).
pub async fn open_with(path: &Path, mask: &crate::redact::SearchMask) -> Result<SqlitePool> {
    if let Some(sentence) = space::not_writable(path) {
        return Err(Error::Config(sentence));
    }
    let options = file_options(path);
    let cannot_open = |e: sqlx::Error| {
        Error::Config(format!(
            "The database {} cannot be opened ({e}); check the path and its permissions or pass another --database.",
            path.display()
        ))
    };
    // Migrate on a connection without the search file attached, so that every name in the
    // migrations means this file; then the search file, which needs this file's token.
    let mut conn = options.connect().await.map_err(cannot_open)?;
    MIGRATOR.run(&mut conn).await?;
    let token: String = sqlx::query_scalar("SELECT token FROM store_identity")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    let search_file = search::path_for(path);
    search::configure(path, mask);
    search::prepare(&search_file, &token, mask).await?;
    let attach = search::attach_uri(&search_file);
    let rebuilt = search_rebuilds(path);
    SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        // A connection older than the last rebuild of the search file still has the old
        // file attached (deleted or corrupt): closed, and a new one attaches the new file.
        .before_acquire(move |_, meta| {
            let rebuilt = rebuilt.clone();
            Box::pin(async move { Ok(!rebuilt.predates(meta.age)) })
        })
        // A connection goes back to the pool only outside any transaction; see [`is_clean`].
        .after_release(|conn, _| Box::pin(async move { Ok(is_clean(conn).await) }))
        .after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                sqlx::query(search::ATTACH_SQL)
                    .bind(attach)
                    .execute(&mut *conn)
                    .await?;
                // An attached file has a page cache of its own, 2 MiB by default; the search
                // pages used to share the 8 MiB above. 4 MiB holds the doclist of a term found
                // in every record at 1M records (a search for a rare key of a common shape
                // reads one).
                sqlx::query("PRAGMA search.cache_size = -4000")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        // Only the first connection above may create the file: one made later, after the
        // file was removed while the process runs, would otherwise start an empty index in
        // its place (see `restore`, which writes the index back instead).
        .connect_with(options.create_if_missing(false))
        .await
        .map_err(cannot_open)
}

/// How every file of the index is opened: WAL, its durability, page cache and checkpoints.
pub(crate) fn file_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL is durable against process crashes (the case the indexer guards
        // against); only an OS crash can lose the last transactions, which are then re-read
        // from Kafka because their positions were lost with them (for the search file: rows
        // above the mark, which the catch-up adds again).
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        // 8 MiB of page cache per connection (4 at most) keeps a large index fast (page and
        // search p99 under 4 ms at 1M records) and the process small: with 16 MiB a
        // million-record replay grew the process by 73 MiB, with 8 MiB by 36 MiB.
        .pragma("cache_size", format!("-{CACHE_KIB}"))
        // Temporary b-trees stay in the page cache while small and spill to a temporary
        // file when large: in memory, the sort behind a million-record replay preview
        // grew the process by more than 100 MiB.
        .pragma("temp_store", "file")
        // Checkpoints run on their own connection (`checkpoints::run`, `checkpoints::run_on`), alongside the
        // writers; this threshold (~160 MB of log) only bounds the log of a process that
        // does not run it.
        .pragma("wal_autocheckpoint", "40000")
}

/// Page cache every connection keeps, in KiB (SQLite's `cache_size` as a negative number).
const CACHE_KIB: i64 = 8_000;

/// Page cache of a connection while it writes one of the indexer's batches, in KiB. A batch
/// of 5,000 records of ~1 KiB dirties ~10 MB of pages (bodies, rows and nine index entries
/// each). In the 8 MiB every connection keeps, SQLite spilled dirty pages into the log in
/// the middle of the transaction, and wrote the index pages the batch kept changing more than
/// once: a tenth of the batch's time. The cache is lowered again before the commit, so the
/// pages beyond the usual size are freed as the commit makes them clean.
const BATCH_CACHE_KIB: i64 = 16_000;

/// Give the connection of a write transaction the larger cache of a batch (`batch`) or the
/// usual one back.
pub(crate) async fn batch_cache(conn: &mut sqlx::SqliteConnection, batch: bool) -> Result<()> {
    let kib = if batch { BATCH_CACHE_KIB } else { CACHE_KIB };
    sqlx::query(&format!("PRAGMA cache_size = -{kib}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// One writer queue per database file in this process.
static WRITERS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

/// A write transaction (`BEGIN IMMEDIATE`) holding this process's turn to write its file:
/// the only way the crate writes the index in more than one statement. It derefs to the
/// connection, so queries run on `&mut *tx`.
///
/// Dropped without [`WriteTx::commit`] (an early `?`, a cancelled future), it rolls back:
/// sqlx queues the `ROLLBACK`, which runs before the connection is used again, and the
/// turn passes on only after that is queued (fields drop in order). When SQLite has already
/// rolled the transaction back itself, as it does on SQLITE_FULL, SQLITE_IOERR and some
/// SQLITE_BUSY in mid-statement, that `ROLLBACK` fails ("no transaction is active") and
/// sqlx still counts the transaction open on that connection: every later `BEGIN IMMEDIATE`
/// on it failed with "attempted to call begin_with at non-zero transaction depth" (issue 14).
/// The pool therefore takes a connection back only when SQLite and sqlx agree that it is
/// outside any transaction ([`is_clean`]); any other is closed, and the next writer gets a
/// fresh one.
///
/// On the index's pool it is `WriteTx<'static>` ([`begin_write`]); on a connection of its
/// own to the search file it borrows that connection (`search::begin_write`).
pub struct WriteTx<'c> {
    tx: Transaction<'c, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl WriteTx<'_> {
    /// Make the transaction durable; the turn passes on.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Undo the transaction now rather than on drop.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Begin a write transaction once this process's earlier writers to the same file are done.
///
/// SQLite lets one connection write at a time. A second `BEGIN IMMEDIATE` meets SQLITE_BUSY,
/// and the busy handler sleeps 1, 2, 5, 10... ms before trying again, so with the indexer,
/// the search catch-up and a claimer and a recorder per running replay job, the writer lock
/// sat idle while writers slept (bulk replay varied between 21k and 32k msg/s without this
/// queue, 30k to 34k with it). Writers queue here in order instead and begin as soon as the
/// previous one commits. The busy timeout still covers writers that do not queue
/// (single-statement updates, other processes).
pub async fn begin_write(pool: &SqlitePool) -> Result<WriteTx<'static>> {
    // The turn first, then a connection: a writer never holds a connection while it
    // queues, so readers (pages, the replay feeder) are not starved of connections by
    // queued writers, and a writer that needed a second connection could not deadlock.
    let turn = write_turn(pool).await;
    let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    Ok(WriteTx { tx, _turn: turn })
}

/// Run `f` in a write transaction begun and ended on the SQLite handle itself, on the
/// calling thread, and return what it returns: for short chunks that many other writers
/// queue behind (a purge's apply).
///
/// The connection is taken and sqlx's worker handed the handle over *before* the turn, so
/// that from the turn to the commit nothing waits on another thread. Through a [`WriteTx`],
/// the `BEGIN`, the statements and the `COMMIT` each went to the connection's worker thread
/// and back while the turn was held, and on a loaded 2-core machine each hand-over could
/// wait for a core with every other writer waiting behind it. It holds one connection while
/// it queues, which is why only short single-connection work uses it.
///
/// Rolled back before the turn passes on when `f` or the `COMMIT` fails; a connection that
/// is still inside a transaction after that (the `ROLLBACK` failed too) is closed rather
/// than given back to the pool, where sqlx, which never saw this transaction, would count
/// it clean.
///
/// Returns `f`'s value and how long the turn was held (from the turn to the commit).
pub async fn write_on_handle<R>(
    pool: &SqlitePool,
    f: impl FnOnce(&raw::Handle<'_>) -> Result<R>,
) -> Result<(R, Duration)> {
    // One such writer waits with a connection at a time: the pool (4) always has one
    // left for the writer holding the turn, which takes its connection after the turn.
    let _one = HANDLE_WRITERS.acquire().await.expect("never closed");
    let mut conn = pool.acquire().await?;
    let mut locked = conn.lock_handle().await?;
    let turn = write_turn(pool).await;
    let started = Instant::now();
    let db = raw::handle_of(&mut locked);
    let out = db
        .run("BEGIN IMMEDIATE")
        .and_then(|_| f(&db))
        .and_then(|r| db.run("COMMIT").map(|_| r));
    if out.is_err() && !db.autocommit() {
        let _ = db.run("ROLLBACK");
    }
    let stuck = !db.autocommit();
    drop(turn);
    let held = started.elapsed();
    drop(locked);
    if stuck {
        conn.close_on_drop();
    }
    out.map(|r| (r, held))
}

/// Writers of [`write_on_handle`] waiting for their turn with a connection taken: one.
static HANDLE_WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// This process's turn to write the file `pool` is open on, without a transaction: held,
/// no writer of this process that queues (every [`begin_write`]) can write.
pub(crate) async fn write_turn(pool: &SqlitePool) -> OwnedMutexGuard<()> {
    file_turn(pool.connect_options().get_filename()).await
}

/// This process's turn to write the file at `path`.
async fn file_turn(path: &Path) -> OwnedMutexGuard<()> {
    let queue = {
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        writers.entry(path.to_path_buf()).or_default().clone()
    };
    queue.lock_owned().await
}

/// Begin a write transaction on `conn`, a connection of its own to the file at `path` (the
/// search file), once this process's earlier writers to that file that queue are done: as
/// [`begin_write`], and rolled back on drop like it.
pub(crate) async fn begin_write_on<'c>(
    conn: &'c mut SqliteConnection,
    path: &Path,
) -> Result<WriteTx<'c>> {
    let turn = file_turn(path).await;
    let tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    Ok(WriteTx { tx, _turn: turn })
}

/// Whether a connection is outside any transaction, as both SQLite and sqlx see it. Run on
/// its release to the pool, after the `ROLLBACK` that a dropped transaction queued.
///
/// A depth of 0 needs no look at SQLite: only a transaction sqlx counts can be open (no
/// code begins one by hand), and a dropped one keeps the depth above 0 until its queued
/// `ROLLBACK` has run. So the common release (a read, a committed write) costs nothing; a
/// transaction dropped without commit costs one round trip to the connection's worker,
/// which runs the queued `ROLLBACK` before it answers.
async fn is_clean(conn: &mut SqliteConnection) -> bool {
    if <Sqlite as Database>::TransactionManager::get_transaction_depth(conn) == 0 {
        return true;
    }
    let autocommit = match raw::with_handle(conn, |db| Ok(db.autocommit())).await {
        Ok(a) => a,
        Err(_) => return false,
    };
    let depth = <Sqlite as Database>::TransactionManager::get_transaction_depth(conn);
    if !(autocommit && depth == 0) {
        tracing::warn!(
            autocommit,
            depth,
            "a connection left inside a transaction (SQLite rolled it back on an error, or a ROLLBACK failed) is closed instead of reused"
        );
        return false;
    }
    true
}

/// When a file of an index was last made anew while the process ran: the search file
/// rebuilt (`store::search::rebuild`) or the index file written back (`store::restore`),
/// for the pool to retire the connections opened on the old files.
#[derive(Debug, Default)]
pub(crate) struct SearchRebuilds {
    /// Nanoseconds after [`EPOCH`] of the last rebuild; 0 for none.
    at: AtomicU64,
}

/// The process's reference instant for [`SearchRebuilds`].
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl SearchRebuilds {
    /// A rebuild happened now.
    pub(crate) fn mark(&self) {
        let nanos = EPOCH.elapsed().as_nanos().max(1) as u64;
        self.at.store(nanos, Ordering::Release);
    }

    /// Whether a connection of this age was made before the last rebuild.
    fn predates(&self, age: Duration) -> bool {
        match self.at.load(Ordering::Acquire) {
            0 => false,
            at => {
                let since = EPOCH.elapsed().saturating_sub(Duration::from_nanos(at));
                age > since
            }
        }
    }
}

static REBUILDS: LazyLock<Mutex<HashMap<PathBuf, Arc<SearchRebuilds>>>> =
    LazyLock::new(Mutex::default);

/// The rebuild marks of the index file `path`.
pub(crate) fn search_rebuilds(path: &Path) -> Arc<SearchRebuilds> {
    let mut all = REBUILDS.lock().unwrap_or_else(|e| e.into_inner());
    all.entry(path.to_path_buf()).or_default().clone()
}

/// Size of the database file in bytes (pages in use times page size).
pub async fn database_size(pool: &SqlitePool) -> Result<i64> {
    let (pages, size): (i64, i64) =
        sqlx::query_as("SELECT (SELECT page_count FROM pragma_page_count()), (SELECT page_size FROM pragma_page_size())")
            .fetch_one(pool)
            .await?;
    Ok(pages * size)
}
