//! The in-process ANN backend behind `inline::faiss`: chunks live in a [`KvStore`] (the
//! source of truth), vectors in an in-memory HNSW graph (usearch, cosine, f32) per store,
//! keyword search in an in-memory BM25 index; saved graph files let a restart skip the
//! rebuild.
//!
//! KV layout (every write bumps the store's generation before touching chunks, so a saved
//! graph file is used only when it matches the chunks exactly):
//! - `store:{store_id}` → `{dimension, next_key, generation}`
//! - `chunk:{len(store_id)}:{store_id}:{chunk_id}` → `{key, chunk}` (the chunk with its
//!   embedding; `key` is the chunk's integer key in the graph). The length prefix keeps
//!   store ids that contain `:` apart.
//!
//! Graph files are `{hex(store_id)}-{generation}.usearch` in the index directory.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk};
use llama_stack_core::storage::KvStore;
use llama_stack_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::index::{is_last_of_its_id, Scored, VectorIndex};

/// HNSW parameters.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    /// Links per node (`M`); more links: better recall, more memory (default 16).
    #[serde(default = "default_connectivity")]
    pub connectivity: usize,
    /// Candidates kept while inserting (`ef_construction`, default 128).
    #[serde(default = "default_expansion_add")]
    pub expansion_add: usize,
    /// Candidates kept while searching (`ef_search`, default 128; at least `k` is used).
    #[serde(default = "default_expansion_search")]
    pub expansion_search: usize,
}

fn default_connectivity() -> usize {
    16
}

fn default_expansion_add() -> usize {
    128
}

/// 64 left recall@10 at 0.905 on 5k random 64-dim unit vectors; 128 gives 0.98.
fn default_expansion_search() -> usize {
    128
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            connectivity: default_connectivity(),
            expansion_add: default_expansion_add(),
            expansion_search: default_expansion_search(),
        }
    }
}

/// BM25 term-frequency saturation.
const BM25_K1: f64 = 1.2;
/// BM25 length normalization.
const BM25_B: f64 = 0.75;
/// Below this many vectors, one thread adds them all.
const PARALLEL_ADD_MIN: usize = 2048;
/// Filters matching at most this many chunks (and at most a quarter of the store) are
/// scored exactly.
const EXACT_FILTER_MAX: usize = 10_000;
/// Graph capacity reserved for a new store.
const INITIAL_CAPACITY: usize = 64;
/// Extension of saved graph files.
const GRAPH_EXT: &str = "usearch";

const STORE_PREFIX: &str = "store:";

fn store_key(store_id: &str) -> String {
    format!("{STORE_PREFIX}{store_id}")
}

fn chunk_prefix(store_id: &str) -> String {
    format!("chunk:{}:{store_id}:", store_id.len())
}

fn chunk_key(store_id: &str, chunk_id: &str) -> String {
    format!("{}{chunk_id}", chunk_prefix(store_id))
}

/// The persisted record of a store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct StoreRecord {
    /// Vector dimension.
    dimension: usize,
    /// The graph key the next chunk gets.
    next_key: u64,
    /// Bumped by every write; names the graph file that matches the chunks.
    generation: u64,
}

/// The persisted record of a chunk, as read.
#[derive(Deserialize)]
struct ChunkRecord {
    key: u64,
    chunk: Chunk,
}

/// The persisted record of a chunk, as written.
#[derive(Serialize)]
struct ChunkRecordRef<'a> {
    key: u64,
    chunk: &'a Chunk,
}

fn usearch_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("HNSW index {what} failed: {e}"))
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Runs CPU-bound index work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("HNSW index task failed: {e}")))
}

/// Lowercase alphanumeric words.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Documents containing one term, with the term's count in each.
#[derive(Default)]
struct Postings {
    keys: Vec<u64>,
    counts: Vec<u32>,
}

/// An in-memory BM25 index over chunk texts. Removal is lazy: a removed document's
/// postings stay until enough have accumulated, and are skipped meanwhile.
#[derive(Default)]
struct Bm25 {
    postings: HashMap<String, Postings>,
    /// Token count of each live document.
    lengths: HashMap<u64, u32>,
    total_length: u64,
    /// Documents removed since the postings were last compacted.
    removed: usize,
}

impl Bm25 {
    fn insert(&mut self, key: u64, text: &str) {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut length = 0u32;
        for token in tokens(text) {
            *counts.entry(token).or_default() += 1;
            length = length.saturating_add(1);
        }
        for (term, count) in counts {
            let p = self.postings.entry(term).or_default();
            p.keys.push(key);
            p.counts.push(count);
        }
        if let Some(old) = self.lengths.insert(key, length) {
            self.total_length -= u64::from(old);
        }
        self.total_length += u64::from(length);
    }

    fn remove(&mut self, key: u64) {
        if let Some(length) = self.lengths.remove(&key) {
            self.total_length -= u64::from(length);
            self.removed += 1;
            if self.removed > self.lengths.len().max(1024) {
                self.compact();
            }
        }
    }

    fn compact(&mut self) {
        let lengths = &self.lengths;
        self.postings.retain(|_, p| {
            let mut kept = Postings::default();
            for (k, c) in p.keys.iter().zip(&p.counts) {
                if lengths.contains_key(k) {
                    kept.keys.push(*k);
                    kept.counts.push(*c);
                }
            }
            *p = kept;
            !p.keys.is_empty()
        });
        self.removed = 0;
    }

    /// The `k` best-scoring documents that `accept` lets through, best first.
    fn search(&self, query: &str, k: usize, accept: impl Fn(u64) -> bool) -> Vec<(u64, f64)> {
        let n = self.lengths.len();
        if n == 0 || k == 0 {
            return Vec::new();
        }
        let n_f = n as f64;
        let avg_length = (self.total_length as f64 / n_f).max(1e-9);
        let mut terms: Vec<String> = tokens(query).collect();
        terms.sort();
        terms.dedup();
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for term in &terms {
            let Some(p) = self.postings.get(term) else {
                continue;
            };
            let live = || {
                p.keys
                    .iter()
                    .zip(&p.counts)
                    .filter_map(|(k, c)| self.lengths.get(k).map(|len| (*k, *c, *len)))
            };
            let df = live().count() as f64;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n_f - df + 0.5) / (df + 0.5)).ln();
            for (key, count, length) in live() {
                let tf = f64::from(count);
                let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * f64::from(length) / avg_length);
                *scores.entry(key).or_default() += idf * tf * (BM25_K1 + 1.0) / (tf + norm);
            }
        }
        let mut hits: Vec<(u64, f64)> = scores.into_iter().filter(|(k, _)| accept(*k)).collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}

