//! `inline::candle`: chat completions and completions on local llama-family GGUF models
//! (Q4_0, Q4_1, Q5_x, Q8_0 and K-quants) with candle, in-process and offline.
//!
//! - Models are found by Hugging Face repo id + file (through the hub cache, `HF_HUB_CACHE`,
//!   `HF_HUB_OFFLINE=1`) or by local path, listed in [`CandleConfig::models`].
//! - Registering a model only checks that the provider knows it; the weights load lazily on
//!   the first request (then stay loaded) so a stack builds fast and offline.
//! - Each loaded model has one worker thread; requests to the same model are queued and run
//!   one at a time in arrival order (the KV cache of the previous request is reused for the
//!   longest common prompt prefix, so a conversation's next turn only processes its new
//!   tokens); different models run in parallel. A dropped stream or a cancelled request
//!   stops generation at the next token.
//! - `top_k`, `min_p` and `repetition_penalty` are read from `extra_body`.

mod generate;
mod gguf;
mod json;
mod matvec;
mod model;
mod sampler;
mod template;
mod tokenizer;
mod tools;

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::api::inference::*;
use llama_stack_core::api::models::{Model, ModelType};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{
    FnFactory, InferenceCaps, InferenceProvider, ProviderContext, ProviderInstance, ProviderSpec,
};
use llama_stack_core::{Error, ErrorKind, RequestContext, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, OnceCell};

use crate::hub::{self, FileSource};
use generate::{Engine, Event, Job, TokenConstraint};
use sampler::SamplingParams;
use template::ChatTemplate;
use tokenizer::ModelTokenizer;

/// The provider type name.
pub const PROVIDER_TYPE: &str = "inline::candle";
/// Llama Stack's name for local inference, accepted as an alias.
pub const ALIAS: &str = "inline::meta-reference";

/// Config of `inline::candle`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CandleConfig {
    /// The models this provider serves.
    #[serde(default)]
    pub models: Vec<CandleModelConfig>,
    /// Hugging Face hub cache directory (default: `HF_HUB_CACHE`, then `$HF_HOME/hub`, then `~/.cache/huggingface/hub`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Never download; only use cached files (default: `HF_HUB_OFFLINE` is `1`/`true`).
    #[serde(default)]
    pub offline: Option<bool>,
    /// Requantize Q5_0/Q5_1 weights (and Q4_1 ones whose rows are not a multiple of 64 long) to Q8_0 at load: about 1.7× faster on x86, 1.7× the weight memory (default true). Q4_0/Q4_1 matrices run one-token steps on a 4-bit kernel of this crate (AVX-512 VNNI or AVX2).
    #[serde(default = "default_true")]
    pub requantize: bool,
    /// Requests waiting per model before new ones are refused with `Unavailable` (default 64).
    #[serde(default = "default_queue")]
    pub max_queued_requests: usize,
    /// How models that do not set their own `prefill_weights` process prompts (default `f16`).
    #[serde(default)]
    pub prefill_weights: PrefillWeights,
}

/// How a model multiplies a batch of new tokens (a prompt, or the new part of a conversation
/// turn) by its weights. Generating one token at a time always uses the quantized weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrefillWeights {
    /// Also keep an F16 copy of every layer matrix and multiply batches of at least 16 tokens
    /// with a dense GEMM: prompts several times faster than `quantized`, at 2 bytes per layer
    /// weight more memory (about 210 MB for a 135M-parameter model).
    #[default]
    F16,
    /// Like `f16` with an F32 copy: 4 bytes per layer weight (about 420 MB for 135M).
    F32,
    /// Only the quantized weights (row-by-row quantized dot products): least memory, slowest
    /// prompts.
    Quantized,
}

fn default_true() -> bool {
    true
}

fn default_queue() -> usize {
    64
}

/// One model of [`CandleConfig`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CandleModelConfig {
    /// The provider's id for the model (`provider_model_id`); default: `repo`, else `path`.
    #[serde(default)]
    pub model_id: Option<String>,
    /// Hugging Face repo id, `owner/name`.
    #[serde(default)]
    pub repo: Option<String>,
    /// The GGUF file in `repo`.
    #[serde(default)]
    pub file: Option<String>,
    /// Branch, tag or commit of `repo` (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// A local GGUF file instead of `repo` + `file`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A local `tokenizer.json` (default: the repo's `tokenizer.json` if it has one, else the GGUF's own tokenizer).
    #[serde(default)]
    pub tokenizer_path: Option<PathBuf>,
    /// Context length to use (default and maximum: the model's).
    #[serde(default)]
    pub context_length: Option<usize>,
    /// A Jinja chat template replacing the GGUF's `tokenizer.chat_template`.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// How this model processes prompts (default: the provider's `prefill_weights`).
    #[serde(default)]
    pub prefill_weights: Option<PrefillWeights>,
}

