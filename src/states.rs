//! The lifecycle states of records, replay jobs and replay items, as the index stores them
//! (TEXT columns) and as the API names them (the same snake_case words).

/// An enum stored and shown as fixed words: serde and sqlx both use the snake_case variant
/// name, which `as_str` returns too (a unit test holds the three together).
macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in the order the dashboard lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and API word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value a stored or API word names.
            pub fn parse(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == word)
            }

            /// Every word, for an error that lists the choices (`new, replayed, ...`).
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }

            /// The word as text for people (`completed with failures`).
            pub fn words(self) -> String {
                self.as_str().replace('_', " ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

state_enum! {
    /// Where a DLQ record stands.
    RecordStatus {
        /// Indexed, not acted on.
        New => "new",
        /// No longer set: records keep their status while a job sends them (migration 0009);
        /// still accepted in filters, so that scripts written before keep working.
        Replaying => "replaying",
        /// Delivered to its retry topic by a replay.
        Replayed => "replayed",
        /// A replay's delivery failed.
        ReplayFailed => "replay_failed",
        /// Taken out of the way by an operator.
        Purged => "purged",
        /// The broker no longer has the record: its log start moved past it (retention, or
        /// a reclaim). It can be seen here but not replayed.
        Expired => "expired",
    }
}

impl RecordStatus {
    /// Whether a record in this status still needs an operator: new, or its replay failed.
    pub fn is_unresolved(word: &str) -> bool {
        matches!(
            RecordStatus::parse(word),
            Some(RecordStatus::New | RecordStatus::ReplayFailed)
        )
    }
}

state_enum! {
    /// Where a replay job stands.
    JobStatus {
        /// Frozen selection waiting for the operator's confirmation; never listed.
        Preview => "preview",
        /// Confirmed, waiting for its partitions to be free of other running jobs.
        Queued => "queued",
        /// Sending.
        Running => "running",
        /// Stopped by the operator; resumes where it stopped.
        Paused => "paused",
        /// Stopped for good by the operator; what was sent stays sent.
        Cancelled => "cancelled",
        /// Every message sent.
        Completed => "completed",
        /// Finished, with at least one failed delivery.
        CompletedWithFailures => "completed_with_failures",
    }
}

impl JobStatus {
    /// Whether a job in this status will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Cancelled | JobStatus::Completed | JobStatus::CompletedWithFailures
        )
    }
}

state_enum! {
    /// Where one record of a replay job stands, in the order results list them: failures
    /// first, then refusals, then the rest.
    ItemState {
        /// The delivery failed.
        Failed => "failed",
        /// Refused at preview (no target).
        Refused => "refused",
        /// Claimed and handed to the producer, not confirmed yet (a pending item at or
        /// below the job's claim cursor; never stored).
        Sending => "sending",
        /// Waiting to be sent.
        Pending => "pending",
        /// Not sent because the job was cancelled.
        Cancelled => "cancelled",
        /// Delivered.
        Sent => "sent",
    }
}

state_enum! {
    /// Where a purge stands.
    PurgeStatus {
        /// Its selection is being frozen, a window of the index at a time; not confirmable yet.
        Building => "building",
        /// Frozen, waiting for the operator's confirmation; never listed.
        Preview => "preview",
        /// Confirmed; its records are being purged, a chunk at a time.
        Applying => "applying",
        /// Every selected record purged or refused.
        Applied => "applied",
    }
}

state_enum! {
    /// Where one record of a purge stands.
    PurgeItemState {
        /// Selected, not purged yet.
        Pending => "pending",
        /// Purged by this purge.
        Purged => "purged",
        /// Not purged, with a reason.
        Refused => "refused",
        /// Purged, then restored by an undo.
        Undone => "undone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree<T: serde::Serialize + Copy>(all: &[T], word: impl Fn(T) -> &'static str) {
        for v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), word(*v));
        }
    }

    #[test]
    fn words_agree_with_serde_and_parse_back() {
        agree(RecordStatus::ALL, RecordStatus::as_str);
        agree(JobStatus::ALL, JobStatus::as_str);
        agree(ItemState::ALL, ItemState::as_str);
        agree(PurgeStatus::ALL, PurgeStatus::as_str);
        agree(PurgeItemState::ALL, PurgeItemState::as_str);
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            RecordStatus::parse("replay_failed"),
            Some(RecordStatus::ReplayFailed)
        );
        assert_eq!(RecordStatus::parse("gone"), None);
        assert_eq!(RecordStatus::parse("expired"), Some(RecordStatus::Expired));
        assert!(!RecordStatus::is_unresolved("expired"));
        assert_eq!(
            JobStatus::CompletedWithFailures.words(),
            "completed with failures"
        );
    }
}
