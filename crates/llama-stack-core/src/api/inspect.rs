//! The Inspect API: the route table, health and version.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::providers::HealthStatus;
use super::Api;
use crate::context::RequestContext;
use crate::error::Result;

/// The Llama Stack version this implementation is wire-compatible with.
pub const LLAMA_STACK_VERSION: &str = "0.7.1";

/// One HTTP route of an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// Path, with `{x:path}` for ids that may contain slashes.
    pub path: &'static str,
    /// The API that owns the route.
    pub api: Api,
    /// Deprecated (or kept from before 0.7).
    pub deprecated: bool,
}

const fn r(method: &'static str, path: &'static str, api: Api) -> RouteSpec {
    RouteSpec {
        method,
        path,
        api,
        deprecated: false,
    }
}

const fn d(method: &'static str, path: &'static str, api: Api) -> RouteSpec {
    RouteSpec {
        method,
        path,
        api,
        deprecated: true,
    }
}

/// Every route of every known API, as Llama Stack 0.7 lists them, plus the routes kept
/// from earlier versions (marked deprecated).
pub const ROUTES: &[RouteSpec] = &[
    r("POST", "/v1/chat/completions", Api::Inference),
    r("GET", "/v1/chat/completions", Api::Inference),
    r(
        "GET",
        "/v1/chat/completions/{completion_id}",
        Api::Inference,
    ),
    r("POST", "/v1/completions", Api::Inference),
    r("POST", "/v1/embeddings", Api::Inference),
    r("POST", "/v1alpha/inference/rerank", Api::Inference),
    r("GET", "/v1/models", Api::Models),
    r("GET", "/v1/models/{model_id:path}", Api::Models),
    d("POST", "/v1/models", Api::Models),
    d("DELETE", "/v1/models/{model_id:path}", Api::Models),
    r("POST", "/v1/files", Api::Files),
    r("GET", "/v1/files", Api::Files),
    r("GET", "/v1/files/{file_id}", Api::Files),
    r("DELETE", "/v1/files/{file_id}", Api::Files),
    r("GET", "/v1/files/{file_id}/content", Api::Files),
    r("POST", "/v1/vector-io/insert", Api::VectorIo),
    r("POST", "/v1/vector-io/query", Api::VectorIo),
    r("POST", "/v1/vector_stores", Api::VectorIo),
    r("GET", "/v1/vector_stores", Api::VectorIo),
    r("GET", "/v1/vector_stores/{vector_store_id}", Api::VectorIo),
    r("POST", "/v1/vector_stores/{vector_store_id}", Api::VectorIo),
    r(
        "DELETE",
        "/v1/vector_stores/{vector_store_id}",
        Api::VectorIo,
    ),
    r(
        "POST",
        "/v1/vector_stores/{vector_store_id}/search",
        Api::VectorIo,
    ),
    r(
        "POST",
        "/v1/vector_stores/{vector_store_id}/files",
        Api::VectorIo,
    ),
    r(
        "GET",
        "/v1/vector_stores/{vector_store_id}/files",
        Api::VectorIo,
    ),
    r(
        "GET",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Api::VectorIo,
    ),
    r(
        "POST",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Api::VectorIo,
    ),
    r(
        "DELETE",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Api::VectorIo,
    ),
    r(
        "GET",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}/content",
        Api::VectorIo,
    ),
    r(
        "POST",
        "/v1/vector_stores/{vector_store_id}/file_batches",
        Api::VectorIo,
    ),
    r(
        "GET",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}",
        Api::VectorIo,
    ),
    r(
        "GET",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
        Api::VectorIo,
    ),
    r(
        "POST",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
        Api::VectorIo,
    ),
    r("POST", "/v1/safety/run-shield", Api::Safety),
    r("POST", "/v1/moderations", Api::Safety),
    r("GET", "/v1/shields", Api::Shields),
    r("GET", "/v1/shields/{identifier:path}", Api::Shields),
    d("POST", "/v1/shields", Api::Shields),
    d("DELETE", "/v1/shields/{identifier:path}", Api::Shields),
    r("POST", "/v1/responses", Api::Responses),
    r("GET", "/v1/responses", Api::Responses),
    r("GET", "/v1/responses/{response_id}", Api::Responses),
    r("DELETE", "/v1/responses/{response_id}", Api::Responses),
    r(
        "GET",
        "/v1/responses/{response_id}/input_items",
        Api::Responses,
    ),
    r("POST", "/v1/responses/{response_id}/cancel", Api::Responses),
    r("POST", "/v1/conversations", Api::Conversations),
    r(
        "GET",
        "/v1/conversations/{conversation_id}",
        Api::Conversations,
    ),
    r(
        "POST",
        "/v1/conversations/{conversation_id}",
        Api::Conversations,
    ),
    r(
        "DELETE",
        "/v1/conversations/{conversation_id}",
        Api::Conversations,
    ),
    r(
        "POST",
        "/v1/conversations/{conversation_id}/items",
        Api::Conversations,
    ),
    r(
        "GET",
        "/v1/conversations/{conversation_id}/items",
        Api::Conversations,
    ),
    r(
        "GET",
        "/v1/conversations/{conversation_id}/items/{item_id}",
        Api::Conversations,
    ),
    r(
        "DELETE",
        "/v1/conversations/{conversation_id}/items/{item_id}",
        Api::Conversations,
    ),
    r("GET", "/v1/tools", Api::ToolGroups),
    d("GET", "/v1/tools/{tool_name}", Api::ToolGroups),
    d("GET", "/v1/toolgroups", Api::ToolGroups),
    d("POST", "/v1/toolgroups", Api::ToolGroups),
    d("GET", "/v1/toolgroups/{toolgroup_id}", Api::ToolGroups),
    d("DELETE", "/v1/toolgroups/{toolgroup_id}", Api::ToolGroups),
    d("POST", "/v1/tool-runtime/invoke", Api::ToolRuntime),
    d("GET", "/v1/tool-runtime/list-tools", Api::ToolRuntime),
    d("POST", "/v1/tool-runtime/rag-tool/insert", Api::ToolRuntime),
    d("POST", "/v1/tool-runtime/rag-tool/query", Api::ToolRuntime),
    r("GET", "/v1beta/connectors", Api::Connectors),
    r("GET", "/v1beta/connectors/{connector_id}", Api::Connectors),
    r(
        "GET",
        "/v1beta/connectors/{connector_id}/tools",
        Api::Connectors,
    ),
    r(
        "GET",
        "/v1beta/connectors/{connector_id}/tools/{tool_name}",
        Api::Connectors,
    ),
    r("POST", "/v1/scoring/score", Api::Scoring),
    r("POST", "/v1/scoring/score-batch", Api::Scoring),
    r("GET", "/v1/scoring-functions", Api::ScoringFunctions),
    r(
        "GET",
        "/v1/scoring-functions/{scoring_fn_id:path}",
        Api::ScoringFunctions,
    ),
    d("POST", "/v1/scoring-functions", Api::ScoringFunctions),
    d(
        "DELETE",
        "/v1/scoring-functions/{scoring_fn_id:path}",
        Api::ScoringFunctions,
    ),
    r("GET", "/v1beta/datasets", Api::Datasets),
    r("GET", "/v1beta/datasets/{dataset_id:path}", Api::Datasets),
    d("POST", "/v1beta/datasets", Api::Datasets),
    d(
        "DELETE",
        "/v1beta/datasets/{dataset_id:path}",
        Api::Datasets,
    ),
    r(
        "GET",
        "/v1beta/datasetio/iterrows/{dataset_id:path}",
        Api::Datasetio,
    ),
    r(
        "POST",
        "/v1beta/datasetio/append-rows/{dataset_id:path}",
        Api::Datasetio,
    ),
    r("GET", "/v1alpha/eval/benchmarks", Api::Benchmarks),
    r(
        "GET",
        "/v1alpha/eval/benchmarks/{benchmark_id}",
        Api::Benchmarks,
    ),
    d("POST", "/v1alpha/eval/benchmarks", Api::Benchmarks),
    d(
        "DELETE",
        "/v1alpha/eval/benchmarks/{benchmark_id}",
        Api::Benchmarks,
    ),
    r(
        "POST",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs",
        Api::Eval,
    ),
    r(
        "POST",
        "/v1alpha/eval/benchmarks/{benchmark_id}/evaluations",
        Api::Eval,
    ),
    r(
        "GET",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}",
        Api::Eval,
    ),
    r(
        "DELETE",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}",
        Api::Eval,
    ),
    r(
        "GET",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}/result",
        Api::Eval,
    ),
    r("GET", "/v1/prompts", Api::Prompts),
    r("POST", "/v1/prompts", Api::Prompts),
    r("GET", "/v1/prompts/{prompt_id}", Api::Prompts),
    r("PUT", "/v1/prompts/{prompt_id}", Api::Prompts),
    r("DELETE", "/v1/prompts/{prompt_id}", Api::Prompts),
    r("GET", "/v1/prompts/{prompt_id}/versions", Api::Prompts),
    r(
        "PUT",
        "/v1/prompts/{prompt_id}/set-default-version",
        Api::Prompts,
    ),
    r("POST", "/v1/batches", Api::Batches),
    r("GET", "/v1/batches", Api::Batches),
    r("GET", "/v1/batches/{batch_id}", Api::Batches),
    r("POST", "/v1/batches/{batch_id}/cancel", Api::Batches),
    r("GET", "/v1/health", Api::Inspect),
    r("GET", "/v1/version", Api::Inspect),
    r("GET", "/v1/inspect/routes", Api::Inspect),
    r("GET", "/v1/providers", Api::Providers),
    r("GET", "/v1/providers/{provider_id}", Api::Providers),
    r("GET", "/v1alpha/admin/providers", Api::Providers),
    r(
        "GET",
        "/v1alpha/admin/providers/{provider_id}",
        Api::Providers,
    ),
    r("GET", "/v1alpha/admin/inspect/routes", Api::Inspect),
    r("GET", "/v1alpha/admin/health", Api::Inspect),
    r("GET", "/v1alpha/admin/version", Api::Inspect),
    r(
        "POST",
        "/v1alpha/file-processors/process",
        Api::FileProcessors,
    ),
    d(
        "POST",
        "/v1alpha/post-training/supervised-fine-tune",
        Api::PostTraining,
    ),
    d(
        "POST",
        "/v1alpha/post-training/preference-optimize",
        Api::PostTraining,
    ),
    d("GET", "/v1alpha/post-training/jobs", Api::PostTraining),
    d(
        "GET",
        "/v1alpha/post-training/jobs/{job_uuid}/status",
        Api::PostTraining,
    ),
    d(
        "GET",
        "/v1alpha/post-training/jobs/{job_uuid}/artifacts",
        Api::PostTraining,
    ),
    d(
        "POST",
        "/v1alpha/post-training/jobs/{job_uuid}/cancel",
        Api::PostTraining,
    ),
];

