//! `inline::file-search` (alias `inline::rag-runtime`): the RAG tool, tool group
//! `builtin::file_search` (alias `builtin::rag`).
//!
//! - `insert` stores each document as a file (Files API, purpose `assistants`, named
//!   after its `document_id` with an extension from its `mime_type`) and attaches it to the
//!   vector store with static chunking (`chunk_size_in_tokens`, a quarter of it as
//!   overlap) and the document's metadata plus `rag_document_id` as attributes (vector
//!   stores reserve `document_id` for the file id). So documents
//!   are parsed, chunked and embedded exactly as vector store files are, and every chunk
//!   cites its file.
//! - `query` (and the `knowledge_search` tool) searches every named store with the same
//!   query, merges the hits by score, keeps `max_chunks` of them within
//!   `max_tokens_in_context` tokens (cl100k_base) and formats them as Llama Stack's
//!   knowledge_search does: a header, one `chunk_template` per chunk, a footer naming the
//!   query. The metadata carries `document_ids`, `chunks`, `scores` and `citations`.
//!
//! Everything goes through the Files and VectorIO routers with the caller's context, so
//! the access policy applies: a user cannot insert into or search another user's store.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::api::files::{sanitize_filename, FilePurpose, Files, UploadFileRequest};
use llama_stack_core::api::providers::Health;
use llama_stack_core::api::tool_runtime::{
    InvokeToolRequest, ListToolDefsResponse, RagCitation, RagInsertRequest, RagQueryConfig,
    RagQueryRequest, RagQueryResult, ToolDef, ToolInvocationResult, ToolRuntime,
    FILE_SEARCH_TOOLGROUP, KNOWLEDGE_SEARCH_TOOL,
};
use llama_stack_core::api::vector_io::{
    AttachFileRequest, ChunkingStrategy, RankingOptions, SearchQuery, SearchVectorStoreRequest,
    StaticChunking, VectorIo, VectorStoreFileStatus,
};
use llama_stack_core::context::RequestContext;
use llama_stack_core::provider::ToolRuntimeProvider;
use llama_stack_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::vector_io::ingest::count_tokens;

/// The provider type.
pub const PROVIDER_TYPE: &str = "inline::file-search";
/// The attribute holding a document's `document_id` on its file and chunks.
pub const DOCUMENT_ID_ATTRIBUTE: &str = "rag_document_id";

/// Config of `inline::file-search`.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSearchConfig {
    /// Llama Stack injects the top-level `vector_stores` section here; accepted and unused
    /// (the vector IO router reads that section).
    #[serde(default)]
    pub vector_stores_config: Option<Value>,
}

/// The RAG tool over the Files and VectorIO routers.
pub struct FileSearchRuntime {
    files: Arc<dyn Files>,
    vector_io: Arc<dyn VectorIo>,
}

impl FileSearchRuntime {
    /// The tool over these routers.
    pub fn new(files: Arc<dyn Files>, vector_io: Arc<dyn VectorIo>) -> Self {
        FileSearchRuntime { files, vector_io }
    }
}

/// The file extension for a document's media type (which decides how it is parsed).
fn extension(mime_type: Option<&str>) -> Result<&'static str> {
    let essence = mime_type
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    Ok(match essence.as_str() {
        "" | "text/plain" => ".txt",
        "text/markdown" | "text/x-markdown" => ".md",
        "text/html" | "application/xhtml+xml" => ".html",
        "application/json" => ".json",
        "application/jsonl" | "application/x-ndjson" => ".jsonl",
        "text/csv" => ".csv",
        "text/tab-separated-values" => ".tsv",
        other => {
            return Err(Error::invalid_param(
                "documents[].mime_type",
                other,
                "Must be a text type: text/plain, text/markdown, text/html, application/json, application/jsonl, text/csv or text/tab-separated-values",
            ))
        }
    })
}

