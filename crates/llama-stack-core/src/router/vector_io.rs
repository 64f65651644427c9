//! [`VectorIoRouter`]: the VectorIO API over the vector_io providers. It resolves every
//! store through the vector-store routing table (access checked there), validates
//! requests once for all providers, picks the provider and embedding model of new stores,
//! rewrites queries when asked, and shapes search results.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::Action;
use crate::api::inference::{ChatCompletionRequest, Inference, Message};
use crate::api::models::{Model, ModelType};
use crate::api::vector_io::{
    AttachFileRequest, Chunk, ChunkSearch, ContentText, CreateFileBatchRequest,
    CreateVectorStoreRequest, FileContentRequest, InsertChunksRequest, ListPage,
    ListVectorStoreFilesRequest, ListVectorStoresRequest, NewVectorStore, QueryChunksRequest,
    QueryChunksResponse, RankingOptions, Reranker, SearchMode, SearchResponse, SearchResult,
    SearchVectorStoreRequest, UpdateVectorStoreFileRequest, UpdateVectorStoreRequest, VectorIo,
    VectorStore, VectorStoreDeleted, VectorStoreFileBatchObject, VectorStoreFileContent,
    VectorStoreFileDeleted, VectorStoreFileList, VectorStoreFileObject, VectorStoreList,
    VectorStoreObject, VectorStoreTag, DEFAULT_RRF_IMPACT_FACTOR, DEFAULT_WEIGHTED_ALPHA,
};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::provider::VectorIoProvider;
use crate::resource::RegistryEntry;
use crate::routing_table::RoutingTable;
use crate::storage::Order;

/// Most metadata keys a vector store (or file attributes) may carry.
pub const MAX_METADATA_KEYS: usize = 16;
/// Longest metadata / attribute key.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest string metadata value.
pub const MAX_METADATA_VALUE_LEN: usize = 512;
/// Default `max_chunks` of a low-level query.
pub const DEFAULT_QUERY_MAX_CHUNKS: usize = 3;

/// A model named by provider and provider model id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelRef {
    /// The provider instance.
    pub provider_id: String,
    /// The provider's model id.
    pub model_id: String,
    /// The dimension (embedding models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimensions: Option<u32>,
}

impl ModelRef {
    /// The model's identifier, `<provider_id>/<model_id>`.
    pub fn identifier(&self) -> String {
        format!("{}/{}", self.provider_id, self.model_id)
    }
}

/// `vector_stores.rewrite_query_params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RewriteQueryParams {
    /// The chat model that rewrites queries.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// The prompt; `{query}` is replaced by the query.
    #[serde(default = "default_rewrite_prompt")]
    pub prompt: String,
    /// Token limit of the rewrite.
    #[serde(default = "default_rewrite_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature of the rewrite.
    #[serde(default = "default_rewrite_temperature")]
    pub temperature: f32,
}

fn default_rewrite_prompt() -> String {
    "Rewrite this search query so that it finds the most relevant passages: add synonyms and closely related terms, keep it short, and answer with the query only.\n\nQuery: {query}\n\nRewritten query:".to_string()
}
fn default_rewrite_max_tokens() -> u32 {
    100
}
fn default_rewrite_temperature() -> f32 {
    0.3
}

/// `vector_stores.chunk_retrieval_params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkRetrievalParams {
    /// Hybrid search fetches `k × chunk_multiplier` candidates from each side.
    #[serde(default = "default_multiplier")]
    pub chunk_multiplier: usize,
    /// `rrf`, `weighted` or `normalized`.
    #[serde(default = "default_reranker_strategy")]
    pub default_reranker_strategy: String,
    /// RRF's `k`.
    #[serde(default = "default_rrf")]
    pub rrf_impact_factor: f64,
    /// Weighted fusion's `alpha`.
    #[serde(default = "default_alpha")]
    pub weighted_search_alpha: f64,
}

