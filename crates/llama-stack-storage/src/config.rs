//! The `storage` section of the run config: named backends and the core stores that
//! reference them, in Llama Stack's shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `storage:` — named backends plus references for the core stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend name → backend config.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// The core stores (registry, inference records, ...).
    #[serde(default)]
    pub stores: StoresConfig,
}

/// One storage backend, discriminated by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum BackendConfig {
    /// In-process memory (nothing survives the process).
    #[serde(rename = "kv_memory")]
    KvMemory(KvMemoryConfig),
    /// SQLite file holding a key-value table.
    #[serde(rename = "kv_sqlite")]
    KvSqlite(SqlitePathConfig),
    /// sled embedded database directory.
    #[serde(rename = "kv_sled")]
    KvSled(SledConfig),
    /// SQLite file for typed tables.
    #[serde(rename = "sql_sqlite")]
    SqlSqlite(SqlSqliteConfig),
}

impl BackendConfig {
    /// Whether this backend is a key-value backend (`kv_*`).
    pub fn is_kv(&self) -> bool {
        matches!(
            self,
            BackendConfig::KvMemory(_) | BackendConfig::KvSqlite(_) | BackendConfig::KvSled(_)
        )
    }

    /// Whether this backend is a SQL backend (`sql_*`).
    pub fn is_sql(&self) -> bool {
        matches!(self, BackendConfig::SqlSqlite(_))
    }

    /// The `type` name of this backend.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::KvMemory(_) => "kv_memory",
            BackendConfig::KvSqlite(_) => "kv_sqlite",
            BackendConfig::KvSled(_) => "kv_sled",
            BackendConfig::SqlSqlite(_) => "sql_sqlite",
        }
    }
}

/// Config of `kv_memory`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvMemoryConfig {
    /// Accepted for compatibility; stores set the namespace from their reference.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Config of `kv_sqlite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlitePathConfig {
    /// Path of the SQLite database file (created if absent).
    pub db_path: String,
    /// Accepted for compatibility; stores set the namespace from their reference.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Config of `kv_sled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SledConfig {
    /// Directory of the sled database (created if absent).
    pub db_path: String,
    /// Accepted for compatibility; stores set the namespace from their reference.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Config of `sql_sqlite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSqliteConfig {
    /// Path of the SQLite database file (created if absent).
    pub db_path: String,
    /// Accepted for compatibility with Llama Stack; connections are always checked.
    #[serde(default = "default_true")]
    pub pool_pre_ping: bool,
}

fn default_true() -> bool {
    true
}

/// A reference from a store to a KV backend: `{backend, namespace}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvStoreReference {
    /// Name of a `kv_*` backend in `storage.backends`.
    pub backend: String,
    /// Key namespace inside that backend.
    pub namespace: String,
}

/// A reference from a store to a SQL backend: `{backend, table_name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStoreReference {
    /// Name of a `sql_*` backend in `storage.backends`.
    pub backend: String,
    /// Table name.
    pub table_name: String,
}

/// A SQL reference for write-queued stores (inference, responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferenceStoreReference {
    /// Name of a `sql_*` backend in `storage.backends`.
    pub backend: String,
    /// Table name.
    pub table_name: String,
    /// Maximum queued writes before callers wait.
    #[serde(default = "default_queue")]
    pub max_write_queue_size: usize,
    /// Number of background writers.
    #[serde(default = "default_writers")]
    pub num_writers: usize,
}

fn default_queue() -> usize {
    10_000
}

fn default_writers() -> usize {
    4
}

/// `storage.stores`: the core stores. `None` = not configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoresConfig {
    /// The resource registry (required).
    #[serde(default = "default_metadata")]
    pub metadata: Option<KvStoreReference>,
    /// Stored chat completions.
    #[serde(default = "default_inference")]
    pub inference: Option<InferenceStoreReference>,
    /// Conversations.
    #[serde(default = "default_conversations")]
    pub conversations: Option<SqlStoreReference>,
    /// Responses.
    #[serde(default)]
    pub responses: Option<InferenceStoreReference>,
    /// Prompts.
    #[serde(default = "default_prompts")]
    pub prompts: Option<KvStoreReference>,
    /// Connectors.
    #[serde(default = "default_connectors")]
    pub connectors: Option<KvStoreReference>,
}

impl Default for StoresConfig {
    fn default() -> Self {
        StoresConfig {
            metadata: default_metadata(),
            inference: default_inference(),
            conversations: default_conversations(),
            responses: None,
            prompts: default_prompts(),
            connectors: default_connectors(),
        }
    }
}

fn kv_ref(namespace: &str) -> Option<KvStoreReference> {
    Some(KvStoreReference {
        backend: "kv_default".into(),
        namespace: namespace.into(),
    })
}

fn default_metadata() -> Option<KvStoreReference> {
    kv_ref("registry")
}

fn default_prompts() -> Option<KvStoreReference> {
    kv_ref("prompts")
}

fn default_connectors() -> Option<KvStoreReference> {
    kv_ref("connectors")
}

fn default_inference() -> Option<InferenceStoreReference> {
    Some(InferenceStoreReference {
        backend: "sql_default".into(),
        table_name: "inference_store".into(),
        max_write_queue_size: default_queue(),
        num_writers: default_writers(),
    })
}

fn default_conversations() -> Option<SqlStoreReference> {
    Some(SqlStoreReference {
        backend: "sql_default".into(),
        table_name: "openai_conversations".into(),
    })
}
