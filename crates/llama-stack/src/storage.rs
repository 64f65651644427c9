//! [`StorageManager`]: opens each named backend of `storage.backends` once and hands out
//! namespaced KV stores and SQL stores to the registry, the routers and the providers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::provider::StorageResolver;
use llama_stack_core::storage::{KvStore, NamespacedKv, SqlStore};
use llama_stack_core::{Error, Result};
use llama_stack_storage::config::StorageConfig;
use tokio::sync::Mutex;

/// Opens and shares the configured storage backends.
pub struct StorageManager {
    config: StorageConfig,
    kv: Mutex<HashMap<String, Arc<dyn KvStore>>>,
    sql: Mutex<HashMap<String, Arc<dyn SqlStore>>>,
}

impl StorageManager {
    /// A manager for the backends of `config` (opened lazily, once each).
    pub fn new(config: StorageConfig) -> Self {
        StorageManager {
            config,
            kv: Mutex::new(HashMap::new()),
            sql: Mutex::new(HashMap::new()),
        }
    }

    fn backend(&self, name: &str) -> Result<&llama_stack_storage::config::BackendConfig> {
        self.config.backends.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.backends.keys().map(String::as_str).collect();
            Error::config(format!(
                "storage backend '{name}' is not defined in storage.backends (defined: [{}])",
                known.join(", ")
            ))
        })
    }

    /// The raw KV backend `name`, opened on first use.
    pub async fn kv_backend(&self, name: &str) -> Result<Arc<dyn KvStore>> {
        let mut open = self.kv.lock().await;
        if let Some(store) = open.get(name) {
            return Ok(store.clone());
        }
        let cfg = self.backend(name)?;
        let store = llama_stack_storage::open_kv(cfg)
            .await
            .map_err(|e| e.with_prefix(&format!("storage.backends.{name}")))?;
        open.insert(name.to_string(), store.clone());
        Ok(store)
    }
}

#[async_trait]
impl StorageResolver for StorageManager {
    async fn kv_store(&self, backend: &str, namespace: &str) -> Result<Arc<dyn KvStore>> {
        let inner = self.kv_backend(backend).await?;
        Ok(Arc::new(NamespacedKv::new(inner, namespace)))
    }

    async fn sql_store(&self, backend: &str) -> Result<Arc<dyn SqlStore>> {
        let mut open = self.sql.lock().await;
        if let Some(store) = open.get(backend) {
            return Ok(store.clone());
        }
        let cfg = self.backend(backend)?;
        let store = llama_stack_storage::open_sql(cfg)
            .await
            .map_err(|e| e.with_prefix(&format!("storage.backends.{backend}")))?;
        open.insert(backend.to_string(), store.clone());
        Ok(store)
    }
}
