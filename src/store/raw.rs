//! Prepared statements stepped through SQLite's C API on a connection sqlx has handed over.
//!
//! The indexer writes thousands of rows per transaction. Through sqlx every bound value is
//! copied into an argument buffer, the SQL of each multi-row statement is rebuilt and
//! re-prepared, and each statement travels to sqlx's worker thread and back. One statement
//! prepared once and stepped per row, with values bound in place, leaves SQLite's own cost
//! (about a tenth less time per row in the bench), and says exactly which rows it inserted.
//!
//! Everything here runs inside [`with_handle`], which holds `SqliteConnection::lock_handle`
//! so that sqlx does not use the connection at the same time, and inside the caller's
//! transaction. The types make misuse a compile error: a [`Statement`] borrows the
//! [`Handle`] it was prepared on, and columns are read from the [`Row`] that stepping
//! returned. This is the one module with `unsafe` in the store (lib.rs denies it elsewhere
//! but in `kafka::native`).
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{c_int, CStr};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::SqliteConnection;

use crate::error::{Error, Result};

/// An error SQLite reported through the C API, carried as an sqlx database error so callers
/// see the same error type as from any other query.
#[derive(Debug)]
pub struct SqliteFailure {
    code: c_int,
    message: String,
}

impl SqliteFailure {
    /// A failure with this result code and message.
    pub fn new(code: c_int, message: &str) -> Self {
        SqliteFailure {
            code,
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// The connection's last error as a crate error.
fn failure(db: NonNull<ffi::sqlite3>, code: c_int) -> Error {
    // SAFETY: the handle is open; errmsg returns a NUL-terminated string owned by SQLite,
    // copied out before anything else runs on the connection.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db.as_ptr());
        if m.is_null() {
            String::from("unknown SQLite error")
        } else {
            CStr::from_ptr(m).to_string_lossy().into_owned()
        }
    };
    let code = unsafe { ffi::sqlite3_extended_errcode(db.as_ptr()) }.max(code);
    Error::Database(sqlx::Error::Database(Box::new(SqliteFailure {
        code,
        message,
    })))
}

/// The SQLite connection under a sqlx connection, held exclusively: sqlx cannot use the
/// connection while a `Handle` exists, and every statement prepared on it borrows it, so no
/// statement outlives the hold. Only [`with_handle`] and `store::write_on_handle` make one.
pub struct Handle<'c> {
    db: NonNull<ffi::sqlite3>,
    _conn: PhantomData<&'c mut SqliteConnection>,
}

/// Statements stepped per hold of the handle at most: a long loop gives the connection (and
/// its tokio worker) back between holds, so that no request waits behind thousands of
/// statements. Every loop over rows in this module's callers holds it this long.
pub const STATEMENTS_PER_HOLD: usize = 500;

/// Run `f` on the SQLite handle under `conn`, with sqlx kept off the connection until `f`
/// returns. The statements `f` prepares borrow the handle, so they are finalized inside it.
pub async fn with_handle<R>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&Handle<'_>) -> Result<R>,
) -> Result<R> {
    let mut locked = conn.lock_handle().await?;
    f(&handle_of(&mut locked))
}

/// The handle under a connection sqlx has handed over ([`SqliteConnection::lock_handle`]),
/// borrowed for as long as that hand-over lasts.
pub(crate) fn handle_of<'l>(locked: &'l mut sqlx::sqlite::LockedSqliteHandle<'_>) -> Handle<'l> {
    Handle {
        db: locked.as_raw_handle(),
        _conn: PhantomData,
    }
}

impl Handle<'_> {
    /// Prepare one SQL statement.
    pub fn prepare<'a>(&'a self, sql: &str) -> Result<Statement<'a>> {
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        let len = c_int::try_from(sql.len())
            .map_err(|_| Error::Io(std::io::Error::other("SQL text too long")))?;
        // SAFETY: the connection is open and held exclusively (see `Handle`); sql is valid
        // for len bytes, and SQLite copies what it keeps.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(self.db, rc));
        }
        let stmt = NonNull::new(stmt)
            .ok_or_else(|| Error::Io(std::io::Error::other("empty SQL statement")))?;
        Ok(Statement {
            db: self.db,
            stmt,
            _borrows: PhantomData,
        })
    }

    /// Prepare and run one statement that takes no parameters and returns no rows; returns
    /// how many rows it changed.
    pub fn run(&self, sql: &str) -> Result<u64> {
        self.prepare(sql)?.execute()
    }

    /// Whether the connection is outside any transaction (SQLite's autocommit mode). SQLite
    /// may end a transaction by itself on an error (SQLITE_FULL, SQLITE_IOERR, ...), which
    /// this shows and sqlx's own count of open transactions does not.
    pub fn autocommit(&self) -> bool {
        // SAFETY: the connection is open.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) != 0 }
    }

    /// The row id of the last row inserted on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        // SAFETY: the connection is open.
        unsafe { ffi::sqlite3_last_insert_rowid(self.db.as_ptr()) }
    }
}

/// A value that binds to one statement parameter.
pub trait Param<'a> {
    /// Bind `self` to parameter `i` (1-based) of `s`.
    fn bind_to(self, s: &mut Statement<'a>, i: c_int) -> Result<()>;
}

impl<'a> Param<'a> for i64 {
    fn bind_to(self, s: &mut Statement<'a>, i: c_int) -> Result<()> {
        s.int(i, self)
    }
}

impl<'a> Param<'a> for &'a str {
    fn bind_to(self, s: &mut Statement<'a>, i: c_int) -> Result<()> {
        s.text(i, Some(self))
    }
}

