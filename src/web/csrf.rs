//! Cross-site request forgery protection for the page forms.
//!
//! Every state-changing form is a POST carrying a token, and `extract::CsrfForm` refuses a POST
//! whose token is missing or wrong, or whose `Origin` (or `Sec-Fetch-Site`) names another
//! site. The JSON API is guarded differently: it requires `Content-Type: application/json`,
//! which a browser cannot send across sites without a CORS preflight this server never grants
//! (see `web::extract::require_json`).
//!
//! With authentication on, the token is the session's own (random, made at sign-in, kept in
//! the encrypted session cookie, see `auth::session`), so a token read by one user is no
//! use against another's session. Behind a trusted proxy there is no session of ours, so
//! the token is keyed to the user name with a per-process secret (`auth::proxy`). A
//! signed-in or proxied browser's JSON POST carries no token; it
//! needs `Content-Type: application/json` and a same-origin `Origin` (`web::auth::authorize`).
//! Bearer tokens need neither: a browser never attaches one by itself.
//!
//! With authentication off (a loopback address) there are no sessions, and one random token
//! per process is enough: the threat is a page on another site making an operator's browser
//! post a form to a dashboard the attacker cannot reach themselves. The same-origin policy
//! keeps that page from reading the token out of our HTML, so it cannot forge a form that
//! carries it; anyone who can load the pages can already press the buttons.
//!
//! Both tokens live only in memory, so a restart invalidates forms that were open before
//! it; the error page then asks the operator to reload the page and try again.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap};
use rand::Rng;

use crate::error::Error;

/// The name of the hidden form field that carries the token.
pub const FIELD: &str = "csrf";

static TOKEN: OnceLock<String> = OnceLock::new();

/// This process's token, made on first use from 32 random bytes.
pub fn token() -> &'static str {
    TOKEN.get_or_init(|| {
        let bytes: [u8; 32] = rand::rng().random();
        super::view::hex(&bytes)
    })
}

pub(crate) use crate::auth::same;

/// The sentence for a form without a valid token.
pub(crate) const STALE: &str = "This form has expired or did not come from this dashboard (a restart of the dashboard expires open forms); reload the page and try again.";

/// Refuse a request a browser sent on behalf of another site. A missing `Origin` is let
/// through (older browsers and privacy settings omit it; the token still has to match).
pub fn check_origin(headers: &HeaderMap, uri_authority: Option<&str>) -> Result<(), Error> {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(Error::Forbidden(
                "This form was sent from another site, so it was refused; open the dashboard itself and try again.".into(),
            ));
        }
    }
    let Some(origin) = text(header::ORIGIN) else {
        return Ok(());
    };
    // "scheme://host[:port]"; "null" (an opaque origin) names no site, so never ours.
    let origin_authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    // Behind a proxy that rewrites Host, X-Forwarded-Host names the address the browser
    // used. A cross-site form cannot set that header, so trusting it opens nothing.
    let ours = [
        text(header::HOST),
        text(header::HeaderName::from_static("x-forwarded-host")),
        uri_authority,
    ];
    let matches = origin_authority.is_some_and(|o| {
        ours.iter()
            .flatten()
            .flat_map(|h| h.split(','))
            .any(|h| h.trim().eq_ignore_ascii_case(o))
    });
    if matches {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "This form was sent from another site ({origin}), so it was refused; open the dashboard itself and try again."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
        assert_eq!(token().len(), 64);
        assert_eq!(token(), token(), "one token per process");
    }

    #[test]
    fn origin_must_name_this_host() {
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(check_origin(&ok, None).is_ok());
        let no_origin = headers(&[("host", "127.0.0.1:8080")]);
        assert!(check_origin(&no_origin, None).is_ok());
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_origin(&other, None).is_err());
        let port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9090"),
        ]);
        assert!(check_origin(&port, None).is_err());
        let opaque = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check_origin(&opaque, None).is_err());
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "dlq.example.com"),
            ("origin", "https://dlq.example.com"),
        ]);
        assert!(check_origin(&proxied, None).is_ok());
        let fetch_meta = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(check_origin(&fetch_meta, None).is_err());
        let same_origin = headers(&[("host", "h"), ("sec-fetch-site", "same-origin")]);
        assert!(check_origin(&same_origin, None).is_ok());
    }
}
