//! [`VectorIndex`]: what a vector database backend does for the shared vector-store
//! service (store metadata, files, chunking, embedding and fusion live in the service).

use async_trait::async_trait;
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::vector_io::{AttributeFilter, Chunk};
use llama_stack_core::{Error, Result};
use serde_json::Map;

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

/// Checks a vector against a store's dimension and for non-finite components (`what`
/// names the vector in the error).
pub fn check_embedding(
    store_id: &str,
    what: &str,
    embedding: &[f32],
    dimension: usize,
) -> Result<()> {
    if embedding.len() != dimension {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': {what} has dimension {}, but the store's dimension is {dimension}",
            embedding.len()
        ))
        .with_context("resource_id", store_id));
    }
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': {what} has a component that is not a finite number"
        ))
        .with_context("resource_id", store_id));
    }
    Ok(())
}

/// The embedding of a chunk about to be stored, checked against the store's dimension.
pub fn chunk_embedding<'c>(
    store_id: &str,
    chunk: &'c Chunk,
    dimension: usize,
) -> Result<&'c [f32]> {
    let Some(embedding) = &chunk.embedding else {
        return Err(Error::invalid_request(format!(
            "Vector store '{store_id}': chunk '{}' has no embedding",
            chunk.chunk_id
        ))
        .with_context("resource_id", store_id));
    };
    check_embedding(
        store_id,
        &format!("the embedding of chunk '{}'", chunk.chunk_id),
        embedding,
        dimension,
    )?;
    Ok(embedding)
}

/// For each chunk of a batch, whether no later chunk has the same id: of repeated ids in
/// one upsert, the last wins.
pub fn is_last_of_its_id(chunks: &[Chunk]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::with_capacity(chunks.len());
    let mut keep: Vec<bool> = chunks
        .iter()
        .rev()
        .map(|c| seen.insert(c.chunk_id.as_str()))
        .collect();
    keep.reverse();
    keep
}

/// The chunk without its embedding and metadata, which backends store in their own columns.
pub fn without_embedding_and_metadata(chunk: &Chunk) -> Chunk {
    Chunk {
        content: chunk.content.clone(),
        chunk_id: chunk.chunk_id.clone(),
        metadata: Map::new(),
        chunk_metadata: chunk.chunk_metadata.clone(),
        embedding: None,
        embedding_model: chunk.embedding_model.clone(),
        embedding_dimension: chunk.embedding_dimension,
    }
}

/// The chunks found, in the order their ids were asked for (absent ids skipped).
pub fn in_asked_order(
    chunk_ids: &[String],
    found: &std::collections::HashMap<String, Chunk>,
) -> Vec<Chunk> {
    chunk_ids
        .iter()
        .filter_map(|id| found.get(id).cloned())
        .collect()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_last_chunk_of_an_id_wins() {
        let chunks: Vec<Chunk> = ["a", "b", "a", "c", "b"]
            .iter()
            .map(|id| Chunk::new(*id, "text"))
            .collect();
        assert_eq!(is_last_of_its_id(&chunks), [false, false, true, true, true]);
    }

    #[test]
    fn chunk_embeddings_are_checked() {
        let mut c = Chunk::new("a", "text");
        assert!(chunk_embedding("s", &c, 2)
            .unwrap_err()
            .message()
            .contains("has no embedding"));
        c.embedding = Some(vec![1.0, f32::NAN]);
        assert!(chunk_embedding("s", &c, 2).is_err());
        c.embedding = Some(vec![1.0]);
        assert!(chunk_embedding("s", &c, 2)
            .unwrap_err()
            .message()
            .contains("dimension 1"));
        c.embedding = Some(vec![1.0, 0.0]);
        assert_eq!(chunk_embedding("s", &c, 2).unwrap(), &[1.0, 0.0]);
    }
}
