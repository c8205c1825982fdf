//! Memory the process has freed, given back to the operating system.
//!
//! Indexing a backlog allocates in bursts: batches of records, the page cache of a batch's
//! write, the search catch-up's texts and FTS5's pending terms. glibc keeps what is freed
//! in its per-thread arenas for reuse, so after a million-record backlog the process stayed
//! at 118–145 MiB resident while a fresh process serving the same index needed ~40 MiB.

/// Return freed heap memory to the operating system (glibc's `malloc_trim`, called in
/// [`crate::kafka::native`] with the crate's other C calls). Takes a few milliseconds after
/// a large burst; call it when a burst of work has ended, not per item. Does nothing off
/// glibc.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::kafka::native::glibc_malloc_trim();
}
