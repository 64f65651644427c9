//! [`ChromaIndex`]: the chunks of many vector stores in a Chroma server, over its HTTP
//! API v2 (`remote::chromadb`).
//!
//! Each vector store is one collection in cosine space, named `ls_<store id>` (or
//! `lsx_<hex of the store id>` when the id has characters Chroma does not allow in names),
//! with the store id and dimension in the collection's metadata. A chunk is one record:
//! its id, its embedding, its text as the document, and the rest of the chunk (metadata
//! included) as JSON in the record metadata key `chunk`.
//!
//! Filters are evaluated here, with [`AttributeFilter::matches`], so their semantics are
//! the same as every other provider's: a filtered search first asks Chroma for 10·`k`
//! nearest neighbours (at least 100) and, when fewer than `k` of them match, scores every
//! record of the store exactly (read in pages). Scores are cosine similarities
//! (`1 − distance`). Chroma has no ranked keyword search, so keyword and hybrid search
//! answer `Unsupported`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk};
use llama_stack_core::{Error, ErrorKind, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::index::{
    check_embedding, chunk_embedding, cosine, in_asked_order, is_last_of_its_id, Scored,
    VectorIndex,
};

/// Records written per upsert request (Chroma's own limit may be lower; it is read at start).
const MAX_BATCH: usize = 1_000;
/// Records read per page when scoring a whole store.
const SCAN_PAGE: usize = 1_000;
/// With a filter, Chroma is first asked for `k ×` this many nearest neighbours ...
const FILTERED_KNN_FACTOR: usize = 10;
/// ... and at least this many.
const FILTERED_KNN_MIN: usize = 100;
/// The largest `n_results` asked of Chroma in one query.
const KNN_MAX: usize = 10_000;
/// The record metadata key holding the chunk.
const CHUNK_KEY: &str = "chunk";

/// Where the Chroma server is.
#[derive(Debug, Clone)]
pub struct ChromaOptions {
    /// Base URL, e.g. `http://localhost:8000`.
    pub url: String,
    /// Tenant (default `default_tenant`).
    pub tenant: String,
    /// Database (default `default_database`).
    pub database: String,
    /// Sent as `x-chroma-token` when set.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// One resolved collection.
#[derive(Debug, Clone)]
struct Collection {
    id: String,
    dimension: usize,
}

/// Vector stores in a Chroma server.
pub struct ChromaIndex {
    http: reqwest::Client,
    options: ChromaOptions,
    /// `…/api/v2/tenants/<t>/databases/<d>/collections`.
    collections_url: String,
    batch: usize,
    /// Collections by store id (cleared for a store when Chroma says it is gone).
    cache: RwLock<HashMap<String, Collection>>,
}

impl std::fmt::Debug for ChromaIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromaIndex")
            .field("url", &self.options.url)
            .finish()
    }
}

/// The collection name of a store.
fn collection_name(store_id: &str) -> String {
    let plain = format!("ls_{store_id}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if plain.len() <= 512
        && store_id.chars().all(allowed)
        && !store_id.contains("..")
        && store_id.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        plain
    } else {
        let hex: String = store_id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("lsx_{hex}")
    }
}

fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[derive(Deserialize)]
struct CollectionBody {
    id: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct GetBody {
    ids: Vec<String>,
    #[serde(default)]
    embeddings: Option<Vec<Option<Vec<f32>>>>,
    #[serde(default)]
    metadatas: Option<Vec<Option<Map<String, Value>>>>,
}

/// One list of optional values per query embedding.
type PerQuery<T> = Option<Vec<Vec<Option<T>>>>;

#[derive(Deserialize)]
struct QueryBody {
    ids: Vec<Vec<String>>,
    #[serde(default)]
    embeddings: PerQuery<Vec<f32>>,
    #[serde(default)]
    metadatas: PerQuery<Map<String, Value>>,
    #[serde(default)]
    distances: PerQuery<f64>,
}

impl ChromaIndex {
    /// Connects to the server (checking its heartbeat) and reads its batch size limit.
    pub async fn open(options: ChromaOptions) -> Result<Self> {
        let url = options.url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(options.timeout)
            .build()
            .map_err(|e| Error::config(format!("chromadb: cannot build the HTTP client: {e}")))?;
        let collections_url = format!(
            "{url}/api/v2/tenants/{}/databases/{}/collections",
            segment(&options.tenant),
            segment(&options.database)
        );
        let mut index = ChromaIndex {
            http,
            options: ChromaOptions { url, ..options },
            collections_url,
            batch: MAX_BATCH,
            cache: RwLock::new(HashMap::new()),
        };
        let checks = index
            .send(
                "connecting",
                index
                    .http
                    .get(format!("{}/api/v2/pre-flight-checks", index.options.url)),
            )
            .await?;
        if let Some(max) = checks.get("max_batch_size").and_then(Value::as_u64) {
            index.batch = usize::try_from(max)
                .unwrap_or(MAX_BATCH)
                .clamp(1, MAX_BATCH);
        }
        // The tenant and database must exist.
        index
            .send(
                "checking the database",
                index.http.get(format!(
                    "{}/api/v2/tenants/{}/databases/{}",
                    index.options.url,
                    segment(&index.options.tenant),
                    segment(&index.options.database)
                )),
            )
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::config(format!(
                        "chromadb at {}: tenant '{}' or database '{}' does not exist",
                        index.options.url, index.options.tenant, index.options.database
                    ))
                } else {
                    e
                }
            })?;
        Ok(index)
    }

    /// Sends a request; non-2xx answers become errors with Chroma's message.
    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value> {
        let request = match &self.options.api_key {
            Some(key) => request.header("x-chroma-token", key),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            Error::unavailable(format!("chromadb at {}: {what}: {e}", self.options.url))
                .with_provider("chromadb")
                .with_retryable(true)
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Error::unavailable(format!(
                "chromadb at {}: {what}: reading the answer: {e}",
                self.options.url
            ))
            .with_provider("chromadb")
            .with_retryable(true)
        })?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&body).chars().take(500).collect())
            })
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        let error = value.get("error").and_then(Value::as_str).unwrap_or("");
        if status == reqwest::StatusCode::NOT_FOUND || error == "NotFoundError" {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("chromadb at {}: {what}: {message}", self.options.url),
            )
            .with_provider("chromadb"));
        }
        Err(Error::upstream(
            "chromadb",
            status.as_u16(),
            format!("{what}: {message}"),
        ))
    }

    async fn post(&self, what: &str, url: String, body: &Value) -> Result<Value> {
        self.send(what, self.http.post(url).json(body)).await
    }

    /// The collection of a store, or `None` when it does not exist.
    async fn find(&self, store_id: &str) -> Result<Option<Collection>> {
        if let Some(c) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(store_id)
        {
            return Ok(Some(c.clone()));
        }
        let url = format!(
            "{}/{}",
            self.collections_url,
            segment(&collection_name(store_id))
        );
        let found = match self
            .send(
                &format!("looking up vector store '{store_id}'"),
                self.http.get(url),
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let body: CollectionBody = serde_json::from_value(found).map_err(|e| {
            Error::internal(format!(
                "chromadb at {}: unexpected collection answer: {e}",
                self.options.url
            ))
        })?;
        let dimension = body
            .metadata
            .as_ref()
            .and_then(|m| m.get("llama_stack_dimension"))
            .and_then(Value::as_u64)
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| {
                Error::conflict(format!(
                    "chromadb at {}: collection '{}' exists but was not created for vector store '{store_id}'",
                    self.options.url,
                    collection_name(store_id)
                ))
            })?;
        let collection = Collection {
            id: body.id,
            dimension,
        };
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(store_id.to_string(), collection.clone());
        Ok(Some(collection))
    }

    async fn require(&self, store_id: &str) -> Result<Collection> {
        self.find(store_id)
            .await?
            .ok_or_else(|| Error::not_found("Vector store", store_id))
    }

    fn forget(&self, store_id: &str) {
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(store_id);
    }

    /// A data request on a store's collection; a vanished collection is `NotFound` for
    /// the store (and leaves the cache).
    async fn on_collection(
        &self,
        store_id: &str,
        collection: &Collection,
        op: &str,
        what: &str,
        body: &Value,
    ) -> Result<Value> {
        let url = format!("{}/{}/{op}", self.collections_url, collection.id);
        match self.post(what, url, body).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(store_id);
                Err(Error::not_found("Vector store", store_id))
            }
            other => other,
        }
    }

    /// Every record of a store, page by page, scored against `embedding`, filtered.
    async fn scan(
        &self,
        store_id: &str,
        collection: &Collection,
        embedding: &[f32],
        filter: Option<&AttributeFilter>,
        k: usize,
    ) -> Result<Vec<Scored>> {
        let what = format!("scanning vector store '{store_id}'");
        let mut best: Vec<Scored> = Vec::new();
        let mut offset = 0usize;
        loop {
            let page = self
                .on_collection(
                    store_id,
                    collection,
                    "get",
                    &what,
                    &json!({"limit": SCAN_PAGE, "offset": offset, "include": ["embeddings", "metadatas"]}),
                )
                .await?;
            let page: GetBody = parse(&self.options.url, &what, page)?;
            let n = page.ids.len();
            for chunk in decode_get(&self.options.url, store_id, page)? {
                if filter.is_some_and(|f| !f.matches(&chunk.metadata)) {
                    continue;
                }
                let score = chunk
                    .embedding
                    .as_deref()
                    .map_or(0.0, |e| cosine(e, embedding));
                best.push((chunk, score));
            }
            if best.len() > k.saturating_mul(4).max(1024) {
                best.sort_by(|a, b| b.1.total_cmp(&a.1));
                best.truncate(k);
            }
            if n < SCAN_PAGE {
                break;
            }
            offset += n;
        }
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        best.truncate(k);
        Ok(best)
    }
}

