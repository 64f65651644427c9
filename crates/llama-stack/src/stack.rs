//! [`Stack`] and [`StackBuilder`]: build a stack from a run config or a built-in
//! distribution and call its APIs in-process through typed handles.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use llama_stack_core::access::{AccessPolicy, RoutePolicy};
use llama_stack_core::api::files::{
    FileContent, FileDeleted, FileList, FileObject, Files, ListFilesRequest, UploadFileRequest,
};
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionList, ChatCompletionRequest, ChatCompletionStream, Completion,
    CompletionRequest, CompletionStream, EmbeddingsRequest, EmbeddingsResponse, Inference,
    ListChatCompletionsRequest, RerankRequest, RerankResponse, StoredChatCompletion,
};
use llama_stack_core::api::inspect::{
    HealthResponse, Inspect, ListRoutesResponse, RouteFilter, VersionResponse,
};
use llama_stack_core::api::models::{
    ListModelsResponse, Model, Models, OpenAiListModelsResponse, RegisterModelRequest,
};
use llama_stack_core::api::providers::{ListProvidersResponse, ProviderInfo, Providers};
use llama_stack_core::api::tool_runtime::{
    InvokeToolRequest, ListToolDefsResponse, RagInsertRequest, RagQueryRequest, RagQueryResult,
    ToolInvocationResult, ToolRuntime,
};
use llama_stack_core::api::vector_io::{
    AttachFileRequest, CreateFileBatchRequest, CreateVectorStoreRequest, FileContentRequest,
    InsertChunksRequest, ListVectorStoreFilesRequest, ListVectorStoresRequest, QueryChunksRequest,
    QueryChunksResponse, SearchResponse, SearchVectorStoreRequest, UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest, VectorIo, VectorStoreDeleted, VectorStoreFileBatchObject,
    VectorStoreFileContent, VectorStoreFileDeleted, VectorStoreFileList, VectorStoreFileObject,
    VectorStoreList, VectorStoreObject,
};
use llama_stack_core::api::Api;
use llama_stack_core::provider::{ProviderRegistry, ProviderSpec, StorageResolver};
use llama_stack_core::resolver::{self, ProviderConfigEntry, Resolved};
use llama_stack_core::router::{
    FilesRouter, InferenceRouter, InspectService, ModelsRouter, ProvidersService,
    ToolRuntimeRouter, VectorIoRouter, VectorStoresConfig,
};
use llama_stack_core::{Error, RequestContext, Result, User};
use llama_stack_storage::inference_store::SqlInferenceStore;
use tokio::task::JoinSet;

use crate::config::{env::process_env, StackConfig};
use crate::distribution::distribution_yaml;
use crate::storage::StorageManager;

/// How often providers with `refresh_models: true` are listed again, unless a provider is
/// configured with its own `refresh_interval_seconds`.
pub const MODEL_REFRESH_INTERVAL: Duration =
    llama_stack_core::provider::DEFAULT_MODEL_REFRESH_INTERVAL;

enum ConfigSource {
    Config(Box<StackConfig>),
    Yaml(String),
    File(PathBuf),
    Distribution(String),
}

/// Builds a [`Stack`]: pick a config (a [`StackConfig`], YAML, a file or a built-in
/// distribution), optionally add provider types, then [`build`](Self::build).
pub struct StackBuilder {
    source: Option<ConfigSource>,
    specs: Vec<ProviderSpec>,
    data_dir: Option<PathBuf>,
}

impl StackBuilder {
    /// Uses a parsed run config.
    pub fn config(mut self, config: StackConfig) -> Self {
        self.source = Some(ConfigSource::Config(Box::new(config)));
        self
    }

