//! [`MemoryKvStore`]: an in-process `BTreeMap` behind a mutex. Nothing survives the
//! process; expiry uses the monotonic clock and is checked on every read.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use llama_stack_core::storage::KvStore;
use llama_stack_core::Result;

use super::{add_counter, parse_counter};

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    expires_at: Option<Instant>,
}

impl Entry {
    fn new(value: String, ttl: Option<Duration>) -> Self {
        Entry {
            value,
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A [`KvStore`] in process memory (backend `kv_memory`).
#[derive(Debug, Default)]
pub struct MemoryKvStore {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl MemoryKvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every update
        // is a single map operation), so a poisoned lock is safe to reuse.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn collect<'a>(
        now: Instant,
        iter: impl Iterator<Item = (&'a String, &'a Entry)>,
    ) -> Vec<(String, String)> {
        iter.filter(|(_, e)| e.is_live(now))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }
}

#[async_trait]
impl KvStore for MemoryKvStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get(key) {
            Some(e) if e.is_live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        self.lock()
            .insert(key.to_string(), Entry::new(value.to_string(), ttl));
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        let now = Instant::now();
        let mut map = self.lock();
        if map.get(key).is_some_and(|e| e.is_live(now)) {
            return Ok(false);
        }
        map.insert(key.to_string(), Entry::new(value.to_string(), ttl));
        Ok(true)
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let now = Instant::now();
        let mut map = self.lock();
        let next = match map.get_mut(key) {
            Some(e) if e.is_live(now) => {
                let next = add_counter(key, parse_counter(key, &e.value)?, delta)?;
                e.value = next.to_string();
                next
            }
            _ => {
                map.insert(key.to_string(), Entry::new(delta.to_string(), ttl));
                delta
            }
        };
        Ok(next)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let now = Instant::now();
        let map = self.lock();
        let iter = map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        Ok(Self::collect(now, iter))
    }

    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let map = self.lock();
        let iter = map.range::<str, _>((Bound::Included(start), Bound::Excluded(end)));
        Ok(Self::collect(now, iter))
    }

    fn backend(&self) -> &'static str {
        "kv_memory"
    }
}
