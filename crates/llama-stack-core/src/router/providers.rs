//! [`ProvidersService`]: the Providers API over the configured provider instances.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::api::providers::{
    redact_config, Health, ListProvidersResponse, ProviderInfo, Providers,
};
use crate::api::Api;
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::provider::ProviderInstance;

/// How long a provider health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// One configured provider instance.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    /// The API it serves.
    pub api: Api,
    /// Its id.
    pub provider_id: String,
    /// Its type.
    pub provider_type: String,
    /// Its config after env substitution (redacted when reported).
    pub config: Value,
    /// The built instance.
    pub instance: ProviderInstance,
}

/// The Providers API.
pub struct ProvidersService {
    entries: Vec<ProviderEntry>,
}

impl ProvidersService {
    /// A service over `entries`.
    pub fn new(entries: Vec<ProviderEntry>) -> Self {
        ProvidersService { entries }
    }

    /// The configured entries.
    pub fn entries(&self) -> &[ProviderEntry] {
        &self.entries
    }

    async fn info(entry: &ProviderEntry) -> ProviderInfo {
        let health = match tokio::time::timeout(HEALTH_TIMEOUT, entry.instance.health()).await {
            Ok(h) => h,
            Err(_) => Health::error(format!(
                "health check timed out after {} s",
                HEALTH_TIMEOUT.as_secs()
            )),
        };
        ProviderInfo {
            api: entry.api.as_str().to_string(),
            provider_id: entry.provider_id.clone(),
            provider_type: entry.provider_type.clone(),
            config: redact_config(&entry.config),
            health,
        }
    }
}

#[async_trait]
impl Providers for ProvidersService {
    async fn list_providers(&self, _ctx: &RequestContext) -> Result<ListProvidersResponse> {
        let infos = futures::future::join_all(self.entries.iter().map(Self::info)).await;
        Ok(ListProvidersResponse { data: infos })
    }

    async fn inspect_provider(
        &self,
        _ctx: &RequestContext,
        provider_id: &str,
    ) -> Result<ProviderInfo> {
        match self.entries.iter().find(|e| e.provider_id == provider_id) {
            Some(entry) => Ok(Self::info(entry).await),
            None => {
                let ids: Vec<&str> = self
                    .entries
                    .iter()
                    .map(|e| e.provider_id.as_str())
                    .collect();
                Err(Error::new(
                    crate::ErrorKind::NotFound,
                    format!(
                        "Provider '{provider_id}' not found (configured: [{}]).",
                        ids.join(", ")
                    ),
                )
                .with_context("resource_id", provider_id))
            }
        }
    }
}
