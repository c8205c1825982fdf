//! What a caller may see of a record: payloads hidden from viewers (`--viewer-payloads`),
//! configured JSON fields and headers masked for roles below admin or for everyone
//! (`--redact-json-fields`, `--redact-headers`, `--redact-for-all`). Pure, unit-tested;
//! pages and the API ask it for a [`Sight`] per request. Only what is shown is masked: the
//! index keeps the original bytes, and replay sends them.
//!
//! Two things follow from a redacted header besides its own value:
//! - the common fields it can fill (`index::normalise`: a redacted `kafka_dlt-exception-message`
//!   feeds the error message) are masked wherever the header is ([`Sight::masks`]). The index
//!   does not keep which header filled a field, so a field is masked for every record once any
//!   redacted header can fill it, whatever the record's convention;
//! - headers the dashboard is built on (origin topic, partition, offset, `dlq-replay-id`) are
//!   refused at start-up ([`Disclosure::new`]).
//!
//! The search file is shared by every role, so it is filled with the text as the most
//! restricted caller sees it ([`SearchMask`]): a viewer's search cannot find a masked value.

use std::borrow::Cow;

use crate::auth::role::Role;
use crate::index::normalise::{self, Field};
use crate::index::record::{search_text, SearchText};

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
    /// The common fields those headers can fill.
    derived: Derived,
    /// Mask for admins too.
    for_all: bool,
}

/// Which of a record's common fields (`index::normalise::Normalised`) a redacted header can
/// fill, and so are masked with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Derived {
    timestamp: bool,
    group: bool,
    error_class: bool,
    error_message: bool,
    stacktrace: bool,
    attempts: bool,
}

impl Derived {
    fn of(headers: &[String]) -> Self {
        let mut d = Derived::default();
        for field in headers.iter().flat_map(|h| normalise::fields_fed_by(h)) {
            match field {
                Field::Timestamp => d.timestamp = true,
                Field::Group => d.group = true,
                Field::ErrorClass => d.error_class = true,
                Field::ErrorMessage => d.error_message = true,
                Field::Stacktrace => d.stacktrace = true,
                Field::Attempts => d.attempts = true,
                // Refused by `Disclosure::new`.
                Field::Topic | Field::Partition | Field::Offset => {}
            }
        }
        d
    }

    fn masks(&self, field: Field) -> bool {
        match field {
            Field::Timestamp => self.timestamp,
            Field::Group => self.group,
            Field::ErrorClass => self.error_class,
            Field::ErrorMessage => self.error_message,
            Field::Stacktrace => self.stacktrace,
            Field::Attempts => self.attempts,
            Field::Topic | Field::Partition | Field::Offset => false,
        }
    }

