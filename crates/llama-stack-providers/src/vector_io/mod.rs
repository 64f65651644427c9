//! Vector IO providers: one shared vector-store service (store and file records, document
//! parsing, chunking, embedding, hybrid fusion) over a [`index::VectorIndex`] backend per
//! vector database.

pub mod index;
#[cfg(feature = "vector-io")]
pub mod ingest;
#[cfg(feature = "inline-sqlite-vec")]
pub mod sqlite_vec;
#[cfg(feature = "inline-faiss")]
pub mod faiss;
