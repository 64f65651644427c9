//! [`PostgresKvStore`]: a [`KvStore`] in one PostgreSQL table (backend `kv_postgres`).
//!
//! The table (`table_name`, default `llamastack_kvstore`) has Llama Stack's layout,
//! `key TEXT PRIMARY KEY, value TEXT, expiration TIMESTAMPTZ`, with `key` in the `"C"`
//! collation so keys compare as bytes. Expiry uses the database clock (`now()`), so every
//! instance sharing the table agrees on what is live. Each operation is one statement:
//! `set_if_absent` and `increment` are `INSERT … ON CONFLICT DO UPDATE` statements, which
//! PostgreSQL runs atomically against concurrent writers from any process. Expired pairs
//! are never returned; their rows are deleted when a store opens and every
//! [`SWEEP_INTERVAL`] after. Text cannot
//! hold U+0000 in PostgreSQL, so U+0000/U+0001 are escaped order-preservingly.

use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::storage::{validate_identifier, KvStore};
use llama_stack_core::{Error, Result};
use tokio_postgres::error::SqlState;

use crate::config::KvPostgresConfig;
use crate::postgres_connection::{
    escape_text, prefix_successor, quote, unescape_text, PgPool, PgTarget, PoolOptions, SCHEMA_LOCK,
};

/// Connections per `kv_postgres` backend.
const POOL_SIZE: usize = 16;

/// The SQL text of every statement, built once for the configured table.
#[derive(Debug)]
struct Statements {
    get: String,
    set: String,
    set_if_absent: String,
    increment: String,
    delete: String,
    scan_from: String,
    scan_between: String,
    sweep: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        let t = quote(table);
        let live = "(expiration IS NULL OR expiration > now())";
        let expiry = "CASE WHEN $3::bigint IS NULL THEN NULL \
                      ELSE now() + $3::bigint * interval '1 millisecond' END";
        Statements {
            get: format!("SELECT value FROM {t} WHERE key = $1 AND {live}"),
            set: format!(
                "INSERT INTO {t} (key, value, expiration) VALUES ($1, $2, {expiry}) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 expiration = EXCLUDED.expiration"
            ),
            set_if_absent: format!(
                "INSERT INTO {t} AS cur (key, value, expiration) VALUES ($1, $2, {expiry}) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 expiration = EXCLUDED.expiration \
                 WHERE cur.expiration IS NOT NULL AND cur.expiration <= now() \
                 RETURNING 1"
            ),
            increment: format!(
                "INSERT INTO {t} AS cur (key, value, expiration) VALUES ($1, $2, {expiry}) \
                 ON CONFLICT (key) DO UPDATE SET \
                   value = CASE WHEN cur.expiration IS NOT NULL AND cur.expiration <= now() \
                           THEN EXCLUDED.value \
                           ELSE (cur.value::bigint + EXCLUDED.value::bigint)::text END, \
                   expiration = CASE WHEN cur.expiration IS NOT NULL AND cur.expiration <= now() \
                           THEN EXCLUDED.expiration ELSE cur.expiration END \
                 RETURNING value"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            sweep: format!("DELETE FROM {t} WHERE expiration IS NOT NULL AND expiration <= now()"),
            scan_from: format!(
                "SELECT key, value FROM {t} WHERE key COLLATE \"C\" >= $1 \
                 AND starts_with(key, $1) AND {live} ORDER BY key COLLATE \"C\""
            ),
            scan_between: format!(
                "SELECT key, value FROM {t} WHERE key COLLATE \"C\" >= $1 \
                 AND key COLLATE \"C\" < $2 AND {live} ORDER BY key COLLATE \"C\""
            ),
        }
    }
}

/// How often each open store deletes expired pairs from its table (reads never return
/// them; the sweep only reclaims their space).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The periodic sweep task; stopped when the store is dropped.
#[derive(Debug)]
struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`KvStore`] in a PostgreSQL table (backend `kv_postgres`).
#[derive(Debug)]
pub struct PostgresKvStore {
    pool: PgPool,
    table: String,
    sql: std::sync::Arc<Statements>,
    _sweeper: Option<Sweeper>,
}

/// Deletes the expired pairs; returns how many.
async fn sweep(pool: &PgPool, sql: &Statements, table: &str) -> Result<u64> {
    let what = format!("deleting expired keys from table '{table}'");
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&sql.sweep)
        .await
        .map_err(|e| pool.error(e, &what))?;
    client
        .execute(&stmt, &[])
        .await
        .map_err(|e| pool.error(e, &what))
}