impl CandleModelConfig {
    fn id(&self) -> Option<String> {
        self.model_id
            .clone()
            .or_else(|| self.repo.clone())
            .or_else(|| self.path.as_ref().map(|p| p.display().to_string()))
    }

    fn source(&self) -> Result<FileSource> {
        match (&self.path, &self.repo, &self.file) {
            (Some(p), _, _) => Ok(FileSource::Path(p.clone())),
            (None, Some(repo), Some(file)) => Ok(FileSource::Hub {
                repo: repo.clone(),
                file: file.clone(),
                revision: self.revision.clone(),
            }),
            (None, Some(repo), None) => Err(Error::invalid_request(format!(
                "model '{repo}' of inline::candle needs 'file' (the GGUF file in the repo)"
            ))),
            (None, None, _) => Err(Error::invalid_request(
                "a model of inline::candle needs 'path' or 'repo' + 'file'",
            )),
        }
    }
}

/// A model ready to serve.
struct Loaded {
    engine: Engine,
    tokenizer: Arc<ModelTokenizer>,
    template: Option<ChatTemplate>,
    context_length: usize,
}

/// The `inline::candle` provider.
pub struct CandleProvider {
    config: CandleConfig,
    /// Model specs added at registration (from metadata `file`/`path`).
    extra: Mutex<HashMap<String, CandleModelConfig>>,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<Loaded>>>>>,
}

fn lock_err<T>(_: T) -> Error {
    Error::internal("a lock of inline::candle was poisoned")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn completion_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{:x}{n:x}", t & 0xffff_ffff_ffff)
}

impl CandleProvider {
    /// A provider with `config`.
    pub fn new(config: CandleConfig) -> Self {
        CandleProvider {
            config,
            extra: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn spec_for(&self, model_id: &str) -> Result<CandleModelConfig> {
        if let Some(m) = self
            .config
            .models
            .iter()
            .find(|m| m.id().as_deref() == Some(model_id))
        {
            return Ok(m.clone());
        }
        if let Some(m) = self.extra.lock().map_err(lock_err)?.get(model_id) {
            return Ok(m.clone());
        }
        let known: Vec<String> = self.config.models.iter().filter_map(|m| m.id()).collect();
        Err(Error::not_found("Model", model_id).with_context(
            "hint",
            format!(
                "inline::candle serves [{}]; add the model to its config `models`, or register it with metadata `file` (GGUF file of the repo) or `path`",
                known.join(", ")
            ),
        ))
    }

    fn offline(&self) -> bool {
        self.config.offline.unwrap_or_else(hub::offline_from_env)
    }

    async fn load(&self, model_id: &str) -> Result<Arc<Loaded>> {
        let spec = self.spec_for(model_id)?;
        let cell = {
            let mut map = self.loaded.lock().map_err(lock_err)?;
            map.entry(model_id.to_string()).or_default().clone()
        };
        let loaded = cell
            .get_or_try_init(|| self.load_uncached(model_id, spec))
            .await?;
        Ok(loaded.clone())
    }

    async fn load_uncached(&self, model_id: &str, spec: CandleModelConfig) -> Result<Arc<Loaded>> {
        let source = spec.source()?;
        let offline = self.offline();
        let cache_dir = self.config.cache_dir.clone();
        let gguf_path = hub::resolve(&source, cache_dir.as_deref(), offline).await?;
        let tokenizer_path = match (&spec.tokenizer_path, &source) {
            (Some(p), _) => Some(p.clone()),
            (None, FileSource::Hub { repo, revision, .. }) => {
                let tj = FileSource::Hub {
                    repo: repo.clone(),
                    file: "tokenizer.json".into(),
                    revision: revision.clone(),
                };
                match hub::resolve(&tj, cache_dir.as_deref(), offline).await {
                    Ok(p) => Some(p),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                }
            }
            (None, FileSource::Path(p)) => {
                let beside = p.with_file_name("tokenizer.json");
                beside.is_file().then_some(beside)
            }
        };
        let requantize = self.config.requantize;
        let prefill = spec.prefill_weights.unwrap_or(self.config.prefill_weights);
        let queue = self.config.max_queued_requests;
        let name = model_id.to_string();
        tokio::task::spawn_blocking(move || -> Result<Arc<Loaded>> {
            let (info, mut reader) = gguf::GgufInfo::read(&gguf_path)?;
            let tokenizer = match &tokenizer_path {
                Some(p) => ModelTokenizer::from_file(p, &info)?,
                None => ModelTokenizer::from_gguf(&info)?,
            };
            let template_src = spec
                .chat_template
                .clone()
                .or_else(|| info.string("tokenizer.chat_template").map(str::to_string));
            let template = template_src.as_deref().map(ChatTemplate::new).transpose()?;
            let model_ctx = info.hparams.context_length;
            let context_length = spec.context_length.unwrap_or(model_ctx).min(model_ctx).max(1);
            let model = model::Llama::load(
                &info,
                &mut reader,
                model::LoadOptions {
                    requantize,
                    context_length,
                    prefill,
                    native_q4: true,
                },
            )
            .map_err(|e| {
                Error::unavailable(format!(
                    "cannot load '{}': {e}",
                    gguf_path.display()
                ))
            })?;
            let tokenizer = Arc::new(tokenizer);
            let engine = Engine::spawn(&name, Box::new(model), tokenizer.clone(), queue)
                .map_err(|e| Error::internal(format!("cannot start the model worker: {e}")))?;
            tracing::info!(model = %name, path = %gguf_path.display(), context_length, "loaded GGUF model");
            Ok(Arc::new(Loaded {
                engine,
                tokenizer,
                template,
                context_length,
            }))
        })
        .await
        .map_err(|e| Error::internal(format!("model loading task failed: {e}")))?
    }
}

/// Everything a request asks of the generation loop, checked.
struct Plan {
    prompt: Vec<u32>,
    max_tokens: usize,
    params: SamplingParams,
    stop: Vec<String>,
    logprobs: Option<usize>,
    constraint: Option<Box<dyn TokenConstraint>>,
}

fn extra_f32(extra: &Map<String, Value>, key: &str) -> Result<Option<f32>> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| Error::invalid_param(key, v, "Must be a number")),
    }
}

