//! The search index, in a file of its own, filled behind the indexer.
//!
//! Tokenising and indexing the text of a record took a third of the indexer's write
//! transaction. The indexer stores rows only, and this catch-up adds their text to
//! `records_fts` in transactions of its own, in row id order, advancing
//! `search_progress.indexed_through` (the search mark) with the rows it covers. So:
//! - every record with `id <= indexed_through` is in the search index, every record above
//!   it is not yet (search results are complete up to that row, and [`progress`] says how
//!   many newer records are still waiting, for pages to show);
//! - a crash or restart resumes at the stored mark, never skipping or repeating a row.
//!
//! Both live in the search file, [`path_for`] the index file (`dlq-dashboard.db` ->
//! `dlq-dashboard.search.db`), with migrations of their own in `migrations/search/`. The
//! catch-up writes it through a connection of its own ([`connect`]) and only reads the
//! index, so it never waits for the indexer's writer lock nor holds it up: it runs alongside
//! on another core, at full speed whenever it is behind. Every connection of the index's
//! pool attaches the search file read-only as schema `search` (see `store::open`), which is
//! how listings join `search.records_fts` to `records`. Read-only matters: `BEGIN IMMEDIATE`
//! takes the writer lock of every database attached read-write.
//!
//! The search file is derived data. Missing (first start, upgrade from a single-file index,
//! deleted while stopped), it is created empty and refilled from the first record in the
//! background; built from another index file (that file replaced while this one stayed), it
//! is emptied and refilled (see [`prepare`]).
//!
//! Redaction: the entries hold the text as the most restricted caller sees it
//! (`redact::SearchMask`: configured JSON fields masked, an error class or message that a
//! redacted header can fill left out), so a search cannot find, or list records by, a masked
//! value. The mask is stored in the file (`search_progress.redaction`); a file built with
//! another mask than the configured one is emptied and refilled in the background like one
//! built from another index file, while pages keep working and say how far behind search
//! is. Every writer (the catch-up, purge erase, reclaim) makes text with [`mask`], the mask
//! stored in the file it writes, never a copy of its own, so an entry is always removed with
//! the text it was made from.
//!
//! Row ids: the catch-up only ever looks above the mark, so a record must never get an id at
//! or below it. The indexer sees to that (`records::insert_batch`), since SQLite would hand
//! out the id of a deleted newest row again.
//!
//! Removing records (a purge that deletes rows, not yet written) must also remove their
//! search entries, which a contentless FTS5 table can only do given the original text (the
//! `'delete'` command with the same key, body and error text, made as [`SELECT_SQL`] and
//! the stored [`mask`] make them). Only rows at or below the mark have entries. The catch-up holds
//! the search file's writer lock from before it reads rows until it has committed their
//! entries, so a purge does, in this order: take the search file's writer lock (a write
//! transaction on a [`connect`]ed connection), read the mark, delete the entries of the
//! doomed rows at or below it, delete the rows in the index file and commit that, then commit
//! the search file. No catch-up is then half-way through rows that disappear, and the mark
//! stays above the deleted ids, so the indexer never hands them out again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};

use super::codec;
use super::raw::{with_handle, STATEMENTS_PER_HOLD};
use crate::error::{Error, Result};
use crate::index::record::{SearchText, SEARCH_PREFIX_BYTES};
use crate::redact::SearchMask;

/// The migrations of the search file, in `migrations/search/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/search");

/// Rows per catch-up transaction: as many as the indexer writes in one.
pub const CATCH_UP_ROWS: i64 = 5000;
/// How far the search index has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchProgress {
    /// Every record with an id up to this one is searchable.
    pub indexed_through: i64,
    /// The newest record's id.
    pub newest: i64,
}

impl SearchProgress {
    /// Whether every stored record is searchable.
    pub fn complete(&self) -> bool {
        self.indexed_through >= self.newest
    }

    /// Records stored but not searchable yet (an upper bound when ids have gaps).
    pub fn pending(&self) -> i64 {
        (self.newest - self.indexed_through).max(0)
    }
}

/// The search file of the index file `database`: `.search` before its extension
/// (`dlq-dashboard.db` -> `dlq-dashboard.search.db`), or appended when it has none.
pub fn path_for(database: &Path) -> PathBuf {
    let mut name = database
        .file_stem()
        .unwrap_or(database.as_os_str())
        .to_os_string();
    name.push(".search");
    if let Some(ext) = database.extension() {
        name.push(".");
        name.push(ext);
    }
    database.with_file_name(name)
}