/// What the filters and results need of a chunk, kept in memory.
struct Doc {
    chunk_id: String,
    metadata: Map<String, Value>,
}

/// Chunks to add to a store's memory: graph keys, vectors laid end to end, docs, texts.
struct Batch {
    keys: Vec<u64>,
    vectors: Vec<f32>,
    docs: Vec<Doc>,
    texts: Vec<String>,
}

impl Batch {
    fn with_capacity(n: usize, dimension: usize) -> Self {
        Batch {
            keys: Vec::with_capacity(n),
            vectors: Vec::with_capacity(n * dimension),
            docs: Vec::with_capacity(n),
            texts: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, key: u64, chunk: &Chunk, embedding: &[f32]) {
        self.keys.push(key);
        self.vectors.extend_from_slice(embedding);
        self.docs.push(Doc {
            chunk_id: chunk.chunk_id.clone(),
            metadata: chunk.metadata.clone(),
        });
        self.texts.push(chunk.content.text());
    }
}

/// The in-memory side of a store.
struct Memory {
    record: StoreRecord,
    graph: Index,
    ids: HashMap<String, u64>,
    docs: HashMap<u64, Doc>,
    bm25: Bm25,
}

impl Memory {
    /// Adds a batch (replacing chunks with the same ids) to the graph and the maps.
    /// `threads` is the graph's context count, `build_threads` how many threads add.
    fn apply(&mut self, batch: Batch, threads: usize, build_threads: usize) -> Result<()> {
        for doc in &batch.docs {
            if let Some(old) = self.ids.get(&doc.chunk_id).copied() {
                self.forget(old)?;
            }
        }
        let wanted = self.graph.size() + batch.keys.len();
        if wanted > self.graph.capacity() {
            let capacity = wanted.max(self.graph.capacity().saturating_mul(2));
            self.graph
                .reserve_capacity_and_threads(capacity, threads)
                .map_err(|e| usearch_error("reserve", e))?;
        }
        add_all(&self.graph, &batch.keys, &batch.vectors, build_threads)?;
        for ((key, doc), text) in batch.keys.into_iter().zip(batch.docs).zip(batch.texts) {
            self.bm25.insert(key, &text);
            self.ids.insert(doc.chunk_id.clone(), key);
            self.docs.insert(key, doc);
        }
        Ok(())
    }

    /// Removes a graph key from the graph, the maps and the BM25 index.
    fn forget(&mut self, key: u64) -> Result<()> {
        self.graph
            .remove(key)
            .map_err(|e| usearch_error("remove", e))?;
        if let Some(doc) = self.docs.remove(&key) {
            self.ids.remove(&doc.chunk_id);
        }
        self.bm25.remove(key);
        Ok(())
    }

    /// The `k` nearest chunks that match `filter`, as `(chunk_id, cosine similarity)`.
    ///
    /// A filter matching few chunks ([`EXACT_FILTER_MAX`]) scores them exactly (faster
    /// than walking a graph where most nodes are rejected); a broader one walks the graph
    /// with the filter as predicate, and falls back to exact scoring in the rare case the
    /// walk returns fewer than `k` although more chunks match.
    fn nearest(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<(String, f64)>> {
        let hits = match filter {
            None => {
                let m = self
                    .graph
                    .search(query, k)
                    .map_err(|e| usearch_error("search", e))?;
                self.graph_hits(&m.keys, &m.distances)
            }
            Some(f) => {
                let matching: Vec<u64> = self
                    .docs
                    .iter()
                    .filter(|(_, d)| f.matches(&d.metadata))
                    .map(|(key, _)| *key)
                    .collect();
                if matching.len() <= EXACT_FILTER_MAX.min(self.docs.len() / 4) {
                    self.exact(query, k, &matching)?
                } else {
                    let m = self
                        .graph
                        .filtered_search(query, k, |key: u64| {
                            self.docs.get(&key).is_some_and(|d| f.matches(&d.metadata))
                        })
                        .map_err(|e| usearch_error("search", e))?;
                    let hits = self.graph_hits(&m.keys, &m.distances);
                    if hits.len() < k.min(matching.len()) {
                        self.exact(query, k, &matching)?
                    } else {
                        hits
                    }
                }
            }
        };
        Ok(hits
            .into_iter()
            .filter_map(|(key, score)| self.docs.get(&key).map(|d| (d.chunk_id.clone(), score)))
            .collect())
    }

    /// Live `(key, cosine similarity)` pairs of a graph search.
    fn graph_hits(&self, keys: &[u64], distances: &[f32]) -> Vec<(u64, f64)> {
        keys.iter()
            .zip(distances)
            .filter(|(key, _)| self.docs.contains_key(key))
            .map(|(key, d)| (*key, 1.0 - f64::from(*d)))
            .collect()
    }

    /// Exact cosine scores of the chunks under `keys`, best `k` first.
    fn exact(&self, query: &[f32], k: usize, keys: &[u64]) -> Result<Vec<(u64, f64)>> {
        let mut vector = vec![0f32; self.record.dimension];
        let mut hits = Vec::with_capacity(keys.len());
        for key in keys {
            let found = self
                .graph
                .get(*key, &mut vector)
                .map_err(|e| usearch_error("get", e))?;
            if found > 0 {
                hits.push((*key, super::index::cosine(query, &vector)));
            }
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }
}

/// Adds vectors (laid end to end) under `keys`, on up to `threads` threads.
fn add_all(graph: &Index, keys: &[u64], vectors: &[f32], threads: usize) -> Result<()> {
    let dimension = graph.dimensions().max(1);
    let add_range = |keys: &[u64], vectors: &[f32]| -> Result<()> {
        for (key, vector) in keys.iter().zip(vectors.chunks_exact(dimension)) {
            graph
                .add(*key, vector)
                .map_err(|e| usearch_error("add", e))?;
        }
        Ok(())
    };
    if threads <= 1 || keys.len() < PARALLEL_ADD_MIN {
        return add_range(keys, vectors);
    }
    let per_thread = keys.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = keys
            .chunks(per_thread)
            .zip(vectors.chunks(per_thread * dimension))
            .map(|(k, v)| scope.spawn(move || add_range(k, v)))
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| Error::internal("HNSW index add thread panicked"))?
        })
    })
}

/// A store: a writer lock that serializes its writes, and its in-memory side.
struct Store {
    id: String,
    writer: tokio::sync::Mutex<()>,
    dropped: AtomicBool,
    memory: RwLock<Memory>,
}

