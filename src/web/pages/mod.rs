//! Server-rendered pages (askama), one module per resource. Every page works without
//! JavaScript.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use crate::error::Error;
use crate::web::error::PageError;
use crate::web::routes::Routes;

mod audit;
mod demo;
mod groups;
mod login;
mod messages;
mod overview;
mod purges;
mod replays;
mod selection;
mod topics;
mod users;

pub(crate) use messages::ReplayAfter;

/// Every page route.
pub fn router() -> Routes {
    Routes::new()
        .merge(overview::router())
        .merge(messages::router())
        .merge(groups::router())
        .merge(replays::router())
        .merge(purges::router())
        .merge(audit::router())
        .merge(topics::router())
        .merge(login::router())
        .merge(users::router())
        .merge(demo::router())
}

/// What a page handler returns.
pub(crate) type PageResult = Result<Response, PageError>;

/// Render a page.
pub(crate) fn html(t: impl Template) -> PageResult {
    Ok(Html(t.render().map_err(Error::Render)?).into_response())
}
