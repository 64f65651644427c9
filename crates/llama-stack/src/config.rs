//! The run config ([`StackConfig`]): Llama Stack's `config.yaml` / `run.yaml`, loaded with
//! `${env.*}` substitution ([`mod@env`]), strict key checking and errors that name the key path.
//!
//! Loading is: YAML → [`env::substitute`] over the whole tree → leftovers of older Llama
//! Stack configs dropped with a warning → default storage backends filled in → typed
//! deserialization (errors carry the path, e.g. "server.port: invalid value: integer
//! `80`, expected a port in 1024..=65535") → shape checks (API names, CORS). Cross references
//! (stores → backends, resources → providers) are checked by [`StackConfig::validate`].
//!
//! ```
//! use llama_stack::config::StackConfig;
//!
//! let config = StackConfig::from_yaml_str_with_env(
//!     "distro_name: demo\n\
//!      providers:\n  inference:\n  - provider_id: ${env.OLLAMA_URL:+ollama}\n    provider_type: remote::ollama\n",
//!     &|name: &str| (name == "OLLAMA_URL").then(|| "http://localhost:11434/v1".to_owned()),
//! )?;
//! config.validate()?;
//! assert_eq!(config.enabled_providers("inference").map(|(id, _)| id).collect::<Vec<_>>(), ["ollama"]);
//! # Ok::<(), llama_stack::Error>(())
//! ```

pub mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use llama_stack_core::api::models::ModelType;
use llama_stack_core::{Error, Result};
use llama_stack_storage::config::{
    BackendConfig, KvStoreReference, SqlSqliteConfig, SqlitePathConfig, StorageConfig,
};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use self::env::{join, EnvFn};

/// The APIs that take providers (keys of `providers`, entries of `apis`): Llama Stack 0.7's
/// list plus `post_training`, which llama-stack-rs keeps.
pub const PROVIDABLE_APIS: &[&str] = &[
    "inference",
    "safety",
    "responses",
    "batches",
    "vector_io",
    "datasetio",
    "scoring",
    "eval",
    "tool_runtime",
    "files",
    "file_processors",
    "post_training",
];

/// Routing tables of Llama Stack: they hold resources, not providers.
const ROUTING_TABLES: &[&str] = &[
    "models",
    "shields",
    "vector_stores",
    "vector_dbs",
    "datasets",
    "scoring_functions",
    "benchmarks",
    "tool_groups",
];

/// APIs the stack always serves itself.
const BUILT_IN_APIS: &[&str] = &[
    "inspect",
    "providers",
    "prompts",
    "conversations",
    "connectors",
    "admin",
];

/// Top-level keys older Llama Stack configs still carry and 0.7 ignores.
const LEGACY_TOP_LEVEL: &[(&str, &str)] = &[
    (
        "telemetry",
        "Llama Stack 0.7 has no telemetry section (metrics export is set with OTEL_EXPORTER_OTLP_ENDPOINT)",
    ),
    ("metadata_store", "use storage.stores.metadata"),
    ("inference_store", "use storage.stores.inference"),
    ("conversations_store", "use storage.stores.conversations"),
];

/// `registered_resources` keys Llama Stack 0.7 ignores.
const LEGACY_RESOURCES: &[(&str, &str)] = &[
    ("vector_dbs", "use registered_resources.vector_stores"),
    (
        "tool_groups",
        "built-in tool groups are registered from the tool_runtime providers",
    ),
];

/// A whole run config, in Llama Stack 0.7's shape (`config.yaml` / `run.yaml`).
///
/// **Stricter than Llama Stack, by design:** an unknown key at the top level or in the
/// `server`, `storage` and `registered_resources` sections (and in provider entries) is an
/// error naming its path, where Llama Stack silently ignores it — a misspelt key should not
/// quietly fall back to a default. The leftovers real Llama Stack configs still carry are
/// accepted with a warning and dropped: top-level `telemetry`, `metadata_store`,
/// `inference_store`, `conversations_store`, and `registered_resources.vector_dbs` /
/// `tool_groups`. Provider `config` sections are kept as JSON here and checked by each
/// provider's own config type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Config schema version (2).
    #[serde(default = "default_version", deserialize_with = "de_version")]
    pub version: u32,
    /// Name of the distribution; this or `image_name` is required. Non-strings are stringified.
    #[serde(
        default,
        deserialize_with = "de_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub distro_name: Option<String>,
    /// Deprecated alias of `distro_name`, used when `distro_name` is absent.
    #[serde(
        default,
        deserialize_with = "de_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_name: Option<String>,
    /// Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    /// APIs to serve; empty = every API with an enabled provider (see [`Self::served_apis`]).
    #[serde(default)]
    pub apis: Vec<String>,
    /// API name → its provider instances.
    pub providers: BTreeMap<String, Vec<ProviderConfig>>,
    /// Named storage backends and the core stores' references into them. Without
    /// `storage.backends`, `kv_default` (kv_sqlite) and `sql_default` (sql_sqlite) are
    /// created under `$SQLITE_STORE_DIR` or `~/.llama/distributions` (see [`default_backends`]).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Resources registered at startup.
    #[serde(default)]
    pub registered_resources: RegisteredResources,
    /// HTTP server settings (used by the server binary only).
    #[serde(default)]
    pub server: ServerConfig,
    /// Defaults for vector stores and file search (Llama Stack's `VectorStoresConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_stores: Option<Value>,
    /// Safety defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyConfig>,
    /// Connectors (`{connector_type, connector_id, url, server_label?}`) synced at startup.
    #[serde(default)]
    pub connectors: Vec<Value>,
    /// Deprecated: directory of external provider specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_providers_dir: Option<PathBuf>,
    /// Directory of external API specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_apis_dir: Option<PathBuf>,
    /// `{category_levels: {category: level}}` (parsed, unused by Llama Stack's server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Value>,
    /// `{category_levels: {category: level}}` as read by Llama Stack's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_config: Option<Value>,
}

/// One provider instance: `providers.<api>[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Instance id; `null` or `""` = disabled (e.g. `${env.OLLAMA_URL:+ollama}` with the
    /// variable unset). The key itself is required.
    #[serde(deserialize_with = "de_nullable")]
    #[schemars(required)]
    pub provider_id: Option<String>,
    /// Registered provider type, e.g. `remote::openai`, `inline::faiss`.
    pub provider_type: String,
    /// The provider's own config (checked by the provider); `{}` when absent or `null`.
    #[serde(default = "empty_object", deserialize_with = "de_object")]
    #[schemars(with = "Map<String, Value>")]
    pub config: Value,
    /// External provider module (Llama Stack's Python import path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl ProviderConfig {
    /// The provider id if this entry is enabled (non-empty and not `__disabled__`).
    pub fn enabled_id(&self) -> Option<&str> {
        self.provider_id
            .as_deref()
            .filter(|id| !id.is_empty() && *id != env::DISABLED)
    }
}

/// `registered_resources`: resources registered at startup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisteredResources {
    /// Models; identifier `<provider_id>/<provider_model_id or model_id>`.
    #[serde(default)]
    pub models: Vec<ModelInput>,
    /// Shields.
    #[serde(default)]
    pub shields: Vec<ShieldInput>,
    /// Vector stores.
    #[serde(default)]
    pub vector_stores: Vec<VectorStoreInput>,
    /// Datasets.
    #[serde(default)]
    pub datasets: Vec<DatasetInput>,
    /// Scoring functions.
    #[serde(default)]
    pub scoring_fns: Vec<ScoringFnInput>,
    /// Benchmarks.
    #[serde(default)]
    pub benchmarks: Vec<BenchmarkInput>,
}

/// `registered_resources.models[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    /// The model's id; also the provider's id unless `provider_model_id` is set.
    pub model_id: String,
    /// Inference provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's own id for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_model_id: Option<String>,
    /// `llm` (default), `embedding` or `rerank`.
    #[serde(default)]
    pub model_type: ModelType,
    /// Free-form metadata; embedding models need `embedding_dimension`.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Whether to check the model with the provider at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_validation: Option<bool>,
}

