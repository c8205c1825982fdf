//! The file system under the index: its free space and whether it is read-only (statvfs),
//! the threshold below which the dashboard warns (`--min-free-space`), and the lock file
//! that keeps a second dashboard off the same index.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::fs::{FlockOperation, StatVfsMountFlags};

use crate::error::{Error, Result};

/// The file system of the index, as statvfs sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    /// Size of the file system in bytes.
    pub total: u64,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// The folder of the index file (`.` for a bare file name).
pub fn folder_of(database: &Path) -> PathBuf {
    match database.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The file system of the folder holding `database`.
pub fn space_of(database: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(folder_of(database).as_path())?;
    Ok(Space {
        available: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
        read_only: s.f_flag.contains(StatVfsMountFlags::RDONLY),
    })
}

/// Bytes in words: `512 B`, `3.0 MiB`, `1.2 GiB`.
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = bytes as f64;
    if n < KIB {
        format!("{bytes} B")
    } else if n < KIB * KIB {
        format!("{:.1} KiB", n / KIB)
    } else if n < KIB * KIB * KIB {
        format!("{:.1} MiB", n / KIB / KIB)
    } else {
        format!("{:.1} GiB", n / KIB / KIB / KIB)
    }
}

/// `path` with `suffix` appended to its file name: SQLite's `-wal` and `-shm` files.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Remove `path`; one that is already gone is fine.
pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The first of `files` that exists and that this process may not write now, with the
/// operating system's reason: a file made read-only (`chmod` for an unprivileged user, or
/// `chattr +i`, which stops even root and even writes through descriptors already open)
/// fails SQLite's writes with a bare I/O error, and this names the file and the cause.
pub fn unwritable_file<'a>(
    files: impl IntoIterator<Item = &'a Path>,
) -> Option<(&'a Path, std::io::Error)> {
    files.into_iter().find_map(|file| {
        match rustix::fs::access(file, rustix::fs::Access::WRITE_OK) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => None,
            Err(e) => Some((file, std::io::Error::from(e))),
        }
    })
}

/// Why the index at `database` cannot be opened for writing, before SQLite tries (which
/// would open a read-only file read-only and fail later with "attempt to write a readonly
/// database"): None when nothing stands in the way.
pub fn not_writable(database: &Path) -> Option<String> {
    let folder = folder_of(database);
    if !folder.is_dir() {
        return Some(format!(
            "The database folder {} does not exist; create it or pass another --database path.",
            folder.display()
        ));
    }
    if space_of(database).is_ok_and(|s| s.read_only) {
        return Some(format!(
            "The index folder {} is on a read-only file system; remount it read-write or pass another --database.",
            folder.display()
        ));
    }
    if database.exists() {
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(database) {
            return Some(format!(
                "The index {} cannot be written ({e}); give the dashboard's user write access to it or pass another --database.",
                database.display()
            ));
        }
    }
    None
}

/// The free space below which the overview warns and `/api/health` says `low_space`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFreeSpace {
    /// The smaller of 1 GiB and 5% of the file system: a large disk warns below 1 GiB, a
    /// small one below a twentieth of its size.
    Default,
    /// A number of bytes.
    Bytes(u64),
    /// A share of the file system's size, in percent.
    Percent(f64),
}

impl MinFreeSpace {
    /// The threshold in bytes on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        let share = |p: f64| (total as f64 * p / 100.0) as u64;
        match self {
            MinFreeSpace::Default => (1u64 << 30).min(share(5.0)),
            MinFreeSpace::Bytes(b) => b,
            MinFreeSpace::Percent(p) => share(p),
        }
    }
}

impl FromStr for MinFreeSpace {
    type Err = String;

    /// `5%`, `500MB`, `1GiB`, `1048576` (bytes); `default` for the smaller of 1 GiB and 5%.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("--min-free-space {s:?}: give a size such as 1GiB, 500MB or 1048576, or a share such as 5%")
        };
        if s.eq_ignore_ascii_case("default") {
            return Ok(MinFreeSpace::Default);
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return (0.0..=100.0)
                .contains(&p)
                .then_some(MinFreeSpace::Percent(p))
                .ok_or_else(bad);
        }
        let digits = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(digits);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "g" | "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "t" | "tb" => 1e12,
            "tib" => 1024f64.powi(4),
            _ => return Err(bad()),
        };
        Ok(MinFreeSpace::Bytes((number * factor) as u64))
    }
}

/// The lock file of the index `database` (`index.db` -> `index.db.lock`).
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// This process's exclusive hold on an index file, released when dropped (or when the
/// process ends, however it ends: the kernel drops the lock with the file).
///
/// SQLite lets two processes write one file in turns, so a second dashboard on the same
/// `--database` would start, assign itself the same partitions, and the two would race on
/// every position. A `flock` on a file next to the index, which names the holder, keeps the
/// second one out with a sentence instead.
#[derive(Debug)]
pub struct IndexLock {
    _file: File,
}

/// Take the index's lock, or say which process holds it.
pub fn lock(database: &Path) -> Result<IndexLock> {
    let path = lock_path(database);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            Error::Config(format!(
                "The index's lock file {} cannot be opened ({e}); check the folder's permissions or pass another --database.",
                path.display()
            ))
        })?;
    if let Err(e) = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            return Err(Error::Config(format!(
                "The index's lock file {} cannot be locked ({e}); pass another --database.",
                path.display()
            )));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another process".to_string()
        } else {
            format!("another dashboard ({holder})")
        };
        return Err(Error::Config(format!(
            "The index {} is in use by {who}; stop that one first, or give this one its own --database.",
            database.display()
        )));
    }
    let holder = format!(
        "process {}, since {}",
        std::process::id(),
        crate::clock::iso(crate::clock::now_ms())
    );
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(holder.as_bytes())?;
    file.flush()?;
    Ok(IndexLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_space_takes_sizes_and_shares() {
        assert_eq!("5%".parse(), Ok(MinFreeSpace::Percent(5.0)));
        assert_eq!("1GiB".parse(), Ok(MinFreeSpace::Bytes(1 << 30)));
        assert_eq!("500MB".parse(), Ok(MinFreeSpace::Bytes(500_000_000)));
        assert_eq!("1048576".parse(), Ok(MinFreeSpace::Bytes(1 << 20)));
        assert!("lots".parse::<MinFreeSpace>().is_err());
        assert!("120%".parse::<MinFreeSpace>().is_err());
        // The default: 5% of a small disk, 1 GiB of a large one.
        assert_eq!(MinFreeSpace::Default.bytes(100 << 20), 5 << 20);
        assert_eq!(MinFreeSpace::Default.bytes(1 << 40), 1 << 30);
    }

    #[test]
    fn a_second_lock_on_the_same_index_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("index.db");
        let first = lock(&db).unwrap();
        let e = lock(&db).unwrap_err().to_string();
        assert!(
            e.contains("is in use by another dashboard (process ")
                && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        lock(&db).expect("free again once the first lets go");
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
