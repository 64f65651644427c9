//! Key-value backends: [`MemoryKvStore`] always, [`SledKvStore`] with the `kv-sled`
//! feature, [`SqliteKvStore`] with the `kv-sqlite` feature, [`PostgresKvStore`] with
//! `kv-postgres` and [`RedisKvStore`] with `kv-redis`.
//!
//! Every backend implements [`KvStore`](llama_stack_core::storage::KvStore) with the same
//! semantics, checked by one conformance suite (`tests/conformance/kv.rs`): keys compare
//! as bytes, expired entries are invisible to reads and scans, `set_if_absent` and
//! `increment` are atomic, and persistent backends acknowledge a write only once it is
//! on disk.

pub mod memory;
#[cfg(feature = "kv-postgres")]
pub mod postgres;
#[cfg(feature = "kv-redis")]
pub mod redis;
#[cfg(feature = "kv-sled")]
pub mod sled;
#[cfg(feature = "kv-sqlite")]
pub mod sqlite;

#[cfg(feature = "kv-postgres")]
pub use self::postgres::PostgresKvStore;
#[cfg(feature = "kv-redis")]
pub use self::redis::RedisKvStore;
#[cfg(feature = "kv-sled")]
pub use self::sled::SledKvStore;
#[cfg(feature = "kv-sqlite")]
pub use self::sqlite::SqliteKvStore;
pub use memory::MemoryKvStore;

use llama_stack_core::{Error, Result};

/// Milliseconds since the Unix epoch, the clock persistent backends store expiry in.
#[cfg(any(feature = "kv-sled", feature = "kv-sqlite"))]
pub(crate) fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// The Unix-millis expiry of an entry written now with `ttl` (`None` = never expires).
#[cfg(any(feature = "kv-sled", feature = "kv-sqlite"))]
pub(crate) fn expiry_millis(ttl: Option<std::time::Duration>) -> Option<i64> {
    ttl.map(|ttl| {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        now_millis().saturating_add(ttl)
    })
}

/// Parses the integer stored at `key` for `increment`.
pub(crate) fn parse_counter(key: &str, value: &str) -> Result<i64> {
    value.trim().parse::<i64>().map_err(|_| {
        Error::invalid_request(format!(
            "cannot increment key '{key}': its value '{value}' is not an integer"
        ))
    })
}

/// `current + delta`, or an error naming the key on overflow.
pub(crate) fn add_counter(key: &str, current: i64, delta: i64) -> Result<i64> {
    current.checked_add(delta).ok_or_else(|| {
        Error::invalid_request(format!(
            "cannot increment key '{key}' by {delta}: the result overflows a 64-bit integer"
        ))
    })
}
