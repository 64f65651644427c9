//! [`RedisKvStore`]: a [`KvStore`] on a Redis server (backend `kv_redis`).
//!
//! One multiplexed connection (redis' `ConnectionManager`) carries every call from every
//! task and reconnects by itself after the server restarts; calls made while it is down
//! fail with `Unavailable`. Expiry is Redis' own (`SET … PX`), `set_if_absent` is
//! `SET … NX`, and `increment` is a short Lua script (`INCRBY`, plus `PEXPIRE` when it
//! created the key), so each is atomic for every client of the server. Scans walk the
//! keyspace with `SCAN … MATCH <prefix>*` and sort the keys by bytes, since Redis keeps no
//! key order: they cost time proportional to the whole database, so keep registries and
//! other scanned namespaces on a database that is not also a large cache.

use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::storage::KvStore;
use llama_stack_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

use crate::config::KvRedisConfig;

/// Keys fetched per `MGET` during scans.
const MGET_BATCH: usize = 512;

/// `INCRBY`, then `PEXPIRE` if the key did not exist before (ARGV[2] > 0).
const INCREMENT_SCRIPT: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return r end
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return r
";

/// A [`KvStore`] on a Redis server (backend `kv_redis`).
#[derive(Clone)]
pub struct RedisKvStore {
    conn: ConnectionManager,
    addr: String,
    increment: redis::Script,
}

impl std::fmt::Debug for RedisKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKvStore")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RedisKvStore {
    /// Connects to the server of `cfg`; `Unavailable` if it cannot be reached.
    pub async fn open(cfg: &KvRedisConfig) -> Result<Self> {
        let addr = format!("{}:{}", cfg.host, cfg.port.0);
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(cfg.host.clone(), cfg.port.0),
            redis: RedisConnectionInfo {
                password: cfg.password.as_ref().map(|p| p.expose().to_string()),
                ..RedisConnectionInfo::default()
            },
        };
        let client = redis::Client::open(info).map_err(|e| {
            Error::config(format!(
                "kv_redis: invalid connection settings for {addr}: {e}"
            ))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(10))
            .set_number_of_retries(1)
            .set_max_delay(500);
        let conn = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|e| redis_error(&addr, e, "connecting"))?;
        Ok(RedisKvStore {
            conn,
            addr,
            increment: redis::Script::new(INCREMENT_SCRIPT),
        })
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn err(&self, e: redis::RedisError, what: &str) -> Error {
        redis_error(&self.addr, e, what)
    }

    /// Every live pair whose key matches the glob `pattern` and `keep`, in byte order.
    async fn scan_matching(
        &self,
        pattern: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e, "scanning keys"))?;
            keys.extend(batch.into_iter().filter(|k| keep(k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup(); // SCAN may return a key more than once
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MGET_BATCH) {
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e, "reading scanned keys"))?;
            for (key, value) in chunk.iter().zip(values) {
                // A key that expired or was deleted since SCAN saw it is skipped.
                if let Some(value) = value {
                    out.push((key.clone(), value));
                }
            }
        }
        Ok(out)
    }
}

/// `prefix` with Redis glob characters escaped, followed by `*`.
fn glob_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// The longest common prefix of `a` and `b` (on character boundaries).
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            break;
        }
        end = i + ca.len_utf8();
    }
    &a[..end]
}

/// A TTL in milliseconds (at least 1).
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Maps a Redis error: connection problems → `Unavailable` naming `host:port`; error
/// replies about values → `InvalidRequest`; anything else → `Internal`.
pub(crate) fn redis_error(addr: &str, e: redis::RedisError, what: &str) -> Error {
    let unavailable = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            redis::ErrorKind::BusyLoadingError
                | redis::ErrorKind::TryAgain
                | redis::ErrorKind::ClusterDown
                | redis::ErrorKind::MasterDown
        );
    let detail = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.code().unwrap_or("error")),
        None => e.to_string(),
    };
    if unavailable {
        return Error::unavailable(format!(
            "Redis at {addr} is unavailable while {what}: {detail}"
        ))
        .with_source(e);
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Error::new(
            ErrorKind::Config,
            format!("Redis at {addr} refused the credentials while {what}"),
        )
        .with_source(e);
    }
    Error::internal(format!("Redis at {addr} failed while {what}: {detail}")).with_source(e)
}

#[async_trait]
impl KvStore for RedisKvStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e, &format!("reading key '{key}'")))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err(e, &format!("writing key '{key}'")))
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        let reply: Option<String> = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e, &format!("writing key '{key}'")))?;
        Ok(reply.is_some())
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let mut conn = self.conn.clone();
        let ttl = ttl.map_or(0, ttl_millis);
        let result: redis::RedisResult<i64> = self
            .increment
            .key(key)
            .arg(delta)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await;
        result.map_err(|e| {
            let text = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
            if text.contains("not an integer") {
                Error::invalid_request(format!(
                    "cannot increment key '{key}': its value is not an integer"
                ))
            } else if text.contains("overflow") {
                Error::invalid_request(format!(
                    "cannot increment key '{key}' by {delta}: the result overflows a 64-bit \
                     integer"
                ))
            } else {
                self.err(e, &format!("incrementing key '{key}'"))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err(e, &format!("deleting key '{key}'")))
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.scan_matching(&glob_prefix(prefix), |k| k.starts_with(prefix))
            .await
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let pattern = glob_prefix(common_prefix(start, end));
        self.scan_matching(&pattern, |k| start <= k && k < end)
            .await
    }

    fn backend(&self) -> &'static str {
        "kv_redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_escape_special_characters() {
        assert_eq!(glob_prefix("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
        assert_eq!(glob_prefix(""), "*");
        assert_eq!(common_prefix("abc", "abd"), "ab");
        assert_eq!(common_prefix("a\u{ff}", "a\u{100}"), "a");
        assert_eq!(common_prefix("", "x"), "");
    }
}
