//! `remote::anthropic`: chat completions on Anthropic's own Messages API
//! (`POST {base_url}/v1/messages`, <https://docs.claude.com/en/api/messages>), translated to
//! and from the OpenAI-shaped Inference API.
//!
//! Llama Stack reaches Anthropic through its OpenAI-compatible endpoint; this provider
//! speaks the native protocol instead, so tool calls, images, extended thinking, streaming
//! events and cache usage arrive exactly as Anthropic sends them.
//!
//! Config: Llama Stack's shared remote fields — `api_key` (sample env `ANTHROPIC_API_KEY`,
//! per request `anthropic_api_key` in `X-LlamaStack-Provider-Data`), `base_url` (default
//! `https://api.anthropic.com`), `allowed_models`, `refresh_models`, `network` — plus
//! `max_retries`, `circuit_breaker` and `max_tokens` (default 4096: Anthropic requires a
//! limit, this one is sent when a request sets neither `max_tokens` nor
//! `max_completion_tokens`). Calls carry `x-api-key` and `anthropic-version: 2023-06-01`.
//!
//! Translation:
//! - `system`/`developer` messages → the top-level `system` text (joined by blank lines,
//!   wherever they stood); `tool` messages → `tool_result` blocks in a user turn;
//!   assistant `tool_calls` → `tool_use` blocks; consecutive turns of one role are merged.
//! - Images: `data:` URLs → `base64` sources, `http(s)` URLs → `url` sources; PDF
//!   `file_data` (`data:application/pdf;base64,..`) → `document` blocks; file ids are refused.
//! - `tools` → `tools[].input_schema`; `tool_choice` `auto`/`none`/`required`/named →
//!   `auto`/`none`/`any`/`tool`; `parallel_tool_calls: false` → `disable_parallel_tool_use`.
//! - `response_format` `json_schema` (or `json_object`) → one forced tool whose input schema
//!   is the schema; its input comes back as the message text (so it cannot be combined
//!   with `tools`).
//! - `reasoning_effort` → extended thinking (`thinking.budget_tokens`: `minimal`/`low`
//!   1024, `medium` 4096, `high` 16384, `xhigh` 32768, capped below `max_tokens`; `none`
//!   → off); `extra_body.thinking` overrides it.
//! - `temperature`, `top_p`, `stop` (→ `stop_sequences`), `user` (→ `metadata.user_id`);
//!   every `extra_body` field (`top_k`, `thinking`, `metadata`, `service_tier`, ...) is sent
//!   as given. `seed`, `frequency_penalty`, `presence_penalty` and `logit_bias` have no
//!   Anthropic equivalent and are not sent; `n > 1` and `logprobs` are refused.
//! - Answers: `text` → content, `thinking` → `reasoning_content`, `tool_use` → tool calls;
//!   `end_turn`/`stop_sequence`/`pause_turn` → `stop`, `max_tokens`/
//!   `model_context_window_exceeded` → `length`, `tool_use` → `tool_calls`, `refusal` →
//!   `content_filter`. Usage: `prompt_tokens` = input + cache read + cache creation tokens,
//!   `cached_tokens` = `cache_read_input_tokens`.
//! - Streams (<https://docs.claude.com/en/docs/build-with-claude/streaming>): text, thinking
//!   and `input_json_delta` fragments become content, reasoning and tool-call argument
//!   deltas (tool calls indexed in order of appearance); `ping` and unknown events are
//!   skipped; an `error` event ends the stream with an `Upstream` error carrying the status
//!   of its error type; a body that ends before `message_stop` is an error. A final chunk
//!   with no choices carries the usage.
//! - Legacy completions and embeddings: not offered by Anthropic's Messages API
//!   (capabilities say so; the router answers `Unsupported`).
//! - Models: `GET /v1/models` page by page (`after_id` = `last_id` while `has_more`),
//!   filtered by `allowed_models`, all of type `llm`.
//! - Not carried: thinking blocks of earlier assistant turns (the OpenAI message shape has
//!   no place for their signatures), so a tool-use loop with extended thinking sends the
//!   earlier turns without their thinking.

mod translate;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionRequest, ChatCompletionStream, Inference,
};
use llama_stack_core::api::models::{Model, ModelType};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{
    FnFactory, InferenceCaps, InferenceProvider, ProviderContext, ProviderInstance, ProviderSpec,
};
use llama_stack_core::{RequestContext, Result};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::remote::config::{self, OpenAiCompatConfig};
use super::remote::native::{query_escape, translate_sse, NativeClient, MAX_MODEL_PAGES};
use super::remote::services::ServiceProfile;

/// The provider type.
pub const PROVIDER_TYPE: &str = "remote::anthropic";

/// The `anthropic-version` header every call carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` sent when neither the request nor the config sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Chat (streamed or not), tools and structured output; no legacy completions, embeddings
/// or rerank.
const CAPS: InferenceCaps = InferenceCaps {
    chat: true,
    completion: false,
    streaming: true,
    tools: true,
    json_schema: true,
    embeddings: false,
    rerank: false,
};

