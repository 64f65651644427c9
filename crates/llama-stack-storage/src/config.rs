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
    /// A key-value table in a PostgreSQL database.
    #[serde(rename = "kv_postgres")]
    KvPostgres(KvPostgresConfig),
    /// A Redis server.
    #[serde(rename = "kv_redis")]
    KvRedis(KvRedisConfig),
    /// Typed tables in a PostgreSQL database.
    #[serde(rename = "sql_postgres")]
    SqlPostgres(SqlPostgresConfig),
}

impl BackendConfig {
    /// Whether this backend is a key-value backend (`kv_*`).
    pub fn is_kv(&self) -> bool {
        matches!(
            self,
            BackendConfig::KvMemory(_)
                | BackendConfig::KvSqlite(_)
                | BackendConfig::KvSled(_)
                | BackendConfig::KvPostgres(_)
                | BackendConfig::KvRedis(_)
        )
    }

    /// Whether this backend is a SQL backend (`sql_*`).
    pub fn is_sql(&self) -> bool {
        matches!(
            self,
            BackendConfig::SqlSqlite(_) | BackendConfig::SqlPostgres(_)
        )
    }

    /// The `type` name of this backend.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::KvMemory(_) => "kv_memory",
            BackendConfig::KvSqlite(_) => "kv_sqlite",
            BackendConfig::KvSled(_) => "kv_sled",
            BackendConfig::SqlSqlite(_) => "sql_sqlite",
            BackendConfig::KvPostgres(_) => "kv_postgres",
            BackendConfig::KvRedis(_) => "kv_redis",
            BackendConfig::SqlPostgres(_) => "sql_postgres",
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

/// A secret (a password) read from the config: `Debug` and `Display` print `********`.
///
/// It serialises to its real value, so `StackConfig::to_yaml` round-trips; use the
/// redacted YAML for anything shown to people.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into())
    }

    /// The secret itself, for handing to a client library (never for logs or errors).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("********")
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString(s.to_string())
    }
}

/// A TCP port, written in the config as an integer or a string (`"5432"`, as env
/// substitution produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PortRepr", into = "u16")]
pub struct Port(pub u16);

/// How a [`Port`] may be written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PortRepr {
    /// `5432`
    Number(i64),
    /// `"5432"`
    Text(String),
}

impl TryFrom<PortRepr> for Port {
    type Error = String;

    fn try_from(repr: PortRepr) -> Result<Self, Self::Error> {
        let n = match &repr {
            PortRepr::Number(n) => Some(*n),
            PortRepr::Text(s) => s.trim().parse::<i64>().ok(),
        };
        match n.and_then(|n| u16::try_from(n).ok()) {
            Some(p) if p > 0 => Ok(Port(p)),
            _ => {
                let shown = match repr {
                    PortRepr::Number(n) => n.to_string(),
                    PortRepr::Text(s) => format!("'{s}'"),
                };
                Err(format!(
                    "invalid port {shown}: expected an integer from 1 to 65535"
                ))
            }
        }
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

fn default_host() -> String {
    "localhost".to_string()
}

fn default_pg_port() -> Port {
    Port(5432)
}

fn default_redis_port() -> Port {
    Port(6379)
}

fn default_pg_db() -> String {
    "llamastack".to_string()
}

fn default_kv_table() -> String {
    "llamastack_kvstore".to_string()
}

/// Deserialises a table name, checking it is `[A-Za-z_][A-Za-z0-9_]*`, ≤ 63 characters.
fn table_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    llama_stack_core::storage::validate_identifier(&name)
        .map_err(|e| serde::de::Error::custom(e.message()))?;
    Ok(name)
}

/// PostgreSQL's TLS modes, as libpq (and so Llama Stack) names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// Plain TCP first (treated as `prefer`).
    Allow,
    /// TLS if the server offers it, else plain TCP.
    Prefer,
    /// TLS; the certificate is checked only if `ca_cert_path` is set.
    Require,
    /// TLS with a certificate signed by the CA in `ca_cert_path` (or a public root).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

/// Config of `kv_postgres`: one key-value table in a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvPostgresConfig {
    /// Server host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port (integer or string).
    #[serde(default = "default_pg_port")]
    #[schemars(with = "PortRepr")]
    pub port: Port,
    /// Database name.
    #[serde(default = "default_pg_db")]
    pub db: String,
    /// User name.
    pub user: String,
    /// Password (never logged).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// TLS mode (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`); default `prefer`.
    #[serde(default)]
    pub ssl_mode: Option<SslMode>,
    /// PEM file of the CA that signs the server certificate.
    #[serde(default)]
    pub ca_cert_path: Option<String>,
    /// The key-value table (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 characters).
    #[serde(default = "default_kv_table", deserialize_with = "table_name")]
    pub table_name: String,
    /// Accepted for compatibility; stores set the namespace from their reference.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Config of `kv_redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvRedisConfig {
    /// Server host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port (integer or string).
    #[serde(default = "default_redis_port")]
    #[schemars(with = "PortRepr")]
    pub port: Port,
    /// Password for `AUTH` (never logged); not a Llama Stack field.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Accepted for compatibility; stores set the namespace from their reference.
    #[serde(default)]
    pub namespace: Option<String>,
}

fn default_pool_size() -> u32 {
    10
}

fn default_max_overflow() -> u32 {
    20
}

fn default_pool_recycle() -> i64 {
    -1
}

/// Deserialises `pool_size` (at least 1).
fn pool_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("pool_size must be at least 1"));
    }
    Ok(n)
}

/// Deserialises `pool_recycle` (-1 = never, else seconds ≥ 0).
fn pool_recycle<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = i64::deserialize(d)?;
    if n < -1 {
        return Err(serde::de::Error::custom(
            "pool_recycle must be -1 (never) or a number of seconds >= 0",
        ));
    }
    Ok(n)
}

/// Config of `sql_postgres`: typed tables in a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlPostgresConfig {
    /// Server host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port (integer or string).
    #[serde(default = "default_pg_port")]
    #[schemars(with = "PortRepr")]
    pub port: Port,
    /// Database name.
    #[serde(default = "default_pg_db")]
    pub db: String,
    /// User name.
    pub user: String,
    /// Password (never logged).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Connections kept open (at least 1).
    #[serde(default = "default_pool_size", deserialize_with = "pool_size")]
    pub pool_size: u32,
    /// Extra connections opened under load, on top of `pool_size`.
    #[serde(default = "default_max_overflow")]
    pub max_overflow: u32,
    /// Seconds after which a connection is replaced (-1 = never).
    #[serde(default = "default_pool_recycle", deserialize_with = "pool_recycle")]
    pub pool_recycle: i64,
    /// Check a pooled connection with a round trip before handing it out.
    #[serde(default = "default_true")]
    pub pool_pre_ping: bool,
    /// TLS mode, as for `kv_postgres` (not a Llama Stack field of this backend).
    #[serde(default)]
    pub ssl_mode: Option<SslMode>,
    /// PEM file of the CA that signs the server certificate.
    #[serde(default)]
    pub ca_cert_path: Option<String>,
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