impl Default for ChunkRetrievalParams {
    fn default() -> Self {
        ChunkRetrievalParams {
            chunk_multiplier: default_multiplier(),
            default_reranker_strategy: default_reranker_strategy(),
            rrf_impact_factor: default_rrf(),
            weighted_search_alpha: default_alpha(),
        }
    }
}

fn default_multiplier() -> usize {
    5
}
fn default_reranker_strategy() -> String {
    "rrf".to_string()
}
fn default_rrf() -> f64 {
    DEFAULT_RRF_IMPACT_FACTOR
}
fn default_alpha() -> f64 {
    DEFAULT_WEIGHTED_ALPHA
}

/// Llama Stack's top-level `vector_stores` section (the parts this router uses; other
/// keys are accepted and read by the tools that use them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoresConfig {
    /// The vector_io provider of new stores when several are configured.
    #[serde(default)]
    pub default_provider_id: Option<String>,
    /// The embedding model of new stores that name none.
    #[serde(default)]
    pub default_embedding_model: Option<ModelRef>,
    /// Query rewriting (`rewrite_query: true`).
    #[serde(default)]
    pub rewrite_query_params: Option<RewriteQueryParams>,
    /// Hybrid search defaults.
    #[serde(default)]
    pub chunk_retrieval_params: ChunkRetrievalParams,
    /// Every other key, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl VectorStoresConfig {
    /// The hybrid fusion used when a search names none.
    pub fn default_reranker(&self) -> Result<Reranker> {
        let p = &self.chunk_retrieval_params;
        match p.default_reranker_strategy.as_str() {
            "rrf" => Ok(Reranker::Rrf {
                impact_factor: p.rrf_impact_factor,
            }),
            "weighted" => Ok(Reranker::Weighted {
                alpha: p.weighted_search_alpha,
            }),
            "normalized" => Ok(Reranker::Normalized),
            other => Err(Error::config(format!(
                "vector_stores.chunk_retrieval_params.default_reranker_strategy: unknown strategy '{other}' (use rrf, weighted or normalized)"
            ))),
        }
    }
}

/// Routes VectorIO calls to the provider holding each store.
pub struct VectorIoRouter {
    table: Arc<RoutingTable<VectorStore>>,
    models: Arc<RoutingTable<Model>>,
    providers: HashMap<String, Arc<dyn VectorIoProvider>>,
    inference: Option<Arc<dyn Inference>>,
    config: VectorStoresConfig,
    default_reranker: Reranker,
}

impl VectorIoRouter {
    /// A router over `providers`, with the vector-store and model tables, the inference
    /// router (query rewriting) and the `vector_stores` config.
    pub fn new(
        table: Arc<RoutingTable<VectorStore>>,
        models: Arc<RoutingTable<Model>>,
        providers: HashMap<String, Arc<dyn VectorIoProvider>>,
        inference: Option<Arc<dyn Inference>>,
        config: VectorStoresConfig,
    ) -> Result<Self> {
        let default_reranker = config.default_reranker()?;
        if let Some(id) = &config.default_provider_id {
            if !providers.contains_key(id) {
                return Err(Error::config(format!(
                    "vector_stores.default_provider_id: '{id}' is not a configured vector_io provider"
                )));
            }
        }
        Ok(VectorIoRouter {
            table,
            models,
            providers,
            inference,
            config,
            default_reranker,
        })
    }

    /// The vector-store routing table.
    pub fn table(&self) -> &Arc<RoutingTable<VectorStore>> {
        &self.table
    }

    /// Ids of the configured providers.
    pub fn provider_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.providers.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn provider(&self, provider_id: &str) -> Result<&Arc<dyn VectorIoProvider>> {
        self.providers.get(provider_id).ok_or_else(|| {
            Error::unavailable(format!(
                "vector_io provider '{provider_id}' holding this store is not configured in this stack"
            ))
        })
    }

