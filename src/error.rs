//! The one error type of the crate, with `IntoResponse` at the web edge.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Everything that can go wrong, each variant carrying a sentence fit to show a user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request parameter is malformed; the sentence names the parameter and why.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but cannot be done in the current state.
    #[error("{0}")]
    Conflict(String),
    /// The thing asked for existed and was deliberately removed (an erased payload).
    #[error("{0}")]
    Gone(String),
    /// A request body in a format the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request proved no identity (authentication is on).
    #[error("{0}")]
    Unauthorized(String),
    /// A form or request that may come from another site (no valid CSRF token), or a
    /// role that may not do what was asked.
    #[error("{0}")]
    Forbidden(String),
    /// One client sent more requests at once than the dashboard serves for it.
    #[error("{0}")]
    TooMany(String),
    /// Something the request needs is not reachable right now (no broker answers).
    #[error("{0}")]
    Unavailable(String),
    /// A configuration problem found at start-up.
    #[error("{0}")]
    Config(String),
    /// Kafka said no; the sentence explains what to check.
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The SQLite index failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file or socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something inside the dashboard failed (a bug or a lost task, not a user error).
    #[error("{0}")]
    Internal(String),
    /// A template failed to render (a bug, not a user error).
    #[error("page rendering failed: {0}")]
    Render(#[from] askama::Error),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of index fault behind this error when it is one the machine may recover
    /// from by itself (a full disk, an I/O error, a read-only or locked file): the action
    /// can be tried again once the cause is gone.
    pub fn write_fault(&self) -> Option<FaultKind> {
        match self {
            Error::Database(_) | Error::Io(_) => match FaultKind::of(self) {
                k @ (FaultKind::DiskFull
                | FaultKind::Io
                | FaultKind::ReadOnly
                | FaultKind::Busy) => Some(k),
                _ => None,
            },
            _ => None,
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        if self.write_fault().is_some() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Kafka(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence shown to the user. Internal failures are logged in full but shown
    /// without internals.
    pub fn public_message(&self) -> String {
        if let Some(kind) = self.write_fault() {
            let why = match kind {
                FaultKind::DiskFull => "its disk is full",
                FaultKind::ReadOnly => "its file is read-only",
                FaultKind::Busy => "another program holds its write lock",
                _ => "the operating system failed a write",
            };
            return format!(
                "The index cannot be written right now ({why}); what was asked was not done: try again once the cause is gone (the page header says why)."
            );
        }
        match self {
            Error::Database(_)
            | Error::Migrate(_)
            | Error::Io(_)
            | Error::Render(_)
            | Error::Internal(_) => {
                "The dashboard hit an internal error; the server log has the details.".into()
            }
            other => other.to_string(),
        }
    }
}

/// JSON error body: `{"error": "plain sentence"}`.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            Json(ErrorBody {
                error: self.public_message(),
            }),
        )
            .into_response()
    }
}

/// What a failed write met, from SQLite's primary result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SQLITE_FULL: the file system is full (or a page limit was reached).
    DiskFull,
    /// SQLITE_READONLY: the file or its file system cannot be written.
    ReadOnly,
    /// SQLITE_IOERR: the operating system failed a read or write.
    Io,
    /// SQLITE_BUSY or SQLITE_LOCKED past the busy timeout: another connection holds the lock.
    Busy,
    /// SQLITE_CORRUPT or SQLITE_NOTADB: the file is damaged or not a database.
    Corrupt,
    /// SQLITE_CANTOPEN: the file (or its folder) cannot be opened.
    CantOpen,
    /// Anything else.
    Other,
}

impl FaultKind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::DiskFull,
        FaultKind::ReadOnly,
        FaultKind::Io,
        FaultKind::Busy,
        FaultKind::Corrupt,
        FaultKind::CantOpen,
        FaultKind::Other,
    ];

    /// The kind of an SQLite result code (primary or extended).
    pub fn of_code(code: i32) -> FaultKind {
        match code & 0xff {
            13 => FaultKind::DiskFull,
            8 => FaultKind::ReadOnly,
            10 => FaultKind::Io,
            5 | 6 => FaultKind::Busy,
            11 | 26 => FaultKind::Corrupt,
            14 => FaultKind::CantOpen,
            _ => FaultKind::Other,
        }
    }

    /// The kind of a crate error.
    pub fn of(e: &Error) -> FaultKind {
        match e {
            Error::Database(sqlx::Error::Database(d)) => d
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map_or(FaultKind::Other, FaultKind::of_code),
            Error::Database(sqlx::Error::PoolTimedOut) => FaultKind::Busy,
            Error::Database(sqlx::Error::Io(_)) | Error::Io(_) => FaultKind::Io,
            _ => FaultKind::Other,
        }
    }

    /// The word in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::DiskFull => "disk_full",
            FaultKind::ReadOnly => "read_only",
            FaultKind::Io => "io",
            FaultKind::Busy => "busy",
            FaultKind::Corrupt => "corrupt",
            FaultKind::CantOpen => "cant_open",
            FaultKind::Other => "other",
        }
    }
}
