//! [`VectorIndex`]: what a vector database backend does for the shared vector-store
//! service (store metadata, files, chunking, embedding and fusion live in the service).

use async_trait::async_trait;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk};
use llama_stack_core::Result;

/// A chunk and its score (higher is better).
pub type Scored = (Chunk, f64);

/// A vector database holding the chunks of many stores.
///
/// Contract, checked by the conformance suite for every backend:
/// - `upsert` replaces a chunk with the same `chunk_id` in the same store; every chunk it
///   receives carries an embedding of the store's dimension (the service checks).
/// - `query_vector` scores by cosine similarity (`1` = same direction), best first, and
///   returns at most `k` chunks that match `filter` (the filter is applied *before* the
///   `k` cut, so a selective filter still returns up to `k` matches). Returned chunks
///   carry their embedding.
/// - `query_keyword` ranks by a BM25-style text score (higher is better); a backend
///   without full-text search answers `ErrorKind::Unsupported`.
/// - Stores are independent: nothing inserted into one is visible in another.
/// - Data survives dropping and re-opening the backend over the same storage.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Prepares storage for a store of `dimension`-sized vectors (idempotent).
    async fn create_store(&self, store_id: &str, dimension: usize) -> Result<()>;
    /// Drops a store and all its chunks (absent store: no error).
    async fn drop_store(&self, store_id: &str) -> Result<()>;
    /// Inserts or replaces chunks.
    async fn upsert(&self, store_id: &str, chunks: &[Chunk]) -> Result<()>;
    /// Deletes chunks by id (absent ids are ignored).
    async fn delete(&self, store_id: &str, chunk_ids: &[String]) -> Result<()>;
    /// The chunks with these ids that exist, in the order asked.
    async fn get(&self, store_id: &str, chunk_ids: &[String]) -> Result<Vec<Chunk>>;
    /// The `k` chunks nearest to `embedding` that match `filter`.
    async fn query_vector(
        &self,
        store_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>>;
    /// The `k` chunks best matching the words of `query` that match `filter`.
    async fn query_keyword(
        &self,
        store_id: &str,
        query: &str,
        k: usize,
        filter: Option<&AttributeFilter>,
    ) -> Result<Vec<Scored>>;
    /// Backend health.
    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// Cosine similarity of two vectors of equal length (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
