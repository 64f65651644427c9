//! The ToolRuntime API: list and invoke the tools of tool runtime providers, and the RAG
//! tool's `insert` / `query` (Llama Stack's `builtin::rag`, renamed `builtin::file_search`
//! in 0.7), whose `knowledge_search` tool answers with a formatted, cited context.
//!
//! Shapes follow the last published ones (Llama Stack 0.6.x: `POST /v1/tool-runtime/invoke`,
//! `GET /v1/tool-runtime/list-tools`; the RAG tool's `insert`/`query` as of 0.4).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::error::{Error, Result};

/// The RAG tool group (Llama Stack ≥ 0.7 name).
pub const FILE_SEARCH_TOOLGROUP: &str = "builtin::file_search";
/// The RAG tool group's name before Llama Stack 0.7 (accepted as an alias).
pub const RAG_TOOLGROUP: &str = "builtin::rag";
/// The RAG tool's search tool.
pub const KNOWLEDGE_SEARCH_TOOL: &str = "knowledge_search";

/// A tool a runtime offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolDef {
    /// The tool group it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolgroup_id: Option<String>,
    /// The tool's name (what `invoke` takes).
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// JSON schema of its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Extra information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `GET /v1/tool-runtime/list-tools` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListToolDefsResponse {
    /// The tools.
    pub data: Vec<ToolDef>,
}

/// `POST /v1/tool-runtime/invoke` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeToolRequest {
    /// The tool.
    pub tool_name: String,
    /// Its arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// A credential for tools that call out (unused by the RAG tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
}

/// What a tool answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolInvocationResult {
    /// The result: a string or a list of content items (`{type: "text", text}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Set when the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Set when the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// Extra results (the RAG tool: `document_ids`, `chunks`, `scores`, `citations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A document for the RAG tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RagDocument {
    /// The document's id (kept as the `rag_document_id` attribute of its file and chunks).
    pub document_id: String,
    /// Its text: a string, a `{type: "text", text}` item or a list of them.
    pub content: Value,
    /// Its media type (`text/plain`, `text/markdown`, `text/html`, `application/json`,
    /// `text/csv`, …), which decides how it is parsed; plain text by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Attributes kept on its chunks (usable in filters and shown in citations).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl RagDocument {
    /// A plain-text document.
    pub fn text(document_id: impl Into<String>, text: impl Into<String>) -> Self {
        RagDocument {
            document_id: document_id.into(),
            content: Value::String(text.into()),
            mime_type: None,
            metadata: Map::new(),
        }
    }

    /// The document's text, or what is wrong with `content`.
    pub fn content_text(&self) -> Result<String> {
        fn item_text(item: &Value) -> Option<&str> {
            match item {
                Value::String(s) => Some(s),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                    o.get("text").and_then(Value::as_str)
                }
                _ => None,
            }
        }
        let text = match &self.content {
            Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(item_text(item).ok_or_else(|| self.bad_content())?);
                }
                parts.join("\n")
            }
            other => item_text(other)
                .ok_or_else(|| self.bad_content())?
                .to_string(),
        };
        Ok(text)
    }

    fn bad_content(&self) -> Error {
        Error::invalid_param(
            "documents[].content",
            format!("document '{}'", self.document_id),
            "Must be a string, a {type: \"text\", text} item or a list of them (URLs and images are not supported)",
        )
    }
}

/// `rag_tool.insert`: documents into a vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RagInsertRequest {
    /// The documents.
    pub documents: Vec<RagDocument>,
    /// The vector store that receives them (`vector_db_id` before 0.3 is accepted too).
    #[serde(alias = "vector_db_id")]
    pub vector_store_id: String,
    /// Chunk size in tokens (default 512; overlap is a quarter of it).
    #[serde(default = "default_chunk_size")]
    pub chunk_size_in_tokens: u32,
}

fn default_chunk_size() -> u32 {
    512
}

/// How `query` searches and formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RagQueryConfig {
    /// Most chunks in the context (default 5).
    #[serde(default = "default_max_chunks")]
    pub max_chunks: u32,
    /// Most tokens of chunk text in the context (default 4096); chunks past it are dropped.
    #[serde(default = "default_max_tokens")]
    pub max_tokens_in_context: u32,
    /// Template of one result: `{index}`, `{chunk.content}` and `{metadata}` are replaced.
    #[serde(default = "default_chunk_template")]
    pub chunk_template: String,
    /// `vector` (default), `keyword` or `hybrid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Hybrid fusion (`{type: "rrf", impact_factor}` or `{type: "weighted", alpha}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranker: Option<Value>,
}

