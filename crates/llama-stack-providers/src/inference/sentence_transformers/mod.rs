//! `inline::sentence-transformers`: embeddings from BERT-family sentence-transformers models
//! (safetensors), in-process and offline.
//!
//! The model's `modules.json` decides the pipeline as in sentence-transformers: the
//! transformer, its pooling module (`1_Pooling/config.json`: mean, CLS or max) and an
//! optional `Normalize`; `sentence_bert_config.json` gives the maximum sequence length.
//! Models are Hugging Face repo ids (through the hub cache, `HF_HUB_CACHE`,
//! `HF_HUB_OFFLINE=1`) or local directories; they load lazily on first use and stay
//! loaded. Inputs are embedded in batches of similar length on the blocking thread pool;
//! requests run concurrently.
//!
//! The encoder is our own BERT forward pass ([`bert`]) on packed, unpadded token rows with
//! SIMD-friendly kernels ([`kernels`]); it uses `num_threads` threads per forward pass
//! (default: `CANDLE_NUM_THREADS`, then `RAYON_NUM_THREADS`, then the number of CPUs).

mod bert;
mod kernels;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use bert::{Bert, BertConfig, Threads};
use llama_stack_core::api::inference::*;
use llama_stack_core::api::models::{Model, ModelType};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::Api;
use llama_stack_core::provider::{
    FnFactory, InferenceCaps, InferenceProvider, ProviderContext, ProviderInstance, ProviderSpec,
};
use llama_stack_core::{Error, ErrorKind, RequestContext, Result};
use serde::Deserialize;
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

use crate::hub::{self, FileSource};

/// The provider type name.
pub const PROVIDER_TYPE: &str = "inline::sentence-transformers";

/// Config of `inline::sentence-transformers`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentenceTransformersConfig {
    /// Hugging Face hub cache directory (default: `HF_HUB_CACHE`, then `$HF_HOME/hub`, then `~/.cache/huggingface/hub`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Never download; only use cached files (default: `HF_HUB_OFFLINE` is `1`/`true`).
    #[serde(default)]
    pub offline: Option<bool>,
    /// Inputs per forward pass (default 32).
    #[serde(default = "default_batch")]
    pub max_batch_size: usize,
    /// Threads per forward pass (default: `CANDLE_NUM_THREADS`, then `RAYON_NUM_THREADS`,
    /// then the number of CPUs).
    #[serde(default)]
    pub num_threads: Option<usize>,
}

impl Default for SentenceTransformersConfig {
    fn default() -> Self {
        SentenceTransformersConfig {
            cache_dir: None,
            offline: None,
            max_batch_size: default_batch(),
            num_threads: None,
        }
    }
}

fn default_batch() -> usize {
    32
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Mean over the tokens (the mask).
    Mean,
    /// The first (CLS) token.
    Cls,
    /// Element-wise max over the tokens.
    Max,
}

