//! Llama Stack as an embeddable Rust library: one typed API for inference, embeddings,
//! models and providers today (vector stores, safety, agents, tools, eval and more as
//! they land), with providers chosen by a Llama Stack run config instead of code.
//!
//! Build a [`Stack`] in-process from a run config or a built-in distribution, then call
//! typed async methods. No server and no network are involved.
//!
//! ```
//! use llama_stack::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> llama_stack::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
//! let stack = Stack::builder()
//!     .distribution("starter")
//!     .data_dir(dir.path())
//!     .build()
//!     .await?;
//! let version = stack.inspect().version().await?;
//! assert_eq!(version.version, "0.7.1");
//! for model in stack.models().list().await?.data {
//!     println!("{} ({:?})", model.identifier, model.model_type);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `kv-sqlite` | yes | `kv_sqlite` storage backend (SQLite, WAL) |
//! | `kv-sled` | yes | `kv_sled` storage backend |
//! | `sql-sqlite` | yes | `sql_sqlite` storage backend |
//! | `kv-postgres` | no | `kv_postgres` storage backend (PostgreSQL, pooled, TLS) |
//! | `sql-postgres` | no | `sql_postgres` storage backend (PostgreSQL, pooled, TLS) |
//! | `kv-redis` | no | `kv_redis` storage backend (Redis, multiplexed, native TTL) |
//! | `inline-candle` | yes | `inline::candle`: chat and completions on local GGUF models with candle |
//! | `inline-sentence-transformers` | yes | `inline::sentence-transformers`: local sentence embeddings with candle |
//! | `server` | no | HTTP server speaking Llama Stack's and OpenAI's APIs ([`server`]) and the `llama-stack` binary |
//!
//! The `kv_memory` backend is always available.
#![deny(missing_docs)]

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod config;
pub mod distribution;
#[cfg(feature = "server")]
pub mod server;
mod stack;
pub mod storage;

pub use llama_stack_core as core;
pub use llama_stack_core::{Error, ErrorKind, RequestContext, Result, User};
pub use stack::{
    FilesHandle, InferenceHandle, InspectHandle, ModelsHandle, ProvidersHandle, Scope, Stack,
    StackBuilder, ToolRuntimeHandle, VectorIoHandle, MODEL_REFRESH_INTERVAL,
};

/// The types most applications need.
pub mod prelude {
    pub use crate::config::StackConfig;
    pub use crate::{Error, ErrorKind, RequestContext, Result, Stack, User};
    pub use llama_stack_core::api::files::{FilePurpose, UploadFileRequest};
    pub use llama_stack_core::api::inference::{
        ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, Message, ResponseFormat, Tool,
    };
    pub use llama_stack_core::api::models::{ModelType, RegisterModelRequest};
    pub use llama_stack_core::api::vector_io::{
        AttachFileRequest, AttributeFilter, Chunk, ChunkingStrategy, CreateVectorStoreRequest,
        SearchVectorStoreRequest,
    };
}