/// The search file of the index a pool is open on.
pub fn path_of(pool: &SqlitePool) -> PathBuf {
    path_for(pool.connect_options().get_filename())
}

/// How the search file is opened for writing: as the index file.
pub fn connect_options(search_file: &Path) -> SqliteConnectOptions {
    super::file_options(search_file)
}

/// The statement every connection of the index's pool runs to see the search file, read
/// only, as schema `search`; bind [`attach_uri`].
pub const ATTACH_SQL: &str = "ATTACH DATABASE ?1 AS search";

/// The search file as a read-only SQLite URI for [`ATTACH_SQL`] (sqlx opens connections with
/// URI file names enabled).
pub fn attach_uri(search_file: &Path) -> String {
    let mut uri = String::from("file:");
    for c in search_file.to_string_lossy().chars() {
        match c {
            // Characters with a meaning in a URI, escaped as SQLite decodes them.
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// The search masks configured per index file (see [`configure`]), for a search file made
/// anew while the process runs ([`rebuild`]).
static CONFIGURED: LazyLock<Mutex<HashMap<PathBuf, SearchMask>>> = LazyLock::new(Mutex::default);

/// The search mask configured for the index file `database` from now on.
pub fn configure(database: &Path, mask: &SearchMask) {
    let mut all = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner());
    all.insert(database.to_path_buf(), mask.clone());
}

/// The search mask configured for the index file `database` (none until [`configure`]d).
pub fn configured(database: &Path) -> SearchMask {
    let all = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner());
    all.get(database).cloned().unwrap_or_default()
}

/// The mask the search file's entries are made with, read on a connection to that file
/// ([`connect`]), inside the transaction that writes them. A stored mask that cannot be read
/// (never written by this program) is refused rather than guessed.
pub async fn mask(search: &mut SqliteConnection) -> Result<SearchMask> {
    let spec: String = sqlx::query_scalar("SELECT redaction FROM search_progress")
        .fetch_one(&mut *search)
        .await?;
    SearchMask::from_spec(&spec).ok_or_else(|| {
        Error::Config(
            "The search index records a redaction this version cannot read; delete the search file to have it rebuilt.".into(),
        )
    })
}

/// Create and migrate the search file of the index whose `store_identity` token is
/// `store_token`, before any connection attaches it; empty it when it was built from another
/// index file or with another redaction than `mask`, so that the catch-up refills it.
pub async fn prepare(search_file: &Path, store_token: &str, mask: &SearchMask) -> Result<()> {
    if !search_file.exists() {
        // A log left without its database file (deleted while stopped) would be replayed into
        // the new, empty file: remove it first.
        for suffix in ["-wal", "-shm"] {
            super::space::remove_if_present(&super::space::with_suffix(search_file, suffix))?;
        }
    }
    let mut conn = connect_options(search_file)
        .connect()
        .await
        .map_err(|e| {
            Error::Config(format!(
                "The search index {} cannot be opened ({e}); check its folder's permissions, or delete the file to have it rebuilt.",
                search_file.display()
            ))
        })?;
    // `run_direct`, not `run`: `run` is generic over `Acquire`, whose future is not `Send`
    // for every lifetime, and the search file is also prepared inside a spawned task.
    MIGRATOR.run_direct(&mut conn).await?;
    let (through, token, redaction): (i64, Option<String>, String) =
        sqlx::query_as("SELECT indexed_through, store_token, redaction FROM search_progress")
            .fetch_one(&mut conn)
            .await?;
    let spec = mask.spec();
    let other_file = token.as_deref() != Some(store_token);
    if other_file || redaction != spec {
        if other_file && (through > 0 || token.is_some()) {
            tracing::warn!(
                file = %search_file.display(),
                "the search index was built from another index file; rebuilding it"
            );
        } else if !other_file {
            tracing::warn!(
                file = %search_file.display(),
                "the search index was built with another redaction (--redact-json-fields, --redact-headers); rebuilding it in the background"
            );
        }
        let mut tx = conn.begin().await?;
        // 'delete-all' is how a contentless FTS5 table is emptied.
        sqlx::query("INSERT INTO records_fts (records_fts) VALUES ('delete-all')")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE search_progress SET indexed_through = 0, store_token = ?, redaction = ?",
        )
        .bind(store_token)
        .bind(&spec)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    conn.close().await?;
    Ok(())
}

/// Whether the search file of the index `pool` is open on is gone from its place (deleted
/// while the process runs).
pub fn missing(pool: &SqlitePool) -> bool {
    !path_of(pool).exists()
}

/// Whether the search file's first bytes are no longer SQLite's header (the file was
/// overwritten while the process runs). Cheap enough for every round of the catch-up: the
/// catch-up's own connection may go on with pages it has cached while every new connection
/// of the pool fails on the file ("file is not a database"). A file shorter than the header
/// is fine: in WAL mode a young file's pages may all still be in its log.
pub fn header_damaged(pool: &SqlitePool) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    match std::fs::File::open(path_of(pool)).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) => &head != b"SQLite format 3\0",
        Err(_) => false,
    }
}

