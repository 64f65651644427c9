//! Vector IO providers: one shared vector-store service (store and file records, document
//! parsing, chunking, embedding, hybrid fusion) over a [`index::VectorIndex`] backend per
//! vector database.
//!
//! | provider type | backend | config |
//! |---|---|---|
//! | `inline::sqlite-vec` (alias `inline::sqlite_vec`) | [`sqlite_vec::SqliteVecIndex`]: SQLite + sqlite-vec + FTS5 | `db_path`, `persistence` |
//! | `inline::faiss` | [`faiss::HnswIndex`]: in-process HNSW (usearch), chunks in KV | `persistence`, `index_dir`?, `hnsw`? |
//! | `remote::pgvector` | [`pgvector::PgVectorIndex`]: PostgreSQL + pgvector (HNSW/IVFFlat) + full-text search | `host`, `port`, `db`, `user`, `password`, `distance_metric`, `vector_index`, `persistence`? |
//! | `remote::chromadb` | [`chroma::ChromaIndex`]: a Chroma server (HTTP API v2) | `url`, `persistence` |

#[cfg(feature = "remote-chromadb")]
pub mod chroma;
#[cfg(feature = "inline-faiss")]
pub mod faiss;
pub mod index;
#[cfg(feature = "vector-io")]
pub mod ingest;
#[cfg(feature = "remote-pgvector")]
pub mod pgvector;
#[cfg(feature = "vector-io")]
pub mod service;
#[cfg(feature = "inline-sqlite-vec")]
pub mod sqlite_vec;

#[cfg(feature = "vector-io")]
pub use specs::*;

/// `inline::sqlite-vec`: its config and spec.
#[cfg(feature = "inline-sqlite-vec")]
pub mod sqlite_vec_provider {
    /// The provider type.
    pub const PROVIDER_TYPE: &str = "inline::sqlite-vec";

    /// Config of `inline::sqlite-vec`.
    #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SqliteVecConfig {
        /// The SQLite file holding chunks, vectors and the full-text index (`~` expands).
        pub db_path: String,
        /// Where vector store, file and batch records live.
        pub persistence: crate::vector_io::KvStoreRef,
        /// Ingestion and search settings.
        #[serde(default, flatten)]
        pub settings: crate::vector_io::service::ServiceSettings,
    }

    /// The spec of `inline::sqlite-vec` (alias `inline::sqlite_vec`).
    pub fn spec() -> llama_stack_core::provider::ProviderSpec {
        use llama_stack_core::api::Api;
        use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderSpec};
        ProviderSpec::new::<SqliteVecConfig>(
            Api::VectorIo,
            PROVIDER_TYPE,
            "Vector stores in SQLite: sqlite-vec for vectors, FTS5 for keywords",
            FnFactory(|ctx: ProviderContext| async move {
                let config: SqliteVecConfig = ctx.parse_config()?;
                let kv = crate::vector_io::open_kv(&ctx, &config.persistence).await?;
                let path = crate::vector_io::expand_home(&config.db_path);
                let index = crate::vector_io::sqlite_vec::SqliteVecIndex::open(&path)
                    .await
                    .map_err(|e| e.with_prefix(&format!("{}.db_path", ctx.config_path)))?;
                crate::vector_io::instance(&ctx, std::sync::Arc::new(index), kv, config.settings)
            }),
        )
        .with_alias("inline::sqlite_vec")
        .with_dependencies([Api::Inference])
        .with_optional_dependencies([Api::Files])
    }
}

/// `inline::faiss`: its config and spec.
#[cfg(feature = "inline-faiss")]
pub mod faiss_provider {
    /// The provider type.
    pub const PROVIDER_TYPE: &str = "inline::faiss";