fn default_max_chunks() -> u32 {
    5
}
fn default_max_tokens() -> u32 {
    4096
}
/// The default result template (Llama Stack's).
pub const DEFAULT_CHUNK_TEMPLATE: &str =
    "Result {index}\nContent: {chunk.content}\nMetadata: {metadata}\n";
fn default_chunk_template() -> String {
    DEFAULT_CHUNK_TEMPLATE.into()
}

impl Default for RagQueryConfig {
    fn default() -> Self {
        RagQueryConfig {
            max_chunks: default_max_chunks(),
            max_tokens_in_context: default_max_tokens(),
            chunk_template: default_chunk_template(),
            mode: None,
            ranker: None,
        }
    }
}

impl RagQueryConfig {
    /// Checks ranges and the template.
    pub fn validate(&self) -> Result<()> {
        if !(1..=100).contains(&self.max_chunks) {
            return Err(Error::invalid_param(
                "query_config.max_chunks",
                self.max_chunks,
                "Must be between 1 and 100",
            ));
        }
        if self.max_tokens_in_context == 0 {
            return Err(Error::invalid_param(
                "query_config.max_tokens_in_context",
                0,
                "Must be at least 1",
            ));
        }
        if !self.chunk_template.contains("{chunk.content}") {
            return Err(Error::invalid_param(
                "query_config.chunk_template",
                &self.chunk_template,
                "Must contain {chunk.content}",
            ));
        }
        if let Some(mode) = &self.mode {
            if !matches!(mode.as_str(), "vector" | "keyword" | "hybrid") {
                return Err(Error::invalid_param(
                    "query_config.mode",
                    mode,
                    "Must be one of: vector, keyword, hybrid",
                ));
            }
        }
        Ok(())
    }
}

/// `rag_tool.query`: a formatted context for `content` from some vector stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RagQueryRequest {
    /// The query: a string or text items.
    pub content: Value,
    /// The vector stores searched (`vector_db_ids` before 0.3 is accepted too).
    #[serde(alias = "vector_db_ids")]
    pub vector_store_ids: Vec<String>,
    /// Search and format settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_config: Option<RagQueryConfig>,
}

impl RagQueryRequest {
    /// Checks the config and that at least one store is named.
    pub fn validate(&self) -> Result<()> {
        if let Some(config) = &self.query_config {
            config.validate()?;
        }
        if self.vector_store_ids.is_empty() {
            return Err(Error::invalid_param(
                "vector_store_ids",
                "[]",
                "Name at least one vector store",
            ));
        }
        Ok(())
    }
}

/// One chunk of the context, for citations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RagCitation {
    /// 1-based position in the context.
    pub index: u32,
    /// The vector store it came from.
    pub vector_store_id: String,
    /// The file the chunk belongs to.
    pub file_id: String,
    /// That file's name.
    pub filename: String,
    /// The document id given at insert (if the chunk came from one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// The search score.
    pub score: f64,
    /// The chunk's text.
    pub text: String,
    /// The chunk's attributes.
    pub attributes: Map<String, Value>,
}

/// `rag_tool.query` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RagQueryResult {
    /// The context: text items (header, one per chunk, footer).
    pub content: Vec<Value>,
    /// `document_ids`, `chunks`, `scores` (as Llama Stack) and `citations`.
    pub metadata: Map<String, Value>,
}

impl RagQueryResult {
    /// The whole context as one string.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect()
    }

    /// The citations of the chunks in the context.
    pub fn citations(&self) -> Vec<RagCitation> {
        self.metadata
            .get("citations")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    }
}

/// The ToolRuntime API.
#[async_trait]
pub trait ToolRuntime: Send + Sync {
    /// The tools of one group (or of every group).
    async fn list_runtime_tools(
        &self,
        ctx: &RequestContext,
        tool_group_id: Option<&str>,
    ) -> Result<ListToolDefsResponse>;
    /// Runs a tool.
    async fn invoke_tool(
        &self,
        ctx: &RequestContext,
        req: InvokeToolRequest,
    ) -> Result<ToolInvocationResult>;
    /// RAG tool: chunks, embeds and stores documents in a vector store.
    async fn rag_insert(&self, ctx: &RequestContext, req: RagInsertRequest) -> Result<()>;
    /// RAG tool: searches vector stores and formats a cited context.
    async fn rag_query(&self, ctx: &RequestContext, req: RagQueryRequest)
        -> Result<RagQueryResult>;
}