/// Whether the search file fails SQLite's own check (or cannot be read as a database), on a
/// connection of its own.
pub async fn damaged(pool: &SqlitePool) -> bool {
    match quick_check(pool).await {
        Ok(verdict) => verdict != "ok",
        Err(e) => super::health::FaultKind::of(&e) == super::health::FaultKind::Corrupt,
    }
}

/// SQLite's `quick_check` of the search file: "ok" or the first problem.
async fn quick_check(pool: &SqlitePool) -> Result<String> {
    let mut conn = connect(pool).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check(1)")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(verdict)
}

/// Make the search file anew, empty, after it was deleted or found damaged while the
/// process runs, and have the pool retire its connections that attached the old one (see
/// `store::open`); the catch-up then refills it from the first record. Derived data only:
/// nothing is lost that the records do not hold.
pub async fn rebuild(pool: &SqlitePool) -> Result<()> {
    let file = path_of(pool);
    for suffix in ["", "-wal", "-shm"] {
        super::space::remove_if_present(&super::space::with_suffix(&file, suffix))?;
    }
    // Read on a connection of its own: a new connection of the pool attaches the search
    // file, which fails while there is none (the pool's older connections may all have been
    // retired, when the index file was written back after its folder was removed).
    let mut index = (*pool.connect_options()).clone().connect().await?;
    let token: String = sqlx::query_scalar("SELECT token FROM store_identity")
        .fetch_one(&mut index)
        .await?;
    index.close().await?;
    let database = pool.connect_options().get_filename().to_path_buf();
    prepare(&file, &token, &configured(&database)).await?;
    super::search_rebuilds(pool.connect_options().get_filename()).mark();
    Ok(())
}

/// A connection that writes the search file of the index `pool` is open on.
/// Never creates the file: one missing is made by [`rebuild`], with its tables.
pub async fn connect(pool: &SqlitePool) -> Result<SqliteConnection> {
    Ok(connect_options(&path_of(pool))
        .create_if_missing(false)
        .connect()
        .await?)
}

/// A write transaction on `search`, a [`connect`]ed connection to the search file of the
/// index `pool` is open on, in this process's queue of that file's writers: rolled back if
/// dropped without a commit, like every write transaction of the index (`store::WriteTx`).
pub async fn begin_write<'c>(
    pool: &SqlitePool,
    search: &'c mut SqliteConnection,
) -> Result<super::WriteTx<'c>> {
    super::begin_write_on(search, &path_of(pool)).await
}

/// Where the search index stands relative to the records.
pub async fn progress(pool: &SqlitePool) -> Result<SearchProgress> {
    let (indexed_through, newest): (i64, i64) = sqlx::query_as(
        "SELECT indexed_through, (SELECT COALESCE(MAX(id), 0) FROM main.records) FROM search.search_progress",
    )
    .fetch_one(pool)
    .await?;
    Ok(SearchProgress {
        indexed_through,
        newest,
    })
}

/// The search mark, through a connection of the index's pool (the attached search file).
pub async fn indexed_through(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT indexed_through FROM search.search_progress")
            .fetch_one(conn)
            .await?,
    )
}