/// Reads sampling settings shared by chat and completions.
#[allow(clippy::too_many_arguments)]
fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    logit_bias: Option<&Map<String, Value>>,
    extra: &Map<String, Value>,
    vocab: usize,
) -> Result<SamplingParams> {
    let mut p = SamplingParams {
        temperature: temperature.unwrap_or(1.0),
        top_p: top_p.unwrap_or(1.0),
        frequency_penalty: frequency_penalty.unwrap_or(0.0),
        presence_penalty: presence_penalty.unwrap_or(0.0),
        ..Default::default()
    };
    for (name, v, lo, hi) in [
        ("temperature", p.temperature, 0.0, 2.0),
        ("top_p", p.top_p, 0.0, 1.0),
        ("frequency_penalty", p.frequency_penalty, -2.0, 2.0),
        ("presence_penalty", p.presence_penalty, -2.0, 2.0),
    ] {
        if !v.is_finite() || v < lo || v > hi {
            return Err(Error::invalid_param(
                name,
                v,
                &format!("Must be between {lo} and {hi}"),
            ));
        }
    }
    if p.top_p == 0.0 {
        p.top_k = 1;
    }
    match extra.get("top_k") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let k = v.as_u64().ok_or_else(|| {
                Error::invalid_param("top_k", v, "Must be a non-negative integer")
            })?;
            p.top_k = usize::try_from(k).unwrap_or(usize::MAX);
        }
    }
    if let Some(m) = extra_f32(extra, "min_p")? {
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::invalid_param("min_p", m, "Must be between 0 and 1"));
        }
        p.min_p = m;
    }
    if let Some(r) = extra_f32(extra, "repetition_penalty")? {
        if !(r > 0.0 && r.is_finite()) {
            return Err(Error::invalid_param(
                "repetition_penalty",
                r,
                "Must be a positive number",
            ));
        }
        p.repetition_penalty = r;
    }
    for (k, v) in logit_bias.into_iter().flatten() {
        let id: u32 = k
            .parse()
            .ok()
            .filter(|&id: &u32| (id as usize) < vocab)
            .ok_or_else(|| {
                Error::invalid_param(
                    "logit_bias",
                    k,
                    &format!("Keys must be token ids below {vocab}"),
                )
            })?;
        let b = v
            .as_f64()
            .filter(|b| (-100.0..=100.0).contains(b))
            .ok_or_else(|| {
                Error::invalid_param("logit_bias", v, "Values must be between -100 and 100")
            })?;
        p.logit_bias.push((id, b as f32));
    }
    p.seed = match seed {
        Some(s) => s as u64,
        None => {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed);
            t ^ (completion_id("s").len() as u64).rotate_left(17)
        }
    };
    Ok(p)
}