/// The service profile: key field and env var, provider-data key, default URL, config fields.
pub(crate) static PROFILE: ServiceProfile =
    ServiceProfile::new(PROVIDER_TYPE, "Anthropic's Messages API (native protocol)")
        .base_url("https://api.anthropic.com")
        .key("ANTHROPIC_API_KEY", "anthropic_api_key")
        .extra(&["max_tokens"])
        .defaults(&[("max_tokens", "4096")])
        .caps(CAPS);

/// Config of `remote::anthropic`: the shared remote fields plus `max_tokens`.
pub type AnthropicConfig = OpenAiCompatConfig;

/// Parses `raw` (the provider's `config`) at `path`; unknown fields are `Config` errors
/// naming `<path>.<field>`.
pub fn parse_config(raw: &Value, path: &str) -> Result<AnthropicConfig> {
    config::parse(&PROFILE, raw, path, &|var| std::env::var(var).ok())
}

/// The Inference API on Anthropic's Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    client: NativeClient,
}

impl AnthropicProvider {
    /// A provider `provider_id` with a parsed `config` (`path` names it in errors).
    pub fn new(provider_id: &str, config: AnthropicConfig, path: &str) -> Result<Self> {
        Ok(AnthropicProvider {
            client: NativeClient::new(&PROFILE, provider_id, config, path)?,
        })
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.client.base_url
    }

    fn headers(&self, ctx: Option<&RequestContext>) -> Result<Vec<(HeaderName, HeaderValue)>> {
        let key = self.client.api_key(ctx)?;
        Ok(vec![
            (
                HeaderName::from_static("x-api-key"),
                self.client.header_value(&key)?,
            ),
            (
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ),
        ])
    }

    fn default_max_tokens(&self) -> u32 {
        self.client.config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }

    async fn messages(
        &self,
        ctx: &RequestContext,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<(reqwest::Response, translate::Plan)> {
        self.client.check_model(&req.model)?;
        let headers = self.headers(Some(ctx))?;
        let (body, plan) = translate::request(req, self.default_max_tokens(), stream)?;
        let resp = self
            .client
            .send(reqwest::Method::POST, "/v1/messages", &headers, Some(&body))
            .await?;
        Ok((resp, plan))
    }
}

/// Builds the provider from a factory context.
pub fn build(ctx: &ProviderContext) -> Result<AnthropicProvider> {
    let config = parse_config(&ctx.config, &ctx.config_path)?;
    AnthropicProvider::new(&ctx.provider_id, config, &ctx.config_path)
}

/// The provider spec.
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<AnthropicConfig>(
        Api::Inference,
        PROVIDER_TYPE,
        PROFILE.description,
        FnFactory(|ctx: ProviderContext| async move {
            Ok(ProviderInstance::Inference(Arc::new(build(&ctx)?)))
        }),
    )
}

#[async_trait]
impl Inference for AnthropicProvider {
    async fn chat_completion(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        let (resp, plan) = self.messages(ctx, &req, false).await?;
        let value = self.client.json(resp).await?;
        translate::response(&value, &req.model, &plan).map_err(|e| self.client.malformed(&e))
    }

    async fn chat_completion_stream(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        let (resp, plan) = self.messages(ctx, &req, true).await?;
        let translator = translate::Events::new(&req.model, plan, self.client.provider_id.clone());
        Ok(translate_sse(resp, &self.client.upstream, translator))
    }
}

#[async_trait]
impl InferenceProvider for AnthropicProvider {
    fn capabilities(&self) -> InferenceCaps {
        CAPS
    }

    async fn list_models(&self) -> Result<Option<Vec<Model>>> {
        // Listing uses the configured key only; without one it is skipped silently.
        let Ok(headers) = self.headers(None) else {
            return Ok(None);
        };
        let mut models = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let path = match &after {
                Some(id) => format!("/v1/models?limit=1000&after_id={}", query_escape(id)),
                None => "/v1/models?limit=1000".to_string(),
            };
            let resp = self
                .client
                .send(reqwest::Method::GET, &path, &headers, None)
                .await?;
            let page = self.client.json(resp).await?;
            let data = page
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| self.client.malformed("the model list has no `data` array"))?;
            for id in data.iter().filter_map(|m| m.get("id")?.as_str()) {
                if self.client.allowed(id) {
                    models.push(Model::new(&self.client.provider_id, id, ModelType::Llm));
                }
            }
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            let last = page
                .get("last_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            match last {
                Some(last) if more && after.as_deref() != Some(last.as_str()) => after = Some(last),
                _ => return Ok(Some(models)),
            }
        }
        Err(self.client.malformed(&format!(
            "the model list did not end after {MAX_MODEL_PAGES} pages"
        )))
    }

    fn refresh_models(&self) -> bool {
        self.client.config.refresh_models
    }

    fn refresh_interval(&self) -> std::time::Duration {
        self.client.config.refresh_interval()
    }

    async fn register_model(&self, model: &Model) -> Result<Model> {
        self.client.check_model(&model.provider_resource_id)?;
        Ok(model.clone())
    }

    async fn health(&self) -> Health {
        match self.list_models().await {
            Ok(_) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}

/// The HTTP status Anthropic uses for an error `type`
/// (<https://docs.claude.com/en/api/errors>); unknown types → 502.
pub(crate) fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}