    /// The masked fields' names, for the sentence a page carries.
    fn names(&self) -> Vec<&'static str> {
        [
            (self.error_class, "error class"),
            (self.error_message, "error message"),
            (self.stacktrace, "stack trace"),
            (self.group, "consumer group"),
            (self.timestamp, "origin timestamp"),
            (self.attempts, "attempts"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl Disclosure {
    /// The flags as given (names compared case-insensitively; blanks ignored). A header the
    /// dashboard needs to work (`normalise::structural_reason`) is refused with a sentence
    /// naming it and why.
    pub fn new(
        viewer_payloads: ViewerPayloads,
        json_fields: &[String],
        headers: &[String],
        for_all: bool,
    ) -> Result<Self, String> {
        let names = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|n| n.trim().to_lowercase())
                .filter(|n| !n.is_empty())
                .collect()
        };
        let headers = names(headers);
        if let Some((name, why)) = headers
            .iter()
            .find_map(|h| normalise::structural_reason(h).map(|why| (h, why)))
        {
            return Err(format!(
                "--redact-headers cannot mask {name}: the dashboard needs that header to work ({why}); remove it from the list."
            ));
        }
        Ok(Disclosure {
            viewer_payloads,
            json_fields: names(json_fields),
            derived: Derived::of(&headers),
            headers,
            for_all,
        })
    }

    /// How the search file is to be filled: masked as the most restricted caller sees
    /// records (search is shared by every role).
    pub fn search_mask(&self) -> SearchMask {
        let mut json_fields = self.json_fields.clone();
        json_fields.sort();
        json_fields.dedup();
        SearchMask {
            json_fields,
            error_class: self.derived.error_class,
            error_message: self.derived.error_message,
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

    /// Whether a common field is masked because a redacted header can fill it (a
    /// `--redact-headers kafka_dlt-exception-message` masks every error message).
    pub fn masks(&self, field: Field) -> bool {
        self.redact.is_some_and(|d| d.derived.masks(field))
    }

    /// A text field as this caller may see it: [`MASK`] when [`Sight::masks`] it.
    pub fn text(&self, field: Field, value: Option<String>) -> Option<String> {
        match value {
            Some(_) if self.masks(field) => Some(MASK.to_string()),
            v => v,
        }
    }

    /// A number field as this caller may see it: none when [`Sight::masks`] it.
    pub fn number<T>(&self, field: Field, value: Option<T>) -> Option<T> {
        value.filter(|_| !self.masks(field))
    }

    /// Why this caller may not filter on `field` (the answer would tell a masked value), or
    /// None when they may.
    pub fn filter_refusal(&self, field: Field, param: &str) -> Option<String> {
        self.masks(field).then(|| {
            format!("Filtering by {param} is not available to you: that field is redacted on this dashboard (--redact-headers); search or filter by something else.")
        })
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
        let derived = d.derived.names();
        if !derived.is_empty() {
            parts.push(format!("the {} they fill", derived.join(", ")));
        }
        Some(format!(
            "Redacted: {} are shown as {MASK}; replays still send the original bytes.",
            parts.join(" and ")
        ))
    }
}

/// How the search file's text is masked: the redaction it was built with, stored in the file
/// (`store::search`, `search_progress.redaction`) as [`SearchMask::spec`]. Everything that
/// writes or removes search entries (the catch-up, purge erase, reclaim) makes their text
/// with [`SearchMask::text`] of the mask stored in that file, so an entry is removed with the
/// text it was made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchMask {
    /// JSON fields masked in the payload's text, lower-cased, sorted.
    json_fields: Vec<String>,
    /// The error class is left out (a redacted header can fill it).
    error_class: bool,
    /// The error message is left out.
    error_message: bool,
}

impl SearchMask {
    /// The stored form: empty for no masking (as a search file from before masking holds),
    /// else JSON.
    pub fn spec(&self) -> String {
        if *self == SearchMask::default() {
            String::new()
        } else {
            serde_json::to_string(self).unwrap_or_default()
        }
    }

    /// The mask a stored spec describes; None when it cannot be read (the file is then
    /// rebuilt with the configured mask).
    pub fn from_spec(spec: &str) -> Option<Self> {
        if spec.is_empty() {
            Some(SearchMask::default())
        } else {
            serde_json::from_str(spec).ok()
        }
    }

    /// The search text of a record (its stored key, start of the payload, error class and
    /// message), masked.
    pub fn text(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error_class: Option<&str>,
        error_message: Option<&str>,
    ) -> SearchText {
        let masked = match value {
            Some(v) if !self.json_fields.is_empty() => {
                Some(Cow::Owned(mask_json(v, &self.json_fields)))
            }
            v => v.map(Cow::Borrowed),
        };
        search_text(
            key,
            masked.as_deref(),
            error_class.filter(|_| !self.error_class),
            error_message.filter(|_| !self.error_message),
        )
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
        let d = Disclosure::new(ViewerPayloads::Hidden, &fields, &headers, false).unwrap();
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
        let all = Disclosure::new(ViewerPayloads::Full, &fields, &[], true).unwrap();
        assert!(all.sight(Some(Role::Admin)).redacting());
        assert!(all.sight(Some(Role::Admin)).raw_refusal().is_none());
        assert!(all.sight(Some(Role::Viewer)).payloads());
        let none = Disclosure::default();
        assert!(none.sight(Some(Role::Viewer)).raw_refusal().is_none());
        assert!(none.sight(Some(Role::Viewer)).note().is_none());
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_the_dashboard_needs_are_refused_with_a_sentence_naming_them() {
        for (header, why) in [
            ("dlq-replay-id", "links a record that failed again"),
            ("Kafka_DLT-Original-Topic", "origin topic"),
            ("kafka_original-partition", "origin partition and offset"),
            ("__connect.errors.offset", "origin partition and offset"),
            ("source_topic", "origin topic"),
            ("x-original-offset", "origin partition and offset"),
            ("dlq-origin-topic", "origin topic"),
        ] {
            let err = Disclosure::new(
                ViewerPayloads::Full,
                &[],
                &strings(&["authorization", header]),
                false,
            )
            .unwrap_err();
            assert!(
                err.contains(&header.to_lowercase())
                    && err.contains(why)
                    && err.starts_with("--redact-headers cannot mask"),
                "{header}: {err}"
            );
        }
        // Error, group and other headers may be masked.
        for ok in [
            "kafka_dlt-exception-message",
            "dlq-consumer-group",
            "x-exception-stacktrace",
            "authorization",
        ] {
            assert!(
                Disclosure::new(ViewerPayloads::Full, &[], &strings(&[ok]), false).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn a_redacted_header_masks_the_fields_it_can_fill_wherever_it_is_masked() {
        let d = Disclosure::new(
            ViewerPayloads::Full,
            &[],
            &strings(&["KAFKA_DLT-EXCEPTION-MESSAGE", "dlq-consumer-group"]),
            false,
        )
        .unwrap();
        let operator = d.sight(Some(Role::Operator));
        assert!(operator.masks(Field::ErrorMessage) && operator.masks(Field::Group));
        assert!(!operator.masks(Field::ErrorClass) && !operator.masks(Field::Stacktrace));
        assert_eq!(
            operator
                .text(Field::ErrorMessage, Some("card 4111".into()))
                .as_deref(),
            Some(MASK)
        );
        assert_eq!(operator.text(Field::ErrorMessage, None), None);
        assert_eq!(
            operator
                .text(Field::ErrorClass, Some("Boom".into()))
                .as_deref(),
            Some("Boom")
        );
        assert!(operator
            .filter_refusal(Field::ErrorMessage, "message")
            .is_some());
        assert!(operator
            .filter_refusal(Field::ErrorClass, "error_class")
            .is_none());
        let note = operator.note().unwrap();
        assert!(
            note.contains("error message, consumer group they fill"),
            "{note}"
        );
        // Admins see them unless --redact-for-all; a sight that masks nothing passes through.
        let admin = d.sight(Some(Role::Admin));
        assert!(!admin.masks(Field::ErrorMessage));
        assert!(!Sight::everything().masks(Field::Group));
        let numbers = Disclosure::new(
            ViewerPayloads::Full,
            &[],
            &strings(&["retry_topic-attempts"]),
            true,
        )
        .unwrap();
        assert_eq!(
            numbers
                .sight(Some(Role::Admin))
                .number(Field::Attempts, Some(3)),
            None
        );
        assert_eq!(
            numbers
                .sight(Some(Role::Admin))
                .number(Field::Timestamp, Some(3)),
            Some(3)
        );
    }

    #[test]
    fn the_search_mask_is_stored_as_a_spec_and_masks_what_the_most_restricted_caller_sees() {
        let none = Disclosure::default().search_mask();
        assert_eq!(
            none.spec(),
            "",
            "as a search file from before masking records"
        );
        assert_eq!(SearchMask::from_spec(""), Some(none.clone()));
        let d = Disclosure::new(
            ViewerPayloads::Full,
            &strings(&["Password", "iban", "password"]),
            &strings(&["x-exception-message"]),
            false,
        )
        .unwrap();
        let mask = d.search_mask();
        // Same flags in another order and case: the same spec (no needless rebuild).
        let same = Disclosure::new(
            ViewerPayloads::Hidden,
            &strings(&["IBAN", "password"]),
            &strings(&["X-Exception-Message", "authorization"]),
            true,
        )
        .unwrap();
        assert_eq!(same.search_mask().spec(), mask.spec());
        assert_ne!(mask.spec(), none.spec());
        assert_eq!(SearchMask::from_spec(&mask.spec()), Some(mask.clone()));
        assert_eq!(SearchMask::from_spec("{not json"), None);
        let t = mask.text(
            Some(b"k-1"),
            Some(br#"{"user":"ann","password":"hunter2","n":{"IBAN":"DE89"}}"#),
            Some("com.acme.Boom"),
            Some("card 4111 declined"),
        );
        assert_eq!(t.key_text, "k-1");
        assert!(
            t.body_text.contains("ann")
                && !t.body_text.contains("hunter2")
                && !t.body_text.contains("DE89"),
            "{t:?}"
        );
        assert_eq!(
            t.error_text, "com.acme.Boom",
            "the message a redacted header fills is left out"
        );
        // Unmasked: exactly the text search always held.
        let plain = none.text(
            Some(b"k"),
            Some(b"{\"password\":\"x\"}"),
            Some("C"),
            Some("m"),
        );
        assert_eq!(
            plain,
            search_text(
                Some(b"k"),
                Some(b"{\"password\":\"x\"}"),
                Some("C"),
                Some("m")
            )
        );
    }
}
