//! Signing in and out. The sign-in form is checked for a same-site origin (it has no
//! session to bind a token to yet); wrong passwords are throttled per name and per
//! address, and a throttled attempt is refused before its password is checked.

use askama::Template;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::Login;
use crate::clock::now_ms;
use crate::error::Error;
use crate::store::audit;
use crate::web::auth::{client_ip, Caller};
use crate::web::csrf::check_origin;
use crate::web::error::PageError;
use crate::web::frame::Frame;
use crate::web::routes::{Access, Routes};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/login", Access::Public, login_page)
        .post("/login", Access::Public, login)
        .post("/logout", Access::Public, logout)
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    frame: Frame,
    next: String,
    name: String,
    message: Option<String>,
}

/// Where to go after signing in: a path on this dashboard, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

fn render(
    state: &AppState,
    status: StatusCode,
    next: &str,
    name: &str,
    message: Option<String>,
) -> Response {
    let page = LoginPage {
        frame: Frame::signed_out(state),
        next: next.to_string(),
        name: name.to_string(),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError::from(Error::Render(e)).into_response(),
    }
}

/// `GET /login?next=/path`: the form, or straight on when already signed in.
async fn login_page(
    State(state): State<AppState>,
    Caller(who): Caller,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let next = safe_next(
        params
            .iter()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.as_str()),
    );
    if !state.auth.enabled() || who.is_some() {
        return Redirect::to(&next).into_response();
    }
    render(&state, StatusCode::OK, &next, "", None)
}

fn form_fields(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, Error> {
    check_origin(headers, None)?;
    serde_urlencoded::from_bytes(body)
        .map_err(|_| Error::BadRequest("The form is not valid URL encoding.".into()))
}

/// `POST /login`: check the name and password, then start a session.
async fn login(State(state): State<AppState>, request: Request) -> Response {
    if !state.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let client = client_ip(request.extensions())
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let headers = request.headers().clone();
    let body = match Bytes::from_request(request, &state).await {
        Ok(b) => b,
        Err(_) => {
            return PageError::from(Error::BadRequest("The form could not be read.".into()))
                .into_response()
        }
    };
    let fields = match form_fields(&headers, &body) {
        Ok(f) => f,
        Err(e) => return PageError::from(e).into_response(),
    };
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (name, password) = (field("name").trim().to_string(), field("password"));
    let next = safe_next(Some(&field("next")));
    let worker = state.clone();
    let (who, client_key) = (name.clone(), client.clone());
    // The hash takes tens of milliseconds of CPU: off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        worker.auth.login(&who, &password, &client_key, now_ms())
    })
    .await;
    match outcome {
        Ok(Login::Ok(session)) => {
            let mut response = Redirect::to(&next).into_response();
            for value in state.auth.sessions.set(&session) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Login::Wrong) => render(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            &name,
            Some("That name and password do not match; try again.".into()),
        ),
        Ok(Login::Throttled(refusal)) => {
            if refusal.first {
                audit_refusal(&state, &name, &client, &refusal.key).await;
            }
            render(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &name,
                Some("Too many wrong passwords in the last minute for this name or from this address, so this attempt was refused unchecked; wait a minute and try again.".into()),
            )
        }
        Err(e) => {
            PageError::from(Error::Internal(format!("sign-in check failed: {e}"))).into_response()
        }
    }
}

async fn audit_refusal(state: &AppState, name: &str, client: &str, key: &str) {
    let summary = format!(
        "Sign-in as {name} from {client} refused unchecked: {} wrong passwords in a minute ({key}).",
        crate::auth::limiter::LIMIT
    );
    let detail = serde_json::json!({ "user": name, "client": client, "limited": key });
    let actor = format!("anonymous ({client})");
    let entry = audit::NewEntry {
        at: now_ms(),
        actor: &actor,
        mode: Some(crate::auth::Mode::Password.as_str()),
        action: "auth.login_refused",
        job_id: None,
        summary: &summary,
        detail: &detail,
    };
    if let Err(e) = audit::append(&state.pool, &entry).await {
        tracing::error!(error = %e, "the refused sign-in could not be audited");
    }
}

/// `POST /logout`: end the session in the browser, back to the sign-in page.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_origin(&headers, None) {
        return PageError::from(e).into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    for value in state.auth.sessions.clear() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