/// The query text of `content` (a string or text items).
fn query_text(content: &Value) -> Result<String> {
    let bad = || {
        Error::invalid_param(
            "content",
            content,
            "Must be a string, a {type: \"text\", text} item or a list of them",
        )
    };
    let item = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                o.get("text").and_then(Value::as_str).map(str::to_string)
            }
            _ => None,
        }
    };
    let text = match content {
        Value::Array(items) => items
            .iter()
            .map(|i| item(i).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?
            .join(" "),
        other => item(other).ok_or_else(bad)?,
    };
    if text.trim().is_empty() {
        return Err(Error::invalid_param("content", "''", "The query is empty"));
    }
    Ok(text)
}

/// `ranking_options` from a RAG `ranker` (`{type: rrf, impact_factor}` or `{type: weighted, alpha}`).
fn ranking(ranker: Option<&Value>) -> Result<Option<RankingOptions>> {
    let Some(ranker) = ranker else {
        return Ok(None);
    };
    let kind = ranker.get("type").and_then(Value::as_str).unwrap_or("");
    let mut options = RankingOptions::default();
    match kind {
        "rrf" => {
            options.ranker = Some("rrf".into());
            options.impact_factor = ranker.get("impact_factor").and_then(Value::as_f64);
        }
        "weighted" => {
            options.ranker = Some("weighted".into());
            options.alpha = ranker.get("alpha").and_then(Value::as_f64);
        }
        "normalized" => options.ranker = Some("normalized".into()),
        _ => return Err(Error::invalid_param(
            "query_config.ranker",
            ranker,
            "Must be {type: rrf, impact_factor?}, {type: weighted, alpha?} or {type: normalized}",
        )),
    }
    Ok(Some(options))
}

/// One hit before formatting.
struct Hit {
    store: String,
    file_id: String,
    filename: String,
    score: f64,
    text: String,
    attributes: Map<String, Value>,
}