/// `registered_resources.shields[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShieldInput {
    /// The shield's identifier (not prefixed).
    pub shield_id: String,
    /// Safety provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's id for the shield (default: `shield_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_shield_id: Option<String>,
    /// Shield parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// `registered_resources.vector_stores[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorStoreInput {
    /// The vector store's id.
    pub vector_store_id: String,
    /// Registered embedding model identifier.
    pub embedding_model: String,
    /// Embedding dimension.
    pub embedding_dimension: u32,
    /// vector_io provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's id for the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_vector_store_id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_store_name: Option<String>,
}

/// What a dataset is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DatasetPurpose {
    /// `post-training/messages`.
    #[serde(rename = "post-training/messages")]
    PostTrainingMessages,
    /// `eval/question-answer`.
    #[serde(rename = "eval/question-answer")]
    EvalQuestionAnswer,
    /// `eval/messages-answer`.
    #[serde(rename = "eval/messages-answer")]
    EvalMessagesAnswer,
}

/// Where a dataset's rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DataSource {
    /// A URI (`https://`, `file://`, `data:`, `huggingface://`).
    Uri {
        /// The URI.
        uri: String,
    },
    /// Inline rows.
    Rows {
        /// The rows.
        rows: Vec<Map<String, Value>>,
    },
}

/// `registered_resources.datasets[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetInput {
    /// The dataset's id.
    pub dataset_id: String,
    /// What the dataset is for.
    pub purpose: DatasetPurpose,
    /// Where its rows come from.
    pub source: DataSource,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// datasetio provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's id for the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_dataset_id: Option<String>,
}

/// `registered_resources.scoring_fns[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoringFnInput {
    /// The scoring function's id.
    pub scoring_fn_id: String,
    /// Return type (Llama Stack's `ParamType`, e.g. `{type: number}`).
    pub return_type: Value,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Scoring parameters (`{type: llm_as_judge | regex_parser | basic, …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// scoring provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's id for the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_scoring_fn_id: Option<String>,
}

/// `registered_resources.benchmarks[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkInput {
    /// The benchmark's id.
    pub benchmark_id: String,
    /// The dataset it runs on.
    pub dataset_id: String,
    /// Scoring function ids.
    pub scoring_functions: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// eval provider; may be omitted only when exactly one is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's id for the benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_benchmark_id: Option<String>,
}

/// `server`: the HTTP server (read by the server binary only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Port, 1024..=65535 (default 8321).
    #[serde(default = "default_port", deserialize_with = "de_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: u16,
    /// Address to bind; absent = all interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Async runtime worker threads serving requests; absent = one per CPU core. (Llama
    /// Stack: uvicorn worker processes, default 1; here one process serves on every core.)
    #[serde(
        default,
        deserialize_with = "de_workers",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub workers: Option<u32>,
    /// Microseconds a connection keeps reading for its next request after answering, before
    /// its task sleeps (default 50, at most 10 000; 0 = off). Clients that send their next
    /// request at once are then answered without waking an idle CPU.
    #[serde(
        default,
        deserialize_with = "de_idle_poll_us",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 10000))]
    pub idle_poll_us: Option<u32>,
    /// TLS certificate file; with `tls_keyfile`, the server speaks HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certfile: Option<String>,
    /// TLS private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_keyfile: Option<String>,
    /// CA file; with TLS, client certificates are required (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cafile: Option<String>,
    /// Authentication and access policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Request quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaConfig>,
    /// CORS: `true` (localhost origins), `false`, or a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSetting>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: default_port(),
            host: None,
            workers: None,
            idle_poll_us: None,
            tls_certfile: None,
            tls_keyfile: None,
            tls_cafile: None,
            auth: None,
            quota: None,
            cors: None,
        }
    }
}

impl ServerConfig {
    /// The CORS policy in force: `cors: true` is the localhost policy
    /// ([`CorsConfig::localhost`]), `false` or absent is none.
    pub fn cors_policy(&self) -> Option<CorsConfig> {
        match &self.cors {
            Some(CorsSetting::Enabled(true)) => Some(CorsConfig::localhost()),
            Some(CorsSetting::Policy(policy)) => Some(policy.clone()),
            Some(CorsSetting::Enabled(false)) | None => None,
        }
    }

    /// Runtime worker threads to serve with: `workers`, else one per CPU core.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// How long a connection polls for its next request: `idle_poll_us`, else 50 µs.
    pub fn idle_poll(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.idle_poll_us.map_or(DEFAULT_IDLE_POLL_US, u64::from))
    }
}

/// Idle polling window when `server.idle_poll_us` is absent.
const DEFAULT_IDLE_POLL_US: u64 = 50;
/// Largest accepted `server.idle_poll_us`.
const MAX_IDLE_POLL_US: u64 = 10_000;

/// `server.auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Authentication provider (`{type: oauth2_token | github_token | kubernetes | custom, …}`);
    /// absent = no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_config: Option<Value>,
    /// Route rules, checked per request; empty = every route allowed.
    #[serde(default)]
    pub route_policy: Vec<Value>,
    /// Resource access rules; empty = the default policy.
    #[serde(default)]
    pub access_policy: Vec<Value>,
}

/// `server.quota`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Where counters live (a `kv_*` backend).
    pub kvstore: KvStoreReference,
    /// Requests per period for anonymous clients (keyed by IP).
    #[serde(default = "default_anonymous_max")]
    pub anonymous_max_requests: u64,
    /// Requests per period for authenticated clients (keyed by token).
    #[serde(default = "default_authenticated_max")]
    pub authenticated_max_requests: u64,
    /// Counting window.
    #[serde(default)]
    pub period: QuotaPeriod,
}

/// A quota counting window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    /// 86 400 s.
    #[default]
    Day,
}

impl QuotaPeriod {
    /// Length of the window in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            QuotaPeriod::Day => 86_400,
        }
    }
}

/// `server.cors`: `true`/`false` or an explicit policy.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CorsSetting {
    /// `true`: [`CorsConfig::localhost`]; `false`: no CORS.
    Enabled(bool),
    /// An explicit policy.
    Policy(CorsConfig),
}

impl<'de> Deserialize<'de> for CorsSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct CorsVisitor;
        impl<'de> Visitor<'de> for CorsVisitor {
            type Value = CorsSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a CORS policy mapping")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<CorsSetting, E> {
                Ok(CorsSetting::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<CorsSetting, A::Error> {
                CorsConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CorsSetting::Policy)
            }
        }
        d.deserialize_any(CorsVisitor)
    }
}

/// A CORS policy (`server.cors` as a mapping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins (`"*"` = any, not with credentials).
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Origins matching this regex are allowed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origin_regex: Option<String>,
    /// Allowed methods (default `[OPTIONS]`).
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Whether credentials are allowed.
    #[serde(default)]
    pub allow_credentials: bool,
    /// Response headers exposed to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache lifetime in seconds (default 600).
    #[serde(default = "default_cors_max_age")]
    pub max_age: u32,
}

impl CorsConfig {
    /// The policy of `cors: true`: origins `https?://localhost:<port>`, methods
    /// GET/POST/PUT/DELETE/OPTIONS, headers Content-Type/Authorization/X-Requested-With.
    pub fn localhost() -> CorsConfig {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        CorsConfig {
            allow_origins: Vec::new(),
            allow_origin_regex: Some(r"https?://localhost:\d+".to_owned()),
            allow_methods: strings(&["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
            allow_headers: strings(&["Content-Type", "Authorization", "X-Requested-With"]),
            allow_credentials: false,
            expose_headers: Vec::new(),
            max_age: default_cors_max_age(),
        }
    }
}

/// `safety`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Shield used by `/v1/moderations` when the request names no model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_shield_id: Option<String>,
}

fn default_version() -> u32 {
    2
}

fn default_port() -> u16 {
    8321
}

fn default_anonymous_max() -> u64 {
    100
}

fn default_authenticated_max() -> u64 {
    1000
}

fn default_cors_methods() -> Vec<String> {
    vec!["OPTIONS".to_owned()]
}

fn default_cors_max_age() -> u32 {
    600
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// A port in 1024..=65535.
fn de_port<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u16, D::Error> {
    struct PortVisitor;
    impl Visitor<'_> for PortVisitor {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port in 1024..=65535")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<u16, E> {
            u16::try_from(v)
                .ok()
                .filter(|p| *p >= 1024)
                .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<u16, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }
    }
    d.deserialize_u64(PortVisitor)
}

