//! Vector IO providers: one shared vector-store service (store and file records, document
//! parsing, chunking, embedding, hybrid fusion) over a [`index::VectorIndex`] backend per
//! vector database.
//!
//! | provider type | backend | config |
//! |---|---|---|
//! | `inline::sqlite-vec` (alias `inline::sqlite_vec`) | [`sqlite_vec::SqliteVecIndex`]: SQLite + sqlite-vec + FTS5 | `db_path`, `persistence` |
//! | `inline::faiss` | [`faiss::HnswIndex`]: in-process HNSW (usearch), chunks in KV | `persistence`, `index_dir`?, `hnsw`? |

pub mod index;
#[cfg(feature = "vector-io")]
pub mod ingest;
#[cfg(feature = "vector-io")]
pub mod service;
#[cfg(feature = "inline-sqlite-vec")]
pub mod sqlite_vec;
#[cfg(feature = "inline-faiss")]
pub mod faiss;

#[cfg(feature = "vector-io")]
pub use specs::*;

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
        Ok(ProviderInstance::VectorIo(Arc::new(VectorStoreService::new(
            index, kv, inference, files, settings,
        ))))
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
