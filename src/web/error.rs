//! Errors at the web edge: JSON for the API, a page in the real frame for the pages.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::error::Error;
use crate::web::frame::Frame;
use crate::web::AppState;

/// An error shown as a page (the API shows the same errors as JSON).
pub struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

#[derive(Template)]
#[template(path = "pages/error.html")]
pub(crate) struct ErrorPage {
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
        let page = ErrorPage {
            frame: Frame {
                active: "",
                connected: true,
                status_text: String::new(),
                status_detail: None,
                embedded: false,
                brokers: String::new(),
                unresolved: String::new(),
                groups: String::new(),
                active_jobs: String::new(),
                csrf: "",
            },
            code: status.as_u16(),
            title: title.into(),
            message: self.0.public_message(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.0.public_message()).into_response(),
        }
    }
}

/// The 404 page for any unknown path.
pub async fn not_found(State(state): State<AppState>) -> Response {
    let page = ErrorPage {
        frame: Frame::build(&state, "").await,
        code: 404,
        title: "Not found".into(),
        message: "There is no page at this address. The overview lists every DLQ topic.".into(),
    };
    match page.render() {
        Ok(h) => (StatusCode::NOT_FOUND, Html(h)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}
