//! `remote::gemini`: chat completions and embeddings on Google's native Gemini API
//! (`{base_url}/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`; <https://ai.google.dev/api/generate-content>,
//! <https://ai.google.dev/api/embeddings>), translated to and from the OpenAI-shaped
//! Inference API.
//!
//! Llama Stack reaches Gemini through its OpenAI-compatible endpoint; this provider speaks
//! the native protocol instead, so function calls, inline images, thought summaries,
//! cached-token usage and safety stops arrive exactly as Google sends them.
//!
//! Config: Llama Stack's shared remote fields — `api_key` (sample env `GEMINI_API_KEY`, per
//! request `gemini_api_key` in `X-LlamaStack-Provider-Data`), `base_url` (default
//! `https://generativelanguage.googleapis.com`), `allowed_models`, `refresh_models`,
//! `network` — plus `max_retries` and `circuit_breaker`. Calls carry `x-goog-api-key`.
//!
//! Translation:
//! - `system`/`developer` messages → `systemInstruction`; assistant turns → role `model`
//!   with `functionCall` parts; `tool` messages → `functionResponse` parts in a user turn
//!   (the function name is found through the earlier tool call with that id; a JSON object
//!   result is sent as the response, anything else as `{"result": ...}`); consecutive turns
//!   of one role are merged.
//! - Images and files: `data:` URLs → `inlineData`; Files API URIs
//!   (`https://generativelanguage.googleapis.com/...`) and `gs://` URIs → `fileData`; any
//!   other URL is refused with `InvalidRequest` (Gemini does not fetch arbitrary URLs and
//!   this provider does not download on the caller's behalf).
//! - `tools` → one `functionDeclarations` tool with `parametersJsonSchema` (full JSON
//!   Schema, no conversion); `tool_choice` `auto`/`none`/`required`/named →
//!   `functionCallingConfig.mode` `AUTO`/`NONE`/`ANY`/`ANY` + `allowedFunctionNames`.
//! - `response_format` `json_schema` → `responseMimeType: application/json` +
//!   `responseJsonSchema`; `json_object` → `responseMimeType` only.
//! - `generationConfig`: `temperature`, `top_p`, `max_tokens`/`max_completion_tokens`
//!   (`maxOutputTokens`), `stop` (`stopSequences`), `n` (`candidateCount`), `seed`,
//!   `presence_penalty`, `frequency_penalty`; `reasoning_effort` (other than `none`) asks
//!   for thought summaries (`thinkingConfig.includeThoughts`). `extra_body`: `top_k` →
//!   `topK`, `generation_config`/`thinking_config` merged into `generationConfig`,
//!   `safety_settings`, `cached_content`, anything else sent top-level as given.
//! - Answers: text parts → content, `thought` parts → `reasoning_content`, `functionCall`
//!   parts → tool calls (Gemini's call id when it sends one, else a fresh `call_<hex>`);
//!   `STOP` → `stop` (`tool_calls` when functions were called), `MAX_TOKENS` → `length`,
//!   `SAFETY`/`RECITATION`/`BLOCKLIST`/`PROHIBITED_CONTENT`/`SPII`/`IMAGE_SAFETY` and a
//!   blocked prompt → `content_filter`. Usage: completion tokens include
//!   `thoughtsTokenCount` (also `reasoning_tokens`), `cached_tokens` =
//!   `cachedContentTokenCount`.
//! - Streams: each SSE `data:` is a whole `GenerateContentResponse`; function calls arrive
//!   whole and become one tool-call delta each; an `error` body in the stream ends it with
//!   an `Upstream` error of its `code`; a body that ends before any `finishReason` is an
//!   error. A final chunk with no choices carries the usage.
//! - Embeddings: `:batchEmbedContents` (one request per input; `dimensions` →
//!   `outputDimensionality`, `extra_body.task_type` → `taskType`); token-id inputs are
//!   refused. Gemini reports no token counts for embeddings, so usage is zero.
//! - Legacy completions: not offered (capabilities say so; the router answers `Unsupported`).
//! - Models: `GET /v1beta/models` page by page (`nextPageToken`), filtered by
//!   `allowed_models`; models whose `supportedGenerationMethods` include `generateContent`
//!   are `llm`, those with only `embedContent` are `embedding` (with the known
//!   `embedding_dimension` of Google's embedding models).
//! - Not carried: `thoughtSignature`s of function-call parts (the OpenAI tool-call shape
//!   has no place for them), so models that require them back on the next turn reject
//!   multi-turn function calling; `logprobs` are refused rather than translated.

