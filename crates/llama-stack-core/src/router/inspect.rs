//! [`InspectService`]: routes, health and version.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::api::inspect::{
    HealthResponse, Inspect, ListRoutesResponse, RouteFilter, RouteInfo, VersionResponse,
    LLAMA_STACK_VERSION, ROUTES,
};
use crate::api::providers::HealthStatus;
use crate::api::Api;
use crate::context::RequestContext;
use crate::error::Result;

/// The Inspect API.
pub struct InspectService {
    provider_types: BTreeMap<Api, Vec<String>>,
}

impl InspectService {
    /// A service reporting `provider_types` (API → configured provider types).
    pub fn new(provider_types: BTreeMap<Api, Vec<String>>) -> Self {
        InspectService { provider_types }
    }
}

fn passes(filter: Option<RouteFilter>, path: &str, api: Api, deprecated: bool) -> bool {
    let level = |prefix: &str| api == Api::Inference || path.starts_with(prefix);
    match filter {
        None => !deprecated,
        Some(RouteFilter::Deprecated) => deprecated,
        Some(RouteFilter::V1) => !deprecated && level("/v1/"),
        Some(RouteFilter::V1alpha) => !deprecated && level("/v1alpha/"),
        Some(RouteFilter::V1beta) => !deprecated && level("/v1beta/"),
    }
}

#[async_trait]
impl Inspect for InspectService {
    async fn list_routes(
        &self,
        _ctx: &RequestContext,
        filter: Option<RouteFilter>,
    ) -> Result<ListRoutesResponse> {
        let data = ROUTES
            .iter()
            .filter(|r| passes(filter, r.path, r.api, r.deprecated))
            .map(|r| RouteInfo {
                route: r.path.to_string(),
                method: r.method.to_string(),
                provider_types: self.provider_types.get(&r.api).cloned().unwrap_or_default(),
            })
            .collect();
        Ok(ListRoutesResponse { data })
    }

    async fn health(&self, _ctx: &RequestContext) -> Result<HealthResponse> {
        Ok(HealthResponse {
            status: HealthStatus::Ok,
        })
    }

    async fn version(&self, _ctx: &RequestContext) -> Result<VersionResponse> {
        Ok(VersionResponse {
            version: LLAMA_STACK_VERSION.to_string(),
        })
    }
}
