//! Wall-clock time as the index stores it (milliseconds since the epoch, UTC), and its
//! RFC 3339 form for the API and headers. Shared by every layer, so it depends on none.

use chrono::{TimeZone, Utc};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds, for the API, headers and `<time datetime>`.
pub fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
