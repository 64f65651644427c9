//! Remote inference over OpenAI's protocol: one core ([`OpenAiCompatProvider`]) and one
//! [`ServiceProfile`] per service (`remote::openai`, `remote::vllm`, `remote::ollama`,
//! `remote::llama-cpp-server`, ...; see [`SERVICES`]).
//!
//! Every provider takes Llama Stack's shared remote config (`base_url`, the API key field,
//! `allowed_models`, `refresh_models`, `network`) plus its service's own fields, and:
//! - forwards chat completions (streamed or not), completions and embeddings, `extra_body`
//!   fields and `network.headers`; the upstream sees the model's `provider_resource_id`;
//! - takes the API key per request from `X-LlamaStack-Provider-Data` (the service's field,
//!   e.g. `openai_api_key`) before the configured one;
//! - lists the service's models (`GET /models`) at startup and, with `refresh_models`,
//!   again every `refresh_interval_seconds` (default 300, Llama Stack's fixed interval);
//! - vLLM: applies the configured `max_tokens` to requests that bound neither `max_tokens`
//!   nor `max_completion_tokens`;
//! - watsonx: exchanges the API key for an IBM Cloud IAM bearer token at `iam_url`
//!   (default `https://iam.cloud.ibm.com`), cached until a minute before it expires;
//! - retries 429/5xx/connection failures with backoff and jitter (never after a stream has
//!   started), honours `Retry-After`, and fails fast while the service is down
//!   (circuit breaker: `circuit_breaker.failure_threshold`, `circuit_breaker.open_seconds`).
//!
//! The native providers `remote::anthropic` and `remote::gemini` (feature `remote-native`,
//! modules `inference::anthropic` and `inference::gemini`) reuse this
//! module's config parsing, HTTP client, retries, circuit breaker and SSE decoding, and
//! translate to and from their services' own wire formats.

mod circuit;
pub mod config;
mod iam;
#[cfg(feature = "remote-native")]
pub(crate) mod native;
pub(crate) mod provider;
pub mod services;
pub(crate) mod stream;
pub(crate) mod upstream;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use llama_stack_core::api::Api;
use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderInstance, ProviderSpec};
use llama_stack_core::{Error, Result};

pub use config::OpenAiCompatConfig;
pub use provider::OpenAiCompatProvider;
pub use services::{ServiceProfile, SERVICES};

/// Builds the provider of `profile` from a factory context (env defaults from the process
/// environment).
pub fn build(
    profile: &'static ServiceProfile,
    ctx: &ProviderContext,
) -> Result<OpenAiCompatProvider> {
    let config = config::parse(profile, &ctx.config, &ctx.config_path, &|var| {
        std::env::var(var).ok()
    })?;
    OpenAiCompatProvider::new(profile, &ctx.provider_id, config, &ctx.config_path)
}

/// The spec of one service.
pub fn spec(profile: &'static ServiceProfile) -> ProviderSpec {
    ProviderSpec::new::<OpenAiCompatConfig>(
        Api::Inference,
        profile.provider_type,
        profile.description,
        FnFactory(move |ctx: ProviderContext| async move {
            Ok(ProviderInstance::Inference(Arc::new(build(profile, &ctx)?)))
        }),
    )
}

/// The specs of every OpenAI-compatible service.
pub fn specs() -> Vec<ProviderSpec> {
    SERVICES.iter().map(spec).collect()
}

/// The spec of `provider_type`, if it is an OpenAI-compatible service.
pub fn spec_for(provider_type: &str) -> Result<ProviderSpec> {
    services::profile(provider_type)
        .map(spec)
        .ok_or_else(|| Error::not_found("Provider type", provider_type))
}