fn stop_list(stop: Option<&StopSequences>) -> Result<Vec<String>> {
    let v = stop.map(StopSequences::to_vec).unwrap_or_default();
    if v.len() > 16 {
        return Err(Error::invalid_param(
            "stop",
            format!("{} items", v.len()),
            "At most 16 stop sequences",
        ));
    }
    Ok(v.into_iter().filter(|s| !s.is_empty()).collect())
}

fn budget(
    loaded: &Loaded,
    prompt_len: usize,
    requested: Option<u32>,
    field: &str,
) -> Result<usize> {
    let ctx = loaded.context_length;
    if prompt_len >= ctx {
        return Err(Error::invalid_request(format!(
            "the prompt has {prompt_len} tokens but the model's context length is {ctx} tokens; shorten the messages"
        ))
        .with_context("param", "messages"));
    }
    let room = ctx - prompt_len;
    Ok(match requested {
        Some(n) if (n as usize) > room => {
            tracing::debug!(
                field,
                requested = n,
                room,
                "limiting output to the context left"
            );
            room
        }
        Some(n) => n as usize,
        None => room,
    })
}

struct Generated {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish: FinishReason,
    usage: Usage,
}

fn usage(prompt: usize, completion: usize, cached: usize) -> Usage {
    let mut u = Usage::new(prompt as u32, completion as u32);
    if cached > 0 {
        u.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: Some(cached as u32),
        });
    }
    u
}

fn start(loaded: &Loaded, ctx: &RequestContext, plan: Plan) -> Result<mpsc::Receiver<Event>> {
    let (tx, rx) = mpsc::channel(32);
    loaded.engine.submit(Job {
        prompt: plan.prompt,
        max_tokens: plan.max_tokens,
        params: plan.params,
        stop: plan.stop,
        logprobs: plan.logprobs,
        constraint: plan.constraint,
        events: tx,
        cancel: ctx.cancellation().clone(),
    })?;
    Ok(rx)
}

async fn collect(mut rx: mpsc::Receiver<Event>) -> Result<Generated> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta {
                text: t,
                logprobs: l,
            } => {
                text.push_str(&t);
                logprobs.extend(l);
            }
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                return Ok(Generated {
                    text,
                    logprobs,
                    finish,
                    usage: usage(prompt_tokens, completion_tokens, cached_tokens),
                })
            }
            Event::Failed(e) => return Err(e),
        }
    }
    Err(Error::internal("the model worker ended without an answer"))
}