    /// Uses a run config in YAML (env placeholders are substituted at build).
    pub fn config_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.source = Some(ConfigSource::Yaml(yaml.into()));
        self
    }

    /// Uses a run config file.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(ConfigSource::File(path.into()));
        self
    }

    /// Uses a built-in distribution (`starter`).
    pub fn distribution(mut self, name: impl Into<String>) -> Self {
        self.source = Some(ConfigSource::Distribution(name.into()));
        self
    }

    /// Stores a distribution's SQLite data under `dir` instead of
    /// `~/.llama/distributions/<name>` (overrides `SQLITE_STORE_DIR`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds (or replaces) a provider type, available to the run config by its name.
    pub fn with_provider(mut self, spec: ProviderSpec) -> Self {
        self.specs.push(spec);
        self
    }

    fn load_config(&mut self) -> Result<StackConfig> {
        let data_dir = self.data_dir.clone();
        let env = move |name: &str| -> Option<String> {
            if name == "SQLITE_STORE_DIR" {
                if let Some(dir) = &data_dir {
                    return Some(dir.to_string_lossy().into_owned());
                }
            }
            process_env(name)
        };
        match self.source.take() {
            Some(ConfigSource::Config(c)) => Ok(*c),
            Some(ConfigSource::Yaml(y)) => StackConfig::from_yaml_str_with_env(&y, &env),
            Some(ConfigSource::File(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(format!("cannot read run config '{}': {e}", path.display()))
                })?;
                StackConfig::from_yaml_str_with_env(&text, &env)
                    .map_err(|e| e.with_prefix(&path.display().to_string()))
            }
            Some(ConfigSource::Distribution(name)) => {
                let yaml = distribution_yaml(&name).ok_or_else(|| {
                    Error::config(format!(
                        "unknown distribution '{name}' (built in: {})",
                        crate::distribution::DISTRIBUTIONS.join(", ")
                    ))
                })?;
                StackConfig::from_yaml_str_with_env(yaml, &env)
            }
            None => Err(Error::config(
                "no run config given: call .config(..), .config_yaml(..), .config_file(..) or .distribution(\"starter\")",
            )),
        }
    }

    /// Opens storage, builds every provider in dependency order, registers the config's
    /// resources and lists provider models.
    pub async fn build(mut self) -> Result<Stack> {
        let config = self.load_config()?;
        config.validate()?;

        let storage = Arc::new(StorageManager::new(config.storage.clone()));
        let metadata = config.storage.stores.metadata.as_ref().ok_or_else(|| {
            Error::config("storage.stores.metadata: the registry store is required")
        })?;
        let registry_kv = storage
            .kv_store(&metadata.backend, &metadata.namespace)
            .await
            .map_err(|e| e.with_prefix("storage.stores.metadata"))?;

        let (policy, route_policy) = match &config.server.auth {
            Some(auth) => (
                AccessPolicy::from_value(&serde_json::Value::Array(auth.access_policy.clone()))
                    .map_err(|e| e.with_prefix("server.auth.access_policy"))?,
                RoutePolicy::from_value(&serde_json::Value::Array(auth.route_policy.clone()))
                    .map_err(|e| e.with_prefix("server.auth.route_policy"))?,
            ),
            None => (AccessPolicy::default(), RoutePolicy::default()),
        };
        let policy = Arc::new(policy);

        let mut registry = ProviderRegistry::new();
        for spec in llama_stack_providers::builtin_providers() {
            registry.register(spec);
        }
        for spec in self.specs.drain(..) {
            registry.register(spec);
        }

        let mut entries = Vec::new();
        for (api_name, providers) in &config.providers {
            let api = Api::parse(api_name)
                .filter(|a| a.is_providable())
                .ok_or_else(|| Error::config(format!("providers.{api_name}: unknown API")))?;
            for (i, p) in providers.iter().enumerate() {
                let Some(provider_id) = p.provider_id.as_deref().filter(|id| !id.is_empty()) else {
                    continue;
                };
                entries.push(ProviderConfigEntry {
                    api,
                    provider_id: provider_id.to_string(),
                    provider_type: p.provider_type.clone(),
                    config: p.config.clone(),
                    path: format!("providers.{api_name}[{i}]"),
                });
            }
        }

        let vector_stores_config: VectorStoresConfig = match &config.vector_stores {
            Some(v) => llama_stack_core::provider::parse_at_path(v, "vector_stores")?,
            None => VectorStoresConfig::default(),
        };
        let storage_dyn: Arc<dyn StorageResolver> = storage.clone();
        let Resolved {
            inference,
            models,
            files,
            vector_io,
            tool_runtime,
            providers,
            inspect,
        } = resolver::resolve(
            &registry,
            entries,
            storage_dyn,
            registry_kv,
            policy.clone(),
            vector_stores_config,
        )
        .await?;

        if let Some(r) = &config.storage.stores.inference {
            let prefixed = |e: Error| e.with_prefix("storage.stores.inference");
            let sql = storage.sql_store(&r.backend).await.map_err(prefixed)?;
            let store = SqlInferenceStore::open(sql, (*policy).clone(), r)
                .await
                .map_err(prefixed)?;
            inference.set_store(Arc::new(store))?;
        }

        for (i, m) in config.registered_resources.models.iter().enumerate() {
            let req = RegisterModelRequest {
                model_id: m.model_id.clone(),
                provider_model_id: m.provider_model_id.clone(),
                provider_id: m.provider_id.clone(),
                metadata: m.metadata.clone(),
                model_type: m.model_type,
                model_validation: m.model_validation,
            };
            models
                .register_from_config(req)
                .await
                .map_err(|e| e.with_prefix(&format!("registered_resources.models[{i}]")))?;
        }

        for entry in providers.entries() {
            if entry.api == Api::Inference {
                if let Err(e) = models.refresh_provider(&entry.provider_id).await {
                    tracing::warn!(provider_id = %entry.provider_id, error = %e, "listing the provider's models failed");
                }
            }
        }

        for (i, v) in config.registered_resources.vector_stores.iter().enumerate() {
            vector_io
                .register_from_config(
                    &v.vector_store_id,
                    &v.embedding_model,
                    v.embedding_dimension,
                    v.provider_id.as_deref(),
                    v.provider_vector_store_id.as_deref(),
                    v.vector_store_name.as_deref(),
                )
                .await
                .map_err(|e| e.with_prefix(&format!("registered_resources.vector_stores[{i}]")))?;
        }

        let mut tasks = JoinSet::new();
        // One refresh loop per provider, each on its own interval (a slow listing does not
        // delay the others).
        for (id, interval) in models.refreshing_providers() {
            let models = models.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = models.refresh_provider(&id).await {
                        tracing::warn!(provider_id = %id, error = %e, "refreshing the provider's models failed");
                    }
                }
            });
        }

        Ok(Stack {
            inner: Arc::new(StackInner {
                config,
                inference,
                models,
                files,
                vector_io,
                tool_runtime,
                providers,
                inspect,
                policy,
                route_policy: Arc::new(route_policy),
                storage,
                _tasks: tasks,
            }),
        })
    }
}

