//! What a caller may see of a record: payloads hidden from viewers (`--viewer-payloads`),
//! configured JSON fields and headers masked for roles below admin or for everyone
//! (`--redact-json-fields`, `--redact-headers`, `--redact-for-all`). Pure, unit-tested;
//! pages and the API ask it for a [`Sight`] per request. Only what is shown is masked: the
//! index keeps the original bytes, and replay sends them.

use std::borrow::Cow;

use crate::auth::role::Role;

/// What replaces a masked value.
pub const MASK: &str = "***";

/// `--viewer-payloads`: what viewers see of a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewerPayloads {
    /// Payloads, header values and stack traces, as every role does.
    #[default]
    Full,
    /// Metadata only: coordinates, key, status, error class and message, header names.
    Hidden,
}

/// The flags that decide what each role sees.
#[derive(Debug, Clone, Default)]
pub struct Disclosure {
    /// What viewers see.
    pub viewer_payloads: ViewerPayloads,
    /// JSON fields to mask, lower-cased.
    json_fields: Vec<String>,
    /// Header names to mask, lower-cased.
    headers: Vec<String>,
    /// Mask for admins too.
    for_all: bool,
}

impl Disclosure {
    /// The flags as given (names compared case-insensitively; blanks ignored).
    pub fn new(
        viewer_payloads: ViewerPayloads,
        json_fields: &[String],
        headers: &[String],
        for_all: bool,
    ) -> Self {
        let names = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|n| n.trim().to_lowercase())
                .filter(|n| !n.is_empty())
                .collect()
        };
        Disclosure {
            viewer_payloads,
            json_fields: names(json_fields),
            headers: names(headers),
            for_all,
        }
    }

    /// Whether any field or header is to be masked.
    pub fn redacts(&self) -> bool {
        !self.json_fields.is_empty() || !self.headers.is_empty()
    }

    /// What a caller with `role` sees (none: not signed in, treated as a viewer).
    pub fn sight(&self, role: Option<Role>) -> Sight<'_> {
        let role = role.unwrap_or(Role::Viewer);
        let admin = role == Role::Admin;
        Sight {
            payloads: !(role == Role::Viewer && self.viewer_payloads == ViewerPayloads::Hidden),
            redact: (self.redacts() && (!admin || self.for_all)).then_some(self),
            raw: !self.redacts() || admin,
        }
    }
}

/// What one caller sees.
#[derive(Debug, Clone, Copy)]
pub struct Sight<'a> {
    payloads: bool,
    redact: Option<&'a Disclosure>,
    raw: bool,
}

impl<'a> Sight<'a> {
    /// Everything, unmasked (tests, and callers nothing is withheld from).
    pub fn everything() -> Self {
        Sight {
            payloads: true,
            redact: None,
            raw: true,
        }
    }

    /// Whether payloads, header values and stack traces are shown at all.
    pub fn payloads(&self) -> bool {
        self.payloads
    }

    /// Whether something shown is masked.
    pub fn redacting(&self) -> bool {
        self.redact.is_some()
    }

    /// A payload (or the start of one) as this caller may see it: the configured JSON
    /// fields masked at any depth. Works on a cut or malformed document too, so a
    /// listing's first bytes are masked as the whole payload is.
    pub fn payload<'b>(&self, bytes: &'b [u8]) -> Cow<'b, [u8]> {
        match self.redact {
            Some(d) if !d.json_fields.is_empty() => Cow::Owned(mask_json(bytes, &d.json_fields)),
            _ => Cow::Borrowed(bytes),
        }
    }

    /// Whether a header's value is masked.
    pub fn header_masked(&self, name: &str) -> bool {
        self.redact
            .is_some_and(|d| d.headers.iter().any(|h| *h == name.to_lowercase()))
    }

    /// Why this caller may not download a raw payload, or None when they may.
    pub fn raw_refusal(&self) -> Option<&'static str> {
        if !self.payloads {
            Some("Payloads are hidden from viewers on this dashboard (--viewer-payloads=hidden), so the raw payload cannot be downloaded; ask an operator or admin.")
        } else if !self.raw {
            Some("Fields of payloads are redacted on this dashboard, so only an admin may download a raw payload.")
        } else {
            None
        }
    }

    /// The sentence a page or API answer carries about what it withholds, if anything.
    pub fn note(&self) -> Option<String> {
        if !self.payloads {
            return Some("Payloads, header values and stack traces are hidden from viewers on this dashboard; only metadata is shown.".into());
        }
        let d = self.redact?;
        let mut parts = Vec::new();
        if !d.json_fields.is_empty() {
            parts.push(format!("JSON fields {}", d.json_fields.join(", ")));
        }
        if !d.headers.is_empty() {
            parts.push(format!("headers {}", d.headers.join(", ")));
        }
        Some(format!(
            "Redacted: {} are shown as {MASK}; replays still send the original bytes.",
            parts.join(" and ")
        ))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The index just past the string starting at `start` (a `"`), or the end when it is cut.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The index just past the JSON value starting at `start`, or the end when it is cut.
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        None => b.len(),
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let (mut depth, mut j) = (0usize, start);
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut j = start;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !is_space(b[j]) {
                j += 1;
            }
            j
        }
    }
}

