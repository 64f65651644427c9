//! The provider-author API: [`ProviderSpec`] (API, type, config schema, dependencies,
//! factory), the context a factory receives, and the provider-side traits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::access::AccessPolicy;
use crate::api::files::Files;
use crate::api::inference::Inference;
use crate::api::models::Model;
use crate::api::providers::Health;
use crate::api::tool_runtime::ToolRuntime;
use crate::api::vector_io::{
    AttachFileRequest, Chunk, ChunkSearch, CreateFileBatchRequest, CreateVectorStoreRequest,
    FileContentRequest, ListVectorStoreFilesRequest, NewVectorStore, UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest, VectorStore, VectorStoreFileBatchObject, VectorStoreFileContent,
    VectorStoreFileList, VectorStoreFileObject, VectorStoreObject,
};
use crate::api::Api;
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::storage::{KvStore, SqlStore};

/// What an inference provider can do. The router answers `Unsupported` before calling a
/// provider that lacks a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InferenceCaps {
    /// Chat completions.
    pub chat: bool,
    /// Text completions.
    pub completion: bool,
    /// Streaming for chat and completions.
    pub streaming: bool,
    /// Tool calls.
    pub tools: bool,
    /// `response_format` json_object / json_schema.
    pub json_schema: bool,
    /// Embeddings.
    pub embeddings: bool,
    /// Rerank.
    pub rerank: bool,
}

impl InferenceCaps {
    /// Every capability.
    pub fn all() -> Self {
        InferenceCaps {
            chat: true,
            completion: true,
            streaming: true,
            tools: true,
            json_schema: true,
            embeddings: true,
            rerank: true,
        }
    }
}

/// How often providers with `refresh_models: true` list their models again, unless they
/// are configured with another interval.
pub const DEFAULT_MODEL_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// An inference provider: the Inference API plus model management hooks.
#[async_trait]
pub trait InferenceProvider: Inference {
    /// What this provider can do.
    fn capabilities(&self) -> InferenceCaps;

    /// The models the provider offers by itself (`None` if it does not list models).
    async fn list_models(&self) -> Result<Option<Vec<Model>>> {
        Ok(None)
    }

    /// Whether listed models should be refreshed periodically (`refresh_models`).
    fn refresh_models(&self) -> bool {
        false
    }

    /// How often listed models are refreshed when [`Self::refresh_models`] is true
    /// (Llama Stack's fixed 300 s unless the provider is configured otherwise).
    fn refresh_interval(&self) -> std::time::Duration {
        DEFAULT_MODEL_REFRESH_INTERVAL
    }

    /// Called before a model is registered for this provider; may load or validate it.
    async fn register_model(&self, model: &Model) -> Result<Model> {
        Ok(model.clone())
    }

    /// Called after a model was unregistered.
    async fn unregister_model(&self, model_id: &str) -> Result<()> {
        let _ = model_id;
        Ok(())
    }

    /// Provider health.
    async fn health(&self) -> Health {
        Health::not_implemented()
    }
}

/// A files provider: the Files API plus health.
#[async_trait]
pub trait FilesProvider: Files {
    /// Provider health.
    async fn health(&self) -> Health {
        Health::not_implemented()
    }
}

/// A tool runtime provider: the ToolRuntime API for the tool groups it serves.
#[async_trait]
pub trait ToolRuntimeProvider: ToolRuntime {
    /// The tool groups it serves (e.g. `builtin::file_search`).
    fn toolgroups(&self) -> Vec<String>;
    /// Provider health.
    async fn health(&self) -> Health {
        Health::not_implemented()
    }
}