struct StackInner {
    config: StackConfig,
    inference: Arc<InferenceRouter>,
    models: Arc<ModelsRouter>,
    files: Arc<FilesRouter>,
    vector_io: Arc<VectorIoRouter>,
    tool_runtime: Arc<ToolRuntimeRouter>,
    providers: Arc<ProvidersService>,
    inspect: Arc<InspectService>,
    policy: Arc<AccessPolicy>,
    route_policy: Arc<RoutePolicy>,
    storage: Arc<StorageManager>,
    /// Background work (model refresh); aborted when the stack is dropped.
    _tasks: JoinSet<()>,
}

/// A built stack. Cheap to clone; every clone shares providers and storage.
///
/// Calls through [`Stack::inference`] and the other handles run as the anonymous local
/// caller; [`Stack::as_user`] gives handles that act as an authenticated user, so the
/// access policy applies exactly as in server mode.
#[derive(Clone)]
pub struct Stack {
    inner: Arc<StackInner>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("distro_name", &self.inner.config.name())
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// A new builder.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            source: None,
            specs: Vec::new(),
            data_dir: None,
        }
    }

    /// The run config the stack was built from.
    pub fn config(&self) -> &StackConfig {
        &self.inner.config
    }

    /// The resource access policy in force.
    pub fn access_policy(&self) -> &Arc<AccessPolicy> {
        &self.inner.policy
    }

    /// The route policy in force (used by the server).
    pub fn route_policy(&self) -> &Arc<RoutePolicy> {
        &self.inner.route_policy
    }

    /// The storage backends.
    pub fn storage(&self) -> &Arc<StorageManager> {
        &self.inner.storage
    }

    /// Handles acting as the anonymous local caller.
    pub fn scope(&self) -> Scope {
        Scope {
            stack: self.clone(),
            ctx: RequestContext::anonymous(),
        }
    }

    /// Handles acting as `user`.
    pub fn as_user(&self, user: User) -> Scope {
        self.with_context(RequestContext::for_user(user))
    }

    /// Handles acting with an explicit request context.
    pub fn with_context(&self, ctx: RequestContext) -> Scope {
        Scope {
            stack: self.clone(),
            ctx,
        }
    }

    /// The Inference API as the anonymous caller.
    pub fn inference(&self) -> InferenceHandle {
        self.inference_as(RequestContext::anonymous())
    }

    /// The Models API as the anonymous caller.
    pub fn models(&self) -> ModelsHandle {
        self.models_as(RequestContext::anonymous())
    }

    /// The Providers API as the anonymous caller.
    pub fn providers(&self) -> ProvidersHandle {
        self.providers_as(RequestContext::anonymous())
    }

    /// The Files API as the anonymous caller.
    pub fn files(&self) -> FilesHandle {
        self.files_as(RequestContext::anonymous())
    }

    /// The VectorIO API (vector stores, chunks) as the anonymous caller.
    pub fn vector_io(&self) -> VectorIoHandle {
        self.vector_io_as(RequestContext::anonymous())
    }

    /// The ToolRuntime API (tools, the RAG tool) as the anonymous caller.
    pub fn tool_runtime(&self) -> ToolRuntimeHandle {
        self.tool_runtime_as(RequestContext::anonymous())
    }

    /// The tool runtime router as a trait object.
    pub fn tool_runtime_api(&self) -> Arc<dyn ToolRuntime> {
        self.inner.tool_runtime.clone()
    }

    /// The tool groups served, with the provider serving each.
    pub fn toolgroups(&self) -> Vec<(String, String)> {
        self.inner.tool_runtime.toolgroups()
    }

    /// The files router as a trait object.
    pub fn files_api(&self) -> Arc<dyn Files> {
        self.inner.files.clone()
    }

    /// The vector IO router as a trait object.
    pub fn vector_io_api(&self) -> Arc<dyn VectorIo> {
        self.inner.vector_io.clone()
    }

    /// The Inspect API as the anonymous caller.
    pub fn inspect(&self) -> InspectHandle {
        self.inspect_as(RequestContext::anonymous())
    }

    /// The inference router as a trait object (for servers and providers).
    pub fn inference_api(&self) -> Arc<dyn Inference> {
        self.inner.inference.clone()
    }

    /// The models router as a trait object.
    pub fn models_api(&self) -> Arc<dyn Models> {
        self.inner.models.clone()
    }

    /// The providers service as a trait object.
    pub fn providers_api(&self) -> Arc<dyn Providers> {
        self.inner.providers.clone()
    }

    /// The inspect service as a trait object.
    pub fn inspect_api(&self) -> Arc<dyn Inspect> {
        self.inner.inspect.clone()
    }
}