/// A prepared statement on a [`Handle`], whose bound text and blobs borrow from data living
/// at least `'a`: they are bound without a copy (SQLITE_STATIC), which is sound only because
/// the borrow outlives the statement, whose drop finalizes it. `'a` is also within the
/// handle's hold, so the statement cannot outlive it.
pub struct Statement<'a> {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    _borrows: PhantomData<&'a [u8]>,
}

impl<'a> Statement<'a> {
    fn check(&self, rc: c_int) -> Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(failure(self.db, rc))
        }
    }

    /// Bind an integer to parameter `i` (1-based).
    pub fn int(&mut self, i: c_int, v: i64) -> Result<()> {
        // SAFETY: the statement is live.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), i, v) })
    }

    /// Bind an integer or NULL.
    pub fn opt_int(&mut self, i: c_int, v: Option<i64>) -> Result<()> {
        match v {
            Some(v) => self.int(i, v),
            None => self.null(i),
        }
    }

    /// Bind NULL.
    pub fn null(&mut self, i: c_int) -> Result<()> {
        // SAFETY: the statement is live.
        self.check(unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), i) })
    }

    /// Bind text (NULL for None) without copying it.
    pub fn text(&mut self, i: c_int, v: Option<&'a str>) -> Result<()> {
        // SAFETY: `v` outlives the statement (lifetime 'a), so SQLite may read it until the
        // parameter is rebound or the statement finalized.
        unsafe { self.bind_text(i, v, ffi::SQLITE_STATIC()) }
    }

    /// Bind text that lives shorter than the statement: SQLite copies it.
    pub fn text_copy(&mut self, i: c_int, v: Option<&str>) -> Result<()> {
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before returning.
        unsafe { self.bind_text(i, v, ffi::SQLITE_TRANSIENT()) }
    }

    /// # Safety
    /// With SQLITE_STATIC, `v` must stay valid while the statement may read it.
    unsafe fn bind_text(
        &mut self,
        i: c_int,
        v: Option<&str>,
        destructor: ffi::sqlite3_destructor_type,
    ) -> Result<()> {
        let Some(v) = v else { return self.null(i) };
        // SAFETY: the statement is live; the caller vouches for the text's lifetime.
        self.check(unsafe {
            ffi::sqlite3_bind_text64(
                self.stmt.as_ptr(),
                i,
                v.as_ptr().cast(),
                v.len() as u64,
                destructor,
                ffi::SQLITE_UTF8 as u8,
            )
        })
    }

    /// Bind bytes (NULL for None) without copying them.
    pub fn blob(&mut self, i: c_int, v: Option<&'a [u8]>) -> Result<()> {
        let Some(v) = v else { return self.null(i) };
        // SAFETY: as for `text`; an empty slice's pointer is non-null, so SQLite stores an
        // empty blob rather than NULL, as sqlx does.
        self.check(unsafe {
            ffi::sqlite3_bind_blob64(
                self.stmt.as_ptr(),
                i,
                v.as_ptr().cast(),
                v.len() as u64,
                ffi::SQLITE_STATIC(),
            )
        })
    }

    /// Run the statement to completion (it returns no rows) and make it ready for the next
    /// bindings. Returns how many rows it changed.
    pub fn execute(&mut self) -> Result<u64> {
        // SAFETY: the statement is live; reset after step so the next row can be bound, and
        // so that a failed step leaves it reusable.
        let rc = unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) };
        let result = if rc == ffi::SQLITE_DONE {
            Ok(unsafe { ffi::sqlite3_changes(self.db.as_ptr()) }.max(0) as u64)
        } else {
            Err(failure(self.db, rc))
        };
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
        result
    }

    /// Step a query: the next row, or None (and ready to run again) once there are no more.
    /// The row borrows the statement, so it is read before the statement moves on.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        // SAFETY: the statement is live.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(Some(Row {
                stmt: self.stmt,
                _statement: PhantomData,
            })),
            ffi::SQLITE_DONE => {
                // SAFETY: as above.
                unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
                Ok(None)
            }
            rc => {
                let e = failure(self.db, rc);
                // SAFETY: as above.
                unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
                Err(e)
            }
        }
    }
}

/// The current row of a stepped query: only [`Statement::next_row`] makes one, so columns
/// can be read only while the statement stands on a row.
pub struct Row<'s> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    _statement: PhantomData<&'s mut ()>,
}

impl Row<'_> {
    /// Column `i` (0-based) as an integer.
    pub fn int(&self, i: c_int) -> i64 {
        // SAFETY: the statement stands on this row (see `Row`).
        unsafe { ffi::sqlite3_column_int64(self.stmt.as_ptr(), i) }
    }

    /// Column `i` as bytes (the UTF-8 of text), None for NULL; borrowed until the statement
    /// moves on.
    pub fn bytes(&self, i: c_int) -> Option<&[u8]> {
        // SAFETY: the statement stands on this row; blob() before bytes(), as the SQLite
        // docs require, and the buffer lives until the next step or reset, which needs the
        // statement that this row borrows.
        unsafe {
            if ffi::sqlite3_column_type(self.stmt.as_ptr(), i) == ffi::SQLITE_NULL {
                return None;
            }
            let p = ffi::sqlite3_column_blob(self.stmt.as_ptr(), i);
            let n = ffi::sqlite3_column_bytes(self.stmt.as_ptr(), i);
            if p.is_null() || n <= 0 {
                return Some(&[]);
            }
            Some(std::slice::from_raw_parts(p.cast::<u8>(), n as usize))
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized exactly once; the borrowed bindings are still alive here.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}
