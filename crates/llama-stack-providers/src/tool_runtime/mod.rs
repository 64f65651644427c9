//! Tool runtime providers.
//!
//! | provider type | tool group | what |
//! |---|---|---|
//! | `inline::file-search` (alias `inline::rag-runtime`) | `builtin::file_search` (alias `builtin::rag`) | the RAG tool: insert documents, `knowledge_search` with citations |

#[cfg(feature = "inline-file-search")]
pub mod file_search;
