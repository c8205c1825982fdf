//! The static files (`static/`), embedded in the binary. Pages link them under their content
//! hash, `/static/<hash>/app.css`, served with a year's immutable caching: an upgrade changes
//! the hash, so a browser never keeps stale CSS or JavaScript. The plain `/static/app.css`
//! still answers, revalidated on every use.

use std::fmt::Write;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::web::routes::{Access, Routes};

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Files;

/// Cache-Control of a file named by its current hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control of a file named without a hash, or by a hash of an earlier version.
const REVALIDATE: &str = "no-cache";

/// The hashed URLs of the files the page frame links.
#[derive(Debug)]
pub struct AssetUrls {
    /// The stylesheet.
    pub css: String,
    /// The script.
    pub js: String,
    /// The icon.
    pub icon: String,
}

/// The first 16 hex digits of a file's SHA-256: its version in URLs.
fn version(name: &str) -> Option<String> {
    let file = Files::get(name)?;
    let mut hex = String::with_capacity(16);
    for b in &file.metadata.sha256_hash()[..8] {
        let _ = write!(hex, "{b:02x}");
    }
    Some(hex)
}

fn versioned(name: &str) -> String {
    match version(name) {
        Some(v) => format!("/static/{v}/{name}"),
        None => format!("/static/{name}"),
    }
}

/// The frame's asset URLs, hashed once per process.
pub fn urls() -> &'static AssetUrls {
    static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
        css: versioned("app.css"),
        js: versioned("app.js"),
        icon: versioned("favicon.svg"),
    });
    &URLS
}

/// The static file routes.
pub fn router() -> Routes {
    Routes::new()
        .get("/static/{file}", Access::Public, unversioned)
        .get("/static/{version}/{file}", Access::Public, by_version)
}

async fn unversioned(Path(file): Path<String>) -> Response {
    serve(&file, REVALIDATE)
}

async fn by_version(Path((asked, file)): Path<(String, String)>) -> Response {
    // A page rendered before an upgrade may ask for the previous version: it gets the
    // current file, not kept, rather than a broken page.
    let cache = if version(&file).is_some_and(|v| v == asked) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    serve(&file, cache)
}

fn serve(name: &str, cache: &'static str) -> Response {
    let Some(file) = Files::get(name) else {
        return Error::NotFound(format!("There is no static file named {name}.")).into_response();
    };
    let mime = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache)],
        file.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_every_file_under_its_content_hash() {
        let urls = urls();
        for (url, name) in [
            (&urls.css, "app.css"),
            (&urls.js, "app.js"),
            (&urls.icon, "favicon.svg"),
        ] {
            let v = version(name).unwrap();
            assert_eq!(v.len(), 16);
            assert_eq!(*url, format!("/static/{v}/{name}"));
        }
        assert_ne!(version("app.css"), version("app.js"));
    }
}