impl CandleProvider {
    async fn plan_chat(&self, req: &ChatCompletionRequest) -> Result<(Arc<Loaded>, Plan)> {
        if req.messages.is_empty() {
            return Err(Error::invalid_param(
                "messages",
                "[]",
                "At least one message is required",
            ));
        }
        if req.n.is_some_and(|n| n != 1) {
            return Err(Error::invalid_param(
                "n",
                req.n.unwrap_or(0),
                "inline::candle supports only n = 1",
            ));
        }
        if let Some(k) = req.top_logprobs {
            if k > 20 {
                return Err(Error::invalid_param(
                    "top_logprobs",
                    k,
                    "Must be between 0 and 20",
                ));
            }
        }
        let loaded = self.load(&req.model).await?;
        let tok = &loaded.tokenizer;
        let params = sampling(
            req.temperature,
            req.top_p,
            req.frequency_penalty,
            req.presence_penalty,
            req.seed,
            req.logit_bias.as_ref(),
            &req.extra_body,
            tok.vocab_size(),
        )?;
        let template = loaded.template.as_ref().ok_or_else(|| {
            Error::invalid_request(format!(
                "model '{}' has no chat template (GGUF metadata 'tokenizer.chat_template') and none is configured; set `chat_template` for it in the inline::candle config, or use completions",
                req.model
            ))
        })?;
        let tools = req.tools.as_deref().filter(|t| !t.is_empty());
        let mut messages = template::template_messages(&req.messages);
        if let Some(tools) = tools {
            if !template.handles_tools {
                let text = tools::tools_system_prompt(tools);
                match messages.first_mut() {
                    Some(first) if first["role"] == "system" => {
                        let old = first["content"].as_str().unwrap_or("").to_string();
                        first["content"] = Value::String(format!("{old}\n\n{text}"));
                    }
                    _ => messages.insert(0, serde_json::json!({"role": "system", "content": text})),
                }
            }
        }
        let rendered = template.render(
            &messages,
            tools,
            tok.bos_token.as_deref().unwrap_or(""),
            tok.eos_token.as_deref().unwrap_or(""),
            true,
        )?;
        let prompt = tok.encode(&rendered)?;
        let max_tokens = budget(&loaded, prompt.len(), req.max_output_tokens(), "max_tokens")?;
        let schema = tools
            .and_then(|t| forced_tool_schema(t, req.tool_choice.as_ref()))
            .or_else(|| match &req.response_format {
                Some(ResponseFormat::JsonObject) => Some(serde_json::json!({"type": "object"})),
                Some(ResponseFormat::JsonSchema { json_schema }) => Some(
                    json_schema
                        .schema
                        .clone()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                ),
                _ => None,
            });
        let constraint = schema
            .map(|s| json::JsonConstraint::new(&s, tok.clone()))
            .transpose()?
            .map(|c| Box::new(c) as Box<dyn TokenConstraint>);
        let logprobs = if req.logprobs.unwrap_or(false) {
            Some(req.top_logprobs.unwrap_or(0) as usize)
        } else {
            None
        };
        Ok((
            loaded.clone(),
            Plan {
                prompt,
                max_tokens,
                params,
                stop: stop_list(req.stop.as_ref())?,
                logprobs,
                constraint,
            },
        ))
    }

    async fn plan_completion(
        &self,
        req: &CompletionRequest,
    ) -> Result<(Arc<Loaded>, Plan, String)> {
        if req.n.is_some_and(|n| n != 1) || req.best_of.is_some_and(|n| n != 1) {
            return Err(Error::invalid_param(
                "n",
                req.n.unwrap_or(1),
                "inline::candle supports only n = 1 and best_of = 1",
            ));
        }
        if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Error::unsupported(
                "inline::candle does not support `suffix` (fill-in-the-middle)",
            ));
        }
        let loaded = self.load(&req.model).await?;
        let tok = &loaded.tokenizer;
        let (prompt, prompt_text) = match &req.prompt {
            CompletionPrompt::Text(t) => (tok.encode(t)?, t.clone()),
            CompletionPrompt::Texts(ts) if ts.len() == 1 => (tok.encode(&ts[0])?, ts[0].clone()),
            CompletionPrompt::Tokens(ids) => {
                let ids = ids
                    .iter()
                    .map(|&i| {
                        u32::try_from(i)
                            .ok()
                            .filter(|&i| (i as usize) < tok.vocab_size())
                    })
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| {
                        Error::invalid_param(
                            "prompt",
                            "token ids",
                            &format!("Token ids must be between 0 and {}", tok.vocab_size() - 1),
                        )
                    })?;
                let text = tok.decode(&ids)?;
                (ids, text)
            }
            _ => {
                return Err(Error::invalid_param(
                    "prompt",
                    "a list",
                    "inline::candle takes one prompt per request",
                ))
            }
        };
        if prompt.is_empty() {
            return Err(Error::invalid_param("prompt", "''", "Must not be empty"));
        }
        let params = sampling(
            req.temperature,
            req.top_p,
            req.frequency_penalty,
            req.presence_penalty,
            req.seed,
            req.logit_bias.as_ref(),
            &req.extra_body,
            tok.vocab_size(),
        )?;
        let max_tokens = budget(
            &loaded,
            prompt.len(),
            Some(req.max_tokens.unwrap_or(16)),
            "max_tokens",
        )?;
        let logprobs = match &req.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(0),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(k) if k <= 5 => Some(k as usize),
                _ => {
                    return Err(Error::invalid_param(
                        "logprobs",
                        n,
                        "Must be between 0 and 5",
                    ))
                }
            },
            Some(v) => {
                return Err(Error::invalid_param(
                    "logprobs",
                    v,
                    "Must be a boolean or an integer",
                ))
            }
        };
        Ok((
            loaded.clone(),
            Plan {
                prompt,
                max_tokens,
                params,
                stop: stop_list(req.stop.as_ref())?,
                logprobs,
                constraint: None,
            },
            if req.echo.unwrap_or(false) {
                prompt_text
            } else {
                String::new()
            },
        ))
    }
}