/// Chunks in a KV store, vectors in an in-memory HNSW index per store.
pub struct HnswIndex {
    kv: Arc<dyn KvStore>,
    index_dir: Option<PathBuf>,
    params: HnswParams,
    /// Threads the graph keeps contexts for; bounds concurrent searches.
    threads: usize,
    /// Threads that add vectors in parallel (the machine's parallelism).
    build_threads: usize,
    /// Serializes store creation and removal.
    catalog: tokio::sync::Mutex<()>,
    stores: RwLock<HashMap<String, Arc<Store>>>,
    /// One permit per graph search context.
    searches: Arc<tokio::sync::Semaphore>,
    /// How many stores `open` loaded from a graph file instead of rebuilding.
    loaded_from_files: AtomicUsize,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("kv", &self.kv.backend())
            .field("index_dir", &self.index_dir)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl HnswIndex {
    /// Opens the index over `kv` (the source of truth), loading every store; `index_dir`, when given, holds saved index files that let a restart skip rebuilding.
    pub async fn open(
        kv: Arc<dyn KvStore>,
        index_dir: Option<PathBuf>,
        params: HnswParams,
    ) -> Result<Self> {
        let build_threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let threads = build_threads.max(4);
        let this = HnswIndex {
            kv,
            index_dir,
            params,
            threads,
            build_threads,
            catalog: tokio::sync::Mutex::new(()),
            stores: RwLock::new(HashMap::new()),
            searches: Arc::new(tokio::sync::Semaphore::new(threads)),
            loaded_from_files: AtomicUsize::new(0),
        };
        for (key, value) in this.kv.scan_prefix(STORE_PREFIX).await? {
            let store_id = key[STORE_PREFIX.len()..].to_string();
            let record: StoreRecord = serde_json::from_str(&value).map_err(|e| {
                Error::internal(format!("stored record of vector store '{store_id}': {e}"))
            })?;
            let memory = this.load_store(&store_id, record).await?;
            write(&this.stores).insert(store_id.clone(), Arc::new(this.store(store_id, memory)));
        }
        Ok(this)
    }

    /// Writes the index files (no-op without `index_dir`).
    pub async fn flush(&self) -> Result<()> {
        let Some(dir) = self.index_dir.clone() else {
            return Ok(());
        };
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            Error::internal(format!("creating index directory {}: {e}", dir.display()))
        })?;
        let stores: Vec<Arc<Store>> = read(&self.stores).values().cloned().collect();
        for store in stores {
            let _writer = store.writer.lock().await;
            if store.dropped.load(Ordering::Acquire) {
                continue;
            }
            let dir = dir.clone();
            let s = store.clone();
            blocking(move || save_graph(&dir, &s)).await??;
        }
        Ok(())
    }

    fn store(&self, id: String, memory: Memory) -> Store {
        Store {
            id,
            writer: tokio::sync::Mutex::new(()),
            dropped: AtomicBool::new(false),
            memory: RwLock::new(memory),
        }
    }

    fn get_store(&self, store_id: &str) -> Result<Arc<Store>> {
        read(&self.stores)
            .get(store_id)
            .cloned()
            .ok_or_else(|| Error::not_found("Vector store", store_id))
    }

    fn options(&self, dimension: usize) -> IndexOptions {
        IndexOptions {
            dimensions: dimension,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: self.params.connectivity,
            expansion_add: self.params.expansion_add,
            expansion_search: self.params.expansion_search,
            multi: false,
        }
    }

    fn new_graph(&self, dimension: usize, capacity: usize) -> Result<Index> {
        let graph = Index::new(&self.options(dimension)).map_err(|e| usearch_error("create", e))?;
        graph
            .reserve_capacity_and_threads(capacity.max(INITIAL_CAPACITY), self.threads)
            .map_err(|e| usearch_error("reserve", e))?;
        Ok(graph)
    }

    /// Reads a store's chunks from the KV store and builds (or loads) its graph.
    async fn load_store(&self, store_id: &str, mut record: StoreRecord) -> Result<Memory> {
        let rows = self.kv.scan_prefix(&chunk_prefix(store_id)).await?;
        let dimension = record.dimension;
        let mut batch = Batch::with_capacity(rows.len(), dimension);
        let mut seen = HashSet::with_capacity(rows.len());
        let mut max_key = 0u64;
        let mut renumbered = false;
        for (key, value) in rows {
            let row: ChunkRecord = serde_json::from_str(&value)
                .map_err(|e| Error::internal(format!("stored chunk {key}: {e}")))?;
            let Some(embedding) = row.chunk.embedding.as_deref() else {
                tracing::warn!(store_id, chunk_id = %row.chunk.chunk_id, "stored chunk has no embedding; skipped");
                continue;
            };
            if embedding.len() != dimension {
                tracing::warn!(store_id, chunk_id = %row.chunk.chunk_id, "stored chunk has a vector of another dimension; skipped");
                continue;
            }
            let mut graph_key = row.key;
            if graph_key == u64::MAX || !seen.insert(graph_key) {
                // Keys are unique by construction; a clash means damaged records, and the
                // chunk gets a fresh key in memory (the saved graph cannot be trusted then).
                renumbered = true;
                graph_key = record.next_key.max(max_key + 1);
                seen.insert(graph_key);
                record.next_key = graph_key + 1;
            }
            max_key = max_key.max(graph_key);
            batch.push(graph_key, &row.chunk, embedding);
        }
        record.next_key = record.next_key.max(max_key + 1);

        let file = match (&self.index_dir, renumbered) {
            (Some(dir), false) => Some(graph_path(dir, store_id, record.generation)),
            _ => None,
        };
        let options = self.options(dimension);
        let (threads, build_threads) = (self.threads, self.build_threads);
        let params = self.params.clone();
        let (graph, batch, loaded) = blocking(move || -> Result<(Index, Batch, bool)> {
            if let Some(path) = file.filter(|p| p.is_file()) {
                match load_graph(&path, &batch.keys, dimension, threads, &params) {
                    Ok(graph) => return Ok((graph, batch, true)),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "saved HNSW graph not usable; rebuilding"),
                }
            }
            let graph = Index::new(&options).map_err(|e| usearch_error("create", e))?;
            graph
                .reserve_capacity_and_threads(batch.keys.len().max(INITIAL_CAPACITY), threads)
                .map_err(|e| usearch_error("reserve", e))?;
            add_all(&graph, &batch.keys, &batch.vectors, build_threads)?;
            Ok((graph, batch, false))
        })
        .await??;
        if loaded {
            self.loaded_from_files.fetch_add(1, Ordering::Relaxed);
        }
        let mut memory = Memory {
            record,
            graph,
            ids: HashMap::with_capacity(batch.keys.len()),
            docs: HashMap::with_capacity(batch.keys.len()),
            bm25: Bm25::default(),
        };
        for ((key, doc), text) in batch.keys.into_iter().zip(batch.docs).zip(batch.texts) {
            memory.bm25.insert(key, &text);
            memory.ids.insert(doc.chunk_id.clone(), key);
            memory.docs.insert(key, doc);
        }
        Ok(memory)
    }

    /// Reads chunks by id from the KV store, skipping absent ones.
    async fn read_chunks(
        &self,
        store_id: &str,
        ids: impl Iterator<Item = &str>,
    ) -> Result<Vec<Option<Chunk>>> {
        let mut out = Vec::new();
        for id in ids {
            let chunk = match self.kv.get(&chunk_key(store_id, id)).await? {
                Some(v) => Some(
                    serde_json::from_str::<ChunkRecord>(&v)
                        .map_err(|e| {
                            Error::internal(format!(
                                "stored chunk '{id}' of vector store '{store_id}': {e}"
                            ))
                        })?
                        .chunk,
                ),
                None => None,
            };
            out.push(chunk);
        }
        Ok(out)
    }

    /// Attaches stored chunks to `(chunk_id, score)` hits.
    async fn scored(&self, store_id: &str, hits: Vec<(String, f64)>) -> Result<Vec<Scored>> {
        let chunks = self
            .read_chunks(store_id, hits.iter().map(|(id, _)| id.as_str()))
            .await?;
        Ok(chunks
            .into_iter()
            .zip(hits)
            .filter_map(|(chunk, (_, score))| chunk.map(|c| (c, score)))
            .collect())
    }

    async fn write_record(&self, store_id: &str, record: &StoreRecord) -> Result<()> {
        self.kv
            .set(&store_key(store_id), &serde_json::to_string(record)?, None)
            .await
    }

    /// Deletes every KV record under a store's chunk prefix.
    async fn delete_chunk_records(&self, store_id: &str) -> Result<()> {
        for (key, _) in self.kv.scan_prefix(&chunk_prefix(store_id)).await? {
            self.kv.delete(&key).await?;
        }
        Ok(())
    }
}