/// Threads from `CANDLE_NUM_THREADS`, then `RAYON_NUM_THREADS`, then the CPU count.
fn threads_from_env() -> usize {
    ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"]
        .iter()
        .find_map(|v| {
            std::env::var(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Groups input indices into batches of at most `max_batch` inputs of similar length
/// (sorted by length, stable for equal lengths).
pub(crate) fn length_batches(lens: &[usize], max_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    order
        .chunks(max_batch.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// A loaded model.
pub(crate) struct Encoder {
    model: Bert,
    threads: Threads,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dimension: usize,
    max_len: usize,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::unavailable(format!("cannot read '{}': {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::unavailable(format!("'{}' is not valid: {e}", path.display())))
}

/// Pools the `(tokens, h)` rows of one sequence into one vector (zeros for no tokens).
fn pool(rows: &[f32], h: usize, pooling: Pooling) -> Vec<f32> {
    let mut v = vec![0f32; h];
    let mut it = rows.chunks_exact(h);
    match pooling {
        Pooling::Cls => {
            if let Some(first) = it.next() {
                v.copy_from_slice(first);
            }
        }
        Pooling::Mean => {
            let n = rows.len() / h;
            for r in it {
                v.iter_mut().zip(r).for_each(|(a, x)| *a += x);
            }
            let inv = 1.0 / n.max(1) as f32;
            v.iter_mut().for_each(|a| *a *= inv);
        }
        Pooling::Max => {
            if let Some(first) = it.next() {
                v.copy_from_slice(first);
                for r in it {
                    v.iter_mut().zip(r).for_each(|(a, x)| *a = a.max(*x));
                }
            }
        }
    }
    v
}

/// Finds the model's files, locally or through the hub cache.
struct Files<'a> {
    model_id: &'a str,
    local: Option<PathBuf>,
    cache_dir: Option<&'a Path>,
    offline: bool,
}

impl Files<'_> {
    async fn get(&self, file: &str) -> Result<PathBuf> {
        let source = match &self.local {
            Some(dir) => FileSource::Path(dir.join(file)),
            None => FileSource::Hub {
                repo: self.model_id.to_string(),
                file: file.to_string(),
                revision: None,
            },
        };
        hub::resolve(&source, self.cache_dir, self.offline).await
    }

    async fn optional(&self, file: &str) -> Result<Option<PathBuf>> {
        match self.get(file).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Encoder {
    async fn load(
        model_id: &str,
        cache_dir: Option<&Path>,
        offline: bool,
        threads: usize,
    ) -> Result<Self> {
        let local = Path::new(model_id);
        let files = Files {
            model_id,
            local: local.is_dir().then(|| local.to_path_buf()),
            cache_dir,
            offline,
        };
        let modules: Vec<Module> = match files.optional("modules.json").await? {
            Some(p) => read_json(&p)?,
            None => Vec::new(),
        };
        let mut pooling_dir = None;
        let mut normalize = false;
        for m in &modules {
            if m.kind.ends_with("models.Pooling") {
                pooling_dir = Some(m.path.clone());
            } else if m.kind.ends_with("models.Normalize") {
                normalize = true;
            } else if !m.kind.ends_with("models.Transformer") {
                return Err(Error::unsupported(format!(
                    "sentence-transformers module '{}' of '{model_id}' is not supported (Transformer, Pooling and Normalize are)",
                    m.kind
                )));
            }
        }
        let pooling_cfg: PoolingConfig = match &pooling_dir {
            Some(dir) => match files.optional(&format!("{dir}/config.json")).await? {
                Some(p) => read_json(&p)?,
                None => PoolingConfig::default(),
            },
            None => PoolingConfig::default(),
        };
        let pooling = if pooling_cfg.pooling_mode_cls_token {
            Pooling::Cls
        } else if pooling_cfg.pooling_mode_max_tokens {
            Pooling::Max
        } else if pooling_cfg.pooling_mode_mean_sqrt_len_tokens {
            return Err(Error::unsupported(format!(
                "pooling mode mean_sqrt_len_tokens of '{model_id}' is not supported"
            )));
        } else {
            let _ = pooling_cfg.pooling_mode_mean_tokens;
            Pooling::Mean
        };
        let st_config: Value = match files.optional("sentence_bert_config.json").await? {
            Some(p) => read_json(&p)?,
            None => Value::Null,
        };
        let config_path = files.get("config.json").await?;
        let tokenizer_path = files.get("tokenizer.json").await?;
        let weights_path = files.get("model.safetensors").await?;
        let max_seq = st_config.get("max_seq_length").and_then(Value::as_u64);
        let word_dim = pooling_cfg.word_embedding_dimension;
        tokio::task::spawn_blocking(move || {
            let config: BertConfig = read_json(&config_path)?;
            let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
                Error::unavailable(format!(
                    "cannot read tokenizer '{}': {e}",
                    tokenizer_path.display()
                ))
            })?;
            let max_len = max_seq
                .map(|m| m as usize)
                .unwrap_or(config.max_position_embeddings)
                .min(config.max_position_embeddings);
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length: max_len,
                    ..Default::default()
                }))
                .map_err(|e| Error::internal(format!("tokenizer truncation: {e}")))?;
            tokenizer.with_padding(None);
            let weights = std::fs::read(&weights_path).map_err(|e| {
                Error::unavailable(format!("cannot read '{}': {e}", weights_path.display()))
            })?;
            let model = Bert::load(&config, &weights).map_err(|e| {
                e.with_prefix(&format!(
                    "'{}' is not a BERT model this provider can load",
                    weights_path.display()
                ))
            })?;
            drop(weights);
            Ok(Encoder {
                model,
                threads: Threads::new(threads)?,
                tokenizer,
                pooling,
                normalize,
                dimension: word_dim.unwrap_or(config.hidden_size),
                max_len,
            })
        })
        .await
        .map_err(|e| Error::internal(format!("model loading task failed: {e}")))?
    }

    /// The vector size.
    pub(crate) fn dimension(&self) -> usize {
        self.dimension
    }

    /// Embeds a batch of token id lists (already truncated); returns vectors in order.
    fn embed_ids(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (hidden, offsets) = self.model.forward(batch, &self.threads)?;
        let h = self.model.hidden_size();
        Ok(offsets
            .windows(2)
            .map(|w| {
                let rows = &hidden[w[0] * h..w[1] * h];
                let mut v = pool(rows, h, self.pooling);
                if self.normalize {
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= n);
                }
                v
            })
            .collect())
    }

    /// Embeds `inputs` in batches of at most `batch` similar-length inputs; the vectors come
    /// back in input order.
    pub(crate) fn embed(&self, inputs: Vec<Vec<u32>>, batch: usize) -> Result<Vec<Vec<f32>>> {
        let lens: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); inputs.len()];
        for group in length_batches(&lens, batch) {
            let seqs: Vec<&[u32]> = group.iter().map(|&i| inputs[i].as_slice()).collect();
            for (&i, v) in group.iter().zip(self.embed_ids(&seqs)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Token ids of `texts` (special tokens added, truncated to the maximum length).
    pub(crate) fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(t.as_str(), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::internal(format!("tokenizer: {e}")))
            })
            .collect()
    }
}

