//! Inference providers, one module each.

#[cfg(feature = "remote-native")]
pub mod anthropic;
#[cfg(feature = "inline-candle")]
pub mod candle;
#[cfg(feature = "remote-native")]
pub mod gemini;
#[cfg(feature = "remote-openai-compat")]
pub mod remote;
#[cfg(feature = "inline-sentence-transformers")]
pub mod sentence_transformers;