/// A vector_io provider: holds vector stores, their files and chunks.
///
/// The router has already resolved the store through the routing table (access checked)
/// and validated the request; `store` is the routing table's entry, and objects returned
/// carry `store.identifier` as their store id.
#[async_trait]
pub trait VectorIoProvider: Send + Sync {
    /// Creates a store (files in `req.file_ids` are attached before it returns).
    async fn create_vector_store(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        new: &NewVectorStore,
        req: CreateVectorStoreRequest,
    ) -> Result<VectorStoreObject>;
    /// The store's object.
    async fn get_vector_store(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
    ) -> Result<VectorStoreObject>;
    /// Updates name, expiry or metadata.
    async fn update_vector_store(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: UpdateVectorStoreRequest,
    ) -> Result<VectorStoreObject>;
    /// Deletes the store, its file records and chunks.
    async fn delete_vector_store(&self, ctx: &RequestContext, store: &VectorStore) -> Result<()>;
    /// Inserts (or replaces) chunks, embedding those without a vector.
    async fn insert_chunks(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        chunks: Vec<Chunk>,
    ) -> Result<()>;
    /// Runs a search: the chunks and scores, best first.
    async fn search(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        search: ChunkSearch,
    ) -> Result<Vec<(Chunk, f64)>>;
    /// Attaches a file (synchronously).
    async fn attach_file(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: AttachFileRequest,
    ) -> Result<VectorStoreFileObject>;
    /// The store's files.
    async fn list_files(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList>;
    /// One attached file.
    async fn get_file(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
    ) -> Result<VectorStoreFileObject>;
    /// Replaces a file's attributes (on its chunks too).
    async fn update_file(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        req: UpdateVectorStoreFileRequest,
    ) -> Result<VectorStoreFileObject>;
    /// Removes a file and its chunks.
    async fn delete_file(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
    ) -> Result<()>;
    /// A file's chunks in order.
    async fn file_content(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        file_id: &str,
        req: FileContentRequest,
    ) -> Result<VectorStoreFileContent>;
    /// Starts a background batch.
    async fn create_file_batch(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        req: CreateFileBatchRequest,
    ) -> Result<VectorStoreFileBatchObject>;
    /// A batch.
    async fn get_file_batch(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject>;
    /// A batch's files.
    async fn list_file_batch_files(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList>;
    /// Cancels a batch.
    async fn cancel_file_batch(
        &self,
        ctx: &RequestContext,
        store: &VectorStore,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject>;
    /// Provider health.
    async fn health(&self) -> Health {
        Health::not_implemented()
    }
}

/// A built provider, by API.
#[derive(Clone)]
#[non_exhaustive]
pub enum ProviderInstance {
    /// An inference provider.
    Inference(Arc<dyn InferenceProvider>),
    /// A files provider.
    Files(Arc<dyn FilesProvider>),
    /// A vector_io provider.
    VectorIo(Arc<dyn VectorIoProvider>),
    /// A tool runtime provider.
    ToolRuntime(Arc<dyn ToolRuntimeProvider>),
}

impl ProviderInstance {
    /// The API this instance serves.
    pub fn api(&self) -> Api {
        match self {
            ProviderInstance::Inference(_) => Api::Inference,
            ProviderInstance::Files(_) => Api::Files,
            ProviderInstance::VectorIo(_) => Api::VectorIo,
            ProviderInstance::ToolRuntime(_) => Api::ToolRuntime,
        }
    }

    /// The instance's health.
    pub async fn health(&self) -> Health {
        match self {
            ProviderInstance::Inference(p) => p.health().await,
            ProviderInstance::Files(p) => p.health().await,
            ProviderInstance::VectorIo(p) => p.health().await,
            ProviderInstance::ToolRuntime(p) => p.health().await,
        }
    }
}

impl fmt::Debug for ProviderInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderInstance({})", self.api())
    }
}

/// A router handle a provider may depend on.
#[derive(Clone)]
#[non_exhaustive]
pub enum ApiHandle {
    /// The inference router.
    Inference(Arc<dyn Inference>),
    /// The files router.
    Files(Arc<dyn Files>),
    /// The vector IO router.
    VectorIo(Arc<dyn crate::api::vector_io::VectorIo>),
}

/// The routers of the APIs a provider declared as dependencies.
#[derive(Clone, Default)]
pub struct ProviderDeps {
    handles: BTreeMap<Api, ApiHandle>,
}

impl ProviderDeps {
    /// Adds a router.
    pub fn insert(&mut self, api: Api, handle: ApiHandle) {
        self.handles.insert(api, handle);
    }

    /// Whether a router for `api` is present.
    pub fn contains(&self, api: Api) -> bool {
        self.handles.contains_key(&api)
    }

    /// The inference router (an error if the provider did not declare the dependency).
    pub fn inference(&self) -> Result<Arc<dyn Inference>> {
        match self.handles.get(&Api::Inference) {
            Some(ApiHandle::Inference(i)) => Ok(i.clone()),
            _ => Err(Error::internal(
                "the inference API is not available to this provider; declare it in api_dependencies",
            )),
        }
    }

    /// The vector IO router (an error if the provider did not declare the dependency).
    pub fn vector_io(&self) -> Result<Arc<dyn crate::api::vector_io::VectorIo>> {
        match self.handles.get(&Api::VectorIo) {
            Some(ApiHandle::VectorIo(v)) => Ok(v.clone()),
            _ => Err(Error::internal(
                "the vector_io API is not available to this provider; declare it in api_dependencies",
            )),
        }
    }

    /// The files router, if the provider declared the dependency and files are configured.
    pub fn files(&self) -> Option<Arc<dyn Files>> {
        match self.handles.get(&Api::Files) {
            Some(ApiHandle::Files(f)) => Some(f.clone()),
            _ => None,
        }
    }
}

/// Opens stores from the run config's named storage backends.
#[async_trait]
pub trait StorageResolver: Send + Sync {
    /// A KV store on `backend`, under `namespace`.
    async fn kv_store(&self, backend: &str, namespace: &str) -> Result<Arc<dyn KvStore>>;
    /// A SQL store on `backend`.
    async fn sql_store(&self, backend: &str) -> Result<Arc<dyn SqlStore>>;
}

/// Everything a factory receives to build one provider instance.
#[derive(Clone)]
pub struct ProviderContext {
    /// The instance id from the run config.
    pub provider_id: String,
    /// The provider type.
    pub provider_type: String,
    /// The raw config (after env substitution).
    pub config: Value,
    /// Where the config sits in the run config, e.g. `providers.inference[1].config`.
    pub config_path: String,
    /// Routers of the declared dependencies.
    pub deps: ProviderDeps,
    /// Access to the configured storage backends.
    pub storage: Arc<dyn StorageResolver>,
    /// The stack's access policy (for providers that keep per-owner records).
    pub policy: Arc<AccessPolicy>,
}

impl ProviderContext {
    /// Parses the config into the provider's own type. Errors name the full path, e.g.
    /// `providers.inference[1].config.base_url: invalid type: integer, expected a string`.
    pub fn parse_config<C: DeserializeOwned>(&self) -> Result<C> {
        parse_at_path(&self.config, &self.config_path)
    }
}

/// Deserializes `value` into `T`; errors are `Config` errors naming `<root>.<path>`.
pub fn parse_at_path<T: DeserializeOwned>(value: &Value, root: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner.is_empty() || inner == "." {
            root.to_string()
        } else if root.is_empty() {
            inner
        } else {
            format!("{root}.{inner}")
        };
        Error::config(format!("{path}: {}", e.inner())).with_context("path", path)
    })
}