/// Whether a quoted key token names one of `fields` (escapes decoded, any case).
fn key_matches(token: &[u8], fields: &[String]) -> bool {
    let name = serde_json::from_slice::<String>(token)
        .unwrap_or_else(|_| String::from_utf8_lossy(token).trim_matches('"').to_string())
        .to_lowercase();
    fields.contains(&name)
}

/// Replace the value of every key in `fields`, at any depth, with `"***"`. A lexer rather
/// than a parser: every string followed by `:` is a key, so a document cut short (a
/// listing's first bytes) or not JSON at all is masked as far as it goes, and everything
/// else is kept byte for byte.
pub fn mask_json(b: &[u8], fields: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let end = string_end(b, i);
        let token = &b[i..end];
        out.extend_from_slice(token);
        i = end;
        let mut j = i;
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        if j < b.len() && b[j] == b':' && key_matches(token, fields) {
            out.extend_from_slice(&b[i..=j]);
            i = j + 1;
            while i < b.len() && is_space(b[i]) {
                out.push(b[i]);
                i += 1;
            }
            let value = value_end(b, i);
            if value > i {
                out.extend_from_slice(b"\"***\"");
                i = value;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(s: &str) -> String {
        let fields = ["password".to_string(), "card_number".to_string()];
        String::from_utf8(mask_json(s.as_bytes(), &fields)).unwrap()
    }

    #[test]
    fn fields_are_masked_at_any_depth_in_any_case_and_the_rest_is_kept() {
        assert_eq!(
            mask(
                r#"{"user":"a","Password":"hunter2","n":{"card_number":4111111111111111,"x":[{"PASSWORD":{"deep":1}}]}}"#
            ),
            r#"{"user":"a","Password":"***","n":{"card_number":"***","x":[{"PASSWORD":"***"}]}}"#
        );
        assert_eq!(
            mask("{ \"password\" :\n \"a \\\" b\" , \"ok\": true}"),
            "{ \"password\" :\n \"***\" , \"ok\": true}"
        );
        // A value that merely equals a field name is not a key.
        assert_eq!(mask(r#"["password", "x"]"#), r#"["password", "x"]"#);
        // Escaped key names are decoded before comparing.
        assert_eq!(
            mask(r#"{"pass\u0077ord":"s"}"#),
            r#"{"pass\u0077ord":"***"}"#
        );
    }

    #[test]
    fn a_cut_or_broken_document_is_masked_as_far_as_it_goes() {
        assert_eq!(
            mask(r#"{"a":1,"password":"hun"#),
            r#"{"a":1,"password":"***""#
        );
        assert_eq!(mask(r#"{"card_number":[1,2"#), r#"{"card_number":"***""#);
        assert_eq!(mask(r#"{"password":"#), r#"{"password":"#);
        assert_eq!(mask("not json at all"), "not json at all");
        let invalid = b"{\"password\":\"\xff\xfe\",\"k\":\"\xff\"}";
        let fields = ["password".to_string()];
        assert_eq!(
            mask_json(invalid, &fields),
            b"{\"password\":\"***\",\"k\":\"\xff\"}".to_vec()
        );
    }

    #[test]
    fn roles_see_what_the_flags_allow() {
        let fields = vec!["password".to_string()];
        let headers = vec!["Authorization".to_string()];
        let d = Disclosure::new(ViewerPayloads::Hidden, &fields, &headers, false);
        let viewer = d.sight(Some(Role::Viewer));
        assert!(!viewer.payloads());
        assert!(viewer.raw_refusal().is_some());
        let operator = d.sight(Some(Role::Operator));
        assert!(operator.payloads() && operator.redacting());
        assert!(operator.header_masked("AUTHORIZATION"));
        assert!(operator.raw_refusal().is_some(), "raw is admin-only");
        let admin = d.sight(Some(Role::Admin));
        assert!(!admin.redacting() && admin.raw_refusal().is_none());
        assert_eq!(&*admin.payload(br#"{"password":1}"#), br#"{"password":1}"#);
        let all = Disclosure::new(ViewerPayloads::Full, &fields, &[], true);
        assert!(all.sight(Some(Role::Admin)).redacting());
        assert!(all.sight(Some(Role::Admin)).raw_refusal().is_none());
        assert!(all.sight(Some(Role::Viewer)).payloads());
        let none = Disclosure::default();
        assert!(none.sight(Some(Role::Viewer)).raw_refusal().is_none());
        assert!(none.sight(Some(Role::Viewer)).note().is_none());
    }
}
