//! The VectorIO API: Llama Stack's chunk insert/query and OpenAI's vector stores (files,
//! file batches, search), plus the [`VectorStore`] resource the routing table keeps.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::resource::Resource;
use crate::storage::Order;

/// Default `max_num_results` of a search.
pub const DEFAULT_MAX_NUM_RESULTS: u32 = 10;
/// Largest `max_num_results` of a search.
pub const MAX_MAX_NUM_RESULTS: u32 = 50;
/// Default chunk size in tokens (OpenAI's `auto` strategy).
pub const DEFAULT_CHUNK_SIZE_TOKENS: u32 = 800;
/// Default chunk overlap in tokens (OpenAI's `auto` strategy).
pub const DEFAULT_CHUNK_OVERLAP_TOKENS: u32 = 400;
/// Default page size of vector store lists.
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// The constant `type` field of a vector store resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum VectorStoreTag {
    /// `"vector_store"`.
    #[default]
    #[serde(rename = "vector_store")]
    VectorStore,
}

/// A vector store as the routing table keeps it: which provider holds it and which
/// embedding model fills it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStore {
    /// The id clients use (`vs_<uuid>` when generated).
    pub identifier: String,
    /// The vector_io provider instance holding it.
    pub provider_id: String,
    /// The provider's own id for it.
    pub provider_resource_id: String,
    /// Always `"vector_store"`.
    #[serde(rename = "type", default)]
    pub tag: VectorStoreTag,
    /// The embedding model identifier (a registered `embedding` model).
    pub embedding_model: String,
    /// The dimension of its vectors.
    pub embedding_dimension: u32,
    /// Its name, if it has one.
    #[serde(default)]
    pub vector_store_name: Option<String>,
}

impl Resource for VectorStore {
    const TYPE: &'static str = "vector_store";
    const DISPLAY: &'static str = "Vector store";
    const LIST_HINT: &'static str = "client.vector_stores.list()";

    fn identifier(&self) -> &str {
        &self.identifier
    }
    fn provider_id(&self) -> &str {
        &self.provider_id
    }
    fn provider_resource_id(&self) -> &str {
        &self.provider_resource_id
    }
}

// ---------------------------------------------------------------------------------------
// Chunks (Llama Stack's low-level API)
// ---------------------------------------------------------------------------------------

/// One item of interleaved content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    /// `{type: "text", text}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{type: "image", image: {url: {uri}} | {data}}`.
    Image {
        /// The image reference.
        image: Value,
    },
}

/// Chunk or query content: a string, one item or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ChunkContent {
    /// Plain text.
    Text(String),
    /// One item.
    Item(ContentItem),
    /// Several items.
    Items(Vec<ContentItem>),
}

impl ChunkContent {
    /// The text of the content (text items joined with a space; images contribute nothing).
    pub fn text(&self) -> String {
        fn item_text(item: &ContentItem) -> Option<&str> {
            match item {
                ContentItem::Text { text } => Some(text),
                ContentItem::Image { .. } => None,
            }
        }
        match self {
            ChunkContent::Text(t) => t.clone(),
            ChunkContent::Item(i) => item_text(i).unwrap_or_default().to_string(),
            ChunkContent::Items(items) => items
                .iter()
                .filter_map(item_text)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl From<&str> for ChunkContent {
    fn from(s: &str) -> Self {
        ChunkContent::Text(s.to_string())
    }
}

impl From<String> for ChunkContent {
    fn from(s: String) -> Self {
        ChunkContent::Text(s)
    }
}

/// Where a chunk came from and how it was cut (Llama Stack's `ChunkMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkMetadata {
    /// The chunk id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_id: Option<String>,
    /// The document (file) it was cut from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// Where the document came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Unix seconds of creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp: Option<i64>,
    /// Unix seconds of the last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_timestamp: Option<i64>,
    /// `start-end` token window within the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_window: Option<String>,
    /// The tokenizer that counted the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_tokenizer: Option<String>,
    /// Tokens in the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_token_count: Option<u32>,
    /// Tokens in the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_token_count: Option<u32>,
}

/// A chunk of a document with its metadata and (once stored) its embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Chunk {
    /// The content.
    pub content: ChunkContent,
    /// A unique id within the vector store.
    pub chunk_id: String,
    /// Attributes (filterable), e.g. `file_id`, `filename`, user attributes.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Provenance.
    #[serde(default)]
    pub chunk_metadata: ChunkMetadata,
    /// The vector; computed with the store's embedding model on insert when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The model that made the embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// The embedding's dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<u32>,
}

impl Chunk {
    /// A chunk of text with an id and no embedding yet.
    pub fn new(chunk_id: impl Into<String>, text: impl Into<String>) -> Self {
        Chunk {
            content: ChunkContent::Text(text.into()),
            chunk_id: chunk_id.into(),
            metadata: Map::new(),
            chunk_metadata: ChunkMetadata::default(),
            embedding: None,
            embedding_model: None,
            embedding_dimension: None,
        }
    }

