//! The index file removed while the dashboard runs (its folder cleaned by a tmp reaper, an
//! operator's `rm`, a volume unmounted and remounted empty): written back from what the
//! process still holds, and used again, with no restart and nothing lost.
//!
//! On Unix a removed file lives on for as long as something holds it open, so every
//! connection of the pool still reads and writes the old file, and whatever the dashboard
//! indexed would vanish when it stops. A watcher keeps a connection of its own on the file
//! it opened; when the path no longer leads to that file, it copies the database out
//! through that connection (`VACUUM INTO`, a consistent snapshot that includes the log)
//! while holding the writers' turn, so no queued write lands between the copy and the
//! switch, puts the copy in place, and retires every pool connection opened before, so the
//! next ones open the file written back. The search file, removed with its folder, is made
//! anew by the search catch-up, which notices it missing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use super::health::WriteHealth;
use super::space::{self, remove_if_present, with_suffix, IndexLock};
use crate::clock::now_ms;
use crate::error::Result;

/// How often the path is looked at: a removal is noticed within this.
const EVERY: Duration = Duration::from_secs(1);

/// The identity of the file at `path` (device and inode), None when there is none.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Copy the database `conn` is open on to `path`, which must not exist, durably: into a
/// file beside it first, then renamed into place. Returns the size written.
pub async fn write_back(conn: &mut SqliteConnection, path: &Path) -> Result<u64> {
    let folder = space::folder_of(path);
    std::fs::create_dir_all(&folder)?;
    let partial = with_suffix(path, ".writing-back");
    remove_if_present(&partial)?;
    // A log or shared-memory file left at the path would be taken for the new file's.
    for suffix in ["-wal", "-shm"] {
        remove_if_present(&with_suffix(path, suffix))?;
    }
    sqlx::query("VACUUM main INTO ?")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, path)?;
    std::fs::File::open(&folder)?.sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Watch the index file `pool` is open on until `shutdown`, writing it back whenever it
/// is removed, and report what happened in `health`.
pub async fn run(pool: SqlitePool, health: Arc<WriteHealth>, shutdown: CancellationToken) {
    let path = pool.connect_options().get_filename().to_path_buf();
    let options = (*pool.connect_options())
        .clone()
        .create_if_missing(false)
        .disable_statement_logging();
    let mut held: Option<(SqliteConnection, Option<(u64, u64)>)> = None;
    // The lock taken anew when the lock file went with the folder; the first one stays
    // with the dashboard.
    let mut lock: Option<IndexLock> = None;
    loop {
        if held.is_none() {
            // Opened on the file now at the path, which is the file the pool has.
            if let Ok(conn) = options.connect().await {
                held = Some((conn, file_id(&path)));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let Some((conn, opened)) = held.as_mut() else {
            continue;
        };
        let now_at = file_id(&path);
        if now_at == *opened {
            health.update_file(|f| f.replaced = false);
            continue;
        }
        if now_at.is_some() {
            // Someone put another file there (a backup restored by hand?): not overwritten.
            health.update_file(|f| f.replaced = true);
            continue;
        }
        health.update_file(|f| {
            f.removed_since.get_or_insert_with(now_ms);
        });
        tracing::warn!(file = %path.display(), "the index file was removed while the dashboard runs; writing it back");
        let turn = super::write_turn(&pool).await;
        let written = write_back(conn, &path).await;
        match written {
            Ok(bytes) => {
                // Connections opened before now are on the removed file: retired as they are
                // next taken, while the writers still wait.
                super::search_rebuilds(&path).mark();
                drop(turn);
                if !space::lock_path(&path).exists() {
                    match space::lock(&path) {
                        Ok(l) => lock = Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "the index's lock file could not be made again")
                        }
                    }
                }
                tracing::info!(file = %path.display(), bytes, "the index file was written back; the dashboard goes on with it");
                health.update_file(|f| {
                    f.removed_since = None;
                    f.write_back_error = None;
                    f.written_back_at = Some(now_ms());
                });
                if let Some((old, _)) = held.take() {
                    let _ = old.close().await;
                }
            }
            Err(e) => {
                drop(turn);
                tracing::warn!(error = %e, "writing the index file back failed; trying again");
                health.update_file(|f| f.write_back_error = Some(e.to_string()));
            }
        }
    }
    if let Some((conn, _)) = held {
        let _ = conn.close().await;
    }
    drop(lock);
}
