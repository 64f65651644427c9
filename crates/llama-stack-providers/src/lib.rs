//! Providers of llama-stack-rs, each behind its own cargo feature.
//!
//! [`builtin_providers`] lists the provider specs compiled into this build; the facade
//! registers them before resolving the run config. Applications add their own with
//! `StackBuilder::with_provider`.
#![deny(missing_docs)]

use llama_stack_core::provider::ProviderSpec;

/// Every provider spec compiled into this build (gated by cargo features).
pub fn builtin_providers() -> Vec<ProviderSpec> {
    Vec::new()
}