/// A stack seen through one request context (a user, or the anonymous caller).
#[derive(Clone)]
pub struct Scope {
    stack: Stack,
    ctx: RequestContext,
}

/// The handles of [`Stack`] and [`Scope`], each built with the context given: a fresh
/// anonymous one for the stack's, a clone of the scope's own for the scope's.
impl Stack {
    fn inference_as(&self, ctx: RequestContext) -> InferenceHandle {
        InferenceHandle {
            api: self.inner.inference.clone(),
            ctx,
        }
    }

    fn models_as(&self, ctx: RequestContext) -> ModelsHandle {
        ModelsHandle {
            api: self.inner.models.clone(),
            ctx,
        }
    }

    fn providers_as(&self, ctx: RequestContext) -> ProvidersHandle {
        ProvidersHandle {
            api: self.inner.providers.clone(),
            ctx,
        }
    }

    fn files_as(&self, ctx: RequestContext) -> FilesHandle {
        FilesHandle {
            api: self.inner.files.clone(),
            ctx,
        }
    }

    fn vector_io_as(&self, ctx: RequestContext) -> VectorIoHandle {
        VectorIoHandle {
            api: self.inner.vector_io.clone(),
            ctx,
        }
    }

    fn tool_runtime_as(&self, ctx: RequestContext) -> ToolRuntimeHandle {
        ToolRuntimeHandle {
            api: self.inner.tool_runtime.clone(),
            ctx,
        }
    }