mod translate;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionRequest, ChatCompletionStream, Embedding, EmbeddingInput,
    EmbeddingVector, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, EncodingFormat,
    Inference,
};
use llama_stack_core::api::models::{Model, ModelType};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{
    FnFactory, InferenceCaps, InferenceProvider, ProviderContext, ProviderInstance, ProviderSpec,
};
use llama_stack_core::{Error, RequestContext, Result};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::remote::config::{self, OpenAiCompatConfig};
use super::remote::native::{query_escape, translate_sse, NativeClient, MAX_MODEL_PAGES};
use super::remote::services::ServiceProfile;

/// The provider type.
pub const PROVIDER_TYPE: &str = "remote::gemini";

/// The API version in every path.
pub const API_VERSION: &str = "v1beta";

/// Chat (streamed or not), tools, structured output and embeddings; no legacy completions
/// or rerank.
const CAPS: InferenceCaps = InferenceCaps {
    chat: true,
    completion: false,
    streaming: true,
    tools: true,
    json_schema: true,
    embeddings: true,
    rerank: false,
};

/// Output sizes of Google's embedding models (their default `outputDimensionality`).
pub const EMBEDDING_DIMENSIONS: &[(&str, u32)] = &[
    ("gemini-embedding-001", 3072),
    ("gemini-embedding-exp-03-07", 3072),
    ("text-embedding-004", 768),
    ("embedding-001", 768),
];

/// The service profile: key field and env var, provider-data key, default URL.
pub(crate) static PROFILE: ServiceProfile =
    ServiceProfile::new(PROVIDER_TYPE, "Google's Gemini API (native protocol)")
        .base_url("https://generativelanguage.googleapis.com")
        .key("GEMINI_API_KEY", "gemini_api_key")
        .caps(CAPS)
        .embeddings(EMBEDDING_DIMENSIONS);

/// Config of `remote::gemini`: the shared remote fields.
pub type GeminiConfig = OpenAiCompatConfig;

/// Parses `raw` (the provider's `config`) at `path`; unknown fields are `Config` errors
/// naming `<path>.<field>`.
pub fn parse_config(raw: &Value, path: &str) -> Result<GeminiConfig> {
    config::parse(&PROFILE, raw, path, &|var| std::env::var(var).ok())
}

/// The Inference API on Google's Gemini API.
#[derive(Debug)]
pub struct GeminiProvider {
    client: NativeClient,
}

/// `models/<id>` for a bare id; ids that already name a resource (`models/..`,
/// `tunedModels/..`) as they are.
fn resource(model: &str) -> String {
    if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_string()
    } else {
        format!("models/{model}")
    }
}

impl GeminiProvider {
    /// A provider `provider_id` with a parsed `config` (`path` names it in errors).
    pub fn new(provider_id: &str, config: GeminiConfig, path: &str) -> Result<Self> {
        Ok(GeminiProvider {
            client: NativeClient::new(&PROFILE, provider_id, config, path)?,
        })
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.client.base_url
    }

    fn headers(&self, ctx: Option<&RequestContext>) -> Result<Vec<(HeaderName, HeaderValue)>> {
        let key = self.client.api_key(ctx)?;
        Ok(vec![(
            HeaderName::from_static("x-goog-api-key"),
            self.client.header_value(&key)?,
        )])
    }

    async fn generate(
        &self,
        ctx: &RequestContext,
        req: &ChatCompletionRequest,
        method: &str,
    ) -> Result<reqwest::Response> {
        self.client.check_model(&req.model)?;
        let headers = self.headers(Some(ctx))?;
        let body = translate::request(req)?;
        let path = format!("/{API_VERSION}/{}:{method}", resource(&req.model));
        self.client
            .send(reqwest::Method::POST, &path, &headers, Some(&body))
            .await
    }
}

/// Builds the provider from a factory context.
pub fn build(ctx: &ProviderContext) -> Result<GeminiProvider> {
    let config = parse_config(&ctx.config, &ctx.config_path)?;
    GeminiProvider::new(&ctx.provider_id, config, &ctx.config_path)
}

/// The provider spec.
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<GeminiConfig>(
        Api::Inference,
        PROVIDER_TYPE,
        PROFILE.description,
        FnFactory(|ctx: ProviderContext| async move {
            Ok(ProviderInstance::Inference(Arc::new(build(&ctx)?)))
        }),
    )
}