    async fn store(
        &self,
        ctx: &RequestContext,
        id: &str,
        action: Action,
    ) -> Result<(Arc<RegistryEntry<VectorStore>>, &Arc<dyn VectorIoProvider>)> {
        if id.is_empty() {
            return Err(Error::invalid_param(
                "vector_store_id",
                "''",
                "Must not be empty",
            ));
        }
        let entry = self.table.get(ctx, id).await?;
        if action != Action::Read {
            self.table
                .policy()
                .check(ctx.user(), action, &entry.protected())?;
        }
        let provider = self.provider(&entry.resource.provider_id)?;
        Ok((entry, provider))
    }

    /// Registers a store from the run config (`registered_resources.vector_stores`),
    /// creating it in its provider when it does not exist there yet.
    pub async fn register_from_config(
        &self,
        vector_store_id: &str,
        embedding_model: &str,
        embedding_dimension: u32,
        provider_id: Option<&str>,
        provider_vector_store_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<VectorStore> {
        let provider_id = self.pick_provider(provider_id)?;
        let ctx = RequestContext::anonymous();
        self.embedding_model(&ctx, embedding_model, Some(embedding_dimension))
            .await?;
        let store = VectorStore {
            identifier: vector_store_id.to_string(),
            provider_id: provider_id.clone(),
            provider_resource_id: provider_vector_store_id
                .unwrap_or(vector_store_id)
                .to_string(),
            tag: VectorStoreTag::VectorStore,
            embedding_model: embedding_model.to_string(),
            embedding_dimension,
            vector_store_name: name.map(str::to_string),
        };
        let provider = self.provider(&provider_id)?;
        match provider.get_vector_store(&ctx, &store).await {
            Ok(_) => {}
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                let new = NewVectorStore {
                    store_id: store.provider_resource_id.clone(),
                    embedding_model: store.embedding_model.clone(),
                    embedding_dimension,
                    provider_id: provider_id.clone(),
                };
                let req = CreateVectorStoreRequest {
                    name: name.map(str::to_string),
                    ..CreateVectorStoreRequest::default()
                };
                provider
                    .create_vector_store(&ctx, &store, &new, req)
                    .await?;
            }
            Err(e) => return Err(e),
        }
        self.table.register_from_config(store).await
    }

    fn pick_provider(&self, asked: Option<&str>) -> Result<String> {
        if let Some(id) = asked {
            if self.providers.contains_key(id) {
                return Ok(id.to_string());
            }
            return Err(Error::invalid_param(
                "provider_id",
                id,
                &format!(
                    "No vector_io provider with this id is configured (configured: {})",
                    self.provider_ids().join(", ")
                ),
            ));
        }
        if self.providers.len() == 1 {
            if let Some(id) = self.providers.keys().next() {
                return Ok(id.clone());
            }
        }
        if let Some(id) = &self.config.default_provider_id {
            return Ok(id.clone());
        }
        if self.providers.is_empty() {
            return Err(Error::unsupported(
                "no vector_io provider is configured; add one under providers.vector_io (e.g. inline::sqlite-vec)",
            ));
        }
        Err(Error::invalid_request(format!(
            "several vector_io providers are configured ({}); name one with provider_id or set vector_stores.default_provider_id",
            self.provider_ids().join(", ")
        ))
        .with_context("param", "provider_id"))
    }

