//! Whether the index can be written, as its writers found it: the kind of the last fault
//! (from SQLite's result code), since when each writer fails, when it last succeeded, and
//! counts per kind. No SQL: the writers (the indexer, the search catch-up, the checkpoints)
//! report here, and `/readyz`, `/api/health`, the banner and `/metrics` read it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sqlx::SqlitePool;

use serde::Serialize;

use super::space::{self, MinFreeSpace, Space};
use crate::clock::now_ms;
use crate::error::Error;

pub use crate::error::FaultKind;

/// Who writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// The indexer's batches (records and positions).
    Indexer,
    /// The search catch-up (the search file).
    Search,
    /// The WAL checkpoints of both files.
    Checkpoint,
    /// Replay jobs recording their results.
    Replay,
    /// Purges applying their chunks.
    Purge,
    /// The backfill of payload bodies not stored while the disk was low.
    Backfill,
}

impl Writer {
    /// Every writer.
    pub const ALL: [Writer; 6] = [
        Writer::Indexer,
        Writer::Search,
        Writer::Checkpoint,
        Writer::Replay,
        Writer::Purge,
        Writer::Backfill,
    ];

    /// The word in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::Indexer => "indexer",
            Writer::Search => "search",
            Writer::Checkpoint => "checkpoint",
            Writer::Replay => "replay",
            Writer::Purge => "purge",
            Writer::Backfill => "backfill",
        }
    }
}

/// Which write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalFile {
    /// The index file's.
    Index,
    /// The search file's.
    Search,
}

impl WalFile {
    /// The word in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            WalFile::Index => "index",
            WalFile::Search => "search",
        }
    }
}

/// A write-ahead log as the last checkpoint found it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WalState {
    /// Size of the log file, bytes.
    pub file_bytes: u64,
    /// Bytes of the log the checkpoint could not copy back (a reader still needs them, or
    /// a writer was adding them).
    pub uncopied_bytes: u64,
    /// Since when more than the bound could not be copied, ms; None while it can.
    pub held_since: Option<i64>,
}

/// The last fault a writer met.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// SQLite's words.
    pub message: String,
    /// When, ms.
    pub at: i64,
}

/// One writer's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriterHealth {
    /// When its last write succeeded, ms; None before the first.
    pub last_ok_at: Option<i64>,
    /// Since when its writes fail (the first failure after the last success), ms; None
    /// while they succeed.
    pub failing_since: Option<i64>,
    /// The last fault, kept after recovery for the record.
    pub last_error: Option<Fault>,
    /// Failed writes per kind since start.
    pub errors: BTreeMap<FaultKind, u64>,
}

impl WriterHealth {
    /// Whether its writes fail now.
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// The fault it fails with now.
    pub fn current(&self) -> Option<&Fault> {
        self.failing_since.and(self.last_error.as_ref())
    }

    /// Seconds since its last successful write (since `started` before the first).
    pub fn seconds_since_ok(&self, started: i64, now: i64) -> i64 {
        (now - self.last_ok_at.unwrap_or(started)).max(0) / 1000
    }
}

/// What happened to the index file itself while the process runs (see `store::restore`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileState {
    /// Since when the file is gone from its path, ms; None while it is there.
    pub removed_since: Option<i64>,
    /// Why writing it back failed last, while it is gone.
    pub write_back_error: Option<String>,
    /// When it was last written back after a removal, ms.
    pub written_back_at: Option<i64>,
    /// Another file stands at its path (the process goes on with the one it opened).
    pub replaced: bool,
}

/// The write state of one index (its file and its search file), shared by its writers and
/// the web edge.
#[derive(Debug)]
pub struct WriteHealth {
    database: PathBuf,
    started: i64,
    writers: Mutex<BTreeMap<Writer, WriterHealth>>,
    wal: Mutex<BTreeMap<WalFile, WalState>>,
    file: Mutex<FileState>,
    min_free: Mutex<Option<MinFreeSpace>>,
}

/// The state of every index open in this process, by file, for writers that reach it
/// through their pool ([`WriteHealth::of`]) rather than by being handed it.
static REGISTERED: LazyLock<Mutex<HashMap<PathBuf, Arc<WriteHealth>>>> =
    LazyLock::new(Mutex::default);

impl WriteHealth {
    /// A fresh state for the index file `database`, which [`WriteHealth::of`] finds from
    /// now on (a dashboard started again on the same file starts afresh).
    pub fn register(database: &Path) -> Arc<Self> {
        let health = Arc::new(WriteHealth::new(database));
        REGISTERED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(database.to_path_buf(), health.clone());
        health
    }

    /// The state of the index `pool` is open on (one made and registered if none was).
    pub fn of(pool: &SqlitePool) -> Arc<Self> {
        let path = pool.connect_options().get_filename().to_path_buf();
        let mut all = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(path.clone())
            .or_insert_with(|| Arc::new(WriteHealth::new(&path)))
            .clone()
    }

    /// A fresh state for the index file `database`: nothing failed yet.
    pub fn new(database: &Path) -> Self {
        WriteHealth {
            database: database.to_path_buf(),
            started: now_ms(),
            writers: Mutex::default(),
            wal: Mutex::default(),
            file: Mutex::default(),
            min_free: Mutex::default(),
        }
    }