    /// Adds one metadata attribute.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The document id: `chunk_metadata.document_id`, else `metadata.document_id`.
    pub fn document_id(&self) -> Option<&str> {
        self.chunk_metadata
            .document_id
            .as_deref()
            .or_else(|| self.metadata.get("document_id").and_then(Value::as_str))
    }
}

/// `POST /v1/vector-io/insert` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InsertChunksRequest {
    /// The vector store.
    pub vector_store_id: String,
    /// The chunks (ids unique within the store; an existing id is replaced).
    pub chunks: Vec<Chunk>,
    /// Accepted for compatibility; chunks do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/vector-io/query` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueryChunksRequest {
    /// The vector store.
    pub vector_store_id: String,
    /// The query content.
    pub query: ChunkContent,
    /// `max_chunks` (default 3), `score_threshold` (0.0), `mode` (`vector`, `keyword`,
    /// `hybrid`), `ranker` (`{type: rrf, impact_factor}` or `{type: weighted, alpha}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// `POST /v1/vector-io/query` answer: chunks and their scores, best first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueryChunksResponse {
    /// The chunks.
    pub chunks: Vec<Chunk>,
    /// One score per chunk (higher is better).
    pub scores: Vec<f32>,
}

// ---------------------------------------------------------------------------------------
// Search options shared by the low-level query and OpenAI search
// ---------------------------------------------------------------------------------------

/// How a search finds chunks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest embeddings.
    #[default]
    Vector,
    /// Full-text (BM25-style) match.
    Keyword,
    /// Both, fused by a ranker.
    Hybrid,
}

impl SearchMode {
    /// Parses `vector`, `keyword` or `hybrid`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "vector" => Ok(SearchMode::Vector),
            "keyword" => Ok(SearchMode::Keyword),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(Error::invalid_param(
                "search_mode",
                other,
                "Must be one of: vector, keyword, hybrid",
            )),
        }
    }
}

/// How hybrid search fuses the vector and keyword lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reranker {
    /// Reciprocal rank fusion: `Σ 1 / (impact_factor + rank)`.
    Rrf {
        /// The `k` of RRF (> 0; 60 by default).
        impact_factor: f64,
    },
    /// `alpha · vector + (1 − alpha) · keyword` over min-max normalized scores.
    Weighted {
        /// Weight of the vector score, 0..=1 (0.5 by default).
        alpha: f64,
    },
    /// Min-max normalized scores, summed.
    Normalized,
}

impl Default for Reranker {
    fn default() -> Self {
        Reranker::Rrf {
            impact_factor: DEFAULT_RRF_IMPACT_FACTOR,
        }
    }
}

/// RRF's `k` unless configured otherwise.
pub const DEFAULT_RRF_IMPACT_FACTOR: f64 = 60.0;
/// Weighted fusion's `alpha` unless configured otherwise.
pub const DEFAULT_WEIGHTED_ALPHA: f64 = 0.5;

/// A resolved search: what a vector_io provider executes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSearch {
    /// The query text (keyword search; also what is embedded).
    pub query: String,
    /// The query embedding (vector and hybrid modes).
    pub embedding: Option<Vec<f32>>,
    /// At most this many chunks.
    pub k: usize,
    /// Drop chunks scoring below this.
    pub score_threshold: f64,
    /// Vector, keyword or hybrid.
    pub mode: SearchMode,
    /// Fusion for hybrid mode.
    pub reranker: Reranker,
    /// Only chunks whose metadata matches.
    pub filter: Option<AttributeFilter>,
}

/// `ranking_options` of a search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RankingOptions {
    /// `rrf`, `weighted` or `normalized` (hybrid fusion); `auto`/`default`/`none` = the
    /// configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranker: Option<String>,
    /// Drop results scoring below this (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f64>,
    /// Weighted fusion: weight of the vector score, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// RRF's `k` (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_factor: Option<f64>,
    /// `{vector, keyword}` weights summing to 1 (weighted fusion; `alpha` = `vector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Map<String, Value>>,
}