/// The `inline::sentence-transformers` provider.
pub struct SentenceTransformersProvider {
    config: SentenceTransformersConfig,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<Encoder>>>>>,
}

fn lock_err<T>(_: T) -> Error {
    Error::internal("a lock of inline::sentence-transformers was poisoned")
}

impl SentenceTransformersProvider {
    /// A provider with `config`.
    pub fn new(config: SentenceTransformersConfig) -> Self {
        SentenceTransformersProvider {
            config,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn offline(&self) -> bool {
        self.config.offline.unwrap_or_else(hub::offline_from_env)
    }

    pub(crate) async fn encoder(&self, model_id: &str) -> Result<Arc<Encoder>> {
        let cell = {
            let mut map = self.loaded.lock().map_err(lock_err)?;
            map.entry(model_id.to_string()).or_default().clone()
        };
        let offline = self.offline();
        let enc = cell
            .get_or_try_init(|| async {
                Encoder::load(
                    model_id,
                    self.config.cache_dir.as_deref(),
                    offline,
                    self.config.num_threads.unwrap_or_else(threads_from_env),
                )
                .await
                .map(Arc::new)
            })
            .await?;
        Ok(enc.clone())
    }
}

fn encode_vector(v: Vec<f32>, format: EncodingFormat) -> EmbeddingVector {
    match format {
        EncodingFormat::Float => EmbeddingVector::Float(v),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

#[async_trait]
impl Inference for SentenceTransformersProvider {
    async fn chat_completion(
        &self,
        _ctx: &RequestContext,
        _req: ChatCompletionRequest,
    ) -> Result<ChatCompletion> {
        Err(Error::unsupported(
            "inline::sentence-transformers serves embeddings only",
        ))
    }

    async fn chat_completion_stream(
        &self,
        _ctx: &RequestContext,
        _req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream> {
        Err(Error::unsupported(
            "inline::sentence-transformers serves embeddings only",
        ))
    }

    async fn embeddings(
        &self,
        ctx: &RequestContext,
        req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        req.validate()?;
        let enc = self.encoder(&req.model).await?;
        let dims = match req.dimensions {
            Some(d) if d as usize > enc.dimension() => {
                return Err(Error::invalid_param(
                    "dimensions",
                    d,
                    &format!("Must be at most {} for this model", enc.dimension()),
                ))
            }
            Some(d) => d as usize,
            None => enc.dimension(),
        };
        let vocab = enc.tokenizer.get_vocab_size(true);
        let check_ids = |ids: &[i64]| -> Result<Vec<u32>> {
            let mut v: Vec<u32> = ids
                .iter()
                .map(|&i| u32::try_from(i).ok().filter(|&i| (i as usize) < vocab))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::invalid_param(
                        "input",
                        "token ids",
                        &format!("Token ids must be between 0 and {}", vocab - 1),
                    )
                })?;
            v.truncate(enc.max_len);
            Ok(v)
        };
        let inputs = match &req.input {
            EmbeddingInput::Text(t) => enc.tokenize(std::slice::from_ref(t))?,
            EmbeddingInput::Texts(ts) => enc.tokenize(ts)?,
            EmbeddingInput::Tokens(ids) => vec![check_ids(ids)?],
            EmbeddingInput::TokenLists(lists) => lists
                .iter()
                .map(|l| check_ids(l))
                .collect::<Result<Vec<_>>>()?,
        };
        let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
        let batch = self.config.max_batch_size;
        let enc2 = enc.clone();
        let cancel = ctx.cancellation().clone();
        let vectors = tokio::task::spawn_blocking(move || {
            if cancel.is_cancelled() {
                return Err(Error::unavailable("the request was cancelled"));
            }
            enc2.embed(inputs, batch)
        })
        .await
        .map_err(|e| Error::internal(format!("embedding task failed: {e}")))??;
        let format = req.encoding_format.unwrap_or_default();
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                if dims < v.len() {
                    v.truncate(dims);
                    if enc.normalize {
                        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                        v.iter_mut().for_each(|x| *x /= n);
                    }
                }
                Embedding {
                    object: "embedding".into(),
                    embedding: encode_vector(v, format),
                    index: i as u32,
                }
            })
            .collect();
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: req.model,
            usage: EmbeddingsUsage {
                prompt_tokens: prompt_tokens as u32,
                total_tokens: prompt_tokens as u32,
            },
        })
    }
}

