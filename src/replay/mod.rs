//! Replay: where a failed record goes back to (its service's first retry topic, never the
//! live topic). Target resolution is shown before anything is sent; jobs come next.

pub mod target;