impl RankingOptions {
    /// The fusion these options ask for, `default` when they name none.
    pub fn reranker(&self, default: Reranker) -> Result<Reranker> {
        let finite = |name: &str, v: f64| -> Result<f64> {
            if v.is_finite() {
                Ok(v)
            } else {
                Err(Error::invalid_param(name, v, "Must be a finite number"))
            }
        };
        let alpha = match (&self.alpha, &self.weights) {
            (Some(a), _) => Some(finite("ranking_options.alpha", *a)?),
            (None, Some(w)) => {
                let get = |k: &str| w.get(k).and_then(Value::as_f64);
                let (v, kw) = (get("vector"), get("keyword"));
                if let Some(k) = w
                    .keys()
                    .find(|k| !matches!(k.as_str(), "vector" | "keyword"))
                {
                    return Err(Error::invalid_param(
                        "ranking_options.weights",
                        k,
                        "Only 'vector' and 'keyword' weights are supported",
                    ));
                }
                match (v, kw) {
                    (Some(v), Some(k)) if ((v + k) - 1.0).abs() > 1e-6 => {
                        return Err(Error::invalid_param(
                            "ranking_options.weights",
                            format!("{{vector: {v}, keyword: {k}}}"),
                            "Weights must sum to 1.0",
                        ))
                    }
                    (Some(v), _) => Some(v),
                    (None, Some(k)) => Some(1.0 - k),
                    (None, None) => None,
                }
            }
            (None, None) => None,
        };
        if let Some(a) = alpha {
            if !(0.0..=1.0).contains(&a) {
                return Err(Error::invalid_param(
                    "ranking_options.alpha",
                    a,
                    "Must be between 0 and 1",
                ));
            }
        }
        if let Some(k) = self.impact_factor {
            if !(k.is_finite() && k > 0.0) {
                return Err(Error::invalid_param(
                    "ranking_options.impact_factor",
                    k,
                    "Must be greater than 0",
                ));
            }
        }
        let named = self
            .ranker
            .as_deref()
            .filter(|r| !matches!(*r, "auto" | "default" | "none" | "" | "default-2024-11-15"));
        Ok(match named {
            Some("rrf") => Reranker::Rrf {
                impact_factor: self.impact_factor.unwrap_or(match default {
                    Reranker::Rrf { impact_factor } => impact_factor,
                    _ => DEFAULT_RRF_IMPACT_FACTOR,
                }),
            },
            Some("weighted") => Reranker::Weighted {
                alpha: alpha.unwrap_or(match default {
                    Reranker::Weighted { alpha } => alpha,
                    _ => DEFAULT_WEIGHTED_ALPHA,
                }),
            },
            Some("normalized") => Reranker::Normalized,
            Some(other) => {
                return Err(Error::invalid_param(
                    "ranking_options.ranker",
                    other,
                    "Must be one of: rrf, weighted, normalized, auto",
                ))
            }
            None => match (default, alpha, self.impact_factor) {
                (_, Some(alpha), None) => Reranker::Weighted { alpha },
                (_, None, Some(impact_factor)) => Reranker::Rrf { impact_factor },
                (d, _, _) => d,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// Attribute filters
// ---------------------------------------------------------------------------------------

/// A comparison against one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    /// The attribute.
    pub key: String,
    /// The value compared against (an array for `in` / `nin`).
    pub value: Value,
}

/// Several filters combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Compound {
    /// The filters.
    pub filters: Vec<AttributeFilter>,
}

/// OpenAI's attribute filter: a comparison or a compound of filters, nested freely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AttributeFilter {
    /// Equal.
    Eq(Comparison),
    /// Not equal.
    Ne(Comparison),
    /// Greater than.
    Gt(Comparison),
    /// Greater than or equal.
    Gte(Comparison),
    /// Less than.
    Lt(Comparison),
    /// Less than or equal.
    Lte(Comparison),
    /// One of the listed values.
    In(Comparison),
    /// None of the listed values.
    Nin(Comparison),
    /// All hold.
    And(Compound),
    /// Any holds.
    Or(Compound),
}

/// Nesting depth beyond which a filter is rejected.
const MAX_FILTER_DEPTH: usize = 32;

impl AttributeFilter {
    /// `key == value`.
    pub fn eq(key: impl Into<String>, value: impl Into<Value>) -> Self {
        AttributeFilter::Eq(Comparison {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Parses a filter from JSON; errors say what is wrong where.
    pub fn from_value(value: &Value) -> Result<Self> {
        let f: AttributeFilter = serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid_param("filters", value, &format!("Invalid filter: {e}")))?;
        f.validate()?;
        Ok(f)
    }

    /// Checks operand types: `in`/`nin` take an array of scalars, ordering comparisons a
    /// number or a string, equality a scalar; compounds are not empty.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<()> {
        if depth > MAX_FILTER_DEPTH {
            return Err(Error::invalid_param(
                "filters",
                format!("depth {depth}"),
                "Filters may nest at most 32 levels",
            ));
        }
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        match self {
            AttributeFilter::Eq(c) | AttributeFilter::Ne(c) => {
                if !scalar(&c.value) {
                    return Err(bad_operand(self.op(), c, "a string, number or boolean"));
                }
            }
            AttributeFilter::Gt(c)
            | AttributeFilter::Gte(c)
            | AttributeFilter::Lt(c)
            | AttributeFilter::Lte(c) => {
                if !matches!(c.value, Value::String(_) | Value::Number(_)) {
                    return Err(bad_operand(self.op(), c, "a number or a string"));
                }
            }
            AttributeFilter::In(c) | AttributeFilter::Nin(c) => match &c.value {
                Value::Array(items) if items.iter().all(scalar) => {}
                _ => {
                    return Err(bad_operand(
                        self.op(),
                        c,
                        "an array of strings, numbers or booleans",
                    ))
                }
            },
            AttributeFilter::And(c) | AttributeFilter::Or(c) => {
                if c.filters.is_empty() {
                    return Err(Error::invalid_param(
                        "filters",
                        format!("{{type: {}, filters: []}}", self.op()),
                        "A compound filter needs at least one filter",
                    ));
                }
                for f in &c.filters {
                    f.validate_at(depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// The operator name (`eq`, `and`, ...).
    pub fn op(&self) -> &'static str {
        match self {
            AttributeFilter::Eq(_) => "eq",
            AttributeFilter::Ne(_) => "ne",
            AttributeFilter::Gt(_) => "gt",
            AttributeFilter::Gte(_) => "gte",
            AttributeFilter::Lt(_) => "lt",
            AttributeFilter::Lte(_) => "lte",
            AttributeFilter::In(_) => "in",
            AttributeFilter::Nin(_) => "nin",
            AttributeFilter::And(_) => "and",
            AttributeFilter::Or(_) => "or",
        }
    }

    /// Whether `attributes` satisfy the filter. A comparison on a missing attribute is
    /// false (`ne` and `nin` included); numbers compare as numbers, strings as strings,
    /// and values of different types are never equal or ordered.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        use std::cmp::Ordering;
        let cmp =
            |c: &Comparison| -> Option<Ordering> { compare(attributes.get(&c.key)?, &c.value) };
        match self {
            AttributeFilter::Eq(c) => cmp(c) == Some(Ordering::Equal),
            AttributeFilter::Ne(c) => {
                attributes.contains_key(&c.key) && cmp(c) != Some(Ordering::Equal)
            }
            AttributeFilter::Gt(c) => cmp(c) == Some(Ordering::Greater),
            AttributeFilter::Gte(c) => matches!(cmp(c), Some(Ordering::Greater | Ordering::Equal)),
            AttributeFilter::Lt(c) => cmp(c) == Some(Ordering::Less),
            AttributeFilter::Lte(c) => matches!(cmp(c), Some(Ordering::Less | Ordering::Equal)),
            AttributeFilter::In(c) | AttributeFilter::Nin(c) => {
                let Some(actual) = attributes.get(&c.key) else {
                    return false;
                };
                let found = c.value.as_array().is_some_and(|items| {
                    items
                        .iter()
                        .any(|v| compare(actual, v) == Some(Ordering::Equal))
                });
                found == matches!(self, AttributeFilter::In(_))
            }
            AttributeFilter::And(c) => c.filters.iter().all(|f| f.matches(attributes)),
            AttributeFilter::Or(c) => c.filters.iter().any(|f| f.matches(attributes)),
        }
    }
}

fn bad_operand(op: &str, c: &Comparison, expected: &str) -> Error {
    Error::invalid_param(
        "filters",
        format!("{{type: {op}, key: {}, value: {}}}", c.key, c.value),
        &format!("'{op}' compares against {expected}"),
    )
}

/// Compares two attribute values of the same kind.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// OpenAI vector stores
// ---------------------------------------------------------------------------------------

/// Counts of a store's (or batch's) files by status.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct FileCounts {
    /// Ingested.
    pub completed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Failed.
    pub failed: u64,
    /// Being ingested.
    pub in_progress: u64,
    /// All of them.
    pub total: u64,
}

impl FileCounts {
    /// Adds one file of `status` (`delta` = 1) or removes one (`delta` = -1).
    pub fn apply(&mut self, status: VectorStoreFileStatus, delta: i64) {
        let bump = |n: &mut u64| *n = n.saturating_add_signed(delta);
        match status {
            VectorStoreFileStatus::Completed => bump(&mut self.completed),
            VectorStoreFileStatus::Cancelled => bump(&mut self.cancelled),
            VectorStoreFileStatus::Failed => bump(&mut self.failed),
            VectorStoreFileStatus::InProgress => bump(&mut self.in_progress),
        }
        bump(&mut self.total);
    }
}

/// When a vector store expires: `days` after it was last active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreExpiresAfter {
    /// Always `last_active_at`.
    pub anchor: String,
    /// Days, 1 to 365.
    pub days: u32,
}

impl VectorStoreExpiresAfter {
    /// Checks the anchor and the range of `days`.
    pub fn validate(&self) -> Result<()> {
        if self.anchor != "last_active_at" {
            return Err(Error::invalid_param(
                "expires_after.anchor",
                &self.anchor,
                "Must be 'last_active_at'",
            ));
        }
        if !(1..=365).contains(&self.days) {
            return Err(Error::invalid_param(
                "expires_after.days",
                self.days,
                "Must be between 1 and 365",
            ));
        }
        Ok(())
    }
}

/// A vector store (`VectorStoreObject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreObject {
    /// `vs_<uuid>`.
    pub id: String,
    /// Always `"vector_store"`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Its name.
    pub name: Option<String>,
    /// Bytes of stored content.
    pub usage_bytes: u64,
    /// Files by status.
    pub file_counts: FileCounts,
    /// `in_progress` while files are being ingested, `completed`, or `expired`.
    pub status: String,
    /// Expiry policy.
    pub expires_after: Option<VectorStoreExpiresAfter>,
    /// Unix seconds it expires at.
    pub expires_at: Option<i64>,
    /// Unix seconds of the last search or change.
    pub last_active_at: Option<i64>,
    /// User metadata plus `provider_id`, `provider_vector_store_id`, `embedding_model`
    /// and `embedding_dimension` (a string).
    pub metadata: Map<String, Value>,
}

/// Chunking of attached files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChunkingStrategy {
    /// 800-token chunks overlapping by 400.
    #[default]
    Auto,
    /// Explicit sizes.
    Static {
        /// The sizes.
        #[serde(rename = "static")]
        config: StaticChunking,
    },
}

/// Sizes of static chunking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StaticChunking {
    /// Tokens per chunk, 100 to 4096.
    pub max_chunk_size_tokens: u32,
    /// Tokens shared by neighbouring chunks, at most half the chunk size.
    pub chunk_overlap_tokens: u32,
}

impl ChunkingStrategy {
    /// `{type: static}` with these sizes.
    pub fn fixed(max_chunk_size_tokens: u32, chunk_overlap_tokens: u32) -> Self {
        ChunkingStrategy::Static {
            config: StaticChunking {
                max_chunk_size_tokens,
                chunk_overlap_tokens,
            },
        }
    }

