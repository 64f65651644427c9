//! [`SqliteConnection`]: one SQLite connection shared by a backend, used only on
//! blocking threads.
//!
//! Threading model: the connection (plus a backend's own state, e.g. the SQL store's
//! schema cache) lives behind a `std::sync::Mutex`; every operation is a closure run with
//! `tokio::task::spawn_blocking` that locks it, so SQLite never blocks the async runtime
//! and operations on one store are serialised. The database is opened in WAL mode with
//! `synchronous=FULL` (a commit is on disk before the call returns) and a busy timeout,
//! so other connections and processes on the same file wait instead of failing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llama_stack_core::{Error, Result};
use rusqlite::{Connection, ErrorCode};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The locked part: the connection and the backend's state.
struct Locked<S> {
    conn: Connection,
    state: S,
}

/// A SQLite connection plus backend state `S`, used through [`SqliteConnection::call`].
pub(crate) struct SqliteConnection<S> {
    inner: Arc<Mutex<Locked<S>>>,
    path: PathBuf,
}

impl<S> std::fmt::Debug for SqliteConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConnection")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> SqliteConnection<S> {
    /// Opens (creating if needed, with parent directories) the database at `path`.
    pub(crate) async fn open(path: &Path, state: S) -> Result<Self> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = run_blocking(move || open_connection(&p)).await?;
        Ok(SqliteConnection {
            inner: Arc::new(Mutex::new(Locked { conn, state })),
            path,
        })
    }

    /// The path of the database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection and state on a blocking thread.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut S) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            // A panic inside a closure drops its open transaction (rolled back), so the
            // connection is still usable after poisoning.
            let mut guard = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Locked { conn, state } = &mut *guard;
            f(conn, state)
        })
        .await
    }
}

/// A second connection to the same database that only reads `PRAGMA data_version`, which
/// changes whenever another connection (of this process or another) commits, so "has
/// anything been written?" is answered from the WAL index in shared memory, with no
/// thread hop. It never waits for a lock: when SQLite is busy the answer is "unknown".
pub(crate) struct DataVersionWatch {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for DataVersionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataVersionWatch").finish_non_exhaustive()
    }
}

impl DataVersionWatch {
    /// Opens the watch on `path`; `None` for an in-memory database, which no other
    /// connection can write.
    pub(crate) async fn open(path: &Path) -> Result<Option<Self>> {
        if path.as_os_str() == ":memory:" {
            return Ok(None);
        }
        let p = path.to_path_buf();
        let conn = run_blocking(move || {
            let conn = open_connection(&p)?;
            // Never wait: a busy database means "unknown", and the caller reads the data.
            conn.busy_timeout(Duration::ZERO).map_err(|e| {
                Error::unavailable(format!("cannot configure SQLite watch connection: {e}"))
            })?;
            Ok(conn)
        })
        .await?;
        Ok(Some(DataVersionWatch {
            conn: Mutex::new(conn),
        }))
    }

    /// The current data version, or `None` if SQLite could not answer at once.
    pub(crate) fn data_version(&self) -> Option<u64> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .ok()?;
        Some(version as u64)
    }
}

async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("SQLite worker task failed: {e}")))?
}

fn open_connection(path: &Path) -> Result<Connection> {
    let in_memory = path.as_os_str() == ":memory:";
    if !in_memory {
        if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::config(format!(
                    "cannot create directory '{}' for SQLite database '{}': {e}",
                    parent.display(),
                    path.display()
                ))
                .with_context("path", path.display().to_string())
                .with_source(e)
            })?;
        }
    }
    let fail = |e: rusqlite::Error| {
        Error::unavailable(format!(
            "cannot open SQLite database '{}': {e}",
            path.display()
        ))
        .with_context("path", path.display().to_string())
        .with_source(e)
    };
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // `journal_mode` answers with the mode now in effect (`memory` for in-memory databases).
    let _mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(fail)?;
    Ok(conn)
}

/// Maps a SQLite error to our error: lock contention is `Unavailable` (retryable),
/// anything else `Internal`; `what` says which operation failed.
pub(crate) fn sqlite_error(e: rusqlite::Error, what: &str) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    let message = format!("SQLite {what} failed: {e}");
    let err = if busy {
        Error::unavailable(message)
    } else {
        Error::internal(message)
    };
    err.with_source(e)
}
