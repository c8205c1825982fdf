//! The users file: local users with argon2id password hashes and API tokens stored as
//! digests, in one JSON file written atomically with mode 0600, and re-read by the server
//! when it changes (checked on use), so `user add` takes effect without a restart.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::role::Role;
use crate::error::{Error, Result};

/// Everything the users file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Local users.
    #[serde(default)]
    pub users: Vec<User>,
    /// API tokens.
    #[serde(default)]
    pub tokens: Vec<Token>,
}

/// A local user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// The name to sign in with, also the name in the audit log.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// argon2id PHC string.
    pub password: String,
}

/// An API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// The name it was created with (what `token revoke` takes and the audit log shows).
    pub name: String,
    /// What its bearer may do.
    pub role: Role,
    /// SHA-256 of the token, hex; the token itself is never stored.
    pub digest: String,
    /// When it was made, ms since the epoch.
    pub created: i64,
    /// When it stops working, ms since the epoch; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// Names of users and tokens: what can be typed on a command line and read in an audit log.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "'{name}' is not a usable name; use up to 64 letters, digits, '.', '_', '-' or '@'."
        )))
    }
}

impl UsersFile {
    /// Read the file; a missing file is an empty one (no users yet).
    pub fn load(path: &Path) -> Result<UsersFile> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Config(format!(
                    "The users file {} is not valid ({e}); fix it or manage it with `dlq-dashboard user`.",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(Error::Config(format!(
                "Cannot read the users file {} ({e}).",
                path.display()
            ))),
        }
    }

    /// Write the file atomically (a temporary file beside it, renamed over it), readable
    /// only by its owner: it holds password hashes.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "users".into());
        let suffix: u64 = rand::random();
        let tmp = dir.join(format!(".{name}.{suffix:016x}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            text.push(b'\n');
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename is durable only once the folder is.
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Config(format!(
                "Cannot write the users file {} ({e}).",
                path.display()
            ))
        })
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// The users file as the server sees it: re-read when its modification time, size or inode
/// changed since the last look (an atomic rename by `user add` gives a new inode).
pub struct UsersStore {
    path: PathBuf,
    cached: Mutex<(Option<Stamp>, Arc<UsersFile>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    mtime_ns: i64,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec(),
        len: m.len(),
        ino: m.ino(),
    })
}

impl UsersStore {
    /// Open the users file at `path`; an unreadable or invalid file refuses to start.
    pub fn open(path: &Path) -> Result<UsersStore> {
        let seen = stamp(path);
        let file = UsersFile::load(path)?;
        Ok(UsersStore {
            path: path.to_path_buf(),
            cached: Mutex::new((seen, Arc::new(file))),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current contents. An edit that broke the file is logged and the last good
    /// contents are kept, so a typo does not lock everyone out of a running dashboard.
    pub fn current(&self) -> Arc<UsersFile> {
        let now = stamp(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != now {
            match UsersFile::load(&self.path) {
                Ok(file) => {
                    tracing::info!(path = %self.path.display(), users = file.users.len(), tokens = file.tokens.len(), "users file reloaded");
                    *cached = (now, Arc::new(file));
                }
                Err(e) => {
                    tracing::error!(error = %e, "keeping the users file as it was before this edit");
                    cached.0 = now;
                }
            }
        }
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_files_are_private_and_reloaded_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        let store = UsersStore::open(&path).unwrap();
        assert!(
            store.current().users.is_empty(),
            "a missing file has no users"
        );
        let mut file = UsersFile::default();
        file.users.push(User {
            name: "alice".into(),
            role: Role::Admin,
            password: "x".into(),
        });
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.current().users[0].name, "alice");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            store.current().users.len(),
            1,
            "a broken edit keeps the last good file"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("alice@example.com").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("<script>").is_err());
    }
}