    /// (chunk size, overlap) in tokens.
    pub fn sizes(&self) -> (u32, u32) {
        match self {
            ChunkingStrategy::Auto => (DEFAULT_CHUNK_SIZE_TOKENS, DEFAULT_CHUNK_OVERLAP_TOKENS),
            ChunkingStrategy::Static { config } => {
                (config.max_chunk_size_tokens, config.chunk_overlap_tokens)
            }
        }
    }

    /// Checks the sizes as OpenAI does.
    pub fn validate(&self) -> Result<()> {
        if let ChunkingStrategy::Static { config } = self {
            if !(100..=4096).contains(&config.max_chunk_size_tokens) {
                return Err(Error::invalid_param(
                    "chunking_strategy.static.max_chunk_size_tokens",
                    config.max_chunk_size_tokens,
                    "Must be between 100 and 4096",
                ));
            }
            if config.chunk_overlap_tokens > config.max_chunk_size_tokens / 2 {
                return Err(Error::invalid_param(
                    "chunking_strategy.static.chunk_overlap_tokens",
                    config.chunk_overlap_tokens,
                    "Must not exceed half of max_chunk_size_tokens",
                ));
            }
        }
        Ok(())
    }
}

/// `POST /v1/vector_stores` body. Llama Stack's extras (`embedding_model`,
/// `embedding_dimension`, `provider_id`) may be top-level or inside `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CreateVectorStoreRequest {
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Files to attach right away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<String>,
    /// Expiry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<VectorStoreExpiresAfter>,
    /// Chunking of `file_ids` (and the default of later attachments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking_strategy: Option<ChunkingStrategy>,
    /// Up to 16 string values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The embedding model (default: `vector_stores.default_embedding_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// The dimension (default: the model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<u32>,
    /// The vector_io provider (default: the only one, or `vector_stores.default_provider_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

/// What the router decided for a new store: passed to the provider with the request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVectorStore {
    /// The provider's id for the store.
    pub store_id: String,
    /// The embedding model identifier.
    pub embedding_model: String,
    /// Its dimension.
    pub embedding_dimension: u32,
    /// The provider instance.
    pub provider_id: String,
}

