//! The Providers API: which providers are configured, their (redacted) config and health.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::RequestContext;
use crate::error::Result;

/// Health of a provider or the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HealthStatus {
    /// Working.
    #[serde(rename = "OK")]
    Ok,
    /// Failing.
    #[serde(rename = "Error")]
    Error,
    /// The provider has no health check.
    #[serde(rename = "Not Implemented")]
    NotImplemented,
}

/// A health status with an optional message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// What is wrong, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Health {
    /// Healthy.
    pub fn ok() -> Self {
        Health {
            status: HealthStatus::Ok,
            message: None,
        }
    }

    /// Failing, with a message.
    pub fn error(message: impl Into<String>) -> Self {
        Health {
            status: HealthStatus::Error,
            message: Some(message.into()),
        }
    }

    /// No health check.
    pub fn not_implemented() -> Self {
        Health {
            status: HealthStatus::NotImplemented,
            message: None,
        }
    }
}

/// One configured provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderInfo {
    /// The API it serves.
    pub api: String,
    /// Its id in the run config.
    pub provider_id: String,
    /// Its type (`remote::openai`, ...).
    pub provider_type: String,
    /// Its config after env substitution, secrets replaced by `********`.
    pub config: Value,
    /// Its health.
    pub health: Health,
}

/// `{data: [...]}` list of providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListProvidersResponse {
    /// The providers.
    pub data: Vec<ProviderInfo>,
}

/// The Providers API.
#[async_trait]
pub trait Providers: Send + Sync {
    /// Every enabled provider, with health.
    async fn list_providers(&self, ctx: &RequestContext) -> Result<ListProvidersResponse>;
    /// One provider by id (`NotFound` if unknown).
    async fn inspect_provider(
        &self,
        ctx: &RequestContext,
        provider_id: &str,
    ) -> Result<ProviderInfo>;
}

/// Replaces the values of secret-looking keys (`api_key`, `password`, `token`, `secret`,
/// ...) with `********`, recursively, as Llama Stack does.
pub fn redact_config(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String("********".into())
                    } else {
                        redact_config(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_config).collect()),
        other => other.clone(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let exempt = [
        "chunk_size_tokens",
        "max_tokens",
        "default_chunk_overlap_tokens",
        "max_document_tokens",
    ];
    if exempt.iter().any(|e| k.contains(e)) {
        return false;
    }
    ["api_key", "api_token", "password", "secret", "token"]
        .iter()
        .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_recursively() {
        let cfg = json!({"api_key": "sk-1", "base_url": "u", "max_tokens": 5,
            "nested": {"password": "p", "db": "x"}, "list": [{"client_secret": "s"}]});
        assert_eq!(
            redact_config(&cfg),
            json!({"api_key": "********", "base_url": "u", "max_tokens": 5,
                "nested": {"password": "********", "db": "x"}, "list": [{"client_secret": "********"}]})
        );
    }
}