/// `server.workers`: a count of at least 1.
fn de_workers<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let n = u64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| de::Error::invalid_value(Unexpected::Unsigned(n), &"a worker count ≥ 1"))
}

fn de_idle_poll_us<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let n = u64::deserialize(d)?;
    if n > MAX_IDLE_POLL_US {
        return Err(de::Error::invalid_value(
            Unexpected::Unsigned(n),
            &"microseconds from 0 to 10000",
        ));
    }
    Ok(Some(n as u32))
}

/// An integer version, also accepted as a numeric string (`version: '2'` in older configs).
fn de_version<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                de::Error::invalid_value(Unexpected::Other("number"), &"a version number")
            }),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::invalid_value(Unexpected::Str(&s), &"a version number")),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a version number",
        )),
    }
}

/// A name: strings as they are, numbers and booleans stringified, `null` = absent.
fn de_name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(de::Error::invalid_type(unexpected(&other), &"a name")),
    }
}

/// An `Option` whose key must be present (`null` allowed).
fn de_nullable<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// A mapping kept as JSON; `null` reads as `{}`.
fn de_object<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
    Ok(Value::Object(
        Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default(),
    ))
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

/// The storage backends used when `storage.backends` is absent: `kv_default` (kv_sqlite,
/// `<base>/kvstore.db`) and `sql_default` (sql_sqlite, `<base>/sql_store.db`), where
/// `<base>` is `$SQLITE_STORE_DIR`, else `$LLAMA_STACK_CONFIG_DIR/distributions`, else
/// `~/.llama/distributions`.
pub fn default_backends(env: &EnvFn<'_>) -> BTreeMap<String, BackendConfig> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let base = match set("SQLITE_STORE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let config_dir = set("LLAMA_STACK_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    set("HOME")
                        .map(PathBuf::from)
                        .or_else(dirs::home_dir)
                        .unwrap_or_default()
                        .join(".llama")
                });
            config_dir.join("distributions")
        }
    };
    let path = |file: &str| base.join(file).to_string_lossy().into_owned();
    BTreeMap::from([
        (
            "kv_default".to_owned(),
            BackendConfig::KvSqlite(SqlitePathConfig {
                db_path: path("kvstore.db"),
                namespace: None,
            }),
        ),
        (
            "sql_default".to_owned(),
            BackendConfig::SqlSqlite(SqlSqliteConfig {
                db_path: path("sql_store.db"),
                pool_pre_ping: true,
            }),
        ),
    ])
}

/// Why `name` is not a providable API, for `apis[i]` and `providers.<name>` errors.
fn api_name_problem(name: &str) -> Option<String> {
    if PROVIDABLE_APIS.contains(&name) {
        return None;
    }
    let listed = PROVIDABLE_APIS.join(", ");
    Some(if ROUTING_TABLES.contains(&name) {
        format!(
            "`{name}` is a routing table, not an API with providers: list its resources under \
             `registered_resources` (APIs with providers: {listed})"
        )
    } else if BUILT_IN_APIS.contains(&name) {
        format!("`{name}` is built into the stack and takes no providers (APIs with providers: {listed})")
    } else if name == "agents" {
        format!("`agents` no longer exists in Llama Stack 0.7; the Responses API is `responses` (APIs with providers: {listed})")
    } else if name == "telemetry" {
        format!(
            "`telemetry` no longer exists in Llama Stack 0.7; metrics export is set with \
             OTEL_EXPORTER_OTLP_ENDPOINT (APIs with providers: {listed})"
        )
    } else {
        format!("unknown API `{name}` (APIs with providers: {listed})")
    })
}

#[derive(Clone, Copy)]
enum StoreKind {
    Kv,
    Sql,
}

impl StoreKind {
    fn accepts(self, backend: &BackendConfig) -> bool {
        match self {
            StoreKind::Kv => backend.is_kv(),
            StoreKind::Sql => backend.is_sql(),
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            StoreKind::Kv => "kv_*",
            StoreKind::Sql => "sql_*",
        }
    }
}

impl StackConfig {
    /// Loads a config from YAML text, substituting `${env.*}` from the process environment.
    pub fn from_yaml_str(s: &str) -> Result<StackConfig> {
        Self::from_yaml_str_with_env(s, &env::process_env)
    }

    /// Loads a config from YAML text, reading variables (and `HOME` for `~`) through `env`.
    pub fn from_yaml_str_with_env(s: &str, env: &EnvFn<'_>) -> Result<StackConfig> {
        let mut yaml: serde_yaml::Value =
            serde_yaml::from_str(s).map_err(|e| Error::config(format!("invalid YAML: {e}")))?;
        yaml.apply_merge()
            .map_err(|e| Error::config(format!("invalid YAML: {e}")))?;
        Self::from_value_with_env(yaml_to_json(yaml, "")?, env)
    }