    /// Checks that `model_id` is a registered embedding model the caller may use and
    /// returns its dimension (`asked`, which must agree with the model's when it has one).
    async fn embedding_model(
        &self,
        ctx: &RequestContext,
        model_id: &str,
        asked: Option<u32>,
    ) -> Result<u32> {
        let entry = self.models.get(ctx, model_id).await.map_err(|e| {
            if e.kind() == crate::ErrorKind::NotFound {
                Error::invalid_param(
                    "embedding_model",
                    model_id,
                    "Must be a registered embedding model (see client.models.list())",
                )
            } else {
                e
            }
        })?;
        let model = &entry.resource;
        if model.model_type != ModelType::Embedding {
            return Err(Error::invalid_param(
                "embedding_model",
                model_id,
                &format!(
                    "Model '{model_id}' is a {} model, not an embedding model",
                    model.model_type.as_str()
                ),
            ));
        }
        let known = model
            .metadata
            .get("embedding_dimension")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|d| u32::try_from(d).ok());
        match (asked, known) {
            (Some(a), Some(k)) if a != k => Err(Error::invalid_param(
                "embedding_dimension",
                a,
                &format!("Model '{model_id}' makes {k}-dimensional embeddings"),
            )),
            (Some(0), _) => Err(Error::invalid_param(
                "embedding_dimension",
                0,
                "Must be at least 1",
            )),
            (Some(a), _) => Ok(a),
            (None, Some(k)) => Ok(k),
            (None, None) => Err(Error::invalid_param(
                "embedding_dimension",
                "null",
                &format!(
                    "Model '{model_id}' does not declare its dimension; pass embedding_dimension"
                ),
            )),
        }
    }

    fn search_query_text(query: &str) -> Result<String> {
        let q = query.trim();
        if q.is_empty() {
            return Err(Error::invalid_param("query", "''", "Must not be empty"));
        }
        Ok(q.to_string())
    }

    async fn rewrite(&self, ctx: &RequestContext, query: &str) -> Result<String> {
        let params = self.config.rewrite_query_params.as_ref();
        let Some((params, model)) = params.and_then(|p| p.model.as_ref().map(|m| (p, m))) else {
            return Err(Error::invalid_param(
                "rewrite_query",
                true,
                "Query rewriting needs vector_stores.rewrite_query_params.model in the run config",
            ));
        };
        let inference = self
            .inference
            .as_ref()
            .ok_or_else(|| Error::unsupported("query rewriting needs an inference provider"))?;
        let prompt = params.prompt.replace("{query}", query);
        let req = ChatCompletionRequest::new(model.identifier(), [Message::user(prompt)])
            .with_max_tokens(params.max_tokens)
            .with_temperature(params.temperature);
        let answer = inference.chat_completion(ctx, req).await?;
        let text = answer
            .choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .map(str::trim)
            .unwrap_or_default();
        // An empty rewrite would search for nothing: keep the original query.
        Ok(if text.is_empty() {
            query.to_string()
        } else {
            text.to_string()
        })
    }
}

/// Checks user metadata or file attributes (≤ 16 keys, keys ≤ 64 characters, string
/// values ≤ 512 characters; numbers and booleans allowed).
pub fn validate_attributes(param: &str, map: &Map<String, Value>) -> Result<()> {
    if map.len() > MAX_METADATA_KEYS {
        return Err(Error::invalid_param(
            param,
            format!("{} keys", map.len()),
            "At most 16 keys are allowed",
        ));
    }
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_LEN {
            return Err(Error::invalid_param(
                param,
                k,
                "Keys must have 1 to 64 characters",
            ));
        }
        match v {
            Value::String(s) if s.chars().count() > MAX_METADATA_VALUE_LEN => {
                return Err(Error::invalid_param(
                    &format!("{param}.{k}"),
                    format!("{} characters", s.chars().count()),
                    "String values may have at most 512 characters",
                ))
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            other => {
                return Err(Error::invalid_param(
                    &format!("{param}.{k}"),
                    other,
                    "Values must be strings, numbers or booleans",
                ))
            }
        }
    }
    Ok(())
}

/// Metadata keys the server sets on every store.
const SERVER_METADATA_KEYS: [&str; 4] = [
    "provider_id",
    "provider_vector_store_id",
    "embedding_model",
    "embedding_dimension",
];