/// One route as `GET /v1/inspect/routes` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RouteInfo {
    /// The path.
    pub route: String,
    /// The upper-case method.
    pub method: String,
    /// Provider types configured for the route's API.
    pub provider_types: Vec<String>,
}

/// `{data: [...]}` list of routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListRoutesResponse {
    /// The routes.
    pub data: Vec<RouteInfo>,
}

/// `GET /v1/health` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthResponse {
    /// Always `OK` while the stack serves requests.
    pub status: HealthStatus,
}

/// `GET /v1/version` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionResponse {
    /// The Llama Stack version this stack is compatible with.
    pub version: String,
}

/// The route filter of `GET /v1/inspect/routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteFilter {
    /// Non-deprecated `/v1/` routes.
    V1,
    /// Non-deprecated `/v1alpha/` routes.
    V1alpha,
    /// Non-deprecated `/v1beta/` routes.
    V1beta,
    /// Only deprecated routes.
    Deprecated,
}

/// The Inspect API.
#[async_trait]
pub trait Inspect: Send + Sync {
    /// Routes, filtered as Llama Stack filters them.
    async fn list_routes(
        &self,
        ctx: &RequestContext,
        filter: Option<RouteFilter>,
    ) -> Result<ListRoutesResponse>;
    /// Stack health.
    async fn health(&self, ctx: &RequestContext) -> Result<HealthResponse>;
    /// Stack version.
    async fn version(&self, ctx: &RequestContext) -> Result<VersionResponse>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method, route.path)),
                "duplicate {route:?}"
            );
        }
    }
}
