//! The background task that checkpoints the index's write-ahead logs (the SQL is
//! `store::wal::checkpoint`; why it runs here and not on commit is explained there).
//!
//! A checkpoint copies only the frames no reader still needs: a reader that holds a
//! transaction open (an operator's `sqlite3` shell, a backup) keeps every frame written
//! after its snapshot in the log, which then grows without bound for as long as it holds.
//! Each round therefore also measures what the checkpoint could not copy: above the bound
//! (`--max-wal-size`) the log is reported held (banner, `/api/health`, metrics), and once
//! the reader has gone and everything was copied, a log file left larger than the bound is
//! truncated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::store::health::{WalFile, WriteHealth, Writer};
use crate::store::restore::file_id;
use crate::store::wal::{checkpoint, page_size, truncate};

/// How often the log is copied back into the database file.
const EVERY: Duration = Duration::from_millis(500);

/// What a checkpoint task watches and reports.
#[derive(Clone)]
pub struct Watch {
    /// Which file, in reports.
    pub file: WalFile,
    /// Where write faults and the log's state are reported.
    pub health: Arc<WriteHealth>,
    /// A log that could not be copied past this many bytes is reported held; a log file
    /// left larger than this after a complete checkpoint is truncated.
    pub max_wal_bytes: u64,
}

/// Checkpoint the file `pool` is open on regularly until `shutdown` (see [`run_on`]).
pub async fn run(pool: SqlitePool, watch: Watch, shutdown: CancellationToken) {
    run_on((*pool.connect_options()).clone(), watch, shutdown).await
}

/// The checkpoint connection, the identity of the file it opened, and its page size.
type Open = (SqliteConnection, Option<(u64, u64)>, i64);

/// Checkpoint the file `options` open regularly until `shutdown`, on a connection of its
/// own: it takes no connection from the pages, and a checkpoint that takes a second during a
/// backlog is expected, not a slow statement to warn about. (The index's search file has a
/// log of its own, checkpointed by a second one of these.) A file replaced under the
/// connection (the search file made anew) gets a new connection.
pub async fn run_on(options: SqliteConnectOptions, watch: Watch, shutdown: CancellationToken) {
    let path: PathBuf = options.get_filename().to_path_buf();
    let mut wal_path = path.clone().into_os_string();
    wal_path.push("-wal");
    let wal_path = PathBuf::from(wal_path);
    let options = options.disable_statement_logging();
    let mut conn: Option<Open> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if conn
            .as_ref()
            .is_some_and(|(_, id, _)| *id != file_id(&path))
        {
            conn = None;
        }
        let result = async {
            if conn.is_none() {
                let mut c = options.connect().await?;
                let page = page_size(&mut c).await?;
                conn = Some((c, file_id(&path), page));
            }
            let Some((c, _, page)) = conn.as_mut() else {
                return Ok(());
            };
            let (log, copied) = checkpoint(c).await?;
            let frame = (*page as u64) + 24;
            let behind = (log - copied).max(0) as u64 * frame;
            let file_bytes = std::fs::metadata(&wal_path).map_or(0, |m| m.len());
            let held = behind > watch.max_wal_bytes;
            watch.health.set_wal(watch.file, file_bytes, behind, held);
            if log == copied && file_bytes > watch.max_wal_bytes {
                // Everything is copied and no reader holds an older snapshot: emptying the
                // log now costs a moment's wait for the writer at most.
                if truncate(c).await? {
                    tracing::info!(file = %wal_path.display(), bytes = file_bytes, "write-ahead log truncated after it outgrew --max-wal-size");
                }
            }
            Ok::<_, crate::error::Error>(())
        }
        .await;
        match result {
            Ok(()) => watch.health.ok(Writer::Checkpoint),
            Err(e) => {
                watch.health.failed(Writer::Checkpoint, &e);
                tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
                conn = None;
            }
        }
    }
    if let Some((c, _, _)) = conn {
        let _ = c.close().await;
    }
}