fn extra_str(req: &CreateVectorStoreRequest, key: &str) -> Option<String> {
    req.metadata.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn search_result(chunk: Chunk, score: f64) -> SearchResult {
    let text = chunk.content.text();
    let attr = |k: &str| {
        chunk
            .metadata
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    SearchResult {
        file_id: attr("file_id"),
        filename: attr("filename"),
        score,
        content: vec![ContentText::new(text)],
        attributes: chunk.metadata,
    }
}

/// Parses the `params` of a low-level query.
fn query_params(
    params: Option<&Map<String, Value>>,
    default_reranker: Reranker,
) -> Result<(usize, f64, SearchMode, Reranker)> {
    let empty = Map::new();
    let p = params.unwrap_or(&empty);
    let max_chunks = match p.get("max_chunks") {
        None | Some(Value::Null) => DEFAULT_QUERY_MAX_CHUNKS,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=10_000).contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                Error::invalid_param("params.max_chunks", v, "Must be an integer from 1 to 10000")
            })?,
    };
    let threshold = match p.get("score_threshold") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| Error::invalid_param("params.score_threshold", v, "Must be a number"))?,
    };
    let mode = match p.get("mode") {
        None | Some(Value::Null) => SearchMode::Vector,
        Some(Value::String(s)) => SearchMode::parse(s).map_err(|_| {
            Error::invalid_param("params.mode", s, "Must be one of: vector, keyword, hybrid")
        })?,
        Some(v) => {
            return Err(Error::invalid_param(
                "params.mode",
                v,
                "Must be one of: vector, keyword, hybrid",
            ))
        }
    };
    let reranker = match p.get("ranker") {
        None | Some(Value::Null) => default_reranker,
        Some(Value::Object(r)) => {
            let options = RankingOptions {
                ranker: r.get("type").and_then(Value::as_str).map(str::to_string),
                alpha: r.get("alpha").and_then(Value::as_f64),
                impact_factor: r.get("impact_factor").and_then(Value::as_f64),
                ..RankingOptions::default()
            };
            options
                .reranker(default_reranker)
                .map_err(|e| e.with_prefix("params.ranker"))?
        }
        Some(v) => {
            return Err(Error::invalid_param(
                "params.ranker",
                v,
                "Must be an object like {\"type\": \"rrf\", \"impact_factor\": 60}",
            ))
        }
    };
    Ok((max_chunks, threshold, mode, reranker))
}

#[async_trait]
impl VectorIo for VectorIoRouter {
    async fn insert_chunks(&self, ctx: &RequestContext, req: InsertChunksRequest) -> Result<()> {
        let (entry, provider) = self
            .store(ctx, &req.vector_store_id, Action::Update)
            .await?;
        let store = &entry.resource;
        let mut seen = std::collections::HashSet::new();
        for (i, chunk) in req.chunks.iter().enumerate() {
            if chunk.chunk_id.is_empty() {
                return Err(Error::invalid_param(
                    &format!("chunks[{i}].chunk_id"),
                    "''",
                    "Must not be empty",
                ));
            }
            if !seen.insert(chunk.chunk_id.as_str()) {
                return Err(Error::invalid_param(
                    &format!("chunks[{i}].chunk_id"),
                    &chunk.chunk_id,
                    "Chunk ids must be unique within a request",
                ));
            }
            if let Some(e) = &chunk.embedding {
                if e.len() != store.embedding_dimension as usize {
                    return Err(Error::invalid_param(
                        &format!("chunks[{i}].embedding"),
                        format!("{} dimensions", e.len()),
                        &format!(
                            "Vector store '{}' holds {}-dimensional embeddings ({})",
                            store.identifier, store.embedding_dimension, store.embedding_model
                        ),
                    ));
                }
                if e.iter().any(|x| !x.is_finite()) {
                    return Err(Error::invalid_param(
                        &format!("chunks[{i}].embedding"),
                        "non-finite value",
                        "Embeddings must be finite numbers",
                    ));
                }
            } else if chunk.content.text().trim().is_empty() {
                return Err(Error::invalid_param(
                    &format!("chunks[{i}].content"),
                    "''",
                    "A chunk without an embedding needs text to embed",
                ));
            }
        }
        if req.chunks.is_empty() {
            return Ok(());
        }
        provider.insert_chunks(ctx, store, req.chunks).await
    }