    /// Loads a config file (errors start with the file's path), with the process environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<StackConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("{}: cannot read the config: {e}", path.display()))
        })?;
        Self::from_yaml_str(&text).map_err(|e| e.with_prefix(&path.display().to_string()))
    }

    /// Loads a config from an already parsed tree; `${env.*}` placeholders in it are
    /// substituted from the process environment, exactly as for YAML.
    pub fn from_value(value: Value) -> Result<StackConfig> {
        Self::from_value_with_env(value, &env::process_env)
    }

    /// [`Self::from_value`] reading variables through `env`.
    pub fn from_value_with_env(value: Value, env: &EnvFn<'_>) -> Result<StackConfig> {
        let mut value = env::substitute(value, env)?;
        let Value::Object(root) = &mut value else {
            return Err(Error::config(format!(
                "the config must be a mapping of top-level keys, found {}",
                kind_of(&value)
            )));
        };
        drop_legacy_keys(root);
        fill_default_backends(root, env)?;
        let config: StackConfig = serde_path_to_error::deserialize(&value).map_err(path_error)?;
        config.check_shape()?;
        Ok(config)
    }

    /// The distribution name: `distro_name`, else `image_name`.
    pub fn name(&self) -> &str {
        self.distro_name
            .as_deref()
            .or(self.image_name.as_deref())
            .unwrap_or_default()
    }

    /// The APIs to serve: `apis` when given, else every API with an enabled provider.
    pub fn served_apis(&self) -> Vec<&str> {
        if self.apis.is_empty() {
            self.providers
                .keys()
                .filter(|api| self.enabled_providers(api).next().is_some())
                .map(String::as_str)
                .collect()
        } else {
            self.apis.iter().map(String::as_str).collect()
        }
    }

    /// The enabled providers of `api` as `(provider_id, entry)`, in config order; entries
    /// with a `null` or empty `provider_id` are skipped.
    pub fn enabled_providers<'a>(
        &'a self,
        api: &str,
    ) -> impl Iterator<Item = (&'a str, &'a ProviderConfig)> + 'a {
        self.providers
            .get(api)
            .into_iter()
            .flatten()
            .filter_map(|p| p.enabled_id().map(|id| (id, p)))
    }

    /// Checks the cross references: every store reference (`storage.stores.*`,
    /// `server.quota.kvstore`) names an existing backend of the right kind (metadata,
    /// prompts, connectors, quota → `kv_*`; inference, conversations, responses → `sql_*`),
    /// the metadata store is configured, enabled provider ids are unique per API, every
    /// registered resource names an enabled provider of its API (or omits it while exactly
    /// one is enabled), embedding models carry `embedding_dimension`, and TLS files come in
    /// pairs.
    pub fn validate(&self) -> Result<()> {
        let stores = &self.storage.stores;
        let Some(metadata) = &stores.metadata else {
            return Err(Error::config(
                "storage.stores.metadata: required (the resource registry is stored there)",
            ));
        };
        self.check_store("storage.stores.metadata", &metadata.backend, StoreKind::Kv)?;
        let kv = [
            ("storage.stores.prompts", stores.prompts.as_ref()),
            ("storage.stores.connectors", stores.connectors.as_ref()),
            (
                "server.quota.kvstore",
                self.server.quota.as_ref().map(|q| &q.kvstore),
            ),
        ];
        for (path, reference) in kv {
            if let Some(reference) = reference {
                self.check_store(path, &reference.backend, StoreKind::Kv)?;
            }
        }
        let sql = [
            (
                "storage.stores.inference",
                stores.inference.as_ref().map(|r| &r.backend),
            ),
            (
                "storage.stores.conversations",
                stores.conversations.as_ref().map(|r| &r.backend),
            ),
            (
                "storage.stores.responses",
                stores.responses.as_ref().map(|r| &r.backend),
            ),
        ];
        for (path, backend) in sql {
            if let Some(backend) = backend {
                self.check_store(path, backend, StoreKind::Sql)?;
            }
        }

        for (api, entries) in &self.providers {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, entry) in entries.iter().enumerate() {
                let Some(id) = entry.enabled_id() else {
                    continue;
                };
                if let Some(first) = seen.insert(id, i) {
                    return Err(Error::config(format!(
                        "providers.{api}[{i}].provider_id: `{id}` is already used by providers.{api}[{first}]"
                    )));
                }
            }
        }

        let r = &self.registered_resources;
        let ids = |section: &str, api: &str, ids: Vec<Option<&str>>| -> Result<()> {
            for (i, id) in ids.into_iter().enumerate() {
                self.check_resource_provider(
                    &format!("registered_resources.{section}[{i}]"),
                    api,
                    id,
                )?;
            }
            Ok(())
        };
        ids(
            "models",
            "inference",
            r.models.iter().map(|m| m.provider_id.as_deref()).collect(),
        )?;
        ids(
            "shields",
            "safety",
            r.shields.iter().map(|s| s.provider_id.as_deref()).collect(),
        )?;
        ids(
            "vector_stores",
            "vector_io",
            r.vector_stores
                .iter()
                .map(|v| v.provider_id.as_deref())
                .collect(),
        )?;
        ids(
            "datasets",
            "datasetio",
            r.datasets
                .iter()
                .map(|d| d.provider_id.as_deref())
                .collect(),
        )?;
        ids(
            "scoring_fns",
            "scoring",
            r.scoring_fns
                .iter()
                .map(|s| s.provider_id.as_deref())
                .collect(),
        )?;
        ids(
            "benchmarks",
            "eval",
            r.benchmarks
                .iter()
                .map(|b| b.provider_id.as_deref())
                .collect(),
        )?;
        for (i, model) in r.models.iter().enumerate() {
            let dimension = model.metadata.get("embedding_dimension");
            if model.model_type == ModelType::Embedding
                && dimension.and_then(Value::as_u64).is_none_or(|d| d == 0)
            {
                return Err(Error::config(format!(
                    "registered_resources.models[{i}].metadata.embedding_dimension: embedding model `{}` needs a positive integer dimension",
                    model.model_id
                )));
            }
        }

        let server = &self.server;
        match (&server.tls_certfile, &server.tls_keyfile) {
            (Some(_), None) => Err(Error::config(
                "server.tls_keyfile: required when tls_certfile is set",
            )),
            (None, Some(_)) => Err(Error::config(
                "server.tls_certfile: required when tls_keyfile is set",
            )),
            _ => Ok(()),
        }
    }

    /// The config as YAML (for `print-config`). Secrets are included: see
    /// [`Self::to_yaml_redacted`].
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self)
            .map_err(|e| Error::internal(format!("cannot write the config as YAML: {e}")))
    }

    /// The config as YAML with the values of secret-looking keys (`*api_key*`, `*password*`,
    /// `*secret*`, `token`, `*_token`) replaced by `********`.
    pub fn to_yaml_redacted(&self) -> Result<String> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| Error::internal(format!("cannot write the config: {e}")))?;
        redact(&mut value);
        serde_yaml::to_string(&value)
            .map_err(|e| Error::internal(format!("cannot write the config as YAML: {e}")))
    }

    /// The JSON Schema of the config file.
    pub fn json_schema() -> Value {
        schemars::schema_for!(StackConfig).to_value()
    }

    /// Checks made at load time: a name, known API names, a coherent CORS policy.
    fn check_shape(&self) -> Result<()> {
        if self.name().is_empty() {
            return Err(Error::config(
                "distro_name: missing (one of `distro_name` or `image_name` is required)",
            ));
        }
        for (i, api) in self.apis.iter().enumerate() {
            if let Some(problem) = api_name_problem(api) {
                return Err(Error::config(format!("apis[{i}]: {problem}")));
            }
        }
        for api in self.providers.keys() {
            if let Some(problem) = api_name_problem(api) {
                return Err(Error::config(format!(
                    "{}: {problem}",
                    join("providers", api)
                )));
            }
        }
        if let Some(CorsSetting::Policy(cors)) = &self.server.cors {
            if cors.allow_credentials && cors.allow_origins.iter().any(|o| o == "*") {
                return Err(Error::config(
                    "server.cors: allow_origins `*` cannot be combined with allow_credentials: true (list the origins)",
                ));
            }
            if let Some(pattern) = &cors.allow_origin_regex {
                regex::Regex::new(pattern).map_err(|e| {
                    Error::config(format!(
                        "server.cors.allow_origin_regex: invalid regex: {e}"
                    ))
                })?;
            }
        }
        Ok(())
    }

    fn check_store(&self, path: &str, backend: &str, kind: StoreKind) -> Result<()> {
        match self.storage.backends.get(backend) {
            None => {
                let known: Vec<&str> = self.storage.backends.keys().map(String::as_str).collect();
                Err(Error::config(format!(
                    "{path}.backend: no storage backend named `{backend}` (storage.backends has: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )))
            }
            Some(config) if !kind.accepts(config) => Err(Error::config(format!(
                "{path}.backend: `{backend}` is a {} backend, but this store needs a {} backend",
                config.type_name(),
                kind.pattern()
            ))),
            Some(_) => Ok(()),
        }
    }

    fn check_resource_provider(
        &self,
        path: &str,
        api: &str,
        provider_id: Option<&str>,
    ) -> Result<()> {
        let enabled: Vec<&str> = self.enabled_providers(api).map(|(id, _)| id).collect();
        let listed = if enabled.is_empty() {
            format!("no {api} provider is enabled")
        } else {
            format!("enabled {api} providers: {}", enabled.join(", "))
        };
        match provider_id.filter(|id| !id.is_empty()) {
            Some(id) if enabled.contains(&id) => Ok(()),
            Some(id) => Err(Error::config(format!(
                "{path}.provider_id: `{id}` is not an enabled {api} provider ({listed})"
            ))),
            None if enabled.len() == 1 => Ok(()),
            None => Err(Error::config(format!(
                "{path}.provider_id: required unless exactly one {api} provider is enabled ({listed})"
            ))),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Removes the keys Llama Stack 0.7 ignores, with a warning each.
fn drop_legacy_keys(root: &mut Map<String, Value>) {
    for (key, hint) in LEGACY_TOP_LEVEL {
        if root.remove(*key).is_some() {
            tracing::warn!(key, "ignoring the legacy config key `{key}`: {hint}");
        }
    }
    if let Some(Value::Object(resources)) = root.get_mut("registered_resources") {
        for (key, hint) in LEGACY_RESOURCES {
            if resources.remove(*key).is_some() {
                let path = join("registered_resources", key);
                tracing::warn!(key = %path, "ignoring the legacy config key `{path}`: {hint}");
            }
        }
    }
}

/// Inserts [`default_backends`] when `storage` or `storage.backends` is absent.
fn fill_default_backends(root: &mut Map<String, Value>, env: &EnvFn<'_>) -> Result<()> {
    let needs = match root.get("storage") {
        None | Some(Value::Null) => true,
        Some(Value::Object(storage)) => !storage.contains_key("backends"),
        Some(_) => false,
    };
    if !needs {
        return Ok(());
    }
    let backends = serde_json::to_value(default_backends(env))
        .map_err(|e| Error::internal(format!("default storage backends: {e}")))?;
    match root.get_mut("storage") {
        Some(Value::Object(storage)) => {
            storage.insert("backends".to_owned(), backends);
        }
        _ => {
            let mut storage = Map::new();
            storage.insert("backends".to_owned(), backends);
            root.insert("storage".to_owned(), Value::Object(storage));
        }
    }
    Ok(())
}

/// A deserialization error as `path: message`. serde_path_to_error already ends the path
/// with an unknown key, except inside internally tagged enums: the key is added there.
fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let mut path = if path == "." { String::new() } else { path };
    let message = e.into_inner().to_string();
    if let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if path != key && !path.ends_with(&format!(".{key}")) {
            path = join(&path, key);
        }
    }
    if path.is_empty() {
        Error::config(message)
    } else {
        Error::config(format!("{path}: {message}"))
    }
}

/// Converts parsed YAML to JSON; mapping keys must be strings.
fn yaml_to_json(value: serde_yaml::Value, path: &str) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // Non-finite floats (`.inf`, `.nan`) have no JSON form: kept as text.
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, item) in mapping {
                let Y::String(key) = key else {
                    let shown = serde_yaml::to_string(&key).unwrap_or_default();
                    return Err(Error::config(format!(
                        "{}: mapping key `{}` is not a string (quote it)",
                        if path.is_empty() { "(top level)" } else { path },
                        shown.trim()
                    )));
                };
                let item = yaml_to_json(item, &join(path, &key))?;
                out.insert(key, item);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            return Err(Error::config(format!(
                "{}: YAML tags ({}) are not supported",
                if path.is_empty() { "(top level)" } else { path },
                tagged.tag
            )))
        }
    })
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                let secret = ["api_key", "password", "secret"]
                    .iter()
                    .any(|p| key.contains(p))
                    || key == "token"
                    || key.ends_with("_token");
                if secret && !item.is_null() && !item.is_object() && !item.is_array() {
                    *item = Value::String("********".to_owned());
                } else {
                    redact(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use llama_stack_core::ErrorKind;

    use super::*;

    const HOME: &str = "/home/tester";

    /// Environment variables of a test case.
    type Vars<'a> = &'a [(&'a str, &'a str)];

    /// One enabled inference provider, the smallest valid config.
    const BASE: &str = "distro_name: t\nproviders:\n  inference:\n  - {provider_id: a, provider_type: remote::openai}\n";

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<StackConfig> {
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.entry("HOME".to_owned())
            .or_insert_with(|| HOME.to_owned());
        StackConfig::from_yaml_str_with_env(yaml, &|name: &str| env.get(name).cloned())
    }

    /// Loads and validates `yaml`; `expected` is `ok` or the start of the error message.
    fn check(yaml: &str, env: &[(&str, &str)], expected: &str) {
        match (load(yaml, env).and_then(|c| c.validate()), expected) {
            (Ok(()), "ok") => {}
            (Ok(()), want) => panic!("expected error `{want}`, loaded fine:\n{yaml}"),
            (Err(e), "ok") => panic!("unexpected error `{}` for:\n{yaml}", e.message()),
            (Err(e), want) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{}", e.message());
                assert!(
                    e.message().starts_with(want),
                    "error `{}` does not start with `{want}`",
                    e.message()
                );
            }
        }
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases: &[(&str, Vars, &str)] = &[
            (
                "distro_name: t\nproviders:\n  inference:\n  - provider_id: openai\n    provider_type: remote::openai\n    config:\n      api_key: ${env.OPENAI_API_KEY}\n",
                &[],
                "providers.inference[0].config.api_key: environment variable OPENAI_API_KEY is not set (use ${env.OPENAI_API_KEY:=default} to give a default)",
            ),
            (&format!("{BASE}telemetryx: {{}}\n"), &[], "telemetryx: unknown field `telemetryx`, expected one of `version`"),
            (&format!("{BASE}server:\n  portt: 1\n"), &[], "server.portt: unknown field `portt`"),
            (&format!("{BASE}storage:\n  stores:\n    metadat: {{}}\n"), &[], "storage.stores.metadat: unknown field `metadat`"),
            (
                &format!("{BASE}registered_resources:\n  models:\n  - {{model_id: m, modelid: x}}\n"),
                &[],
                "registered_resources.models[0].modelid: unknown field `modelid`",
            ),
            (&format!("{BASE}registered_resources:\n  toolgroups: []\n"), &[], "registered_resources.toolgroups: unknown field"),
            (&format!("{BASE}server:\n  port: 80\n"), &[], "server.port: invalid value: integer `80`, expected a port in 1024..=65535"),
            (&format!("{BASE}server:\n  port: -1\n"), &[], "server.port: invalid value: integer `-1`, expected a port in 1024..=65535"),
            (
                &format!("{BASE}server:\n  port: ${{env.PORT:=70000}}\n"),
                &[],
                "server.port: invalid value: integer `70000`, expected a port in 1024..=65535",
            ),
            (&format!("{BASE}server:\n  port: ${{env.PORT}}\n"), &[("PORT", "abc")], "server.port: invalid type: string \"abc\", expected a port in 1024..=65535"),
            (&format!("{BASE}server:\n  workers: 0\n"), &[], "server.workers: invalid value: integer `0`, expected a worker count ≥ 1"),
            (&format!("{BASE}server:\n  workers: -2\n"), &[], "server.workers: invalid value"),
            (
                &format!("{BASE}server:\n  idle_poll_us: 20000\n"),
                &[],
                "server.idle_poll_us: invalid value: integer `20000`, expected microseconds from 0 to 10000",
            ),
            (&format!("{BASE}server:\n  idle_poll_us: -1\n"), &[], "server.idle_poll_us: invalid value"),
            (
                "distro_name: t\nproviders:\n  inference:\n  - {provider_id: a, provider_type: 5}\n",
                &[],
                "providers.inference[0].provider_type: invalid type: integer `5`, expected a string",
            ),
            ("distro_name: t\nproviders:\n  inference:\n  - {provider_type: x}\n", &[], "providers.inference[0]: missing field `provider_id`"),
            ("distro_name: t\nproviders:\n  inference:\n  - {provider_id: a, provider_type: x, config: [1]}\n", &[], "providers.inference[0].config: invalid type: sequence, expected a map"),
            ("distro_name: t\n", &[], "missing field `providers`"),
            ("providers: {}\n", &[], "distro_name: missing (one of `distro_name` or `image_name` is required)"),
            ("distro_name: [a]\nproviders: {}\n", &[], "distro_name: invalid type: sequence, expected a name"),
            ("distro_name: t\nproviders:\n  models: []\n", &[], "providers.models: `models` is a routing table, not an API with providers"),
            ("distro_name: t\nproviders:\n  agents: []\n", &[], "providers.agents: `agents` no longer exists in Llama Stack 0.7; the Responses API is `responses`"),
            ("distro_name: t\nproviders:\n  inspect: []\n", &[], "providers.inspect: `inspect` is built into the stack"),
            ("distro_name: t\nproviders:\n  inferense: []\n", &[], "providers.inferense: unknown API `inferense` (APIs with providers: inference, safety,"),
            ("distro_name: t\napis: [inference, telemetry]\nproviders: {}\n", &[], "apis[1]: `telemetry` no longer exists"),
            ("distro_name: t\nproviders:\n  1: []\n", &[], "providers: mapping key `1` is not a string (quote it)"),
            ("- a\n", &[], "the config must be a mapping of top-level keys, found a list"),
            ("distro_name: [\n", &[], "invalid YAML: "),
            ("distro_name: t\nproviders: !custom {}\n", &[], "providers: YAML tags (!custom) are not supported"),
            (
                &format!("{BASE}server:\n  quota:\n    kvstore: {{backend: sql_default, namespace: quota}}\n"),
                &[],
                "server.quota.kvstore.backend: `sql_default` is a sql_sqlite backend, but this store needs a kv_* backend",
            ),
            (
                &format!("{BASE}server:\n  quota:\n    kvstore: {{backend: kv_quota, namespace: quota}}\n"),
                &[],
                "server.quota.kvstore.backend: no storage backend named `kv_quota` (storage.backends has: kv_default, sql_default)",
            ),
            (
                &format!("{BASE}server:\n  quota:\n    kvstore: {{type: sqlite, db_path: /tmp/q.db}}\n"),
                &[],
                "server.quota.kvstore.db_path: unknown field `db_path`, expected `backend` or `namespace`",
            ),
            (
                &format!("{BASE}server:\n  quota:\n    kvstore: {{backend: kv_default, namespace: q}}\n    period: hour\n"),
                &[],
                "server.quota.period: unknown variant `hour`, expected `day`",
            ),
            (
                &format!("{BASE}server:\n  cors:\n    allow_origins: ['*']\n    allow_credentials: true\n"),
                &[],
                "server.cors: allow_origins `*` cannot be combined with allow_credentials: true",
            ),
            (&format!("{BASE}server:\n  cors: yes\n"), &[], "server.cors: invalid type: string \"yes\", expected true, false or a CORS policy mapping"),
            (&format!("{BASE}server:\n  cors: {{allow_origin: [x]}}\n"), &[], "server.cors.allow_origin: unknown field `allow_origin`"),
            (&format!("{BASE}server:\n  cors: {{max_age: -1}}\n"), &[], "server.cors.max_age: invalid value: integer `-1`, expected u32"),
            (&format!("{BASE}server:\n  cors: {{allow_origin_regex: '('}}\n"), &[], "server.cors.allow_origin_regex: invalid regex"),
            (&format!("{BASE}server:\n  tls_certfile: /c.pem\n"), &[], "server.tls_keyfile: required when tls_certfile is set"),
            (
                &format!("{BASE}storage:\n  stores:\n    inference: {{backend: kv_default, table_name: t}}\n"),
                &[],
                "storage.stores.inference.backend: `kv_default` is a kv_sqlite backend, but this store needs a sql_* backend",
            ),
            (&format!("{BASE}storage:\n  stores:\n    metadata: null\n"), &[], "storage.stores.metadata: required"),
            (
                &format!("{BASE}storage:\n  backends: {{}}\n"),
                &[],
                "storage.stores.metadata.backend: no storage backend named `kv_default` (storage.backends has: none)",
            ),
            (
                "distro_name: t\nproviders:\n  inference:\n  - {provider_id: a, provider_type: x}\n  - {provider_id: a, provider_type: y}\n",
                &[],
                "providers.inference[1].provider_id: `a` is already used by providers.inference[0]",
            ),
            (
                &format!("{BASE}registered_resources:\n  models:\n  - {{model_id: m, provider_id: b}}\n"),
                &[],
                "registered_resources.models[0].provider_id: `b` is not an enabled inference provider (enabled inference providers: a)",
            ),
            (
                "distro_name: t\nproviders:\n  inference:\n  - {provider_id: a, provider_type: x}\n  - {provider_id: b, provider_type: x}\nregistered_resources:\n  models:\n  - {model_id: m}\n",
                &[],
                "registered_resources.models[0].provider_id: required unless exactly one inference provider is enabled (enabled inference providers: a, b)",
            ),
            (
                &format!("{BASE}registered_resources:\n  shields:\n  - {{shield_id: s}}\n"),
                &[],
                "registered_resources.shields[0].provider_id: required unless exactly one safety provider is enabled (no safety provider is enabled)",
            ),
            (
                &format!("{BASE}registered_resources:\n  models:\n  - {{model_id: e, model_type: embedding}}\n"),
                &[],
                "registered_resources.models[0].metadata.embedding_dimension: embedding model `e` needs a positive integer dimension",
            ),
            (&format!("{BASE}registered_resources:\n  models:\n  - {{model_id: e, model_type: chat}}\n"), &[], "registered_resources.models[0].model_type: unknown variant `chat`"),
        ];
        for (yaml, env, expected) in cases {
            check(yaml, env, expected);
        }
    }

    #[test]
    fn accepted_configs() {
        let cases: &[(&str, Vars)] = &[
            (BASE, &[]),
            ("image_name: 123\nversion: '2'\nproviders: {}\n", &[]),
            // Leftovers of older Llama Stack configs load with a warning.
            (
                &format!("{BASE}telemetry: {{enabled: true}}\nmetadata_store: {{type: sqlite}}\ninference_store: {{}}\nconversations_store: {{}}\nregistered_resources:\n  vector_dbs: []\n  tool_groups:\n  - {{toolgroup_id: builtin::websearch, provider_id: tavily-search}}\n"),
                &[],
            ),
            (&format!("{BASE}registered_resources:\n  models:\n  - {{model_id: m}}\n  - {{model_id: e, model_type: embedding, metadata: {{embedding_dimension: 768}}}}\n"), &[]),
            (&format!("{BASE}server:\n  port: ${{env.LLAMA_STACK_PORT:=8321}}\n  cors: true\n  quota: {{kvstore: {{backend: kv_default, namespace: quota}}}}\n"), &[("LLAMA_STACK_PORT", "9000")]),
            (&format!("{BASE}server:\n  auth:\n    provider_config: {{type: '${{env.AUTH:+custom}}', endpoint: '${{env.AUTH_URL}}'}}\n    access_policy:\n    - permit: {{actions: [read]}}\n"), &[]),
            // A provider disabled through `__disabled__` may reference unset variables.
            ("distro_name: t\nproviders:\n  inference:\n  - provider_id: ${env.X:=__disabled__}\n    provider_type: remote::openai\n    config: {api_key: '${env.MISSING}'}\n", &[]),
        ];
        for (yaml, env) in cases {
            check(yaml, env, "ok");
        }
    }

    #[test]
    fn defaults_are_llama_stacks() {
        let c = load(BASE, &[]).unwrap();
        assert_eq!(c.version, 2);
        assert_eq!(c.name(), "t");
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.server.port, 8321);
        assert_eq!(c.server.workers, None);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.server.worker_threads(), cores);
        let c = load(&format!("{BASE}server:\n  workers: ${{env.W:=3}}\n"), &[]).unwrap();
        assert_eq!((c.server.workers, c.server.worker_threads()), (Some(3), 3));
        assert_eq!(c.server.cors_policy(), None);
        assert_eq!(
            c.storage.backends,
            default_backends(&|n: &str| (n == "HOME").then(|| HOME.to_owned()))
        );
        assert_eq!(
            c.storage.backends.get("kv_default"),
            Some(&BackendConfig::KvSqlite(SqlitePathConfig {
                db_path: "/home/tester/.llama/distributions/kvstore.db".to_owned(),
                namespace: None,
            }))
        );
        assert_eq!(c.storage.stores, Default::default());
        assert_eq!(c.registered_resources, RegisteredResources::default());
        assert_eq!(c.served_apis(), ["inference"]);

        let c = load("image_name: 123\nversion: '2'\nproviders: {}\n", &[]).unwrap();
        assert_eq!((c.name(), c.version), ("123", 2));

        let dir = |env: &[(&str, &str)]| match load(BASE, env)
            .unwrap()
            .storage
            .backends
            .get("sql_default")
        {
            Some(BackendConfig::SqlSqlite(c)) => c.db_path.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(dir(&[("SQLITE_STORE_DIR", "/data")]), "/data/sql_store.db");
        assert_eq!(
            dir(&[("LLAMA_STACK_CONFIG_DIR", "/cfg")]),
            "/cfg/distributions/sql_store.db"
        );
        assert_eq!(
            dir(&[("SQLITE_STORE_DIR", ""), ("LLAMA_STACK_CONFIG_DIR", "/cfg")]),
            "/cfg/distributions/sql_store.db"
        );
        // Explicit stores without backends still get the default backends.
        let c = load(
            &format!("{BASE}storage:\n  stores:\n    prompts: null\n"),
            &[],
        )
        .unwrap();
        assert_eq!(c.storage.backends.len(), 2);
        assert_eq!(c.storage.stores.prompts, None);
    }

    #[test]
    fn server_sections() {
        let c = load(
            &format!("{BASE}server:\n  port: ${{env.LLAMA_STACK_PORT:=8321}}\n  cors: true\n  quota: {{kvstore: {{backend: kv_default, namespace: quota}}}}\n"),
            &[("LLAMA_STACK_PORT", "9000")],
        )
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.server.cors_policy(), Some(CorsConfig::localhost()));
        assert_eq!(c.server.idle_poll(), std::time::Duration::from_micros(50));
        let quota = c.server.quota.unwrap();
        assert_eq!(
            (
                quota.anonymous_max_requests,
                quota.authenticated_max_requests
            ),
            (100, 1000)
        );
        assert_eq!(quota.period.seconds(), 86_400);
        for (us, window) in [(0, 0), (200, 200), (10_000, 10_000)] {
            let c = load(&format!("{BASE}server:\n  idle_poll_us: {us}\n"), &[]).unwrap();
            assert_eq!(
                c.server.idle_poll(),
                std::time::Duration::from_micros(window)
            );
        }

        let c = load(
            &format!("{BASE}server:\n  cors: {{allow_origins: ['https://a.example']}}\n"),
            &[],
        )
        .unwrap();
        let cors = c.server.cors_policy().unwrap();
        assert_eq!(
            (cors.allow_methods, cors.max_age, cors.allow_credentials),
            (vec!["OPTIONS".to_owned()], 600, false)
        );

        let c = load(&format!("{BASE}server:\n  cors: false\n"), &[]).unwrap();
        assert_eq!(c.server.cors_policy(), None);

        let yaml = format!("{BASE}server:\n  auth:\n    provider_config: {{type: '${{env.AUTH:+custom}}', endpoint: '${{env.AUTH_URL}}'}}\n    access_policy:\n    - permit: {{actions: [read]}}\n");
        let auth = load(&yaml, &[]).unwrap().server.auth.unwrap();
        assert_eq!(auth.provider_config, None);
        assert_eq!(
            auth.access_policy,
            vec![serde_json::json!({"permit": {"actions": ["read"]}})]
        );
        assert!(auth.route_policy.is_empty());
        let auth = load(&yaml, &[("AUTH", "1"), ("AUTH_URL", "http://auth:8080")])
            .unwrap()
            .server
            .auth
            .unwrap();
        assert_eq!(
            auth.provider_config,
            Some(serde_json::json!({"type": "custom", "endpoint": "http://auth:8080"}))
        );
    }

    /// Modelled on Llama Stack 0.7's `distributions/starter/config.yaml`.
    const STARTER: &str = r#"version: 2
