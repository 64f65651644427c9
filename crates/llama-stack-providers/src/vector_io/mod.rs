//! Vector IO providers: one shared vector-store service (store and file records, document
//! parsing, chunking, embedding, hybrid fusion) over a [`index::VectorIndex`] backend per
//! vector database.
//!
//! | provider type | backend | config |
//! |---|---|---|
//! | `inline::sqlite-vec` (alias `inline::sqlite_vec`) | [`sqlite_vec::SqliteVecIndex`]: SQLite + sqlite-vec + FTS5 | `db_path`, `persistence` |
//! | `inline::faiss` | [`faiss::HnswIndex`]: in-process HNSW (usearch), chunks in KV | `persistence`, `index_dir`?, `hnsw`? |

#[cfg(feature = "inline-faiss")]
pub mod faiss;
pub mod index;
#[cfg(feature = "vector-io")]
pub mod ingest;
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
