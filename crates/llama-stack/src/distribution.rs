//! Built-in distributions: named run configs that build without any file.
//!
//! `starter` runs fully offline: SQLite storage under
//! `${SQLITE_STORE_DIR:=~/.llama/distributions/starter}` and the inline providers
//! compiled into this build.

/// The names of the built-in distributions.
pub const DISTRIBUTIONS: &[&str] = &["starter"];

/// The run config of the `starter` distribution, in Llama Stack's YAML shape.
pub const STARTER_YAML: &str = r#"version: 2
distro_name: starter
apis:
- inference
providers:
  inference: []
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
  models: []
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
