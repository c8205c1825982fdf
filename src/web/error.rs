//! Errors at the web edge. The API answers them as JSON (`impl IntoResponse for Error`); the
//! pages answer them as a page in the real frame: connection status, counts and the CSRF
//! token, like every other page.
//!
//! A handler's error carries no state, so [`PageError`] only marks its response with what
//! went wrong, and the [`framed`] middleware, which has the state, renders the page.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::auth::Identity;
use crate::error::Error;
use crate::web::auth::{to_login, Caller};
use crate::web::frame::Frame;
use crate::web::routes::is_api;
use crate::web::AppState;

/// An error shown as a page (the API shows the same errors as JSON).
pub struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

/// What a failed page says, left on its response for [`framed`] to render.
#[derive(Debug, Clone)]
struct PageProblem {
    title: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "pages/error.html")]
struct ErrorPage {
    frame: Frame,
    code: u16,
    title: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "page failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "That request cannot be shown",
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::CONFLICT => "That cannot be done now",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "That request cannot be read",
            _ => "Something went wrong",
        };
        let message = self.0.public_message();
        // The plain sentence stands in until the middleware renders the page around it.
        let mut response = (status, message.clone()).into_response();
        response
            .extensions_mut()
            .insert(PageProblem { title, message });
        response
    }
}

/// Render every page error in the frame of a normal page.
pub async fn framed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let who = request.extensions().get::<Identity>().cloned();
    let response = next.run(request).await;
    let Some(problem) = response.extensions().get::<PageProblem>().cloned() else {
        return response;
    };
    let status = response.status();
    page(&state, who.as_ref(), status, problem.title, problem.message).await
}

/// The 404 page for any unknown path; a stranger is sent to sign in first, so that the
/// answer does not tell which addresses exist.
pub async fn not_found(
    State(state): State<AppState>,
    Caller(who): Caller,
    method: Method,
    uri: Uri,
) -> Response {
    if who.is_none() && state.auth.enabled() {
        if is_api(uri.path()) {
            return Error::Unauthorized(
                "Sign in first: send an API token as Authorization: Bearer TOKEN.".into(),
            )
            .into_response();
        }
        let asked = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return to_login(&method, asked);
    }
    page(
        &state,
        who.as_ref(),
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address. The overview lists every DLQ topic.".into(),
    )
    .await
}

/// An error page in the frame `who` sees.
pub(crate) async fn page(
    state: &AppState,
    who: Option<&Identity>,
    status: StatusCode,
    title: &str,
    message: String,
) -> Response {
    let page = ErrorPage {
        frame: Frame::build(state, who, "").await,
        code: status.as_u16(),
        title: title.into(),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, page.message).into_response(),
    }
}
