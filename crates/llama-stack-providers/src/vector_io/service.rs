//! [`VectorStoreService`]: OpenAI vector stores over any [`VectorIndex`]: store, file and
//! batch records in a KV store, file ingestion (extract → chunk → embed → insert),
//! search in vector, keyword and hybrid modes.
//!
//! Records live in the provider's `persistence` KV store, one key per store, per attached
//! file and per batch, so counts are computed from the file records on read and stay
//! right when several processes share the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::api::files::Files;
use llama_stack_core::api::inference::{
    EmbeddingInput, EmbeddingVector, EmbeddingsRequest, Inference,
};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{
    AttachFileRequest, Chunk, ChunkContent, ChunkMetadata, ChunkSearch, ChunkingStrategy,
    ContentText, CreateFileBatchRequest, CreateVectorStoreRequest, FileBatchStatus,
    FileContentRequest, FileCounts, ListPage, ListVectorStoreFilesRequest, NewVectorStore,
    Reranker, SearchMode, UpdateVectorStoreFileRequest, UpdateVectorStoreRequest, VectorStore,
    VectorStoreExpiresAfter, VectorStoreFileBatchObject, VectorStoreFileContent,
    VectorStoreFileError, VectorStoreFileList, VectorStoreFileObject, VectorStoreFileStatus,
    VectorStoreObject,
};
use llama_stack_core::provider::VectorIoProvider;
use llama_stack_core::storage::{KvStore, Order};
use llama_stack_core::{Error, ErrorKind, RequestContext, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::index::{Scored, VectorIndex};
use super::ingest;

/// Texts per embeddings call during ingestion.
const EMBED_BATCH: usize = 256;
/// Attribute keys the service sets on every chunk of a file.
const RESERVED_KEYS: [&str; 4] = ["file_id", "filename", "document_id", "chunk_id"];
/// How stale `last_active_at` may get before a search writes it again.
const ACTIVITY_GRANULARITY: i64 = 60;

/// Settings of the service (from the provider config and `vector_stores`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceSettings {
    /// Files ingested at once by a file batch.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_files_per_batch: usize,
    /// Hybrid search fetches `k × chunk_multiplier` candidates per side.
    #[serde(default = "default_multiplier")]
    pub chunk_multiplier: usize,
    /// Largest file (bytes) ingested.
    #[serde(default = "default_max_file")]
    pub max_file_size_bytes: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            max_concurrent_files_per_batch: default_concurrency(),
            chunk_multiplier: default_multiplier(),
            max_file_size_bytes: default_max_file(),
        }
    }
}

fn default_concurrency() -> usize {
    3
}
fn default_multiplier() -> usize {
    5
}
fn default_max_file() -> u64 {
    512 * 1024 * 1024
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Escapes an id for use inside a key (`%` and `:` encoded), so one id is never a key
/// prefix of another id's records.
fn key_part(id: &str) -> String {
    id.replace('%', "%25").replace(':', "%3A")
}

fn store_key(store_id: &str) -> String {
    format!("vector_stores:v1::{}", key_part(store_id))
}
fn files_prefix(store_id: &str) -> String {
    format!("vector_store_files:v1::{}::", key_part(store_id))
}
fn file_key(store_id: &str, file_id: &str) -> String {
    format!("{}{}", files_prefix(store_id), key_part(file_id))
}
fn batches_prefix(store_id: &str) -> String {
    format!("vector_store_batches:v1::{}::", key_part(store_id))
}
fn batch_key(store_id: &str, batch_id: &str) -> String {
    format!("{}{}", batches_prefix(store_id), key_part(batch_id))
}

/// A store as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoreRecord {
    created_at: i64,
    name: Option<String>,
    expires_after: Option<VectorStoreExpiresAfter>,
    last_active_at: i64,
    metadata: Map<String, Value>,
    chunking_strategy: ChunkingStrategy,
    embedding_model: String,
    embedding_dimension: u32,
}

/// An attached file as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    object: VectorStoreFileObject,
    #[serde(default)]
    filename: String,
    #[serde(default)]
    chunk_ids: Vec<String>,
}