/// `POST /v1/vector_stores/{id}` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateVectorStoreRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New expiry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<VectorStoreExpiresAfter>,
    /// New metadata (replaces the user keys; the server's keys stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Cursor parameters of vector store lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListVectorStoresRequest {
    /// 1..=100 (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// By creation time (default `desc`).
    #[serde(default)]
    pub order: Option<Order>,
    /// Start after this id.
    #[serde(default)]
    pub after: Option<String>,
    /// End before this id.
    #[serde(default)]
    pub before: Option<String>,
}

impl ListVectorStoresRequest {
    /// The page size, checked.
    pub fn page_size(&self) -> Result<usize> {
        page_size(self.limit)
    }
}

fn page_size(limit: Option<usize>) -> Result<usize> {
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid_param(
            "limit",
            limit,
            "Must be between 1 and 100",
        ));
    }
    Ok(limit)
}

/// A page of a cursor list (`{object: "list", data, first_id, last_id, has_more}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListPage<T> {
    /// Always `"list"`.
    pub object: String,
    /// The items.
    pub data: Vec<T>,
    /// The first id (`null` when empty).
    pub first_id: Option<String>,
    /// The last id (`null` when empty).
    pub last_id: Option<String>,
    /// Whether more follow.
    pub has_more: bool,
}

/// Something with an id and a creation time, for cursor lists.
pub trait Listed {
    /// Its id.
    fn id(&self) -> &str;
    /// Unix seconds of creation.
    fn created_at(&self) -> i64;
}