fn parse<T: serde::de::DeserializeOwned>(url: &str, what: &str, value: Value) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("chromadb at {url}: {what}: unexpected answer: {e}")))
}

/// A chunk from a record's metadata and embedding.
fn decode_record(
    url: &str,
    store_id: &str,
    id: &str,
    metadata: Option<Map<String, Value>>,
    embedding: Option<Vec<f32>>,
) -> Result<Chunk> {
    let corrupt = |why: &str| {
        Error::internal(format!(
            "chromadb at {url}: vector store '{store_id}': record '{id}' {why}"
        ))
    };
    let stored = metadata
        .as_ref()
        .and_then(|m| m.get(CHUNK_KEY))
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("has no chunk"))?;
    let mut chunk: Chunk = serde_json::from_str(stored)
        .map_err(|e| corrupt(&format!("holds a corrupt chunk: {e}")))?;
    chunk.embedding = embedding;
    Ok(chunk)
}

fn decode_get(url: &str, store_id: &str, body: GetBody) -> Result<Vec<Chunk>> {
    let n = body.ids.len();
    let mut embeddings = body.embeddings.unwrap_or_default().into_iter();
    let mut metadatas = body.metadatas.unwrap_or_default().into_iter();
    let mut out = Vec::with_capacity(n);
    for id in &body.ids {
        let embedding = embeddings.next().flatten();
        let metadata = metadatas.next().flatten();
        out.push(decode_record(url, store_id, id, metadata, embedding)?);
    }
    Ok(out)
}

