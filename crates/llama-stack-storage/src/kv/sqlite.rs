//! [`SqliteKvStore`]: a [`KvStore`] in one SQLite table,
//! `kvstore(key TEXT PRIMARY KEY, value TEXT, expiration INTEGER)`.
//!
//! `expiration` holds Unix milliseconds (NULL = never expires) and is enforced on every
//! read: expired rows are invisible to `get` and scans, and `get` deletes one it meets.
//! `set_if_absent` is a single `INSERT … ON CONFLICT DO UPDATE … WHERE expired`
//! statement; `increment` is an `IMMEDIATE` transaction, so both are atomic across
//! connections and processes. Threading: one connection behind a mutex, every call run
//! with `tokio::task::spawn_blocking`; WAL mode with `synchronous=FULL`, so an
//! acknowledged write is durable.
//!
//! [`KvStore::change_token`] combines SQLite's `PRAGMA data_version`, read on a second
//! connection (so it moves on every commit by any connection or process), with a count of
//! this handle's writes (which covers `:memory:` databases, where no second connection
//! sees the data).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::storage::{ChangeToken, KvStore};
use llama_stack_core::Result;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{add_counter, expiry_millis, now_millis, parse_counter};
use crate::sqlite_connection::{sqlite_error, DataVersionWatch, SqliteConnection};

const LIVE: &str = "(expiration IS NULL OR expiration > ?2)";

/// A durable [`KvStore`] in a SQLite file (backend `kv_sqlite`).
#[derive(Debug)]
pub struct SqliteKvStore {
    conn: SqliteConnection<()>,
    watch: Option<DataVersionWatch>,
    /// Writes made through this handle (bumped after each one returns).
    writes: AtomicU64,
}

impl SqliteKvStore {
    /// Opens (creating if needed, with parent directories) the SQLite file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = SqliteConnection::open(path.as_ref(), ()).await?;
        conn.call(|c, _| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS kvstore (\
                   key TEXT PRIMARY KEY, value TEXT, expiration INTEGER)",
            )
            .map_err(|e| sqlite_error(e, "creating table kvstore"))
        })
        .await?;
        let watch = DataVersionWatch::open(path.as_ref()).await?;
        Ok(SqliteKvStore {
            conn,
            watch,
            writes: AtomicU64::new(0),
        })
    }

    /// Counts a write (successful or not: a spurious change only costs a re-read).
    fn wrote<T>(&self, result: Result<T>) -> Result<T> {
        self.writes.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        self.conn.path()
    }

    async fn scan(
        &self,
        sql: &'static str,
        from: String,
        until: Option<String>,
    ) -> Result<Vec<(String, String)>> {
        self.conn
            .call(move |c, _| {
                let mut stmt = c
                    .prepare_cached(sql)
                    .map_err(|e| sqlite_error(e, "preparing a kvstore scan"))?;
                let now = now_millis();
                let mut rows = match &until {
                    Some(end) => stmt.query(params![from, now, end]),
                    None => stmt.query(params![from, now]),
                }
                .map_err(|e| sqlite_error(e, "scanning kvstore"))?;
                let mut out = Vec::new();
                while let Some(row) = rows
                    .next()
                    .map_err(|e| sqlite_error(e, "scanning kvstore"))?
                {
                    let key: String = row
                        .get(0)
                        .map_err(|e| sqlite_error(e, "reading a kvstore key"))?;
                    // A prefix scan reads from the prefix on in key order; stop at the
                    // first key outside it.
                    if until.is_none() && !key.starts_with(from.as_str()) {
                        break;
                    }
                    let value: Option<String> = row
                        .get(1)
                        .map_err(|e| sqlite_error(e, "reading a kvstore value"))?;
                    out.push((key, value.unwrap_or_default()));
                }
                Ok(out)
            })
            .await
    }
}