impl FileSearchRuntime {
    async fn insert(&self, ctx: &RequestContext, req: RagInsertRequest) -> Result<()> {
        if !(100..=4096).contains(&req.chunk_size_in_tokens) {
            return Err(Error::invalid_param(
                "chunk_size_in_tokens",
                req.chunk_size_in_tokens,
                "Must be between 100 and 4096",
            ));
        }
        // The store must exist (and be the caller's) before anything is uploaded.
        self.vector_io
            .get_vector_store(ctx, &req.vector_store_id)
            .await?;
        // Every document is checked before the first upload.
        let mut prepared = Vec::with_capacity(req.documents.len());
        for doc in &req.documents {
            if doc.document_id.trim().is_empty() {
                return Err(Error::invalid_param(
                    "documents[].document_id",
                    "''",
                    "Must not be empty",
                ));
            }
            let text = doc.content_text()?;
            if text.trim().is_empty() {
                return Err(Error::invalid_param(
                    "documents[].content",
                    format!("document '{}'", doc.document_id),
                    "The document is empty",
                ));
            }
            let filename = format!(
                "{}{}",
                sanitize_filename(&doc.document_id),
                extension(doc.mime_type.as_deref())?
            );
            let mut attributes = doc.metadata.clone();
            attributes.insert(
                DOCUMENT_ID_ATTRIBUTE.into(),
                Value::String(doc.document_id.clone()),
            );
            llama_stack_core::router::vector_io::validate_attributes(
                "documents[].metadata",
                &attributes,
            )?;
            prepared.push((doc, text, filename, attributes));
        }
        let chunking = ChunkingStrategy::Static {
            config: StaticChunking {
                max_chunk_size_tokens: req.chunk_size_in_tokens,
                chunk_overlap_tokens: req.chunk_size_in_tokens / 4,
            },
        };
        for (doc, text, filename, attributes) in prepared {
            let file = self
                .files
                .upload_file(
                    ctx,
                    UploadFileRequest::new(filename, text.into_bytes(), FilePurpose::Assistants),
                )
                .await?;
            let attached = self
                .vector_io
                .attach_file(
                    ctx,
                    &req.vector_store_id,
                    AttachFileRequest {
                        file_id: file.id.clone(),
                        attributes: Some(attributes),
                        chunking_strategy: Some(chunking.clone()),
                    },
                )
                .await;
            let failure = match attached {
                Ok(f) if f.status == VectorStoreFileStatus::Completed => None,
                Ok(f) => Some(Error::invalid_request(format!(
                    "document '{}' could not be ingested: {}",
                    doc.document_id,
                    f.last_error
                        .map_or_else(|| format!("status {:?}", f.status), |e| e.message)
                ))),
                Err(e) => Some(e),
            };
            if let Some(e) = failure {
                // Leave nothing half-inserted behind.
                let _ = self
                    .vector_io
                    .delete_vector_store_file(ctx, &req.vector_store_id, &file.id)
                    .await;
                let _ = self.files.delete_file(ctx, &file.id).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn query(&self, ctx: &RequestContext, req: RagQueryRequest) -> Result<RagQueryResult> {
        // Also reached from `invoke_tool`, which the router does not validate.
        req.validate()?;
        let config = req.query_config.clone().unwrap_or_default();
        let query = query_text(&req.content)?;
        let ranking_options = ranking(config.ranker.as_ref())?;
        let mut hits = Vec::new();
        for store in &req.vector_store_ids {
            let mut search = SearchVectorStoreRequest::new(SearchQuery::Text(query.clone()));
            search.max_num_results = Some(config.max_chunks);
            search.search_mode = config.mode.clone();
            search.ranking_options = ranking_options.clone();
            let page = self
                .vector_io
                .search_vector_store(ctx, store, search)
                .await?;
            for r in page.data {
                hits.push(Hit {
                    store: store.clone(),
                    file_id: r.file_id,
                    filename: r.filename,
                    score: r.score,
                    text: r
                        .content
                        .into_iter()
                        .map(|c| c.text)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    attributes: r.attributes,
                });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(config.max_chunks as usize);
        let mut budget = config.max_tokens_in_context as usize;
        let mut kept = Vec::with_capacity(hits.len());
        for hit in hits {
            let tokens = count_tokens(&hit.text);
            if tokens > budget {
                break;
            }
            budget -= tokens;
            kept.push(hit);
        }
        Ok(format(&query, &config, kept))
    }
}

/// Llama Stack's knowledge_search context, with citations in the metadata.
fn format(query: &str, config: &RagQueryConfig, hits: Vec<Hit>) -> RagQueryResult {
    let text_item = |t: String| json!({"type": "text", "text": t});
    let mut content = Vec::with_capacity(hits.len() + 2);
    let mut citations = Vec::with_capacity(hits.len());
    if hits.is_empty() {
        content.push(text_item(format!(
            "knowledge_search tool found no chunks for the query: \"{query}\".\n"
        )));
    } else {
        content.push(text_item(format!(
            "knowledge_search tool found {} chunks:\nBEGIN of knowledge_search tool results.\n",
            hits.len()
        )));
    }
    for (i, hit) in hits.into_iter().enumerate() {
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let document_id = hit
            .attributes
            .get(DOCUMENT_ID_ATTRIBUTE)
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut shown = hit.attributes.clone();
        shown.insert("file_id".into(), Value::String(hit.file_id.clone()));
        shown.insert("filename".into(), Value::String(hit.filename.clone()));
        let rendered = config
            .chunk_template
            .replace("{index}", &index.to_string())
            .replace("{chunk.content}", &hit.text)
            .replace("{metadata}", &Value::Object(shown).to_string());
        content.push(text_item(rendered));
        citations.push(RagCitation {
            index,
            vector_store_id: hit.store,
            file_id: hit.file_id,
            filename: hit.filename,
            document_id,
            score: hit.score,
            text: hit.text,
            attributes: hit.attributes,
        });
    }
    if !citations.is_empty() {
        content.push(text_item("END of knowledge_search tool results.\n".into()));
        content.push(text_item(format!(
            "The above results were retrieved to help answer the user's query: \"{query}\". \
             Use them as supporting information only in answering this query. Cite sources \
             by their result number.\n"
        )));
    }
    let mut metadata = Map::new();
    metadata.insert(
        "document_ids".into(),
        json!(citations
            .iter()
            .map(|c| c.document_id.clone().unwrap_or_else(|| c.file_id.clone()))
            .collect::<Vec<_>>()),
    );
    metadata.insert(
        "chunks".into(),
        json!(citations.iter().map(|c| c.text.clone()).collect::<Vec<_>>()),
    );
    metadata.insert(
        "scores".into(),
        json!(citations.iter().map(|c| c.score).collect::<Vec<_>>()),
    );
    metadata.insert(
        "citations".into(),
        serde_json::to_value(&citations).unwrap_or_default(),
    );
    RagQueryResult { content, metadata }
}

fn knowledge_search_def() -> ToolDef {
    ToolDef {
        toolgroup_id: Some(FILE_SEARCH_TOOLGROUP.into()),
        name: KNOWLEDGE_SEARCH_TOOL.into(),
        description: Some(
            "Search for information in the documents of vector stores; answers the most relevant passages with citations.".into(),
        ),
        input_schema: Some(json!({
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "The query to search for: a natural language sentence or keywords."
                },
                "vector_store_ids": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The vector stores to search."
                }
            },
            "required": ["query"]
        })),
        output_schema: None,
        metadata: None,
    }
}

#[async_trait]
impl ToolRuntime for FileSearchRuntime {
    async fn list_runtime_tools(
        &self,
        _ctx: &RequestContext,
        tool_group_id: Option<&str>,
    ) -> Result<ListToolDefsResponse> {
        let data = match tool_group_id {
            None => vec![knowledge_search_def()],
            Some(g) if g == FILE_SEARCH_TOOLGROUP => vec![knowledge_search_def()],
            Some(_) => Vec::new(),
        };
        Ok(ListToolDefsResponse { data })
    }

    async fn invoke_tool(
        &self,
        ctx: &RequestContext,
        req: InvokeToolRequest,
    ) -> Result<ToolInvocationResult> {
        if req.tool_name != KNOWLEDGE_SEARCH_TOOL {
            return Err(Error::not_found("Tool", &req.tool_name));
        }
        let query = req
            .kwargs
            .get("query")
            .cloned()
            .ok_or_else(|| Error::invalid_param("kwargs.query", "(missing)", "Required"))?;
        let stores = req
            .kwargs
            .get("vector_store_ids")
            .or_else(|| req.kwargs.get("vector_db_ids"))
            .cloned()
            .ok_or_else(|| {
                Error::invalid_param(
                    "kwargs.vector_store_ids",
                    "(missing)",
                    "Name the vector stores to search",
                )
            })?;
        let vector_store_ids: Vec<String> =
            serde_json::from_value(stores.clone()).map_err(|_| {
                Error::invalid_param(
                    "kwargs.vector_store_ids",
                    &stores,
                    "Must be a list of strings",
                )
            })?;
        let query_config = match req.kwargs.get("query_config") {
            Some(c) => Some(
                serde_json::from_value(c.clone())
                    .map_err(|e| Error::invalid_param("kwargs.query_config", c, &e.to_string()))?,
            ),
            None => None,
        };
        let result = self
            .query(
                ctx,
                RagQueryRequest {
                    content: query,
                    vector_store_ids,
                    query_config,
                },
            )
            .await?;
        Ok(ToolInvocationResult {
            content: Some(Value::Array(result.content)),
            error_message: None,
            error_code: None,
            metadata: Some(result.metadata),
        })
    }

    async fn rag_insert(&self, ctx: &RequestContext, req: RagInsertRequest) -> Result<()> {
        self.insert(ctx, req).await
    }

    async fn rag_query(
        &self,
        ctx: &RequestContext,
        req: RagQueryRequest,
    ) -> Result<RagQueryResult> {
        self.query(ctx, req).await
    }
}

#[async_trait]
impl ToolRuntimeProvider for FileSearchRuntime {
    fn toolgroups(&self) -> Vec<String> {
        vec![FILE_SEARCH_TOOLGROUP.into()]
    }

    async fn health(&self) -> Health {
        Health::ok()
    }
}

/// The spec of `inline::file-search` (alias `inline::rag-runtime`).
pub fn spec() -> llama_stack_core::provider::ProviderSpec {
    use llama_stack_core::api::Api;
    use llama_stack_core::provider::{FnFactory, ProviderContext, ProviderInstance, ProviderSpec};
    ProviderSpec::new::<FileSearchConfig>(
        Api::ToolRuntime,
        PROVIDER_TYPE,
        "The RAG tool (builtin::file_search, formerly builtin::rag): insert documents, knowledge_search with citations",
        FnFactory(|ctx: ProviderContext| async move {
            let _config: FileSearchConfig = ctx.parse_config()?;
            let vector_io = ctx.deps.vector_io()?;
            let files = ctx.deps.files().ok_or_else(|| {
                Error::config(format!(
                    "{}: inline::file-search needs a files provider (providers.files, e.g. inline::localfs)",
                    ctx.config_path
                ))
            })?;
            Ok(ProviderInstance::ToolRuntime(Arc::new(
                FileSearchRuntime::new(files, vector_io),
            )))
        }),
    )
    .with_alias("inline::rag-runtime")
    .with_dependencies([Api::VectorIo, Api::Files])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn extensions_follow_media_types() {
        assert_eq!(extension(None).unwrap(), ".txt");
        assert_eq!(
            extension(Some("text/markdown; charset=utf-8")).unwrap(),
            ".md"
        );
        assert_eq!(extension(Some("TEXT/HTML")).unwrap(), ".html");
        let e = extension(Some("image/png")).unwrap_err();
        assert!(e.to_string().contains("image/png"), "{e}");
    }

    #[test]
    fn query_text_accepts_strings_and_text_items() {
        assert_eq!(query_text(&json!("hi")).unwrap(), "hi");
        assert_eq!(
            query_text(&json!([{"type": "text", "text": "a"}, "b"])).unwrap(),
            "a b"
        );
        assert!(query_text(&json!("  ")).is_err());
        assert!(query_text(&json!({"type": "image", "url": "x"})).is_err());
        assert!(query_text(&json!(3)).is_err());
    }

    #[test]
    fn rankers_map_to_ranking_options() {
        let r = ranking(Some(&json!({"type": "rrf", "impact_factor": 30.0})))
            .unwrap()
            .unwrap();
        assert_eq!(r.ranker.as_deref(), Some("rrf"));
        assert_eq!(r.impact_factor, Some(30.0));
        let r = ranking(Some(&json!({"type": "weighted", "alpha": 0.3})))
            .unwrap()
            .unwrap();
        assert_eq!(r.alpha, Some(0.3));
        assert!(ranking(Some(&json!({"type": "magic"}))).is_err());
        assert!(ranking(None).unwrap().is_none());
    }

    #[test]
    fn format_numbers_results_and_cites_them() {
        let hits = vec![
            Hit {
                store: "vs_1".into(),
                file_id: "file-1".into(),
                filename: "guide.md".into(),
                score: 0.9,
                text: "Alpha text".into(),
                attributes: json!({"rag_document_id": "guide", "lang": "en"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            Hit {
                store: "vs_2".into(),
                file_id: "file-2".into(),
                filename: "notes.txt".into(),
                score: 0.5,
                text: "Beta text".into(),
                attributes: Map::new(),
            },
        ];
        let r = format("what?", &RagQueryConfig::default(), hits);
        let text = r.text();
        assert!(text.starts_with(
            "knowledge_search tool found 2 chunks:\nBEGIN of knowledge_search tool results.\n"
        ));
        assert!(
            text.contains("Result 1\nContent: Alpha text\nMetadata: "),
            "{text}"
        );
        assert!(text.contains("\"rag_document_id\":\"guide\""), "{text}");
        assert!(text.contains("Result 2\nContent: Beta text\n"), "{text}");
        assert!(text.contains("END of knowledge_search tool results.\n"));
        assert!(text.contains("user's query: \"what?\""));
        assert_eq!(r.metadata["document_ids"], json!(["guide", "file-2"]));
        assert_eq!(r.metadata["scores"], json!([0.9, 0.5]));
        let c = r.citations();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].filename, "guide.md");
        assert_eq!(c[1].vector_store_id, "vs_2");
        let empty = format("q", &RagQueryConfig::default(), Vec::new());
        assert!(empty.text().contains("found no chunks"));
    }
}