distro_name: starter
apis:
- batches
- datasetio
- eval
- file_processors
- files
- inference
- responses
- safety
- scoring
- tool_runtime
- vector_io
providers:
  inference:
  - provider_id: ${env.CEREBRAS_API_KEY:+cerebras}
    provider_type: remote::cerebras
    config:
      base_url: https://api.cerebras.ai/v1
      api_key: ${env.CEREBRAS_API_KEY:=}
  - provider_id: ${env.OLLAMA_URL:+ollama}
    provider_type: remote::ollama
    config:
      base_url: ${env.OLLAMA_URL:=http://localhost:11434/v1}
  - provider_id: ${env.VLLM_URL:+vllm}
    provider_type: remote::vllm
    config:
      base_url: ${env.VLLM_URL:=}
      max_tokens: ${env.VLLM_MAX_TOKENS:=4096}
      api_token: ${env.VLLM_API_TOKEN:=fake}
      network:
        tls:
          verify: ${env.VLLM_TLS_VERIFY:=true}
  - provider_id: fireworks
    provider_type: remote::fireworks
    config:
      base_url: https://api.fireworks.ai/inference/v1
      api_key: ${env.FIREWORKS_API_KEY:=}
  - provider_id: openai
    provider_type: remote::openai
    config:
      api_key: ${env.OPENAI_API_KEY:=}
      base_url: ${env.OPENAI_BASE_URL:=https://api.openai.com/v1}
  - provider_id: bedrock
    provider_type: remote::bedrock
    config:
      api_key: ${env.AWS_BEARER_TOKEN_BEDROCK:=}
      region_name: ${env.AWS_DEFAULT_REGION:=us-east-2}
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config:
      trust_remote_code: false
  - provider_id: transformers
    provider_type: inline::transformers
  vector_io:
  - provider_id: faiss
    provider_type: inline::faiss
    config:
      persistence:
        namespace: vector_io::faiss
        backend: kv_default
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/sqlite_vec.db
      persistence:
        namespace: vector_io::sqlite_vec
        backend: kv_default
  - provider_id: ${env.PGVECTOR_DB:+pgvector}
    provider_type: remote::pgvector
    config:
      host: ${env.PGVECTOR_HOST:=localhost}
      port: ${env.PGVECTOR_PORT:=5432}
      db: ${env.PGVECTOR_DB:=}
      user: ${env.PGVECTOR_USER:=}
      password: ${env.PGVECTOR_PASSWORD:=}
      distance_metric: COSINE
  files:
  - provider_id: builtin-files
    provider_type: inline::localfs
    config:
      storage_dir: ${env.FILES_STORAGE_DIR:=~/.llama/distributions/starter/files}
      metadata_store:
        table_name: files_metadata
        backend: sql_default
  file_processors:
  - provider_id: pypdf
    provider_type: inline::pypdf
  safety:
  - provider_id: llama-guard
    provider_type: inline::llama-guard
    config:
      excluded_categories: []
  - provider_id: code-scanner
    provider_type: inline::code-scanner
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config:
      persistence:
        agent_state:
          namespace: agents
          backend: kv_default
        responses:
          table_name: responses
          backend: sql_default
          max_write_queue_size: 10000
          num_writers: 4
  eval:
  - provider_id: builtin
    provider_type: inline::builtin
    config:
      kvstore:
        namespace: eval
        backend: kv_default
  datasetio:
  - provider_id: huggingface
    provider_type: remote::huggingface
    config:
      kvstore:
        namespace: datasetio::huggingface
        backend: kv_default
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      kvstore:
        namespace: datasetio::localfs
        backend: kv_default
  scoring:
  - provider_id: basic
    provider_type: inline::basic
  - provider_id: llm-as-judge
    provider_type: inline::llm-as-judge
  - provider_id: braintrust
    provider_type: inline::braintrust
    config:
      openai_api_key: ${env.OPENAI_API_KEY:=}
  tool_runtime:
  - provider_id: brave-search
    provider_type: remote::brave-search
    config:
      api_key: ${env.BRAVE_SEARCH_API_KEY:=}
      max_results: 3
  - provider_id: tavily-search
    provider_type: remote::tavily-search
    config:
      api_key: ${env.TAVILY_SEARCH_API_KEY:=}
      max_results: 3
  - provider_id: file-search
    provider_type: inline::file-search
  - provider_id: model-context-protocol
    provider_type: remote::model-context-protocol
  batches:
  - provider_id: reference
    provider_type: inline::reference
    config:
      kvstore:
        namespace: batches
        backend: kv_default
storage:
  backends:
    kv_default:
      type: kv_sqlite
      db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/kvstore.db
    sql_default:
      type: sql_sqlite
      db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/sql_store.db
  stores:
    metadata:
      namespace: registry
      backend: kv_default
    inference:
      table_name: inference_store
      backend: sql_default
      max_write_queue_size: 10000
      num_writers: 4
    conversations:
      table_name: openai_conversations
      backend: sql_default
    prompts:
      namespace: prompts
      backend: kv_default
    connectors:
      namespace: connectors
      backend: kv_default
registered_resources:
  models: []
  shields:
  - shield_id: llama-guard
    provider_id: ${env.SAFETY_MODEL:+llama-guard}
    provider_shield_id: ${env.SAFETY_MODEL:=}
  - shield_id: code-scanner
    provider_id: ${env.CODE_SCANNER_MODEL:+code-scanner}
    provider_shield_id: ${env.CODE_SCANNER_MODEL:=}
  vector_dbs: []
  datasets: []
  scoring_fns: []
  benchmarks: []
  tool_groups:
  - toolgroup_id: builtin::websearch
    provider_id: tavily-search
  - toolgroup_id: builtin::rag
    provider_id: rag-runtime
server:
  port: 8321
vector_stores:
  default_provider_id: faiss
  default_embedding_model:
    provider_id: sentence-transformers
    model_id: nomic-ai/nomic-embed-text-v1.5
  default_reranker_model:
    provider_id: transformers
    model_id: Qwen/Qwen3-Reranker-0.6B
safety:
  default_shield_id: llama-guard
connectors: []
telemetry:
  enabled: true
"#;

    fn ids(c: &StackConfig, api: &str) -> Vec<String> {
        c.enabled_providers(api)
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    #[test]
    fn loads_a_starter_config_without_any_variable() {
        let c = load(STARTER, &[]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.name(), "starter");
        assert_eq!(
            ids(&c, "inference"),
            [
                "fireworks",
                "openai",
                "bedrock",
                "sentence-transformers",
                "transformers"
            ]
        );
        // Conditional providers stay listed, disabled, with their config expanded.
        let inference = &c.providers["inference"];
        assert_eq!(inference.len(), 8);
        assert_eq!(inference[1].provider_id, None);
        assert_eq!(inference[1].config["base_url"], "http://localhost:11434/v1");
        assert_eq!(inference[2].config["max_tokens"], 4096);
        assert_eq!(inference[2].config["network"]["tls"]["verify"], true);
        assert_eq!(inference[4].config["api_key"], Value::Null);
        assert_eq!(inference[7].config, serde_json::json!({}));
        assert_eq!(c.providers["vector_io"][2].config["port"], 5432);
        assert_eq!(ids(&c, "vector_io"), ["faiss", "sqlite-vec"]);
        assert_eq!(
            c.providers["files"][0].config["storage_dir"],
            "/home/tester/.llama/distributions/starter/files"
        );
        assert_eq!(
            c.storage.backends["kv_default"],
            BackendConfig::KvSqlite(SqlitePathConfig {
                db_path: "/home/tester/.llama/distributions/starter/kvstore.db".to_owned(),
                namespace: None,
            })
        );
        // The shields are conditional on SAFETY_MODEL / CODE_SCANNER_MODEL.
        assert!(c.registered_resources.shields.is_empty());
        assert_eq!(
            c.safety
                .as_ref()
                .and_then(|s| s.default_shield_id.as_deref()),
            Some("llama-guard")
        );
        assert_eq!(
            c.vector_stores.as_ref().map(|v| &v["default_provider_id"]),
            Some(&Value::from("faiss"))
        );
        assert_eq!(c.served_apis().len(), 11);
    }

    #[test]
    fn loads_a_starter_config_with_variables() {
        let env = [
            ("OLLAMA_URL", "http://gpu:11434/v1"),
            ("OPENAI_API_KEY", "sk-123"),
            ("SAFETY_MODEL", "llama-guard3:1b"),
            ("SQLITE_STORE_DIR", "/srv/llama"),
            ("VLLM_MAX_TOKENS", "8_192"),
        ];
        let c = load(STARTER, &env).unwrap();
        c.validate().unwrap();
        assert_eq!(
            ids(&c, "inference"),
            [
                "ollama",
                "fireworks",
                "openai",
                "bedrock",
                "sentence-transformers",
                "transformers"
            ]
        );
        assert_eq!(
            c.providers["inference"][1].config["base_url"],
            "http://gpu:11434/v1"
        );
        assert_eq!(c.providers["inference"][2].config["max_tokens"], 8192);
        assert_eq!(c.providers["inference"][4].config["api_key"], "sk-123");
        assert_eq!(c.providers["scoring"][2].config["openai_api_key"], "sk-123");
        assert_eq!(
            c.registered_resources.shields,
            [ShieldInput {
                shield_id: "llama-guard".to_owned(),
                provider_id: Some("llama-guard".to_owned()),
                provider_shield_id: Some("llama-guard3:1b".to_owned()),
                params: None,
            }]
        );
        assert_eq!(
            c.storage.backends["sql_default"],
            BackendConfig::SqlSqlite(SqlSqliteConfig {
                db_path: "/srv/llama/sql_store.db".to_owned(),
                pool_pre_ping: true,
            })
        );
    }

    #[test]
    fn registered_resources_are_typed() {
        let yaml = "distro_name: t\nproviders:\n  inference: [{provider_id: a, provider_type: x}]\n  datasetio: [{provider_id: d, provider_type: x}]\n  scoring: [{provider_id: s, provider_type: x}]\n  eval: [{provider_id: e, provider_type: x}]\n  vector_io: [{provider_id: v, provider_type: x}]\nregistered_resources:\n  models:\n  - {model_id: m, provider_model_id: pm, model_type: rerank, model_validation: false}\n  vector_stores:\n  - {vector_store_id: vs, embedding_model: a/e, embedding_dimension: 384}\n  datasets:\n  - {dataset_id: ds, purpose: eval/messages-answer, source: {type: uri, uri: 'https://x/y.csv'}}\n  - {dataset_id: rows, purpose: post-training/messages, source: {type: rows, rows: [{q: 1}]}}\n  scoring_fns:\n  - {scoring_fn_id: f, return_type: {type: number}, params: {type: basic}}\n  benchmarks:\n  - {benchmark_id: b, dataset_id: ds, scoring_functions: [f]}\n";
        let c = load(yaml, &[]).unwrap();
        c.validate().unwrap();
        let r = &c.registered_resources;
        assert_eq!(r.models[0].model_type, ModelType::Rerank);
        assert_eq!(r.models[0].provider_model_id.as_deref(), Some("pm"));
        assert_eq!(r.vector_stores[0].embedding_dimension, 384);
        assert_eq!(
            r.datasets[0].source,
            DataSource::Uri {
                uri: "https://x/y.csv".to_owned()
            }
        );
        assert_eq!(r.datasets[1].purpose, DatasetPurpose::PostTrainingMessages);
        assert_eq!(r.benchmarks[0].scoring_functions, ["f"]);
        check(
            &yaml.replace("eval/messages-answer", "eval/other"),
            &[],
            "registered_resources.datasets[0].purpose: unknown variant `eval/other`",
        );
        check(
            &yaml.replace("type: uri, uri", "type: uri, url"),
            &[],
            "registered_resources.datasets[0].source.url: unknown field `url`, expected `uri`",
        );
    }

    #[test]
    fn yaml_round_trips() {
        let env = [("OLLAMA_URL", "http://gpu:11434/v1"), ("SAFETY_MODEL", "g")];
        let c = load(STARTER, &env).unwrap();
        let yaml = c.to_yaml().unwrap();
        assert_eq!(load(&yaml, &[]).unwrap(), c);
        assert!(!yaml.contains("telemetry"), "{yaml}");

        let c = load(&format!("{BASE}server:\n  cors: true\n  auth: {{provider_config: {{type: custom, endpoint: 'http://a'}}}}\n"), &[]).unwrap();
        assert_eq!(load(&c.to_yaml().unwrap(), &[]).unwrap(), c);
    }

    #[test]
    fn redacted_yaml_hides_secrets() {
        let c = load(
            STARTER,
            &[
                ("OPENAI_API_KEY", "sk-secret"),
                ("VLLM_URL", "http://v"),
                ("PGVECTOR_DB", "db"),
                ("PGVECTOR_PASSWORD", "pw"),
            ],
        )
        .unwrap();
        assert!(c.to_yaml().unwrap().contains("sk-secret"));
        let redacted = c.to_yaml_redacted().unwrap();
        for secret in ["sk-secret", "pw", "fake"] {
            assert!(
                !redacted.contains(&format!(": {secret}\n")),
                "{secret} in:\n{redacted}"
            );
        }
        assert!(redacted.contains("api_key: '********'"), "{redacted}");
        assert!(redacted.contains("max_tokens: 4096"), "{redacted}");
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        std::fs::write(&path, "distro_name: f\nproviders: {}\nserver: {port: 1}\n").unwrap();
        let err = StackConfig::from_file(&path).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "{}: server.port: invalid value: integer `1`, expected a port in 1024..=65535",
                path.display()
            )
        );
        std::fs::write(&path, "distro_name: f\nproviders: {}\n").unwrap();
        assert_eq!(StackConfig::from_file(&path).unwrap().name(), "f");
        let missing = dir.path().join("missing.yaml");
        let err = StackConfig::from_file(&missing).unwrap_err();
        assert!(
            err.message()
                .starts_with(&format!("{}: cannot read the config: ", missing.display())),
            "{}",
            err.message()
        );
    }

    #[test]
    fn from_value_substitutes_too() {
        let value = serde_json::json!({
            "distro_name": "v",
            "providers": {"inference": [{"provider_id": "${env.X:+x}", "provider_type": "remote::openai"}]},
        });
        let c = StackConfig::from_value_with_env(value, &|_| None).unwrap();
        assert_eq!(c.providers["inference"][0].provider_id, None);
        assert_eq!(c.enabled_providers("inference").count(), 0);
        assert!(c.served_apis().is_empty());
    }

    #[test]
    fn json_schema_describes_the_file() {
        let schema = StackConfig::json_schema();
        let properties = schema["properties"].as_object().unwrap();
        for key in [
            "distro_name",
            "providers",
            "storage",
            "registered_resources",
            "server",
        ] {
            assert!(properties.contains_key(key), "{key}");
        }
        assert_eq!(schema["required"], serde_json::json!(["providers"]));
        let provider = &schema["$defs"]["ProviderConfig"];
        assert_eq!(
            provider["required"],
            serde_json::json!(["provider_id", "provider_type"])
        );
    }
}