fn hex(s: &str) -> String {
    use std::fmt::Write;
    s.bytes()
        .fold(String::with_capacity(s.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn graph_path(dir: &Path, store_id: &str, generation: u64) -> PathBuf {
    dir.join(format!("{}-{generation}.{GRAPH_EXT}", hex(store_id)))
}

/// Removes a store's graph files other than `keep`.
fn remove_graph_files(dir: &Path, store_id: &str, keep: Option<&Path>) -> Result<()> {
    let prefix = format!("{}-", hex(store_id));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::internal(format!(
                "reading index directory {}: {e}",
                dir.display()
            )))
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with(&prefix)
            && name[prefix.len()..]
                .split_once('.')
                .is_some_and(|(generation, ext)| {
                    generation.bytes().all(|b| b.is_ascii_digit())
                        && (ext == GRAPH_EXT || ext == format!("{GRAPH_EXT}.tmp"))
                });
        if ours && Some(path.as_path()) != keep {
            std::fs::remove_file(&path).map_err(|e| {
                Error::internal(format!("removing index file {}: {e}", path.display()))
            })?;
        }
    }
    Ok(())
}

/// Saves a store's graph as `{hex}-{generation}.usearch` (temp file, then rename).
fn save_graph(dir: &Path, store: &Store) -> Result<()> {
    let memory = read(&store.memory);
    let path = graph_path(dir, &store.id, memory.record.generation);
    if !path.is_file() {
        let tmp = path.with_extension(format!("{GRAPH_EXT}.tmp"));
        let tmp_str = tmp
            .to_str()
            .ok_or_else(|| Error::internal(format!("index path {} is not UTF-8", tmp.display())))?;
        memory
            .graph
            .save(tmp_str)
            .map_err(|e| usearch_error("save", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            Error::internal(format!("renaming index file to {}: {e}", path.display()))
        })?;
    }
    remove_graph_files(dir, &store.id, Some(&path))
}

/// Loads a saved graph and checks that it holds exactly `keys` at `dimension`.
fn load_graph(
    path: &Path,
    keys: &[u64],
    dimension: usize,
    threads: usize,
    params: &HnswParams,
) -> Result<Index> {
    let path_str = path
        .to_str()
        .ok_or_else(|| Error::internal(format!("index path {} is not UTF-8", path.display())))?;
    let graph = Index::restore(path_str).map_err(|e| usearch_error("load", e))?;
    if graph.dimensions() != dimension
        || graph.size() != keys.len()
        || !keys.iter().all(|k| graph.contains(*k))
    {
        return Err(Error::internal(format!(
            "saved graph {} does not match the stored chunks",
            path.display()
        )));
    }
    graph.change_expansion_add(params.expansion_add);
    graph.change_expansion_search(params.expansion_search);
    graph
        .reserve_capacity_and_threads(keys.len().max(INITIAL_CAPACITY), threads)
        .map_err(|e| usearch_error("reserve", e))?;
    Ok(graph)
}

#[async_trait]
impl VectorIndex for HnswIndex {
    async fn create_store(&self, store_id: &str, dimension: usize) -> Result<()> {
        if dimension == 0 {
            return Err(Error::invalid_request(format!(
                "vector store '{store_id}': embedding dimension must be positive"
            )));
        }
        let _catalog = self.catalog.lock().await;
        if let Some(store) = read(&self.stores).get(store_id) {
            let existing = read(&store.memory).record.dimension;
            return if existing == dimension {
                Ok(())
            } else {
                Err(Error::invalid_request(format!(
                    "vector store '{store_id}' exists with dimension {existing}, not {dimension}"
                )))
            };
        }
        // Leftovers of an interrupted drop must not reappear in the new store.
        self.delete_chunk_records(store_id).await?;
        if let Some(dir) = &self.index_dir {
            remove_graph_files(dir, store_id, None)?;
        }
        let record = StoreRecord {
            dimension,
            next_key: 1,
            generation: 1,
        };
        let graph = self.new_graph(dimension, INITIAL_CAPACITY)?;
        self.write_record(store_id, &record).await?;
        let memory = Memory {
            record,
            graph,
            ids: HashMap::new(),
            docs: HashMap::new(),
            bm25: Bm25::default(),
        };
        write(&self.stores).insert(
            store_id.to_string(),
            Arc::new(self.store(store_id.to_string(), memory)),
        );
        Ok(())
    }

    async fn drop_store(&self, store_id: &str) -> Result<()> {
        let _catalog = self.catalog.lock().await;
        let Some(store) = write(&self.stores).remove(store_id) else {
            return Ok(());
        };
        let _writer = store.writer.lock().await;
        store.dropped.store(true, Ordering::Release);
        // Invalidate any saved graph first, then remove chunks, then the store record.
        let mut record = read(&store.memory).record;
        record.generation += 1;
        self.write_record(store_id, &record).await?;
        self.delete_chunk_records(store_id).await?;
        self.kv.delete(&store_key(store_id)).await?;
        if let Some(dir) = &self.index_dir {
            remove_graph_files(dir, store_id, None)?;
        }
        Ok(())
    }

    async fn upsert(&self, store_id: &str, chunks: &[Chunk]) -> Result<()> {
        let store = self.get_store(store_id)?;
        let _writer = store.writer.lock().await;
        if store.dropped.load(Ordering::Acquire) {
            return Err(Error::not_found("Vector store", store_id));
        }
        let mut record = read(&store.memory).record;
        let dimension = record.dimension;
        for chunk in chunks {
            let len = chunk.embedding.as_ref().map(Vec::len);
            if len != Some(dimension) {
                return Err(Error::invalid_request(match len {
                    Some(len) => format!(
                        "vector store '{store_id}': chunk '{}' has an embedding of dimension {len}, the store's dimension is {dimension}",
                        chunk.chunk_id
                    ),
                    None => format!(
                        "vector store '{store_id}': chunk '{}' has no embedding",
                        chunk.chunk_id
                    ),
                }));
            }
        }
        // The last of several chunks with one id wins.
        let chunks: Vec<&Chunk> = chunks
            .iter()
            .zip(is_last_of_its_id(chunks))
            .filter_map(|(c, last)| last.then_some(c))
            .collect();
        if chunks.is_empty() {
            return Ok(());
        }

        let first_key = record.next_key;
        record.next_key += chunks.len() as u64;
        record.generation += 1;
        self.write_record(store_id, &record).await?;
        write(&store.memory).record = record;

        let mut batch = Batch::with_capacity(chunks.len(), dimension);
        let mut failure = None;
        for (key, chunk) in (first_key..).zip(&chunks) {
            let row = serde_json::to_string(&ChunkRecordRef { key, chunk })?;
            if let Err(e) = self
                .kv
                .set(&chunk_key(store_id, &chunk.chunk_id), &row, None)
                .await
            {
                failure = Some(e);
                break;
            }
            batch.push(key, chunk, chunk.embedding.as_deref().unwrap_or_default());
        }
        // Whatever reached the KV store is mirrored in memory, even after a failure.
        let (threads, build_threads) = (self.threads, self.build_threads);
        let s = store.clone();
        blocking(move || write(&s.memory).apply(batch, threads, build_threads)).await??;
        failure.map_or(Ok(()), Err)
    }

    async fn delete(&self, store_id: &str, chunk_ids: &[String]) -> Result<()> {
        let store = self.get_store(store_id)?;
        let _writer = store.writer.lock().await;
        if store.dropped.load(Ordering::Acquire) {
            return Err(Error::not_found("Vector store", store_id));
        }
        let (mut record, present) = {
            let memory = read(&store.memory);
            let present: Vec<(String, u64)> = chunk_ids
                .iter()
                .filter_map(|id| memory.ids.get(id).map(|k| (id.clone(), *k)))
                .collect();
            (memory.record, present)
        };
        if present.is_empty() {
            return Ok(());
        }
        record.generation += 1;
        self.write_record(store_id, &record).await?;
        write(&store.memory).record = record;
        let mut failure = None;
        let mut removed = Vec::with_capacity(present.len());
        for (id, key) in present {
            if let Err(e) = self.kv.delete(&chunk_key(store_id, &id)).await {
                failure = Some(e);
                break;
            }
            removed.push(key);
        }
        let s = store.clone();
        blocking(move || {
            let mut memory = write(&s.memory);
            removed.into_iter().try_for_each(|key| memory.forget(key))
        })
        .await??;
        failure.map_or(Ok(()), Err)
    }

    async fn get(&self, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>> {
        self.get_store(store_id)?;
        Ok(self
            .read_chunks(store_id, chunk_ids.iter().map(String::as_str))
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn query_vector(
        &self,
        store_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let store = self.get_store(store_id)?;
        let dimension = read(&store.memory).record.dimension;
        if embedding.len() != dimension {
            return Err(Error::invalid_request(format!(
                "vector store '{store_id}': query embedding has dimension {}, the store's dimension is {dimension}",
                embedding.len()
            )));
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        // The permit moves into the task, so a cancelled query still holds its graph
        // context until the search ends.
        let permit = self
            .searches
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(format!("HNSW search slots closed: {e}")))?;
        let query = embedding.to_vec();
        let filter = filter.cloned();
        let hits = blocking(move || {
            let hits = read(&store.memory).nearest(&query, k, filter.as_ref());
            drop(permit);
            hits
        })
        .await??;
        self.scored(store_id, hits).await
    }

    async fn query_keyword(
        &self,
        store_id: &str,
        query: &str,
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>> {
        let store = self.get_store(store_id)?;
        let query = query.to_string();
        let filter = filter.cloned();
        let hits = blocking(move || {
            let memory = read(&store.memory);
            memory
                .bm25
                .search(&query, k, |key| match &filter {
                    None => memory.docs.contains_key(&key),
                    Some(f) => memory
                        .docs
                        .get(&key)
                        .is_some_and(|d| f.matches(&d.metadata)),
                })
                .into_iter()
                .filter_map(|(key, score)| {
                    memory.docs.get(&key).map(|d| (d.chunk_id.clone(), score))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        self.scored(store_id, hits).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use llama_stack_core::error::ErrorKind;
    use serde_json::json;

    use super::*;
    use crate::vector_io::index::cosine;

    /// A KV store in a map (expiry ignored).
    #[derive(Default)]
    struct MapKv(Mutex<BTreeMap<String, String>>);

    impl MapKv {
        fn keys(&self) -> Vec<String> {
            self.0.lock().unwrap().keys().cloned().collect()
        }
    }

    #[async_trait]
    impl KvStore for MapKv {
        async fn get(&self, key: &str) -> Result<Option<String>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn set(&self, key: &str, value: &str, _ttl: Option<Duration>) -> Result<()> {
            self.0
                .lock()
                .unwrap()
                .insert(key.to_string(), value.to_string());
            Ok(())
        }
        async fn set_if_absent(&self, key: &str, value: &str, _: Option<Duration>) -> Result<bool> {
            let mut map = self.0.lock().unwrap();
            if map.contains_key(key) {
                return Ok(false);
            }
            map.insert(key.to_string(), value.to_string());
            Ok(true)
        }
        async fn increment(&self, key: &str, delta: i64, _: Option<Duration>) -> Result<i64> {
            let mut map = self.0.lock().unwrap();
            let v = map.get(key).map_or(0, |v| v.parse::<i64>().unwrap()) + delta;
            map.insert(key.to_string(), v.to_string());
            Ok(v)
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
        async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .range(start.to_string()..end.to_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn backend(&self) -> &'static str {
            "kv_test_map"
        }
    }

    /// SplitMix64: deterministic test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        /// A random direction (normalized Gaussian vector).
        fn unit(&mut self, dimension: usize) -> Vec<f32> {
            let v: Vec<f64> = (0..dimension)
                .map(|_| {
                    let (u1, u2) = (self.uniform(), self.uniform());
                    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| (x / norm) as f32).collect()
        }
    }

    fn chunk(id: &str, text: &str, embedding: Vec<f32>) -> Chunk {
        let mut c = Chunk::new(id, text);
        c.embedding = Some(embedding);
        c
    }

    fn random_chunks(rng: &mut Rng, n: usize, dimension: usize) -> Vec<Chunk> {
        (0..n)
            .map(|i| {
                chunk(
                    &format!("c{i}"),
                    &format!("chunk number {i}"),
                    rng.unit(dimension),
                )
                .with_metadata("group", (i % 50) as i64)
            })
            .collect()
    }

    async fn open(kv: &Arc<MapKv>, dir: Option<&Path>) -> HnswIndex {
        HnswIndex::open(
            kv.clone(),
            dir.map(Path::to_path_buf),
            HnswParams::default(),
        )
        .await
        .unwrap()
    }

    /// Exact top-`k` chunk ids by cosine similarity among chunks `accept` lets through.
    fn brute_force(
        chunks: &[Chunk],
        query: &[f32],
        k: usize,
        accept: impl Fn(&Chunk) -> bool,
    ) -> Vec<String> {
        let mut scored: Vec<(f64, &str)> = chunks
            .iter()
            .filter(|c| accept(c))
            .map(|c| {
                (
                    cosine(query, c.embedding.as_ref().unwrap()),
                    c.chunk_id.as_str(),
                )
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .take(k)
            .map(|(_, id)| id.to_string())
            .collect()
    }

    fn ids(hits: &[Scored]) -> Vec<String> {
        hits.iter().map(|(c, _)| c.chunk_id.clone()).collect()
    }

    /// Mean recall@k of the index against brute force over `queries`.
    async fn recall(
        index: &HnswIndex,
        store: &str,
        chunks: &[Chunk],
        queries: &[Vec<f32>],
        k: usize,
    ) -> f64 {
        let mut found = 0usize;
        for q in queries {
            let truth = brute_force(chunks, q, k, |_| true);
            let got = ids(&index.query_vector(store, q, k, None).await.unwrap());
            found += got.iter().filter(|id| truth.contains(id)).count();
        }
        found as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn params_default_when_absent() {
        let p: HnswParams = serde_json::from_value(json!({"expansion_search": 100})).unwrap();
        assert_eq!(
            (p.connectivity, p.expansion_add, p.expansion_search),
            (16, 128, 100)
        );
        assert!(serde_json::from_value::<HnswParams>(json!({"m": 3})).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recall_at_10_matches_brute_force_and_survives_rebuild() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_recall", 64).await.unwrap();
        let mut rng = Rng(7);
        let chunks = random_chunks(&mut rng, 5000, 64);
        index.upsert("vs_recall", &chunks).await.unwrap();
        let queries: Vec<Vec<f32>> = (0..100).map(|_| rng.unit(64)).collect();
        let r = recall(&index, "vs_recall", &chunks, &queries, 10).await;
        assert!(r >= 0.95, "recall@10 after upsert = {r}");

        // Scores are cosine similarities and results carry embeddings.
        let hits = index
            .query_vector("vs_recall", &queries[0], 10, None)
            .await
            .unwrap();
        for (c, score) in &hits {
            let exact = cosine(&queries[0], c.embedding.as_ref().unwrap());
            assert!((exact - score).abs() < 1e-4, "{exact} vs {score}");
        }
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));

        drop(index);
        let reopened = open(&kv, None).await;
        assert_eq!(reopened.loaded_from_files.load(Ordering::Relaxed), 0);
        let r = recall(&reopened, "vs_recall", &chunks, &queries, 10).await;
        assert!(r >= 0.95, "recall@10 after rebuild = {r}");
    }

    #[tokio::test]
    async fn upsert_of_an_existing_id_replaces_the_chunk() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_a", 3).await.unwrap();
        index
            .upsert(
                "vs_a",
                &[
                    chunk("x", "old text", vec![1.0, 0.0, 0.0]),
                    chunk("y", "other", vec![0.0, 1.0, 0.0]),
                ],
            )
            .await
            .unwrap();
        index
            .upsert("vs_a", &[chunk("x", "new text", vec![0.0, 0.0, 1.0])])
            .await
            .unwrap();
        let hits = index
            .query_vector("vs_a", &[0.0, 0.0, 1.0], 5, None)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["x", "y"]);
        assert!((hits[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(hits[0].0.content.text(), "new text");
        let got = index.get("vs_a", &["x".into()]).await.unwrap();
        assert_eq!(got[0].embedding.as_deref(), Some(&[0.0, 0.0, 1.0][..]));
        assert!(index
            .query_keyword("vs_a", "old", 5, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            ids(&index.query_keyword("vs_a", "new", 5, None).await.unwrap()),
            ["x"]
        );
        // Two chunks with one id in a batch: the last wins.
        index
            .upsert(
                "vs_a",
                &[
                    chunk("z", "first", vec![1.0, 1.0, 0.0]),
                    chunk("z", "second", vec![1.0, 0.0, 0.0]),
                ],
            )
            .await
            .unwrap();
        let hits = index
            .query_vector("vs_a", &[1.0, 0.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["z", "y", "x"]);
        assert_eq!(hits[0].0.content.text(), "second");
    }

    #[tokio::test]
    async fn delete_removes_chunks_from_every_query() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_d", 2).await.unwrap();
        index
            .upsert(
                "vs_d",
                &[
                    chunk("a", "apple pie", vec![1.0, 0.0]),
                    chunk("b", "apple tart", vec![0.9, 0.1]),
                    chunk("c", "banana", vec![0.0, 1.0]),
                ],
            )
            .await
            .unwrap();
        index
            .delete("vs_d", &["a".into(), "missing".into()])
            .await
            .unwrap();
        let hits = index
            .query_vector("vs_d", &[1.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["b", "c"]);
        assert_eq!(
            ids(&index
                .query_keyword("vs_d", "apple", 10, None)
                .await
                .unwrap()),
            ["b"]
        );
        let got = index
            .get("vs_d", &["c".into(), "a".into(), "b".into()])
            .await
            .unwrap();
        assert_eq!(
            ids(&got.into_iter().map(|c| (c, 0.0)).collect::<Vec<_>>()),
            ["c", "b"]
        );
        // Deleted for good: a reopened index does not bring it back.
        drop(index);
        let index = open(&kv, None).await;
        let hits = index
            .query_vector("vs_d", &[1.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["b", "c"]);
    }

    #[tokio::test]
    async fn selective_filters_still_return_k_matches() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_f", 32).await.unwrap();
        let mut rng = Rng(11);
        let chunks = random_chunks(&mut rng, 2000, 32);
        index.upsert("vs_f", &chunks).await.unwrap();
        let filter = AttributeFilter::eq("group", 7);
        for _ in 0..10 {
            let q = rng.unit(32);
            let hits = index
                .query_vector("vs_f", &q, 10, Some(&filter))
                .await
                .unwrap();
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|(c, _)| c.metadata["group"] == json!(7)));
            let truth = brute_force(&chunks, &q, 10, |c| c.metadata["group"] == json!(7));
            let found = ids(&hits).iter().filter(|id| truth.contains(id)).count();
            assert!(found >= 9, "filtered recall {found}/10");
        }
        // A broad filter walks the graph with a predicate.
        let broad =
            AttributeFilter::from_value(&json!({"type": "lt", "key": "group", "value": 25}))
                .unwrap();
        for _ in 0..10 {
            let q = rng.unit(32);
            let hits = index
                .query_vector("vs_f", &q, 10, Some(&broad))
                .await
                .unwrap();
            assert_eq!(hits.len(), 10);
            let below = |c: &Chunk| c.metadata["group"].as_i64().unwrap() < 25;
            assert!(hits.iter().all(|(c, _)| below(c)));
            let truth = brute_force(&chunks, &q, 10, below);
            let found = ids(&hits).iter().filter(|id| truth.contains(id)).count();
            assert!(found >= 9, "broad filtered recall {found}/10");
        }
        // A filter matching fewer than k chunks returns all of them.
        let only =
            AttributeFilter::from_value(&json!({"type": "in", "key": "group", "value": [3]}))
                .unwrap();
        let few: Vec<Chunk> = (0..3)
            .map(|i| chunk(&format!("rare{i}"), "rare", rng.unit(32)).with_metadata("group", 1000))
            .collect();
        index.upsert("vs_f", &few).await.unwrap();
        let rare = AttributeFilter::eq("group", 1000);
        let hits = index
            .query_vector("vs_f", &rng.unit(32), 10, Some(&rare))
            .await
            .unwrap();
        assert_eq!(hits.len(), 3);
        let hits = index
            .query_vector("vs_f", &rng.unit(32), 50, Some(&only))
            .await
            .unwrap();
        assert_eq!(hits.len(), 40);
    }

    #[tokio::test]
    async fn keyword_search_ranks_by_bm25_and_filters_before_the_cut() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_k", 2).await.unwrap();
        let docs = [
            ("d1", "Rust vector search in Rust", "a"),
            ("d2", "vector databases store embeddings", "a"),
            ("d3", "a recipe for bread", "b"),
            ("d4", "RUST: a systems language", "b"),
            ("d5", "the rust belt, the rust belt and more rust", "b"),
        ];
        let chunks: Vec<Chunk> = docs
            .iter()
            .map(|(id, text, team)| chunk(id, text, vec![1.0, 0.0]).with_metadata("team", *team))
            .collect();
        index.upsert("vs_k", &chunks).await.unwrap();
        let hits = index
            .query_keyword("vs_k", "rust vector", 10, None)
            .await
            .unwrap();
        assert_eq!(hits[0].0.chunk_id, "d1");
        assert_eq!(hits.len(), 4);
        assert!(!ids(&hits).contains(&"d3".to_string()));
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1 && w[1].1 > 0.0));
        // k = 1 with a filter: the best chunk of team b, not nothing.
        let team_b = AttributeFilter::eq("team", "b");
        let hits = index
            .query_keyword("vs_k", "rust vector", 1, Some(&team_b))
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["d5"]);
        assert!(index
            .query_keyword("vs_k", "zebra", 10, None)
            .await
            .unwrap()
            .is_empty());
        assert!(index
            .query_keyword("vs_k", "", 10, None)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn stores_are_isolated_and_may_differ_in_dimension() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        // Ids with ':' do not overlap each other's chunk keys.
        index.create_store("vs:a", 2).await.unwrap();
        index.create_store("vs", 3).await.unwrap();
        index
            .upsert("vs:a", &[chunk("x", "left", vec![1.0, 0.0])])
            .await
            .unwrap();
        index
            .upsert("vs", &[chunk("a:x", "right", vec![0.0, 0.0, 1.0])])
            .await
            .unwrap();
        let left = index
            .query_vector("vs:a", &[1.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&left), ["x"]);
        let right = index
            .query_vector("vs", &[0.0, 0.0, 1.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&right), ["a:x"]);
        assert!(index
            .query_keyword("vs", "left", 10, None)
            .await
            .unwrap()
            .is_empty());
        assert!(index.get("vs", &["x".into()]).await.unwrap().is_empty());
        index.drop_store("vs").await.unwrap();
        let left = index
            .query_vector("vs:a", &[1.0, 0.0], 10, None)
            .await
            .unwrap();
        assert_eq!(ids(&left), ["x"]);
        drop(index);
        let index = open(&kv, None).await;
        assert_eq!(
            ids(&index.query_keyword("vs:a", "left", 10, None).await.unwrap()),
            ["x"]
        );
    }

    #[tokio::test]
    async fn wrong_dimensions_and_unknown_stores_are_errors() {
        let kv = Arc::new(MapKv::default());
        let index = open(&kv, None).await;
        index.create_store("vs_dim", 4).await.unwrap();
        index.create_store("vs_dim", 4).await.unwrap();
        let e = index.create_store("vs_dim", 5).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = index
            .upsert("vs_dim", &[chunk("c1", "t", vec![1.0, 2.0, 3.0])])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        for part in ["vs_dim", "c1", "3", "4"] {
            assert!(e.message().contains(part), "{}", e.message());
        }
        let e = index
            .upsert("vs_dim", &[Chunk::new("c2", "t")])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = index
            .query_vector("vs_dim", &[1.0], 3, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        // Nothing was written by the failed upserts.
        assert!(index
            .get("vs_dim", &["c1".into(), "c2".into()])
            .await
            .unwrap()
            .is_empty());

        let nf = |e: Error| {
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert!(e.message().contains("vs_none"));
        };
        nf(index.upsert("vs_none", &[]).await.unwrap_err());
        nf(index.delete("vs_none", &[]).await.unwrap_err());
        nf(index.get("vs_none", &[]).await.unwrap_err());
        nf(index
            .query_vector("vs_none", &[1.0], 1, None)
            .await
            .unwrap_err());
        nf(index
            .query_keyword("vs_none", "x", 1, None)
            .await
            .unwrap_err());
        index.drop_store("vs_none").await.unwrap();
    }

    #[tokio::test]
    async fn reopening_rebuilds_the_same_results() {
        let kv = Arc::new(MapKv::default());
        let mut rng = Rng(3);
        let chunks = random_chunks(&mut rng, 300, 16);
        let queries: Vec<Vec<f32>> = (0..20).map(|_| rng.unit(16)).collect();
        let filter = AttributeFilter::eq("group", 4);
        let mut before = Vec::new();
        {
            let index = open(&kv, None).await;
            index.create_store("vs_r", 16).await.unwrap();
            index.upsert("vs_r", &chunks).await.unwrap();
            index
                .delete("vs_r", &["c1".into(), "c2".into()])
                .await
                .unwrap();
            for q in &queries {
                before.push(ids(&index.query_vector("vs_r", q, 5, None).await.unwrap()));
                before.push(ids(&index
                    .query_vector("vs_r", q, 5, Some(&filter))
                    .await
                    .unwrap()));
            }
            before.push(ids(&index
                .query_keyword("vs_r", "number 42", 5, None)
                .await
                .unwrap()));
        }
        let index = open(&kv, None).await;
        let mut after = Vec::new();
        for q in &queries {
            after.push(ids(&index.query_vector("vs_r", q, 5, None).await.unwrap()));
            after.push(ids(&index
                .query_vector("vs_r", q, 5, Some(&filter))
                .await
                .unwrap()));
        }
        after.push(ids(&index
            .query_keyword("vs_r", "number 42", 5, None)
            .await
            .unwrap()));
        assert_eq!(before, after);
        // New keys after a reopen never collide with stored ones.
        index
            .upsert("vs_r", &[chunk("new", "fresh", queries[0].clone())])
            .await
            .unwrap();
        let hits = index
            .query_vector("vs_r", &queries[0], 1, None)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["new"]);
        assert_eq!(index.get("vs_r", &["c3".into()]).await.unwrap().len(), 1);
    }

    fn graph_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn flushed_graphs_load_at_open_unless_stale() {
        let kv = Arc::new(MapKv::default());
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(5);
        let chunks = random_chunks(&mut rng, 500, 8);
        let q = rng.unit(8);
        let expected;
        {
            let index = open(&kv, Some(dir.path())).await;
            index.create_store("vs_one", 8).await.unwrap();
            index.create_store("vs_two", 8).await.unwrap();
            index.upsert("vs_one", &chunks).await.unwrap();
            index.upsert("vs_two", &chunks[..10]).await.unwrap();
            expected = ids(&index.query_vector("vs_one", &q, 10, None).await.unwrap());
            index.flush().await.unwrap();
            index.flush().await.unwrap();
            assert_eq!(graph_files(dir.path()).len(), 2);
        }
        {
            let index = open(&kv, Some(dir.path())).await;
            assert_eq!(index.loaded_from_files.load(Ordering::Relaxed), 2);
            assert_eq!(
                ids(&index.query_vector("vs_one", &q, 10, None).await.unwrap()),
                expected
            );
            // A write after the flush makes the saved graph stale.
            index
                .upsert("vs_one", &[chunk("late", "late", q.clone())])
                .await
                .unwrap();
        }
        let index = open(&kv, Some(dir.path())).await;
        assert_eq!(index.loaded_from_files.load(Ordering::Relaxed), 1);
        let hits = index.query_vector("vs_one", &q, 11, None).await.unwrap();
        assert_eq!(hits[0].0.chunk_id, "late");
        assert_eq!(ids(&hits)[1..], expected[..]);
        // Flushing again replaces the stale file.
        index.flush().await.unwrap();
        assert_eq!(graph_files(dir.path()).len(), 2);
        drop(index);
        let index = open(&kv, Some(dir.path())).await;
        assert_eq!(index.loaded_from_files.load(Ordering::Relaxed), 2);
        // An unreadable file is ignored and the graph rebuilt.
        for name in graph_files(dir.path()) {
            std::fs::write(dir.path().join(name), b"not a graph").unwrap();
        }
        drop(index);
        let index = open(&kv, Some(dir.path())).await;
        assert_eq!(index.loaded_from_files.load(Ordering::Relaxed), 0);
        assert_eq!(
            ids(&index.query_vector("vs_one", &q, 11, None).await.unwrap())[1..],
            expected[..]
        );
    }

    #[tokio::test]
    async fn drop_store_removes_everything() {
        let kv = Arc::new(MapKv::default());
        let dir = tempfile::tempdir().unwrap();
        let index = open(&kv, Some(dir.path())).await;
        index.create_store("vs_gone", 2).await.unwrap();
        index.create_store("vs_kept", 2).await.unwrap();
        for store in ["vs_gone", "vs_kept"] {
            index
                .upsert(
                    store,
                    &[
                        chunk("a", "alpha", vec![1.0, 0.0]),
                        chunk("b", "beta", vec![0.0, 1.0]),
                    ],
                )
                .await
                .unwrap();
        }
        index.flush().await.unwrap();
        index.drop_store("vs_gone").await.unwrap();
        index.drop_store("vs_gone").await.unwrap();
        assert!(
            kv.keys().iter().all(|k| !k.contains("vs_gone")),
            "{:?}",
            kv.keys()
        );
        assert_eq!(
            graph_files(dir.path()),
            [format!("{}-2.usearch", hex("vs_kept"))]
        );
        let e = index
            .query_vector("vs_gone", &[1.0, 0.0], 1, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // Re-created under the same id, the store starts empty.
        index.create_store("vs_gone", 2).await.unwrap();
        assert!(index
            .query_vector("vs_gone", &[1.0, 0.0], 5, None)
            .await
            .unwrap()
            .is_empty());
        assert!(index
            .query_keyword("vs_gone", "alpha", 5, None)
            .await
            .unwrap()
            .is_empty());
        drop(index);
        let index = open(&kv, Some(dir.path())).await;
        assert!(index
            .get("vs_gone", &["a".into()])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(index.get("vs_kept", &["a".into()]).await.unwrap().len(), 1);
    }
}