    async fn query_chunks(
        &self,
        ctx: &RequestContext,
        req: QueryChunksRequest,
    ) -> Result<QueryChunksResponse> {
        let (entry, provider) = self.store(ctx, &req.vector_store_id, Action::Read).await?;
        let (k, score_threshold, mode, reranker) =
            query_params(req.params.as_ref(), self.default_reranker)?;
        let query = Self::search_query_text(&req.query.text())?;
        let search = ChunkSearch {
            query,
            embedding: None,
            k,
            score_threshold,
            mode,
            reranker,
            filter: None,
        };
        let hits = provider.search(ctx, &entry.resource, search).await?;
        let (chunks, scores) = hits.into_iter().map(|(c, s)| (c, s as f32)).unzip();
        Ok(QueryChunksResponse { chunks, scores })
    }

    async fn create_vector_store(
        &self,
        ctx: &RequestContext,
        mut req: CreateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        if let Some(e) = &req.expires_after {
            e.validate()?;
        }
        if let Some(c) = &req.chunking_strategy {
            c.validate()?;
        }
        // Llama Stack's extras may come inside metadata; take them out of the user keys.
        let provider_id = req
            .provider_id
            .clone()
            .or_else(|| extra_str(&req, "provider_id"));
        let model_asked = req
            .embedding_model
            .clone()
            .or_else(|| extra_str(&req, "embedding_model"));
        let dim_asked = match req.embedding_dimension {
            Some(d) => Some(d),
            None => match extra_str(&req, "embedding_dimension") {
                Some(s) => Some(s.parse::<u32>().map_err(|_| {
                    Error::invalid_param("embedding_dimension", &s, "Must be a positive integer")
                })?),
                None => None,
            },
        };
        for k in SERVER_METADATA_KEYS {
            req.metadata.remove(k);
        }
        validate_attributes("metadata", &req.metadata)?;
        if let Some(name) = &req.name {
            if name.chars().count() > 256 {
                return Err(Error::invalid_param(
                    "name",
                    format!("{} characters", name.chars().count()),
                    "At most 256 characters",
                ));
            }
        }
        let provider_id = self.pick_provider(provider_id.as_deref())?;
        let embedding_model = match model_asked {
            Some(m) => m,
            None => self
                .config
                .default_embedding_model
                .as_ref()
                .map(ModelRef::identifier)
                .ok_or_else(|| {
                    Error::invalid_param(
                        "embedding_model",
                        "null",
                        "Name an embedding model, or set vector_stores.default_embedding_model in the run config",
                    )
                })?,
        };
        let dim_asked = dim_asked.or_else(|| {
            self.config
                .default_embedding_model
                .as_ref()
                .filter(|m| m.identifier() == embedding_model)
                .and_then(|m| m.embedding_dimensions)
        });
        let dimension = self
            .embedding_model(ctx, &embedding_model, dim_asked)
            .await?;
        let id = format!("vs_{}", uuid::Uuid::new_v4());
        let store = VectorStore {
            identifier: id.clone(),
            provider_id: provider_id.clone(),
            provider_resource_id: id.clone(),
            tag: VectorStoreTag::VectorStore,
            embedding_model: embedding_model.clone(),
            embedding_dimension: dimension,
            vector_store_name: req.name.clone(),
        };
        let provider = self.provider(&provider_id)?.clone();
        // Register first: the policy decides whether the caller may create stores, and the
        // id is taken before the provider allocates anything.
        self.table.register(ctx, store.clone()).await?;
        let new = NewVectorStore {
            store_id: id.clone(),
            embedding_model,
            embedding_dimension: dimension,
            provider_id,
        };
        match provider.create_vector_store(ctx, &store, &new, req).await {
            Ok(object) => Ok(object),
            Err(e) => {
                if let Err(undo) = self.table.unregister(ctx, &id).await {
                    tracing::warn!(vector_store_id = %id, error = %undo, "could not unregister a vector store whose creation failed");
                }
                Err(e)
            }
        }
    }