impl<T: Listed + Clone> ListPage<T> {
    /// Sorts `items` by creation time (then id) in `order` and cuts the page between the
    /// `after` and `before` cursors (an unknown cursor is ignored, as Llama Stack does).
    pub fn paginate(
        mut items: Vec<T>,
        order: Order,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Self {
        items.sort_by(|a, b| {
            let o = a
                .created_at()
                .cmp(&b.created_at())
                .then_with(|| a.id().cmp(b.id()));
            match order {
                Order::Asc => o,
                Order::Desc => o.reverse(),
            }
        });
        let start = after
            .and_then(|a| items.iter().position(|i| i.id() == a))
            .map_or(0, |p| p + 1);
        let end = before
            .and_then(|b| items.iter().position(|i| i.id() == b))
            .unwrap_or(items.len())
            .max(start);
        let window = &items[start..end];
        let has_more = window.len() > limit;
        let data: Vec<T> = window.iter().take(limit).cloned().collect();
        ListPage {
            object: "list".to_string(),
            first_id: data.first().map(|i| i.id().to_string()),
            last_id: data.last().map(|i| i.id().to_string()),
            data,
            has_more,
        }
    }
}

impl Listed for VectorStoreObject {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
}

/// A page of vector stores.
pub type VectorStoreList = ListPage<VectorStoreObject>;

/// The answer to deleting a vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreDeleted {
    /// The id.
    pub id: String,
    /// Always `"vector_store.deleted"`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// A search query: one string or several (joined with spaces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SearchQuery {
    /// One query.
    Text(String),
    /// Several, searched as one.
    Texts(Vec<String>),
}

impl SearchQuery {
    /// The query as one string.
    pub fn joined(&self) -> String {
        match self {
            SearchQuery::Text(t) => t.clone(),
            SearchQuery::Texts(v) => v.join(" "),
        }
    }
}

impl From<&str> for SearchQuery {
    fn from(s: &str) -> Self {
        SearchQuery::Text(s.to_string())
    }
}

/// `POST /v1/vector_stores/{id}/search` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchVectorStoreRequest {
    /// The query.
    pub query: SearchQuery,
    /// Attribute filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<AttributeFilter>,
    /// 1..=50 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_results: Option<u32>,
    /// Score threshold and hybrid fusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking_options: Option<RankingOptions>,
    /// Rewrite the query with the configured model before searching.
    #[serde(default)]
    pub rewrite_query: bool,
    /// `vector` (default), `keyword` or `hybrid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<String>,
}

impl SearchVectorStoreRequest {
    /// A vector search for `query`.
    pub fn new(query: impl Into<SearchQuery>) -> Self {
        SearchVectorStoreRequest {
            query: query.into(),
            filters: None,
            max_num_results: None,
            ranking_options: None,
            rewrite_query: false,
            search_mode: None,
        }
    }

    /// The number of results, checked.
    pub fn max_results(&self) -> Result<u32> {
        let n = self.max_num_results.unwrap_or(DEFAULT_MAX_NUM_RESULTS);
        if !(1..=MAX_MAX_NUM_RESULTS).contains(&n) {
            return Err(Error::invalid_param(
                "max_num_results",
                n,
                "Must be between 1 and 50",
            ));
        }
        Ok(n)
    }
}

/// Text of a search result or of a file's content page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContentText {
    /// Always `"text"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
    /// The chunk's embedding (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The chunk's provenance (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_metadata: Option<ChunkMetadata>,
    /// The chunk's attributes (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl ContentText {
    /// `{type: "text", text}`.
    pub fn new(text: impl Into<String>) -> Self {
        ContentText {
            kind: "text".to_string(),
            text: text.into(),
            embedding: None,
            chunk_metadata: None,
            metadata: None,
        }
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResult {
    /// The file the chunk came from (`""` for chunks inserted directly).
    pub file_id: String,
    /// Its name.
    pub filename: String,
    /// Higher is better.
    pub score: f64,
    /// The chunk's attributes.
    pub attributes: Map<String, Value>,
    /// The chunk's text.
    pub content: Vec<ContentText>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResponse {
    /// Always `"vector_store.search_results.page"`.
    pub object: String,
    /// The query searched (after any rewrite).
    pub search_query: Vec<String>,
    /// Hits, best first.
    pub data: Vec<SearchResult>,
    /// Always false.
    pub has_more: bool,
    /// Always null.
    pub next_page: Option<String>,
}

/// Status of a file in a vector store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VectorStoreFileStatus {
    /// Being ingested.
    InProgress,
    /// Ingested.
    Completed,
    /// Cancelled before ingestion finished.
    Cancelled,
    /// Ingestion failed (see `last_error`).
    Failed,
}

/// Why a file failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreFileError {
    /// `server_error`, `unsupported_file`, `invalid_file` or `rate_limit_exceeded`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// A file attached to a vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreFileObject {
    /// The file id.
    pub id: String,
    /// Always `"vector_store.file"`.
    pub object: String,
    /// Filterable attributes (copied onto every chunk).
    pub attributes: Map<String, Value>,
    /// How it was chunked.
    pub chunking_strategy: ChunkingStrategy,
    /// Unix seconds of the attachment.
    pub created_at: i64,
    /// Why it failed, if it did.
    pub last_error: Option<VectorStoreFileError>,
    /// Ingestion status.
    pub status: VectorStoreFileStatus,
    /// Bytes of stored content.
    pub usage_bytes: u64,
    /// The store.
    pub vector_store_id: String,
}

impl Listed for VectorStoreFileObject {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
}

/// `POST /v1/vector_stores/{id}/files` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttachFileRequest {
    /// The uploaded file.
    pub file_id: String,
    /// Filterable attributes (≤ 16 keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// Chunking (default: the store's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking_strategy: Option<ChunkingStrategy>,
}