/// Add the text of up to `max_rows` records past the mark to the search index and move the
/// mark past them, in one transaction of the search file (`search`, from [`connect`]); the
/// records are read from the index (`pool`) without a write lock. Returns how many records
/// were added.
pub async fn catch_up(
    pool: &SqlitePool,
    search: &mut SqliteConnection,
    max_rows: i64,
) -> Result<usize> {
    // The search file's writer lock first: the mark cannot move until this commits.
    let mut tx = search.begin_with("BEGIN IMMEDIATE").await?;
    let through: i64 = sqlx::query_scalar("SELECT indexed_through FROM search_progress")
        .fetch_one(&mut *tx)
        .await?;
    let mask = mask(&mut tx).await?;
    let rows = read_texts(pool, &mask, through, max_rows).await?;
    let Some(&(last, _)) = rows.last() else {
        tx.rollback().await?;
        return Ok(0);
    };
    for chunk in rows.chunks(STATEMENTS_PER_HOLD) {
        with_handle(&mut tx, |db| {
            let mut insert = db.prepare(INSERT_SQL)?;
            for (id, t) in chunk {
                insert.int(1, *id)?;
                insert.text(2, Some(&t.key_text))?;
                insert.text(3, Some(&t.body_text))?;
                insert.text(4, Some(&t.error_text))?;
                insert.execute()?;
            }
            Ok(())
        })
        .await?;
        tokio::task::yield_now().await;
    }
    sqlx::query("UPDATE search_progress SET indexed_through = ?")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// The search text of up to `max_rows` records after id `through`, oldest first, read in one
/// statement (one snapshot of the index), masked with the search file's `mask`.
async fn read_texts(
    pool: &SqlitePool,
    mask: &SearchMask,
    through: i64,
    max_rows: i64,
) -> Result<Vec<(i64, SearchText)>> {
    let mut conn = pool.acquire().await?;
    with_handle(&mut conn, |db| {
        let mut rows = db.prepare(SELECT_SQL)?;
        rows.int(1, SEARCH_PREFIX_BYTES as i64)?;
        rows.int(2, through)?;
        rows.int(3, max_rows)?;
        let mut out = Vec::with_capacity(usize::try_from(max_rows).unwrap_or(0).min(65_536));
        while let Some(row) = rows.next_row()? {
            let text = |i| row.bytes(i).map(String::from_utf8_lossy);
            let (class, message) = (text(3), text(4));
            let value = codec::search_prefix(row.bytes(2), row.int(5), SEARCH_PREFIX_BYTES);
            let t = mask.text(
                row.bytes(1),
                value.as_deref(),
                class.as_deref(),
                message.as_deref(),
            );
            out.push((row.int(0), t));
        }
        Ok(out)
    })
    .await
}

/// The stored fields a record's search text is made from (id, key, value, error class,
/// error message), past the mark, oldest first, read on a connection of the index's pool.
/// Only the prefix that is searched is read: a 10 MiB payload costs 2 KiB here (a
/// compressed one its whole frame, of which only the prefix is decoded, `codec::search_prefix`).
pub const SELECT_SQL: &str =
    "SELECT id, substr(key, 1, ?1), CASE b.codec WHEN 0 THEN substr(b.value, 1, ?1) ELSE b.value END, error_class, error_message, b.codec
     FROM records JOIN record_bodies b ON b.record_id = records.id
     WHERE id > ?2 ORDER BY id LIMIT ?3";

/// One search-index row, on a search-file connection: rowid = records.id.
pub const INSERT_SQL: &str =
    "INSERT INTO records_fts (rowid, key_text, body, error_text) VALUES (?1, ?2, ?3, ?4)";

/// Removes one entry of the contentless search table, on a search-file connection, given the
/// text it was made from (rowid, key, body and error text, as [`INSERT_SQL`] took them).
pub const DELETE_SQL: &str = "INSERT INTO records_fts (records_fts, rowid, key_text, body, error_text) VALUES ('delete', ?1, ?2, ?3, ?4)";

/// One search entry to change: taken out given the text it was made from (`old`), and put
/// back with `new` when there is one (a record that keeps its row but loses its payload), or
/// not (a record removed).
#[derive(Debug, Clone)]
pub struct EntryChange {
    /// records.id.
    pub id: i64,
    /// The text the entry holds now.
    pub old: SearchText,
    /// The text it holds after, if it stays.
    pub new: Option<SearchText>,
}

impl EntryChange {
    /// The entry of a record that keeps its row but loses its payload: the same key and
    /// error text, no body.
    pub fn without_payload(id: i64, old: SearchText) -> Self {
        let new = SearchText {
            body_text: String::new(),
            ..old.clone()
        };
        EntryChange {
            id,
            old,
            new: Some(new),
        }
    }

    /// The entry of a record removed from the index.
    pub fn removed(id: i64, old: SearchText) -> Self {
        EntryChange { id, old, new: None }
    }
}

/// The text the search entries of the listed records hold, read from the index (`conn`, a
/// connection of the pool or the caller's write transaction) as the catch-up made it: only
/// records at or below the search mark `mark` have entries, masked with the search file's
/// `mask` ([`mask`]). Read before their payloads or
/// rows change: a contentless FTS5 table removes an entry only given the same text.
pub async fn entry_texts(
    conn: &mut SqliteConnection,
    ids: &[i64],
    mark: i64,
    mask: &SearchMask,
) -> Result<Vec<(i64, SearchText)>> {
    type Row = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, substr(r.key, 1, ?2),
                CASE b.codec WHEN 0 THEN substr(b.value, 1, ?2) ELSE b.value END,
                r.error_class, r.error_message, b.codec
         FROM records r LEFT JOIN record_bodies b ON b.record_id = r.id
         WHERE r.id IN (SELECT value FROM json_each(?1)) AND r.id <= ?3",
    )
    .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    .bind(SEARCH_PREFIX_BYTES as i64)
    .bind(mark)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key, value, class, message, codec)| {
            // Decoded as the catch-up decoded it, so the entry is removed with its own text.
            let value =
                codec::search_prefix(value.as_deref(), codec.unwrap_or(0), SEARCH_PREFIX_BYTES);
            (
                id,
                mask.text(
                    key.as_deref(),
                    value.as_deref(),
                    class.as_deref(),
                    message.as_deref(),
                ),
            )
        })
        .collect())
}

