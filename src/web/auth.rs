//! Authentication at the web edge, in two middlewares:
//!
//! - [`identify`] (on every request) works out who is asking, from a bearer token or a
//!   session cookie, refreshes the session's last-seen time, and while the users file is
//!   empty serves nothing but /healthz;
//! - [`authorize`] (on every route) looks the matched route up in the access table that
//!   `web::routes` built with the router, and answers 401 / a redirect to the sign-in page
//!   to strangers and 403 to roles below the route's, auditing refused actions. A
//!   signed-in browser's JSON POST must also carry a same-origin `Origin`.
//!
//! With authentication off every request is the anonymous admin it always was.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::role::Role;
use crate::auth::{Identity, Mode};
use crate::clock::now_ms;
use crate::error::Error;
use crate::store::audit;
use crate::web::routes::{is_api, Access, AccessTable};
use crate::web::AppState;

/// Who is asking, as [`identify`] found out: none when authentication is on and the
/// request proved nothing (only public routes get that far).
pub struct Caller(pub Option<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Identity>().cloned()))
    }
}

/// The client's address, when the server was started with connection info.
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The identity of every request when authentication is off.
fn anonymous(ip: Option<IpAddr>) -> Identity {
    Identity {
        name: match ip {
            Some(ip) => format!("anonymous ({ip})"),
            None => "anonymous".into(),
        },
        role: Role::Admin,
        mode: Mode::Off,
        csrf: Some(super::csrf::token().to_string()),
        session: None,
    }
}

/// Work out who is asking and leave it on the request (see the module doc).
pub async fn identify(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let auth = &state.auth;
    if !auth.enabled() {
        let who = anonymous(client_ip(request.extensions()));
        request.extensions_mut().insert(who);
        return next.run(request).await;
    }
    if auth.awaiting_first_user() && request.uri().path() != "/healthz" {
        let file = auth
            .users
            .as_ref()
            .map(|u| u.path().display().to_string())
            .unwrap_or_default();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("No user can sign in yet: add one with `dlq-dashboard user add NAME --role admin --users {file}`; the dashboard picks it up without a restart.\n"),
        )
            .into_response();
    }
    let now = now_ms();
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let who = match presented {
            Some(token) => auth.bearer(token, now),
            None => Err("Send an API token as Authorization: Bearer TOKEN.".to_string()),
        };
        return match who {
            Ok(who) => {
                request.extensions_mut().insert(who);
                next.run(request).await
            }
            Err(why) => unauthorized(why),
        };
    }
    if let Some(who) = auth
        .proxy
        .as_ref()
        .and_then(|p| p.identity(client_ip(request.extensions()), request.headers()))
    {
        request.extensions_mut().insert(who);
        return next.run(request).await;
    }
    let mut refreshed = None;
    if let Some(session) = auth.sessions.read(request.headers(), now) {
        if let Some(mut who) = auth.session_identity(session) {
            if let Some(s) = who.session.as_mut().filter(|s| auth.sessions.stale(s, now)) {
                s.seen = now;
                refreshed = Some(s.clone());
            }
            request.extensions_mut().insert(who);
        }
    }
    let mut response = next.run(request).await;
    // A handler that set its own cookie (sign-in, sign-out) has the last word.
    if let Some(session) =
        refreshed.filter(|_| !response.headers().contains_key(header::SET_COOKIE))
    {
        for value in auth.sessions.set(&session) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// 401 with a sentence, as JSON, with the scheme to use.
fn unauthorized(why: String) -> Response {
    let mut response = Error::Unauthorized(why).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"dlq-dashboard\""),
    );
    response
}

/// Where a stranger asking for a page is sent: the sign-in page, coming back afterwards
/// to the page asked for (a form's POST cannot be replayed, so it comes back to nothing).
pub fn to_login(request_method: &Method, path_and_query: &str) -> Response {
    if request_method == Method::GET || request_method == Method::HEAD {
        let next: String = percent_encoding::utf8_percent_encode(
            path_and_query,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        Redirect::to(&format!("/login?next={next}")).into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

/// What [`authorize`] needs: the state (for the error pages and the audit log) and the
/// access table of the routes.
#[derive(Clone)]
pub struct Gate {
    /// The application.
    pub state: AppState,
    /// Every route's rule.
    pub table: Arc<AccessTable>,
}

/// Enforce the matched route's rule (see the module doc).
pub async fn authorize(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let Some(access) = gate.table.access(&method, &path) else {
        return Error::Internal(format!("{method} {path} has no access rule")).into_response();
    };
    let Access::Role(needed) = access else {
        return next.run(request).await;
    };
    let api = is_api(&path);
    let Some(who) = request.extensions().get::<Identity>().cloned() else {
        if api {
            return unauthorized(
                "Sign in first: send an API token as Authorization: Bearer TOKEN (`dlq-dashboard token create` makes one).".into(),
            );
        }
        let asked = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        return to_login(&method, &asked);
    };
    if !who.role.allows(needed) {
        let sentence = format!(
            "Your role ({}) may not do this; it needs {needed}. Ask an admin for a role that may.",
            who.role
        );
        if method == Method::POST {
            refused(&gate.state, &who, &path, request.uri().path(), needed).await;
        }
        return forbidden(&gate.state, &who, api, sentence).await;
    }
    // A browser attaches cookies, and a proxy its headers, to cross-site requests too.
    let browser = matches!(who.mode, Mode::Password | Mode::Proxy);
    if api && method == Method::POST && browser {
        let headers = request.headers();
        let checked = super::extract::require_json(headers).and_then(|()| {
            let has_origin = headers.contains_key(header::ORIGIN)
                || headers.contains_key("sec-fetch-site");
            if !has_origin {
                return Err(Error::Forbidden(
                    "A signed-in JSON request must come from the dashboard's own pages (with an Origin header); scripts send an API token instead.".into(),
                ));
            }
            let authority = request.uri().authority().map(|a| a.as_str().to_string());
            super::csrf::check_origin(headers, authority.as_deref())
        });
        if let Err(e) = checked {
            return e.into_response();
        }
    }
    next.run(request).await
}

async fn forbidden(state: &AppState, who: &Identity, api: bool, sentence: String) -> Response {
    if api {
        Error::Forbidden(sentence).into_response()
    } else {
        super::error::page(state, Some(who), StatusCode::FORBIDDEN, "Refused", sentence).await
    }
}

/// Record an action refused for its role in the audit log.
async fn refused(state: &AppState, who: &Identity, route: &str, path: &str, needed: Role) {
    let summary = format!(
        "Refused POST {path}: role {} may not do this (it needs {needed}).",
        who.role
    );
    let detail = serde_json::json!({
        "route": route,
        "path": path,
        "role": who.role,
        "needs": needed,
        "mode": who.mode.as_str(),
    });
    let entry = audit::NewEntry {
        at: now_ms(),
        actor: &who.actor(),
        mode: Some(who.mode.as_str()),
        action: "auth.refused",
        job_id: None,
        summary: &summary,
        detail: &detail,
    };
    if let Err(e) = audit::append(&state.pool, &entry).await {
        tracing::error!(error = %e, "the refusal could not be audited");
    }
}