impl AttachFileRequest {
    /// Attaches `file_id` with the store's chunking and no attributes.
    pub fn new(file_id: impl Into<String>) -> Self {
        AttachFileRequest {
            file_id: file_id.into(),
            attributes: None,
            chunking_strategy: None,
        }
    }
}

/// Cursor parameters of a store's (or batch's) file list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListVectorStoreFilesRequest {
    /// 1..=100 (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// By attachment time (default `desc`).
    #[serde(default)]
    pub order: Option<Order>,
    /// Start after this file id.
    #[serde(default)]
    pub after: Option<String>,
    /// End before this file id.
    #[serde(default)]
    pub before: Option<String>,
    /// Only files with this status.
    #[serde(default)]
    pub filter: Option<VectorStoreFileStatus>,
}

impl ListVectorStoreFilesRequest {
    /// The page size, checked.
    pub fn page_size(&self) -> Result<usize> {
        page_size(self.limit)
    }
}

/// A page of a store's files.
pub type VectorStoreFileList = ListPage<VectorStoreFileObject>;

/// `POST /v1/vector_stores/{id}/files/{file_id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateVectorStoreFileRequest {
    /// The new attributes (replace the old ones, on the file and its chunks).
    pub attributes: Map<String, Value>,
}

/// The answer to removing a file from a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreFileDeleted {
    /// The file id.
    pub id: String,
    /// Always `"vector_store.file.deleted"`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// Query of `GET /v1/vector_stores/{id}/files/{file_id}/content`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileContentRequest {
    /// Include each chunk's embedding.
    #[serde(default)]
    pub include_embeddings: bool,
    /// Include each chunk's metadata.
    #[serde(default)]
    pub include_metadata: bool,
}

/// A file's chunks, in document order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreFileContent {
    /// Always `"vector_store.file_content.page"`.
    pub object: String,
    /// The chunks' texts.
    pub data: Vec<ContentText>,
    /// Always false.
    pub has_more: bool,
    /// Always null.
    pub next_page: Option<String>,
}

/// `POST /v1/vector_stores/{id}/file_batches` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CreateFileBatchRequest {
    /// The files (at least one).
    pub file_ids: Vec<String>,
    /// Attributes for every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// Chunking for every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking_strategy: Option<ChunkingStrategy>,
}

/// Status of a file batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileBatchStatus {
    /// Files are being ingested.
    InProgress,
    /// Every file finished (completed or failed).
    Completed,
    /// Cancelled.
    Cancelled,
    /// Every file failed.
    Failed,
}

/// A file batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreFileBatchObject {
    /// `batch_<uuid>`.
    pub id: String,
    /// Always `"vector_store.file_batch"`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The store.
    pub vector_store_id: String,
    /// Its status.
    pub status: FileBatchStatus,
    /// Its files by status.
    pub file_counts: FileCounts,
}

/// The VectorIO API, as clients call it (ids are the routing table's identifiers).
#[async_trait]
pub trait VectorIo: Send + Sync {
    /// Inserts chunks (embedding those without a vector).
    async fn insert_chunks(&self, ctx: &RequestContext, req: InsertChunksRequest) -> Result<()>;
    /// The chunks nearest to a query.
    async fn query_chunks(
        &self,
        ctx: &RequestContext,
        req: QueryChunksRequest,
    ) -> Result<QueryChunksResponse>;

