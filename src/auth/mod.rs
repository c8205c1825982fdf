//! Who may use the dashboard: local users with passwords, API tokens, browser sessions,
//! roles, login throttling and the start-up rule. The web edge (`web::auth`) asks this
//! module who a request comes from; nothing here knows about routes.

pub mod cli;
pub mod duration;
pub mod limiter;
pub mod password;
pub mod proxy;
pub mod role;
pub mod session;
pub mod token;
pub mod users;

use std::time::Instant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use limiter::{LoginLimiter, Refusal};
use role::Role;
use session::{Session, Sessions};
use users::UsersStore;

/// Compare without stopping at the first difference, so response times do not tell an
/// attacker how much of a guess was right.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Authentication is off (a loopback address, or `--insecure-no-auth`).
    Off,
    /// A session cookie from signing in with a password.
    Password,
    /// `Authorization: Bearer` with an API token.
    Token,
    /// Headers from a trusted reverse proxy.
    Proxy,
}

impl Mode {
    /// The name the audit log shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "no auth",
            Mode::Password => "password",
            Mode::Token => "token",
            Mode::Proxy => "proxy",
        }
    }
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user or token name (with auth off: `anonymous` and the client address).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it proved it.
    pub mode: Mode,
    /// The CSRF token its forms must carry; none for a bearer token, which a browser does
    /// not attach by itself, so a forged form cannot use it.
    pub csrf: Option<String>,
    /// The browser session behind it.
    pub session: Option<Session>,
}

impl Identity {
    /// The actor the audit log records: the name and the way it signed in.
    pub fn actor(&self) -> String {
        match self.mode {
            Mode::Off => self.name.clone(),
            mode => format!("{} ({})", self.name, mode.as_str()),
        }
    }
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum Login {
    /// Right name and password: the new session.
    Ok(Session),
    /// Wrong name or password.
    Wrong,
    /// Refused before the password was checked: too many wrong ones lately.
    Throttled(Refusal),
}

/// What the flags of `serve` say about authentication.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on (a non-loopback one needs authentication).
    pub listen: SocketAddr,
    /// `--users`.
    pub users: Option<PathBuf>,
    /// `--insecure-no-auth`.
    pub insecure_no_auth: bool,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--session-idle`.
    pub session_idle: Duration,
    /// `--session-lifetime`.
    pub session_lifetime: Duration,
    /// Whether the dashboard serves HTTPS itself (`--tls-cert`).
    pub tls: bool,
    /// `--trusted-proxies` and the header and group flags.
    pub proxy: Option<proxy::ProxyRules>,
}

/// The authentication settings and state of a running dashboard.
pub struct Auth {
    /// The users file; none: no local users or tokens.
    pub users: Option<UsersStore>,
    /// Browser sessions.
    pub sessions: Sessions,
    /// Wrong-password counts.
    pub limiter: LoginLimiter,
    /// `--insecure-no-auth` with no authentication configured: every page shows a red banner.
    pub insecure: bool,
    /// Served over https (`--tls-cert`, or `--public-url` is https): Secure cookies and HSTS.
    pub https: bool,
    /// The trusted reverse proxy, when there is one.
    pub proxy: Option<proxy::ProxyRules>,
}

impl Auth {
    /// Authentication as the flags configure it, or the start-up refusal: a non-loopback
    /// address without authentication is refused unless `--insecure-no-auth` says so.
    pub fn new(args: &Settings) -> Result<Auth> {
        let users = args.users.as_deref().map(UsersStore::open).transpose()?;
        let configured = users.is_some() || args.proxy.is_some();
        if !configured && !args.insecure_no_auth && !args.listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "Refusing to listen on {} without authentication, since anyone who reaches it could replay and purge: configure users with --users FILE (see `dlq-dashboard user add --help`) or a proxy with --trusted-proxies, or pass --insecure-no-auth to accept that.",
                args.listen
            )));
        }
        let https = args.tls
            || args
                .public_url
                .as_deref()
                .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"));
        Ok(Auth {
            insecure: !configured && args.insecure_no_auth,
            proxy: args.proxy.clone(),
            users,
            sessions: Sessions::new(args.session_idle, args.session_lifetime, https),
            https,
            limiter: LoginLimiter::default(),
        })
    }

    /// Whether requests must prove who they are.
    pub fn enabled(&self) -> bool {
        self.users.is_some() || self.proxy.is_some()
    }

    /// Whether authentication is on but nobody could sign in yet (an empty users file):
    /// the dashboard then serves only /healthz.
    pub fn awaiting_first_user(&self) -> bool {
        self.proxy.is_none()
            && self.users.as_ref().is_some_and(|u| {
                let file = u.current();
                file.users.is_empty() && file.tokens.is_empty()
            })
    }

    /// The identity a bearer token stands for at `now` (ms), or a sentence why not.
    pub fn bearer(&self, presented: &str, now: i64) -> Result<Identity, String> {
        let refused = || {
            "This API token is not valid (unknown or revoked); create one with `dlq-dashboard token create`.".to_string()
        };
        let users = self.users.as_ref().ok_or_else(refused)?;
        let file = users.current();
        let digest = token::digest(presented.trim());
        let found = file
            .tokens
            .iter()
            .find(|t| same(t.digest.as_bytes(), digest.as_bytes()))
            .ok_or_else(refused)?;
        if found.expires.is_some_and(|e| e <= now) {
            return Err(format!(
                "The API token {} expired; create a new one with `dlq-dashboard token create`.",
                found.name
            ));
        }
        Ok(Identity {
            name: found.name.clone(),
            role: found.role,
            mode: Mode::Token,
            csrf: None,
            session: None,
        })
    }

    /// The identity behind a session that decrypted and has not expired: its user must
    /// still exist with the same password (a removed user or a changed password ends it).
    /// The role is the user's current one.
    pub fn session_identity(&self, session: Session) -> Option<Identity> {
        let file = self.users.as_ref()?.current();
        let user = file.user(&session.user)?;
        if session::fingerprint(&user.password) != session.password {
            return None;
        }
        Some(Identity {
            name: user.name.clone(),
            role: user.role,
            mode: Mode::Password,
            csrf: Some(session.csrf.clone()),
            session: Some(session),
        })
    }

    /// Check a name and password from `client` (an address), throttled per name and per
    /// address. Blocking: the hash takes tens of milliseconds, so call it off the runtime.
    pub fn login(&self, name: &str, password: &str, client: &str, now_ms: i64) -> Login {
        let keys = [format!("user:{name}"), format!("addr:{client}")];
        let now = Instant::now();
        if let Err(refusal) = self.limiter.check(&keys, now) {
            return Login::Throttled(refusal);
        }
        let file = self.users.as_ref().map(|u| u.current());
        let user = file.as_ref().and_then(|f| f.user(name));
        let right = match user {
            Some(u) => password::verify(password, &u.password),
            None => {
                password::verify_nobody(password);
                false
            }
        };
        match user {
            Some(u) if right => Login::Ok(self.sessions.start(&u.name, &u.password, now_ms)),
            _ => {
                self.limiter.failed(&keys, now);
                Login::Wrong
            }
        }
    }
}