/// With `tool_choice` `required` or a named function, the output is constrained to one
/// call: `{"name": ..., "arguments": {...}}` (the arguments follow the function's schema
/// when only one function is possible).
fn forced_tool_schema(tools: &[Tool], choice: Option<&ToolChoice>) -> Option<Value> {
    let candidates: Vec<&Tool> = match choice? {
        ToolChoice::Mode(m) if m == "required" => tools.iter().collect(),
        ToolChoice::Named(v) => {
            let name = v.pointer("/function/name").and_then(Value::as_str)?;
            tools.iter().filter(|t| t.function.name == name).collect()
        }
        ToolChoice::Mode(_) => return None,
    };
    if candidates.is_empty() {
        return None;
    }
    let names: Vec<&str> = candidates
        .iter()
        .map(|t| t.function.name.as_str())
        .collect();
    let arguments = match candidates.as_slice() {
        [one] => one
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        _ => serde_json::json!({"type": "object"}),
    };
    Some(serde_json::json!({
        "type": "object",
        "properties": {"name": {"enum": names}, "arguments": arguments},
        "required": ["name", "arguments"],
    }))
}

fn chat_logprobs(lp: Vec<TokenLogprob>, asked: bool) -> Option<ChoiceLogprobs> {
    asked.then_some(ChoiceLogprobs { content: Some(lp) })
}