#[async_trait]
impl VectorIndex for ChromaIndex {
    async fn create_store(&self, store_id: &str, dimension: usize) -> Result<()> {
        if dimension == 0 {
            return Err(Error::invalid_request(format!(
                "Vector store '{store_id}': embedding dimension must be at least 1"
            )));
        }
        if let Some(existing) = self.find(store_id).await? {
            return if existing.dimension == dimension {
                Ok(())
            } else {
                Err(Error::conflict(format!(
                    "Vector store '{store_id}' exists with embedding dimension {}, not {dimension}",
                    existing.dimension
                ))
                .with_context("resource_id", store_id))
            };
        }
        let body = json!({
            "name": collection_name(store_id),
            "metadata": {"llama_stack_store_id": store_id, "llama_stack_dimension": dimension},
            "configuration": {"hnsw": {"space": "cosine"}},
            "get_or_create": true,
        });
        self.post(
            &format!("creating vector store '{store_id}'"),
            self.collections_url.clone(),
            &body,
        )
        .await?;
        // Re-read: a concurrent creator may have made it with another dimension.
        self.forget(store_id);
        let made = self.require(store_id).await?;
        if made.dimension != dimension {
            return Err(Error::conflict(format!(
                "Vector store '{store_id}' exists with embedding dimension {}, not {dimension}",
                made.dimension
            )));
        }
        Ok(())
    }

