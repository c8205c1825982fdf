//! The test harness, in two parts that share [`crate::poll`] and [`crate::topic`]:
//!
//! - [`in_process`]: a mock cluster and the dashboard in this process, requests through the
//!   router (no socket), the SQLite file read through the dashboard's own pool;
//! - [`process`]: the binary and brokers as child processes, requests over HTTP, the SQLite
//!   file opened read-only as the process left it.

pub mod in_process;
pub mod process;
pub mod small_disk;
