//! ToolRuntime routes, as last published (Llama Stack 0.6.x, kept here): list and invoke
//! tools, plus the RAG tool's `insert` and `query` (0.4 shapes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use llama_stack_core::api::tool_runtime::{
    InvokeToolRequest, ListToolDefsResponse, RagInsertRequest, RagQueryRequest, RagQueryResult,
    ToolInvocationResult,
};
use serde::Deserialize;

use super::{AppState, RouteDef};
use crate::server::error::ApiError;
use crate::server::extract::{Ctx, JsonBody, QueryArgs};

/// `GET /v1/tool-runtime/list-tools` query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct ListToolsQuery {
    /// Only this group's tools.
    #[serde(default)]
    tool_group_id: Option<String>,
    /// MCP servers are not served by this runtime; accepted and ignored when absent.
    #[serde(default)]
    mcp_endpoint: Option<String>,
}

pub(super) fn routes() -> Vec<RouteDef> {
    vec![
        RouteDef::new(
            "GET",
            "/v1/tool-runtime/list-tools",
            "list_runtime_tools",
            "ToolRuntime",
            "List the tools of the tool runtime providers",
            get(list_tools),
        )
        .query::<ListToolsQuery>()
        .returns::<ListToolDefsResponse>()
        .deprecated(),
        RouteDef::new(
            "POST",
            "/v1/tool-runtime/invoke",
            "invoke_tool",
            "ToolRuntime",
            "Run a tool",
            post(invoke),
        )
        .body::<InvokeToolRequest>()
        .returns::<ToolInvocationResult>()
        .deprecated(),
        RouteDef::new(
            "POST",
            "/v1/tool-runtime/rag-tool/insert",
            "rag_tool_insert",
            "ToolRuntime",
            "RAG tool: chunk, embed and store documents in a vector store",
            post(rag_insert),
        )
        .body::<RagInsertRequest>()
        .deprecated(),
        RouteDef::new(
            "POST",
            "/v1/tool-runtime/rag-tool/query",
            "rag_tool_query",
            "ToolRuntime",
            "RAG tool: a cited context for a query from vector stores",
            post(rag_query),
        )
        .body::<RagQueryRequest>()
        .returns::<RagQueryResult>()
        .deprecated(),
    ]
}

async fn list_tools(
    State(s): State<AppState>,
    ctx: Ctx,
    QueryArgs(q): QueryArgs<ListToolsQuery>,
) -> Result<Json<ListToolDefsResponse>, ApiError> {
    if let Some(endpoint) = q.mcp_endpoint.filter(|e| !e.is_empty()) {
        return Err(llama_stack_core::Error::unsupported(format!(
            "listing the tools of an MCP server ({endpoint}) is not supported by this server"
        ))
        .into());
    }
    Ok(Json(
        s.tool_runtime
            .list_runtime_tools(&ctx.ctx, q.tool_group_id.as_deref())
            .await?,
    ))
}

async fn invoke(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<InvokeToolRequest>,
) -> Result<Json<ToolInvocationResult>, ApiError> {
    Ok(Json(s.tool_runtime.invoke_tool(&ctx.ctx, req).await?))
}

async fn rag_insert(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<RagInsertRequest>,
) -> Result<StatusCode, ApiError> {
    s.tool_runtime.rag_insert(&ctx.ctx, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rag_query(
    State(s): State<AppState>,
    ctx: Ctx,
    JsonBody(req): JsonBody<RagQueryRequest>,
) -> Result<Json<RagQueryResult>, ApiError> {
    Ok(Json(s.tool_runtime.rag_query(&ctx.ctx, req).await?))
}
