//! Exception classification (seed 003): a failure is retriable (the same event may
//! succeed later: a database timeout, an upstream 503) or not (a bug, a bad event: retrying
//! it only delays the next one).

/// Why processing an event failed, as the DLQ record's headers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error class, e.g. `TimeoutError` or `java.lang.NullPointerException`.
    pub class: &'static str,
    /// The error message.
    pub message: String,
    /// The frames of the stack trace, innermost first.
    pub frames: &'static [&'static str],
}

/// Failure classes that are worth retrying: the cause is outside the event.
const RETRIABLE: &[&str] = &[
    "TimeoutError",
    "org.springframework.dao.QueryTimeoutException",
];

impl Failure {
    /// Whether a later attempt may succeed (seed 003's classification). Everything not known
    /// to be transient goes straight to the DLQ: a retry of a bad event or of a bug only
    /// holds up the partition behind it.
    pub fn retriable(&self) -> bool {
        RETRIABLE.contains(&self.class)
    }

    /// The stack trace as a JVM prints it.
    pub fn stacktrace(&self) -> String {
        let mut s = format!("{}: {}\n", self.class, self.message);
        for f in self.frames {
            s.push_str("\tat ");
            s.push_str(f);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: &'static str) -> Failure {
        Failure {
            class,
            message: "m".into(),
            frames: &["a.b(C.java:1)"],
        }
    }

    #[test]
    fn only_timeouts_are_retried() {
        assert!(failure("TimeoutError").retriable());
        assert!(failure("org.springframework.dao.QueryTimeoutException").retriable());
        for class in [
            "ValidationError",
            "JsonParseError",
            "PoisonEventError",
            "java.lang.NullPointerException",
            "java.lang.IllegalStateException",
        ] {
            assert!(!failure(class).retriable(), "{class}");
        }
        assert_eq!(failure("X").stacktrace(), "X: m\n\tat a.b(C.java:1)\n");
    }
}