impl PostgresKvStore {
    /// Connects with `cfg` and creates the table if it is absent.
    pub async fn open(cfg: &KvPostgresConfig) -> Result<Self> {
        validate_identifier(&cfg.table_name).map_err(|e| e.with_prefix("table_name"))?;
        let target = PgTarget {
            host: cfg.host.clone(),
            port: cfg.port.0,
            db: cfg.db.clone(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            ssl_mode: cfg.ssl_mode,
            ca_cert_path: cfg.ca_cert_path.clone(),
        };
        let pool = PgPool::new(
            &target,
            PoolOptions {
                max_size: POOL_SIZE,
                // Closed connections are still dropped on checkout; a round trip per call
                // would double the latency of every operation.
                pre_ping: false,
                recycle_after: None,
            },
        )?;
        let mut store = PostgresKvStore {
            pool,
            table: cfg.table_name.clone(),
            sql: std::sync::Arc::new(Statements::new(&cfg.table_name)),
            _sweeper: None,
        };
        store.create_table().await?;
        let (pool, sql, table) = (store.pool.clone(), store.sql.clone(), store.table.clone());
        store._sweeper = Some(Sweeper(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = sweep(&pool, &sql, &table).await {
                    tracing::debug!(table = %table, error = %e, "sweeping expired keys failed");
                }
            }
        })));
        Ok(store)
    }

    /// Deletes the expired pairs now (the store also does this every
    /// [`SWEEP_INTERVAL`]); returns how many were deleted.
    pub async fn sweep_expired(&self) -> Result<u64> {
        sweep(&self.pool, &self.sql, &self.table).await
    }

    /// The table holding the pairs.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    async fn create_table(&self) -> Result<()> {
        let what = format!("creating table '{}'", self.table);
        let mut client = self.pool.get().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        let t = quote(&self.table);
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (\
               key TEXT COLLATE \"C\" PRIMARY KEY, value TEXT, expiration TIMESTAMPTZ);\
             DELETE FROM {t} WHERE expiration IS NOT NULL AND expiration <= now();"
        ))
        .await
        .map_err(|e| self.pool.error(e, &what))?;
        tx.commit().await.map_err(|e| self.pool.error(e, &what))
    }

    /// `sql` prepared once per pooled connection (a plain query would prepare it on every
    /// call, costing a second round trip).
    async fn prepared(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
    ) -> Result<tokio_postgres::Statement> {
        client.prepare_cached(sql).await.map_err(|e| {
            self.pool.error(
                e,
                &format!("preparing a statement on table '{}'", self.table),
            )
        })
    }

    fn what(&self, op: &str, key: &str) -> String {
        format!("{op} key '{key}' in table '{}'", self.table)
    }

    async fn scan(
        &self,
        sql: &str,
        start: &str,
        end: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let client = self.pool.get().await?;
        let what = format!("scanning table '{}'", self.table);
        let stmt = self.prepared(&client, sql).await?;
        let rows = match end {
            Some(end) => client.query(&stmt, &[&start, &end]).await,
            None => client.query(&stmt, &[&start]).await,
        }
        .map_err(|e| self.pool.error(e, &what))?;
        rows.into_iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(|e| self.pool.error(e, &what))?;
                let value: Option<String> =
                    row.try_get(1).map_err(|e| self.pool.error(e, &what))?;
                Ok((unescape_text(key), unescape_text(value.unwrap_or_default())))
            })
            .collect()
    }
}

/// A TTL in milliseconds (at least 1, so a tiny TTL still expires).
fn ttl_millis(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX).max(1))
}

#[async_trait]
impl KvStore for PostgresKvStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        let stmt = self.prepared(&client, &self.sql.get).await?;
        let row = client
            .query_opt(&stmt, &[&escape_text(key).as_ref()])
            .await
            .map_err(|e| self.pool.error(e, &self.what("reading", key)))?;
        match row {
            Some(row) => {
                let value: Option<String> = row
                    .try_get(0)
                    .map_err(|e| self.pool.error(e, &self.what("reading", key)))?;
                Ok(Some(unescape_text(value.unwrap_or_default())))
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let client = self.pool.get().await?;
        let stmt = self.prepared(&client, &self.sql.set).await?;
        client
            .execute(
                &stmt,
                &[
                    &escape_text(key).as_ref(),
                    &escape_text(value).as_ref(),
                    &ttl_millis(ttl),
                ],
            )
            .await
            .map_err(|e| self.pool.error(e, &self.what("writing", key)))?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let client = self.pool.get().await?;
        let stmt = self.prepared(&client, &self.sql.set_if_absent).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &escape_text(key).as_ref(),
                    &escape_text(value).as_ref(),
                    &ttl_millis(ttl),
                ],
            )
            .await
            .map_err(|e| self.pool.error(e, &self.what("writing", key)))?;
        Ok(row.is_some())
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let client = self.pool.get().await?;
        let stmt = self.prepared(&client, &self.sql.increment).await?;
        let result = client
            .query_one(
                &stmt,
                &[
                    &escape_text(key).as_ref(),
                    &delta.to_string(),
                    &ttl_millis(ttl),
                ],
            )
            .await;
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                return Err(match e.code() {
                    Some(c) if *c == SqlState::INVALID_TEXT_REPRESENTATION => {
                        Error::invalid_request(format!(
                            "cannot increment key '{key}': its value is not an integer"
                        ))
                    }
                    Some(c) if *c == SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                        Error::invalid_request(format!(
                            "cannot increment key '{key}' by {delta}: the result overflows a \
                             64-bit integer (or the value is not a 64-bit integer)"
                        ))
                    }
                    _ => self.pool.error(e, &self.what("incrementing", key)),
                })
            }
        };
        let value: String = row
            .try_get(0)
            .map_err(|e| self.pool.error(e, &self.what("incrementing", key)))?;
        crate::kv::parse_counter(key, &value)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let client = self.pool.get().await?;
        let stmt = self.prepared(&client, &self.sql.delete).await?;
        client
            .execute(&stmt, &[&escape_text(key).as_ref()])
            .await
            .map_err(|e| self.pool.error(e, &self.what("deleting", key)))?;
        Ok(())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let start = escape_text(prefix);
        match prefix_successor(&start) {
            Some(end) => self.scan(&self.sql.scan_between, &start, Some(&end)).await,
            None => self.scan(&self.sql.scan_from, &start, None).await,
        }
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.scan(
            &self.sql.scan_between,
            &escape_text(start),
            Some(&escape_text(end)),
        )
        .await
    }

    fn backend(&self) -> &'static str {
        "kv_postgres"
    }
}
