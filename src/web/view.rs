//! Formatting for pages: numbers, times, payloads, sparklines. Pure functions.

use chrono::{TimeZone, Utc};

/// `1234567` -> `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Exact UTC time, `2026-11-22 09:15:03 UTC`.
pub fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Age in words, `3 min ago`, `2 h ago`; future times read `in 5 s`.
pub fn relative(ms: i64, now: i64) -> String {
    let secs = (now - ms) / 1000;
    let (n, unit) = match secs.abs() {
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "min"),
        s if s < 86_400 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if secs < 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// Age as a duration, `3 min`, `2 h`, for "oldest unresolved".
pub fn age(ms: i64, now: i64) -> String {
    relative(ms, now).trim_end_matches(" ago").to_string()
}

/// Bytes in words: `512 B`, `1.5 KiB`, `10.0 MiB`.
pub fn bytes(n: i64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    }
}

/// The last part of a dotted class name: `java.lang.IllegalStateException` -> `IllegalStateException`.
pub fn short_class(class: &str) -> &str {
    class.rsplit(['.', '$']).next().unwrap_or(class)
}

/// Cut text to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Bytes shown as text when UTF-8, else as hex.
pub fn bytes_label(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => format!("0x{}", hex(b)),
    }
}

/// Lower-case hex of some bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Classic hex dump: offset, 16 bytes in hex, printable ASCII.
pub fn hexdump(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 4 + 16);
    for (i, row) in b.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", i * 16));
        for j in 0..16 {
            match row.get(j) {
                Some(x) => out.push_str(&format!("{x:02x} ")),
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(row.iter().map(|&x| {
            if (0x20..0x7f).contains(&x) {
                x as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// How a payload is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadView {
    /// No value (a null record).
    Null,
    /// Pretty-printed JSON.
    Json(String),
    /// UTF-8 text.
    Text(String),
    /// Hex dump of binary data.
    Hex(String),
}

impl PayloadView {
    /// What kind, for the page.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadView::Null => "null",
            PayloadView::Json(_) => "JSON",
            PayloadView::Text(_) => "text",
            PayloadView::Hex(_) => "binary",
        }
    }

    /// The rendered body (escaped by the template).
    pub fn body(&self) -> &str {
        match self {
            PayloadView::Null => "",
            PayloadView::Json(s) | PayloadView::Text(s) | PayloadView::Hex(s) => s,
        }
    }
}

/// Most payload bytes shown on a page; the raw download has everything.
pub const PAYLOAD_PREVIEW_BYTES: usize = 256 * 1024;

/// Render a payload for a page; returns the view and whether it was cut.
pub fn payload(value: Option<&[u8]>) -> (PayloadView, bool) {
    let Some(v) = value else {
        return (PayloadView::Null, false);
    };
    let cut = v.len() > PAYLOAD_PREVIEW_BYTES;
    let head = &v[..v.len().min(PAYLOAD_PREVIEW_BYTES)];
    if !cut {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(head) {
            if json.is_object() || json.is_array() {
                if let Ok(pretty) = serde_json::to_string_pretty(&json) {
                    return (PayloadView::Json(pretty), false);
                }
            }
        }
    }
    match std::str::from_utf8(head) {
        Ok(s) => (PayloadView::Text(s.to_string()), cut),
        Err(e) if cut && e.error_len().is_none() => (
            PayloadView::Text(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()),
            cut,
        ),
        Err(_) => (
            PayloadView::Hex(hexdump(&head[..head.len().min(64 * 1024)])),
            cut || head.len() > 64 * 1024,
        ),
    }
}

/// A 24-bar inline SVG sparkline. Built from numbers only, so it is safe to emit unescaped.
pub fn sparkline(values: &[i64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (w, h) = (4.0, 24.0);
    let mut svg = format!(
        r#"<svg class="spark" viewBox="0 0 {} {h}" width="{}" height="{h}" role="img" aria-label="records per hour over the last 24 hours: {}">"#,
        values.len() as f64 * w,
        values.len() as f64 * w,
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, v) in values.iter().enumerate() {
        let bar = if *v > 0 {
            (*v as f64 / max * (h - 2.0)).max(1.5)
        } else {
            0.0
        };
        svg.push_str(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
            i as f64 * w,
            h - bar,
            w - 1.0,
            bar
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// A duration in words: `under 1 s`, `42 s`, `3 min 20 s`, `2 h 5 min` (static/app.js has the
/// same function for live updates).
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "–".into();
    }
    if secs < 1.0 {
        return "under 1 s".into();
    }
    let s = secs.ceil() as i64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Where a replayed message went: `topic`, `topic/partition/offset`, or a dash.
pub fn target_text(topic: Option<&str>, partition: Option<i32>, offset: Option<i64>) -> String {
    match (topic, partition, offset) {
        (Some(t), Some(p), Some(o)) => format!("{t}/{p}/{o}"),
        (Some(t), _, _) => t.to_string(),
        _ => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1234567), "-1,234,567");
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(0, 30_000), "30 s ago");
        assert_eq!(relative(0, 180_000), "3 min ago");
        assert_eq!(relative(0, 7_200_000), "2 h ago");
        assert_eq!(relative(0, 3 * 86_400_000), "3 d ago");
        assert_eq!(relative(10_000, 0), "in 10 s");
        assert_eq!(age(0, 180_000), "3 min");
    }

    #[test]
    fn payloads_render_by_kind() {
        assert_eq!(payload(None).0, PayloadView::Null);
        assert_eq!(
            payload(Some(br#"{"a":1}"#)).0,
            PayloadView::Json("{\n  \"a\": 1\n}".into())
        );
        assert_eq!(payload(Some(b"plain")).0, PayloadView::Text("plain".into()));
        let (view, cut) = payload(Some(&[0xff, 0x00, 0x41]));
        assert_eq!(view.kind(), "binary");
        assert!(view.body().starts_with("00000000  ff 00 41"));
        assert!(!cut);
        let big = vec![b'a'; PAYLOAD_PREVIEW_BYTES + 10];
        let (view, cut) = payload(Some(&big));
        assert!(cut && view.body().len() == PAYLOAD_PREVIEW_BYTES);
    }

    #[test]
    fn hexdump_shows_ascii_column() {
        assert_eq!(
            hexdump(b"AB\x00"),
            "00000000  41 42 00                                          |AB.|\n"
        );
    }

    #[test]
    fn short_class_names() {
        assert_eq!(
            short_class("java.lang.IllegalStateException"),
            "IllegalStateException"
        );
        assert_eq!(short_class("Outer$Inner"), "Inner");
        assert_eq!(short_class("TimeoutError"), "TimeoutError");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn sparkline_has_one_bar_per_value() {
        let svg = sparkline(&[0, 5, 10]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("0, 5, 10"));
    }
}