    fn inspect_as(&self, ctx: RequestContext) -> InspectHandle {
        InspectHandle {
            api: self.inner.inspect.clone(),
            ctx,
        }
    }
}

impl Scope {
    /// The context calls run with.
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// The Inference API.
    pub fn inference(&self) -> InferenceHandle {
        self.stack.inference_as(self.ctx.clone())
    }

    /// The Models API.
    pub fn models(&self) -> ModelsHandle {
        self.stack.models_as(self.ctx.clone())
    }

    /// The Providers API.
    pub fn providers(&self) -> ProvidersHandle {
        self.stack.providers_as(self.ctx.clone())
    }

    /// The Inspect API.
    pub fn inspect(&self) -> InspectHandle {
        self.stack.inspect_as(self.ctx.clone())
    }

    /// The Files API.
    pub fn files(&self) -> FilesHandle {
        self.stack.files_as(self.ctx.clone())
    }

    /// The ToolRuntime API.
    pub fn tool_runtime(&self) -> ToolRuntimeHandle {
        self.stack.tool_runtime_as(self.ctx.clone())
    }

    /// The VectorIO API.
    pub fn vector_io(&self) -> VectorIoHandle {
        self.stack.vector_io_as(self.ctx.clone())
    }
}

/// The ToolRuntime API bound to a request context.
#[derive(Clone)]
pub struct ToolRuntimeHandle {
    api: Arc<ToolRuntimeRouter>,
    ctx: RequestContext,
}

impl ToolRuntimeHandle {
    /// The tools of one group, or of all.
    pub async fn list_tools(&self, tool_group_id: Option<&str>) -> Result<ListToolDefsResponse> {
        self.api.list_runtime_tools(&self.ctx, tool_group_id).await
    }

    /// Runs a tool.
    pub async fn invoke(&self, req: InvokeToolRequest) -> Result<ToolInvocationResult> {
        self.api.invoke_tool(&self.ctx, req).await
    }

    /// RAG tool: stores documents in a vector store.
    pub async fn rag_insert(&self, req: RagInsertRequest) -> Result<()> {
        self.api.rag_insert(&self.ctx, req).await
    }

    /// RAG tool: a cited context for a query from some vector stores.
    pub async fn rag_query(&self, req: RagQueryRequest) -> Result<RagQueryResult> {
        self.api.rag_query(&self.ctx, req).await
    }
}

/// The Files API bound to a request context.
#[derive(Clone)]
pub struct FilesHandle {
    api: Arc<FilesRouter>,
    ctx: RequestContext,
}

impl FilesHandle {
    /// Uploads a file.
    pub async fn upload(&self, req: UploadFileRequest) -> Result<FileObject> {
        self.api.upload_file(&self.ctx, req).await
    }

    /// A page of files.
    pub async fn list(&self, req: ListFilesRequest) -> Result<FileList> {
        self.api.list_files(&self.ctx, req).await
    }

    /// One file's metadata.
    pub async fn get(&self, file_id: &str) -> Result<FileObject> {
        self.api.get_file(&self.ctx, file_id).await
    }

    /// One file's bytes.
    pub async fn content(&self, file_id: &str) -> Result<FileContent> {
        self.api.file_content(&self.ctx, file_id).await
    }

    /// Deletes a file.
    pub async fn delete(&self, file_id: &str) -> Result<FileDeleted> {
        self.api.delete_file(&self.ctx, file_id).await
    }
}

/// The VectorIO API (OpenAI vector stores and Llama Stack chunks) bound to a request context.
#[derive(Clone)]
pub struct VectorIoHandle {
    api: Arc<VectorIoRouter>,
    ctx: RequestContext,
}

impl VectorIoHandle {
    /// Creates a vector store.
    pub async fn create_vector_store(
        &self,
        req: CreateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        self.api.create_vector_store(&self.ctx, req).await
    }

    /// A page of vector stores.
    pub async fn list_vector_stores(
        &self,
        req: ListVectorStoresRequest,
    ) -> Result<VectorStoreList> {
        self.api.list_vector_stores(&self.ctx, req).await
    }

