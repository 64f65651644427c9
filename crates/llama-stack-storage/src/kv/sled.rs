//! [`SledKvStore`]: a [`KvStore`] in a sled embedded database directory.
//!
//! Each value is stored as an 8-byte big-endian Unix-millis expiry (`0` = never expires)
//! followed by the UTF-8 value. Expired entries are invisible to `get` and scans and are
//! removed lazily when `get` meets them. `set_if_absent` and `increment` are
//! compare-and-swap loops, so they are atomic across tasks. Every write flushes (fsync)
//! before it returns, so an acknowledged write survives the process being killed; all
//! sled work runs on `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::storage::KvStore;
use llama_stack_core::{Error, Result};

use super::{add_counter, expiry_millis, now_millis, parse_counter};

/// A durable [`KvStore`] on sled (backend `kv_sled`).
#[derive(Debug, Clone)]
pub struct SledKvStore {
    db: ::sled::Db,
    path: PathBuf,
}

/// A decoded entry: its expiry (Unix millis) and value.
struct Entry {
    expires_at: Option<i64>,
    value: Vec<u8>,
}

impl Entry {
    fn encode(value: &[u8], expires_at: Option<i64>) -> Vec<u8> {
        let stamp = expires_at.map_or(0, |at| u64::try_from(at.max(1)).unwrap_or(1));
        let mut out = Vec::with_capacity(8 + value.len());
        out.extend_from_slice(&stamp.to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn decode(key: &[u8], raw: &[u8]) -> Result<Self> {
        let (stamp, value) = raw.split_first_chunk::<8>().ok_or_else(|| {
            Error::internal(format!(
                "corrupt sled entry for key '{}': shorter than its 8-byte expiry header",
                String::from_utf8_lossy(key)
            ))
        })?;
        let stamp = u64::from_be_bytes(*stamp);
        let expires_at = (stamp != 0).then(|| i64::try_from(stamp).unwrap_or(i64::MAX));
        Ok(Entry {
            expires_at,
            value: value.to_vec(),
        })
    }

    fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn into_string(self, key: &[u8]) -> Result<String> {
        String::from_utf8(self.value).map_err(|_| {
            Error::internal(format!(
                "sled value of key '{}' is not valid UTF-8",
                String::from_utf8_lossy(key)
            ))
        })
    }
}

impl SledKvStore {
    /// Opens (creating if needed) the sled database directory at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let db = run_blocking(move || {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::config(format!(
                        "cannot create directory '{}' for sled database '{}': {e}",
                        parent.display(),
                        p.display()
                    ))
                    .with_source(e)
                })?;
            }
            ::sled::Config::new().path(&p).open().map_err(|e| {
                Error::unavailable(format!("cannot open sled database '{}': {e}", p.display()))
                    .with_context("path", p.display().to_string())
                    .with_source(e)
            })
        })
        .await?;
        Ok(SledKvStore { db, path })
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the database on a blocking thread, mapping sled errors.
    async fn with_db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&::sled::Db) -> std::result::Result<T, Failure> + Send + 'static,
    {
        let db = self.db.clone();
        let path = self.path.clone();
        run_blocking(move || {
            f(&db).map_err(|failure| match failure {
                Failure::Sled(e) => {
                    Error::internal(format!("sled database '{}' failed: {e}", path.display()))
                        .with_source(e)
                }
                Failure::Other(e) => e,
            })
        })
        .await
    }
}

/// An error inside a blocking sled closure: sled's own, or one of ours.
enum Failure {
    Sled(::sled::Error),
    Other(Error),
}

impl From<::sled::Error> for Failure {
    fn from(e: ::sled::Error) -> Self {
        Failure::Sled(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("sled worker task failed: {e}")))?
}

/// The live entry of `key`, if any, with the raw bytes it was read from (for CAS).
fn live_entry(
    db: &::sled::Db,
    key: &[u8],
    now: i64,
) -> std::result::Result<(Option<::sled::IVec>, Option<Entry>), Failure> {
    let raw = db.get(key)?;
    let entry = match &raw {
        Some(bytes) => Some(Entry::decode(key, bytes)?).filter(|e| e.is_live(now)),
        None => None,
    };
    Ok((raw, entry))
}

fn collect(
    iter: impl Iterator<Item = ::sled::Result<(::sled::IVec, ::sled::IVec)>>,
) -> std::result::Result<Vec<(String, String)>, Failure> {
    let now = now_millis();
    let mut out = Vec::new();
    for item in iter {
        let (key, raw) = item?;
        let entry = Entry::decode(&key, &raw)?;
        if !entry.is_live(now) {
            continue;
        }
        let value = entry.into_string(&key)?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| Error::internal("sled key is not valid UTF-8"))?;
        out.push((key, value));
    }
    Ok(out)
}

#[async_trait]
impl KvStore for SledKvStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.with_db(move |db| {
            let k = key.as_bytes();
            let (raw, entry) = live_entry(db, k, now_millis())?;
            match (raw, entry) {
                (_, Some(entry)) => Ok(Some(entry.into_string(k)?)),
                (Some(expired), None) => {
                    // Lazy removal; losing it in a crash only leaves an expired entry behind.
                    let _ = db.compare_and_swap(k, Some(expired), None::<&[u8]>)?;
                    Ok(None)
                }
                (None, None) => Ok(None),
            }
        })
        .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        let key = key.to_string();
        let encoded = Entry::encode(value.as_bytes(), expiry_millis(ttl));
        self.with_db(move |db| {
            db.insert(key.as_bytes(), encoded)?;
            db.flush()?;
            Ok(())
        })
        .await
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let key = key.to_string();
        let value = value.to_string();
        self.with_db(move |db| {
            let k = key.as_bytes();
            loop {
                let (raw, entry) = live_entry(db, k, now_millis())?;
                if entry.is_some() {
                    return Ok(false);
                }
                let encoded = Entry::encode(value.as_bytes(), expiry_millis(ttl));
                if db.compare_and_swap(k, raw, Some(encoded))?.is_ok() {
                    db.flush()?;
                    return Ok(true);
                }
            }
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let key = key.to_string();
        self.with_db(move |db| {
            let k = key.as_bytes();
            loop {
                let (raw, entry) = live_entry(db, k, now_millis())?;
                let (next, expires_at) = match entry {
                    Some(entry) => {
                        let expires_at = entry.expires_at;
                        let current = entry.into_string(k)?;
                        let next = add_counter(&key, parse_counter(&key, &current)?, delta)?;
                        (next, expires_at)
                    }
                    None => (delta, expiry_millis(ttl)),
                };
                let encoded = Entry::encode(next.to_string().as_bytes(), expires_at);
                if db.compare_and_swap(k, raw, Some(encoded))?.is_ok() {
                    db.flush()?;
                    return Ok(next);
                }
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.with_db(move |db| {
            db.remove(key.as_bytes())?;
            db.flush()?;
            Ok(())
        })
        .await
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let prefix = prefix.to_string();
        self.with_db(move |db| collect(db.scan_prefix(prefix.as_bytes())))
            .await
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (start, end) = (start.to_string(), end.to_string());
        self.with_db(move |db| collect(db.range(start.as_bytes()..end.as_bytes())))
            .await
    }

    fn backend(&self) -> &'static str {
        "kv_sled"
    }
}