fn completion_logprobs(lp: &[TokenLogprob]) -> Value {
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for t in lp {
        offsets.push(offset);
        offset += t.token.len();
    }
    serde_json::json!({
        "tokens": lp.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lp.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": lp.iter().map(|t| t.top_logprobs.iter().map(|a| (a.token.clone(), Value::from(a.logprob))).collect::<Map<String, Value>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

fn chunk(
    id: &str,
    model: &str,
    created: i64,
    delta: ChunkDelta,
    finish: Option<FinishReason>,
    logprobs: Option<ChoiceLogprobs>,
) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.to_string(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.to_string(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish,
            logprobs,
        }],
        usage: None,
        service_tier: None,
        system_fingerprint: None,
    }
}

#[async_trait]
impl Inference for CandleProvider {
    async fn chat_completion(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        let (loaded, plan) = self.plan_chat(&req).await?;
        let g = collect(start(&loaded, ctx, plan)?).await?;
        let tools = req.tools.as_deref().unwrap_or(&[]);
        let (calls, text) = if tools.is_empty() {
            (Vec::new(), g.text)
        } else {
            tools::parse_tool_calls(&g.text, tools)
        };
        let (message, finish) = if calls.is_empty() {
            (AssistantMessage::text(text), g.finish)
        } else {
            let mut m = AssistantMessage::text(text);
            if m.content.as_deref() == Some("") {
                m.content = None;
            }
            m.tool_calls = Some(calls);
            (m, FinishReason::ToolCalls)
        };
        Ok(ChatCompletion {
            id: completion_id("chatcmpl"),
            object: "chat.completion".into(),
            created: now(),
            model: req.model,
            choices: vec![ChatChoice {
                index: 0,
                message,
                finish_reason: Some(finish),
                logprobs: chat_logprobs(g.logprobs, req.logprobs.unwrap_or(false)),
            }],
            usage: Some(g.usage),
            service_tier: None,
            system_fingerprint: None,
        })
    }

    async fn chat_completion_stream(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        let (loaded, plan) = self.plan_chat(&req).await?;
        let rx = start(&loaded, ctx, plan)?;
        let id = completion_id("chatcmpl");
        let created = now();
        let model = req.model.clone();
        let tools: Vec<Tool> = req.tools.clone().unwrap_or_default();
        let asked_lp = req.logprobs.unwrap_or(false);
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(true);
        struct State {
            rx: mpsc::Receiver<Event>,
            first: bool,
            done: bool,
            buffered: String,
            pending: std::collections::VecDeque<Result<ChatCompletionChunk>>,
        }
        let state = State {
            rx,
            first: true,
            done: false,
            buffered: String::new(),
            pending: Default::default(),
        };
        let stream = futures::stream::unfold(state, move |mut st| {
            let id = id.clone();
            let model = model.clone();
            let tools = tools.clone();
            async move {
                loop {
                    if let Some(item) = st.pending.pop_front() {
                        return Some((item, st));
                    }
                    if st.done {
                        return None;
                    }
                    let role = |first: &mut bool| {
                        if std::mem::take(first) {
                            Some("assistant".to_string())
                        } else {
                            None
                        }
                    };
                    match st.rx.recv().await {
                        Some(Event::Delta { text, logprobs }) => {
                            if !tools.is_empty() {
                                // Tool calls are parsed from the whole output.
                                st.buffered.push_str(&text);
                                continue;
                            }
                            let delta = ChunkDelta {
                                role: role(&mut st.first),
                                content: Some(text),
                                ..Default::default()
                            };
                            st.pending.push_back(Ok(chunk(
                                &id,
                                &model,
                                created,
                                delta,
                                None,
                                chat_logprobs(logprobs, asked_lp),
                            )));
                        }
                        Some(Event::Done {
                            finish,
                            prompt_tokens,
                            completion_tokens,
                            cached_tokens,
                        }) => {
                            st.done = true;
                            let mut finish = finish;
                            if !tools.is_empty() {
                                let (calls, text) = tools::parse_tool_calls(&st.buffered, &tools);
                                if calls.is_empty() {
                                    let delta = ChunkDelta {
                                        role: role(&mut st.first),
                                        content: Some(text),
                                        ..Default::default()
                                    };
                                    st.pending.push_back(Ok(chunk(
                                        &id, &model, created, delta, None, None,
                                    )));
                                } else {
                                    finish = FinishReason::ToolCalls;
                                    let deltas = calls
                                        .into_iter()
                                        .enumerate()
                                        .map(|(i, c)| ToolCallDelta {
                                            index: i as u32,
                                            id: Some(c.id),
                                            kind: Some("function".into()),
                                            function: Some(FunctionCallDelta {
                                                name: Some(c.function.name),
                                                arguments: Some(c.function.arguments),
                                            }),
                                        })
                                        .collect();
                                    let delta = ChunkDelta {
                                        role: role(&mut st.first),
                                        content: (!text.is_empty()).then_some(text),
                                        tool_calls: Some(deltas),
                                        ..Default::default()
                                    };
                                    st.pending.push_back(Ok(chunk(
                                        &id, &model, created, delta, None, None,
                                    )));
                                }
                            }
                            let delta = ChunkDelta {
                                role: role(&mut st.first),
                                ..Default::default()
                            };
                            st.pending.push_back(Ok(chunk(
                                &id,
                                &model,
                                created,
                                delta,
                                Some(finish),
                                None,
                            )));
                            if include_usage {
                                let mut last =
                                    chunk(&id, &model, created, ChunkDelta::default(), None, None);
                                last.choices.clear();
                                last.usage =
                                    Some(usage(prompt_tokens, completion_tokens, cached_tokens));
                                st.pending.push_back(Ok(last));
                            }
                        }
                        Some(Event::Failed(e)) => {
                            st.done = true;
                            st.pending.push_back(Err(e));
                        }
                        None => {
                            st.done = true;
                            st.pending.push_back(Err(Error::internal(
                                "the model worker ended without an answer",
                            )));
                        }
                    }
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn completion(&self, ctx: &RequestContext, req: CompletionRequest) -> Result<Completion> {
        let (loaded, plan, echo) = self.plan_completion(&req).await?;
        let asked_lp = plan.logprobs.is_some();
        let g = collect(start(&loaded, ctx, plan)?).await?;
        Ok(Completion {
            id: completion_id("cmpl"),
            object: "text_completion".into(),
            created: now(),
            model: req.model,
            choices: vec![CompletionChoice {
                text: format!("{echo}{}", g.text),
                index: 0,
                finish_reason: Some(g.finish),
                logprobs: asked_lp.then(|| completion_logprobs(&g.logprobs)),
            }],
            usage: Some(g.usage),
            system_fingerprint: None,
        })
    }

    async fn completion_stream(
        &self,
        ctx: &RequestContext,
        req: CompletionRequest,
    ) -> Result<CompletionStream> {
        let (loaded, plan, echo) = self.plan_completion(&req).await?;
        let asked_lp = plan.logprobs.is_some();
        let rx = start(&loaded, ctx, plan)?;
        let id = completion_id("cmpl");
        let created = now();
        let model = req.model.clone();
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(true);
        let make = move |text: String,
                         finish: Option<FinishReason>,
                         lp: Option<Value>,
                         usage: Option<Usage>| Completion {
            id: id.clone(),
            object: "text_completion".into(),
            created,
            model: model.clone(),
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![CompletionChoice {
                    text,
                    index: 0,
                    finish_reason: finish,
                    logprobs: lp,
                }]
            },
            usage,
            system_fingerprint: None,
        };
        let stream = futures::stream::unfold(
            (
                rx,
                Some(echo),
                false,
                std::collections::VecDeque::<Result<Completion>>::new(),
            ),
            move |(mut rx, mut echo, mut done, mut pending)| {
                let make = make.clone();
                async move {
                    loop {
                        if let Some(item) = pending.pop_front() {
                            return Some((item, (rx, echo, done, pending)));
                        }
                        if done {
                            return None;
                        }
                        match rx.recv().await {
                            Some(Event::Delta { text, logprobs }) => {
                                let prefix = echo.take().unwrap_or_default();
                                let lp = asked_lp.then(|| completion_logprobs(&logprobs));
                                pending.push_back(Ok(make(
                                    format!("{prefix}{text}"),
                                    None,
                                    lp,
                                    None,
                                )));
                            }
                            Some(Event::Done {
                                finish,
                                prompt_tokens,
                                completion_tokens,
                                cached_tokens,
                            }) => {
                                done = true;
                                let prefix = echo.take().unwrap_or_default();
                                pending.push_back(Ok(make(prefix, Some(finish), None, None)));
                                if include_usage {
                                    pending.push_back(Ok(make(
                                        String::new(),
                                        None,
                                        None,
                                        Some(usage(
                                            prompt_tokens,
                                            completion_tokens,
                                            cached_tokens,
                                        )),
                                    )));
                                }
                            }
                            Some(Event::Failed(e)) => {
                                done = true;
                                pending.push_back(Err(e));
                            }
                            None => {
                                done = true;
                                pending.push_back(Err(Error::internal(
                                    "the model worker ended without an answer",
                                )));
                            }
                        }
                    }
                }
            },
        );
        Ok(stream.boxed())
    }
}

#[async_trait]
impl InferenceProvider for CandleProvider {
    fn capabilities(&self) -> InferenceCaps {
        InferenceCaps {
            chat: true,
            completion: true,
            streaming: true,
            tools: true,
            json_schema: true,
            embeddings: false,
            rerank: false,
        }
    }

    async fn register_model(&self, model: &Model) -> Result<Model> {
        if model.model_type != ModelType::Llm {
            return Err(Error::invalid_param(
                "model_type",
                model.model_type.as_str(),
                "inline::candle serves only 'llm' models",
            ));
        }
        let id = &model.provider_resource_id;
        if self.spec_for(id).is_err() {
            let file = model.metadata.get("file").and_then(Value::as_str);
            let path = model.metadata.get("path").and_then(Value::as_str);
            let spec = CandleModelConfig {
                model_id: Some(id.clone()),
                repo: path.is_none().then(|| id.clone()),
                file: file.map(str::to_string),
                path: path.map(PathBuf::from),
                context_length: model
                    .metadata
                    .get("context_length")
                    .and_then(Value::as_u64)
                    .map(|c| c as usize),
                ..Default::default()
            };
            spec.source().map_err(|e| {
                Error::invalid_request(format!(
                    "inline::candle does not know model '{id}': {}; list it in the provider's `models` or give metadata `file` or `path`",
                    e.message()
                ))
            })?;
            self.extra
                .lock()
                .map_err(lock_err)?
                .insert(id.clone(), spec);
        }
        Ok(model.clone())
    }

    async fn unregister_model(&self, model_id: &str) -> Result<()> {
        self.loaded.lock().map_err(lock_err)?.remove(model_id);
        self.extra.lock().map_err(lock_err)?.remove(model_id);
        Ok(())
    }

    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// The `inline::candle` spec (alias `inline::meta-reference`).
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<CandleConfig>(
        Api::Inference,
        PROVIDER_TYPE,
        "Local chat and text completions on GGUF llama-family models with candle (CPU, offline)",
        FnFactory(|ctx: ProviderContext| async move {
            let mut config: CandleConfig = ctx.parse_config()?;
            // An entry whose ids all resolved empty (e.g. `CANDLE_MODEL=""`) is disabled.
            config
                .models
                .retain(|m| m.model_id.is_some() || m.repo.is_some() || m.path.is_some());
            for (i, m) in config.models.iter().enumerate() {
                m.source()
                    .map_err(|e| e.with_prefix(&format!("{}.models[{i}]", ctx.config_path)))?;
            }
            Ok(ProviderInstance::Inference(Arc::new(CandleProvider::new(
                config,
            ))))
        }),
    )
    .with_alias(ALIAS)
}
