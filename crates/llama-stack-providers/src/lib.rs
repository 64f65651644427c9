//! Providers of llama-stack-rs, each behind its own cargo feature.
//!
//! [`builtin_providers`] lists the provider specs compiled into this build; the facade
//! registers them before resolving the run config. Applications add their own with
//! `StackBuilder::with_provider`.
//!
//! | feature | provider type | what |
//! |---|---|---|
//! | `inline-candle` | `inline::candle` (alias `inline::meta-reference`) | chat and completions on local GGUF models |
//! | `inline-sentence-transformers` | `inline::sentence-transformers` | local sentence embeddings |
//! | `remote-openai-compat` | `remote::openai`, `remote::vllm`, `remote::ollama`, `remote::llama-cpp-server`, `remote::tgi`, `remote::fireworks`, `remote::together`, `remote::groq`, `remote::sambanova`, `remote::cerebras`, `remote::nvidia`, `remote::databricks`, `remote::runpod`, `remote::llama-openai-compat`, `remote::azure`, `remote::watsonx`, `remote::passthrough` | OpenAI-compatible remote services |
//! | `remote-native` | `remote::anthropic`, `remote::gemini` | Anthropic's Messages API and Google's Gemini API in their own protocols |
//! | `inline-localfs` | `inline::localfs` | files on local disk, metadata in a SQL store |
//! | `remote-s3` | `remote::s3` | files in an S3 or S3-compatible bucket, metadata in a SQL store |
//! | `inline-sqlite-vec` | `inline::sqlite-vec` | vector stores in SQLite (sqlite-vec + FTS5) |
//! | `inline-faiss` | `inline::faiss` | vector stores in an in-process HNSW index |
//! | `remote-pgvector` | `remote::pgvector` | vector stores in PostgreSQL with pgvector |
//! | `remote-chromadb` | `remote::chromadb` | vector stores in a Chroma server |
//! | `inline-file-search` | `inline::file-search` (alias `inline::rag-runtime`) | the RAG tool (`builtin::file_search`, formerly `builtin::rag`) |
#![deny(missing_docs)]

pub mod files;
#[cfg(any(feature = "inline-candle", feature = "inline-sentence-transformers"))]
mod hub;
pub mod inference;
pub mod tool_runtime;
pub mod vector_io;

use llama_stack_core::provider::ProviderSpec;

/// Every provider spec compiled into this build (gated by cargo features).
#[allow(clippy::vec_init_then_push, unused_mut)]
pub fn builtin_providers() -> Vec<ProviderSpec> {
    let mut specs = Vec::new();
    #[cfg(feature = "inline-candle")]
    specs.push(inference::candle::spec());
    #[cfg(feature = "inline-sentence-transformers")]
    specs.push(inference::sentence_transformers::spec());
    #[cfg(feature = "remote-openai-compat")]
    specs.extend(inference::remote::specs());
    #[cfg(feature = "remote-native")]
    specs.extend([inference::anthropic::spec(), inference::gemini::spec()]);
    #[cfg(feature = "inline-localfs")]
    specs.push(files::localfs::spec());
    #[cfg(feature = "remote-s3")]
    specs.push(files::s3::spec());
    #[cfg(feature = "inline-sqlite-vec")]
    specs.push(vector_io::sqlite_vec_provider::spec());
    #[cfg(feature = "inline-faiss")]
    specs.push(vector_io::faiss_provider::spec());
    #[cfg(feature = "remote-pgvector")]
    specs.push(vector_io::pgvector_provider::spec());
    #[cfg(feature = "remote-chromadb")]
    specs.push(vector_io::chroma_provider::spec());
    #[cfg(feature = "inline-file-search")]
    specs.push(tool_runtime::file_search::spec());
    specs
}