/// Builds provider instances of one type.
#[async_trait]
pub trait ProviderFactory: Send + Sync {
    /// Builds one instance.
    async fn create(&self, ctx: ProviderContext) -> Result<ProviderInstance>;
}

/// A factory from an async closure.
pub struct FnFactory<F>(pub F);

#[async_trait]
impl<F, Fut> ProviderFactory for FnFactory<F>
where
    F: Fn(ProviderContext) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<ProviderInstance>> + Send,
{
    async fn create(&self, ctx: ProviderContext) -> Result<ProviderInstance> {
        (self.0)(ctx).await
    }
}

/// Describes a provider type: its API, name, config schema, dependencies and factory.
#[derive(Clone)]
pub struct ProviderSpec {
    /// The API it serves.
    pub api: Api,
    /// `inline::candle`, `remote::openai`, ...
    pub provider_type: String,
    /// Other names accepted in configs (e.g. `inline::meta-reference`).
    pub aliases: Vec<String>,
    /// APIs whose routers it needs.
    pub api_dependencies: Vec<Api>,
    /// APIs it uses when they are configured.
    pub optional_api_dependencies: Vec<Api>,
    /// One line on what it is.
    pub description: String,
    /// JSON schema of its config.
    pub config_schema: fn() -> schemars::Schema,
    /// Builds instances.
    pub factory: Arc<dyn ProviderFactory>,
}

impl ProviderSpec {
    /// A spec with a config type `C` (for the schema) and a factory.
    pub fn new<C: schemars::JsonSchema>(
        api: Api,
        provider_type: impl Into<String>,
        description: impl Into<String>,
        factory: impl ProviderFactory + 'static,
    ) -> Self {
        ProviderSpec {
            api,
            provider_type: provider_type.into(),
            aliases: Vec::new(),
            api_dependencies: Vec::new(),
            optional_api_dependencies: Vec::new(),
            description: description.into(),
            config_schema: || schemars::schema_for!(C),
            factory: Arc::new(factory),
        }
    }

    /// Declares required API dependencies.
    pub fn with_dependencies(mut self, apis: impl IntoIterator<Item = Api>) -> Self {
        self.api_dependencies.extend(apis);
        self
    }

    /// Declares optional API dependencies.
    pub fn with_optional_dependencies(mut self, apis: impl IntoIterator<Item = Api>) -> Self {
        self.optional_api_dependencies.extend(apis);
        self
    }

    /// Adds an alias name.
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Whether `name` names this spec.
    pub fn answers_to(&self, name: &str) -> bool {
        self.provider_type == name || self.aliases.iter().any(|a| a == name)
    }
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("api", &self.api)
            .field("provider_type", &self.provider_type)
            .field("api_dependencies", &self.api_dependencies)
            .finish_non_exhaustive()
    }
}

/// The provider types a stack knows: built-ins plus the application's own.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    specs: Vec<ProviderSpec>,
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a spec; a later spec with the same API and type replaces the earlier one.
    pub fn register(&mut self, spec: ProviderSpec) {
        self.specs
            .retain(|s| !(s.api == spec.api && s.provider_type == spec.provider_type));
        self.specs.push(spec);
    }

    /// The spec for `provider_type` under `api`.
    pub fn find(&self, api: Api, provider_type: &str) -> Option<&ProviderSpec> {
        self.specs
            .iter()
            .rev()
            .find(|s| s.api == api && s.answers_to(provider_type))
    }

    /// Every spec, optionally only those of one API.
    pub fn specs(&self, api: Option<Api>) -> impl Iterator<Item = &ProviderSpec> {
        self.specs
            .iter()
            .filter(move |s| api.is_none_or(|a| s.api == a))
    }
}
