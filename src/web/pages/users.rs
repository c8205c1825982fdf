//! The users and tokens page (admin): who may sign in, with which role, and which API
//! tokens exist. Changes are made with the `user` and `token` subcommands on the server.

use askama::Template;
use axum::extract::State;

use super::{html, PageResult};
use crate::clock::now_ms;
use crate::error::Error;
use crate::web::auth::Caller;
use crate::web::frame::Frame;
use crate::web::routes::{Routes, ADMIN};
use crate::web::view;
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/users", ADMIN, users_page)
}

struct TokenRow {
    name: String,
    role: &'static str,
    created: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "pages/users.html")]
struct UsersPage {
    frame: Frame,
    file: String,
    users: Vec<(String, &'static str)>,
    tokens: Vec<TokenRow>,
}

async fn users_page(State(state): State<AppState>, Caller(who): Caller) -> PageResult {
    let store = state.auth.users.as_ref().ok_or_else(|| {
        Error::NotFound(
            "This dashboard runs without a users file (--users), so it has no users.".into(),
        )
    })?;
    let file = store.current();
    let now = now_ms();
    html(UsersPage {
        frame: Frame::build(&state, who.as_ref(), "users").await,
        file: store.path().display().to_string(),
        users: file
            .users
            .iter()
            .map(|u| (u.name.clone(), u.role.as_str()))
            .collect(),
        tokens: file
            .tokens
            .iter()
            .map(|t| TokenRow {
                name: t.name.clone(),
                role: t.role.as_str(),
                created: view::time(t.created),
                expires: match t.expires {
                    None => "never".into(),
                    Some(e) if e <= now => format!("expired {}", view::time(e)),
                    Some(e) => view::time(e),
                },
            })
            .collect(),
    })
}
