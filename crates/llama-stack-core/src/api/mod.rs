//! One module per API: request/response types with the exact wire field names and one
//! object-safe async trait.

pub mod files;
pub mod inference;
pub mod inspect;
pub mod models;
pub mod providers;
pub mod tool_runtime;
pub mod vector_io;

/// Serde helper: deserializes a present value, rejecting an explicit `null`
/// (Llama Stack answers 400 to `"dimensions": null`).
pub(crate) fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

use serde::{Deserialize, Serialize};

/// The APIs of Llama Stack. Providable ones take providers in the run config; the others
/// are routing-table or internal APIs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Api {
    /// Chat, completions, embeddings, rerank.
    Inference,
    /// Shields and moderation.
    Safety,
    /// The Responses API (formerly agents).
    Responses,
    /// OpenAI batches.
    Batches,
    /// Vector stores and chunk IO.
    VectorIo,
    /// Dataset rows.
    Datasetio,
    /// Scoring functions.
    Scoring,
    /// Evaluations.
    Eval,
    /// Tool execution.
    ToolRuntime,
    /// Files.
    Files,
    /// File processing (parsing, chunking).
    FileProcessors,
    /// Fine-tuning jobs (kept from before Llama Stack 0.7).
    PostTraining,
    /// Models routing table.
    Models,
    /// Shields routing table.
    Shields,
    /// Vector stores routing table.
    VectorStores,
    /// Datasets routing table.
    Datasets,
    /// Scoring functions routing table.
    ScoringFunctions,
    /// Benchmarks routing table.
    Benchmarks,
    /// Tool groups routing table.
    ToolGroups,
    /// Routes, health, version.
    Inspect,
    /// Configured providers.
    Providers,
    /// Prompt templates.
    Prompts,
    /// Conversations.
    Conversations,
    /// MCP connectors.
    Connectors,
}

impl Api {
    /// Every API that takes providers in the run config.
    pub const PROVIDABLE: &'static [Api] = &[
        Api::Inference,
        Api::Safety,
        Api::Responses,
        Api::Batches,
        Api::VectorIo,
        Api::Datasetio,
        Api::Scoring,
        Api::Eval,
        Api::ToolRuntime,
        Api::Files,
        Api::FileProcessors,
        Api::PostTraining,
    ];

    /// The config name (`inference`, `vector_io`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Inference => "inference",
            Api::Safety => "safety",
            Api::Responses => "responses",
            Api::Batches => "batches",
            Api::VectorIo => "vector_io",
            Api::Datasetio => "datasetio",
            Api::Scoring => "scoring",
            Api::Eval => "eval",
            Api::ToolRuntime => "tool_runtime",
            Api::Files => "files",
            Api::FileProcessors => "file_processors",
            Api::PostTraining => "post_training",
            Api::Models => "models",
            Api::Shields => "shields",
            Api::VectorStores => "vector_stores",
            Api::Datasets => "datasets",
            Api::ScoringFunctions => "scoring_functions",
            Api::Benchmarks => "benchmarks",
            Api::ToolGroups => "tool_groups",
            Api::Inspect => "inspect",
            Api::Providers => "providers",
            Api::Prompts => "prompts",
            Api::Conversations => "conversations",
            Api::Connectors => "connectors",
        }
    }

    /// The API called `name`, if any.
    pub fn parse(name: &str) -> Option<Api> {
        ALL_APIS.iter().copied().find(|a| a.as_str() == name)
    }

    /// Whether providers can be configured for this API.
    pub fn is_providable(self) -> bool {
        Self::PROVIDABLE.contains(&self)
    }

    /// The routing-table API served alongside this API's router, if any.
    pub fn routing_table(self) -> Option<Api> {
        match self {
            Api::Inference => Some(Api::Models),
            Api::Safety => Some(Api::Shields),
            Api::VectorIo => Some(Api::VectorStores),
            Api::Datasetio => Some(Api::Datasets),
            Api::Scoring => Some(Api::ScoringFunctions),
            Api::Eval => Some(Api::Benchmarks),
            Api::ToolRuntime => Some(Api::ToolGroups),
            _ => None,
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ALL_APIS: &[Api] = &[
    Api::Inference,
    Api::Safety,
    Api::Responses,
    Api::Batches,
    Api::VectorIo,
    Api::Datasetio,
    Api::Scoring,
    Api::Eval,
    Api::ToolRuntime,
    Api::Files,
    Api::FileProcessors,
    Api::PostTraining,
    Api::Models,
    Api::Shields,
    Api::VectorStores,
    Api::Datasets,
    Api::ScoringFunctions,
    Api::Benchmarks,
    Api::ToolGroups,
    Api::Inspect,
    Api::Providers,
    Api::Prompts,
    Api::Conversations,
    Api::Connectors,
];
