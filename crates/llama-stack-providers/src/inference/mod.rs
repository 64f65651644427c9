//! Inference providers, one module each.

#[cfg(feature = "inline-candle")]
pub mod candle;
#[cfg(feature = "inline-sentence-transformers")]
pub mod sentence_transformers;
