//! `dlq-dashboard dev-cluster` in a child process, for the benchmarks: a broker whose work
//! does not share the measured process's threads and allocator.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// A mock cluster in a child process of this binary, killed when dropped.
pub struct ChildCluster {
    child: Child,
    /// Its bootstrap address.
    pub bootstrap: String,
}

impl ChildCluster {
    /// Start one broker with `topics` (name, partitions) created.
    pub fn start<'a>(topics: impl IntoIterator<Item = (&'a str, i32)>) -> Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["dev-cluster", "--brokers-count", "1"]);
        for (topic, partitions) in topics {
            cmd.args(["--topic", &format!("{topic}:{partitions}")]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let Some(bootstrap) = line.trim().strip_prefix("bootstrap: ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Config(format!(
                "dev-cluster did not print its address (it said {line:?})."
            )));
        };
        Ok(ChildCluster {
            bootstrap: bootstrap.to_string(),
            child,
        })
    }

    /// Kill the broker and wait for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