#[async_trait]
impl Inference for GeminiProvider {
    async fn chat_completion(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        let resp = self.generate(ctx, &req, "generateContent").await?;
        let value = self.client.json(resp).await?;
        translate::response(&value, &req.model).map_err(|e| self.client.malformed(&e))
    }

    async fn chat_completion_stream(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        let resp = self
            .generate(ctx, &req, "streamGenerateContent?alt=sse")
            .await?;
        let translator = translate::Events::new(&req.model, self.client.provider_id.clone());
        Ok(translate_sse(resp, &self.client.upstream, translator))
    }

    async fn embeddings(
        &self,
        ctx: &RequestContext,
        req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        self.client.check_model(&req.model)?;
        let texts: Vec<&str> = match &req.input {
            EmbeddingInput::Text(t) => vec![t.as_str()],
            EmbeddingInput::Texts(v) => v.iter().map(String::as_str).collect(),
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
                return Err(Error::invalid_param(
                    "input",
                    "token ids",
                    "remote::gemini embeds text; send strings",
                ))
            }
        };
        let headers = self.headers(Some(ctx))?;
        let model = resource(&req.model);
        let task_type = req
            .extra_body
            .get("task_type")
            .or_else(|| req.extra_body.get("taskType"));
        let requests: Vec<Value> = texts
            .iter()
            .map(|t| {
                let mut r = json!({"model": model, "content": {"parts": [{"text": t}]}});
                if let Some(d) = req.dimensions {
                    r["outputDimensionality"] = json!(d);
                }
                if let Some(task) = task_type {
                    r["taskType"] = task.clone();
                }
                r
            })
            .collect();
        let path = format!("/{API_VERSION}/{model}:batchEmbedContents");
        let resp = self
            .client
            .send(
                reqwest::Method::POST,
                &path,
                &headers,
                Some(&json!({ "requests": requests })),
            )
            .await?;
        let value = self.client.json(resp).await?;
        let embeddings = value
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                self.client
                    .malformed("the answer has no `embeddings` array")
            })?;
        if embeddings.len() != texts.len() {
            return Err(self.client.malformed(&format!(
                "{} embeddings for {} inputs",
                embeddings.len(),
                texts.len()
            )));
        }
        let mut data = Vec::with_capacity(embeddings.len());
        for (i, e) in embeddings.iter().enumerate() {
            let values: Vec<f32> = e
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| self.client.malformed("an embedding without `values`"))?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| self.client.malformed("a non-number in an embedding"))?;
            let embedding = match req.encoding_format.unwrap_or_default() {
                EncodingFormat::Float => EmbeddingVector::Float(values),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
                    EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            data.push(Embedding {
                object: "embedding".into(),
                embedding,
                index: i as u32,
            });
        }
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: req.model,
            usage: EmbeddingsUsage::default(),
        })
    }
}

#[async_trait]
impl InferenceProvider for GeminiProvider {
    fn capabilities(&self) -> InferenceCaps {
        CAPS
    }

    async fn list_models(&self) -> Result<Option<Vec<Model>>> {
        // Listing uses the configured key only; without one it is skipped silently.
        let Ok(headers) = self.headers(None) else {
            return Ok(None);
        };
        let mut models = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let path = match &token {
                Some(t) => format!(
                    "/{API_VERSION}/models?pageSize=1000&pageToken={}",
                    query_escape(t)
                ),
                None => format!("/{API_VERSION}/models?pageSize=1000"),
            };
            let resp = self
                .client
                .send(reqwest::Method::GET, &path, &headers, None)
                .await?;
            let page = self.client.json(resp).await?;
            for m in page
                .get("models")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = m.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let id = name.strip_prefix("models/").unwrap_or(name);
                if !self.client.allowed(id) {
                    continue;
                }
                let methods: Vec<&str> = m
                    .get("supportedGenerationMethods")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if methods.contains(&"generateContent") {
                    models.push(Model::new(&self.client.provider_id, id, ModelType::Llm));
                } else if methods.contains(&"embedContent") {
                    let mut model = Model::new(&self.client.provider_id, id, ModelType::Embedding);
                    if let Some((_, dim)) = EMBEDDING_DIMENSIONS.iter().find(|(m, _)| *m == id) {
                        model = model.with_metadata("embedding_dimension", *dim);
                    }
                    models.push(model);
                }
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && token.as_deref() != Some(next) => {
                    token = Some(next.to_string())
                }
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
