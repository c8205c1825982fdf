//! Browser sessions: an encrypted cookie (axum-extra's `PrivateCookieJar`, AES-GCM from the
//! `cookie` crate) holding who signed in, when, when last seen, and the session's CSRF token.
//!
//! The key is made at start-up and kept only in memory, so a restart signs everyone out;
//! that is the price of having no session table to leak or to clean up.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "dlq_session";

/// What a session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The user signed in.
    pub user: String,
    /// This session's CSRF token, carried by every form.
    pub csrf: String,
    /// When the user signed in, ms.
    pub issued: i64,
    /// When the session was last used (rounded to [`REFRESH`]), ms.
    pub seen: i64,
    /// A fingerprint of the password hash at sign-in, so `user passwd` ends older sessions.
    pub password: String,
}

/// How often the last-seen time is rewritten (a new cookie on the response); finer would
/// only send a cookie with every response.
pub const REFRESH: Duration = Duration::from_secs(60);

/// How sessions are made and checked.
pub struct Sessions {
    key: Key,
    /// A session unused this long has ended.
    pub idle: Duration,
    /// A session this old has ended, used or not.
    pub lifetime: Duration,
    /// Whether the cookie is sent only over https.
    pub secure: bool,
}

/// A short digest of a password hash (the hash itself stays out of the cookie).
pub fn fingerprint(password_hash: &str) -> String {
    super::hex(&Sha256::digest(password_hash.as_bytes())[..8])
}

impl Sessions {
    /// Sessions with a fresh random key.
    pub fn new(idle: Duration, lifetime: Duration, secure: bool) -> Self {
        Sessions {
            key: Key::generate(),
            idle,
            lifetime,
            secure,
        }
    }

    /// A new session for `user`, signed in at `now` (ms).
    pub fn start(&self, user: &str, password_hash: &str, now: i64) -> Session {
        let csrf: [u8; 32] = rand::rng().random();
        Session {
            user: user.to_string(),
            csrf: super::hex(&csrf),
            issued: now,
            seen: now,
            password: fingerprint(password_hash),
        }
    }

    /// The session a request's cookie holds, if it decrypts and has not ended by `now`.
    pub fn read(&self, headers: &HeaderMap, now: i64) -> Option<Session> {
        let jar = PrivateCookieJar::from_headers(headers, self.key.clone());
        let session: Session = serde_json::from_str(jar.get(COOKIE)?.value()).ok()?;
        let idle = now.saturating_sub(session.seen);
        let age = now.saturating_sub(session.issued);
        (idle < millis(self.idle) && age < millis(self.lifetime)).then_some(session)
    }

    /// Whether the session's last-seen time should be rewritten at `now`.
    pub fn stale(&self, session: &Session, now: i64) -> bool {
        now.saturating_sub(session.seen) >= millis(REFRESH)
    }

    /// The `Set-Cookie` header values that store `session`.
    pub fn set(&self, session: &Session) -> Vec<HeaderValue> {
        let value = serde_json::to_string(session).unwrap_or_default();
        let remaining = millis(self.lifetime).saturating_sub(session.seen - session.issued);
        let cookie = self
            .base(Cookie::new(COOKIE, value))
            .max_age(cookie::time::Duration::milliseconds(remaining.max(0)))
            .build();
        set_cookie_headers(PrivateCookieJar::new(self.key.clone()).add(cookie))
    }

    /// The `Set-Cookie` header values that end the session in the browser.
    pub fn clear(&self) -> Vec<HeaderValue> {
        // A removal needs no encryption: it carries nothing.
        let mut cookie = self.base(Cookie::new(COOKIE, "")).build();
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string())
            .map(|v| vec![v])
            .unwrap_or_default()
    }

    fn base(&self, cookie: Cookie<'static>) -> cookie::CookieBuilder<'static> {
        Cookie::build(cookie)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn set_cookie_headers(jar: PrivateCookieJar) -> Vec<HeaderValue> {
    jar.into_response()
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(set: &[HeaderValue]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let pair = set[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        h.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        h
    }

    #[test]
    fn sessions_round_trip_and_expire() {
        let s = Sessions::new(Duration::from_secs(600), Duration::from_secs(3600), true);
        let session = s.start("alice", "$argon2id$x", 1_000_000);
        let set = s.set(&session);
        let text = set[0].to_str().unwrap();
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Lax") && text.contains("Secure"),
            "{text}"
        );
        assert!(!text.contains("alice"), "encrypted: {text}");
        let headers = request_with(&set);
        assert_eq!(s.read(&headers, 1_000_000 + 1000), Some(session.clone()));
        assert_eq!(s.read(&headers, 1_000_000 + 600_000), None, "idle expiry");
        let mut busy = session.clone();
        busy.seen = 1_000_000 + 3_500_000;
        let headers = request_with(&s.set(&busy));
        assert!(s.read(&headers, 1_000_000 + 3_550_000).is_some());
        assert_eq!(
            s.read(&headers, 1_000_000 + 3_600_000),
            None,
            "absolute expiry"
        );
        let other = Sessions::new(Duration::from_secs(600), Duration::from_secs(3600), true);
        assert_eq!(
            other.read(&request_with(&set), 1_000_001),
            None,
            "another key reads nothing"
        );
    }
}