    /// One vector store.
    pub async fn get_vector_store(&self, id: &str) -> Result<VectorStoreObject> {
        self.api.get_vector_store(&self.ctx, id).await
    }

    /// Updates a vector store.
    pub async fn update_vector_store(
        &self,
        id: &str,
        req: UpdateVectorStoreRequest,
    ) -> Result<VectorStoreObject> {
        self.api.update_vector_store(&self.ctx, id, req).await
    }

    /// Deletes a vector store and its chunks.
    pub async fn delete_vector_store(&self, id: &str) -> Result<VectorStoreDeleted> {
        self.api.delete_vector_store(&self.ctx, id).await
    }

    /// Searches a vector store.
    pub async fn search(&self, id: &str, req: SearchVectorStoreRequest) -> Result<SearchResponse> {
        self.api.search_vector_store(&self.ctx, id, req).await
    }

    /// Attaches an uploaded file (parse, chunk, embed, insert).
    pub async fn attach_file(
        &self,
        id: &str,
        req: AttachFileRequest,
    ) -> Result<VectorStoreFileObject> {
        self.api.attach_file(&self.ctx, id, req).await
    }

    /// A page of a store's files.
    pub async fn list_files(
        &self,
        id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        self.api.list_vector_store_files(&self.ctx, id, req).await
    }

    /// One attached file.
    pub async fn get_file(&self, id: &str, file_id: &str) -> Result<VectorStoreFileObject> {
        self.api.get_vector_store_file(&self.ctx, id, file_id).await
    }

    /// Replaces an attached file's attributes.
    pub async fn update_file(
        &self,
        id: &str,
        file_id: &str,
        req: UpdateVectorStoreFileRequest,
    ) -> Result<VectorStoreFileObject> {
        self.api
            .update_vector_store_file(&self.ctx, id, file_id, req)
            .await
    }

    /// Removes a file and its chunks from a store.
    pub async fn delete_file(&self, id: &str, file_id: &str) -> Result<VectorStoreFileDeleted> {
        self.api
            .delete_vector_store_file(&self.ctx, id, file_id)
            .await
    }

    /// An attached file's chunks.
    pub async fn file_content(
        &self,
        id: &str,
        file_id: &str,
        req: FileContentRequest,
    ) -> Result<VectorStoreFileContent> {
        self.api
            .vector_store_file_content(&self.ctx, id, file_id, req)
            .await
    }

    /// Starts attaching several files in the background.
    pub async fn create_file_batch(
        &self,
        id: &str,
        req: CreateFileBatchRequest,
    ) -> Result<VectorStoreFileBatchObject> {
        self.api.create_file_batch(&self.ctx, id, req).await
    }

    /// A file batch.
    pub async fn get_file_batch(
        &self,
        id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        self.api.get_file_batch(&self.ctx, id, batch_id).await
    }

    /// A file batch's files.
    pub async fn list_file_batch_files(
        &self,
        id: &str,
        batch_id: &str,
        req: ListVectorStoreFilesRequest,
    ) -> Result<VectorStoreFileList> {
        self.api
            .list_file_batch_files(&self.ctx, id, batch_id, req)
            .await
    }

    /// Cancels a file batch.
    pub async fn cancel_file_batch(
        &self,
        id: &str,
        batch_id: &str,
    ) -> Result<VectorStoreFileBatchObject> {
        self.api.cancel_file_batch(&self.ctx, id, batch_id).await
    }

    /// Inserts chunks (embedding those without a vector).
    pub async fn insert_chunks(&self, req: InsertChunksRequest) -> Result<()> {
        self.api.insert_chunks(&self.ctx, req).await
    }

    /// The chunks nearest to a query.
    pub async fn query_chunks(&self, req: QueryChunksRequest) -> Result<QueryChunksResponse> {
        self.api.query_chunks(&self.ctx, req).await
    }
}

/// The Inference API bound to a request context.
#[derive(Clone)]
pub struct InferenceHandle {
    api: Arc<InferenceRouter>,
    ctx: RequestContext,
}