    /// Config of `inline::faiss`.
    #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct FaissConfig {
        /// Where chunks and vector store records live (the source of truth).
        pub persistence: crate::vector_io::KvStoreRef,
        /// A directory for saved index files, so a restart loads instead of rebuilding (`~` expands).
        #[serde(default)]
        pub index_dir: Option<String>,
        /// HNSW parameters.
        #[serde(default)]
        pub hnsw: crate::vector_io::faiss::HnswParams,
        /// How often changed graphs are saved to `index_dir` (seconds, default 30).
        #[serde(default = "default_flush_interval")]
        pub flush_interval_seconds: u64,
        /// Ingestion and search settings.
        #[serde(default, flatten)]
        pub settings: crate::vector_io::service::ServiceSettings,
    }

    fn default_flush_interval() -> u64 {
        30
    }

    /// The spec of `inline::faiss` (alias `inline::builtin`, deprecated in Llama Stack).
    pub fn spec() -> llama_stack_core::provider::ProviderSpec {
        use llama_stack_core::api::Api;
        use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderSpec};
        ProviderSpec::new::<FaissConfig>(
            Api::VectorIo,
            PROVIDER_TYPE,
            "Vector stores in an in-process HNSW index, chunks in a KV store",
            FnFactory(|ctx: ProviderContext| async move {
                let config: FaissConfig = ctx.parse_config()?;
                let kv = crate::vector_io::open_kv(&ctx, &config.persistence).await?;
                let dir = config
                    .index_dir
                    .as_deref()
                    .map(crate::vector_io::expand_home);
                let saving = dir.is_some();
                let index = std::sync::Arc::new(
                    crate::vector_io::faiss::HnswIndex::open(kv.clone(), dir, config.hnsw.clone())
                        .await?,
                );
                if saving {
                    // Save changed graphs now and then; the task ends with the index.
                    let weak = std::sync::Arc::downgrade(&index);
                    let every =
                        std::time::Duration::from_secs(config.flush_interval_seconds.max(1));
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(every);
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            let Some(index) = weak.upgrade() else { break };
                            if let Err(e) = index.flush().await {
                                tracing::warn!(error = %e, "saving HNSW graphs failed");
                            }
                        }
                    });
                }
                crate::vector_io::instance(&ctx, index, kv, config.settings)
            }),
        )
        .with_alias("inline::builtin")
        .with_dependencies([Api::Inference])
        .with_optional_dependencies([Api::Files])
    }
}

/// `remote::pgvector`: its config and spec.
#[cfg(feature = "remote-pgvector")]
pub mod pgvector_provider {
    use crate::vector_io::pgvector::{DistanceMetric, PgVectorIndexConfig};

    /// The provider type.
    pub const PROVIDER_TYPE: &str = "remote::pgvector";

    /// Config of `remote::pgvector` (Llama Stack's fields and defaults).
    #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PgVectorConfig {
        /// Host name or address.
        #[serde(default = "default_host")]
        pub host: String,
        /// Port.
        #[serde(default = "default_port")]
        pub port: u16,
        /// Database (the `vector` extension must be enabled, or the user allowed to enable it).
        #[serde(default = "default_db")]
        pub db: String,
        /// User name.
        #[serde(default = "default_user")]
        pub user: String,
        /// Password (ignored by trust authentication).
        #[serde(default = "default_password")]
        pub password: Option<String>,
        /// `COSINE` (default), `L2`, `L1` or `INNER_PRODUCT`.
        #[serde(default)]
        pub distance_metric: DistanceMetric,
        /// `{type: HNSW, m, ef_construction, ef_search}` (default) or `{type: IVFFlat, lists, probes}`.
        #[serde(default)]
        pub vector_index: PgVectorIndexConfig,
        /// Largest number of open connections (default 16).
        #[serde(default = "default_pool_size")]
        pub pool_size: usize,
        /// Where vector store, file and batch records live; without it they live in a
        /// table of the same database.
        #[serde(default)]
        pub persistence: Option<crate::vector_io::KvStoreRef>,
        /// Ingestion and search settings.
        #[serde(default, flatten)]
        pub settings: crate::vector_io::service::ServiceSettings,
    }

    fn default_host() -> String {
        "localhost".into()
    }
    fn default_port() -> u16 {
        5432
    }
    fn default_db() -> String {
        "postgres".into()
    }
    fn default_user() -> String {
        "postgres".into()
    }
    #[allow(clippy::unnecessary_wraps)]
    fn default_password() -> Option<String> {
        Some("mysecretpassword".into())
    }
    fn default_pool_size() -> usize {
        16
    }

    /// The spec of `remote::pgvector`.
    pub fn spec() -> llama_stack_core::provider::ProviderSpec {
        use llama_stack_core::api::Api;
        use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderSpec};
        use llama_stack_core::storage::{KvStore, NamespacedKv};
        use std::sync::Arc;
        ProviderSpec::new::<PgVectorConfig>(
            Api::VectorIo,
            PROVIDER_TYPE,
            "Vector stores in PostgreSQL with pgvector (HNSW or IVFFlat) and full-text search",
            FnFactory(|ctx: ProviderContext| async move {
                let config: PgVectorConfig = ctx.parse_config()?;
                let index = crate::vector_io::pgvector::PgVectorIndex::open(
                    crate::vector_io::pgvector::PgVectorOptions {
                        host: config.host,
                        port: config.port,
                        db: config.db,
                        user: config.user,
                        password: config.password,
                        distance_metric: config.distance_metric,
                        vector_index: config.vector_index,
                        pool_size: config.pool_size,
                    },
                )
                .await
                .map_err(|e| e.with_prefix(&ctx.config_path))?;
                let index = Arc::new(index);
                let kv: Arc<dyn KvStore> = match &config.persistence {
                    Some(r) => crate::vector_io::open_kv(&ctx, r).await?,
                    None => Arc::new(NamespacedKv::new(
                        Arc::new(
                            crate::vector_io::pgvector::PgRecords::open(Arc::clone(&index)).await?,
                        ),
                        &format!("vector_io::pgvector::{}", ctx.provider_id),
                    )),
                };
                crate::vector_io::instance(&ctx, index, kv, config.settings)
            }),
        )
        .with_dependencies([Api::Inference])
        .with_optional_dependencies([Api::Files])
    }
}

