//! Helpers for HTTP server tests: start a stack's server on 127.0.0.1:0 in-process, stop
//! it, and a scripted streaming provider (slow streams, mid-stream errors) for plumbing
//! checks. Not evidence that any real model works.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack::core::api::inference::*;
use llama_stack::core::api::models::{Model, ModelType};
use llama_stack::core::api::providers::Health;
use llama_stack::core::api::Api;
use llama_stack::core::provider::*;
use llama_stack::server::{Server, ServerOptions};
use llama_stack::{Error, RequestContext, Result, Stack};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<()>>,
}

impl Running {
    /// Begins a graceful shutdown.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for the server to return.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
    }
}

/// Starts `stack`'s server on 127.0.0.1:0.
pub async fn start(stack: &Stack, options: ServerOptions) -> Running {
    let server = Server::bind(stack, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        base: format!("http://{addr}"),
        stop: Some(tx),
        task,
    }
}

/// Provider type of the scripted provider.
pub const SCRIPTED: &str = "inline::scripted";

/// Config of the scripted provider.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptedConfig {
    /// Models it lists.
    #[serde(default)]
    pub models: Vec<String>,
}

/// Replies by script: a user message `slow:N` streams N chunks 20 ms apart; `fail`
/// streams one chunk then fails with a 400-kind error; `boom` fails with an internal
/// error; anything else is echoed.
pub struct ScriptedProvider {
    config: ScriptedConfig,
}

/// A fresh completion id (stored completions need distinct ids).
fn next_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("chatcmpl-scripted-{n}")
}

fn chunk(id: &str, model: &str, text: &str, last: bool) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".into(),
        created: 0,
        model: model.to_owned(),
        choices: vec![ChunkChoice {
            index: 0,
            delta: ChunkDelta {
                content: Some(text.to_owned()),
                ..Default::default()
            },
            finish_reason: last.then_some(FinishReason::Stop),
            logprobs: None,
        }],
        usage: None,
        service_tier: None,
        system_fingerprint: None,
    }
}

fn prompt_text(prompt: &CompletionPrompt) -> String {
    match prompt {
        CompletionPrompt::Text(t) => t.clone(),
        CompletionPrompt::Texts(t) => t.join(""),
        _ => String::new(),
    }
}

fn completion_of(model: &str, text: &str, last: bool) -> Completion {
    Completion {
        id: "cmpl-scripted".into(),
        object: "text_completion".into(),
        created: 0,
        model: model.to_owned(),
        choices: vec![CompletionChoice {
            text: text.to_owned(),
            index: 0,
            finish_reason: last.then_some(FinishReason::Stop),
            logprobs: None,
        }],
        usage: None,
        system_fingerprint: None,
    }
}

fn last_user(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role() == "user")
        .and_then(|m| m.content())
        .map(|c| c.text())
        .unwrap_or_default()
}

#[async_trait]
impl Inference for ScriptedProvider {
    async fn chat_completion(
        &self,
        _ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        let text = last_user(&req.messages);
        if text == "boom" {
            return Err(Error::internal(
                "the scripted provider exploded at /secret/path",
            ));
        }
        Ok(ChatCompletion {
            id: next_id(),
            object: "chat.completion".into(),
            created: 0,
            model: req.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage::text(text),
                finish_reason: Some(FinishReason::Stop),
                logprobs: None,
            }],
            usage: Some(Usage::new(3, 1)),
            service_tier: None,
            system_fingerprint: None,
        })
    }

    async fn chat_completion_stream(
        &self,
        _ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        let text = last_user(&req.messages);
        let model = req.model.clone();
        let id = next_id();
        if let Some(n) = text
            .strip_prefix("slow:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            return Ok(futures::stream::iter(0..n)
                .then(move |i| {
                    let model = model.clone();
                    let id = id.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(chunk(&id, &model, &format!("{i} "), i + 1 == n))
                    }
                })
                .boxed());
        }
        if text == "fail" {
            let first = chunk(&id, &model, "partial ", false);
            return Ok(futures::stream::iter(vec![
                Ok(first),
                Err(Error::invalid_request(
                    "the scripted provider failed midway",
                )),
                Ok(chunk(&id, &model, "never sent", true)),
            ])
            .boxed());
        }
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let n = words.len();
        Ok(futures::stream::iter(
            words
                .into_iter()
                .enumerate()
                .map(move |(i, w)| Ok(chunk(&id, &model, &w, i + 1 == n))),
        )
        .boxed())
    }

    async fn completion(
        &self,
        _ctx: &RequestContext,
        req: CompletionRequest,
    ) -> Result<Completion> {
        Ok(completion_of(&req.model, &prompt_text(&req.prompt), true))
    }

    async fn completion_stream(
        &self,
        _ctx: &RequestContext,
        req: CompletionRequest,
    ) -> Result<CompletionStream> {
        let model = req.model.clone();
        let text = prompt_text(&req.prompt);
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let n = words.len();
        Ok(futures::stream::iter(
            words
                .into_iter()
                .enumerate()
                .map(move |(i, w)| Ok(completion_of(&model, &w, i + 1 == n))),
        )
        .boxed())
    }

    async fn embeddings(
        &self,
        _ctx: &RequestContext,
        req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        let texts = match req.input {
            EmbeddingInput::Text(t) => vec![t],
            EmbeddingInput::Texts(t) => t,
            _ => return Err(Error::invalid_request("token input is not supported")),
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
            usage: EmbeddingsUsage {
                prompt_tokens: texts.len() as u32,
                total_tokens: texts.len() as u32,
            },
        })
    }
}

#[async_trait]
impl InferenceProvider for ScriptedProvider {
    fn capabilities(&self) -> InferenceCaps {
        InferenceCaps {
            chat: true,
            completion: true,
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
                .map(|m| Model::new("scripted", m, ModelType::Llm))
                .collect(),
        ))
    }

    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// The scripted provider's spec.
pub fn scripted_spec() -> ProviderSpec {
    ProviderSpec::new::<ScriptedConfig>(
        Api::Inference,
        SCRIPTED,
        "scripted replies for server plumbing tests",
        FnFactory(|ctx: ProviderContext| async move {
            let config: ScriptedConfig = ctx.parse_config()?;
            Ok(ProviderInstance::Inference(Arc::new(ScriptedProvider {
                config,
            })))
        }),
    )
}

/// A run config with the scripted provider (models `scripted/chat-1`, `scripted/chat-2`,
/// and the embedding model `scripted/embed`) and SQLite storage under `dir`; `server`
/// is appended under `server:` when not empty.
pub fn scripted_config(dir: &std::path::Path, server: &str) -> String {
    let server = if server.is_empty() {
        String::new()
    } else {
        format!("server:\n{server}")
    };
    format!(
        r#"version: 2
distro_name: http-test
providers:
  inference:
  - provider_id: scripted
    provider_type: inline::scripted
    config:
      models: [chat-1, chat-2]
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
registered_resources:
  models:
  - model_id: embed
    provider_id: scripted
    model_type: embedding
    metadata: {{embedding_dimension: 2}}
{server}"#,
        dir = dir.display()
    )
}

/// Builds a stack over [`scripted_config`].
pub async fn scripted_stack(dir: &std::path::Path, server: &str) -> Stack {
    Stack::builder()
        .config_yaml(scripted_config(dir, server))
        .with_provider(scripted_spec())
        .build()
        .await
        .unwrap()
}