    async fn drop_store(&self, store_id: &str) -> Result<()> {
        self.forget(store_id);
        let url = format!(
            "{}/{}",
            self.collections_url,
            segment(&collection_name(store_id))
        );
        match self
            .send(
                &format!("dropping vector store '{store_id}'"),
                self.http.delete(url),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn upsert(&self, store_id: &str, chunks: &[Chunk]) -> Result<()> {
        let collection = self.require(store_id).await?;
        let what = format!("inserting chunks into vector store '{store_id}'");
        // Everything is checked and encoded before the first write; of repeated ids the last wins.
        let mut records = Vec::with_capacity(chunks.len());
        for (chunk, last) in chunks.iter().zip(is_last_of_its_id(chunks)) {
            let embedding = chunk_embedding(store_id, chunk, collection.dimension)?;
            if chunk.chunk_id.is_empty() {
                return Err(Error::invalid_request(format!(
                    "Vector store '{store_id}': a chunk id is empty"
                )));
            }
            if !last {
                continue;
            }
            let stored = Chunk {
                embedding: None,
                ..chunk.clone()
            };
            let stored = serde_json::to_string(&stored).map_err(|e| {
                Error::internal(format!(
                    "Vector store '{store_id}': cannot encode chunk '{}': {e}",
                    chunk.chunk_id
                ))
            })?;
            records.push((
                chunk.chunk_id.as_str(),
                embedding,
                chunk.content.text(),
                stored,
            ));
        }
        for batch in records.chunks(self.batch) {
            let body = json!({
                "ids": batch.iter().map(|r| r.0).collect::<Vec<_>>(),
                "embeddings": batch.iter().map(|r| r.1).collect::<Vec<_>>(),
                "documents": batch.iter().map(|r| &r.2).collect::<Vec<_>>(),
                "metadatas": batch.iter().map(|r| json!({CHUNK_KEY: r.3})).collect::<Vec<_>>(),
            });
            self.on_collection(store_id, &collection, "upsert", &what, &body)
                .await?;
        }
        Ok(())
    }

    async fn delete(&self, store_id: &str, chunk_ids: &[String]) -> Result<()> {
        let collection = self.require(store_id).await?;
        if chunk_ids.is_empty() {
            return Ok(());
        }
        let what = format!("deleting chunks of vector store '{store_id}'");
        for batch in chunk_ids.chunks(self.batch) {
            self.on_collection(
                store_id,
                &collection,
                "delete",
                &what,
                &json!({"ids": batch}),
            )
            .await?;
        }
        Ok(())
    }

    async fn get(&self, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>> {
        let collection = self.require(store_id).await?;
        if chunk_ids.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("reading chunks of vector store '{store_id}'");
        let mut found: HashMap<String, Chunk> = HashMap::with_capacity(chunk_ids.len());
        for batch in chunk_ids.chunks(self.batch) {
            let body = self
                .on_collection(
                    store_id,
                    &collection,
                    "get",
                    &what,
                    &json!({"ids": batch, "include": ["embeddings", "metadatas"]}),
                )
                .await?;
            let body: GetBody = parse(&self.options.url, &what, body)?;
            let ids = body.ids.clone();
            for (id, chunk) in ids
                .into_iter()
                .zip(decode_get(&self.options.url, store_id, body)?)
            {
                found.insert(id, chunk);
            }
        }
        Ok(in_asked_order(chunk_ids, &found))
    }

    async fn query_vector(
        &self,
        store_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let collection = self.require(store_id).await?;
        check_embedding(
            store_id,
            "the query embedding",
            embedding,
            collection.dimension,
        )?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let what = format!("searching vector store '{store_id}' by vector");
        let n = match filter {
            None => k,
            Some(_) => k.saturating_mul(FILTERED_KNN_FACTOR).max(FILTERED_KNN_MIN),
        };
        if n > KNN_MAX {
            return self.scan(store_id, &collection, embedding, filter, k).await;
        }
        let body = self
            .on_collection(
                store_id,
                &collection,
                "query",
                &what,
                &json!({
                    "query_embeddings": [embedding],
                    "n_results": n,
                    "include": ["embeddings", "metadatas", "distances"],
                }),
            )
            .await?;
        let body: QueryBody = parse(&self.options.url, &what, body)?;
        let ids = body.ids.into_iter().next().unwrap_or_default();
        let returned = ids.len();
        let mut embeddings = body
            .embeddings
            .and_then(|e| e.into_iter().next())
            .unwrap_or_default()
            .into_iter();
        let mut metadatas = body
            .metadatas
            .and_then(|m| m.into_iter().next())
            .unwrap_or_default()
            .into_iter();
        let mut distances = body
            .distances
            .and_then(|d| d.into_iter().next())
            .unwrap_or_default()
            .into_iter();
        let mut out = Vec::with_capacity(k);
        for id in &ids {
            let chunk = decode_record(
                &self.options.url,
                store_id,
                id,
                metadatas.next().flatten(),
                embeddings.next().flatten(),
            )?;
            let distance = distances.next().flatten();
            if out.len() >= k || filter.is_some_and(|f| !f.matches(&chunk.metadata)) {
                continue;
            }
            let score = match distance {
                Some(d) if d.is_finite() => 1.0 - d,
                _ => 0.0,
            };
            out.push((chunk, score));
        }
        if out.len() < k && returned == n && filter.is_some() {
            // Too few matches among the nearest neighbours: score the whole store.
            return self.scan(store_id, &collection, embedding, filter, k).await;
        }
        Ok(out)
    }

    async fn query_keyword(
        &self,
        store_id: &str,
        _query: &str,
        _k: usize,
        _filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        self.require(store_id).await?;
        Err(Error::unsupported(
            "remote::chromadb has no ranked keyword search; use search_mode 'vector'",
        ))
    }

    async fn health(&self) -> Health {
        match self
            .send(
                "checking health",
                self.http
                    .get(format!("{}/api/v2/heartbeat", self.options.url)),
            )
            .await
        {
            Ok(_) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_follow_chroma_rules() {
        assert_eq!(collection_name("vs_123-abc"), "ls_vs_123-abc");
        // Characters Chroma does not allow, a trailing separator, `..`: hex.
        assert_eq!(collection_name("a b"), "lsx_612062");
        assert_eq!(collection_name("abc_"), "lsx_6162635f");
        assert_eq!(collection_name("a..b"), "lsx_612e2e62");
        let long = "x".repeat(600);
        assert!(collection_name(&long).starts_with("lsx_"));
    }
}
