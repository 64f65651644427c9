//! A scripted inference provider for testing routers and plumbing (not a real model):
//! it echoes the last user message, lists the models named in its config and counts calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack::core::api::inference::*;
use llama_stack::core::api::models::{Model, ModelType};
use llama_stack::core::api::providers::Health;
use llama_stack::core::api::Api;
use llama_stack::core::provider::*;
use llama_stack::{Error, RequestContext, Result};
use serde::Deserialize;

/// The provider type name used in test configs.
pub const ECHO: &str = "inline::echo";

/// Config of the echo provider.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    /// Models the provider lists by itself.
    #[serde(default)]
    pub models: Vec<String>,
    /// Prefix added to replies.
    #[serde(default)]
    pub prefix: String,
}

/// The echo provider.
pub struct EchoProvider {
    pub config: EchoConfig,
    pub calls: AtomicUsize,
}

pub fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role() == "user")
        .and_then(|m| m.content())
        .map(|c| c.text())
        .unwrap_or_default()
}

#[async_trait]
impl Inference for EchoProvider {
    async fn chat_completion(
        &self,
        _ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}{}", self.config.prefix, last_user_text(&req.messages));
        Ok(ChatCompletion {
            id: format!("chatcmpl-echo-{call}"),
            object: "chat.completion".into(),
            created: i64::try_from(call).unwrap(),
            model: req.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage::text(text),
                finish_reason: Some(FinishReason::Stop),
                logprobs: None,
            }],
            usage: Some(Usage::new(1, 1)),
            service_tier: None,
            system_fingerprint: None,
        })
    }

    async fn chat_completion_stream(
        &self,
        _ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}{}", self.config.prefix, last_user_text(&req.messages));
        let model = req.model.clone();
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
        let n = words.len();
        Ok(
            futures::stream::iter(words.into_iter().enumerate().map(move |(i, w)| {
                Ok(ChatCompletionChunk {
                    id: format!("chatcmpl-echo-{call}"),
                    object: "chat.completion.chunk".into(),
                    created: i64::try_from(call).unwrap(),
                    model: model.clone(),
                    choices: vec![ChunkChoice {
                        index: 0,
                        delta: ChunkDelta {
                            content: Some(w),
                            ..Default::default()
                        },
                        finish_reason: (i + 1 == n).then_some(FinishReason::Stop),
                        logprobs: None,
                    }],
                    usage: None,
                    service_tier: None,
                    system_fingerprint: None,
                })
            }))
            .boxed(),
        )
    }

    async fn embeddings(
        &self,
        _ctx: &RequestContext,
        req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        let texts = match req.input {
            EmbeddingInput::Text(t) => vec![t],
            EmbeddingInput::Texts(t) => t,
            _ => {
                return Err(Error::invalid_request(
                    "token input is not supported by echo",
                ))
            }
        };
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Embedding {
                    object: "embedding".into(),
                    embedding: EmbeddingVector::Float(vec![t.len() as f32, 1.0]),
                    index: i as u32,
                })
                .collect(),
            model: req.model,
            usage: EmbeddingsUsage::default(),
        })
    }
}

#[async_trait]
impl InferenceProvider for EchoProvider {
    fn capabilities(&self) -> InferenceCaps {
        InferenceCaps {
            chat: true,
            streaming: true,
            embeddings: true,
            ..Default::default()
        }
    }

    async fn list_models(&self) -> Result<Option<Vec<Model>>> {
        Ok(Some(
            self.config
                .models
                .iter()
                .map(|m| Model::new("echo", m, ModelType::Llm))
                .collect(),
        ))
    }

    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// The echo provider spec (provider ids in configs must be `echo` for listed models).
pub fn echo_spec() -> ProviderSpec {
    ProviderSpec::new::<EchoConfig>(
        Api::Inference,
        ECHO,
        "echoes the last user message (test provider)",
        FnFactory(|ctx: ProviderContext| async move {
            let config: EchoConfig = ctx.parse_config()?;
            Ok(ProviderInstance::Inference(Arc::new(EchoProvider {
                config,
                calls: AtomicUsize::new(0),
            })))
        }),
    )
}

/// A run config named `distro` with `providers` (YAML list items under
/// `providers.inference`), SQLite storage under `dir` for every store, then `extra`
/// (top-level YAML).
pub fn sqlite_run_config(
    dir: &std::path::Path,
    distro: &str,
    providers: &str,
    extra: &str,
) -> String {
    format!(
        r#"version: 2
distro_name: {distro}
providers:
  inference:
{providers}
storage:
  backends:
    kv_default: {{type: kv_sqlite, db_path: "{dir}/kv.db"}}
    sql_default: {{type: sql_sqlite, db_path: "{dir}/sql.db"}}
  stores:
    metadata: {{backend: kv_default, namespace: registry}}
    inference: {{backend: sql_default, table_name: inference_store}}
    conversations: {{backend: sql_default, table_name: openai_conversations}}
    prompts: {{backend: kv_default, namespace: prompts}}
    connectors: {{backend: kv_default, namespace: connectors}}
{extra}"#,
        dir = dir.display()
    )
}

/// A run config with the echo provider and SQLite storage under `dir`.
pub fn echo_config(dir: &std::path::Path, extra: &str) -> String {
    sqlite_run_config(
        dir,
        "test",
        "  - provider_id: echo\n    provider_type: inline::echo\n    config:\n      models: [listed-1, listed-2]",
        extra,
    )
}

/// Serves `app` on a fresh local port; returns `http://127.0.0.1:<port>`.
pub async fn serve_local(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The identifiers of the models `models` lists.
pub async fn model_ids(models: llama_stack::ModelsHandle) -> Vec<String> {
    models
        .list()
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|m| m.identifier)
        .collect()
}
