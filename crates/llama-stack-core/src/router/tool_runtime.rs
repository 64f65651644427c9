//! [`ToolRuntimeRouter`]: the ToolRuntime API over the tool runtime providers, routing by
//! tool group (and by tool name for `invoke`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::api::tool_runtime::{
    InvokeToolRequest, ListToolDefsResponse, RagInsertRequest, RagQueryRequest, RagQueryResult,
    ToolInvocationResult, ToolRuntime, FILE_SEARCH_TOOLGROUP, RAG_TOOLGROUP,
};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::provider::ToolRuntimeProvider;

/// Routes ToolRuntime calls to the provider serving the tool group.
pub struct ToolRuntimeRouter {
    /// `(provider_id, provider, its tool groups)` in config order.
    providers: Vec<(String, Arc<dyn ToolRuntimeProvider>, Vec<String>)>,
}

/// The current name of a tool group (`builtin::rag` is `builtin::file_search` since 0.7).
fn canonical_group(group: &str) -> &str {
    if group == RAG_TOOLGROUP {
        FILE_SEARCH_TOOLGROUP
    } else {
        group
    }
}

impl ToolRuntimeRouter {
    /// A router over the providers in config order; the first provider of a group serves it.
    pub fn new(providers: Vec<(String, Arc<dyn ToolRuntimeProvider>)>) -> Self {
        let providers = providers
            .into_iter()
            .map(|(id, p)| {
                let groups = p.toolgroups();
                (id, p, groups)
            })
            .collect();
        ToolRuntimeRouter { providers }
    }

    /// The tool groups served, each once, with the provider serving it.
    pub fn toolgroups(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (id, _, groups) in &self.providers {
            for g in groups {
                if !out.iter().any(|(seen, _)| seen == g) {
                    out.push((g.clone(), id.clone()));
                }
            }
        }
        out
    }

    fn serving(&self, group: &str) -> Option<&Arc<dyn ToolRuntimeProvider>> {
        let group = canonical_group(group);
        self.providers
            .iter()
            .find(|(_, _, groups)| groups.iter().any(|g| g == group))
            .map(|(_, p, _)| p)
    }

    fn rag(&self) -> Result<&Arc<dyn ToolRuntimeProvider>> {
        self.serving(FILE_SEARCH_TOOLGROUP).ok_or_else(|| {
            Error::unsupported(format!(
                "no tool_runtime provider serves {FILE_SEARCH_TOOLGROUP} ({RAG_TOOLGROUP}); \
                 add inline::file-search under providers.tool_runtime"
            ))
        })
    }
}

#[async_trait]
impl ToolRuntime for ToolRuntimeRouter {
    async fn list_runtime_tools(
        &self,
        ctx: &RequestContext,
        tool_group_id: Option<&str>,
    ) -> Result<ListToolDefsResponse> {
        match tool_group_id {
            Some(group) => {
                let provider = self
                    .serving(group)
                    .ok_or_else(|| Error::not_found("Tool group", group))?;
                provider
                    .list_runtime_tools(ctx, Some(canonical_group(group)))
                    .await
            }
            None => {
                let mut data = Vec::new();
                for (_, provider, _) in &self.providers {
                    data.extend(provider.list_runtime_tools(ctx, None).await?.data);
                }
                Ok(ListToolDefsResponse { data })
            }
        }
    }

    async fn invoke_tool(
        &self,
        ctx: &RequestContext,
        req: InvokeToolRequest,
    ) -> Result<ToolInvocationResult> {
        if req.tool_name.trim().is_empty() {
            return Err(Error::invalid_param("tool_name", "''", "Must not be empty"));
        }
        for (_, provider, _) in &self.providers {
            let tools = provider.list_runtime_tools(ctx, None).await?;
            if tools.data.iter().any(|t| t.name == req.tool_name) {
                return provider.invoke_tool(ctx, req).await;
            }
        }
        Err(Error::not_found("Tool", &req.tool_name))
    }

    async fn rag_insert(&self, ctx: &RequestContext, req: RagInsertRequest) -> Result<()> {
        self.rag()?.rag_insert(ctx, req).await
    }

    async fn rag_query(
        &self,
        ctx: &RequestContext,
        req: RagQueryRequest,
    ) -> Result<RagQueryResult> {
        req.validate()?;
        self.rag()?.rag_query(ctx, req).await
    }
}