#[async_trait]
impl KvStore for SqliteKvStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.conn
            .call(move |c, _| {
                let now = now_millis();
                let found: Option<(Option<String>, bool)> = c
                    .prepare_cached(&format!("SELECT value, {LIVE} FROM kvstore WHERE key = ?1"))
                    .and_then(|mut s| {
                        s.query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(|e| sqlite_error(e, "reading kvstore"))?;
                match found {
                    Some((value, true)) => Ok(Some(value.unwrap_or_default())),
                    Some((_, false)) => {
                        c.execute(
                            "DELETE FROM kvstore WHERE key = ?1 AND expiration <= ?2",
                            params![key, now],
                        )
                        .map_err(|e| sqlite_error(e, "removing an expired kvstore entry"))?;
                        Ok(None)
                    }
                    None => Ok(None),
                }
            })
            .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        let expiration = expiry_millis(ttl);
        let result = self
            .conn
            .call(move |c, _| {
                c.prepare_cached(
                    "INSERT INTO kvstore (key, value, expiration) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET \
                       value = excluded.value, expiration = excluded.expiration",
                )
                .and_then(|mut s| s.execute(params![key, value, expiration]))
                .map_err(|e| sqlite_error(e, "writing kvstore"))?;
                Ok(())
            })
            .await;
        self.wrote(result)
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let (key, value) = (key.to_string(), value.to_string());
        let expiration = expiry_millis(ttl);
        let result = self
            .conn
            .call(move |c, _| {
                let changed = c
                    .prepare_cached(
                        "INSERT INTO kvstore (key, value, expiration) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (key) DO UPDATE SET \
                           value = excluded.value, expiration = excluded.expiration \
                         WHERE kvstore.expiration IS NOT NULL AND kvstore.expiration <= ?4",
                    )
                    .and_then(|mut s| s.execute(params![key, value, expiration, now_millis()]))
                    .map_err(|e| sqlite_error(e, "writing kvstore"))?;
                Ok(changed == 1)
            })
            .await;
        self.wrote(result)
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let key = key.to_string();
        let result = self
            .conn
            .call(move |c, _| {
                let what = "incrementing a kvstore counter";
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| sqlite_error(e, what))?;
                let now = now_millis();
                let live: Option<Option<String>> = tx
                    .query_row(
                        &format!("SELECT value FROM kvstore WHERE key = ?1 AND {LIVE}"),
                        params![key, now],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| sqlite_error(e, what))?;
                let next = match live {
                    Some(value) => {
                        let current = parse_counter(&key, value.as_deref().unwrap_or_default())?;
                        let next = add_counter(&key, current, delta)?;
                        tx.execute(
                            "UPDATE kvstore SET value = ?2 WHERE key = ?1",
                            params![key, next.to_string()],
                        )
                        .map_err(|e| sqlite_error(e, what))?;
                        next
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO kvstore (key, value, expiration) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (key) DO UPDATE SET \
                               value = excluded.value, expiration = excluded.expiration",
                            params![key, delta.to_string(), expiry_millis(ttl)],
                        )
                        .map_err(|e| sqlite_error(e, what))?;
                        delta
                    }
                };
                tx.commit().map_err(|e| sqlite_error(e, what))?;
                Ok(next)
            })
            .await;
        self.wrote(result)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        let result = self
            .conn
            .call(move |c, _| {
                c.prepare_cached("DELETE FROM kvstore WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![key]))
                    .map_err(|e| sqlite_error(e, "deleting from kvstore"))?;
                Ok(())
            })
            .await;
        self.wrote(result)
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.scan(
            "SELECT key, value FROM kvstore \
             WHERE key >= ?1 AND (expiration IS NULL OR expiration > ?2) ORDER BY key",
            prefix.to_string(),
            None,
        )
        .await
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.scan(
            "SELECT key, value FROM kvstore \
             WHERE key >= ?1 AND (expiration IS NULL OR expiration > ?2) AND key < ?3 \
             ORDER BY key",
            start.to_string(),
            Some(end.to_string()),
        )
        .await
    }

    fn backend(&self) -> &'static str {
        "kv_sqlite"
    }

    fn change_token(&self) -> Option<ChangeToken> {
        // The write count is read first: a write that lands between the two reads shows in
        // the data version now and in the count next time, which only costs one re-read.
        let local = self.writes.load(Ordering::Acquire);
        let external = match &self.watch {
            Some(watch) => watch.data_version()?,
            None => 0,
        };
        Some(ChangeToken::new(external, local))
    }
}
