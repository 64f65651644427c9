//! Document ingestion for the vector-store service: format detection, plain-text
//! extraction (text, Markdown, HTML, JSON, CSV, PDF) and token-window chunking measured in
//! cl100k_base tokens.
//!
//! Everything here is synchronous and CPU-bound; callers run it on a blocking thread. Bad
//! input yields an `InvalidRequest` (or `Unsupported`) error naming the file, never a panic.

mod chunk;
mod extract;
mod format;
mod guard;
mod html;
mod pdf;

pub use chunk::{chunk_text, count_tokens, TextChunk, TOKENIZER};
pub use extract::{extract_text, Document};
pub use format::{detect_format, DocumentFormat};