#[async_trait]
impl InferenceProvider for SentenceTransformersProvider {
    fn capabilities(&self) -> InferenceCaps {
        InferenceCaps {
            embeddings: true,
            ..Default::default()
        }
    }

    async fn register_model(&self, model: &Model) -> Result<Model> {
        if model.model_type != ModelType::Embedding {
            return Err(Error::invalid_param(
                "model_type",
                model.model_type.as_str(),
                "inline::sentence-transformers serves only 'embedding' models",
            ));
        }
        let mut model = model.clone();
        // Report the model's real dimension when its files are already here (no network).
        let id = &model.provider_resource_id;
        let local = Path::new(id);
        let files = Files {
            model_id: id,
            local: local.is_dir().then(|| local.to_path_buf()),
            cache_dir: self.config.cache_dir.as_deref(),
            offline: true,
        };
        if let Ok(Some(p)) = files.optional("config.json").await {
            if let Ok(cfg) = read_json::<Value>(&p) {
                if let Some(d) = cfg.get("hidden_size").and_then(Value::as_u64) {
                    model
                        .metadata
                        .insert("embedding_dimension".into(), Value::from(d));
                }
            }
        }
        Ok(model)
    }

    async fn unregister_model(&self, model_id: &str) -> Result<()> {
        self.loaded.lock().map_err(lock_err)?.remove(model_id);
        Ok(())
    }

    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// The `inline::sentence-transformers` spec.
pub fn spec() -> ProviderSpec {
    ProviderSpec::new::<SentenceTransformersConfig>(
        Api::Inference,
        PROVIDER_TYPE,
        "Local sentence-transformers embeddings (BERT family, safetensors), in-process",
        FnFactory(|ctx: ProviderContext| async move {
            let config: SentenceTransformersConfig = ctx.parse_config()?;
            if config.num_threads == Some(0) {
                return Err(Error::config(format!(
                    "{}.num_threads: must be at least 1",
                    ctx.config_path
                )));
            }
            if config.max_batch_size == 0 {
                return Err(Error::config(format!(
                    "{}.max_batch_size: must be at least 1",
                    ctx.config_path
                )));
            }
            Ok(ProviderInstance::Inference(Arc::new(
                SentenceTransformersProvider::new(config),
            )))
        }),
    )
}