/// Run [`DELETE_SQL`] or [`INSERT_SQL`] for one entry.
fn bind_entry<'a>(s: &mut super::raw::Statement<'a>, id: i64, t: &'a SearchText) -> Result<u64> {
    s.int(1, id)?;
    s.text(2, Some(&t.key_text))?;
    s.text(3, Some(&t.body_text))?;
    s.text(4, Some(&t.error_text))?;
    s.execute()
}

/// Change search entries, on the search file's write transaction (`search`), which the
/// caller took first and commits after the index's (see the module's notes on removing
/// records): each old entry is deleted, and its new text inserted when it has one. The one
/// place that takes entries out of the search file, for erase, reclaim and retention.
pub async fn change_entries(
    search: &mut SqliteConnection,
    changes: &[EntryChange],
    scrub: Scrub,
) -> Result<()> {
    // The table's secure-delete option (search migration 0002) is a stored setting: turned
    // off and on again inside the caller's transaction, no other connection ever sees it off.
    if scrub == Scrub::No {
        set_secure_delete(search, false).await?;
    }
    for chunk in changes.chunks(STATEMENTS_PER_HOLD / 2) {
        with_handle(&mut *search, |db| {
            let mut delete = db.prepare(DELETE_SQL)?;
            let mut insert = db.prepare(INSERT_SQL)?;
            for c in chunk {
                bind_entry(&mut delete, c.id, &c.old)?;
                if let Some(new) = &c.new {
                    bind_entry(&mut insert, c.id, new)?;
                }
            }
            Ok(())
        })
        .await?;
        tokio::task::yield_now().await;
    }
    if scrub == Scrub::No {
        set_secure_delete(search, true).await?;
    }
    Ok(())
}

/// Whether the entries [`change_entries`] takes out are scrubbed from the file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrub {
    /// Taken out of the index's pages at once (FTS5 secure-delete), so that the words are
    /// no longer in the file: an erase. It rewrites the pages of every word of the entry,
    /// about 2-3 ms for an entry of 2 KiB of text.
    Yes,
    /// Masked by a delete marker until FTS5 merges the segments (the words stay in the
    /// file until then, found by no search): for records removed to bound the index
    /// (retention), where scrubbing made the cleanup 353 records/s.
    No,
}

async fn set_secure_delete(search: &mut SqliteConnection, on: bool) -> Result<()> {
    sqlx::query("INSERT INTO records_fts (records_fts, rank) VALUES ('secure-delete', ?1)")
        .bind(i64::from(on))
        .execute(&mut *search)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_file_sits_next_to_the_index_with_search_before_the_extension() {
        assert_eq!(
            path_for(Path::new("/data/dlq-dashboard.db")),
            Path::new("/data/dlq-dashboard.search.db")
        );
        assert_eq!(
            path_for(Path::new("index.sqlite3")),
            Path::new("index.search.sqlite3")
        );
        assert_eq!(
            path_for(Path::new("dir/index")),
            Path::new("dir/index.search")
        );
    }

    #[test]
    fn the_attach_uri_is_read_only_and_escapes_uri_characters() {
        assert_eq!(
            attach_uri(Path::new("/d/a?b#c%d.search.db")),
            "file:/d/a%3Fb%23c%25d.search.db?mode=ro"
        );
    }
}
