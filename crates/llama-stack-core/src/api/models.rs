//! The Models API: list, get, register and unregister models (register/unregister are
//! kept from before Llama Stack 0.7), plus the OpenAI `GET /v1/models` view.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::error::Result;
use crate::resource::Resource;

/// What a model does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// Text generation (chat, completions).
    #[default]
    Llm,
    /// Embeddings.
    Embedding,
    /// Reranking.
    Rerank,
}

impl ModelType {
    /// `llm`, `embedding` or `rerank`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llm => "llm",
            ModelType::Embedding => "embedding",
            ModelType::Rerank => "rerank",
        }
    }
}

/// The constant `type` field of a model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ModelTag {
    /// `"model"`.
    #[default]
    #[serde(rename = "model")]
    Model,
}

/// A registered model, in Llama Stack's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Model {
    /// The id clients use, `<provider_id>/<provider_resource_id>`.
    pub identifier: String,
    /// The provider's own id for the model.
    pub provider_resource_id: String,
    /// The provider instance serving it.
    pub provider_id: String,
    /// Always `"model"`.
    #[serde(rename = "type", default)]
    pub tag: ModelTag,
    /// Free-form metadata; embedding models carry `embedding_dimension`.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// What the model does.
    #[serde(default)]
    pub model_type: ModelType,
    /// Whether the provider validated the model at registration.
    #[serde(default)]
    pub model_validation: Option<bool>,
}

impl Model {
    /// A model `<provider_id>/<provider_resource_id>` of `model_type`.
    pub fn new(provider_id: &str, provider_resource_id: &str, model_type: ModelType) -> Self {
        Model {
            identifier: format!("{provider_id}/{provider_resource_id}"),
            provider_resource_id: provider_resource_id.to_string(),
            provider_id: provider_id.to_string(),
            tag: ModelTag::Model,
            metadata: Map::new(),
            model_type,
            model_validation: None,
        }
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    /// `metadata.embedding_dimension`, if set.
    pub fn embedding_dimension(&self) -> Option<u64> {
        self.metadata
            .get("embedding_dimension")
            .and_then(Value::as_u64)
    }
}

impl Resource for Model {
    const TYPE: &'static str = "model";
    const DISPLAY: &'static str = "Model";
    const LIST_HINT: &'static str = "client.models.list()";

    fn identifier(&self) -> &str {
        &self.identifier
    }
    fn provider_id(&self) -> &str {
        &self.provider_id
    }
    fn provider_resource_id(&self) -> &str {
        &self.provider_resource_id
    }
}

/// `POST /v1/models` body (kept from Llama Stack 0.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterModelRequest {
    /// The model id; the stored identifier is `<provider_id>/<provider_model_id or model_id>`.
    pub model_id: String,
    /// The provider's own id (default: `model_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_model_id: Option<String>,
    /// The provider instance (may be omitted when exactly one inference provider exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Metadata (`embedding_dimension` for embedding models).
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// What the model does (default `llm`).
    #[serde(default)]
    pub model_type: ModelType,
    /// Ask the provider to validate the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_validation: Option<bool>,
}

impl RegisterModelRequest {
    /// A request to register `model_id`.
    pub fn new(model_id: impl Into<String>) -> Self {
        RegisterModelRequest {
            model_id: model_id.into(),
            provider_model_id: None,
            provider_id: None,
            metadata: Map::new(),
            model_type: ModelType::Llm,
            model_validation: None,
        }
    }

    /// Sets the provider id.
    pub fn with_provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// Sets the provider's own model id.
    pub fn with_provider_model_id(mut self, id: impl Into<String>) -> Self {
        self.provider_model_id = Some(id.into());
        self
    }

    /// Sets the model type.
    pub fn with_model_type(mut self, model_type: ModelType) -> Self {
        self.model_type = model_type;
        self
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }
}

/// `{data: [...]}` list of models (Llama Stack shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListModelsResponse {
    /// The models.
    pub data: Vec<Model>,
}

/// One model in OpenAI's `GET /v1/models` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpenAiModel {
    /// The model identifier.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Unix seconds (the time of the listing).
    pub created: i64,
    /// Always `"llama_stack"`.
    pub owned_by: String,
    /// `model_type`, `provider_id`, `provider_resource_id` and the model's metadata.
    pub custom_metadata: Map<String, Value>,
}

impl OpenAiModel {
    /// The OpenAI view of `model`, listed at `created`.
    pub fn from_model(model: &Model, created: i64) -> Self {
        let mut custom = Map::new();
        custom.insert("model_type".into(), model.model_type.as_str().into());
        custom.insert("provider_id".into(), model.provider_id.clone().into());
        custom.insert(
            "provider_resource_id".into(),
            model.provider_resource_id.clone().into(),
        );
        for (k, v) in &model.metadata {
            custom.insert(k.clone(), v.clone());
        }
        OpenAiModel {
            id: model.identifier.clone(),
            object: "model".into(),
            created,
            owned_by: "llama_stack".into(),
            custom_metadata: custom,
        }
    }
}

/// `GET /v1/models` body: `{data: [...]}` (no `object`, as Llama Stack sends it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpenAiListModelsResponse {
    /// The models.
    pub data: Vec<OpenAiModel>,
}

/// The Models API.
#[async_trait]
pub trait Models: Send + Sync {
    /// Every model the caller may see.
    async fn list_models(&self, ctx: &RequestContext) -> Result<ListModelsResponse>;
    /// The same list in OpenAI's shape.
    async fn openai_list_models(&self, ctx: &RequestContext) -> Result<OpenAiListModelsResponse>;
    /// One model by identifier (`NotFound` if unknown or not readable).
    async fn get_model(&self, ctx: &RequestContext, model_id: &str) -> Result<Model>;
    /// Registers a model owned by the caller.
    async fn register_model(
        &self,
        ctx: &RequestContext,
        req: RegisterModelRequest,
    ) -> Result<Model>;
    /// Unregisters a model.
    async fn unregister_model(&self, ctx: &RequestContext, model_id: &str) -> Result<()>;
}
