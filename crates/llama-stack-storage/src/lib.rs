//! Storage backends of llama-stack-rs: [`KvStore`] on memory, sled, SQLite, PostgreSQL
//! and Redis; [`SqlStore`] on SQLite and PostgreSQL; the access-controlled SQL wrapper
//! ([`authorized::AuthorizedSqlStore`]); and the storage section of the run config
//! ([`config::StorageConfig`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> llama_stack_core::Result<()> {
//! use llama_stack_storage::config::{BackendConfig, KvMemoryConfig};
//!
//! let kv = llama_stack_storage::open_kv(&BackendConfig::KvMemory(KvMemoryConfig::default())).await?;
//! kv.set("greeting", "hello", None).await?;
//! assert_eq!(kv.get("greeting").await?.as_deref(), Some("hello"));
//! # Ok(())
//! # }
//! ```
//!
//! | cargo feature | backend `type` | type |
//! |---|---|---|
//! | (always) | `kv_memory` | [`kv::MemoryKvStore`] |
//! | `kv-sled` | `kv_sled` | `kv::SledKvStore` |
//! | `kv-sqlite` | `kv_sqlite` | `kv::SqliteKvStore` |
//! | `sql-sqlite` | `sql_sqlite` | `sql::SqliteSqlStore` |
//! | `kv-postgres` | `kv_postgres` | `kv::PostgresKvStore` |
//! | `kv-redis` | `kv_redis` | `kv::RedisKvStore` |
//! | `sql-postgres` | `sql_postgres` | `sql::PostgresSqlStore` |
//!
//! Persistent backends acknowledge a write only once it is durable (on disk, or committed
//! by the server), and never block the async runtime (embedded databases run on
//! `tokio::task::spawn_blocking`; servers are reached through async clients with pooled
//! or multiplexed connections). Server backends map lost connections and timeouts to
//! `ErrorKind::Unavailable` (retryable), naming `host:port` but never a password, and
//! reconnect by themselves once the server is back.
#![deny(missing_docs)]

/// The access-controlled SQL wrapper (it lives in core so providers can use it too).
pub mod authorized {
    pub use llama_stack_core::authorized::*;
}
pub mod config;
pub mod inference_store;
pub mod kv;
#[cfg(any(feature = "kv-postgres", feature = "sql-postgres"))]
mod postgres_connection;
pub mod sql;
#[cfg(any(feature = "kv-sqlite", feature = "sql-sqlite"))]
mod sqlite_connection;

use std::sync::Arc;

use llama_stack_core::storage::{KvStore, SqlStore};
use llama_stack_core::{Error, Result};

use crate::config::BackendConfig;

/// The error for a backend whose cargo feature is compiled out.
#[cfg(not(all(
    feature = "kv-sled",
    feature = "kv-sqlite",
    feature = "sql-sqlite",
    feature = "kv-postgres",
    feature = "kv-redis",
    feature = "sql-postgres"
)))]
fn feature_missing(cfg: &BackendConfig, feature: &str) -> Error {
    Error::config(format!(
        "storage backend type '{}' is not compiled in: enable the cargo feature '{feature}' \
         of llama-stack-storage (or the matching feature of llama-stack)",
        cfg.type_name()
    ))
}

/// Opens the key-value backend described by `cfg` (a `kv_*` backend).
pub async fn open_kv(cfg: &BackendConfig) -> Result<Arc<dyn KvStore>> {
    match cfg {
        BackendConfig::KvMemory(_) => Ok(Arc::new(kv::MemoryKvStore::new())),
        #[cfg(feature = "kv-sqlite")]
        BackendConfig::KvSqlite(c) => Ok(Arc::new(kv::SqliteKvStore::open(&c.db_path).await?)),
        #[cfg(not(feature = "kv-sqlite"))]
        BackendConfig::KvSqlite(_) => Err(feature_missing(cfg, "kv-sqlite")),
        #[cfg(feature = "kv-sled")]
        BackendConfig::KvSled(c) => Ok(Arc::new(kv::SledKvStore::open(&c.db_path).await?)),
        #[cfg(not(feature = "kv-sled"))]
        BackendConfig::KvSled(_) => Err(feature_missing(cfg, "kv-sled")),
        #[cfg(feature = "kv-postgres")]
        BackendConfig::KvPostgres(c) => Ok(Arc::new(kv::PostgresKvStore::open(c).await?)),
        #[cfg(not(feature = "kv-postgres"))]
        BackendConfig::KvPostgres(_) => Err(feature_missing(cfg, "kv-postgres")),
        #[cfg(feature = "kv-redis")]
        BackendConfig::KvRedis(c) => Ok(Arc::new(kv::RedisKvStore::open(c).await?)),
        #[cfg(not(feature = "kv-redis"))]
        BackendConfig::KvRedis(_) => Err(feature_missing(cfg, "kv-redis")),
        BackendConfig::SqlSqlite(_) | BackendConfig::SqlPostgres(_) => Err(Error::config(format!(
            "storage backend type '{}' is a SQL backend; a key-value backend (kv_*) is required here",
            cfg.type_name()
        ))),
    }
}

/// Opens the SQL backend described by `cfg` (a `sql_*` backend).
pub async fn open_sql(cfg: &BackendConfig) -> Result<Arc<dyn SqlStore>> {
    match cfg {
        #[cfg(feature = "sql-sqlite")]
        BackendConfig::SqlSqlite(c) => Ok(Arc::new(sql::SqliteSqlStore::open(&c.db_path).await?)),
        #[cfg(not(feature = "sql-sqlite"))]
        BackendConfig::SqlSqlite(_) => Err(feature_missing(cfg, "sql-sqlite")),
        #[cfg(feature = "sql-postgres")]
        BackendConfig::SqlPostgres(c) => Ok(Arc::new(sql::PostgresSqlStore::open(c).await?)),
        #[cfg(not(feature = "sql-postgres"))]
        BackendConfig::SqlPostgres(_) => Err(feature_missing(cfg, "sql-postgres")),
        BackendConfig::KvMemory(_)
        | BackendConfig::KvSqlite(_)
        | BackendConfig::KvSled(_)
        | BackendConfig::KvPostgres(_)
        | BackendConfig::KvRedis(_) => {
            Err(Error::config(format!(
                "storage backend type '{}' is a key-value backend; a SQL backend (sql_*) is required here",
                cfg.type_name()
            )))
        }
    }
}
