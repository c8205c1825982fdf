//! A real small file system for the fault tests: a tmpfs of a given size mounted on a
//! temporary folder, grown or made read-only while the dashboard runs on it. A full tmpfs
//! answers writes with ENOSPC, which SQLite reports as SQLITE_FULL, exactly as a full disk
//! does; nothing is faked. Mounting needs root (CAP_SYS_ADMIN), which the suite has on CI
//! and in the development container: without it the test fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

fn mount(args: &[&str], what: &str) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run mount ({e})"));
    assert!(
        out.status.success(),
        "{what}: mount {args:?} failed ({}); the fault tests mount a tmpfs and need root (CAP_SYS_ADMIN)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl SmallDisk {
    /// A tmpfs of `bytes` on a fresh temporary folder.
    pub fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_string_lossy().into_owned();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                &path,
            ],
            "a small disk",
        );
        SmallDisk { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file on it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Give it `bytes` in all, in place: open files stay open.
    pub fn resize(&self, bytes: u64) {
        let path = self.dir.path().to_string_lossy().into_owned();
        mount(
            &["-o", &format!("remount,size={bytes}"), &path],
            "growing the small disk",
        );
    }

    /// Fill what is left of it with a ballast file, as another program filling the disk
    /// would: every later write that needs a new block fails with ENOSPC.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.file("ballast")).unwrap();
        let block = vec![0x5a_u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the small disk: {e}"),
            }
        }
        // Whatever a partial block left.
        while f.write(&block[..512]).is_ok_and(|n| n > 0) {}
    }

    /// Remove the ballast: the space is free again.
    pub fn free(&self) {
        std::fs::remove_file(self.file("ballast")).unwrap();
    }

    /// Make it read-only (`true`) or writable again, in place.
    pub fn read_only(&self, read_only: bool) {
        let path = self.dir.path().to_string_lossy().into_owned();
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        mount(&["-o", mode, &path], "remounting the small disk");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a connection a failed test left open must not keep the mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