// The calls that take a request return the router's future itself rather than an `async fn`
// wrapping it, which would hold a second copy of the request in the caller's future.
impl InferenceHandle {
    /// A chat completion.
    pub fn chat_completion(
        &self,
        req: ChatCompletionRequest,
    ) -> impl Future<Output = Result<ChatCompletion>> + Send + '_ {
        self.api.chat_completion(&self.ctx, req)
    }

    /// A streamed chat completion.
    pub fn chat_completion_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> impl Future<Output = Result<ChatCompletionStream>> + Send + '_ {
        self.api.chat_completion_stream(&self.ctx, req)
    }

    /// A page of the stored chat completions this caller may read, newest first by
    /// default.
    pub async fn list_chat_completions(
        &self,
        req: ListChatCompletionsRequest,
    ) -> Result<ChatCompletionList> {
        self.api.list_chat_completions(&self.ctx, req).await
    }

    /// One stored chat completion with the messages it answered.
    pub async fn get_chat_completion(&self, completion_id: &str) -> Result<StoredChatCompletion> {
        self.api.get_chat_completion(&self.ctx, completion_id).await
    }

    /// A text completion.
    pub fn completion(
        &self,
        req: CompletionRequest,
    ) -> impl Future<Output = Result<Completion>> + Send + '_ {
        self.api.completion(&self.ctx, req)
    }

    /// A streamed text completion.
    pub fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> impl Future<Output = Result<CompletionStream>> + Send + '_ {
        self.api.completion_stream(&self.ctx, req)
    }

    /// Embeddings.
    pub fn embeddings(
        &self,
        req: EmbeddingsRequest,
    ) -> impl Future<Output = Result<EmbeddingsResponse>> + Send + '_ {
        self.api.embeddings(&self.ctx, req)
    }

    /// Rerank.
    pub fn rerank(
        &self,
        req: RerankRequest,
    ) -> impl Future<Output = Result<RerankResponse>> + Send + '_ {
        self.api.rerank(&self.ctx, req)
    }
}

/// The Models API bound to a request context.
#[derive(Clone)]
pub struct ModelsHandle {
    api: Arc<ModelsRouter>,
    ctx: RequestContext,
}

impl ModelsHandle {
    /// Every model the caller may see.
    pub async fn list(&self) -> Result<ListModelsResponse> {
        self.api.list_models(&self.ctx).await
    }

    /// The same, in OpenAI's shape.
    pub async fn openai_list(&self) -> Result<OpenAiListModelsResponse> {
        self.api.openai_list_models(&self.ctx).await
    }

    /// One model.
    pub async fn get(&self, model_id: &str) -> Result<Model> {
        self.api.get_model(&self.ctx, model_id).await
    }

    /// Registers a model owned by the caller.
    pub async fn register(&self, req: RegisterModelRequest) -> Result<Model> {
        self.api.register_model(&self.ctx, req).await
    }

    /// Unregisters a model.
    pub async fn unregister(&self, model_id: &str) -> Result<()> {
        self.api.unregister_model(&self.ctx, model_id).await
    }
}

/// The Providers API bound to a request context.
#[derive(Clone)]
pub struct ProvidersHandle {
    api: Arc<ProvidersService>,
    ctx: RequestContext,
}

impl ProvidersHandle {
    /// Every provider with its health.
    pub async fn list(&self) -> Result<ListProvidersResponse> {
        self.api.list_providers(&self.ctx).await
    }

    /// One provider.
    pub async fn inspect(&self, provider_id: &str) -> Result<ProviderInfo> {
        self.api.inspect_provider(&self.ctx, provider_id).await
    }
}

/// The Inspect API bound to a request context.
#[derive(Clone)]
pub struct InspectHandle {
    api: Arc<InspectService>,
    ctx: RequestContext,
}

impl InspectHandle {
    /// Routes, optionally filtered.
    pub async fn routes(&self, filter: Option<RouteFilter>) -> Result<ListRoutesResponse> {
        self.api.list_routes(&self.ctx, filter).await
    }

    /// Health.
    pub async fn health(&self) -> Result<HealthResponse> {
        self.api.health(&self.ctx).await
    }

    /// Version.
    pub async fn version(&self) -> Result<VersionResponse> {
        self.api.version(&self.ctx).await
    }
}