    async fn list_vector_stores(
        &self,
        ctx: &RequestContext,
        req: ListVectorStoresRequest,
    ) -> Result<VectorStoreList> {
        let limit = req.page_size()?;
        let stores = self.table.list_current(ctx).await?;
        let mut objects = Vec::with_capacity(stores.len());
        for store in stores {
            let provider = self.provider(&store.provider_id)?;
            match provider.get_vector_store(ctx, &store).await {
                Ok(o) => objects.push(o),
                // Deleted between the listing and the read: not part of the page.
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ListPage::paginate(
            objects,
            req.order.unwrap_or(Order::Desc),
            req.after.as_deref(),
            req.before.as_deref(),
            limit,
        ))
    }

    async fn get_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
    ) -> Result<VectorStoreObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        provider.get_vector_store(ctx, &entry.resource).await
    }

    async fn update_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        mut req: UpdateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        if let Some(e) = &req.expires_after {
            e.validate()?;
        }
        if let Some(metadata) = &mut req.metadata {
            if let Some(p) = metadata.get("provider_id") {
                if p.as_str() != Some(entry.resource.provider_id.as_str()) {
                    return Err(Error::invalid_param(
                        "metadata.provider_id",
                        p,
                        "The provider of an existing vector store cannot change",
                    ));
                }
            }
            for k in SERVER_METADATA_KEYS {
                metadata.remove(k);
            }
            validate_attributes("metadata", metadata)?;
        }
        provider
            .update_vector_store(ctx, &entry.resource, req)
            .await
    }

    async fn delete_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
    ) -> Result<VectorStoreDeleted> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Delete).await?;
        provider.delete_vector_store(ctx, &entry.resource).await?;
        self.table.unregister(ctx, vector_store_id).await?;
        Ok(VectorStoreDeleted {
            id: vector_store_id.to_string(),
            object: "vector_store.deleted".to_string(),
            deleted: true,
        })
    }

    async fn search_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: SearchVectorStoreRequest,
    ) -> Result<SearchResponse> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        let k = req.max_results()? as usize;
        let mode = match req.search_mode.as_deref() {
            None => SearchMode::Vector,
            Some(m) => SearchMode::parse(m)?,
        };
        if let Some(f) = &req.filters {
            f.validate()?;
        }
        let options = req.ranking_options.clone().unwrap_or_default();
        let reranker = options.reranker(self.default_reranker)?;
        let score_threshold = match options.score_threshold {
            Some(t) if !t.is_finite() => {
                return Err(Error::invalid_param(
                    "ranking_options.score_threshold",
                    t,
                    "Must be a finite number",
                ))
            }
            Some(t) => t,
            None => 0.0,
        };
        let mut query = Self::search_query_text(&req.query.joined())?;
        if req.rewrite_query {
            query = self.rewrite(ctx, &query).await?;
        }
        let search = ChunkSearch {
            query: query.clone(),
            embedding: None,
            k,
            score_threshold,
            mode,
            reranker,
            filter: req.filters,
        };
        let hits = provider.search(ctx, &entry.resource, search).await?;
        Ok(SearchResponse {
            object: "vector_store.search_results.page".to_string(),
            search_query: vec![query],
            data: hits.into_iter().map(|(c, s)| search_result(c, s)).collect(),
            has_more: false,
            next_page: None,
        })
    }

    async fn attach_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: AttachFileRequest,
    ) -> Result<VectorStoreFileObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        if req.file_id.is_empty() {
            return Err(Error::invalid_param("file_id", "''", "Must not be empty"));
        }
        if let Some(a) = &req.attributes {
            validate_attributes("attributes", a)?;
        }
        if let Some(c) = &req.chunking_strategy {
            c.validate()?;
        }
        provider.attach_file(ctx, &entry.resource, req).await
    }

    async fn list_vector_store_files(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        req.page_size()?;
        provider.list_files(ctx, &entry.resource, req).await
    }

    async fn get_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<VectorStoreFileObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        provider.get_file(ctx, &entry.resource, file_id).await
    }

    async fn update_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
        req: UpdateVectorStoreFileRequest,
    ) -> Result<VectorStoreFileObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        validate_attributes("attributes", &req.attributes)?;
        provider
            .update_file(ctx, &entry.resource, file_id, req)
            .await
    }

    async fn delete_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<VectorStoreFileDeleted> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        provider.delete_file(ctx, &entry.resource, file_id).await?;
        Ok(VectorStoreFileDeleted {
            id: file_id.to_string(),
            object: "vector_store.file.deleted".to_string(),
            deleted: true,
        })
    }

    async fn vector_store_file_content(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
        req: FileContentRequest,
    ) -> Result<VectorStoreFileContent> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        provider
            .file_content(ctx, &entry.resource, file_id, req)
            .await
    }

    async fn create_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: CreateFileBatchRequest,
    ) -> Result<VectorStoreFileBatchObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        if req.file_ids.is_empty() {
            return Err(Error::invalid_param(
                "file_ids",
                "[]",
                "At least one file id is required",
            ));
        }
        if req.file_ids.len() > 500 {
            return Err(Error::invalid_param(
                "file_ids",
                format!("{} ids", req.file_ids.len()),
                "At most 500 files per batch",
            ));
        }
        if let Some(a) = &req.attributes {
            validate_attributes("attributes", a)?;
        }
        if let Some(c) = &req.chunking_strategy {
            c.validate()?;
        }
        provider.create_file_batch(ctx, &entry.resource, req).await
    }

    async fn get_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        provider
            .get_file_batch(ctx, &entry.resource, batch_id)
            .await
    }

    async fn list_file_batch_files(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Read).await?;
        req.page_size()?;
        provider
            .list_file_batch_files(ctx, &entry.resource, batch_id, req)
            .await
    }

    async fn cancel_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        let (entry, provider) = self.store(ctx, vector_store_id, Action::Update).await?;
        provider
            .cancel_file_batch(ctx, &entry.resource, batch_id)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_are_limited() {
        let ok = json!({"a": "x", "n": 1, "b": true});
        assert!(validate_attributes("attributes", ok.as_object().unwrap()).is_ok());
        let nested = json!({"a": {"b": 1}});
        let e = validate_attributes("attributes", nested.as_object().unwrap()).unwrap_err();
        assert!(e.message().contains("attributes.a"), "{e}");
        let many: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(validate_attributes("metadata", &many).is_err());
        let long = json!({"a": "x".repeat(513)});
        assert!(validate_attributes("metadata", long.as_object().unwrap()).is_err());
    }

    #[test]
    fn query_params_parse() {
        let d = Reranker::default();
        let (k, t, m, r) = query_params(None, d).unwrap();
        assert_eq!((k, t, m, r), (3, 0.0, SearchMode::Vector, d));
        let p = json!({"max_chunks": 5, "score_threshold": 0.2, "mode": "hybrid", "ranker": {"type": "weighted", "alpha": 0.8}});
        let (k, t, m, r) = query_params(p.as_object(), d).unwrap();
        assert_eq!((k, t, m), (5, 0.2, SearchMode::Hybrid));
        assert_eq!(r, Reranker::Weighted { alpha: 0.8 });
        for bad in [
            json!({"max_chunks": 0}),
            json!({"mode": "semantic"}),
            json!({"score_threshold": "high"}),
            json!({"ranker": "rrf"}),
        ] {
            assert!(query_params(bad.as_object(), d).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_defaults_and_strategies() {
        let c: VectorStoresConfig = serde_json::from_value(json!({
            "default_embedding_model": {"provider_id": "st", "model_id": "all-MiniLM-L6-v2"},
            "chunk_retrieval_params": {"default_reranker_strategy": "weighted", "weighted_search_alpha": 0.3},
            "file_search_params": {"header_template": "x"}
        }))
        .unwrap();
        assert_eq!(
            c.default_reranker().unwrap(),
            Reranker::Weighted { alpha: 0.3 }
        );
        assert_eq!(
            c.default_embedding_model.unwrap().identifier(),
            "st/all-MiniLM-L6-v2"
        );
        assert!(c.other.contains_key("file_search_params"));
        let bad: VectorStoresConfig = serde_json::from_value(json!({
            "chunk_retrieval_params": {"default_reranker_strategy": "magic"}
        }))
        .unwrap();
        assert!(bad.default_reranker().is_err());
    }
}