    /// Creates a vector store owned by the caller.
    async fn create_vector_store(
        &self,
        ctx: &RequestContext,
        req: CreateVectorStoreRequest,
    ) -> Result<VectorStoreObject>;
    /// The caller's vector stores.
    async fn list_vector_stores(
        &self,
        ctx: &RequestContext,
        req: ListVectorStoresRequest,
    ) -> Result<VectorStoreList>;
    /// One vector store.
    async fn get_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
    ) -> Result<VectorStoreObject>;
    /// Renames it, changes its expiry or metadata.
    async fn update_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: UpdateVectorStoreRequest,
    ) -> Result<VectorStoreObject>;
    /// Deletes it with its chunks (the files themselves stay).
    async fn delete_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
    ) -> Result<VectorStoreDeleted>;
    /// Searches it.
    async fn search_vector_store(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: SearchVectorStoreRequest,
    ) -> Result<SearchResponse>;

    /// Attaches an uploaded file: parse, chunk, embed, insert. Returns `completed` or
    /// `failed` (with `last_error`).
    async fn attach_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: AttachFileRequest,
    ) -> Result<VectorStoreFileObject>;
    /// The store's files.
    async fn list_vector_store_files(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList>;
    /// One attached file.
    async fn get_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<VectorStoreFileObject>;
    /// Replaces an attached file's attributes.
    async fn update_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
        req: UpdateVectorStoreFileRequest,
    ) -> Result<VectorStoreFileObject>;
    /// Removes a file and its chunks from the store.
    async fn delete_vector_store_file(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
    ) -> Result<VectorStoreFileDeleted>;
    /// An attached file's chunks.
    async fn vector_store_file_content(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        file_id: &str,
        req: FileContentRequest,
    ) -> Result<VectorStoreFileContent>;

    /// Attaches several files in the background.
    async fn create_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        req: CreateFileBatchRequest,
    ) -> Result<VectorStoreFileBatchObject>;
    /// A batch's status.
    async fn get_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject>;
    /// A batch's files.
    async fn list_file_batch_files(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList>;
    /// Cancels the batch's files not yet ingested.
    async fn cancel_file_batch(
        &self,
        ctx: &RequestContext,
        vector_store_id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filters_parse_validate_and_match() {
        let f = AttributeFilter::from_value(&json!({
            "type": "and",
            "filters": [
                {"type": "eq", "key": "lang", "value": "en"},
                {"type": "or", "filters": [
                    {"type": "gte", "key": "year", "value": 2020},
                    {"type": "in", "key": "tag", "value": ["a", "b"]}
                ]}
            ]
        }))
        .unwrap();
        assert!(f.matches(&attrs(json!({"lang": "en", "year": 2021}))));
        assert!(f.matches(&attrs(json!({"lang": "en", "year": 1999, "tag": "b"}))));
        assert!(!f.matches(&attrs(json!({"lang": "en", "year": 1999, "tag": "c"}))));
        assert!(!f.matches(&attrs(json!({"lang": "de", "year": 2021}))));
        // Missing keys never match, not even `ne`/`nin`.
        let ne =
            AttributeFilter::from_value(&json!({"type": "ne", "key": "x", "value": 1})).unwrap();
        assert!(!ne.matches(&attrs(json!({}))));
        assert!(ne.matches(&attrs(json!({"x": 2}))));
        // Numbers compare as numbers across int/float.
        let lt =
            AttributeFilter::from_value(&json!({"type": "lt", "key": "x", "value": 2.5})).unwrap();
        assert!(lt.matches(&attrs(json!({"x": 2}))));
        // Types that do not match never compare.
        assert!(!lt.matches(&attrs(json!({"x": "1"}))));

        for bad in [
            json!({"type": "like", "key": "x", "value": 1}),
            json!({"type": "in", "key": "x", "value": 1}),
            json!({"type": "gt", "key": "x", "value": true}),
            json!({"type": "and", "filters": []}),
            json!({"type": "eq", "value": 1}),
        ] {
            let e = AttributeFilter::from_value(&bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest, "{bad}");
            assert!(e.message().contains("filters"), "{e}");
        }
    }

    #[test]
    fn ranking_options_resolve_rerankers() {
        let d = Reranker::default();
        assert_eq!(RankingOptions::default().reranker(d).unwrap(), d);
        let w = RankingOptions {
            ranker: Some("weighted".into()),
            alpha: Some(0.7),
            ..Default::default()
        };
        assert_eq!(w.reranker(d).unwrap(), Reranker::Weighted { alpha: 0.7 });
        let weights = RankingOptions {
            weights: Some(attrs(json!({"vector": 0.3, "keyword": 0.7}))),
            ..Default::default()
        };
        assert_eq!(
            weights.reranker(d).unwrap(),
            Reranker::Weighted { alpha: 0.3 }
        );
        let bad = RankingOptions {
            weights: Some(attrs(json!({"vector": 0.3, "keyword": 0.3}))),
            ..Default::default()
        };
        assert!(bad.reranker(d).is_err());
        let rrf = RankingOptions {
            ranker: Some("rrf".into()),
            impact_factor: Some(10.0),
            ..Default::default()
        };
        assert_eq!(
            rrf.reranker(d).unwrap(),
            Reranker::Rrf {
                impact_factor: 10.0
            }
        );
        assert!(RankingOptions {
            ranker: Some("bogus".into()),
            ..Default::default()
        }
        .reranker(d)
        .is_err());
    }

    #[test]
    fn chunking_and_pages() {
        let s: ChunkingStrategy = serde_json::from_value(json!({
            "type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 100}
        }))
        .unwrap();
        assert_eq!(s.sizes(), (300, 100));
        assert!(s.validate().is_ok());
        assert!(ChunkingStrategy::fixed(300, 200).validate().is_err());
        assert!(ChunkingStrategy::fixed(50, 0).validate().is_err());
        assert_eq!(
            serde_json::to_value(ChunkingStrategy::Auto).unwrap(),
            json!({"type": "auto"})
        );

        #[derive(Clone)]
        struct It(&'static str, i64);
        impl Listed for It {
            fn id(&self) -> &str {
                self.0
            }
            fn created_at(&self) -> i64 {
                self.1
            }
        }
        let items = vec![It("a", 1), It("b", 2), It("c", 3), It("d", 4)];
        let p = ListPage::paginate(items.clone(), Order::Desc, None, None, 2);
        assert_eq!(p.data.iter().map(|i| i.0).collect::<Vec<_>>(), ["d", "c"]);
        assert!(p.has_more);
        let p = ListPage::paginate(items.clone(), Order::Desc, Some("c"), None, 2);
        assert_eq!(p.data.iter().map(|i| i.0).collect::<Vec<_>>(), ["b", "a"]);
        assert!(!p.has_more);
        let p = ListPage::paginate(items, Order::Asc, None, Some("c"), 10);
        assert_eq!(p.data.iter().map(|i| i.0).collect::<Vec<_>>(), ["a", "b"]);
    }
}