    /// What happened to the index file, as `store::restore` found it.
    pub fn file(&self) -> FileState {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Change what is known of the index file.
    pub fn update_file(&self, change: impl FnOnce(&mut FileState)) {
        change(&mut self.file.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Writer, WriterHealth>> {
        // Plain data: a panic elsewhere while holding it leaves it usable.
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The free space below which the indexer stops storing payload bodies
    /// (`--min-free-space`); without one (benches, tools) it always stores them.
    pub fn set_min_free_space(&self, min: MinFreeSpace) {
        *self.min_free.lock().unwrap_or_else(|e| e.into_inner()) = Some(min);
    }

    /// Whether the index's file system has less free space than `--min-free-space` now
    /// (statvfs, microseconds): the indexer then defers payload bodies, and the backfill
    /// waits. False without a threshold or with a threshold of 0, or when statvfs fails (a
    /// missing folder is another writer's fault to report).
    pub fn space_low(&self) -> bool {
        self.space_low_after(0)
    }

    /// Whether a threshold above 0 is set, so that bodies may be deferred at all.
    pub fn defers_bodies(&self) -> bool {
        self.space_low_after(u64::MAX)
    }

    /// Whether writing about `bytes` more would leave less free space than
    /// `--min-free-space` (a threshold of 0 never does: it turns deferring off). A batch is
    /// judged by what it would leave: one large batch started above the threshold could
    /// otherwise fill the disk, be rolled back, find the space above the threshold again,
    /// and fail the same way for ever.
    pub fn space_low_after(&self, bytes: u64) -> bool {
        let Some(min) = *self.min_free.lock().unwrap_or_else(|e| e.into_inner()) else {
            return false;
        };
        space::space_of(&self.database).is_ok_and(|s| {
            let min = min.bytes(s.total);
            min > 0 && s.available.saturating_sub(bytes) < min
        })
    }

    /// The index file.
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// When this state was made (the process started), ms.
    pub fn started(&self) -> i64 {
        self.started
    }

    /// A write of `writer` succeeded.
    pub fn ok(&self, writer: Writer) {
        let mut all = self.lock();
        let w = all.entry(writer).or_default();
        if w.failing_since.take().is_some() {
            tracing::info!(writer = writer.as_str(), "writing to the index works again");
        }
        w.last_ok_at = Some(now_ms());
    }

    /// A write of `writer` failed with `e`; returns its kind.
    pub fn failed(&self, writer: Writer, e: &Error) -> FaultKind {
        let kind = FaultKind::of(e);
        let now = now_ms();
        let mut all = self.lock();
        let w = all.entry(writer).or_default();
        w.failing_since.get_or_insert(now);
        *w.errors.entry(kind).or_default() += 1;
        w.last_error = Some(Fault {
            kind,
            message: e.to_string(),
            at: now,
        });
        kind
    }

    /// A copy of one writer's state.
    pub fn writer(&self, writer: Writer) -> WriterHealth {
        self.lock().get(&writer).cloned().unwrap_or_default()
    }

    /// A copy of every writer's state.
    pub fn writers(&self) -> BTreeMap<Writer, WriterHealth> {
        let all = self.lock();
        Writer::ALL
            .iter()
            .map(|w| (*w, all.get(w).cloned().unwrap_or_default()))
            .collect()
    }

    /// What the last checkpoint of `file` found.
    pub fn set_wal(&self, file: WalFile, file_bytes: u64, uncopied_bytes: u64, held: bool) {
        let mut all = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(file).or_default();
        w.file_bytes = file_bytes;
        w.uncopied_bytes = uncopied_bytes;
        match (held, w.held_since) {
            (true, None) => {
                tracing::warn!(
                    file = file.as_str(),
                    bytes = uncopied_bytes,
                    "the write-ahead log cannot be copied back: a reader holds an old snapshot"
                );
                w.held_since = Some(now_ms());
            }
            (false, Some(_)) => w.held_since = None,
            _ => {}
        }
    }

    /// Both logs as the last checkpoints found them.
    pub fn wal(&self) -> BTreeMap<WalFile, WalState> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The sentence saying that a log is held above its bound, None while none is.
    pub fn wal_sentence(&self) -> Option<String> {
        let all = self.wal();
        let (file, w) = all.iter().find(|(_, w)| w.held_since.is_some())?;
        let which = match file {
            WalFile::Index => "index",
            WalFile::Search => "search index",
        };
        Some(format!(
            "the {which}'s write-ahead log holds {} that cannot be copied back: a reader (a sqlite3 shell, a backup) keeps an old snapshot of {} open; it is copied back and shrinks by itself once that reader ends",
            super::space::human(w.uncopied_bytes),
            self.database.display()
        ))
    }

    /// The sentence saying why `writer` cannot write now, None while it can. `space` is the
    /// file system of the index as it is now, for the free space and read-only state.
    pub fn sentence(&self, writer: Writer, space: Option<&Space>) -> Option<String> {
        let w = self.writer(writer);
        let fault = w.current()?;
        let what = match writer {
            Writer::Indexer => "the index cannot be written",
            Writer::Search => "the search index cannot be written",
            Writer::Checkpoint => "the index's write-ahead log cannot be copied back",
            Writer::Replay => "replay jobs cannot record their results",
            Writer::Purge => "a purge cannot be applied",
            Writer::Backfill => "payloads not stored on a low disk cannot be written back",
        };
        let resumes = match writer {
            Writer::Indexer => "indexing resumes by itself",
            Writer::Search => "search catches up by itself",
            Writer::Checkpoint => "checkpoints resume by itself",
            Writer::Replay => "they go on by themselves",
            Writer::Purge => "it goes on by itself",
            Writer::Backfill => "it goes on by itself",
        };
        let folder = space::folder_of(&self.database);
        let folder = folder.display();
        let read_only = space.is_some_and(|s| s.read_only);
        let wal = space::with_suffix(&self.database, "-wal");
        let search = super::search::path_for(&self.database);
        let files = match writer {
            Writer::Search => vec![search.as_path()],
            _ => vec![self.database.as_path(), wal.as_path()],
        };
        let unwritable = matches!(fault.kind, FaultKind::Io | FaultKind::ReadOnly)
            .then(|| space::unwritable_file(files))
            .flatten();
        Some(match fault.kind {
            _ if read_only => format!(
                "{what}: the file system of {folder} is read-only; {resumes} when it is writable again"
            ),
            _ if unwritable.is_some() => {
                let (file, why) = unwritable.expect("matched");
                format!(
                    "{what}: {} was made read-only ({why}); {resumes} when it is writable again",
                    file.display()
                )
            }
            FaultKind::DiskFull => {
                let free = space
                    .map(|s| format!(" ({} free)", super::space::human(s.available)))
                    .unwrap_or_default();
                format!("{what}: disk full on {folder}{free}; {resumes} when space is freed")
            }
            FaultKind::ReadOnly => format!(
                "{what}: {} is read-only ({}); {resumes} when it is writable again",
                self.database.display(),
                fault.message
            ),
            FaultKind::Busy => format!(
                "{what}: another connection holds its write lock ({}); is a sqlite3 shell or another program writing to {}? {resumes} once it lets go",
                fault.message,
                self.database.display()
            ),
            FaultKind::Io => format!(
                "{what}: the operating system failed a read or write in {folder} ({}); {resumes} once the file system answers again",
                fault.message
            ),
            FaultKind::Corrupt => format!(
                "{what}: the file is damaged ({}); {resumes} once it is repaired or rebuilt",
                fault.message
            ),
            FaultKind::CantOpen => format!(
                "{what}: a file in {folder} cannot be opened ({}); {resumes} once it can",
                fault.message
            ),
            FaultKind::Other => format!("{what} ({}); {resumes} when it can", fault.message),
        })
    }
}

/// A capped exponential pause between failed attempts: `first`, doubled per failure up to
/// `cap`, back to `first` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses from `first` up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// The pause after one more failure.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.cap);
        pause
    }

    /// A success: the next failure waits `first` again.
    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_map_to_kinds_primary_or_extended() {
        assert_eq!(FaultKind::of_code(13), FaultKind::DiskFull);
        // SQLITE_IOERR_WRITE
        assert_eq!(FaultKind::of_code(778), FaultKind::Io);
        // SQLITE_READONLY_DBMOVED
        assert_eq!(FaultKind::of_code(1032), FaultKind::ReadOnly);
        assert_eq!(FaultKind::of_code(5), FaultKind::Busy);
        assert_eq!(FaultKind::of_code(6), FaultKind::Busy);
        assert_eq!(FaultKind::of_code(26), FaultKind::Corrupt);
        assert_eq!(FaultKind::of_code(19), FaultKind::Other);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let pauses: Vec<u128> = (0..5).map(|_| b.failed().as_millis()).collect();
        assert_eq!(pauses, [500, 1000, 2000, 3000, 3000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(500));
    }

    #[test]
    fn a_failing_writer_says_why_and_recovers() {
        let h = WriteHealth::new(Path::new("/data/index.db"));
        assert!(h.sentence(Writer::Indexer, None).is_none());
        let e = Error::Database(sqlx::Error::Database(Box::new(
            crate::store::raw::SqliteFailure::new(13, "database or disk is full"),
        )));
        assert_eq!(h.failed(Writer::Indexer, &e), FaultKind::DiskFull);
        let space = Space {
            available: 3 * 1024 * 1024,
            total: 24 * 1024 * 1024,
            read_only: false,
        };
        assert_eq!(
            h.sentence(Writer::Indexer, Some(&space)).unwrap(),
            "the index cannot be written: disk full on /data (3.0 MiB free); indexing resumes by itself when space is freed"
        );
        h.ok(Writer::Indexer);
        assert!(h.sentence(Writer::Indexer, Some(&space)).is_none());
        let w = h.writer(Writer::Indexer);
        assert_eq!(w.errors.get(&FaultKind::DiskFull), Some(&1));
        assert!(w.last_error.is_some() && !w.failing());
    }
}