/// `remote::chromadb`: its config and spec.
#[cfg(feature = "remote-chromadb")]
pub mod chroma_provider {
    /// The provider type.
    pub const PROVIDER_TYPE: &str = "remote::chromadb";

    /// Config of `remote::chromadb`.
    #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ChromaConfig {
        /// The server's base URL, e.g. `http://localhost:8000`.
        pub url: Option<String>,
        /// Where vector store, file and batch records live.
        pub persistence: crate::vector_io::KvStoreRef,
        /// Chroma tenant (default `default_tenant`).
        #[serde(default = "default_tenant")]
        pub tenant: String,
        /// Chroma database (default `default_database`).
        #[serde(default = "default_database")]
        pub database: String,
        /// Token sent as `x-chroma-token`, for servers with token authentication.
        #[serde(default)]
        pub api_key: Option<String>,
        /// Per-request timeout in seconds (default 60).
        #[serde(default = "default_timeout")]
        pub timeout_seconds: u64,
        /// Ingestion and search settings.
        #[serde(default, flatten)]
        pub settings: crate::vector_io::service::ServiceSettings,
    }

    fn default_tenant() -> String {
        "default_tenant".into()
    }
    fn default_database() -> String {
        "default_database".into()
    }
    fn default_timeout() -> u64 {
        60
    }

    /// The spec of `remote::chromadb`.
    pub fn spec() -> llama_stack_core::provider::ProviderSpec {
        use llama_stack_core::api::Api;
        use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderSpec};
        use llama_stack_core::Error;
        ProviderSpec::new::<ChromaConfig>(
            Api::VectorIo,
            PROVIDER_TYPE,
            "Vector stores in a Chroma server (HTTP API v2)",
            FnFactory(|ctx: ProviderContext| async move {
                let config: ChromaConfig = ctx.parse_config()?;
                let url = config.url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
                    Error::config(format!(
                        "{}.url: the Chroma server URL is required (e.g. http://localhost:8000; \
                         the starter distribution reads it from CHROMADB_URL)",
                        ctx.config_path
                    ))
                })?;
                let kv = crate::vector_io::open_kv(&ctx, &config.persistence).await?;
                let index = crate::vector_io::chroma::ChromaIndex::open(
                    crate::vector_io::chroma::ChromaOptions {
                        url,
                        tenant: config.tenant,
                        database: config.database,
                        api_key: config.api_key,
                        timeout: std::time::Duration::from_secs(config.timeout_seconds.max(1)),
                    },
                )
                .await
                .map_err(|e| e.with_prefix(&ctx.config_path))?;
                crate::vector_io::instance(&ctx, std::sync::Arc::new(index), kv, config.settings)
            }),
        )
        .with_dependencies([Api::Inference])
        .with_optional_dependencies([Api::Files])
    }
}

#[cfg(feature = "vector-io")]
mod specs {
    use std::sync::Arc;

    use llama_stack_core::provider::{ProviderContext, ProviderInstance};
    use llama_stack_core::storage::KvStore;
    use llama_stack_core::Result;
    use serde::Deserialize;

    use super::index::VectorIndex;
    use super::service::{ServiceSettings, VectorStoreService};

    /// A KV store reference: a named backend and a namespace.
    #[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct KvStoreRef {
        /// A `kv_*` backend of `storage.backends`.
        pub backend: String,
        /// The namespace of this provider's records.
        pub namespace: String,
    }

    /// Opens a provider's `persistence` KV store (errors name the config path).
    pub async fn open_kv(ctx: &ProviderContext, r: &KvStoreRef) -> Result<Arc<dyn KvStore>> {
        ctx.storage
            .kv_store(&r.backend, &r.namespace)
            .await
            .map_err(|e| e.with_prefix(&format!("{}.persistence", ctx.config_path)))
    }

    /// A vector_io provider instance: `index` behind the shared vector-store service, with
    /// the inference and files routers from the provider's dependencies.
    pub fn instance(
        ctx: &ProviderContext,
        index: Arc<dyn VectorIndex>,
        kv: Arc<dyn KvStore>,
        settings: ServiceSettings,
    ) -> Result<ProviderInstance> {
        let inference = ctx.deps.inference()?;
        let files = ctx.deps.files();
        Ok(ProviderInstance::VectorIo(Arc::new(
            VectorStoreService::new(index, kv, inference, files, settings),
        )))
    }

    /// Expands a leading `~/` to the home directory.
    pub fn expand_home(path: &str) -> std::path::PathBuf {
        match path.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(rest))
                .unwrap_or_else(|| path.into()),
            None => path.into(),
        }
    }
}