/// A file batch as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BatchRecord {
    id: String,
    created_at: i64,
    file_ids: Vec<String>,
    attributes: Option<Map<String, Value>>,
    chunking_strategy: Option<ChunkingStrategy>,
    cancelled: bool,
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T> {
    serde_json::from_str(value)
        .map_err(|e| Error::internal(format!("corrupt vector store record '{key}': {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("cannot encode record: {e}")))
}

fn file_not_found(file_id: &str, store: &VectorStore) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "File '{file_id}' not found in vector store '{}'.",
            store.identifier
        ),
    )
    .with_context("resource_id", file_id)
}

fn error_code(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::Unsupported => "unsupported_file",
        ErrorKind::InvalidRequest | ErrorKind::PayloadTooLarge => "invalid_file",
        ErrorKind::RateLimited => "rate_limit_exceeded",
        _ => "server_error",
    }
}

/// OpenAI vector stores over one [`VectorIndex`].
pub struct VectorStoreService {
    inner: Arc<Inner>,
}

struct Inner {
    index: Arc<dyn VectorIndex>,
    kv: Arc<dyn KvStore>,
    inference: Arc<dyn Inference>,
    files: Option<Arc<dyn Files>>,
    settings: ServiceSettings,
    /// Running batches, by batch id, so a cancel stops them.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl VectorStoreService {
    /// A service storing chunks in `index` and records in `kv`, embedding with
    /// `inference` and reading attached files through `files`.
    pub fn new(
        index: Arc<dyn VectorIndex>,
        kv: Arc<dyn KvStore>,
        inference: Arc<dyn Inference>,
        files: Option<Arc<dyn Files>>,
        settings: ServiceSettings,
    ) -> Self {
        VectorStoreService {
            inner: Arc::new(Inner {
                index,
                kv,
                inference,
                files,
                settings,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    async fn record(&self, store: &VectorStore) -> Result<StoreRecord> {
        let key = store_key(&store.provider_resource_id);
        match self.kv.get(&key).await? {
            Some(v) => decode(&key, &v),
            None => Err(Error::not_found("Vector store", &store.identifier)),
        }
    }

    async fn put_record(&self, store: &VectorStore, record: &StoreRecord) -> Result<()> {
        self.kv
            .set(
                &store_key(&store.provider_resource_id),
                &encode(record)?,
                None,
            )
            .await
    }

    async fn file_records(&self, store: &VectorStore) -> Result<Vec<FileRecord>> {
        let prefix = files_prefix(&store.provider_resource_id);
        self.kv
            .scan_prefix(&prefix)
            .await?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    async fn file_record(&self, store: &VectorStore, file_id: &str) -> Result<Option<FileRecord>> {
        let key = file_key(&store.provider_resource_id, file_id);
        match self.kv.get(&key).await? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    async fn put_file(&self, store: &VectorStore, record: &FileRecord) -> Result<()> {
        self.kv
            .set(
                &file_key(&store.provider_resource_id, &record.object.id),
                &encode(record)?,
                None,
            )
            .await
    }

    async fn object(&self, store: &VectorStore, record: &StoreRecord) -> Result<VectorStoreObject> {
        let files = self.file_records(store).await?;
        let mut counts = FileCounts::default();
        let mut usage = 0u64;
        for f in &files {
            counts.apply(f.object.status, 1);
            usage += f.object.usage_bytes;
        }
        let expires_at = record
            .expires_after
            .as_ref()
            .map(|e| record.last_active_at + i64::from(e.days) * 86_400);
        let status = if expires_at.is_some_and(|t| t <= now()) {
            "expired"
        } else if counts.in_progress > 0 {
            "in_progress"
        } else {
            "completed"
        };
        let mut metadata = record.metadata.clone();
        metadata.insert(
            "provider_id".into(),
            Value::String(store.provider_id.clone()),
        );
        metadata.insert(
            "provider_vector_store_id".into(),
            Value::String(store.provider_resource_id.clone()),
        );
        metadata.insert(
            "embedding_model".into(),
            Value::String(record.embedding_model.clone()),
        );
        metadata.insert(
            "embedding_dimension".into(),
            Value::String(record.embedding_dimension.to_string()),
        );
        Ok(VectorStoreObject {
            id: store.identifier.clone(),
            object: "vector_store".into(),
            created_at: record.created_at,
            name: record.name.clone(),
            usage_bytes: usage,
            file_counts: counts,
            status: status.into(),
            expires_after: record.expires_after.clone(),
            expires_at,
            last_active_at: Some(record.last_active_at),
            metadata,
        })
    }

    async fn touch(&self, store: &VectorStore) {
        let Ok(mut record) = self.record(store).await else {
            return;
        };
        let t = now();
        if t - record.last_active_at >= ACTIVITY_GRANULARITY {
            record.last_active_at = t;
            if let Err(e) = self.put_record(store, &record).await {
                tracing::debug!(error = %e, "recording vector store activity failed");
            }
        }
    }

    /// Embeds `texts` with the store's model, checking the dimension.
    async fn embed(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            let req = EmbeddingsRequest::new(
                store.embedding_model.clone(),
                EmbeddingInput::Texts(batch.to_vec()),
            );
            let mut resp = self.inference.embeddings(ctx, req).await?;
            resp.data.sort_by_key(|e| e.index);
            if resp.data.len() != batch.len() {
                return Err(Error::internal(format!(
                    "embedding model '{}' returned {} vectors for {} inputs",
                    store.embedding_model,
                    resp.data.len(),
                    batch.len()
                )));
            }
            for e in resp.data {
                let EmbeddingVector::Float(v) = e.embedding else {
                    return Err(Error::internal("embeddings came back base64-encoded"));
                };
                if v.len() != store.embedding_dimension as usize {
                    return Err(Error::invalid_request(format!(
                        "dimension mismatch: vector store '{}' holds {}-dimensional vectors but embedding model '{}' produced {} dimensions",
                        store.identifier,
                        store.embedding_dimension,
                        store.embedding_model,
                        v.len()
                    )));
                }
                out.push(v);
            }
        }
        Ok(out)
    }

    async fn insert(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        mut chunks: Vec<Chunk>,
    ) -> Result<()> {
        let missing: Vec<usize> = chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.embedding.is_none())
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let texts = missing.iter().map(|&i| chunks[i].content.text()).collect();
            let vectors = self.embed(ctx, store, texts).await?;
            for (i, v) in missing.into_iter().zip(vectors) {
                chunks[i].embedding = Some(v);
                chunks[i].embedding_model = Some(store.embedding_model.clone());
            }
        }
        let t = now();
        for c in &mut chunks {
            c.embedding_dimension = Some(store.embedding_dimension);
            if c.chunk_metadata.chunk_id.is_none() {
                c.chunk_metadata.chunk_id = Some(c.chunk_id.clone());
            }
            if c.chunk_metadata.created_timestamp.is_none() {
                c.chunk_metadata.created_timestamp = Some(t);
            }
            c.chunk_metadata.updated_timestamp = Some(t);
        }
        self.index
            .upsert(&store.provider_resource_id, &chunks)
            .await
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        mut search: ChunkSearch,
    ) -> Result<Vec<Scored>> {
        let id = &store.provider_resource_id;
        let filter = search.filter.as_ref();
        if search.embedding.is_none() && search.mode != SearchMode::Keyword {
            let mut v = self.embed(ctx, store, vec![search.query.clone()]).await?;
            search.embedding = v.pop();
        }
        let embedding = search.embedding.as_deref().unwrap_or_default();
        let hits = match search.mode {
            SearchMode::Vector => {
                self.index
                    .query_vector(id, embedding, search.k, filter)
                    .await?
            }
            SearchMode::Keyword => {
                self.index
                    .query_keyword(id, &search.query, search.k, filter)
                    .await?
            }
            SearchMode::Hybrid => {
                let n = search
                    .k
                    .saturating_mul(self.settings.chunk_multiplier.max(1));
                let (vector, keyword) = tokio::try_join!(
                    self.index.query_vector(id, embedding, n, filter),
                    self.index.query_keyword(id, &search.query, n, filter),
                )?;
                fuse(vector, keyword, search.reranker, search.k)
            }
        };
        self.touch(store).await;
        Ok(hits
            .into_iter()
            .filter(|(_, s)| *s >= search.score_threshold)
            .take(search.k)
            .collect())
    }

    /// Ingests one file into the store and records the outcome. Returns the file object
    /// (`completed` or `failed`); errors only when the record itself cannot be written.
    async fn ingest(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        attributes: Map<String, Value>,
        chunking: ChunkingStrategy,
        cancel: Option<&CancellationToken>,
    ) -> Result<VectorStoreFileObject> {
        let mut record = FileRecord {
            object: VectorStoreFileObject {
                id: file_id.to_string(),
                object: "vector_store.file".into(),
                attributes: attributes.clone(),
                chunking_strategy: chunking.clone(),
                created_at: now(),
                last_error: None,
                status: VectorStoreFileStatus::InProgress,
                usage_bytes: 0,
                vector_store_id: store.identifier.clone(),
            },
            filename: String::new(),
            chunk_ids: Vec::new(),
        };
        self.put_file(store, &record).await?;
        let outcome = self
            .ingest_chunks(
                ctx,
                store,
                file_id,
                &attributes,
                &chunking,
                cancel,
                &mut record,
            )
            .await;
        match outcome {
            Ok(()) => {
                record.object.status = VectorStoreFileStatus::Completed;
            }
            Err(e) => {
                if !record.chunk_ids.is_empty() {
                    if let Err(undo) = self
                        .index
                        .delete(&store.provider_resource_id, &record.chunk_ids)
                        .await
                    {
                        tracing::warn!(file_id, error = %undo, "removing the chunks of a failed file failed");
                    }
                    record.chunk_ids.clear();
                }
                record.object.usage_bytes = 0;
                if cancel.is_some_and(CancellationToken::is_cancelled) {
                    record.object.status = VectorStoreFileStatus::Cancelled;
                } else {
                    tracing::info!(file_id, vector_store_id = %store.identifier, error = %e, "file ingestion failed");
                    record.object.status = VectorStoreFileStatus::Failed;
                    record.object.last_error = Some(VectorStoreFileError {
                        code: error_code(&e).into(),
                        message: e.message().to_string(),
                    });
                }
            }
        }
        // The file may have been removed from the store while it was being ingested.
        if self.file_record(store, file_id).await?.is_none() {
            if !record.chunk_ids.is_empty() {
                self.index
                    .delete(&store.provider_resource_id, &record.chunk_ids)
                    .await?;
            }
            return Err(file_not_found(file_id, store));
        }
        self.put_file(store, &record).await?;
        Ok(record.object)
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_chunks(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        attributes: &Map<String, Value>,
        chunking: &ChunkingStrategy,
        cancel: Option<&CancellationToken>,
        record: &mut FileRecord,
    ) -> Result<()> {
        let files = self.files.as_ref().ok_or_else(|| {
            Error::unsupported(
                "attaching files needs a files provider; add one under providers.files (e.g. inline::localfs)",
            )
        })?;
        let meta = files.get_file(ctx, file_id).await?;
        if meta.bytes > self.settings.max_file_size_bytes {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "file '{}' has {} bytes; the largest file ingested is {} bytes",
                    meta.filename, meta.bytes, self.settings.max_file_size_bytes
                ),
            ));
        }
        record.filename = meta.filename.clone();
        let content = files.file_content(ctx, file_id).await?;
        let (size, overlap) = chunking.sizes();
        let filename = meta.filename.clone();
        let pieces = tokio::task::spawn_blocking(move || {
            let doc = ingest::extract_text(&filename, &content.content)?;
            ingest::chunk_text(&doc.text, size as usize, overlap as usize)
        })
        .await
        .map_err(|e| Error::internal(format!("text extraction stopped: {e}")))??;
        if pieces.is_empty() {
            return Err(Error::invalid_request(format!(
                "file '{}' contains no text",
                meta.filename
            )));
        }
        let t = now();
        let mut chunks = Vec::with_capacity(pieces.len());
        for (i, p) in pieces.into_iter().enumerate() {
            let chunk_id = format!("{file_id}:{i}");
            let mut metadata = attributes.clone();
            metadata.insert("file_id".into(), Value::String(file_id.to_string()));
            metadata.insert("filename".into(), Value::String(meta.filename.clone()));
            metadata.insert("document_id".into(), Value::String(file_id.to_string()));
            metadata.insert("chunk_id".into(), Value::String(chunk_id.clone()));
            record.object.usage_bytes += p.text.len() as u64;
            chunks.push(Chunk {
                content: ChunkContent::Text(p.text),
                chunk_id: chunk_id.clone(),
                metadata,
                chunk_metadata: ChunkMetadata {
                    chunk_id: Some(chunk_id),
                    document_id: Some(file_id.to_string()),
                    source: Some(meta.filename.clone()),
                    created_timestamp: Some(t),
                    updated_timestamp: Some(t),
                    chunk_window: Some(format!("{}-{}", p.start_token, p.end_token)),
                    chunk_tokenizer: Some(ingest::TOKENIZER.to_string()),
                    content_token_count: u32::try_from(p.token_count).ok(),
                    metadata_token_count: None,
                },
                embedding: None,
                embedding_model: None,
                embedding_dimension: None,
            });
        }
        for group in chunks.chunks(EMBED_BATCH) {
            if cancel.is_some_and(CancellationToken::is_cancelled) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "the file batch was cancelled",
                ));
            }
            record
                .chunk_ids
                .extend(group.iter().map(|c| c.chunk_id.clone()));
            self.insert(ctx, store, group.to_vec()).await?;
        }
        Ok(())
    }

    async fn batch(&self, store: &VectorStore, batch_id: &str) -> Result<BatchRecord> {
        let key = batch_key(&store.provider_resource_id, batch_id);
        match self.kv.get(&key).await? {
            Some(v) => decode(&key, &v),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "File batch '{batch_id}' not found in vector store '{}'.",
                    store.identifier
                ),
            )
            .with_context("resource_id", batch_id)),
        }
    }

    async fn batch_object(
        &self,
        store: &VectorStore,
        batch: &BatchRecord,
    ) -> Result<VectorStoreFileBatchObject> {
        let mut counts = FileCounts::default();
        for file_id in &batch.file_ids {
            let status = match self.file_record(store, file_id).await? {
                Some(r) => r.object.status,
                None if batch.cancelled => VectorStoreFileStatus::Cancelled,
                None => VectorStoreFileStatus::InProgress,
            };
            counts.apply(status, 1);
        }
        let status = if batch.cancelled {
            FileBatchStatus::Cancelled
        } else if counts.in_progress > 0 {
            FileBatchStatus::InProgress
        } else if counts.failed == counts.total {
            FileBatchStatus::Failed
        } else {
            FileBatchStatus::Completed
        };
        Ok(VectorStoreFileBatchObject {
            id: batch.id.clone(),
            object: "vector_store.file_batch".into(),
            created_at: batch.created_at,
            vector_store_id: store.identifier.clone(),
            status,
            file_counts: counts,
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run_batch(
        self: Arc<Self>,
        ctx: RequestContext,
        store: VectorStore,
        batch: BatchRecord,
        default_chunking: ChunkingStrategy,
        cancel: CancellationToken,
    ) {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.settings.max_concurrent_files_per_batch.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for file_id in batch.file_ids.clone() {
            let this = self.clone();
            let (ctx, store, cancel, limit) =
                (ctx.clone(), store.clone(), cancel.clone(), limit.clone());
            let attributes = batch.attributes.clone().unwrap_or_default();
            let chunking = batch
                .chunking_strategy
                .clone()
                .unwrap_or_else(|| default_chunking.clone());
            tasks.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                if cancel.is_cancelled() {
                    return;
                }
                if let Ok(Some(_)) = this.file_record(&store, &file_id).await {
                    return; // already attached
                }
                if let Err(e) = this
                    .ingest(&ctx, &store, &file_id, attributes, chunking, Some(&cancel))
                    .await
                {
                    tracing::warn!(file_id, error = %e, "a file of a batch could not be recorded");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        self.running().remove(&batch.id);
    }
}

/// Fuses a vector and a keyword result list into one ranking of `k`.
fn fuse(vector: Vec<Scored>, keyword: Vec<Scored>, reranker: Reranker, k: usize) -> Vec<Scored> {
    fn min_max(list: &[Scored]) -> impl Fn(f64) -> f64 {
        let lo = list.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
        let hi = list
            .iter()
            .map(|(_, s)| *s)
            .fold(f64::NEG_INFINITY, f64::max);
        move |s| {
            if hi > lo {
                (s - lo) / (hi - lo)
            } else {
                1.0
            }
        }
    }
    let mut chunks: HashMap<String, Chunk> = HashMap::new();
    let mut scores: HashMap<String, f64> = HashMap::new();
    let (nv, nk) = (min_max(&vector), min_max(&keyword));
    let mut add = |list: Vec<Scored>, side: usize, norm: &dyn Fn(f64) -> f64| {
        for (rank, (chunk, s)) in list.into_iter().enumerate() {
            let contribution = match reranker {
                Reranker::Rrf { impact_factor } => 1.0 / (impact_factor + rank as f64 + 1.0),
                Reranker::Weighted { alpha } => {
                    let w = if side == 0 { alpha } else { 1.0 - alpha };
                    w * norm(s)
                }
                Reranker::Normalized => norm(s) / 2.0,
            };
            *scores.entry(chunk.chunk_id.clone()).or_default() += contribution;
            chunks.entry(chunk.chunk_id.clone()).or_insert(chunk);
        }
    };
    add(vector, 0, &nv);
    add(keyword, 1, &nk);
    let mut ranked: Vec<(String, f64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(k)
        .filter_map(|(id, s)| chunks.remove(&id).map(|c| (c, s)))
        .collect()
}

#[async_trait]
impl VectorIoProvider for VectorStoreService {
    async fn create_vector_store(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        new: &NewVectorStore,
        req: CreateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        let inner = &self.inner;
        inner
            .index
            .create_store(&new.store_id, new.embedding_dimension as usize)
            .await?;
        let t = now();
        let record = StoreRecord {
            created_at: t,
            name: req.name.clone(),
            expires_after: req.expires_after.clone(),
            last_active_at: t,
            metadata: req.metadata.clone(),
            chunking_strategy: req.chunking_strategy.clone().unwrap_or_default(),
            embedding_model: new.embedding_model.clone(),
            embedding_dimension: new.embedding_dimension,
        };
        inner.put_record(store, &record).await?;
        for file_id in &req.file_ids {
            // As in OpenAI, files given at creation are attached right away; a file that
            // fails is recorded as failed and does not fail the creation.
            let chunking = record.chunking_strategy.clone();
            if let Err(e) = inner
                .ingest(ctx, store, file_id, Map::new(), chunking, None)
                .await
            {
                tracing::warn!(file_id, vector_store_id = %store.identifier, error = %e, "attaching a file at creation failed");
            }
        }
        inner.object(store, &record).await
    }

    async fn get_vector_store(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
    ) -> Result<VectorStoreObject> {
        let record = self.inner.record(store).await?;
        self.inner.object(store, &record).await
    }

    async fn update_vector_store(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        req: UpdateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        let mut record = self.inner.record(store).await?;
        if let Some(name) = req.name {
            record.name = Some(name);
        }
        if let Some(e) = req.expires_after {
            record.expires_after = Some(e);
        }
        if let Some(m) = req.metadata {
            record.metadata = m;
        }
        record.last_active_at = now();
        self.inner.put_record(store, &record).await?;
        self.inner.object(store, &record).await
    }

    async fn delete_vector_store(&self, _ctx: &RequestContext, store: &VectorStore) -> Result<()> {
        let inner = &self.inner;
        inner.record(store).await?;
        let id = &store.provider_resource_id;
        for (key, value) in inner.kv.scan_prefix(&batches_prefix(id)).await? {
            if let Ok(b) = decode::<BatchRecord>(&key, &value) {
                if let Some(t) = inner.running().remove(&b.id) {
                    t.cancel();
                }
            }
            inner.kv.delete(&key).await?;
        }
        inner.index.drop_store(id).await?;
        for (key, _) in inner.kv.scan_prefix(&files_prefix(id)).await? {
            inner.kv.delete(&key).await?;
        }
        inner.kv.delete(&store_key(id)).await
    }

    async fn insert_chunks(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        chunks: Vec<Chunk>,
    ) -> Result<()> {
        self.inner.record(store).await?;
        self.inner.insert(ctx, store, chunks).await
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        search: ChunkSearch,
    ) -> Result<Vec<(Chunk, f64)>> {
        self.inner.search(ctx, store, search).await
    }

    async fn attach_file(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: AttachFileRequest,
    ) -> Result<VectorStoreFileObject> {
        let inner = &self.inner;
        let record = inner.record(store).await?;
        if let Some(existing) = inner.file_record(store, &req.file_id).await? {
            return Ok(existing.object);
        }
        // The file must exist and be readable by the caller before anything is recorded.
        let files = inner.files.as_ref().ok_or_else(|| {
            Error::unsupported(
                "attaching files needs a files provider; add one under providers.files (e.g. inline::localfs)",
            )
        })?;
        files.get_file(ctx, &req.file_id).await?;
        let chunking = req
            .chunking_strategy
            .unwrap_or_else(|| record.chunking_strategy.clone());
        inner
            .ingest(
                ctx,
                store,
                &req.file_id,
                req.attributes.unwrap_or_default(),
                chunking,
                None,
            )
            .await
    }

    async fn list_files(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        self.inner.record(store).await?;
        let limit = req.page_size()?;
        let files: Vec<VectorStoreFileObject> = self
            .inner
            .file_records(store)
            .await?
            .into_iter()
            .map(|r| r.object)
            .filter(|o| req.filter.is_none_or(|s| o.status == s))
            .collect();
        Ok(ListPage::paginate(
            files,
            req.order.unwrap_or(Order::Desc),
            req.after.as_deref(),
            req.before.as_deref(),
            limit,
        ))
    }

    async fn get_file(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
    ) -> Result<VectorStoreFileObject> {
        self.inner.record(store).await?;
        self.inner
            .file_record(store, file_id)
            .await?
            .map(|r| r.object)
            .ok_or_else(|| file_not_found(file_id, store))
    }

    async fn update_file(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        req: UpdateVectorStoreFileRequest,
    ) -> Result<VectorStoreFileObject> {
        let inner = &self.inner;
        inner.record(store).await?;
        let mut record = inner
            .file_record(store, file_id)
            .await?
            .ok_or_else(|| file_not_found(file_id, store))?;
        if !record.chunk_ids.is_empty() {
            let mut chunks = inner
                .index
                .get(&store.provider_resource_id, &record.chunk_ids)
                .await?;
            for c in &mut chunks {
                let keep: Map<String, Value> = c
                    .metadata
                    .iter()
                    .filter(|(k, _)| RESERVED_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut metadata = req.attributes.clone();
                metadata.extend(keep);
                c.metadata = metadata;
                c.chunk_metadata.updated_timestamp = Some(now());
            }
            inner
                .index
                .upsert(&store.provider_resource_id, &chunks)
                .await?;
        }
        record.object.attributes = req.attributes;
        inner.put_file(store, &record).await?;
        Ok(record.object)
    }

    async fn delete_file(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
    ) -> Result<()> {
        let inner = &self.inner;
        inner.record(store).await?;
        let record = inner
            .file_record(store, file_id)
            .await?
            .ok_or_else(|| file_not_found(file_id, store))?;
        // Remove the record first: an ingestion still running sees it gone and cleans up.
        inner
            .kv
            .delete(&file_key(&store.provider_resource_id, file_id))
            .await?;
        if !record.chunk_ids.is_empty() {
            inner
                .index
                .delete(&store.provider_resource_id, &record.chunk_ids)
                .await?;
        }
        Ok(())
    }

    async fn file_content(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        req: FileContentRequest,
    ) -> Result<VectorStoreFileContent> {
        let inner = &self.inner;
        inner.record(store).await?;
        let record = inner
            .file_record(store, file_id)
            .await?
            .ok_or_else(|| file_not_found(file_id, store))?;
        let chunks = inner
            .index
            .get(&store.provider_resource_id, &record.chunk_ids)
            .await?;
        let data = chunks
            .into_iter()
            .map(|c| {
                let mut t = ContentText::new(c.content.text());
                if req.include_embeddings {
                    t.embedding = c.embedding;
                }
                if req.include_metadata {
                    t.chunk_metadata = Some(c.chunk_metadata);
                    t.metadata = Some(c.metadata);
                }
                t
            })
            .collect();
        Ok(VectorStoreFileContent {
            object: "vector_store.file_content.page".into(),
            data,
            has_more: false,
            next_page: None,
        })
    }

    async fn create_file_batch(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: CreateFileBatchRequest,
    ) -> Result<VectorStoreFileBatchObject> {
        let inner = &self.inner;
        let record = inner.record(store).await?;
        let files = inner.files.as_ref().ok_or_else(|| {
            Error::unsupported(
                "file batches need a files provider; add one under providers.files (e.g. inline::localfs)",
            )
        })?;
        let mut file_ids: Vec<String> = Vec::with_capacity(req.file_ids.len());
        for id in &req.file_ids {
            if !file_ids.contains(id) {
                files.get_file(ctx, id).await?;
                file_ids.push(id.clone());
            }
        }
        let batch = BatchRecord {
            id: format!("batch_{}", uuid::Uuid::new_v4()),
            created_at: now(),
            file_ids,
            attributes: req.attributes,
            chunking_strategy: req.chunking_strategy,
            cancelled: false,
        };
        inner
            .kv
            .set(
                &batch_key(&store.provider_resource_id, &batch.id),
                &encode(&batch)?,
                None,
            )
            .await?;
        let cancel = CancellationToken::new();
        inner.running().insert(batch.id.clone(), cancel.clone());
        let object = inner.batch_object(store, &batch).await?;
        // The batch outlives the request: it runs under its own cancellation (the batch's),
        // not the request's, which fires as soon as this call returns.
        let batch_ctx = ctx.clone().with_cancellation(cancel.clone());
        tokio::spawn(inner.clone().run_batch(
            batch_ctx,
            store.clone(),
            batch,
            record.chunking_strategy,
            cancel,
        ));
        Ok(object)
    }

    async fn get_file_batch(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        let batch = self.inner.batch(store, batch_id).await?;
        self.inner.batch_object(store, &batch).await
    }

    async fn list_file_batch_files(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        let batch = self.inner.batch(store, batch_id).await?;
        let limit = req.page_size()?;
        let mut files = Vec::new();
        for id in &batch.file_ids {
            if let Some(r) = self.inner.file_record(store, id).await? {
                if req.filter.is_none_or(|s| r.object.status == s) {
                    files.push(r.object);
                }
            }
        }
        Ok(ListPage::paginate(
            files,
            req.order.unwrap_or(Order::Desc),
            req.after.as_deref(),
            req.before.as_deref(),
            limit,
        ))
    }

    async fn cancel_file_batch(
        &self,
        _ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        let inner = &self.inner;
        let mut batch = inner.batch(store, batch_id).await?;
        let current = inner.batch_object(store, &batch).await?;
        if current.status != FileBatchStatus::InProgress {
            return Err(Error::conflict(format!(
                "file batch '{batch_id}' is {:?} and can no longer be cancelled",
                current.status
            )));
        }
        batch.cancelled = true;
        inner
            .kv
            .set(
                &batch_key(&store.provider_resource_id, batch_id),
                &encode(&batch)?,
                None,
            )
            .await?;
        if let Some(t) = inner.running().remove(batch_id) {
            t.cancel();
        }
        // Files not started yet are recorded as cancelled.
        for id in &batch.file_ids {
            if inner.file_record(store, id).await?.is_none() {
                let record = FileRecord {
                    object: VectorStoreFileObject {
                        id: id.clone(),
                        object: "vector_store.file".into(),
                        attributes: batch.attributes.clone().unwrap_or_default(),
                        chunking_strategy: batch.chunking_strategy.clone().unwrap_or_default(),
                        created_at: now(),
                        last_error: None,
                        status: VectorStoreFileStatus::Cancelled,
                        usage_bytes: 0,
                        vector_store_id: store.identifier.clone(),
                    },
                    filename: String::new(),
                    chunk_ids: Vec::new(),
                };
                inner.put_file(store, &record).await?;
            }
        }
        inner.batch_object(store, &batch).await
    }

    async fn health(&self) -> Health {
        self.inner.index.health().await
    }
}

/// Waits until a batch is no longer in progress (for callers that want to block).
pub async fn wait_for_batch(
    api: &dyn llama_stack_core::api::vector_io::VectorIo,
    ctx: &RequestContext,
    vector_store_id: &str,
    batch_id: &str,
    timeout: Duration,
) -> Result<VectorStoreFileBatchObject> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let b = api.get_file_batch(ctx, vector_store_id, batch_id).await?;
        if b.status != FileBatchStatus::InProgress {
            return Ok(b);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("file batch '{batch_id}' still in progress after {timeout:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hit(id: &str, s: f64) -> Scored {
        (Chunk::new(id, id), s)
    }

    #[test]
    fn rrf_rewards_agreement() {
        let v = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let k = vec![hit("c", 9.0), hit("d", 5.0)];
        let fused = fuse(
            v,
            k,
            Reranker::Rrf {
                impact_factor: 60.0,
            },
            3,
        );
        let ids: Vec<&str> = fused.iter().map(|(c, _)| c.chunk_id.as_str()).collect();
        assert_eq!(ids[0], "c", "in both lists: {ids:?}");
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn weighted_follows_alpha() {
        let v = vec![hit("a", 0.9), hit("b", 0.1)];
        let k = vec![hit("b", 10.0), hit("a", 1.0)];
        let top = |alpha| {
            fuse(v.clone(), k.clone(), Reranker::Weighted { alpha }, 1)[0]
                .0
                .chunk_id
                .clone()
        };
        assert_eq!(top(1.0), "a");
        assert_eq!(top(0.0), "b");
    }

    #[test]
    fn keys_do_not_collide() {
        assert_ne!(key_part("a:b"), key_part("a%3Ab"));
        assert!(!files_prefix("a").starts_with(&files_prefix("a:")));
    }
}
